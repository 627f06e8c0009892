package goeryx

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goeryx/goeryx/goeryx/internal/instrument"
)

const fuelLoop = "x = 0\nfor i in range(20000):\n    x += i\nprint(x)"

var fuelUnlimited = int64(math.MaxInt64)

func fuelSandbox(t *testing.T, rt *Runtime, maxFuel int64, timeoutMS *int64) *Sandbox {
	t.Helper()
	sb, err := rt.NewSandbox(&Config{Limits: Limits{MaxFuel: &maxFuel, ExecutionTimeoutMS: timeoutMS}}, nil, nil)
	require.NoError(t, err)
	t.Cleanup(sb.Close)
	return sb
}

func fuelOfRun(t *testing.T, res *Result, err error) uint64 {
	t.Helper()
	require.NoError(t, err)
	require.NotNil(t, res.FuelConsumed, "fuel is metered")
	return *res.FuelConsumed
}

func requireOutOfFuel(t *testing.T, err error, maxFuel int64, stateLost bool) {
	t.Helper()
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, KindResourceLimit, e.Kind)
	assert.Equal(t, "max_fuel", e.Limit)
	want := "execution ran out of fuel (max_fuel=" + fuelItoa(maxFuel) + ")"
	if stateLost {
		want += StateLostSuffix
	}
	assert.Equal(t, want, e.Message)
	assert.Equal(t, stateLost, e.StateLost)
}

func fuelItoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestFuelDeterministic: the same code gives the same fuel in fresh sandboxes, and the same
// sequence of runs gives the same fuel in fresh sessions.
func TestFuelDeterministic(t *testing.T) {
	rt := runtimeForTest(t)
	var first uint64
	for i := 0; i < 3; i++ {
		sb := fuelSandbox(t, rt, fuelUnlimited, nil)
		res, err := sb.Execute(context.Background(), fuelLoop)
		f := fuelOfRun(t, res, err)
		assert.Equal(t, "199990000", res.Stdout)
		assert.Greater(t, f, uint64(1_000_000))
		if i == 0 {
			first = f
		}
		assert.Equal(t, first, f, "sandbox run %d", i)
	}
	var seq []uint64
	for i := 0; i < 3; i++ {
		s, err := rt.NewSession(context.Background(), &Config{Limits: Limits{MaxFuel: &fuelUnlimited}}, nil, nil)
		require.NoError(t, err)
		var got []uint64
		for _, code := range []string{fuelLoop, "y = [str(i) for i in range(500)]", fuelLoop} {
			res, err := s.Execute(context.Background(), code)
			got = append(got, fuelOfRun(t, res, err))
		}
		s.Close()
		if i == 0 {
			seq = got
		}
		assert.Equal(t, seq, got, "session %d", i)
	}
	// A session's state (allocator, caches) may change the cost of later runs a little.
	assert.InEpsilon(t, float64(seq[0]), float64(seq[2]), 0.05)
	assert.InEpsilon(t, float64(first), float64(seq[0]), 0.01)
}

// TestFuelExactLimit: a limit of exactly the fuel a run consumes is enough, one less is not.
func TestFuelExactLimit(t *testing.T) {
	rt := runtimeForTest(t)
	res, err := fuelSandbox(t, rt, fuelUnlimited, nil).Execute(context.Background(), fuelLoop)
	f := int64(fuelOfRun(t, res, err))
	res, err = fuelSandbox(t, rt, f, nil).Execute(context.Background(), fuelLoop)
	assert.Equal(t, f, int64(fuelOfRun(t, res, err)))
	_, err = fuelSandbox(t, rt, f-1, nil).Execute(context.Background(), fuelLoop)
	requireOutOfFuel(t, err, f-1, false)
}

