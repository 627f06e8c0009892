package instrument

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/goeryx/goeryx/goeryx/internal/abi"
)

// Functions of the core test module (index 0 is the tick import).
const (
	fnCount = iota + 1
	fnNested
	fnMulti
	fnPair
	fnNoLoop
	fnDead
	fnSpin
)

var coreExports = []string{"", "count", "nested", "multi", "pair", "noloop", "dead", "spin"}

// coreModule has loops in every shape the rewrite must keep valid. extra sections are appended.
func coreModule(extra ...[]byte) []byte {
	types := sec(secType, vec(
		functype(nil, nil),                      // 0: () -> ()
		functype([]byte{i32}, []byte{i32}),      // 1: (i32) -> (i32)
		functype([]byte{i32, i32}, []byte{i32}), // 2: (i32 i32) -> (i32)
		functype(nil, []byte{i32, i32}),         // 3: () -> (i32 i32)
	))
	imports := sec(secImport, vec(funcImport(abi.ImportModule, abi.ImportTick, 0)))
	funcs := sec(secFunction, vec(u32(1), u32(1), u32(1), u32(1), u32(1), u32(1), u32(0)))
	var exps [][]byte
	for i := fnCount; i <= fnSpin; i++ {
		exps = append(exps, exportFunc(coreExports[i], uint32(i)))
	}
	code := sec(secCode, vec(
		// count(n): i = 0; do i++ while i < n; return i
		fbody([][2]byte{{1, i32}},
			oLoop, oEmpty,
			oLGet, 1, oI32Const, 1, oI32Add, oLSet, 1,
			oLGet, 1, oLGet, 0, oI32LtS, oBrIf, 0,
			oEnd,
			oLGet, 1),
		// nested(n): loops in blocks, br/br_if out of both loops, br_table into and out of the inner loop.
		fbody([][2]byte{{3, i32}}, // i=1 j=2 acc=3
			oBlock, oEmpty, // $exit
			oLoop, oEmpty, // $outer
			oLGet, 1, oLGet, 0, oI32GeS, oBrIf, 1, // i >= n: br $exit
			oI32Const, 0, oLSet, 2,
			oBlock, oEmpty, // $brk
			oLoop, oEmpty, // $inner
			oLGet, 2, oLGet, 1, oI32Const, 5, oI32Add, oI32GtS, oBrIf, 1, // j > i+5: br $brk
			oLGet, 3, oLGet, 2, oI32Add, oLSet, 3, // acc += j
			oLGet, 2, oI32Const, 1, oI32Add, oLSet, 2, // j++
			oBlock, oEmpty, // $sel
			oLGet, 2, oLGet, 1, oI32Mul, oI32Const, 4, oI32RemU,
			oBrTable, 4, 1, 0, 2, 1, 0, // [inner sel brk inner] default sel
			oEnd,
			oLGet, 2, oLGet, 1, oI32Const, 2, oI32Add, oI32LtS, oBrIf, 0, // j < i+2: br $inner
			oEnd,
			oEnd,
			oLGet, 1, oI32Const, 1, oI32Add, oLSet, 1, // i++
			oBr, 0, // br $outer
			oEnd,
			oEnd,
			oLGet, 3),
		// multi(n): a loop with two parameters and a result (type index block type), br_if with values.
		fbody([][2]byte{{1, i32}},
			oI32Const, 0, oLGet, 0,
			oLoop, 2,
			oLSet, 1, oLGet, 1, oI32Add, // acc += k
			oLGet, 1, oI32Const, 1, oI32Sub, oLTee, 1, // k-1
			oLGet, 1, oI32Const, 0, oI32GtS, oBrIf, 0,
			oDrop,
			oEnd),
		// pair(n): a multi-result block around a loop with a parameter.
		fbody(nil,
			oBlock, 3,
			oLGet, 0,
			oLoop, 1,
			oI32Const, 1, oI32Sub, oLTee, 0,
			oLGet, 0, oI32Const, 0, oI32GtS, oBrIf, 0,
			oEnd,
			oI32Const, 42,
			oEnd,
			oI32Add),
		// noloop(x) = 2x+1
		fbody(nil, oLGet, 0, oI32Const, 2, oI32Mul, oI32Const, 1, oI32Add),
		// dead(n): a loop in an if, then a loop in unreachable code after return.
		fbody(nil,
			oLGet, 0,
			oIf, oEmpty,
			oLoop, oEmpty, oLGet, 0, oI32Const, 1, oI32Sub, oLTee, 0, oBrIf, 0, oEnd,
			oEnd,
			oLGet, 0,
			oReturn,
			oLoop, oEmpty, oBr, 0, oEnd,
			oI32Const, 7),
		// spin(): loop forever.
		fbody(nil, oLoop, oEmpty, oBr, 0, oEnd),
	))
	return wasmModule(append([][]byte{types, imports, funcs, sec(secExport, vec(exps...)), code}, extra...)...)
}

