package instrument

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/goeryx/goeryx/goeryx/internal/abi"
)

// callModule has calls, recursion, early returns and branches to the function's label, which
// the fuel rewrite must flush before.
func callModule() []byte {
	return wasmModule(
		sec(secType, vec(functype(nil, nil), functype([]byte{i32}, []byte{i32}))),
		sec(secImport, vec(funcImport(abi.ImportModule, abi.ImportTick, 0))),
		sec(secFunction, vec(u32(1), u32(1), u32(1), u32(1), u32(1))),
		sec(secExport, vec(exportFunc("fib", 1), exportFunc("early", 2), exportFunc("brfn", 3),
			exportFunc("table", 4), exportFunc("sum", 5))),
		sec(secCode, vec(
			// fib(n): loop-free tree recursion.
			fbody(nil,
				oLGet, 0, oI32Const, 2, oI32LtS,
				oIf, i32, oLGet, 0,
				oElse,
				oLGet, 0, oI32Const, 1, oI32Sub, oCall, 1,
				oLGet, 0, oI32Const, 2, oI32Sub, oCall, 1,
				oI32Add,
				oEnd),
			// early(n): return from inside nested blocks when n is odd.
			fbody(nil,
				oBlock, oEmpty, oBlock, oEmpty,
				oLGet, 0, oI32Const, 1, 0x71, // i32.and
				oIf, oEmpty, oI32Const, 11, oReturn, oEnd,
				oLGet, 0, oI32Eqz, oBrIf, 1,
				oEnd,
				oI32Const, 22, oReturn,
				oEnd,
				oI32Const, 33),
			// brfn(n): br_if and br to the function's label with a value.
			fbody(nil,
				oI32Const, 5, oLGet, 0, oBrIf, 0, oDrop,
				oLGet, 0, oI32Const, 1, oI32Add,
				oLGet, 0, oI32Const, 7, oI32GtS, oIf, oEmpty, oI32Const, 9, oBr, 1, oEnd,
				oBr, 0),
			// table(n): br_table including the function's label.
			fbody(nil,
				oBlock, i32, oBlock, i32,
				oI32Const, 100,
				oLGet, 0, oBrTable, 3, 1, 0, 2, 2, // [1 0 fn] default fn
				oEnd,
				oI32Const, 1, oI32Add, oReturn,
				oEnd,
				oI32Const, 2, oI32Add),
			// sum(n): a loop calling fib.
			fbody([][2]byte{{2, i32}},
				oBlock, oEmpty,
				oLoop, oEmpty,
				oLGet, 1, oLGet, 0, oI32GeS, oBrIf, 1,
				oLGet, 2, oLGet, 1, oCall, 1, oI32Add, oLSet, 2,
				oLGet, 1, oI32Const, 1, oI32Add, oLSet, 1,
				oBr, 0,
				oEnd, oEnd,
				oLGet, 2),
		)),
	)
}

// fuelOf runs name(n) with a budget too large to tick and returns the result and the fuel.
func fuelOf(t *testing.T, m api.Module, name string, n int32) (int32, int64) {
	t.Helper()
	const big = int64(1) << 30
	setBudget(m, big)
	r := call1(t, m, name, n)
	return r, big - getBudget(m)
}

// TestFuelMatchesOracle: InstrumentFuel charges exactly what the one-decrement-per-instruction
// reference does, on every function of the test modules.
func TestFuelMatchesOracle(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wasm  []byte
		funcs []string
	}{
		{"core", coreModule(), []string{"count", "nested", "multi", "pair", "noloop", "dead"}},
		{"calls", callModule(), []string{"fib", "early", "brfn", "table", "sum"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fuel, st, err := InstrumentFuel(tc.wasm)
			require.NoError(t, err)
			assert.Greater(t, st.Segments, 0)
			oracle, _, err := FuelOracle(tc.wasm)
			require.NoError(t, err)
			h := newHost(t, nil)
			plain, mf, mo := h.instantiate(tc.wasm), h.instantiate(fuel), h.instantiate(oracle)
			for _, name := range tc.funcs {
				for _, n := range []int32{0, 1, 2, 3, 4, 7, 8, 20} {
					want := call1(t, plain, name, n)
					got, f := fuelOf(t, mf, name, n)
					gotO, fo := fuelOf(t, mo, name, n)
					require.Equal(t, want, got, "%s(%d)", name, n)
					require.Equal(t, want, gotO, "%s(%d) oracle", name, n)
					assert.Equal(t, fo, f, "%s(%d): fuel", name, n)
					assert.Positive(t, f)
				}
			}
			assert.Zero(t, h.ticks.Load())
		})
	}
}

// TestFuelUnits: one unit per instruction of the original code, block, loop and end included.
func TestFuelUnits(t *testing.T) {
	out, _, err := InstrumentFuel(coreModule())
	require.NoError(t, err)
	h := newHost(t, nil)
	m := h.instantiate(out)
	// noloop: local.get i32.const i32.mul i32.const i32.add end
	_, f := fuelOf(t, m, "noloop", 3)
	assert.Equal(t, int64(6), f)
	// count(n): loop (1); per iteration 8 instructions (local.get ... br_if); then end (of the
	// loop), local.get, end.
	for _, n := range []int32{1, 2, 10} {
		_, f := fuelOf(t, m, "count", n)
		assert.Equal(t, int64(1+8*n+3), f, "count(%d)", n)
	}
}