// TestFuelOutOfFuel: a tight loop, and a loop in C (sum over a huge range), run out; the
// sandbox's next run gets a fresh budget.
func TestFuelOutOfFuel(t *testing.T) {
	rt := runtimeForTest(t)
	sb := fuelSandbox(t, rt, 1_000_000, i64(20_000)) // the timeout only bounds a failing test
	start := time.Now()
	_, err := sb.Execute(context.Background(), "while True:\n    pass")
	requireOutOfFuel(t, err, 1_000_000, false)
	res, err := sb.Execute(context.Background(), "print(1)")
	assert.LessOrEqual(t, fuelOfRun(t, res, err), uint64(1_000_000))
	assert.Equal(t, "1", res.Stdout)

	sb = fuelSandbox(t, rt, 50_000_000, i64(20_000))
	_, err = sb.Execute(context.Background(), "x = sum(range(10**15))")
	requireOutOfFuel(t, err, 50_000_000, false)
	assert.Less(t, time.Since(start), 5*time.Second, "stopped by fuel, not by the timeout")
}

// TestFuelMeasureOnly: max_fuel = 2**63-1 measures without limiting; without max_fuel nothing
// is metered.
func TestFuelMeasureOnly(t *testing.T) {
	rt := runtimeForTest(t)
	res, err := fuelSandbox(t, rt, fuelUnlimited, nil).Execute(context.Background(), "x = sum(i * i for i in range(1_000_000))")
	assert.Greater(t, fuelOfRun(t, res, err), uint64(1<<31), "more than one i32 budget's worth")
	sb, err := rt.NewSandbox(&Config{}, nil, nil)
	require.NoError(t, err)
	defer sb.Close()
	res, err = sb.Execute(context.Background(), "x = 1")
	require.NoError(t, err)
	assert.Nil(t, res.FuelConsumed)
}

// TestFuelCreationNotCharged: a run is charged for its request (decoding, compiling, running,
// answering), not for creating and configuring its interpreter.
func TestFuelCreationNotCharged(t *testing.T) {
	rt := runtimeForTest(t)
	sb := fuelSandbox(t, rt, fuelUnlimited, nil)
	res, err := sb.Execute(context.Background(), "pass")
	pass := fuelOfRun(t, res, err)
	assert.Less(t, pass, uint64(400_000))

	// What the configure request costs, measured on a bare fuel-module instance.
	ic, err := sb.box.instanceConfig(true)
	require.NoError(t, err)
	inst, err := rt.instantiate(context.Background(), ic, rt.memory)
	require.NoError(t, err)
	defer inst.close()
	const big = 1 << 30
	inst.setBudget(big)
	var resp struct {
		OK bool `json:"ok"`
	}
	_, err = inst.request(sb.box.configured, nil, &resp)
	require.NoError(t, err)
	require.True(t, resp.OK)
	configure := uint64(big - inst.getBudget())
	t.Logf("fuel: configure request %d, run of `pass` %d", configure, pass)
	assert.Greater(t, configure, pass)
}

// TestFuelWaitingIsFree: sleeping and waiting for a slow callback cost no fuel.
func TestFuelWaitingIsFree(t *testing.T) {
	rt := runtimeForTest(t)
	sb := fuelSandbox(t, rt, fuelUnlimited, nil)
	res, err := sb.Execute(context.Background(), "import time\ntime.sleep(0.0)")
	short := fuelOfRun(t, res, err)
	res, err = sb.Execute(context.Background(), "import time\ntime.sleep(0.3)")
	long := fuelOfRun(t, res, err)
	assert.InDelta(t, float64(short), float64(long), 2000)

	cfg := &Config{Limits: Limits{MaxFuel: &fuelUnlimited}, Callbacks: []CallbackSpec{{Name: "cb"}}}
	sb2, err := rt.NewSandbox(cfg, nil, fuelSleepHooks{})
	require.NoError(t, err)
	defer sb2.Close()
	var fuel []uint64
	// Both outlast the engine's inline wait for a callback (inlineCallbackWait), so both take
	// the same path through the guest's event loop; only the waiting differs.
	for _, ms := range []int{20, 300} {
		res, err := sb2.Execute(context.Background(), "r = await cb(ms="+fuelItoa(int64(ms))+")\nprint(r)")
		fuel = append(fuel, fuelOfRun(t, res, err))
		assert.Equal(t, "ok", res.Stdout)
	}
	assert.InDelta(t, float64(fuel[0]), float64(fuel[1]), 20_000, "fuel %v", fuel)
}

type fuelSleepHooks struct{ NoHooks }

