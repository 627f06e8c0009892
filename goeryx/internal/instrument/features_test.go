package instrument

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/goeryx/goeryx/goeryx/internal/abi"
)

// allFeatures enables every proposal wazero v1.12 implements, so the decoder's coverage of
// their opcodes is checked by wazero's validator and compiler.
func allFeatures() wazero.RuntimeConfig {
	return wazero.NewRuntimeConfig().WithCoreFeatures(api.CoreFeaturesV2 |
		experimental.CoreFeaturesThreads | experimental.CoreFeaturesTailCall |
		experimental.CoreFeaturesExtendedConst | experimental.CoreFeaturesExceptionHandling)
}

// TestOpcodeCoverage instruments a function that uses instructions with every immediate
// shape (bulk memory, tables, reference types, sign extension, saturating truncation, SIMD,
// atomics, tail calls, exception handling) around loops, and runs it before and after.
func TestOpcodeCoverage(t *testing.T) {
	in := coverageModule()
	out, st, err := Instrument(in)
	require.NoError(t, err)
	assert.Equal(t, 1, st.Loops)

	h := newHost(t, allFeatures())
	for _, n := range []int32{1, 2, 5} {
		want := call1(t, h.instantiate(in), "f", n)
		h.refill.Store(1)
		h.ticks.Store(0)
		got := call1(t, h.instantiate(out), "f", n)
		assert.Equal(t, want, got, "f(%d)", n)
		assert.Equal(t, int64(1+(n-1)/2), h.ticks.Load(), "f(%d) ticks", n)
	}
}

