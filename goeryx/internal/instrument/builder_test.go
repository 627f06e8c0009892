package instrument

// A tiny wasm binary builder for the tests: sections are assembled from byte slices, function
// bodies are written as opcode bytes.

const (
	i32  = 0x7f
	i64  = 0x7e
	v128 = 0x7b
)

func u32(v uint32) []byte { return appendU32(nil, v) }

// s32 encodes a signed LEB128 (for i32.const).
func s32(v int32) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func str(s string) []byte { return appendName(nil, s) }

func vec(entries ...[]byte) []byte { return cat(u32(uint32(len(entries))), cat(entries...)) }

func sec(id byte, payload []byte) []byte { return cat([]byte{id}, u32(uint32(len(payload))), payload) }

func customSec(name string, content []byte) []byte { return sec(0, cat(str(name), content)) }

func wasmModule(sections ...[]byte) []byte { return cat(header, cat(sections...)) }

func functype(params, results []byte) []byte {
	return cat([]byte{0x60}, u32(uint32(len(params))), params, u32(uint32(len(results))), results)
}

func funcImport(mod, field string, typ uint32) []byte {
	return cat(str(mod), str(field), []byte{0x00}, u32(typ))
}

func exportFunc(name string, idx uint32) []byte { return cat(str(name), []byte{0x00}, u32(idx)) }

// fbody builds a function body: locals as (count, type) pairs, then code; the final end is added.
func fbody(locals [][2]byte, code ...byte) []byte {
	var l [][]byte
	for _, g := range locals {
		l = append(l, []byte{g[0], g[1]})
	}
	b := cat(vec(l...), code, []byte{opEnd})
	return cat(u32(uint32(len(b))), b)
}

// Opcode shorthands.
const (
	oBlock    = 0x02
	oLoop     = 0x03
	oIf       = 0x04
	oElse     = 0x05
	oEnd      = 0x0b
	oBr       = 0x0c
	oBrIf     = 0x0d
	oBrTable  = 0x0e
	oReturn   = 0x0f
	oCall     = 0x10
	oCallInd  = 0x11
	oDrop     = 0x1a
	oLGet     = 0x20
	oLSet     = 0x21
	oLTee     = 0x22
	oGGet     = 0x23
	oGSet     = 0x24
	oI32Const = 0x41
	oI32Eqz   = 0x45
	oI32LtS   = 0x48
	oI32GtS   = 0x4a
	oI32GeS   = 0x4e
	oI32Add   = 0x6a
	oI32Sub   = 0x6b
	oI32Mul   = 0x6c
	oI32RemU  = 0x70
	oEmpty    = 0x40
)
