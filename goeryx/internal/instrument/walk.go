package instrument

import "fmt"

// Opcodes the rewriter (or a later fuel pass) acts on.
const (
	opUnreachable = 0x00
	opBlock       = 0x02
	opLoop        = 0x03
	opIf          = 0x04
	opElse        = 0x05
	opTry         = 0x06 // legacy exception handling
	opCatch       = 0x07
	opEnd         = 0x0b
	opBr          = 0x0c
	opBrIf        = 0x0d
	opBrTable     = 0x0e
	opReturn      = 0x0f
	opCall        = 0x10
	opReturnCall  = 0x12
	opDelegate    = 0x18
	opTryTable    = 0x1f
	opLocalGet    = 0x20
	opLocalTee    = 0x22
	opGlobalGet   = 0x23
	opGlobalSet   = 0x24
	opI32Const    = 0x41
	opI64Const    = 0x42
	opI32Sub      = 0x6b
	opI32LtS      = 0x48
	opI64LtS      = 0x53
	opI64Sub      = 0x7d
	opRefFunc     = 0xd2
	opPrefixMisc  = 0xfc
	opPrefixSIMD  = 0xfd
	opPrefixAtom  = 0xfe
	// 0xFC sub-opcodes that name a data segment
	miscMemoryInit = 8
	miscDataDrop   = 9
	blockTypeVoid  = 0x40
)

// Immediate shapes of the one-byte opcodes.
const (
	immInvalid   uint8 = iota
	immNone            // no immediate
	immBlockType       // blocktype: 0x40, a value type or an s33 type index
	immU32             // one LEB u32 (index, label, memory index)
	immU32x2           // two LEB u32 (call_indirect type+table)
	immBrTable         // vec(label) label
	immMemarg          // align (with multi-memory flag 0x40) [memidx] offset
	immS32             // i32.const
	immS64             // i64.const
	immF32             // 4 bytes
	immF64             // 8 bytes
	immSelectT         // vec(valtype)
	immHeapType        // s33 heap type
	immTryTable        // blocktype vec(catch)
	immPrefix          // 0xFC / 0xFD / 0xFE: LEB u32 sub-opcode, then per sub-opcode
)

// opImm is the immediate shape of every one-byte opcode; immInvalid marks opcodes this package
// does not know (GC 0xFB, string refs, ...), which make Instrument fail rather than guess.
var opImm = func() (t [256]uint8) {
	set := func(imm uint8, ops ...int) {
		for _, op := range ops {
			t[op] = imm
		}
	}
	span := func(imm uint8, lo, hi int) {
		for op := lo; op <= hi; op++ {
			t[op] = imm
		}
	}
	// Control (MVP, exception handling legacy and final, tail calls, typed function references).
	set(immNone, 0x00, 0x01, 0x05, 0x0a, 0x0b, 0x0f, 0x19, 0x1a, 0x1b)
	set(immBlockType, 0x02, 0x03, 0x04, 0x06)
	set(immU32, 0x07, 0x08, 0x09, 0x0c, 0x0d, 0x10, 0x12, 0x14, 0x15, 0x18)
	set(immU32x2, 0x11, 0x13)
	set(immBrTable, 0x0e)
	set(immSelectT, 0x1c)
	set(immTryTable, 0x1f)
	// Variables and tables.
	span(immU32, 0x20, 0x26)
	// Memory.
	span(immMemarg, 0x28, 0x3e)
	set(immU32, 0x3f, 0x40)
	// Constants.
	set(immS32, 0x41)
	set(immS64, 0x42)
	set(immF32, 0x43)
	set(immF64, 0x44)
	// Numeric (MVP) and sign-extension.
	span(immNone, 0x45, 0xc4)
	// Reference types and typed function references.
	set(immHeapType, 0xd0)
	set(immNone, 0xd1, 0xd4)
	set(immU32, 0xd2, 0xd5, 0xd6)
	// Prefixes: 0xFC misc (saturating truncation, bulk memory, tables), 0xFD SIMD, 0xFE threads.
	set(immPrefix, 0xfc, 0xfd, 0xfe)
	return t
}()