// coverageModule exports f(n), which uses every immediate shape in a loop of n iterations.
func coverageModule() []byte {
	f64one := []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f}
	simdConst := []byte{1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0}
	shuffle := []byte{12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3}
	code := cat(
		// acc (local 1) starts at the argument.
		[]byte{oLGet, 0, oLSet, 1},
		[]byte{oLoop, oEmpty},
		// Sign extension and saturating truncation.
		[]byte{oLGet, 1, 0xc0, oLSet, 1},                                      // i32.extend8_s
		[]byte{0x44}, f64one, []byte{0xfc, 0x02, oLGet, 1, oI32Add, oLSet, 1}, // f64.const 1; i32.trunc_sat_f64_s
		// Memory with memarg, bulk memory, data.drop, memory.size.
		[]byte{oI32Const, 16, oLGet, 1, 0x36, 0x02, 0x04},                          // i32.store align=2 offset=4
		[]byte{oI32Const, 32, oI32Const, 20, oI32Const, 4, 0xfc, 0x0a, 0x00, 0x00}, // memory.copy
		[]byte{oI32Const, 40, oI32Const, 0, oI32Const, 4, 0xfc, 0x0b, 0x00},        // memory.fill
		[]byte{oI32Const, 48, oI32Const, 0, oI32Const, 2, 0xfc, 0x08, 0x00, 0x00},  // memory.init 0
		[]byte{0x3f, 0x00, oDrop},
		// Tables and references: table.size, table.get/set, ref.func, ref.null, ref.is_null, call_indirect.
		[]byte{0xfc, 0x10, 0x00, oDrop},
		[]byte{oI32Const, 0, 0xd2, 2, 0x26, 0x00}, // table.set 0 (ref.func 2)
		[]byte{0xd0, 0x70, 0xd1, oDrop},
		[]byte{oI32Const, 0, 0x25, 0x00, 0xd1, oDrop},
		[]byte{oLGet, 1, oI32Const, 0, oCallInd, 1, 0x00, oLSet, 1}, // call_indirect (type 1) -> f2(acc)
		// Typed select.
		[]byte{oLGet, 1, oI32Const, 9, oI32Const, 1, 0x1c, 0x01, i32, oDrop},
		// SIMD: v128.const, shuffle, extract_lane, replace_lane, load lane, store, splat.
		[]byte{0xfd, 0x0c}, simdConst,
		[]byte{0xfd, 0x0c}, simdConst,
		[]byte{0xfd, 0x0d}, shuffle, // i8x16.shuffle
		[]byte{oLGet, 1, 0xfd, 0x1c, 0x01},                                                   // i32x4.replace_lane 1
		[]byte{0xfd, 0x1b, 0x00, oLGet, 1, oI32Add, oLSet, 1},                                // i32x4.extract_lane 0 (= 4)
		[]byte{oI32Const, 0xc0, 0x00, 0xfd, 0x0c}, simdConst, []byte{0xfd, 0x0b, 0x04, 0x00}, // v128.store at 64
		[]byte{oI32Const, 0xc0, 0x00, 0xfd, 0x0c}, simdConst, []byte{0xfd, 0x56, 0x02, 0x00, 0x01}, // v128.load32_lane lane 1
		[]byte{0xfd, 0x1b, 0x01, oLGet, 1, oI32Add, oLSet, 1},        // i32x4.extract_lane 1 (= 2)
		[]byte{oI32Const, 0xc0, 0x00, 0xfd, 0x00, 0x04, 0x00, oDrop}, // v128.load
		// Atomics: load, rmw, fence.
		[]byte{oI32Const, 16, oI32Const, 1, 0xfe, 0x1e, 0x02, 0x00, oDrop}, // i32.atomic.rmw.add
		[]byte{0xfe, 0x03, 0x00},                             // atomic.fence
		[]byte{oI32Const, 16, 0xfe, 0x10, 0x02, 0x00, oDrop}, // i32.atomic.load
		// Exception handling: try_table catching tag 0 into a block.
		[]byte{oBlock, i32},
		[]byte{0x1f, oEmpty, 0x01, 0x00, 0x00, 0x00}, // try_table (catch 0 0)
		[]byte{oLGet, 1, 0x08, 0x00},                 // throw 0 (acc)
		[]byte{oEnd, oI32Const, 0},
		[]byte{oEnd, oLSet, 1},
		// Decrement the counter, loop while > 0.
		[]byte{oLGet, 0, oI32Const, 1, oI32Sub, oLTee, 0, oBrIf, 0},
		[]byte{oEnd},
		[]byte{oLGet, 1},
		// A tail call to f2 (the identity plus one).
		[]byte{0x12, 2},
	)
	return wasmModule(
		sec(secType, vec(functype(nil, nil), functype([]byte{i32}, []byte{i32}), functype([]byte{i32}, nil))),
		sec(secImport, vec(funcImport(abi.ImportModule, abi.ImportTick, 0))),
		sec(secFunction, vec(u32(1), u32(1))),
		sec(secTable, vec([]byte{0x70, 0x00, 1})),
		sec(secMemory, vec([]byte{0x03, 1, 1})), // shared, for atomics
		sec(secTag, vec([]byte{0x00, 2})),       // tag 0: (i32)
		sec(secExport, vec(exportFunc("f", 1))),
		sec(secElement, vec(cat([]byte{0x03, 0x00}, vec(u32(2))))), // declarative: ref.func 2
		sec(secDataCount, u32(1)),
		sec(secCode, vec(
			fbody([][2]byte{{1, i32}}, code...),
			fbody(nil, oLGet, 0, oI32Const, 1, oI32Add),
		)),
		sec(secData, vec([]byte{0x01, 2, 7, 9})), // passive "\x07\x09"
	)
}

func TestUnsupportedPrefixedOpcodes(t *testing.T) {
	for name, ins := range map[string][]byte{
		"misc":   {0xfc, 0x12},       // beyond table.fill
		"simd":   {0xfd, 0x94, 0x02}, // 0x114: beyond relaxed SIMD
		"atomic": {0xfe, 0x4f},
		"fence":  {0xfe, 0x03, 0x01},
	} {
		in := wasmModule(
			sec(secType, vec(functype(nil, nil))),
			sec(secImport, vec(funcImport(abi.ImportModule, abi.ImportTick, 0))),
			sec(secFunction, vec(u32(0))),
			sec(secCode, vec(fbody(nil, ins...))),
		)
		_, _, err := Instrument(in)
		assert.Error(t, err, name)
	}
}

