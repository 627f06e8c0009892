package instrument

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/goeryx/goeryx/goeryx/internal/abi"
)

// ExportBudget is the export name of the appended budget global (mutable i32).
const ExportBudget = "eryx_budget"

// Stats describes one rewrite.
type Stats struct {
	Functions     int      // function bodies walked
	Loops         int      // loop headers instrumented
	SkippedLoops  int      // loop headers left alone in the skipped functions (InstrumentSkip)
	Segments      int      // fuel mode: straight-line segments charged (InstrumentFuel)
	Exits         int      // fuel mode: function exits that flush the pending charge
	TickFunc      uint32   // function index of the tick import the inserted code calls
	BudgetGlobal  uint32   // global index of the budget (exported as ExportBudget)
	DroppedCustom []string // names of the custom sections dropped because the rewrite invalidates them
}

// Instrument returns a copy of module in which every loop header decrements the exported i32
// global ExportBudget and calls the import abi.ImportModule.abi.ImportTick when the budget
// drops below zero (see the package comment). module must import that function with type
// () -> (). The input is not modified.
func Instrument(module []byte) ([]byte, *Stats, error) {
	return instrument(module, config{})
}

// EvalLoopFunctions are the functions of the goeryx runtime (runtime/, CPython 3.13) whose loop
// headers the engine leaves uninstrumented: InstrumentSkip(module, EvalLoopFunctions) is the
// engine's loop-header mode.
//
// _PyEval_EvalFrameDefault is CPython's bytecode interpreter: its dispatch is a wasm loop, so
// a budget check there runs once per bytecode, which cost +7..9.5% of CPU on bench/compute.py.
// The runtime ticks from CPython's own periodic check instead (runtime/patches/
// cpython-eval-tick.patch: CHECK_EVAL_BREAKER at RESUME, JUMP_BACKWARD and the CALL family,
// and RESUME_CHECK, count a C global down and call the tick import when it reaches 0). Every
// other loop inside the function is bounded by its operands (argument copies, stack unwinding),
// and every unbounded Python-level loop goes through one of those instructions; C code called
// from the interpreter (sum(range(...)), re, ...) keeps its instrumented loop headers.
var EvalLoopFunctions = []string{"_PyEval_EvalFrameDefault"}

// EvalTickFunction is the runtime function that ticks from CPython's periodic check
// (EvalLoopFunctions). InstrumentRuntime requires it, so that a runtime built without the
// patch is not run with an uninstrumented evaluation loop.
const EvalTickFunction = "_Py_EryxTick"

// InstrumentRuntime is the engine's loop-header mode for the goeryx runtime:
// InstrumentSkip(module, EvalLoopFunctions), after checking that the module defines
// EvalTickFunction.
func InstrumentRuntime(module []byte) ([]byte, *Stats, error) {
	m, err := parseModule(module)
	if err != nil {
		return nil, nil, fmt.Errorf("instrument: %w", err)
	}
	if _, err := m.definedFuncsNamed([]string{EvalTickFunction}); err != nil {
		return nil, nil, fmt.Errorf("instrument: the runtime does not tick from its evaluation loop (rebuild it with runtime/build.sh): %w", err)
	}
	return InstrumentSkip(module, EvalLoopFunctions)
}

// InstrumentSkip is Instrument, except that the loop headers of the functions named in skip
// (looked up in the module's name section, subsection 1) are left alone. It fails if a listed
// name is not the name of a function defined by the module (or the module has no name
// section): a renamed function must not silently lose its ticks nor keep its instrumentation.
func InstrumentSkip(module []byte, skip []string) ([]byte, *Stats, error) {
	return instrument(module, config{skip: skip})
}

// InstrumentSide is Instrument for a WebAssembly side module (an extension module loaded by
// goeryx/internal/dylink): it imports no tick of its own, so the import _eryx.tick is added
// (renumbering its functions). Its budget is its own ExportBudget global, which the engine sets
// with the runtime's: a C loop in an extension module ticks like the interpreter's.
func InstrumentSide(module []byte) ([]byte, *Stats, error) {
	return instrument(module, config{addTickImport: true})
}