// TestFuelCoverage: the opcode-coverage function (SIMD, atomics, tables, a try_table catching
// a throw, a tail call) runs correctly and counts like the oracle.
func TestFuelCoverage(t *testing.T) {
	in := coverageModule()
	fuel, _, err := InstrumentFuel(in)
	require.NoError(t, err)
	oracle, _, err := FuelOracle(in)
	require.NoError(t, err)
	h := newHost(t, allFeatures())
	for _, n := range []int32{1, 2, 5} {
		want := call1(t, h.instantiate(in), "f", n)
		got, f := fuelOf(t, h.instantiate(fuel), "f", n)
		gotO, fo := fuelOf(t, h.instantiate(oracle), "f", n)
		assert.Equal(t, want, got)
		assert.Equal(t, want, gotO)
		assert.Equal(t, fo, f, "f(%d)", n)
	}
}

// TestFuelChunking: a host that hands out fuel in chunks, as the engine does (given, and the
// true remainder kept host-side), measures the same total and stops at the same point
// whatever the chunk size.
func TestFuelChunking(t *testing.T) {
	out, _, err := InstrumentFuel(callModule())
	require.NoError(t, err)
	errOut := errors.New("out of fuel")
	run := func(chunk, limit int64, name string, n int32) (consumed int64, stopped bool) {
		ctx := context.Background()
		rt := wazero.NewRuntime(ctx)
		defer rt.Close(ctx)
		var given int64
		var g api.MutableGlobal
		get := func() int64 { return int64(api.DecodeI32(g.Get())) }
		_, err := rt.NewHostModuleBuilder(abi.ImportModule).NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {
				c := given - get()
				if c > limit {
					panic(errOut)
				}
				next := min(chunk, limit-c)
				g.Set(api.EncodeI32(int32(next)))
				given = c + next
			}), nil, nil).Export(abi.ImportTick).Instantiate(ctx)
		require.NoError(t, err)
		m, err := rt.InstantiateWithConfig(ctx, out, wazero.NewModuleConfig().WithName(""))
		require.NoError(t, err)
		g = budget(m).(api.MutableGlobal)
		given = min(chunk, limit)
		g.Set(api.EncodeI32(int32(given)))
		_, err = m.ExportedFunction(name).Call(ctx, api.EncodeI32(n))
		if err != nil {
			require.ErrorIs(t, err, errOut)
			return given - get(), true
		}
		return given - get(), false
	}
	total, stopped := run(1<<30, 1<<40, "sum", 15)
	require.False(t, stopped)
	for _, chunk := range []int64{1, 7, 100, 4096} {
		c, s := run(chunk, 1<<40, "sum", 15)
		assert.False(t, s)
		assert.Equal(t, total, c, "chunk %d", chunk)
	}
	for _, limit := range []int64{1, 50, total / 3, total - 1} {
		var first int64
		for i, chunk := range []int64{1, 7, 100, 4096, 1 << 30} {
			c, s := run(chunk, limit, "sum", 15)
			assert.True(t, s, "limit %d chunk %d", limit, chunk)
			assert.Greater(t, c, limit)
			if i == 0 {
				first = c
			}
			assert.Equal(t, first, c, "limit %d chunk %d: stopped at a different point", limit, chunk)
		}
	}
	c, s := run(100, total, "sum", 15)
	assert.False(t, s, "a limit of exactly the consumption is enough")
	assert.Equal(t, total, c)
}

// TestFuelTicksInLoops: a loop without calls still ticks when the budget runs out, so a
// spinning guest reaches the host.
func TestFuelTicksInLoops(t *testing.T) {
	out, st, err := InstrumentFuel(coreModule())
	require.NoError(t, err)
	assert.Equal(t, 7, st.Loops) // the loop in dead code (after return in dead) is not instrumented
	h := newHost(t, nil)
	m := h.instantiate(out)
	h.refill.Store(1000)
	setBudget(m, 0)
	call1(t, m, "count", 10_000)
	// 8 units per iteration, a tick every ~1000 units.
	assert.InDelta(t, 80, h.ticks.Load(), 2)
}

// TestFuelLocalsAndSize: the rewrite adds one i32 local per function and leaves bodies
// without instructions to count valid.
func TestFuelLocalsAndSize(t *testing.T) {
	in := coreModule()
	out, st, err := InstrumentFuel(in)
	require.NoError(t, err)
	assert.Equal(t, 7, st.Functions)
	assert.Positive(t, st.Exits)
	plain, _, err := Instrument(in)
	require.NoError(t, err)
	assert.False(t, bytes.Equal(plain, out))
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	_, err = rt.CompileModule(ctx, out)
	require.NoError(t, err)
}