// TestAddTickImport: the test-only mode that appends the tick import renumbers every defined
// function in calls, ref.func, element segments (both encodings), global initialisers,
// exports, the start function and the name section.
func TestAddTickImport(t *testing.T) {
	// Imports: env.f (func 0, returns 100). Defined: 1 start, 2 get, 3 add1, 4 via_table, 5 spin_n.
	in := wasmModule(
		sec(secType, vec(functype(nil, nil), functype([]byte{i32}, []byte{i32}), functype(nil, []byte{i32}))),
		sec(secImport, vec(funcImport("env", "f", 2))),
		sec(secFunction, vec(u32(0), u32(2), u32(1), u32(1), u32(1))),
		sec(secTable, vec([]byte{0x70, 0x00, 4})),
		sec(secGlobal, vec(
			[]byte{i32, 1, oI32Const, 0, oEnd}, // g0: set by start
			[]byte{0x70, 0, 0xd2, 3, oEnd},     // g1: ref.func 3 (add1)
		)),
		sec(secExport, vec(exportFunc("get", 2), exportFunc("via_table", 4), exportFunc("spin_n", 5))),
		sec(secStart, u32(1)),
		sec(secElement, vec(
			cat([]byte{0x00, oI32Const, 0, oEnd}, vec(u32(3), u32(0))),        // table[0..1] = add1, env.f
			cat([]byte{0x04, oI32Const, 2, oEnd}, vec([]byte{0xd2, 2, oEnd})), // table[2] = get (expr form)
		)),
		sec(secCode, vec(
			// start: g0 = call env.f + call get... (get reads g0 = 0 here) -> 100
			fbody(nil, oCall, 0, oCall, 2, oI32Add, oGSet, 0),
			// get: g0
			fbody(nil, oGGet, 0),
			// add1(x) = x + 1
			fbody(nil, oLGet, 0, oI32Const, 1, oI32Add),
			// via_table(i) = table[i]() if i > 0 else table[0](get())
			fbody(nil, oLGet, 0, oIf, i32,
				oLGet, 0, oCallInd, 2, 0x00,
				oElse,
				oCall, 2, oI32Const, 0, oCallInd, 1, 0x00,
				oEnd),
			// spin_n(n): table[3] = g1 (ref.func add1); n iterations of acc = table[3](acc).
			fbody([][2]byte{{1, i32}},
				oI32Const, 3, oGGet, 1, 0x26, 0x00,
				oLoop, oEmpty,
				oLGet, 1, oI32Const, 3, oCallInd, 1, 0x00, oLSet, 1,
				oLGet, 0, oI32Const, 1, oI32Sub, oLTee, 0, oBrIf, 0,
				oEnd, oLGet, 1),
		)),
		customSec("name", cat(
			[]byte{1}, func() []byte {
				p := vec(cat(u32(0), str("env_f")), cat(u32(2), str("get_fn")), cat(u32(5), str("spin_fn")))
				return cat(u32(uint32(len(p))), p)
			}(),
			[]byte{2}, func() []byte {
				p := vec(cat(u32(5), vec(cat(u32(0), str("n")))))
				return cat(u32(uint32(len(p))), p)
			}(),
		)),
	)
	out, st, err := instrument(in, config{addTickImport: true})
	require.NoError(t, err)
	assert.Equal(t, uint32(1), st.TickFunc)
	assert.Equal(t, uint32(2), st.BudgetGlobal)
	assert.Equal(t, 1, st.Loops)

	ctx := context.Background()
	h := newHost(t, nil)
	env, err := h.rt.NewHostModuleBuilder("env").NewFunctionBuilder().
		WithFunc(func() int32 { return 100 }).Export("f").Instantiate(ctx)
	require.NoError(t, err)
	defer env.Close(ctx)

	h.refill.Store(2)
	for i, wasm := range [][]byte{in, out} {
		m := h.instantiate(wasm)
		get := func(name string, args ...uint64) int32 {
			res, err := m.ExportedFunction(name).Call(ctx, args...)
			require.NoError(t, err, name)
			return api.DecodeI32(res[0])
		}
		assert.Equal(t, int32(100), get("get"), "start ran and called env.f")
		assert.Equal(t, int32(100), get("via_table", api.EncodeI32(1)), "table[1] = env.f")
		assert.Equal(t, int32(100), get("via_table", api.EncodeI32(2)), "table[2] = get")
		assert.Equal(t, int32(101), get("via_table", api.EncodeI32(0)), "table[0] = add1")
		assert.Equal(t, "get_fn", m.ExportedFunction("get").Definition().Name())
		assert.Equal(t, "spin_fn", m.ExportedFunction("spin_n").Definition().Name())
		assert.Equal(t, []string{"n"}, m.ExportedFunction("spin_n").Definition().ParamNames())
		h.ticks.Store(0)
		assert.Equal(t, int32(10), get("spin_n", api.EncodeI32(10)))
		assert.Equal(t, int64(i*(1+9/3)), h.ticks.Load(), "ticks (0 uninstrumented)")
	}
}

