package dylink

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// guest is testdata/main.wasm instantiated with WASI: a stand-in for python.wasm.
type guest struct {
	rt    wazero.Runtime
	cache *Cache
	main  *Main
	wasm  []byte
	cm    wazero.CompiledModule
}

func newGuest(t *testing.T) *guest {
	t.Helper()
	ctx := context.Background()
	wasm, err := os.ReadFile("testdata/main.wasm")
	require.NoError(t, err)
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	cm, err := rt.CompileModule(ctx, wasm)
	require.NoError(t, err)
	main, err := ParseMain(wasm)
	require.NoError(t, err)
	require.True(t, main.CanLoad())
	return &guest{rt: rt, cache: NewCache(rt), main: main, wasm: wasm, cm: cm}
}

func (g *guest) instance(t *testing.T) (api.Module, *Linker) {
	t.Helper()
	ctx := context.Background()
	mod, err := g.rt.InstantiateModule(ctx, g.cm, wazero.NewModuleConfig().WithName("").WithStartFunctions("_initialize"))
	require.NoError(t, err)
	t.Cleanup(func() { mod.Close(ctx) })
	l := &Linker{Cache: g.cache, Main: g.main, Guest: mod, Alloc: func(size, align uint32) (uint32, error) {
		r, err := mod.ExportedFunction("test_alloc").Call(ctx, uint64(size+align))
		if err != nil {
			return 0, err
		}
		return (uint32(r[0]) + align - 1) &^ (align - 1), nil
	}}
	t.Cleanup(func() { l.Close(ctx) })
	return mod, l
}

func callSlot(t *testing.T, mod api.Module, slot uint32) int32 {
	t.Helper()
	r, err := mod.ExportedFunction("call_ptr").Call(context.Background(), uint64(slot))
	require.NoError(t, err)
	return int32(r[0])
}

func TestLoadSideModule(t *testing.T) {
	g := newGuest(t)
	side, err := os.ReadFile("testdata/side.so")
	require.NoError(t, err)
	mod, l := g.instance(t)
	lib, err := l.Load(context.Background(), "/x/side.so", side)
	require.NoError(t, err)
	fn, ok := lib.Symbol("side_fn")
	require.True(t, ok)
	// main data and functions, GOT.func with and without an existing slot, own function
	// pointers relocated, the constructor run, .bss zeroed (test_alloc fills with 0xAB)
	require.Equal(t, int32(60), callSlot(t, mod, fn))
	bump, _ := lib.Symbol("bump")
	require.Equal(t, int32(6), callSlot(t, mod, bump)) // writes main's counter
	require.Equal(t, int32(62), callSlot(t, mod, fn))  // counter counts twice
	// loading the same path again returns the same library
	again, err := l.Load(context.Background(), "/x/side.so", side)
	require.NoError(t, err)
	require.Same(t, lib, again)
}

// An image of the memory after the load, in a fresh instance, with the library replayed:
// the state (counter, the constructor's result) is the image's; nothing is re-initialised.
func TestReplayFromImage(t *testing.T) {
	g := newGuest(t)
	side, err := os.ReadFile("testdata/side.so")
	require.NoError(t, err)
	mod, l := g.instance(t)
	lib, err := l.Load(context.Background(), "/x/side.so", side)
	require.NoError(t, err)
	bump, _ := lib.Symbol("bump")
	callSlot(t, mod, bump) // counter 6
	// the constructor's result is changed in memory: a replay must not run it again
	ctorAt := lib.MemBase + mustData(t, lib.mod, "ctor_ran")
	require.True(t, mod.Memory().WriteUint32Le(ctorAt, 100))
	image, ok := mod.Memory().Read(0, mod.Memory().Size())
	require.True(t, ok)
	image = append([]byte(nil), image...)
	recs := l.Records()

	mod2, l2 := g.instance(t)
	if have := mod2.Memory().Size(); have < uint32(len(image)) {
		_, ok := mod2.Memory().Grow((uint32(len(image)) - have) / 65536)
		require.True(t, ok)
	}
	require.True(t, mod2.Memory().Write(0, image))
	require.NoError(t, l2.Replay(context.Background(), recs))
	lib2 := l2.Libraries()[0]
	require.Equal(t, lib.MemBase, lib2.MemBase)
	require.Equal(t, lib.TableBase, lib2.TableBase)
	fn, _ := lib2.Symbol("side_fn")
	// 6 + 6 + 6 + 2 - 1 + 1 + 100
	require.Equal(t, int32(120), callSlot(t, mod2, fn))
	require.Equal(t, uint32(100), binary.LittleEndian.Uint32(image[ctorAt:]))
}

