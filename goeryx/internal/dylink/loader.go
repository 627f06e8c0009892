// Package dylink loads WebAssembly side modules (Python extension modules built with clang
// -fPIC -shared for wasm32-wasi) into a running guest, following the tool-conventions
// DynamicLinking ABI as Emscripten and Pyodide do, on wazero.
//
// The main module (python.wasm) exports its memory, its growable function table, its stack
// pointer and the symbols of libpython and libc. A side module imports them from "env", plus
// __memory_base/__table_base and GOT.mem/GOT.func globals that the loader computes. wazero
// resolves imports by module name, and the guest's instance is anonymous, so the loader binds
// the names itself (experimental.WithImportResolver): "env" is the guest's instance, and the
// computed globals live in a small generated module per load ("eryx.got"; the side module's
// imports are renamed to it once, when it is parsed, so that its compiled code is shared by
// every load). Function pointers the side module needs that are not yet in the table (its own
// exported functions, main functions never address-taken there) are placed by a second
// generated module ("fixup") with an active element segment, after the side module exists.
//
// A load is recorded (Record) so that an interpreter started from a memory image that already
// holds the side module's data, relocated and initialised, re-instantiates it at the same bases
// without writing its data or running its relocations and constructors again (Replay).
package dylink

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// Main is what the loader knows of the main module, computed once per compiled main module.
type Main struct {
	// slot is the table slot of every exported main function already in the table.
	slot map[string]uint32
	// exports names every export of the main module (for the factory's early check).
	exports map[string]byte
}

// ParseMain reads the main module's exports and the table slots its element segments fill.
func ParseMain(wasm []byte) (*Main, error) {
	secs, err := splitSections(wasm)
	if err != nil {
		return nil, err
	}
	m := &Main{slot: map[string]uint32{}, exports: map[string]byte{}}
	funcExport := map[uint32][]string{}
	var elems [][2]uint32 // function index, slot
	for _, s := range secs {
		r := &reader{b: s.body}
		switch s.id {
		case secExport:
			n := r.count()
			for i := uint32(0); i < n && r.err == nil; i++ {
				name := r.name()
				kind := r.byte()
				idx := r.u32()
				m.exports[name] = kind
				if kind == kindFunc {
					funcExport[idx] = append(funcExport[idx], name)
				}
			}
		case secElement:
			n := r.count()
			for i := uint32(0); i < n && r.err == nil; i++ {
				flags := r.u32()
				switch flags {
				case 0, 4: // active, table 0, offset; function indexes (0) or expressions (4)
					off, _, isGlobal, ok := r.constExpr()
					if !ok || isGlobal {
						return nil, errors.New("main module: unsupported element segment offset")
					}
					k := r.count()
					for j := uint32(0); j < k && r.err == nil; j++ {
						var f uint32
						if flags == 0 {
							f = r.u32()
						} else {
							op := r.byte()
							if op != 0xd2 { // ref.func
								r.fail(errors.New("unsupported element expression"))
								break
							}
							f = r.u32()
							r.byte() // end
						}
						elems = append(elems, [2]uint32{f, uint32(off) + j})
					}
				default:
					return nil, fmt.Errorf("main module: unsupported element segment flags %d", flags)
				}
			}
		}
		if r.err != nil {
			return nil, fmt.Errorf("main module: malformed section %d: %v", s.id, r.err)
		}
	}
	for _, e := range elems {
		for _, name := range funcExport[e[0]] {
			if _, dup := m.slot[name]; !dup {
				m.slot[name] = e[1]
			}
		}
	}
	return m, nil
}

// CanLoad says whether the main module is linked for side modules.
func (m *Main) CanLoad() bool {
	return m.exports[symTable] == kindTable && m.exports[symMemory] == kindMemory && m.exports[symStackPointer] == kindGlobal
}

// Check reports the first import of side that the main module cannot satisfy (the factory
// checks packages with it before any guest runs).
func (m *Main) Check(side *Module) error {
	if !m.CanLoad() {
		return problemf("this guest runtime is not linked for side modules")
	}
	for _, im := range side.imports {
		switch im.module {
		case modEnv:
			switch {
			case im.kind == kindMemory && im.field == symMemory, im.kind == kindTable && im.field == symTable,
				im.kind == kindGlobal && (im.field == symMemoryBase || im.field == symTableBase):
				continue
			}
			want := map[byte]string{kindFunc: "function", kindGlobal: "global", kindMemory: "memory", kindTable: "table"}[im.kind]
			if k, ok := m.exports[im.field]; !ok || k != im.kind {
				return problemf("imports the %s '%s', which this guest runtime does not provide", want, im.field)
			}
		case modGOTMem:
			if _, own := side.exportedData(im.field); !own && m.exports[im.field] != kindGlobal {
				return problemf("uses the data symbol '%s', which this guest runtime does not provide", im.field)
			}
		case modGOTFunc:
			if _, own := side.exportedFunc(im.field); !own && m.exports[im.field] != kindFunc {
				return problemf("uses the function '%s', which this guest runtime does not provide", im.field)
			}
		}
	}
	return nil
}

