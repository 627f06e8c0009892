package instrument

import (
	"errors"
	"fmt"
)

// Fuel: a deterministic instruction count (see the package comment, "Fuel").

// InstrumentFuel returns a copy of module instrumented for fuel metering: the exported i32
// global ExportBudget counts down one unit per executed instruction of the original code, and
// the tick import is called when it is negative at a loop header or a function exit (see the
// package comment). Like Instrument, it requires the tick import and does not modify its
// input.
func InstrumentFuel(module []byte) ([]byte, *Stats, error) {
	return instrument(module, config{fuel: true})
}

// FuelOracle is the reference for InstrumentFuel, for tests only: it decrements the budget
// before every single instruction (so it is exact by construction, and several times slower)
// and checks it at every loop header. For code that returns normally, both count the same.
func FuelOracle(module []byte) ([]byte, *Stats, error) {
	return instrument(module, config{fuelOracle: true})
}

// ctlKind is the kind of an open control construct.
type ctlKind uint8

const (
	ctlFunc ctlKind = iota
	ctlBlock
	ctlLoop
	ctlIf       // if, and its else
	ctlTry      // legacy try, and its catch / catch_all clauses
	ctlTryTable //
)

type ctlFrame struct {
	kind ctlKind
	// live: the construct was entered from code that can run (not after an unconditional
	// branch).
	live bool
	// targeted: a live branch (or catch clause) goes to the label, so for a block or try_table
	// the code after its end is a join point.
	targeted bool
}

// insKind is what fuelBody splices at a position of the body.
type insKind uint8

const (
	insEntry    insKind = iota // acc = n: the first segment of the function (acc is 0 there)
	insCharge                  // acc += n: a segment start
	insLoop                    // budget -= acc + n; acc = 0; tick if budget < 0: a loop header
	insExit                    // budget -= acc; tick if budget < 0: the function returns
	insExitKeep                // budget -= acc; acc = 0; tick if budget < 0: it may return
	insRenumber                // the function index at [pos, end) becomes n (addTickImport)
)

type insertion struct {
	pos, end int
	kind     insKind
	n        uint32
}

const (
	opThrow         = 0x08
	opRethrow       = 0x09
	opThrowRef      = 0x0a
	opReturnCallInd = 0x13
	opReturnCallRef = 0x15
	opCatchAll      = 0x19
	opBrOnNull      = 0xd5
	opBrOnNonNull   = 0xd6
	opLocalSet      = 0x21
	opI32Add        = 0x6a
)