// Go models of the test functions; they also count loop header executions.
func modelCount(n int32) (int32, int64) {
	var i int32
	var h int64
	for {
		h++
		i++
		if !(i < n) {
			return i, h
		}
	}
}

func modelNested(n int32) (int32, int64) {
	var i, j, acc int32
	var h int64
	for {
		h++
		if i >= n {
			return acc, h
		}
		j = 0
	inner:
		for {
			h++
			if j > i+5 {
				break
			}
			acc += j
			j++
			switch uint32(j*i) % 4 {
			case 0, 3:
				continue inner
			case 2:
				break inner
			}
			if j < i+2 {
				continue
			}
			break
		}
		i++
	}
}

func modelMulti(n int32) (int32, int64) {
	acc, k := int32(0), n
	var h int64
	for {
		h++
		acc += k
		k--
		if !(k > 0) {
			return acc, h
		}
	}
}

func modelPair(n int32) (int32, int64) {
	var h int64
	for {
		h++
		n--
		if !(n > 0) {
			return n + 42, h
		}
	}
}

func modelDead(n int32) (int32, int64) {
	var h int64
	if n != 0 {
		for {
			h++
			n--
			if n == 0 {
				break
			}
		}
	}
	return n, h
}

// host instantiates modules with an _eryx host module whose tick counts calls and refills
// the budget of the calling module.
type host struct {
	t      testing.TB
	ctx    context.Context
	rt     wazero.Runtime
	ticks  atomic.Int64
	refill atomic.Int64
	onTick func(api.Module) // optional, called after the refill
	// budgetMu orders the Go-side writes of the budget (the tick's refill and a forced tick
	// from another goroutine): wazero's MutableGlobal.Set is a plain store.
	budgetMu sync.Mutex
}

func newHost(t testing.TB, cfg wazero.RuntimeConfig) *host {
	ctx := context.Background()
	if cfg == nil {
		cfg = wazero.NewRuntimeConfig()
	}
	h := &host{t: t, ctx: ctx, rt: wazero.NewRuntimeWithConfig(ctx, cfg)}
	t.Cleanup(func() { h.rt.Close(ctx) })
	_, err := h.rt.NewHostModuleBuilder(abi.ImportModule).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, _ []uint64) {
			h.budgetMu.Lock()
			setBudget(m, h.refill.Load())
			h.budgetMu.Unlock()
			h.ticks.Add(1)
			if h.onTick != nil {
				h.onTick(m)
			}
		}), nil, nil).
		Export(abi.ImportTick).
		Instantiate(ctx)
	require.NoError(t, err)
	return h
}

func (h *host) instantiate(wasm []byte) api.Module {
	h.t.Helper()
	m, err := h.rt.InstantiateWithConfig(h.ctx, wasm, wazero.NewModuleConfig().WithName(""))
	require.NoError(h.t, err)
	h.t.Cleanup(func() { m.Close(h.ctx) })
	return m
}

func call1(t testing.TB, m api.Module, name string, arg int32) int32 {
	t.Helper()
	res, err := m.ExportedFunction(name).Call(context.Background(), api.EncodeI32(arg))
	require.NoError(t, err)
	require.Len(t, res, 1)
	return api.DecodeI32(res[0])
}

func budget(m api.Module) api.MutableGlobal {
	return m.ExportedGlobal(ExportBudget).(api.MutableGlobal)
}

