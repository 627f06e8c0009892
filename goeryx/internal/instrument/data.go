package instrument

import (
	"errors"
	"fmt"
)

// DataSegment is the content an active data segment writes into memory 0 at instantiation.
type DataSegment struct {
	Offset uint32
	Data   []byte
}

// StripData returns a copy of module without the contents of its active data segments, and
// those contents. The engine starts interpreters from a memory image that already holds (and
// has since modified) that data, so letting wazero copy it in at every instantiation would only
// cost time and dirty copy-on-write pages; the one interpreter that boots from scratch gets the
// segments written by the host instead. Passive segments are kept as they are.
//
// wazero also spends time and memory per segment at every instantiation, even on an empty
// one, and wasm-opt leaves thousands. So when no function body names a data segment (only
// memory.init and data.drop do), the active segments are removed and the data count section,
// if any, is updated. Otherwise each becomes an empty passive segment, which keeps every
// index: memory.init and data.drop of an empty segment behave the same either way.
func StripData(module []byte) ([]byte, []DataSegment, error) {
	secs, err := parseSections(module)
	if err != nil {
		return nil, nil, fmt.Errorf("strip data: %w", err)
	}
	keepIndices := false
	for _, s := range secs {
		if s.id == secCode {
			if keepIndices, err = codeNamesDataSegments(s.payload); err != nil {
				return nil, nil, fmt.Errorf("strip data: code section: %w", err)
			}
		}
	}
	var (
		payload []byte
		segs    []DataSegment
		count   uint32 // segments left
	)
	for _, s := range secs {
		if s.id == secData {
			if payload, segs, count, err = stripDataPayload(s.payload, keepIndices); err != nil {
				return nil, nil, fmt.Errorf("strip data: data section: %w", err)
			}
		}
	}
	out := make([]byte, 0, len(module))
	out = append(out, header...)
	for _, s := range secs {
		switch s.id {
		case secData:
			out = appendSection(out, secData, payload)
		case secDataCount:
			out = appendSection(out, secDataCount, appendU32(nil, count))
		default:
			out = append(out, s.raw...)
		}
	}
	return out, segs, nil
}

func appendSection(out []byte, id byte, payload []byte) []byte {
	out = append(out, id)
	out = appendU32(out, uint32(len(payload)))
	return append(out, payload...)
}

// codeNamesDataSegments reports whether a function body of the code section payload p uses
// memory.init or data.drop.
func codeNamesDataSegments(p []byte) (bool, error) {
	found := false
	err := forEachBody(p, nil, func(i uint32, body []byte) (bool, error) {
		w := walker{r: reader{b: body}}
		if err := w.skipLocals(); err != nil {
			return false, fmt.Errorf("body %d: %w", i, err)
		}
		for !w.done() {
			in, err := w.next()
			if err != nil {
				return false, fmt.Errorf("body %d: %w", i, err)
			}
			if in.op == opPrefixMisc && (in.sub == miscMemoryInit || in.sub == miscDataDrop) {
				found = true
				return true, nil
			}
		}
		return false, nil
	})
	return found, err
}

// stripDataPayload returns the data section payload p without the active segments' contents
// (see StripData; keepIndices: as empty passive segments, else removed), those contents, and
// the number of segments left.
func stripDataPayload(p []byte, keepIndices bool) ([]byte, []DataSegment, uint32, error) {
	r := reader{b: p}
	n, err := r.u32()
	if err != nil {
		return nil, nil, 0, err
	}
	var (
		segments []byte // the segments left, without their count
		segs     []DataSegment
		left     uint32
	)
	for i := uint32(0); i < n; i++ {
		start := r.p
		flags, err := r.u32()
		if err != nil {
			return nil, nil, 0, err
		}
		switch flags {
		case 0, 2: // active: [memidx] offset-expr bytes
			if flags == 2 {
				mem, err := r.u32()
				if err != nil {
					return nil, nil, 0, err
				}
				if mem != 0 {
					return nil, nil, 0, fmt.Errorf("segment %d: memory %d (only memory 0 is supported)", i, mem)
				}
			}
			offset, err := constI32(&r)
			if err != nil {
				return nil, nil, 0, fmt.Errorf("segment %d: %w", i, err)
			}
			size, err := r.u32()
			if err != nil {
				return nil, nil, 0, err
			}
			data, err := r.bytes(int(size))
			if err != nil {
				return nil, nil, 0, err
			}
			segs = append(segs, DataSegment{Offset: offset, Data: data})
			if keepIndices {
				// Passive: wazero evaluates the offset of every active segment at each
				// instantiation, even an empty one.
				segments = appendU32(segments, 1)
				segments = appendU32(segments, 0) // no bytes
				left++
			}
		case 1: // passive: bytes
			size, err := r.u32()
			if err != nil {
				return nil, nil, 0, err
			}
			if _, err := r.bytes(int(size)); err != nil {
				return nil, nil, 0, err
			}
			segments = append(segments, p[start:r.p]...)
			left++
		default:
			return nil, nil, 0, fmt.Errorf("segment %d: unknown flags %d", i, flags)
		}
	}
	if err := trailing(&r); err != nil {
		return nil, nil, 0, err
	}
	return append(appendU32(nil, left), segments...), segs, left, nil
}

// constI32 reads an offset expression `i32.const N end`.
func constI32(r *reader) (uint32, error) {
	op, err := r.byte()
	if err != nil {
		return 0, err
	}
	if op != opI32Const {
		return 0, errors.New("offset expression is not i32.const")
	}
	v, err := r.s32()
	if err != nil {
		return 0, err
	}
	if end, err := r.byte(); err != nil || end != opEnd {
		return 0, errors.New("offset expression is not i32.const N end")
	}
	return uint32(v), nil
}

// s32 reads a signed LEB128 32-bit integer.
func (r *reader) s32() (int32, error) {
	var result int64
	var shift uint
	for i := 0; i < 5; i++ {
		b, err := r.byte()
		if err != nil {
			return 0, err
		}
		result |= int64(b&0x7f) << shift
		shift += 7
		if b&0x80 == 0 {
			if shift < 64 && b&0x40 != 0 {
				result |= -1 << shift
			}
			if result < -1<<31 || result > 1<<31-1 {
				return 0, errors.New("s32 out of range")
			}
			return int32(result), nil
		}
	}
	return 0, errors.New("s32 too long")
}