// fuelBody appends the fuel-instrumented body (locals and expression, without the size) of
// defined function fn.
//
// Pass 1 walks the body and splits it into segments: maximal straight-line runs of
// instructions such that when the first runs, all run (unless a call in it does not return).
// A segment starts at function entry and after: loop (the header), if, else, catch,
// catch_all, br_if / br_on_null / br_on_non_null (the fall-through), and the end of an if, a
// try or a targeted block / try_table (a join point). It does not start after block, try,
// try_table or call (control goes on to the next instruction), nor after the end of a loop or
// of a block no branch targets (only the fall-through reaches it). After br, br_table,
// return, return_call*, throw*, unreachable, the code up to the end (or else, catch) of the
// construct is dead: it is neither counted nor charged. Each segment's count includes the
// instruction that ends it.
//
// Pass 2 copies the body with a new i32 local, acc, appended, and splices at each segment
// start the addition of its count to acc; at loop headers and function exits acc is moved to
// the budget global, which is then checked.
func (rw *rewriter) fuelBody(out, body []byte, fn uint32) ([]byte, error) {
	w := walker{r: reader{b: body}}
	groups, err := w.r.u32()
	if err != nil {
		return nil, fmt.Errorf("locals: %w", err)
	}
	groupsStart := w.r.p
	var nlocals uint64
	for i := uint32(0); i < groups; i++ {
		n, err := w.r.u32()
		if err != nil {
			return nil, fmt.Errorf("locals: %w", err)
		}
		nlocals += uint64(n)
		if err := w.r.valType(); err != nil {
			return nil, fmt.Errorf("locals: %w", err)
		}
	}
	localsEnd := w.r.p
	if fn >= uint32(len(rw.m.funcTypes)) || rw.m.funcTypes[fn] >= uint32(len(rw.m.typeParams)) {
		return nil, fmt.Errorf("function %d has no valid type", fn)
	}
	acc := uint64(rw.m.typeParams[rw.m.funcTypes[fn]]) + nlocals
	if acc >= 1<<32-1 {
		return nil, errors.New("too many locals")
	}
	if rw.fuelOracle {
		return rw.fuelOracleBody(out, body, w)
	}

	ins := rw.fuelIns[:0]
	stack := append(rw.fuelStack[:0], ctlFrame{kind: ctlFunc, live: true})
	live := true
	cur := -1 // index in ins of the current segment's charge, -1 when dead
	var count uint32
	begin := func(pos int, kind insKind, isLive bool) {
		live, count, cur = isLive, 0, -1
		if isLive {
			ins = append(ins, insertion{pos: pos, kind: kind})
			cur = len(ins) - 1
			rw.stats.Segments++
		}
	}
	finish := func() {
		if cur >= 0 {
			ins[cur].n = count
		}
		cur = -1
	}
	// target marks label l of a live branch; it reports whether l is the function's label
	// (the branch returns).
	target := func(l uint32) (bool, error) {
		if uint64(l) >= uint64(len(stack)) {
			return false, fmt.Errorf("branch to label %d at depth %d", l, len(stack))
		}
		i := len(stack) - 1 - int(l)
		stack[i].targeted = true
		return i == 0, nil
	}
	exit := func(pos int, kind insKind) {
		ins = append(ins, insertion{pos: pos, kind: kind})
		rw.stats.Exits++
	}

	w.depth = 1
	begin(localsEnd, insEntry, true)
	for !w.done() {
		in, err := w.next()
		if err != nil {
			return nil, err
		}
		if live {
			count++
		}
		switch in.op {
		case opBlock:
			stack = append(stack, ctlFrame{kind: ctlBlock, live: live})
		case opTry:
			stack = append(stack, ctlFrame{kind: ctlTry, live: live})
		case opTryTable:
			stack = append(stack, ctlFrame{kind: ctlTryTable, live: live})
			if live {
				labels, err := tryTableLabels(body, in.imm)
				if err != nil {
					return nil, fmt.Errorf("try_table at offset %d: %w", in.start, err)
				}
				// A catch label is relative to the try_table's context, without its own label
				// (as wazero validates it); marking the other reading too only adds a segment
				// start. A catch that branches to the function's label returns without the
				// flush (see the package comment).
				for _, l := range labels {
					if _, err := target(l + 1); err != nil {
						return nil, err
					}
					_, _ = target(l)
				}
			}
		case opLoop:
			stack = append(stack, ctlFrame{kind: ctlLoop, live: live})
			finish()
			begin(in.end, insLoop, live)
			if live {
				rw.stats.Loops++
			}
		case opIf:
			stack = append(stack, ctlFrame{kind: ctlIf, live: live})
			finish()
			begin(in.end, insCharge, live)
		case opElse, opCatch, opCatchAll:
			if len(stack) < 2 {
				return nil, fmt.Errorf("opcode 0x%02x outside a block at offset %d", in.op, in.start)
			}
			finish()
			begin(in.end, insCharge, stack[len(stack)-1].live)
		case opEnd, opDelegate:
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if len(stack) == 0 { // the final end
				if live {
					exit(in.start, insExit)
				}
				finish()
				break
			}
			if in.op == opDelegate || f.kind == ctlIf || f.kind == ctlTry || f.targeted {
				finish()
				begin(in.end, insCharge, f.live)
			}
		case opBr:
			if live {
				ret, err := target(in.idx)
				if err != nil {
					return nil, err
				}
				if ret {
					exit(in.start, insExit)
				}
			}
			finish()
			live = false
		case opBrIf, opBrOnNull, opBrOnNonNull:
			if live {
				ret, err := target(in.idx)
				if err != nil {
					return nil, err
				}
				if ret {
					exit(in.start, insExitKeep)
				}
			}
			finish()
			begin(in.end, insCharge, live)
		case opBrTable:
			if live {
				labels, err := brTableLabels(body, in.imm)
				if err != nil {
					return nil, err
				}
				ret := false
				for _, l := range labels {
					r, err := target(l)
					if err != nil {
						return nil, err
					}
					ret = ret || r
				}
				if ret {
					exit(in.start, insExitKeep)
				}
			}
			finish()
			live = false
		case opReturn, opReturnCall, opReturnCallInd, opReturnCallRef:
			if live {
				exit(in.start, insExit)
			}
			finish()
			live = false
		case opThrow, opRethrow, opThrowRef:
			// The exception may leave the function (flush) or be caught in it (acc restarts).
			if live {
				exit(in.start, insExitKeep)
			}
			finish()
			live = false
		case opUnreachable:
			finish()
			live = false
		}
		if rw.shift && (in.op == opCall || in.op == opReturnCall || in.op == opRefFunc) && in.idx >= rw.shiftFrom {
			ins = append(ins, insertion{pos: in.imm, end: in.end, kind: insRenumber, n: in.idx + 1})
		}
	}
	if err := trailing(&w.r); err != nil {
		return nil, err
	}
	rw.fuelIns, rw.fuelStack = ins, stack

	// Pass 2.
	out = appendU32(out, groups+1)
	out = append(out, body[groupsStart:localsEnd]...)
	out = append(out, 1, 0x7f) // acc: one i32
	a, g, tick := uint32(acc), rw.stats.BudgetGlobal, rw.stats.TickFunc
	last := localsEnd
	for _, x := range ins {
		out = append(out, body[last:x.pos]...)
		last = x.pos
		switch x.kind {
		case insEntry:
			out = appendI32Const(out, x.n)
			out = appendOp(out, opLocalSet, a)
		case insCharge:
			out = appendOp(out, opLocalGet, a)
			out = appendI32Const(out, x.n)
			out = append(out, opI32Add)
			out = appendOp(out, opLocalSet, a)
		case insLoop:
			out = appendOp(out, opGlobalGet, g)
			out = appendOp(out, opLocalGet, a)
			out = appendI32Const(out, x.n)
			out = append(out, opI32Add, opI32Sub)
			out = appendOp(out, opGlobalSet, g)
			out = append(out, opI32Const, 0)
			out = appendOp(out, opLocalSet, a)
			out = appendCheck(out, g, tick)
		case insExit, insExitKeep:
			out = appendOp(out, opGlobalGet, g)
			out = appendOp(out, opLocalGet, a)
			out = append(out, opI32Sub)
			out = appendOp(out, opGlobalSet, g)
			if x.kind == insExitKeep {
				out = append(out, opI32Const, 0)
				out = appendOp(out, opLocalSet, a)
			}
			out = appendCheck(out, g, tick)
		case insRenumber:
			out = appendU32(out, x.n)
			last = x.end
		}
	}
	return append(out, body[last:]...), nil
}

