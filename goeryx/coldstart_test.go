package goeryx

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestColdStart times OpenRuntime step by step, and the first Sandbox run, in fresh processes
// (this test binary re-run as a child): first with an empty cache, then warm. It only reports
// (the machines are too noisy for a bound); run it with
//
//	GOERYX_COLDSTART=10 GOERYX_RUNTIME_DIR=$(cat build/runtime-dir) go test -run TestColdStart -v ./goeryx/
//
// bench/coldstart.sh measures the same through the Python package.
func TestColdStart(t *testing.T) {
	if os.Getenv("GOERYX_COLDSTART") == "" || os.Getenv("GOERYX_RUNTIME_DIR") == "" {
		t.Skip("set GOERYX_COLDSTART=<warm runs> and GOERYX_RUNTIME_DIR")
	}
	warmRuns, _ := strconv.Atoi(os.Getenv("GOERYX_COLDSTART"))
	cache := t.TempDir()
	child := func() []string {
		cmd := exec.Command(os.Args[0], "-test.run=^TestColdStartChild$", "-test.v")
		cmd.Env = append(os.Environ(), "GOERYX_COLDSTART_CHILD="+cache)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var report []string
		for _, line := range strings.Split(string(out), "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "| "); ok {
				report = append(report, rest)
			}
		}
		return report
	}
	t.Logf("--- empty cache\n%s", strings.Join(child(), "\n"))
	// Warm: the median of each step over the runs.
	var names []string
	values := map[string][]float64{}
	for i := 0; i < max(warmRuns, 1); i++ {
		for _, line := range child() {
			name, rest := strings.TrimSpace(line[:min(28, len(line))]), line[min(28, len(line)):]
			var v float64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%f ms", &v); err != nil {
				continue
			}
			if _, ok := values[name]; !ok {
				names = append(names, name)
			}
			values[name] = append(values[name], v)
		}
	}
	var b strings.Builder
	for _, name := range names {
		v := values[name]
		slices.Sort(v)
		fmt.Fprintf(&b, "%-28s %8.1f ms  (min %.1f, max %.1f)\n", name, v[len(v)/2], v[0], v[len(v)-1])
	}
	t.Logf("--- warm cache, median of %d fresh processes\n%s", max(warmRuns, 1), b.String())
}

// TestColdStartChild is one fresh process of TestColdStart.
func TestColdStartChild(t *testing.T) {
	cache := os.Getenv("GOERYX_COLDSTART_CHILD")
	if cache == "" {
		t.Skip("run by TestColdStart")
	}
	ctx := context.Background()
	start := time.Now()
	rt, s, err := openRuntime(os.Getenv("GOERYX_RUNTIME_DIR"), RuntimeOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	opened := time.Now()
	sb, err := rt.NewSandbox(&Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := sb.Execute(ctx, "print(1)")
	if err != nil || res.Stdout != "1" {
		t.Fatal(err, res)
	}
	ran := time.Now()
	_, err = sb.Execute(ctx, "print(1)")
	if err != nil {
		t.Fatal(err)
	}
	again := time.Now()
	// A second CompileModule of the same bytes finds the code in wazero's memory: what it costs
	// is wazero's decode/validate/hash, without reading its file cache.
	if _, err := rt.wz.CompileModule(ctx, mustReadCachedModule(t, rt, cache)); err != nil {
		t.Fatal(err)
	}
	recompile := time.Since(again)
	ms := func(d time.Duration) string { return fmt.Sprintf("%8.1f ms", float64(d.Microseconds())/1000) }
	for _, line := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		fmt.Println("| " + line)
	}
	fmt.Printf("| %-28s %s\n", "first Execute print(1)", ms(ran.Sub(opened)))
	fmt.Printf("| %-28s %s\n", "TOTAL to first result", ms(ran.Sub(start)))
	fmt.Printf("| %-28s %s\n", "(second Execute)", ms(again.Sub(ran)))
	fmt.Printf("| %-28s %s\n", "(CompileModule, memory hit)", ms(recompile))
}

func mustReadCachedModule(t *testing.T, rt *Runtime, cache string) []byte {
	wasm, err := openDiskCache(cache, "").load(kindModule, moduleCacheKey(&rt.manifest))
	if err != nil {
		t.Fatal(err)
	}
	return wasm
}
