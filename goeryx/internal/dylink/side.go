package dylink

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
)

// Bounds on what a side module may ask for. Memory is also bounded by the guest's own limit
// (it is allocated by the guest's allocator); these keep a forged dylink.0 from making the host
// plan absurd sizes.
const (
	MaxModuleBytes = 64 << 20
	maxMemSize     = 1 << 30
	maxMemAlign    = 16 // log2: 64 KiB
	maxTableSize   = 1 << 20
	maxImports     = 1 << 16
)

// Import module names of the tool-conventions ABI, and the names the rewritten module uses.
const (
	modEnv     = "env"
	modGOTMem  = "GOT.mem"
	modGOTFunc = "GOT.func"
	// modGOT is the per-load module of globals (memory and table bases, GOT entries) that
	// replaces the imports above; modSide names the side module in the fixup's imports.
	modGOT  = "eryx.got"
	modSide = "eryx.side"

	symMemoryBase    = "__memory_base"
	symTableBase     = "__table_base"
	symStackPointer  = "__stack_pointer"
	symMemory        = "memory"
	symTable         = "__indirect_function_table"
	symApplyRelocs   = "__wasm_apply_data_relocs"
	symCallCtors     = "__wasm_call_ctors"
	gotMemPrefix     = "mem."
	gotFuncPrefix    = "func."
	dylinkSectionKey = "dylink.0"
)

// funcType is a function signature in binary form.
type funcType struct{ params, results []byte }

func (t funcType) key() string { return string(t.params) + "\x00" + string(t.results) }

// importEntry is one import of the side module.
type importEntry struct {
	module, field string
	kind          byte
	typeIdx       uint32 // kindFunc
	mutable       bool   // kindGlobal
}

type exportEntry struct {
	kind  byte
	index uint32
}

// Module is a parsed, validated side module, ready to be instantiated any number of times.
// It does not depend on the instance it is loaded into.
type Module struct {
	Hash                 [32]byte
	MemSize, MemAlign    uint32 // bytes, log2
	TableSize, TableAlgn uint32
	Needed               []string

	imports  []importEntry
	exports  map[string]exportEntry
	types    []funcType
	funcType []uint32 // type index of every function (imported first)
	// globalInit is the i32.const initial value of every defined global (imported ones are
	// not in it), for the offsets of the module's own data symbols.
	globalInit   []int32
	nImportGlobs uint32
	// data is the module's data, relative to its memory base; the loader writes it into the
	// guest memory itself (only on the first load: an image already holds it, relocated).
	data []dataSegment
	// rewritten is the module with its GOT and base imports moved to modGOT and its data
	// section removed.
	rewritten []byte
}

type dataSegment struct {
	offset uint32
	bytes  []byte
}

// Problem is why a file cannot be loaded, in words for an error message.
type Problem struct{ Reason string }

func (p *Problem) Error() string { return p.Reason }

func problemf(format string, args ...any) error {
	return &Problem{Reason: fmt.Sprintf(format, args...)}
}