// config holds the knobs that are not part of the product API.
type config struct {
	// addTickImport appends the import _eryx.tick (and, if needed, the type () -> ()) instead of
	// requiring it. Appending a function import shifts the index of every defined function, so
	// calls, ref.func, element segments, exports, start and the name section are renumbered.
	// Used by the tests to instrument third-party modules (the product runtime imports tick).
	addTickImport bool
	// budgetI64 makes the budget an i64 (for the cost comparison in the tests; the product
	// uses i32, see the package comment).
	budgetI64 bool
	// snippet, if set, replaces loopSnippet (code-shape experiments in the tests).
	snippet func(budget, tick uint32) []byte
	// fuel selects the fuel rewrite (InstrumentFuel, fuel.go) instead of the loop headers.
	fuel bool
	// fuelOracle selects the reference fuel rewrite (FuelOracle).
	fuelOracle bool
	// skip names the functions whose loop headers are left alone (InstrumentSkip; not with
	// fuel, which counts every instruction).
	skip []string
}

// Section ids.
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
	secTag       = 13
)

// sectionRank is the position of a known section in the required order (tags come between
// memory and global); 0 for custom and unknown ids.
var sectionRank = [...]int{
	secType: 1, secImport: 2, secFunction: 3, secTable: 4, secMemory: 5, secTag: 6, secGlobal: 7,
	secExport: 8, secStart: 9, secElement: 10, secDataCount: 11, secCode: 12, secData: 13,
}

type section struct {
	id      byte
	raw     []byte // the whole section: id, size and payload
	payload []byte
	name    string // custom sections only
}

var header = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// module is the parsed view the rewrite needs.
type module struct {
	sections []section
	byID     [14]*section

	funcImports   uint32 // number of imported functions
	globalImports uint32
	definedGlobal uint32
	emptyType     int64 // index of a () -> () type, -1 if none
	numTypes      uint32
	numFuncs      uint32   // defined functions (function section)
	emptyTypes    []bool   // per type: is it () -> ()
	typeParams    []uint32 // per type: number of parameters
	funcTypes     []uint32 // per defined function: type index
	tickFunc      int64    // function index of _eryx.tick, -1 if absent
	tickType      uint32
}

func parseSections(b []byte) ([]section, error) {
	if len(b) < 8 || !bytes.Equal(b[:4], header[:4]) {
		return nil, errors.New("not a wasm module (bad magic)")
	}
	if !bytes.Equal(b[4:8], header[4:8]) {
		return nil, fmt.Errorf("unsupported wasm binary version % x (components are not supported)", b[4:8])
	}
	r := reader{b: b, p: 8}
	var out []section
	for !r.eof() {
		start := r.p
		id, _ := r.byte()
		size, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("section header at offset %d: %w", start, err)
		}
		payload, err := r.bytes(int(size))
		if err != nil {
			return nil, fmt.Errorf("section %d at offset %d: size %d: %w", id, start, size, err)
		}
		s := section{id: id, raw: b[start:r.p], payload: payload}
		if id == secCustom {
			pr := reader{b: payload}
			n, err := pr.name()
			if err != nil {
				return nil, fmt.Errorf("custom section at offset %d: name: %w", start, err)
			}
			s.name = string(n)
		} else if int(id) >= len(sectionRank) || sectionRank[id] == 0 {
			return nil, fmt.Errorf("unknown section id %d at offset %d", id, start)
		}
		out = append(out, s)
	}
	return out, nil
}