func mustData(t *testing.T, m *Module, name string) uint32 {
	off, ok := m.exportedData(name)
	require.True(t, ok)
	return off
}

func TestRefused(t *testing.T) {
	g := newGuest(t)
	side, err := os.ReadFile("testdata/side.so")
	require.NoError(t, err)
	_, l := g.instance(t)
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"elf", append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 60)...), "not a WebAssembly module"},
		{"garbage", []byte("\x00asm\x01\x00\x00\x00\xff\xff\xff"), "malformed WebAssembly module: malformed section: truncated"},
		{"main", g.wasm, "a WebAssembly module but not a side module (no dylink.0 section)"},
		{"truncated", side[:len(side)/2], "malformed WebAssembly module: malformed section: truncated"},
		{"unknown import", renameImport(t, side, "apply", "nosym"), "imports the function 'nosym', which this guest runtime does not provide"},
		{"huge memory", withMemSize(t, side, 1<<31), "malformed dylink.0 section: memory size 2147483648 is over the limit 1073741824"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := l.Load(context.Background(), "/x/"+c.name+".so", c.data)
			require.Error(t, err)
			require.Equal(t, c.want, err.Error())
			var p *Problem
			require.ErrorAs(t, err, &p)
		})
	}
}

// renameImport returns side with the import field old renamed to new (same length).
func renameImport(t *testing.T, side []byte, old, new string) []byte {
	require.Equal(t, len(old), len(new[:len(old)]))
	out := append([]byte(nil), side...)
	i := indexOf(out, []byte{byte(len(old))}, []byte(old))
	require.GreaterOrEqual(t, i, 0)
	copy(out[i+1:], new[:len(old)])
	return out
}

func indexOf(b, prefix, s []byte) int {
	for i := 0; i+len(prefix)+len(s) <= len(b); i++ {
		if string(b[i:i+len(prefix)]) == string(prefix) && string(b[i+len(prefix):i+len(prefix)+len(s)]) == string(s) {
			return i
		}
	}
	return -1
}

// withMemSize rewrites the dylink.0 memory size (the first field of its first subsection).
func withMemSize(t *testing.T, side []byte, size uint32) []byte {
	secs, err := splitSections(side)
	require.NoError(t, err)
	body := secs[0].body
	r := &reader{b: body}
	r.name()
	r.byte()
	r.u32()
	sub := &reader{b: body[r.off:]}
	sub.u32()
	sub.u32()
	sub.u32()
	sub.u32()
	rest := body[r.off+sub.off:]
	w := &writer{}
	w.name("dylink.0")
	inner := &writer{}
	inner.u32(size)
	inner.u32(0)
	inner.u32(1)
	inner.u32(0)
	w.byte(1)
	w.u32(uint32(len(inner.b)))
	w.byte(inner.b...)
	w.byte(rest...)
	out := newModuleWriter()
	out.section(secCustom, w.b)
	for _, s := range secs[1:] {
		out.section(s.id, s.body)
	}
	return out.b
}

// Every library costs the host module instances and table slots: their number is bounded.
func TestTooManyLibraries(t *testing.T) {
	g := newGuest(t)
	side, err := os.ReadFile("testdata/side.so")
	require.NoError(t, err)
	_, l := g.instance(t)
	for i := 0; i < MaxLibraries; i++ {
		_, err := l.Load(context.Background(), fmt.Sprintf("/x/side%d.so", i), side)
		require.NoError(t, err)
	}
	_, err = l.Load(context.Background(), "/x/one-more.so", side)
	require.EqualError(t, err, "too many extension modules in one interpreter (the limit is 256)")
}
