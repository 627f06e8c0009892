package instrument

import (
	"errors"
	"fmt"
)

var errTruncated = errors.New("unexpected end of input")

// reader reads the binary format from a byte slice. Every method checks bounds and
// returns an error instead of panicking on malformed input.
type reader struct {
	b []byte
	p int
}

func (r *reader) eof() bool { return r.p >= len(r.b) }

func (r *reader) byte() (byte, error) {
	if r.p >= len(r.b) {
		return 0, errTruncated
	}
	c := r.b[r.p]
	r.p++
	return c, nil
}

func (r *reader) bytes(n int) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.p {
		return nil, errTruncated
	}
	s := r.b[r.p : r.p+n]
	r.p += n
	return s, nil
}

// u32 reads an unsigned LEB128 of at most 5 bytes whose value fits in 32 bits.
func (r *reader) u32() (uint32, error) {
	var v uint32
	for i := 0; i < 5; i++ {
		if r.p >= len(r.b) {
			return 0, errTruncated
		}
		c := r.b[r.p]
		r.p++
		v |= uint32(c&0x7f) << (7 * i)
		if c < 0x80 {
			if i == 4 && c > 0x0f {
				return 0, fmt.Errorf("u32 LEB128 overflows at offset %d", r.p-1)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("u32 LEB128 too long at offset %d", r.p)
}

// skipLEB skips a LEB128 (signed or unsigned) of at most maxBytes bytes without decoding it.
// Callers that need the value decode it; the rest (constants, offsets, alignments, lane
// counts) are only skipped, the engine that compiles the output validates them.
func (r *reader) skipLEB(maxBytes int) error {
	b := r.b
	for i := 0; i < maxBytes; i++ {
		if r.p >= len(b) {
			return errTruncated
		}
		c := b[r.p]
		r.p++
		if c < 0x80 {
			return nil
		}
	}
	return fmt.Errorf("LEB128 too long at offset %d", r.p)
}

// name reads a length-prefixed UTF-8 string (not validated) and returns it as a byte slice.
func (r *reader) name() ([]byte, error) {
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	return r.bytes(int(n))
}

// appendU32 appends v as a minimal unsigned LEB128.
func appendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// appendS32 appends v as a minimal signed LEB128.
func appendS32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// appendName appends a length-prefixed string.
func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}