func parseModule(b []byte) (*module, error) {
	secs, err := parseSections(b)
	if err != nil {
		return nil, err
	}
	m := &module{sections: secs, emptyType: -1, tickFunc: -1}
	lastRank := 0
	for i := range m.sections {
		s := &m.sections[i]
		if s.id == secCustom {
			continue
		}
		if m.byID[s.id] != nil {
			return nil, fmt.Errorf("duplicate section id %d", s.id)
		}
		if sectionRank[s.id] < lastRank {
			return nil, fmt.Errorf("section id %d out of order", s.id)
		}
		lastRank = sectionRank[s.id]
		m.byID[s.id] = s
	}
	if err := m.parseTypes(); err != nil {
		return nil, fmt.Errorf("type section: %w", err)
	}
	if err := m.parseImports(); err != nil {
		return nil, fmt.Errorf("import section: %w", err)
	}
	if s := m.byID[secGlobal]; s != nil {
		r := reader{b: s.payload}
		if m.definedGlobal, err = r.u32(); err != nil {
			return nil, fmt.Errorf("global section: %w", err)
		}
	}
	if s := m.byID[secFunction]; s != nil {
		r := reader{b: s.payload}
		if m.numFuncs, err = r.u32(); err != nil {
			return nil, fmt.Errorf("function section: %w", err)
		}
		m.funcTypes = make([]uint32, 0, min(m.numFuncs, 1<<16))
		for i := uint32(0); i < m.numFuncs; i++ {
			t, err := r.u32()
			if err != nil {
				return nil, fmt.Errorf("function section: %w", err)
			}
			m.funcTypes = append(m.funcTypes, t)
		}
	}
	if m.byID[secCode] == nil && m.numFuncs > 0 {
		return nil, fmt.Errorf("%d functions declared but no code section", m.numFuncs)
	}
	if s := m.byID[secExport]; s != nil {
		if err := checkExports(s.payload); err != nil {
			return nil, fmt.Errorf("export section: %w", err)
		}
	}
	return m, nil
}

// parseTypes records the number of types and the first () -> () type.
func (m *module) parseTypes() error {
	s := m.byID[secType]
	if s == nil {
		return nil
	}
	r := reader{b: s.payload}
	n, err := r.u32()
	if err != nil {
		return err
	}
	m.numTypes = n
	m.emptyTypes = make([]bool, 0, min(n, 1<<16))
	for i := uint32(0); i < n; i++ {
		form, err := r.byte()
		if err != nil {
			return err
		}
		if form != 0x60 {
			return fmt.Errorf("type %d: unsupported type form 0x%02x (GC types are not supported)", i, form)
		}
		var counts [2]uint32
		for k := range counts {
			if counts[k], err = r.u32(); err != nil {
				return err
			}
			for j := uint32(0); j < counts[k]; j++ {
				if err := r.valType(); err != nil {
					return fmt.Errorf("type %d: %w", i, err)
				}
			}
		}
		empty := counts == [2]uint32{}
		m.emptyTypes = append(m.emptyTypes, empty)
		m.typeParams = append(m.typeParams, counts[0])
		if empty && m.emptyType < 0 {
			m.emptyType = int64(i)
		}
	}
	return trailing(&r)
}

func trailing(r *reader) error {
	if !r.eof() {
		return fmt.Errorf("%d unexpected bytes at the end", len(r.b)-r.p)
	}
	return nil
}

// typeIsEmpty reports whether type idx is () -> ().
func (m *module) typeIsEmpty(idx uint32) bool {
	return idx < uint32(len(m.emptyTypes)) && m.emptyTypes[idx]
}