func TestInstrumentCoreModule(t *testing.T) {
	in := coreModule()
	inCopy := bytes.Clone(in)
	out, st, err := Instrument(in)
	require.NoError(t, err)
	assert.Equal(t, inCopy, in, "the input must not be modified")
	assert.Equal(t, 7, st.Functions)
	assert.Equal(t, 8, st.Loops) // count 1, nested 2, multi 1, pair 1, dead 2, spin 1
	assert.Equal(t, uint32(0), st.TickFunc)
	assert.Equal(t, uint32(0), st.BudgetGlobal) // the module had no global: a global section was created
	assert.Empty(t, st.DroppedCustom)

	h := newHost(t, nil)
	plain := h.instantiate(in)
	inst := h.instantiate(out)

	models := map[string]func(int32) (int32, int64){
		"count": modelCount, "nested": modelNested, "multi": modelMulti, "pair": modelPair, "dead": modelDead,
	}
	for name, model := range models {
		for _, n := range []int32{0, 1, 2, 3, 7, 20, 100} {
			want, headers := model(n)
			require.Equal(t, want, call1(t, plain, name, n), "%s(%d) uninstrumented vs model", name, n)
			const big = int64(1) << 30
			h.ticks.Store(0)
			setBudget(inst, big)
			require.Equal(t, want, call1(t, inst, name, n), "%s(%d) instrumented", name, n)
			assert.Equal(t, headers, big-getBudget(inst), "%s(%d): loop headers executed", name, n)
			assert.Zero(t, h.ticks.Load())
		}
	}
	assert.Equal(t, int32(15), call1(t, inst, "noloop", 7))
}

// TestTickCount checks the budget semantics: with budget b, the tick runs at the (b+1)-th loop
// header; a tick that refills r runs again r+1 headers later.
func TestTickCount(t *testing.T) {
	t.Run("i32", func(t *testing.T) { testTickCount(t, config{}) })
	t.Run("i64", func(t *testing.T) { testTickCount(t, config{budgetI64: true}) })
}

func testTickCount(t *testing.T, cfg config) {
	out, _, err := instrument(coreModule(), cfg)
	require.NoError(t, err)
	h := newHost(t, nil)
	m := h.instantiate(out)
	assert.Equal(t, int64(0), getBudget(m), "a fresh instance has budget 0")
	for _, tc := range []struct{ start, refill, n int64 }{
		{0, 0, 10}, {0, 9, 100}, {0, 1000, 100}, {5, 9, 100}, {99, 99, 100}, {100, 99, 100},
		{0, 1 << 16, 3_000_000}, {-1, 10, 1},
	} {
		h.ticks.Store(0)
		h.refill.Store(tc.refill)
		setBudget(m, tc.start)
		require.Equal(t, int32(tc.n), call1(t, m, "count", int32(tc.n)))
		want := int64(0)
		if tc.n > max(tc.start, 0) {
			want = 1 + (tc.n-max(tc.start, 0)-1)/(tc.refill+1)
		}
		assert.Equal(t, want, h.ticks.Load(), "start=%d refill=%d n=%d", tc.start, tc.refill, tc.n)
	}
	// Without a refill the budget stays negative: every header ticks.
	h.ticks.Store(0)
	h.refill.Store(-1)
	setBudget(m, 0)
	require.Equal(t, int32(50), call1(t, m, "count", 50))
	assert.Equal(t, int64(50), h.ticks.Load())
}

func TestNoLoopBodyUnchanged(t *testing.T) {
	in := coreModule()
	out, _, err := Instrument(in)
	require.NoError(t, err)
	body := fbody(nil, oLGet, 0, oI32Const, 2, oI32Mul, oI32Const, 1, oI32Add)
	assert.Equal(t, 1, bytes.Count(in, body))
	assert.Equal(t, 1, bytes.Count(out, body), "a body without loops is copied unchanged")
}

