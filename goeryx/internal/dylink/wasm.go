package dylink

import (
	"errors"
	"fmt"
	"math"
)

// The WebAssembly binary format, as far as the loader reads and writes it. Everything read
// comes from a file the guest (or a package) supplied: every count and length is checked
// against what is left before it is used.

const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
)

const (
	kindFunc   = 0
	kindTable  = 1
	kindMemory = 2
	kindGlobal = 3
	kindTag    = 4
)

const (
	valI32     = 0x7f
	valI64     = 0x7e
	valF32     = 0x7d
	valF64     = 0x7c
	valFuncref = 0x70
)

var errTruncated = errors.New("truncated")

// reader reads LEB128 numbers, names and bytes from a slice, remembering the first error.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) done() bool { return r.err != nil || r.off >= len(r.b) }

func (r *reader) byte() byte {
	if r.err != nil || r.off >= len(r.b) {
		r.fail(errTruncated)
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) u32() uint32 {
	var v uint64
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			if v > math.MaxUint32 {
				r.fail(errors.New("integer too large"))
				return 0
			}
			return uint32(v)
		}
	}
	r.fail(errors.New("integer too long"))
	return 0
}

// s32 reads a signed LEB128 (i32.const immediates).
func (r *reader) s32() int32 {
	var v int64
	shift := 0
	for {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			break
		}
		if shift >= 35 {
			r.fail(errors.New("integer too long"))
			return 0
		}
	}
	if v < math.MinInt32 || v > math.MaxInt32 {
		r.fail(errors.New("integer too large"))
		return 0
	}
	return int32(v)
}

func (r *reader) bytes(n uint32) []byte {
	if r.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(r.b)-r.off) {
		r.fail(errTruncated)
		return nil
	}
	s := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return s
}

func (r *reader) name() string { return string(r.bytes(r.u32())) }

// count reads a vector length, refusing one that cannot fit in what is left (each element
// takes at least one byte): a forged count never sizes an allocation.
func (r *reader) count() uint32 {
	n := r.u32()
	if r.err == nil && uint64(n) > uint64(len(r.b)-r.off) {
		r.fail(errTruncated)
		return 0
	}
	return n
}

// limits reads a table or memory type's limits.
func (r *reader) limits() (min uint32, max uint32, hasMax bool) {
	flags := r.byte()
	if flags > 1 {
		r.fail(fmt.Errorf("unsupported limits flags %#x", flags))
		return
	}
	min = r.u32()
	if flags&1 != 0 {
		max, hasMax = r.u32(), true
	}
	return
}

// constExpr reads a constant expression and returns its value when it is a plain
// i32.const or global.get (isGlobal) followed by end.
func (r *reader) constExpr() (val int32, global uint32, isGlobal, ok bool) {
	op := r.byte()
	switch op {
	case 0x41: // i32.const
		val, ok = r.s32(), true
	case 0x23: // global.get
		global, isGlobal, ok = r.u32(), true, true
	default:
		r.fail(fmt.Errorf("unsupported constant expression opcode %#x", op))
		return
	}
	if r.byte() != 0x0b {
		r.fail(errors.New("unsupported constant expression"))
		return 0, 0, false, false
	}
	return
}

// section is one section of a module: its id, its name for custom sections, its contents.
type section struct {
	id   byte
	name string
	body []byte
}

// splitSections checks the header and returns the sections in order.
func splitSections(b []byte) ([]section, error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return nil, errors.New("not a WebAssembly module")
	}
	if b[4] != 1 || b[5] != 0 || b[6] != 0 || b[7] != 0 {
		return nil, errors.New("unsupported WebAssembly binary version")
	}
	r := &reader{b: b, off: 8}
	var out []section
	for !r.done() {
		id := r.byte()
		body := r.bytes(r.u32())
		if r.err != nil {
			return nil, fmt.Errorf("malformed section: %v", r.err)
		}
		s := section{id: id, body: body}
		if id == secCustom {
			cr := &reader{b: body}
			s.name = cr.name()
			if cr.err != nil {
				return nil, errors.New("malformed custom section")
			}
		}
		if id > secDataCount && id != 13 {
			return nil, fmt.Errorf("unknown section id %d", id)
		}
		out = append(out, s)
	}
	return out, nil
}

// writer builds WebAssembly bytes.
type writer struct{ b []byte }

func (w *writer) u32(v uint32) {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			w.b = append(w.b, c|0x80)
			continue
		}
		w.b = append(w.b, c)
		return
	}
}

func (w *writer) s32(v int32) {
	x := int64(v)
	for {
		c := byte(x & 0x7f)
		x >>= 7
		if (x == 0 && c&0x40 == 0) || (x == -1 && c&0x40 != 0) {
			w.b = append(w.b, c)
			return
		}
		w.b = append(w.b, c|0x80)
	}
}

func (w *writer) byte(c ...byte) { w.b = append(w.b, c...) }

func (w *writer) name(s string) {
	w.u32(uint32(len(s)))
	w.b = append(w.b, s...)
}

// section appends a section with id and the contents of body.
func (w *writer) section(id byte, body []byte) {
	w.byte(id)
	w.u32(uint32(len(body)))
	w.b = append(w.b, body...)
}

func newModuleWriter() *writer { return &writer{b: []byte("\x00asm\x01\x00\x00\x00")} }