// instr is one decoded instruction of a function body or constant expression, as offsets into
// the walked slice: the bytes b[start:end] are the whole instruction, b[imm:end] its immediates.
type instr struct {
	op    byte   // first opcode byte
	sub   uint32 // sub-opcode after a 0xFC/0xFD/0xFE prefix
	start int
	imm   int
	end   int
	idx   uint32 // first immediate for opcodes with immU32 / immU32x2 (a function index for call)
}

// walker decodes instructions one at a time. It knows the immediates of every opcode it
// accepts, so it stays in sync with the instruction stream, and it tracks block nesting so it
// can tell the expression's final `end` (after which done is true).
//
// It is deliberately a pull iterator with no knowledge of what the caller does: the loop
// instrumentation looks at opLoop, an import insertion looks at opCall/opRefFunc, and a fuel
// pass would count instructions between control opcodes, all over the same walker.
type walker struct {
	r     reader
	depth int // open blocks including the implicit function block; 0 after the final end
}

func newWalker(b []byte, p int) walker { return walker{r: reader{b: b, p: p}, depth: 1} }

func (w *walker) done() bool { return w.depth == 0 }

// skipLocals skips the local declarations at the start of a function body; the walker is then
// at the body's expression.
func (w *walker) skipLocals() error {
	groups, err := w.r.u32()
	if err != nil {
		return fmt.Errorf("locals: %w", err)
	}
	for i := uint32(0); i < groups; i++ {
		if _, err := w.r.u32(); err != nil {
			return fmt.Errorf("locals: %w", err)
		}
		if err := w.r.valType(); err != nil {
			return fmt.Errorf("locals: %w", err)
		}
	}
	w.depth = 1
	return nil
}

// next decodes the instruction at the current position.
func (w *walker) next() (in instr, err error) {
	r := &w.r
	in.start = r.p
	if w.depth == 0 {
		return in, fmt.Errorf("instruction after the final end at offset %d", r.p)
	}
	op, err := r.byte()
	if err != nil {
		return in, err
	}
	in.op = op
	in.imm = r.p
	switch opImm[op] {
	case immNone:
		if op == opEnd {
			w.depth--
		}
	case immBlockType:
		w.depth++
		err = w.blockType()
	case immU32:
		in.idx, err = r.u32()
		if op == opDelegate { // legacy `try … delegate l` closes the try block
			w.depth--
		}
	case immU32x2:
		if in.idx, err = r.u32(); err == nil {
			_, err = r.u32()
		}
	case immBrTable:
		var n uint32
		if n, err = r.u32(); err == nil {
			for i := uint32(0); i <= n && err == nil; i++ { // n labels + default
				_, err = r.u32()
			}
		}
	case immMemarg:
		err = w.memarg()
	case immS32:
		err = r.skipLEB(5)
	case immS64:
		err = r.skipLEB(10)
	case immF32:
		_, err = r.bytes(4)
	case immF64:
		_, err = r.bytes(8)
	case immSelectT:
		var n uint32
		if n, err = r.u32(); err == nil {
			for i := uint32(0); i < n && err == nil; i++ {
				err = w.r.valType()
			}
		}
	case immHeapType:
		err = r.skipLEB(5)
	case immTryTable:
		w.depth++
		if err = w.blockType(); err == nil {
			err = w.catches()
		}
	case immPrefix:
		if in.sub, err = r.u32(); err == nil {
			switch op {
			case opPrefixMisc:
				err = w.misc(in.sub)
			case opPrefixSIMD:
				err = w.simd(in.sub)
			default:
				err = w.atomic(in.sub)
			}
		}
	default:
		return in, fmt.Errorf("unsupported opcode 0x%02x at offset %d", op, in.start)
	}
	if err != nil {
		return in, fmt.Errorf("opcode 0x%02x at offset %d: %w", op, in.start, err)
	}
	in.end = r.p
	return in, nil
}