// TestLegacyExceptions: the pre-standard try/catch/delegate encoding (delegate closes its
// block like end). wazero rejects it, so the check is on the bytes: the snippet is spliced
// after the loop's block type and the rest is unchanged.
func TestLegacyExceptions(t *testing.T) {
	code := func(snippet []byte) []byte {
		return cat([]byte{oLoop, oEmpty}, snippet, []byte{
			0x06, i32, oLGet, 0, 0x08, 0x00, // try (result i32) (throw 0 (n))
			0x07, 0x00, // catch 0
			0x09, 0x00, // rethrow 0
			0x19, // catch_all
			oI32Const, 1,
			oEnd,
			oLGet, 1, oI32Add, oLSet, 1,
			0x06, oEmpty, 0x01, 0x18, 0x01, // try nop delegate 1
			oLGet, 0, oI32Const, 1, oI32Sub, oLTee, 0, oBrIf, 0,
			oEnd,
			oLGet, 1})
	}
	in := wasmModule(
		sec(secType, vec(functype(nil, nil), functype([]byte{i32}, []byte{i32}), functype([]byte{i32}, nil))),
		sec(secImport, vec(funcImport(abi.ImportModule, abi.ImportTick, 0))),
		sec(secFunction, vec(u32(1))),
		sec(secTag, vec([]byte{0x00, 2})),
		sec(secCode, vec(fbody([][2]byte{{1, i32}}, code(nil)...))),
	)
	out, st, err := Instrument(in)
	require.NoError(t, err)
	assert.Equal(t, 1, st.Loops)
	want := fbody([][2]byte{{1, i32}}, code(loopSnippet(st.BudgetGlobal, st.TickFunc, false))...)
	assert.True(t, bytes.Contains(out, want))
}

// FuzzInstrument: Instrument never panics, and what it accepts from a module wazero accepts,
// wazero accepts too; so do InstrumentFuel and FuelOracle.
func FuzzInstrument(f *testing.F) {
	f.Add(coreModule())
	f.Add(coreModule(customSec(".debug_info", []byte{1}), customSec("name", []byte{1, 0})))
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, allFeatures())
	defer rt.Close(ctx)
	f.Fuzz(func(t *testing.T, in []byte) {
		out, _, err := Instrument(in)
		if err != nil {
			return
		}
		if _, err := rt.CompileModule(ctx, in); err != nil {
			return
		}
		_, err = rt.CompileModule(ctx, out)
		require.NoError(t, err)
		for _, rewrite := range []func([]byte) ([]byte, *Stats, error){InstrumentFuel, FuelOracle} {
			out, _, err := rewrite(in)
			require.NoError(t, err)
			_, err = rt.CompileModule(ctx, out)
			require.NoError(t, err)
		}
	})
}
