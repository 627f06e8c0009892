package goeryx

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDylinkCost compares the runtime linked for side modules (GOERYX_RUNTIME_DIR) with one
// built with ERYX_DYLINK=no or before it (GOERYX_DYLINK_BASELINE_DIR), in one process,
// alternating: bench/compute.py in a sandbox (best of rounds), a plain Sandbox()+print(1)
// (p50), the interpreter image and python.wasm sizes. It only reports: timings on a shared
// machine are noise-prone, and no test asserts on them. runtime/README.md has the figures.
func TestDylinkCost(t *testing.T) {
	baseDir := os.Getenv("GOERYX_DYLINK_BASELINE_DIR")
	if baseDir == "" || os.Getenv("GOERYX_RUNTIME_DIR") == "" {
		t.Skip("GOERYX_DYLINK_BASELINE_DIR (a baseline runtime directory) not set")
	}
	src, err := os.ReadFile("../bench/compute.py")
	require.NoError(t, err)
	// both opened alike (own compilation cache), and each loop below alternates which goes first:
	// the harness must not favour either
	base, err := OpenRuntime(baseDir, RuntimeOptions{CacheDir: t.TempDir()})
	require.NoError(t, err)
	dyn, err := OpenRuntime(os.Getenv("GOERYX_RUNTIME_DIR"), RuntimeOptions{CacheDir: t.TempDir()})
	require.NoError(t, err)
	order := func(j int) []string {
		if j%2 == 0 {
			return []string{"base", "dylink"}
		}
		return []string{"dylink", "base"}
	}
	rts := map[string]*Runtime{"base": base, "dylink": dyn}
	code := string(src) + "\nimport json\nprint(json.dumps(run(1)))"
	ctx := context.Background()
	best := map[string]map[string]float64{"base": {}, "dylink": {}}
	lat := map[string][]time.Duration{}
	peak := map[string]uint64{}
	rounds := 3
	for i := 0; i < rounds; i++ {
		for _, name := range order(i) {
			sb, err := rts[name].NewSandbox(&Config{}, nil, nil)
			require.NoError(t, err)
			res, err := sb.Execute(ctx, code)
			require.NoError(t, err)
			sb.Close()
			var parts map[string]float64
			out := strings.TrimSpace(res.Stdout) // the last line: compute.py prints too, as __main__
			require.NoError(t, json.Unmarshal([]byte(out[strings.LastIndexByte(out, '\n')+1:]), &parts))
			for k, v := range parts {
				if old, ok := best[name][k]; !ok || v < old {
					best[name][k] = v
				}
			}
		}
	}
	// a short bytecode loop, alternating run by run (the median is robust to the load of a
	// shared machine, the best of 3 is not)
	loopCode := "import time\nt = time.perf_counter()\ns = 0\nfor i in range(300000):\n    s += i * i % 7\nprint(time.perf_counter() - t)"
	loops := map[string][]float64{}
	for j := 0; j < 30; j++ {
		for _, name := range order(j) {
			sb, err := rts[name].NewSandbox(&Config{}, nil, nil)
			require.NoError(t, err)
			res, err := sb.Execute(ctx, loopCode)
			require.NoError(t, err)
			sb.Close()
			var v float64
			require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(res.Stdout)), &v))
			loops[name] = append(loops[name], v)
		}
	}
	med := func(v []float64) float64 { sort.Float64s(v); return v[len(v)/2] }
	t.Logf("loop 300k median of 30: base %.4f s  dylink %.4f s  ratio %.3f", med(loops["base"]), med(loops["dylink"]),
		med(loops["dylink"])/med(loops["base"]))
	// latency: alternating sandbox by sandbox, so that both see the same machine load
	for j := 0; j < 300; j++ {
		for _, name := range order(j) {
			start := time.Now()
			sb, err := rts[name].NewSandbox(&Config{}, nil, nil)
			require.NoError(t, err)
			r, err := sb.Execute(ctx, "print(1)")
			require.NoError(t, err)
			lat[name] = append(lat[name], time.Since(start))
			peak[name] = max(peak[name], r.PeakMemoryBytes)
			sb.Close()
		}
	}
	p25 := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/4]
	}
	p50 := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	size := func(dir string) int64 {
		st, err := os.Stat(filepath.Join(dir, "python.wasm"))
		require.NoError(t, err)
		return st.Size()
	}
	for _, k := range []string{"loop", "fib", "strdict", "loop+fib", "total"} {
		t.Logf("compute %-8s base %.4f s  dylink %.4f s  ratio %.3f", k, best["base"][k], best["dylink"][k], best["dylink"][k]/best["base"][k])
	}
	t.Logf("Sandbox()+print(1) p50: base %v  dylink %v  ratio %.3f", p50(lat["base"]), p50(lat["dylink"]),
		float64(p50(lat["dylink"]))/float64(p50(lat["base"])))
	t.Logf("Sandbox()+print(1) p25: base %v  dylink %v  ratio %.3f", p25(lat["base"]), p25(lat["dylink"]),
		float64(p25(lat["dylink"]))/float64(p25(lat["base"])))
	t.Logf("peak memory of print(1): base %d  dylink %d", peak["base"], peak["dylink"])
	t.Logf("interpreter image: base %d  dylink %d bytes", base.ImageBytes(), dyn.ImageBytes())
	t.Logf("python.wasm: base %d  dylink %d bytes (%+.2f%%)", size(baseDir), size(os.Getenv("GOERYX_RUNTIME_DIR")),
		100*float64(size(os.Getenv("GOERYX_RUNTIME_DIR"))-size(baseDir))/float64(size(baseDir)))
}