// Parse reads a side module: its dylink.0 section, imports, exports, types and data. It
// refuses what the loader does not support, with a Problem.
func Parse(b []byte) (*Module, error) {
	if len(b) > MaxModuleBytes {
		return nil, problemf("too large (%d bytes, the limit is %d)", len(b), MaxModuleBytes)
	}
	if len(b) < 4 || string(b[:4]) != "\x00asm" {
		return nil, problemf("not a WebAssembly module")
	}
	secs, err := splitSections(b)
	if err != nil {
		return nil, problemf("malformed WebAssembly module: %v", err)
	}
	if len(secs) == 0 || secs[0].id != secCustom || secs[0].name != dylinkSectionKey {
		return nil, problemf("a WebAssembly module but not a side module (no dylink.0 section)")
	}
	m := &Module{Hash: sha256.Sum256(b), exports: map[string]exportEntry{}}
	if err := m.parseDylink(secs[0].body); err != nil {
		return nil, problemf("malformed dylink.0 section: %v", err)
	}
	if len(m.Needed) > 0 {
		return nil, problemf("needs the shared libraries %s, which this guest does not load", strings.Join(m.Needed, ", "))
	}
	var memoryBaseGlobal, tableBaseGlobal int64 = -1, -1
	out := newModuleWriter()
	for _, s := range secs {
		r := &reader{b: s.body}
		switch s.id {
		case secCustom:
			if s.name == dylinkSectionKey {
				continue // consumed: it would only confuse a reader of the rewritten module
			}
		case secType:
			n := r.count()
			for i := uint32(0); i < n && r.err == nil; i++ {
				if r.byte() != 0x60 {
					r.fail(errors.New("unsupported type form"))
					break
				}
				p := r.bytes(r.count())
				res := r.bytes(r.count())
				m.types = append(m.types, funcType{params: p, results: res})
			}
		case secImport:
			n := r.count()
			if n > maxImports {
				return nil, problemf("too many imports (%d)", n)
			}
			w := &writer{}
			w.u32(n)
			globalIdx := uint32(0)
			for i := uint32(0); i < n && r.err == nil; i++ {
				e := importEntry{module: r.name(), field: r.name(), kind: r.byte()}
				start := r.off
				switch e.kind {
				case kindFunc:
					e.typeIdx = r.u32()
					if r.err == nil && int(e.typeIdx) >= len(m.types) {
						r.fail(errors.New("bad type index"))
					}
					m.funcType = append(m.funcType, e.typeIdx)
				case kindTable:
					r.byte()
					r.limits()
				case kindMemory:
					r.limits()
				case kindGlobal:
					r.byte()
					e.mutable = r.byte() == 1
					switch {
					case e.module == modEnv && e.field == symMemoryBase:
						memoryBaseGlobal = int64(globalIdx)
					case e.module == modEnv && e.field == symTableBase:
						tableBaseGlobal = int64(globalIdx)
					}
					globalIdx++
				case kindTag:
					return nil, problemf("uses WebAssembly exceptions (imports the tag '%s.%s'), which this guest does not support", e.module, e.field)
				default:
					r.fail(fmt.Errorf("unknown import kind %d", e.kind))
				}
				desc := r.b[start:r.off]
				if r.err != nil {
					break
				}
				mod, field := e.module, e.field
				switch {
				case mod == modEnv && (field == symMemoryBase || field == symTableBase):
					mod = modGOT
				case mod == modGOTMem:
					mod, field = modGOT, gotMemPrefix+field
				case mod == modGOTFunc:
					mod, field = modGOT, gotFuncPrefix+field
				case mod == modEnv:
				default:
					return nil, problemf("imports '%s' from the module '%s', which this guest does not provide", e.field, e.module)
				}
				w.name(mod)
				w.name(field)
				w.byte(e.kind)
				w.byte(desc...)
				m.imports = append(m.imports, e)
			}
			m.nImportGlobs = globalIdx
			if r.err == nil {
				out.section(secImport, w.b)
			}
			if r.err != nil {
				return nil, problemf("malformed import section: %v", r.err)
			}
			continue
		case secFunction:
			n := r.count()
			for i := uint32(0); i < n && r.err == nil; i++ {
				t := r.u32()
				if r.err == nil && int(t) >= len(m.types) {
					r.fail(errors.New("bad type index"))
				}
				m.funcType = append(m.funcType, t)
			}
		case secGlobal:
			n := r.count()
			for i := uint32(0); i < n && r.err == nil; i++ {
				vt := r.byte()
				r.byte() // mutability
				val, _, isGlobal, ok := r.constExpr()
				if vt != valI32 || isGlobal || !ok {
					val = 0 // not a data symbol's offset; never looked up as one
				}
				m.globalInit = append(m.globalInit, val)
			}
		case secExport:
			n := r.count()
			for i := uint32(0); i < n && r.err == nil; i++ {
				name := r.name()
				kind := r.byte()
				m.exports[name] = exportEntry{kind: kind, index: r.u32()}
			}
		case secStart:
			return nil, problemf("has a start function, which side modules must not have")
		case secElement:
			n := r.count()
			for i := uint32(0); i < n && r.err == nil; i++ {
				flags := r.u32()
				if flags != 0 {
					return nil, problemf("unsupported element segment (flags %d)", flags)
				}
				_, g, isGlobal, _ := r.constExpr()
				if !isGlobal || int64(g) != tableBaseGlobal {
					return nil, problemf("an element segment is not placed at __table_base")
				}
				k := r.count()
				for j := uint32(0); j < k && r.err == nil; j++ {
					r.u32()
				}
			}
		case secData:
			n := r.count()
			for i := uint32(0); i < n && r.err == nil; i++ {
				flags := r.u32()
				if flags != 0 {
					return nil, problemf("unsupported data segment (flags %d): passive or multi-memory data", flags)
				}
				_, g, isGlobal, ok := r.constExpr()
				if ok && (!isGlobal || int64(g) != memoryBaseGlobal) {
					return nil, problemf("a data segment is not placed at __memory_base")
				}
				off := uint32(0) // wasm-ld writes one segment for PIC data, at the base
				data := r.bytes(r.u32())
				if r.err == nil {
					if uint64(off)+uint64(len(data)) > uint64(m.MemSize) {
						return nil, problemf("a data segment lies outside the memory the dylink.0 section declares")
					}
					m.data = append(m.data, dataSegment{offset: off, bytes: data})
				}
			}
			if r.err != nil {
				return nil, problemf("malformed data section: %v", r.err)
			}
			continue // written by the loader
		case secDataCount:
			continue // with no data section, no count; memory.init needs passive data, refused above
		}
		if r.err != nil {
			return nil, problemf("malformed section %d: %v", s.id, r.err)
		}
		out.section(s.id, s.body)
	}
	if memoryBaseGlobal < 0 && len(m.data) > 0 {
		return nil, problemf("has data but does not import __memory_base (not built with -fPIC)")
	}
	m.rewritten = out.b
	return m, nil
}

