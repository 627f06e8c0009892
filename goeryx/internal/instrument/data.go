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

// StripData returns a copy of module whose active data segments are replaced by empty passive
// ones, and the segments' contents. The engine starts interpreters from a memory image that
// already holds (and has since modified) that data, so letting wazero copy it in at every
// instantiation would only cost time and dirty copy-on-write pages; the one interpreter that
// boots from scratch gets the segments written by the host instead. Segment indices are
// unchanged (the data count section stays valid); passive segments are kept as they are.
func StripData(module []byte) ([]byte, []DataSegment, error) {
	secs, err := parseSections(module)
	if err != nil {
		return nil, nil, fmt.Errorf("strip data: %w", err)
	}
	out := make([]byte, 0, len(module))
	out = append(out, header...)
	var segs []DataSegment
	for _, s := range secs {
		if s.id != secData {
			out = append(out, s.raw...)
			continue
		}
		payload, found, err := stripDataPayload(s.payload)
		if err != nil {
			return nil, nil, fmt.Errorf("strip data: data section: %w", err)
		}
		segs = found
		out = append(out, secData)
		out = appendU32(out, uint32(len(payload)))
		out = append(out, payload...)
	}
	return out, segs, nil
}

func stripDataPayload(p []byte) ([]byte, []DataSegment, error) {
	r := reader{b: p}
	n, err := r.u32()
	if err != nil {
		return nil, nil, err
	}
	out := appendU32(nil, n)
	var segs []DataSegment
	for i := uint32(0); i < n; i++ {
		start := r.p
		flags, err := r.u32()
		if err != nil {
			return nil, nil, err
		}
		switch flags {
		case 0, 2: // active: [memidx] offset-expr bytes
			if flags == 2 {
				mem, err := r.u32()
				if err != nil {
					return nil, nil, err
				}
				if mem != 0 {
					return nil, nil, fmt.Errorf("segment %d: memory %d (only memory 0 is supported)", i, mem)
				}
			}
			offset, err := constI32(&r)
			if err != nil {
				return nil, nil, fmt.Errorf("segment %d: %w", i, err)
			}
			size, err := r.u32()
			if err != nil {
				return nil, nil, err
			}
			data, err := r.bytes(int(size))
			if err != nil {
				return nil, nil, err
			}
			segs = append(segs, DataSegment{Offset: offset, Data: data})
			// An empty passive segment: wazero evaluates the offset of every active segment at
			// each instantiation, even an empty one, and wasm-opt leaves thousands of them
			// (over half of a fresh Sandbox's CPU). memory.init/data.drop of an empty segment
			// behave the same either way.
			out = appendU32(out, 1)
			out = appendU32(out, 0) // no bytes
		case 1: // passive: bytes
			size, err := r.u32()
			if err != nil {
				return nil, nil, err
			}
			if _, err := r.bytes(int(size)); err != nil {
				return nil, nil, err
			}
			out = append(out, p[start:r.p]...)
		default:
			return nil, nil, fmt.Errorf("segment %d: unknown flags %d", i, flags)
		}
	}
	if err := trailing(&r); err != nil {
		return nil, nil, err
	}
	return out, segs, nil
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