// TestSectionsCreatedAndExtended: no global/export sections (created), or existing ones with
// imported and defined globals (appended after them).
func TestSectionsCreatedAndExtended(t *testing.T) {
	t.Run("bare", func(t *testing.T) {
		// Only type, import, function, code: no global, no export section.
		in := wasmModule(
			sec(secType, vec(functype(nil, nil))),
			sec(secImport, vec(funcImport(abi.ImportModule, abi.ImportTick, 0))),
			sec(secFunction, vec(u32(0))),
			sec(secCode, vec(fbody(nil, oLoop, oEmpty, oEnd))),
		)
		out, st, err := Instrument(in)
		require.NoError(t, err)
		assert.Equal(t, 1, st.Loops)
		h := newHost(t, nil)
		m := h.instantiate(out)
		require.NotNil(t, m.ExportedGlobal(ExportBudget))
		_, err = h.rt.CompileModule(h.ctx, out)
		require.NoError(t, err)
	})
	t.Run("globals", func(t *testing.T) {
		gmod := wasmModule(
			sec(secGlobal, vec([]byte{i32, 0, oI32Const, 5, oEnd})),
			sec(secExport, vec(cat(str("g"), []byte{0x03, 0}))),
		)
		in := wasmModule(
			sec(secType, vec(functype(nil, nil), functype([]byte{i32}, []byte{i32}))),
			sec(secImport, vec(
				cat(str("env"), str("g"), []byte{0x03, i32, 0}),
				funcImport(abi.ImportModule, abi.ImportTick, 0),
			)),
			sec(secFunction, vec(u32(1))),
			sec(secGlobal, vec([]byte{i32, 1, oI32Const, 10, oEnd}, []byte{i32, 0, oI32Const, 20, oEnd})),
			sec(secExport, vec(exportFunc("f", 1), cat(str("mem_g"), []byte{0x03, 1}))),
			sec(secCode, vec(fbody(nil,
				oLoop, oEmpty, oGGet, 1, oLGet, 0, oI32Add, oGSet, 1, oEnd,
				oGGet, 0, oGGet, 1, oI32Add, oGGet, 2, oI32Add))),
		)
		out, st, err := Instrument(in)
		require.NoError(t, err)
		assert.Equal(t, uint32(3), st.BudgetGlobal)
		h := newHost(t, nil)
		g, err := h.rt.InstantiateWithConfig(h.ctx, gmod, wazero.NewModuleConfig().WithName("env"))
		require.NoError(t, err)
		defer g.Close(h.ctx)
		m := h.instantiate(out)
		setBudget(m, 1000)
		assert.Equal(t, int32(5+13+20), call1(t, m, "f", 3))
		assert.Equal(t, int64(999), getBudget(m))
		assert.Equal(t, uint64(13), m.ExportedGlobal("mem_g").Get())
	})
}

func TestCustomSections(t *testing.T) {
	names := customSec("name", cat([]byte{1}, func() []byte {
		p := vec(cat(u32(0), str("tick")), cat(u32(fnCount), str("count_fn")))
		return cat(u32(uint32(len(p))), p)
	}()))
	in := coreModule(
		customSec(".debug_info", []byte{1, 2, 3}),
		customSec(".debug_line", []byte{4}),
		customSec("sourceMappingURL", str("x.map")),
		names,
		customSec("producers", []byte{0}),
	)
	out, st, err := Instrument(in)
	require.NoError(t, err)
	assert.Equal(t, []string{".debug_info", ".debug_line", "sourceMappingURL"}, st.DroppedCustom)
	assert.NotContains(t, string(out), ".debug_")
	assert.Contains(t, string(out), "producers")
	assert.True(t, bytes.Contains(out, names), "the name section is kept verbatim")
	h := newHost(t, nil)
	m := h.instantiate(out)
	assert.Equal(t, "count_fn", m.ExportedFunction("count").Definition().Name())
}