func (fuelSleepHooks) Callback(ctx context.Context, _ int, args string, _ int64) (string, error) {
	var ms int
	for _, c := range strings.TrimSuffix(strings.TrimPrefix(args, `{"ms": `), "}") {
		ms = ms*10 + int(c-'0')
	}
	select {
	case <-time.After(time.Duration(ms) * time.Millisecond):
	case <-ctx.Done():
	}
	return `"ok"`, nil
}

// TestFuelSession: a session meters from its creation, runs out, resets, and stops metering.
func TestFuelSession(t *testing.T) {
	rt := runtimeForTest(t)
	ctx := context.Background()
	s, err := rt.NewSession(ctx, &Config{Limits: Limits{MaxFuel: &fuelUnlimited, ExecutionTimeoutMS: i64(20_000)}}, nil, nil)
	require.NoError(t, err)
	defer s.Close()
	res, err := s.Execute(ctx, "a = 1")
	fuelOfRun(t, res, err)
	s.SetMaxFuel(i64(100_000))
	_, err = s.Execute(ctx, "while True:\n    pass")
	requireOutOfFuel(t, err, 100_000, true)
	assert.Equal(t, int64(0), s.ExecutionCount())
	s.SetMaxFuel(nil)
	res, err = s.Execute(ctx, "print('a' in globals())")
	require.NoError(t, err)
	assert.Equal(t, "False", res.Stdout)
	assert.Nil(t, res.FuelConsumed)
}

// TestFuelSessionStartsMetering: a session created without max_fuel moves to the fuel module,
// state included, when a limit is set.
func TestFuelSessionStartsMetering(t *testing.T) {
	rt := runtimeForTest(t)
	ctx := context.Background()
	s, err := rt.NewSession(ctx, &Config{}, nil, nil)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Execute(ctx, "x = 41\ndef f(): return x + 1\nopen('/data/f.txt', 'w').write('kept')")
	require.NoError(t, err)
	require.False(t, s.inst.fuel)
	s.SetMaxFuel(&fuelUnlimited)
	res, err := s.Execute(ctx, "print(f(), open('/data/f.txt').read())")
	fuelOfRun(t, res, err)
	assert.Equal(t, "42 kept", res.Stdout)
	assert.True(t, s.inst.fuel)
	assert.Equal(t, int64(2), s.ExecutionCount())

	// A file kept open across the move cannot be used any more, and does not reach a file
	// opened after it.
	s.SetMaxFuel(nil)
	require.NoError(t, s.Reset(ctx))
	require.False(t, s.inst.fuel, "reset without a limit: the normal module again")
	_, err = s.Execute(ctx, "f = open('/data/log.txt', 'w')\nf.write('a')\nf.flush()")
	require.NoError(t, err)
	s.SetMaxFuel(&fuelUnlimited)
	res, err = s.Execute(ctx, `
g = open('/data/other.txt', 'w')
try:
    f.write('b')
    f.flush()
    print('written')
except OSError as e:
    print('failed', type(e).__name__)
g.write('x')
g.close()
print(repr(open('/data/other.txt').read()), repr(open('/data/log.txt').read()))`)
	fuelOfRun(t, res, err)
	assert.Equal(t, "failed OSError\n'x' 'a'", res.Stdout)

	s.SetMaxFuel(i64(100_000))
	_, err = s.Execute(ctx, "while True:\n    pass")
	requireOutOfFuel(t, err, 100_000, true)
}

// TestFuelTimeoutAndCancel: a metered guest still times out and can be cancelled.
func TestFuelTimeoutAndCancel(t *testing.T) {
	rt := runtimeForTest(t)
	start := time.Now()
	_, err := fuelSandbox(t, rt, fuelUnlimited, i64(300)).Execute(context.Background(), "while True:\n    pass")
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, KindTimeout, e.Kind)
	assert.Less(t, time.Since(start), 3*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	s, err := rt.NewSession(context.Background(), &Config{Limits: Limits{MaxFuel: &fuelUnlimited}}, nil, nil)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Execute(context.Background(), "a = 1")
	require.NoError(t, err)
	_, err = s.Execute(ctx, "while True:\n    pass")
	require.ErrorAs(t, err, &e)
	assert.Equal(t, KindCancelled, e.Kind)
	res, err := s.Execute(context.Background(), "print(a)")
	fuelOfRun(t, res, err)
	assert.Equal(t, "1", res.Stdout, "the cooperative interrupt kept the state")
}