// fuelOracleBody is fuelBody for FuelOracle: budget -= 1 before every instruction, and a
// check after every loop header.
func (rw *rewriter) fuelOracleBody(out, body []byte, w walker) ([]byte, error) {
	out = append(out, body[:w.r.p]...)
	g, tick := rw.stats.BudgetGlobal, rw.stats.TickFunc
	w.depth = 1
	last := w.r.p
	for !w.done() {
		in, err := w.next()
		if err != nil {
			return nil, err
		}
		out = append(out, body[last:in.start]...)
		out = appendOp(out, opGlobalGet, g)
		out = append(out, opI32Const, 1, opI32Sub)
		out = appendOp(out, opGlobalSet, g)
		if rw.shift && (in.op == opCall || in.op == opReturnCall || in.op == opRefFunc) && in.idx >= rw.shiftFrom {
			out = append(out, body[in.start:in.imm]...)
			out = appendU32(out, in.idx+1)
		} else {
			out = append(out, body[in.start:in.end]...)
		}
		last = in.end
		if in.op == opLoop {
			out = appendCheck(out, g, tick)
			rw.stats.Loops++
		}
	}
	if err := trailing(&w.r); err != nil {
		return nil, err
	}
	return append(out, body[last:]...), nil
}

// appendCheck appends `global.get $budget  i32.const 0  i32.lt_s  if  call $tick  end`.
func appendCheck(out []byte, budget, tick uint32) []byte {
	out = appendOp(out, opGlobalGet, budget)
	out = append(out, opI32Const, 0, opI32LtS, opIf, blockTypeVoid)
	out = appendOp(out, opCall, tick)
	return append(out, opEnd)
}

func appendOp(out []byte, op byte, idx uint32) []byte {
	return appendU32(append(out, op), idx)
}

// appendI32Const appends i32.const n (n < 2^31: a segment never has that many instructions).
func appendI32Const(out []byte, n uint32) []byte {
	return appendS32(append(out, opI32Const), int32(n))
}

// brTableLabels returns the labels (targets and default) of the br_table whose immediates
// start at b[p:].
func brTableLabels(b []byte, p int) ([]uint32, error) {
	r := reader{b: b, p: p}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	labels := make([]uint32, 0, min(n+1, 1024))
	for i := uint32(0); i <= n; i++ {
		l, err := r.u32()
		if err != nil {
			return nil, err
		}
		labels = append(labels, l)
	}
	return labels, nil
}

// tryTableLabels returns the labels of the catch clauses of the try_table whose immediates
// start at b[p:].
func tryTableLabels(b []byte, p int) ([]uint32, error) {
	w := walker{r: reader{b: b, p: p}}
	if err := w.blockType(); err != nil {
		return nil, err
	}
	r := &w.r
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	var labels []uint32
	for i := uint32(0); i < n; i++ {
		kind, err := r.byte()
		if err != nil {
			return nil, err
		}
		if kind == 0x00 || kind == 0x01 {
			if _, err := r.u32(); err != nil {
				return nil, err
			}
		}
		l, err := r.u32()
		if err != nil {
			return nil, err
		}
		labels = append(labels, l)
	}
	return labels, nil
}
