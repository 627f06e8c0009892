package dylink

// The small modules the loader generates.

// growerModule exports grow(n) = table.grow(ref.null func, n) on the guest's function table:
// the host API of wazero has no way to grow a table.
var growerModule = func() []byte {
	w := newModuleWriter()
	w.section(secType, []byte{1, 0x60, 1, valI32, 1, valI32})
	imp := &writer{}
	imp.u32(1)
	imp.name(modEnv)
	imp.name(symTable)
	imp.byte(kindTable, valFuncref, 0, 0) // funcref, limits: min 0, no max
	w.section(secImport, imp.b)
	w.section(secFunction, []byte{1, 0})
	exp := &writer{}
	exp.u32(1)
	exp.name("grow")
	exp.byte(kindFunc, 0)
	w.section(secExport, exp.b)
	body := []byte{0, 0xd0, valFuncref, 0x20, 0, 0xfc, 0x0f, 0, 0x0b} // no locals; ref.null; local.get 0; table.grow 0; end
	code := &writer{}
	code.u32(1)
	code.u32(uint32(len(body)))
	code.byte(body...)
	w.section(secCode, code.b)
	return w.b
}()

type genGlobal struct {
	name    string
	mutable bool
	value   uint32
}

// genGlobals makes a module exporting i32 globals with the given values.
func genGlobals(gs []genGlobal) []byte {
	w := newModuleWriter()
	gl, ex := &writer{}, &writer{}
	gl.u32(uint32(len(gs)))
	ex.u32(uint32(len(gs)))
	for i, g := range gs {
		mut := byte(0)
		if g.mutable {
			mut = 1
		}
		gl.byte(valI32, mut, 0x41)
		gl.s32(int32(g.value))
		gl.byte(0x0b)
		ex.name(g.name)
		ex.byte(kindGlobal)
		ex.u32(uint32(i))
	}
	w.section(secGlobal, gl.b)
	w.section(secExport, ex.b)
	return w.b
}

type genImport struct {
	module, field string
	t             funcType
}

// genFixup makes a module that imports the guest's table and the functions fns and places
// the functions in the table from slot base on (an active element segment).
func genFixup(fns []genImport, base uint32) []byte {
	w := newModuleWriter()
	typeIdx := map[string]uint32{}
	types := &writer{}
	var nTypes uint32
	var tb []byte
	for _, f := range fns {
		if _, ok := typeIdx[f.t.key()]; ok {
			continue
		}
		typeIdx[f.t.key()] = nTypes
		nTypes++
		t := &writer{}
		t.byte(0x60)
		t.u32(uint32(len(f.t.params)))
		t.byte(f.t.params...)
		t.u32(uint32(len(f.t.results)))
		t.byte(f.t.results...)
		tb = append(tb, t.b...)
	}
	types.u32(nTypes)
	types.byte(tb...)
	w.section(secType, types.b)
	imp := &writer{}
	imp.u32(uint32(len(fns) + 1))
	for _, f := range fns {
		imp.name(f.module)
		imp.name(f.field)
		imp.byte(kindFunc)
		imp.u32(typeIdx[f.t.key()])
	}
	imp.name(modEnv)
	imp.name(symTable)
	imp.byte(kindTable, valFuncref, 0, 0)
	w.section(secImport, imp.b)
	el := &writer{}
	el.u32(1)
	el.u32(0) // active, table 0, function indexes
	el.byte(0x41)
	el.s32(int32(base))
	el.byte(0x0b)
	el.u32(uint32(len(fns)))
	for i := range fns {
		el.u32(uint32(i))
	}
	w.section(secElement, el.b)
	return w.b
}