func TestErrors(t *testing.T) {
	good := coreModule()
	noTick := wasmModule(
		sec(secType, vec(functype(nil, nil))),
		sec(secImport, vec(funcImport("env", "f", 0))),
	)
	badType := wasmModule(
		sec(secType, vec(functype([]byte{i32}, nil))),
		sec(secImport, vec(funcImport(abi.ImportModule, abi.ImportTick, 0))),
	)
	tickGlobal := wasmModule(sec(secImport, vec(cat(str(abi.ImportModule), str(abi.ImportTick), []byte{0x03, i32, 0}))))
	twice, _, err := Instrument(good)
	require.NoError(t, err)

	withGC := wasmModule( // 0xfb: GC instructions
		sec(secType, vec(functype(nil, nil))),
		sec(secImport, vec(funcImport(abi.ImportModule, abi.ImportTick, 0))),
		sec(secFunction, vec(u32(0))),
		sec(secCode, vec(fbody(nil, oLoop, oEmpty, 0xfb, 0x00, oEnd))),
	)

	for name, tc := range map[string]struct {
		in  []byte
		msg string
	}{
		"empty":      {nil, "bad magic"},
		"magic":      {[]byte("\x00asn\x01\x00\x00\x00"), "bad magic"},
		"component":  {[]byte("\x00asm\x0d\x00\x01\x00"), "components"},
		"no tick":    {noTick, "does not import _eryx.tick"},
		"tick type":  {badType, "must have type () -> ()"},
		"tick kind":  {tickGlobal, "not a function import"},
		"twice":      {twice, "instrumented twice"},
		"truncated":  {good[:len(good)-3], "unexpected end"},
		"unknown op": {withGC, "unsupported opcode 0xfb"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := Instrument(tc.in)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
	// Every truncation of a valid module fails cleanly (no panic), except at section
	// boundaries, where the prefix is a module (here: without a code section, whose declared
	// function count then mismatches).
	secs, err := parseSections(good)
	require.NoError(t, err)
	boundary := map[int]bool{}
	end := 8
	for _, s := range secs {
		end += len(s.raw)
		boundary[end] = true
	}
	rt := wazero.NewRuntime(context.Background())
	defer rt.Close(context.Background())
	for i := 0; i < len(good); i++ {
		out, _, err := Instrument(good[:i])
		if boundary[i] && err == nil {
			_, err := rt.CompileModule(context.Background(), out)
			assert.NoError(t, err, "truncated at section boundary %d", i)
			continue
		}
		assert.Error(t, err, "truncated at %d", i)
	}
}

var errStop = errors.New("stopped by tick")

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestForcedTick: the host can make a running guest tick at once by setting the budget to 0
// from another goroutine, while the guest runs with an enormous budget.
func TestForcedTick(t *testing.T) {
	out, _, err := Instrument(coreModule())
	require.NoError(t, err)
	h := newHost(t, nil)
	stop := errStop
	h.refill.Store(math.MaxInt32)
	// The first tick (budget 0 at instantiation) refills 2^31-1: seconds of spinning. It waits
	// for the test to be ready to force the next one: on a loaded machine the test's goroutine
	// could otherwise miss the whole first budget and see the second, natural, tick.
	firstTick, forcing := make(chan struct{}), make(chan struct{})
	h.onTick = func(api.Module) {
		if h.ticks.Load() == 1 {
			close(firstTick)
			<-forcing
			return
		}
		panic(stop)
	}
	m := h.instantiate(out)
	done := make(chan error, 1)
	go func() {
		_, err := m.ExportedFunction("spin").Call(context.Background())
		done <- err
	}()
	select {
	case <-firstTick:
	case <-time.After(30 * time.Second):
		t.Fatal("no first tick")
	}
	close(forcing)
	// The guest's decrement is a load and a store: a Set landing between them is lost. So the
	// host repeats the store until the tick comes (here: the first or second try, in practice).
	var tries int
	start := time.Now()
	for h.ticks.Load() == 1 {
		h.budgetMu.Lock()
		setBudget(m, 0)
		h.budgetMu.Unlock()
		tries++
		time.Sleep(100 * time.Microsecond)
	}
	t.Logf("forced tick after %d store(s), %v", tries, time.Since(start))
	err = <-done
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), errStop.Error()), err.Error())
	assert.Equal(t, int64(2), h.ticks.Load())
}