// blockType skips a blocktype: 0x40 (empty), a one-byte value type (0x40..0x7F read as a
// negative s7), a reference type 0x63/0x64 heaptype, or a non-negative s33 type index.
func (w *walker) blockType() error {
	r := &w.r
	if r.p >= len(r.b) {
		return errTruncated
	}
	c := r.b[r.p]
	switch {
	case c == 0x63 || c == 0x64:
		r.p++
		return r.skipLEB(5)
	case c&0xc0 == 0x40:
		r.p++
		return nil
	default:
		return r.skipLEB(5)
	}
}

// valType skips a value type (0x63/0x64 carry a heap type).
func (r *reader) valType() error {
	c, err := r.byte()
	if err != nil {
		return err
	}
	if c == 0x63 || c == 0x64 {
		return r.skipLEB(5)
	}
	return nil
}

// memarg skips align, the memory index when align has bit 6 set (multi-memory), and offset
// (up to 64 bits for memory64).
func (w *walker) memarg() error {
	r := &w.r
	align, err := r.u32()
	if err != nil {
		return err
	}
	if align&0x40 != 0 {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return r.skipLEB(10)
}

// catches skips the catch clauses of try_table: kind 0x00/0x01 tag label, 0x02/0x03 label.
func (w *walker) catches() error {
	r := &w.r
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		kind, err := r.byte()
		if err != nil {
			return err
		}
		switch kind {
		case 0x00, 0x01:
			if _, err := r.u32(); err != nil {
				return err
			}
		case 0x02, 0x03:
		default:
			return fmt.Errorf("bad catch kind 0x%02x", kind)
		}
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}

// misc skips the immediates of 0xFC sub-opcodes.
func (w *walker) misc(sub uint32) error {
	var n int // number of u32 immediates
	switch {
	case sub <= 7: // i32.trunc_sat_f32_s ... i64.trunc_sat_f64_u
	case sub == 8, sub == 10, sub == 12, sub == 14: // memory.init, memory.copy, table.init, table.copy
		n = 2
	case sub == 9, sub == 11, sub == 13, sub >= 15 && sub <= 17: // data.drop, memory.fill, elem.drop, table.grow/size/fill
		n = 1
	default:
		return fmt.Errorf("unsupported 0xfc sub-opcode %d", sub)
	}
	for ; n > 0; n-- {
		if _, err := w.r.u32(); err != nil {
			return err
		}
	}
	return nil
}

// simd skips the immediates of 0xFD sub-opcodes (fixed-width SIMD and relaxed SIMD).
func (w *walker) simd(sub uint32) error {
	switch {
	case sub <= 0x0b || sub == 0x5c || sub == 0x5d: // v128.load*, v128.store, v128.load*_zero
		return w.memarg()
	case sub == 0x0c || sub == 0x0d: // v128.const, i8x16.shuffle
		_, err := w.r.bytes(16)
		return err
	case sub >= 0x15 && sub <= 0x22: // extract_lane / replace_lane
		_, err := w.r.byte()
		return err
	case sub >= 0x54 && sub <= 0x5b: // v128.load*_lane / v128.store*_lane
		if err := w.memarg(); err != nil {
			return err
		}
		_, err := w.r.byte()
		return err
	case sub <= 0x113: // everything else has no immediate (relaxed SIMD ends at 0x113)
		return nil
	}
	return fmt.Errorf("unsupported 0xfd sub-opcode %d", sub)
}

// atomic skips the immediates of 0xFE sub-opcodes (threads).
func (w *walker) atomic(sub uint32) error {
	switch {
	case sub == 0x03: // atomic.fence
		c, err := w.r.byte()
		if err == nil && c != 0 {
			err = fmt.Errorf("atomic.fence: reserved byte 0x%02x", c)
		}
		return err
	case sub <= 0x02 || sub >= 0x10 && sub <= 0x4e:
		return w.memarg()
	}
	return fmt.Errorf("unsupported 0xfe sub-opcode %d", sub)
}