// Cache holds compiled side modules (and the generated modules of their loads) of one wazero
// runtime, by content hash.
type Cache struct {
	// Instrument, if set, rewrites every side module once, after parsing (the engine's
	// timeout instrumentation).
	Instrument func([]byte) ([]byte, error)
	rt         wazero.Runtime
	mu         sync.Mutex
	compiled   map[[32]byte]wazero.CompiledModule
	parsed     map[[32]byte]*Module
}

// maxCached bounds the compiled modules kept: beyond it, loads compile what they need again.
const maxCached = 1024

func NewCache(rt wazero.Runtime) *Cache {
	return &Cache{rt: rt, compiled: map[[32]byte]wazero.CompiledModule{}, parsed: map[[32]byte]*Module{}}
}

// Parse is the package's Parse, remembered by the file's hash.
func (c *Cache) Parse(b []byte) (*Module, error) {
	h := sha256.Sum256(b)
	c.mu.Lock()
	m := c.parsed[h]
	c.mu.Unlock()
	if m != nil {
		return m, nil
	}
	m, err := Parse(b)
	if err != nil {
		return nil, err
	}
	if c.Instrument != nil {
		if m.rewritten, err = c.Instrument(m.rewritten); err != nil {
			return nil, problemf("cannot instrument it: %v", err)
		}
	}
	c.mu.Lock()
	if len(c.parsed) < maxCached {
		c.parsed[h] = m
	}
	c.mu.Unlock()
	return m, nil
}

func (c *Cache) compile(ctx context.Context, b []byte) (wazero.CompiledModule, error) {
	h := sha256.Sum256(b)
	c.mu.Lock()
	cm := c.compiled[h]
	c.mu.Unlock()
	if cm != nil {
		return cm, nil
	}
	cm, err := c.rt.CompileModule(ctx, b)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if old := c.compiled[h]; old != nil {
		c.mu.Unlock()
		return old, nil
	}
	if len(c.compiled) < maxCached {
		c.compiled[h] = cm
	}
	c.mu.Unlock()
	return cm, nil
}

// Close frees the compiled modules.
func (c *Cache) Close(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cm := range c.compiled {
		cm.Close(ctx)
	}
	c.compiled = map[[32]byte]wazero.CompiledModule{}
}

// Record is what a load leaves behind for the image: enough to bind the same side module at
// the same place again.
type Record struct {
	Name      string   `json:"name"` // the guest path, for messages
	Bytes     []byte   `json:"-"`    // the file
	SHA256    [32]byte `json:"sha256"`
	MemBase   uint32   `json:"mem_base"`
	TableBase uint32   `json:"table_base"`
}

// Library is one loaded side module in one guest instance.
type Library struct {
	Record
	mod     *Module
	symbols map[string]uint32 // exported function → table slot (dlsym)
	insts   []api.Module
}

// Symbol returns the table slot (the C function pointer) of an exported function.
func (l *Library) Symbol(name string) (uint32, bool) {
	s, ok := l.symbols[name]
	return s, ok
}

// Linker loads side modules into one guest instance.
type Linker struct {
	Cache *Cache
	Main  *Main
	Guest api.Module
	// Alloc reserves size bytes of guest memory aligned to align (a power of two).
	Alloc func(size, align uint32) (uint32, error)
	slots uint64 // table slots added so far
	// OnModule, if set, is called with every side module instance, before its constructors.
	OnModule func(api.Module)
	libs     []*Library
}

// Libraries returns the loaded libraries, in load order.
func (l *Linker) Libraries() []*Library { return l.libs }

// Records returns the records of the loaded libraries, in load order.
func (l *Linker) Records() []Record {
	out := make([]Record, len(l.libs))
	for i, lib := range l.libs {
		out[i] = lib.Record
	}
	return out
}

// Per instance, what side modules may take of the host: each library is a few wazero module
// instances, and table slots are host memory that the guest's memory limit does not count.
const (
	MaxLibraries  = 256
	maxTableSlots = 1 << 20 // added to the guest's table, over all its libraries
)