// parseDylink reads the dylink.0 subsections (tool-conventions DynamicLinking.md).
func (m *Module) parseDylink(body []byte) error {
	r := &reader{b: body}
	r.name() // "dylink.0"
	for !r.done() {
		kind := r.byte()
		sub := &reader{b: r.bytes(r.u32())}
		if r.err != nil {
			break
		}
		switch kind {
		case 1: // WASM_DYLINK_MEM_INFO
			m.MemSize, m.MemAlign, m.TableSize, m.TableAlgn = sub.u32(), sub.u32(), sub.u32(), sub.u32()
		case 2: // WASM_DYLINK_NEEDED
			n := sub.count()
			for i := uint32(0); i < n && sub.err == nil; i++ {
				m.Needed = append(m.Needed, sub.name())
			}
		default: // export/import info (symbol flags): not needed by this loader
		}
		if sub.err != nil {
			return sub.err
		}
	}
	if r.err != nil {
		return r.err
	}
	switch {
	case m.MemSize > maxMemSize:
		return fmt.Errorf("memory size %d is over the limit %d", m.MemSize, maxMemSize)
	case m.MemAlign > maxMemAlign:
		return fmt.Errorf("memory alignment 2^%d is over the limit 2^%d", m.MemAlign, maxMemAlign)
	case m.TableSize > maxTableSize:
		return fmt.Errorf("table size %d is over the limit %d", m.TableSize, maxTableSize)
	case m.TableAlgn > 0:
		// wasm-ld writes 0; an aligned table base is not something this loader provides
		return fmt.Errorf("table alignment 2^%d is not supported", m.TableAlgn)
	}
	return nil
}

// exportedFunc returns the function index of an exported function.
func (m *Module) exportedFunc(name string) (uint32, bool) {
	e, ok := m.exports[name]
	if !ok || e.kind != kindFunc {
		return 0, false
	}
	return e.index, true
}

// exportedData returns the offset (from the memory base) of an exported data symbol: wasm-ld
// exports data symbols as immutable i32 globals holding it.
func (m *Module) exportedData(name string) (uint32, bool) {
	e, ok := m.exports[name]
	if !ok || e.kind != kindGlobal || e.index < m.nImportGlobs {
		return 0, false
	}
	i := e.index - m.nImportGlobs
	if int(i) >= len(m.globalInit) {
		return 0, false
	}
	return uint32(m.globalInit[i]), true
}

// ExportedFunctions lists the names of the exported functions (dlsym's candidates).
func (m *Module) exportedFunctions() []string {
	var out []string
	for name, e := range m.exports {
		if e.kind == kindFunc && !strings.HasPrefix(name, "__wasm_") && name != "_initialize" {
			out = append(out, name)
		}
	}
	return out
}
