//go:build unix

package goeryx

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFuelOverhead measures what fuel metering costs compute-bound guest code: bench/compute.py
// in a Sandbox without max_fuel (the normal module) and with max_fuel=2**63-1 (the fuel module,
// metering the whole run). It only reports; run it with
//
//	GOFLAGS=-modfile=/work/main/build/go.wazero.mod GOERYX_BENCH=1 \
//	  GOERYX_RUNTIME_DIR=$(cat build/runtime-dir) \
//	  go test ./goeryx -run TestFuelOverhead -v -timeout 30m
//
// GOERYX_BENCH_ROUNDS (default 11) is the number of rounds; each runs the workload once per
// variant, in an order alternating every round, each in a fresh Sandbox. Figures: the guest's
// own time.perf_counter per part, and the CPU time of the whole process around each Execute
// (getrusage), as min / median, and the median of the per-round ratios. It also reports the
// fuel the guest consumes per second, which fuelChunk is sized from.
func TestFuelOverhead(t *testing.T) {
	if os.Getenv("GOERYX_BENCH") != "1" {
		t.Skip("benchmark: set GOERYX_BENCH=1 (and GOERYX_RUNTIME_DIR) to run it")
	}
	rt := runtimeForTest(t)
	rounds := 11
	if n, err := strconv.Atoi(os.Getenv("GOERYX_BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	code := benchComputeCode(t)
	type variant struct {
		name    string
		maxFuel *int64
	}
	variants := []variant{{"normal module", nil}, {"fuel, max_fuel=2**63-1", &fuelUnlimited}}
	type sample struct {
		cpu   time.Duration
		parts map[string]float64
		fuel  uint64
	}
	runOnce := func(v variant) sample {
		sb, err := rt.NewSandbox(&Config{Limits: Limits{MaxFuel: v.maxFuel}}, nil, nil)
		require.NoError(t, err)
		defer sb.Close()
		c0 := benchProcessCPU(t)
		res, err := sb.Execute(context.Background(), code)
		cpu := benchProcessCPU(t) - c0
		require.NoError(t, err, v.name)
		var parts map[string]float64
		require.NoError(t, json.Unmarshal([]byte(res.Stdout), &parts), res.Stdout)
		s := sample{cpu: cpu, parts: parts}
		if res.FuelConsumed != nil {
			s.fuel = *res.FuelConsumed
		}
		return s
	}
	t.Logf("load average before: %s; GOMAXPROCS=%d", benchLoadAvg(), runtime.GOMAXPROCS(0))
	for _, v := range variants {
		runOnce(v) // warm-up (and the fuel module's compilation)
	}
	samples := make([][]sample, len(variants))
	for r := 0; r < rounds; r++ {
		for k := range variants {
			i := (r + k) % len(variants)
			samples[i] = append(samples[i], runOnce(variants[i]))
		}
	}
	measures := []struct {
		name string
		get  func(sample) float64
	}{
		{"process CPU", func(s sample) float64 { return s.cpu.Seconds() }},
		{"guest total", func(s sample) float64 { return s.parts["total"] }},
		{"guest loop", func(s sample) float64 { return s.parts["loop"] }},
		{"guest fib", func(s sample) float64 { return s.parts["fib"] }},
		{"guest strdict", func(s sample) float64 { return s.parts["strdict"] }},
	}
	sorted := func(ss []sample, get func(sample) float64) []float64 {
		out := make([]float64, len(ss))
		for i, s := range ss {
			out[i] = get(s)
		}
		slices.Sort(out)
		return out
	}
	median := func(v []float64) float64 { return (v[(len(v)-1)/2] + v[len(v)/2]) / 2 }
	var b strings.Builder
	fmt.Fprintf(&b, "\n%d rounds of bench/compute.py, seconds: min / median\n", rounds)
	for i, v := range variants {
		fmt.Fprintf(&b, "%-24s", v.name)
		for _, m := range measures {
			vals := sorted(samples[i], m.get)
			fmt.Fprintf(&b, " | %s %6.3f / %6.3f", m.name, vals[0], median(vals))
		}
		b.WriteString("\n")
	}
	b.WriteString("fuel module over normal module: min / median / median of per-round ratios\n")
	for _, m := range measures {
		a, n := sorted(samples[1], m.get), sorted(samples[0], m.get)
		ratios := make([]float64, rounds)
		for r := range ratios {
			ratios[r] = m.get(samples[1][r]) / m.get(samples[0][r])
		}
		slices.Sort(ratios)
		fmt.Fprintf(&b, "    %-14s %+6.1f%% / %+6.1f%% / %+6.1f%%\n", m.name,
			100*(a[0]/n[0]-1), 100*(median(a)/median(n)-1), 100*(median(ratios)-1))
	}
	// The workload reads the clock (and formats the times), so its fuel varies by a few units.
	fuels := sorted(samples[1], func(s sample) float64 { return float64(s.fuel) })
	total := median(sorted(samples[1], func(s sample) float64 { return s.parts["total"] }))
	fmt.Fprintf(&b, "fuel per run %.0f..%.0f; %.2f G/s in the guest; fuelChunk %d = %.1f ms\n",
		fuels[0], fuels[len(fuels)-1], fuels[0]/total/1e9, fuelChunk, 1000*float64(fuelChunk)/(fuels[0]/total))
	fmt.Fprintf(&b, "load average after: %s\n", benchLoadAvg())
	t.Log(b.String())
}