// Load links the side module file b (named name) into the guest, runs its relocations and
// constructors, and returns it. A failed load leaves the guest's table grown and the memory
// reserved (unused); the caller reports it as an ImportError.
func (l *Linker) Load(ctx context.Context, name string, b []byte) (*Library, error) {
	for _, lib := range l.libs {
		if lib.Name == name {
			return lib, nil
		}
	}
	if len(l.libs) >= MaxLibraries {
		return nil, problemf("too many extension modules in one interpreter (the limit is %d)", MaxLibraries)
	}
	m, err := l.Cache.Parse(b)
	if err != nil {
		return nil, err
	}
	if err := l.Main.Check(m); err != nil {
		return nil, err
	}
	if l.slots+uint64(m.TableSize)+uint64(len(m.exports)) > maxTableSlots {
		return nil, problemf("the extension modules of this interpreter need more than %d function table slots", maxTableSlots)
	}
	var memBase uint32
	if m.MemSize > 0 {
		if memBase, err = l.Alloc(m.MemSize, 1<<m.MemAlign); err != nil {
			return nil, err
		}
	}
	lib := &Library{Record: Record{Name: name, Bytes: b, SHA256: m.Hash, MemBase: memBase}, mod: m}
	if err := l.bind(ctx, lib, true); err != nil {
		return nil, err
	}
	l.libs = append(l.libs, lib)
	return lib, nil
}

// Replay binds recorded libraries into a fresh instance started from an image taken after
// they were loaded.
func (l *Linker) Replay(ctx context.Context, recs []Record) error {
	for _, rec := range recs {
		m, err := l.Cache.Parse(rec.Bytes)
		if err != nil {
			return fmt.Errorf("%s: %v", rec.Name, err)
		}
		lib := &Library{Record: rec, mod: m}
		if err := l.bind(ctx, lib, false); err != nil {
			return fmt.Errorf("%s: %v", rec.Name, err)
		}
		l.libs = append(l.libs, lib)
	}
	return nil
}

// Close closes the modules of every library (the guest instance is closed by its owner).
func (l *Linker) Close(ctx context.Context) {
	for _, lib := range l.libs {
		for i := len(lib.insts) - 1; i >= 0; i-- {
			lib.insts[i].Close(ctx)
		}
	}
	l.libs = nil
}