func (m *module) parseImports() error {
	s := m.byID[secImport]
	if s == nil {
		return nil
	}
	r := reader{b: s.payload}
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		mod, err := r.name()
		if err != nil {
			return err
		}
		field, err := r.name()
		if err != nil {
			return err
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		isTick := string(mod) == abi.ImportModule && string(field) == abi.ImportTick
		if isTick && kind != 0x00 {
			return fmt.Errorf("%s.%s is not a function import", abi.ImportModule, abi.ImportTick)
		}
		switch kind {
		case 0x00: // func: typeidx
			t, err := r.u32()
			if err != nil {
				return err
			}
			if isTick {
				if m.tickFunc >= 0 {
					return fmt.Errorf("%s.%s imported twice", abi.ImportModule, abi.ImportTick)
				}
				m.tickFunc, m.tickType = int64(m.funcImports), t
			}
			m.funcImports++
		case 0x01: // table: reftype limits
			if err := r.valType(); err != nil {
				return err
			}
			if err := skipLimits(&r); err != nil {
				return err
			}
		case 0x02: // memory: limits
			if err := skipLimits(&r); err != nil {
				return err
			}
		case 0x03: // global: valtype mut
			if err := r.valType(); err != nil {
				return err
			}
			if _, err := r.byte(); err != nil {
				return err
			}
			m.globalImports++
		case 0x04: // tag: attribute typeidx
			if _, err := r.byte(); err != nil {
				return err
			}
			if _, err := r.u32(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("import %d: unknown kind 0x%02x", i, kind)
		}
	}
	return trailing(&r)
}

// skipLimits skips limits: flags (bit 0: has max; bit 1: shared; bit 2: 64-bit), min, [max].
func skipLimits(r *reader) error {
	flags, err := r.byte()
	if err != nil {
		return err
	}
	if flags > 0x07 {
		return fmt.Errorf("bad limits flags 0x%02x", flags)
	}
	if err := r.skipLEB(10); err != nil {
		return err
	}
	if flags&1 != 0 {
		return r.skipLEB(10)
	}
	return nil
}

// checkExports fails if ExportBudget is already exported.
func checkExports(p []byte) error {
	r := reader{b: p}
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		name, err := r.name()
		if err != nil {
			return err
		}
		if string(name) == ExportBudget {
			return fmt.Errorf("the module already exports %q (instrumented twice?)", ExportBudget)
		}
		if _, err := r.byte(); err != nil {
			return err
		}
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return trailing(&r)
}

// dropCustom reports whether a custom section holds code offsets (or relocations) that the
// rewrite invalidates: DWARF, source maps, external debug info, linker metadata.
func dropCustom(name string) bool {
	return strings.HasPrefix(name, ".debug_") || strings.HasPrefix(name, "reloc.") ||
		name == "sourceMappingURL" || name == "external_debug_info" || name == "linking"
}

func instrument(in []byte, cfg config) ([]byte, *Stats, error) {
	m, err := parseModule(in)
	if err != nil {
		return nil, nil, fmt.Errorf("instrument: %w", err)
	}
	rw := &rewriter{m: m, stats: &Stats{}}
	if cfg.addTickImport {
		if m.tickFunc >= 0 {
			return nil, nil, fmt.Errorf("instrument: the module already imports %s.%s", abi.ImportModule, abi.ImportTick)
		}
		rw.shiftFrom = m.funcImports
		rw.shift = true
		m.tickFunc = int64(m.funcImports)
		if m.emptyType >= 0 {
			m.tickType = uint32(m.emptyType)
		} else {
			m.tickType = m.numTypes
			rw.addType = true
		}
	} else {
		if m.tickFunc < 0 {
			return nil, nil, fmt.Errorf("instrument: the module does not import %s.%s", abi.ImportModule, abi.ImportTick)
		}
		if !m.typeIsEmpty(m.tickType) {
			return nil, nil, fmt.Errorf("instrument: %s.%s must have type () -> ()", abi.ImportModule, abi.ImportTick)
		}
	}
	if len(cfg.skip) > 0 {
		if cfg.fuel || cfg.fuelOracle || cfg.addTickImport {
			return nil, nil, errors.New("instrument: skipping functions is only for the loop-header mode of a module that imports tick")
		}
		if rw.skip, err = m.definedFuncsNamed(cfg.skip); err != nil {
			return nil, nil, fmt.Errorf("instrument: %w", err)
		}
	}
	rw.stats.TickFunc = uint32(m.tickFunc)
	rw.stats.BudgetGlobal = m.globalImports + m.definedGlobal
	rw.budgetI64 = cfg.budgetI64
	rw.fuel, rw.fuelOracle = cfg.fuel || cfg.fuelOracle, cfg.fuelOracle
	rw.loopSnippet = loopSnippet(rw.stats.BudgetGlobal, rw.stats.TickFunc, cfg.budgetI64)
	if cfg.snippet != nil {
		rw.loopSnippet = cfg.snippet(rw.stats.BudgetGlobal, rw.stats.TickFunc)
	}
	out, err := rw.run(in)
	if err != nil {
		return nil, nil, fmt.Errorf("instrument: %w", err)
	}
	return out, rw.stats, nil
}

// loopSnippet is the code inserted at the start of every loop body (i64 instead of i32 for the
// comparison variant):
//
//	global.get $budget
//	i32.const 1
//	i32.sub
//	global.set $budget
//	global.get $budget
//	i32.const 0
//	i32.lt_s
//	if
//	  call $tick
//	end
//
// It is stack-neutral and self-contained, so the branch depths of the surrounding code and the
// loop's parameters (multi-value) are untouched. wazero forwards the stored value to the second
// global.get (same basic block), so it costs one load, one store, a compare and a branch.
func loopSnippet(budget, tick uint32, i64 bool) []byte {
	cnst, sub, lts := byte(opI32Const), byte(opI32Sub), byte(opI32LtS)
	if i64 {
		cnst, sub, lts = opI64Const, opI64Sub, opI64LtS
	}
	b := []byte{opGlobalGet}
	b = appendU32(b, budget)
	b = append(b, cnst, 1, sub, opGlobalSet)
	b = appendU32(b, budget)
	b = append(b, opGlobalGet)
	b = appendU32(b, budget)
	b = append(b, cnst, 0, lts, opIf, blockTypeVoid, opCall)
	b = appendU32(b, tick)
	return append(b, opEnd)
}

type rewriter struct {
	m           *module
	stats       *Stats
	loopSnippet []byte

	budgetI64  bool
	fuel       bool            // fuel rewrite (fuel.go)
	fuelOracle bool            // the reference fuel rewrite
	shift      bool            // renumber functions (an import was appended)
	shiftFrom  uint32          // first function index to shift by one
	addType    bool            // append the type () -> ()
	skip       map[uint32]bool // defined-function (body) indices whose loops are left alone

	scratch []byte
	// fuelIns and fuelStack are fuelBody's buffers, reused across bodies.
	fuelIns   []insertion
	fuelStack []ctlFrame
}

func (rw *rewriter) fn(idx uint32) uint32 {
	if rw.shift && idx >= rw.shiftFrom {
		return idx + 1
	}
	return idx
}

// run emits the output module section by section, synthesizing the sections the rewrite needs
// but the input lacks at their place in the section order.
func (rw *rewriter) run(in []byte) ([]byte, error) {
	m := rw.m
	out := make([]byte, 0, len(in)+len(in)/16+64)
	out = append(out, header...)
	var missing []byte // ids of sections to synthesize, in section order
	if rw.addType && m.byID[secType] == nil {
		missing = append(missing, secType)
	}
	if rw.shift && m.byID[secImport] == nil {
		missing = append(missing, secImport)
	}
	if m.byID[secGlobal] == nil {
		missing = append(missing, secGlobal)
	}
	if m.byID[secExport] == nil {
		missing = append(missing, secExport)
	}
	var err error
	for i := range m.sections {
		s := &m.sections[i]
		if s.id != secCustom {
			for len(missing) > 0 && sectionRank[missing[0]] < sectionRank[s.id] {
				if out, err = rw.section(out, missing[0], nil); err != nil {
					return nil, err
				}
				missing = missing[1:]
			}
		}
		if out, err = rw.section(out, s.id, s); err != nil {
			return nil, err
		}
	}
	for _, id := range missing {
		if out, err = rw.section(out, id, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// section appends the (rewritten) section id; s is nil for a section to synthesize.
func (rw *rewriter) section(out []byte, id byte, s *section) ([]byte, error) {
	var payload []byte
	if s != nil {
		payload = s.payload
	}
	var (
		p   []byte
		err error
	)
	switch id {
	case secCustom:
		switch {
		case dropCustom(s.name):
			rw.stats.DroppedCustom = append(rw.stats.DroppedCustom, s.name)
			return out, nil
		case s.name == "name" && rw.shift:
			if p, err = rw.nameSection(s.payload); err != nil {
				// A malformed name section is not worth failing over; drop it.
				rw.stats.DroppedCustom = append(rw.stats.DroppedCustom, s.name)
				return out, nil
			}
		default:
			return append(out, s.raw...), nil
		}
	case secType:
		if !rw.addType {
			return append(out, s.raw...), nil
		}
		p, err = appendVecEntry(payload, []byte{0x60, 0, 0})
	case secImport:
		if !rw.shift {
			return append(out, s.raw...), nil
		}
		e := appendName(nil, abi.ImportModule)
		e = appendName(e, abi.ImportTick)
		e = append(e, 0x00)
		e = appendU32(e, rw.m.tickType)
		p, err = appendVecEntry(payload, e)
	case secGlobal:
		if rw.shift && payload != nil { // nil: the section is synthesized (the module had none)
			if payload, err = rw.globals(payload); err != nil {
				return nil, fmt.Errorf("global section: %w", err)
			}
		}
		// (global (mut i32) (i32.const 0)): a fresh instance ticks at its first loop header.
		g := []byte{0x7f, 0x01, opI32Const, 0x00, opEnd}
		if rw.budgetI64 {
			g = []byte{0x7e, 0x01, opI64Const, 0x00, opEnd}
		}
		p, err = appendVecEntry(payload, g)
	case secExport:
		if rw.shift && payload != nil {
			if payload, err = rw.exports(payload); err != nil {
				return nil, fmt.Errorf("export section: %w", err)
			}
		}
		e := appendName(nil, ExportBudget)
		e = append(e, 0x03)
		e = appendU32(e, rw.stats.BudgetGlobal)
		p, err = appendVecEntry(payload, e)
	case secStart:
		if !rw.shift {
			return append(out, s.raw...), nil
		}
		r := reader{b: payload}
		f, err := r.u32()
		if err == nil {
			err = trailing(&r)
		}
		if err != nil {
			return nil, fmt.Errorf("start section: %w", err)
		}
		p = appendU32(nil, rw.fn(f))
	case secElement:
		if !rw.shift {
			return append(out, s.raw...), nil
		}
		p, err = rw.elements(payload)
	case secCode:
		p, err = rw.code(payload)
	default:
		return append(out, s.raw...), nil
	}
	if err != nil {
		return nil, fmt.Errorf("section %d: %w", id, err)
	}
	out = append(out, id)
	out = appendU32(out, uint32(len(p)))
	return append(out, p...), nil
}

// appendVecEntry returns a copy of the vector payload (count, entries; empty for a new
// section) with one more entry at the end.
func appendVecEntry(payload, entry []byte) ([]byte, error) {
	var n uint32
	r := reader{b: payload}
	if len(payload) > 0 {
		var err error
		if n, err = r.u32(); err != nil {
			return nil, err
		}
	}
	p := make([]byte, 0, len(payload)+len(entry)+5)
	p = appendU32(p, n+1)
	p = append(p, payload[r.p:]...)
	return append(p, entry...), nil
}

// code rewrites the code section.
func (rw *rewriter) code(payload []byte) ([]byte, error) {
	out := make([]byte, 0, len(payload)+len(payload)/8)
	count := func(n uint32) error {
		if n != rw.m.numFuncs {
			return fmt.Errorf("%d functions declared, %d bodies", rw.m.numFuncs, n)
		}
		out = appendU32(out, n)
		return nil
	}
	err := forEachBody(payload, count, func(i uint32, body []byte) (bool, error) {
		var err error
		if rw.fuel {
			rw.scratch, err = rw.fuelBody(rw.scratch[:0], body, i)
		} else {
			rw.scratch, err = rw.body(rw.scratch[:0], body, rw.skip[i])
		}
		if err != nil {
			return false, fmt.Errorf("function %d (body %d): %w", rw.m.funcImports+i, i, err)
		}
		out = appendU32(out, uint32(len(rw.scratch)))
		out = append(out, rw.scratch...)
		rw.stats.Functions++
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// forEachBody reads the code section payload p: it passes the number of bodies to count (if
// not nil), then each body (locals and expression) to each, in order, until each says stop.
func forEachBody(p []byte, count func(n uint32) error, each func(i uint32, body []byte) (stop bool, err error)) error {
	r := reader{b: p}
	n, err := r.u32()
	if err != nil {
		return err
	}
	if count != nil {
		if err := count(n); err != nil {
			return err
		}
	}
	for i := uint32(0); i < n; i++ {
		size, err := r.u32()
		if err != nil {
			return fmt.Errorf("body %d: %w", i, err)
		}
		body, err := r.bytes(int(size))
		if err != nil {
			return fmt.Errorf("body %d: %w", i, err)
		}
		if stop, err := each(i, body); stop || err != nil {
			return err
		}
	}
	return trailing(&r)
}

// body appends the rewritten function body (locals and expression, without the size).
// With skipLoops, the loop headers are counted (Stats.SkippedLoops) but not instrumented.
func (rw *rewriter) body(out, body []byte, skipLoops bool) ([]byte, error) {
	w := walker{r: reader{b: body}}
	if err := w.skipLocals(); err != nil {
		return nil, err
	}
	last := 0 // body[last:] is not copied yet
	for !w.done() {
		in, err := w.next()
		if err != nil {
			return nil, err
		}
		switch in.op {
		case opLoop:
			if skipLoops {
				rw.stats.SkippedLoops++
				continue
			}
			out = append(out, body[last:in.end]...)
			out = append(out, rw.loopSnippet...)
			last = in.end
			rw.stats.Loops++
		case opCall, opReturnCall, opRefFunc:
			if rw.shift && in.idx >= rw.shiftFrom {
				out = append(out, body[last:in.imm]...)
				out = appendU32(out, in.idx+1)
				last = in.end
			}
		}
	}
	if err := trailing(&w.r); err != nil {
		return nil, err
	}
	return append(out, body[last:]...), nil
}

// expr appends the constant expression starting at r's position with function indices
// renumbered, and advances r past it.
func (rw *rewriter) expr(out []byte, r *reader) ([]byte, error) {
	w := newWalker(r.b, r.p)
	last := r.p
	for !w.done() {
		in, err := w.next()
		if err != nil {
			return nil, err
		}
		if in.op == opRefFunc && rw.shift && in.idx >= rw.shiftFrom {
			out = append(out, r.b[last:in.imm]...)
			out = appendU32(out, in.idx+1)
			last = in.end
		}
	}
	out = append(out, r.b[last:w.r.p]...)
	r.p = w.r.p
	return out, nil
}

// globals renumbers ref.func in global initializers.
func (rw *rewriter) globals(p []byte) ([]byte, error) {
	r := reader{b: p}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	out := appendU32(make([]byte, 0, len(p)+8), n)
	for i := uint32(0); i < n; i++ {
		start := r.p
		if err := r.valType(); err != nil {
			return nil, err
		}
		if _, err := r.byte(); err != nil {
			return nil, err
		}
		out = append(out, p[start:r.p]...)
		if out, err = rw.expr(out, &r); err != nil {
			return nil, fmt.Errorf("global %d: %w", i, err)
		}
	}
	return out, trailing(&r)
}

// exports renumbers function exports.
func (rw *rewriter) exports(p []byte) ([]byte, error) {
	r := reader{b: p}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	out := appendU32(make([]byte, 0, len(p)+8), n)
	for i := uint32(0); i < n; i++ {
		start := r.p
		if _, err := r.name(); err != nil {
			return nil, err
		}
		kind, err := r.byte()
		if err != nil {
			return nil, err
		}
		out = append(out, p[start:r.p]...)
		idx, err := r.u32()
		if err != nil {
			return nil, err
		}
		if kind == 0x00 {
			idx = rw.fn(idx)
		}
		out = appendU32(out, idx)
	}
	return out, trailing(&r)
}

// elements renumbers the function indices of element segments (all eight encodings).
func (rw *rewriter) elements(p []byte) ([]byte, error) {
	r := reader{b: p}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	out := appendU32(make([]byte, 0, len(p)+len(p)/4), n)
	for i := uint32(0); i < n; i++ {
		flags, err := r.u32()
		if err != nil {
			return nil, err
		}
		if flags > 7 {
			return nil, fmt.Errorf("segment %d: bad flags %d", i, flags)
		}
		out = appendU32(out, flags)
		if flags&0x02 != 0 && flags&0x01 == 0 { // explicit table index (2, 6)
			t, err := r.u32()
			if err != nil {
				return nil, err
			}
			out = appendU32(out, t)
		}
		if flags&0x01 == 0 { // active: offset expression (0, 2, 4, 6)
			if out, err = rw.expr(out, &r); err != nil {
				return nil, fmt.Errorf("segment %d offset: %w", i, err)
			}
		}
		if flags&0x03 != 0 { // elemkind (1, 2, 3) or reftype (5, 6, 7)
			start := r.p
			if flags&0x04 != 0 {
				err = r.valType()
			} else {
				_, err = r.byte()
			}
			if err != nil {
				return nil, err
			}
			out = append(out, p[start:r.p]...)
		}
		cnt, err := r.u32()
		if err != nil {
			return nil, err
		}
		out = appendU32(out, cnt)
		for j := uint32(0); j < cnt; j++ {
			if flags&0x04 != 0 {
				if out, err = rw.expr(out, &r); err != nil {
					return nil, fmt.Errorf("segment %d item %d: %w", i, j, err)
				}
				continue
			}
			f, err := r.u32()
			if err != nil {
				return nil, err
			}
			out = appendU32(out, rw.fn(f))
		}
	}
	return out, trailing(&r)
}

// nameSection renumbers the function names (subsection 1), local names (2) and label names (3).
// Other subsections index types, tables, memories, globals, segments: unchanged.
func (rw *rewriter) nameSection(p []byte) ([]byte, error) {
	r := reader{b: p}
	if _, err := r.name(); err != nil {
		return nil, err
	}
	out := append(make([]byte, 0, len(p)+16), p[:r.p]...)
	for !r.eof() {
		id, _ := r.byte()
		sub, err := r.name()
		if err != nil {
			return nil, err
		}
		if id < 1 || id > 3 {
			out = append(out, id)
			out = appendU32(out, uint32(len(sub)))
			out = append(out, sub...)
			continue
		}
		sr := reader{b: sub}
		n, err := sr.u32()
		if err != nil {
			return nil, err
		}
		q := appendU32(make([]byte, 0, len(sub)+8), n)
		for i := uint32(0); i < n; i++ {
			f, err := sr.u32()
			if err != nil {
				return nil, err
			}
			q = appendU32(q, rw.fn(f))
			start := sr.p
			if id == 1 {
				_, err = sr.name()
			} else { // indirect name map: vec(idx name)
				var m uint32
				if m, err = sr.u32(); err == nil {
					for j := uint32(0); j < m && err == nil; j++ {
						if _, err = sr.u32(); err == nil {
							_, err = sr.name()
						}
					}
				}
			}
			if err != nil {
				return nil, err
			}
			q = append(q, sub[start:sr.p]...)
		}
		if err := trailing(&sr); err != nil {
			return nil, err
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(q)))
		out = append(out, q...)
	}
	return out, nil
}

// definedFuncsNamed maps the names in names to defined-function (body) indices through the
// name section's function names. Every name must be found, once, on a defined function.
func (m *module) definedFuncsNamed(names []string) (map[uint32]bool, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	found := make(map[string]uint32, len(names))
	for i := range m.sections {
		s := &m.sections[i]
		if s.id != secCustom || s.name != "name" {
			continue
		}
		r := reader{b: s.payload}
		if _, err := r.name(); err != nil {
			return nil, fmt.Errorf("name section: %w", err)
		}
		for !r.eof() {
			id, _ := r.byte()
			sub, err := r.name()
			if err != nil {
				return nil, fmt.Errorf("name section: %w", err)
			}
			if id != 1 {
				continue
			}
			sr := reader{b: sub}
			n, err := sr.u32()
			if err != nil {
				return nil, fmt.Errorf("name section: %w", err)
			}
			for j := uint32(0); j < n; j++ {
				f, err := sr.u32()
				if err != nil {
					return nil, fmt.Errorf("name section: %w", err)
				}
				name, err := sr.name()
				if err != nil {
					return nil, fmt.Errorf("name section: %w", err)
				}
				if !want[string(name)] {
					continue
				}
				if _, dup := found[string(name)]; dup {
					return nil, fmt.Errorf("function name %q appears twice in the name section", name)
				}
				found[string(name)] = f
			}
		}
	}
	out := make(map[uint32]bool, len(names))
	for _, n := range names {
		f, ok := found[n]
		if !ok {
			return nil, fmt.Errorf("function %q not found in the name section", n)
		}
		if f < m.funcImports || f-m.funcImports >= m.numFuncs {
			return nil, fmt.Errorf("function %q (index %d) is not a defined function", n, f)
		}
		out[f-m.funcImports] = true
	}
	return out, nil
}