// BenchmarkLoopHeader measures the cost of the inserted code per loop header on the tightest
// loop there is (count: an add, a compare and a branch), without ticks; "fuel" is
// InstrumentFuel (the loop is one segment, its header moves 8 units to the budget).
func BenchmarkLoopHeader(b *testing.B) {
	const n = 10_000_000
	in := coreModule()
	i32, _, err := instrument(in, config{})
	require.NoError(b, err)
	i64, _, err := instrument(in, config{budgetI64: true})
	require.NoError(b, err)
	fuel, _, err := InstrumentFuel(in)
	require.NoError(b, err)
	for _, v := range []struct {
		name string
		wasm []byte
		big  int64
	}{{"plain", in, 0}, {"i32", i32, 1 << 30}, {"i64", i64, 1 << 62}, {"fuel", fuel, 1 << 30}} {
		b.Run(v.name, func(b *testing.B) {
			h := newHost(b, nil)
			m := h.instantiate(v.wasm)
			for b.Loop() {
				if v.big != 0 {
					setBudget(m, v.big)
				}
				call1(b, m, "count", n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/header")
		})
	}
}

// setBudget and getBudget handle the i32 budget (and the i64 one of the comparison variant).
func setBudget(m api.Module, v int64) {
	g := budget(m)
	if g.Type() == api.ValueTypeI32 {
		g.Set(api.EncodeI32(int32(v)))
	} else {
		g.Set(uint64(v))
	}
}

func getBudget(m api.Module) int64 {
	g := budget(m)
	if g.Type() == api.ValueTypeI32 {
		return int64(api.DecodeI32(g.Get()))
	}
	return int64(g.Get())
}

// TestInstrumentSkip: the loop headers of the named functions are left alone, the others are
// instrumented as usual, and a name that is missing (or names an import) is an error.
func TestInstrumentSkip(t *testing.T) {
	names := customSec("name", cat([]byte{1}, func() []byte {
		p := vec(cat(u32(0), str("tick")), cat(u32(fnCount), str("count_fn")), cat(u32(fnSpin), str("spin_fn")))
		return cat(u32(uint32(len(p))), p)
	}()))
	in := coreModule(names)
	out, st, err := InstrumentSkip(in, []string{"count_fn"})
	require.NoError(t, err)
	assert.Equal(t, 7, st.Loops)
	assert.Equal(t, 1, st.SkippedLoops)

	h := newHost(t, nil)
	m := h.instantiate(out)
	const big = int64(1) << 30
	setBudget(m, big)
	require.Equal(t, int32(100), call1(t, m, "count", 100))
	assert.Equal(t, big, getBudget(m), "count's loop is not instrumented")
	_, headers := modelNested(20)
	require.Equal(t, func() int32 { w, _ := modelNested(20); return w }(), call1(t, m, "nested", 20))
	assert.Equal(t, headers, big-getBudget(m), "nested's loops are")

	for _, skip := range [][]string{{"nope"}, {"count_fn", "nope"}, {"tick"}} {
		_, _, err := InstrumentSkip(in, skip)
		require.Error(t, err, "%v", skip)
	}
	_, _, err = InstrumentSkip(coreModule(), []string{"count_fn"}) // no name section
	require.ErrorContains(t, err, "not found in the name section")
	_, _, err = InstrumentRuntime(in) // no _Py_EryxTick
	require.ErrorContains(t, err, EvalTickFunction)
	out, st, err = InstrumentSkip(in, nil)
	require.NoError(t, err)
	assert.Equal(t, 8, st.Loops)
	assert.Zero(t, st.SkippedLoops)
}

// TestInstrumentRuntimeModule checks InstrumentRuntime on the built runtime
// (GOERYX_RUNTIME_DIR): it ticks from its evaluation loop and the loops of
// _PyEval_EvalFrameDefault are found and skipped.
func TestInstrumentRuntimeModule(t *testing.T) {
	dir := os.Getenv("GOERYX_RUNTIME_DIR")
	if dir == "" {
		t.Skip("GOERYX_RUNTIME_DIR not set")
	}
	wasm, err := os.ReadFile(filepath.Join(dir, "python.wasm"))
	require.NoError(t, err)
	_, all, err := Instrument(wasm)
	require.NoError(t, err)
	_, st, err := InstrumentRuntime(wasm)
	require.NoError(t, err)
	t.Logf("%d loops instrumented, %d skipped (of %d)", st.Loops, st.SkippedLoops, all.Loops)
	assert.Positive(t, st.SkippedLoops)
	assert.Equal(t, all.Loops, st.Loops+st.SkippedLoops)
}