// bind instantiates lib.mod against the guest at lib.MemBase; first says whether this is the
// first load (write the data, run relocations and constructors, choose the table base) or a
// replay (the table base must come out as recorded).
func (l *Linker) bind(ctx context.Context, lib *Library, first bool) (err error) {
	m := lib.mod
	defer func() {
		if err != nil {
			for i := len(lib.insts) - 1; i >= 0; i-- {
				lib.insts[i].Close(ctx)
			}
			lib.insts = nil
		}
	}()
	// Table slots: the module's own table, then one per function pointer to place.
	type extra struct {
		own  bool
		name string
	}
	var extras []extra
	extraSlot := map[string]uint32{} // "own:"/"main:" + name → index in extras
	addExtra := func(own bool, name string) uint32 {
		key := "main:" + name
		if own {
			key = "own:" + name
		}
		if i, ok := extraSlot[key]; ok {
			return i
		}
		extraSlot[key] = uint32(len(extras))
		extras = append(extras, extra{own, name})
		return uint32(len(extras) - 1)
	}
	own := m.exportedFunctions()
	sort.Strings(own)
	for _, name := range own {
		addExtra(true, name)
	}
	type got struct {
		field string
		value func(tableBase uint32) uint32
	}
	var gots []got
	for _, im := range m.imports {
		switch im.module {
		case modGOTMem:
			if off, ok := m.exportedData(im.field); ok {
				v := lib.MemBase + off
				gots = append(gots, got{gotMemPrefix + im.field, func(uint32) uint32 { return v }})
				continue
			}
			g := l.Guest.ExportedGlobal(im.field)
			if g == nil {
				return problemf("uses the data symbol '%s', which this guest runtime does not provide", im.field)
			}
			v := uint32(g.Get())
			gots = append(gots, got{gotMemPrefix + im.field, func(uint32) uint32 { return v }})
		case modGOTFunc:
			if _, ok := m.exportedFunc(im.field); ok {
				i := addExtra(true, im.field)
				gots = append(gots, got{gotFuncPrefix + im.field, func(tb uint32) uint32 { return tb + m.TableSize + i }})
				continue
			}
			if l.Guest.ExportedFunction(im.field) == nil {
				return problemf("uses the function '%s', which this guest runtime does not provide", im.field)
			}
			if s, ok := l.Main.slot[im.field]; ok {
				gots = append(gots, got{gotFuncPrefix + im.field, func(uint32) uint32 { return s }})
				continue
			}
			i := addExtra(false, im.field)
			gots = append(gots, got{gotFuncPrefix + im.field, func(tb uint32) uint32 { return tb + m.TableSize + i }})
		}
	}

	resolver := func(mods map[string]api.Module) context.Context {
		return experimental.WithImportResolver(ctx, func(name string) api.Module { return mods[name] })
	}
	env := map[string]api.Module{modEnv: l.Guest}
	tableBase, err := l.growTable(resolver(env), m.TableSize+uint32(len(extras)))
	if err != nil {
		return err
	}
	l.slots += uint64(m.TableSize) + uint64(len(extras))
	if !first && tableBase != lib.TableBase {
		return fmt.Errorf("the function table is not as when the image was taken (base %d, recorded %d)", tableBase, lib.TableBase)
	}
	lib.TableBase = tableBase

	// The per-load globals.
	globals := []genGlobal{{symMemoryBase, false, lib.MemBase}, {symTableBase, false, tableBase}}
	for _, g := range gots {
		globals = append(globals, genGlobal{g.field, true, g.value(tableBase)})
	}
	gotMod, err := l.instantiate(resolver(nil), genGlobals(globals))
	if err != nil {
		return fmt.Errorf("cannot instantiate its globals: %v", err)
	}
	lib.insts = append(lib.insts, gotMod)

	if first {
		mem := l.Guest.Memory()
		zeros := make([]byte, min(m.MemSize, 64<<10)) // the allocator's memory may be reused
		for off := uint32(0); off < m.MemSize; off += uint32(len(zeros)) {
			if !mem.Write(lib.MemBase+off, zeros[:min(uint32(len(zeros)), m.MemSize-off)]) {
				return errors.New("its memory lies outside the guest memory")
			}
		}
		for _, d := range m.data {
			if !mem.Write(lib.MemBase+d.offset, d.bytes) {
				return errors.New("its data lies outside the guest memory")
			}
		}
	}
	side, err := l.instantiate(resolver(map[string]api.Module{modEnv: l.Guest, modGOT: gotMod}), m.rewritten)
	if err != nil {
		return err
	}
	lib.insts = append(lib.insts, side)
	if l.OnModule != nil {
		l.OnModule(side)
	}

	if len(extras) > 0 {
		var fns []genImport
		for _, e := range extras {
			var def api.FunctionDefinition
			mod := modEnv
			if e.own {
				mod = modSide
				def = side.ExportedFunction(e.name).Definition()
			} else {
				def = l.Guest.ExportedFunction(e.name).Definition()
			}
			fns = append(fns, genImport{module: mod, field: e.name,
				t: funcType{params: valueTypes(def.ParamTypes()), results: valueTypes(def.ResultTypes())}})
		}
		fix, err := l.instantiate(resolver(map[string]api.Module{modEnv: l.Guest, modSide: side}),
			genFixup(fns, tableBase+m.TableSize))
		if err != nil {
			return fmt.Errorf("cannot place its function pointers: %v", err)
		}
		lib.insts = append(lib.insts, fix)
	}
	lib.symbols = map[string]uint32{}
	for _, name := range own {
		lib.symbols[name] = tableBase + m.TableSize + extraSlot["own:"+name]
	}
	if first {
		for _, fn := range []string{symApplyRelocs, symCallCtors} {
			if f := side.ExportedFunction(fn); f != nil {
				if _, err := f.Call(ctx); err != nil {
					return fmt.Errorf("%s failed: %w", fn, err)
				}
			}
		}
	}
	return nil
}

func valueTypes(ts []api.ValueType) []byte {
	out := make([]byte, len(ts))
	for i, t := range ts {
		out[i] = byte(t)
	}
	return out
}

func (l *Linker) instantiate(ctx context.Context, b []byte) (api.Module, error) {
	cm, err := l.Cache.compile(ctx, b)
	if err != nil {
		return nil, err
	}
	return l.Cache.rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions())
}

// growTable grows the guest's function table by n null entries and returns the first new slot.
func (l *Linker) growTable(ctx context.Context, n uint32) (uint32, error) {
	g, err := l.instantiate(ctx, growerModule)
	if err != nil {
		return 0, fmt.Errorf("cannot grow the function table: %v", err)
	}
	defer g.Close(ctx)
	res, err := g.ExportedFunction("grow").Call(ctx, uint64(n))
	if err != nil {
		return 0, fmt.Errorf("cannot grow the function table: %v", err)
	}
	if int32(res[0]) < 0 {
		return 0, errors.New("cannot grow the function table: the table is full")
	}
	return uint32(res[0]), nil
}