// TestFuelNormalModuleUnchanged: the normal module carries only the loop-header countdown,
// and a runtime that never meters fuel never builds the fuel module.
func TestFuelNormalModuleUnchanged(t *testing.T) {
	dir := os.Getenv("GOERYX_RUNTIME_DIR")
	if dir == "" {
		t.Skip("GOERYX_RUNTIME_DIR not set")
	}
	cacheDir := filepath.Join(os.TempDir(), "goeryx-go-test-cache")
	rt, err := OpenRuntime(dir, RuntimeOptions{CacheDir: cacheDir})
	require.NoError(t, err)
	defer rt.Close()
	sb, err := rt.NewSandbox(&Config{}, nil, nil)
	require.NoError(t, err)
	res, err := sb.Execute(context.Background(), fuelLoop)
	require.NoError(t, err)
	assert.Nil(t, res.FuelConsumed)
	sb.Close()
	assert.Nil(t, rt.fuel.compiled, "the fuel module was built without being needed")

	wasm, err := os.ReadFile(filepath.Join(dir, rt.manifest.Wasm))
	require.NoError(t, err)
	plain, st, err := instrument.InstrumentRuntime(wasm)
	require.NoError(t, err)
	assert.Zero(t, st.Segments)
	assert.Zero(t, st.Exits)
	plain, _, err = instrument.StripData(plain)
	require.NoError(t, err)
	cached, err := openDiskCache(cacheDir, "").load(kindModule, moduleCacheKey(&rt.manifest))
	require.NoError(t, err)
	assert.Equal(t, plain, cached, "the normal module is InstrumentRuntime's output, as before fuel existed")
	fuel, err := openDiskCache(cacheDir, "").load(kindFuelModule, fuelModuleCacheKey(&rt.manifest, ""))
	if err == nil {
		assert.NotEqual(t, cached, fuel)
	}
}

// TestFuelMatchesOracle: on CPython, the fuel module counts exactly what the reference
// rewrite (a decrement before every instruction) does. The reference module takes a while to
// compile the first time (it is cached afterwards), so this test does not run with -short.
func TestFuelMatchesOracle(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a second fuel module")
	}
	rt := runtimeForTest(t)
	ort, err := OpenRuntime(os.Getenv("GOERYX_RUNTIME_DIR"), RuntimeOptions{CacheDir: filepath.Join(os.TempDir(), "goeryx-go-test-cache")})
	require.NoError(t, err)
	defer ort.Close()
	ort.fuel.variant, ort.fuel.variantName = instrument.FuelOracle, "oracle"
	var diffs []int64
	for _, code := range []string{
		"pass",
		fuelLoop,
		"import json, re\nprint(json.dumps({'a': [1, 2.5, None]}), re.sub(r'(\\d+)', r'<\\1>', 'a1b22'))",
		"def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\nprint(fib(18))",
		"class E(Exception): pass\ntry:\n    raise E('x')\nexcept E as e:\n    print(repr(e))",
		"import asyncio\nasync def f(i):\n    await asyncio.sleep(0)\n    return i\nprint(sum(await asyncio.gather(*(f(i) for i in range(20)))))",
	} {
		var got [2]int64
		for i, r := range []*Runtime{rt, ort} {
			res, err := fuelSandbox(t, r, fuelUnlimited, nil).Execute(context.Background(), code)
			got[i] = int64(fuelOfRun(t, res, err))
		}
		diffs = append(diffs, got[1]-got[0])
		t.Logf("fuel %d, oracle %d: %q", got[0], got[1], code)
	}
	// The meter starts when the host makes the request, with no guest frame on the stack, so
	// no count is pending in a frame: the fuel module counts exactly what the oracle counts.
	for _, d := range diffs {
		assert.Zero(t, d, "differences from the oracle %v", diffs)
	}
}
