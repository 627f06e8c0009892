package instrument

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
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

// The scheduling problem: compiled wasm never reaches a Go preemption point, so with every P
// running a guest, timers and the GC's stop-the-world wait for ever. These tests run more
// spinning guests than Ps and measure how late a 200 ms time.AfterFunc fires and how long a
// runtime.GC takes.

const (
	schedGuests = 3
	schedProcs  = 2
	schedTimer  = 200 * time.Millisecond
	// schedChildEnv makes the test binary run the uninstrumented control (it never ends by itself).
	schedChildEnv = "GOERYX_INSTRUMENT_SCHED_CHILD"
)

type schedResult struct {
	late   time.Duration // how late the timer fired
	gc     time.Duration // duration of runtime.GC() while the guests spin
	ticks  int64
	maxGap time.Duration // largest gap between two ticks of one guest
}

// runSpinners runs schedGuests guests calling spin() on a runtime with GOMAXPROCS=schedProcs.
// tickExtra (nil: nothing) runs in every tick after the refill. It returns once the timer
// fired, a GC ran, and all guests were stopped by their tick.
func runSpinners(t testing.TB, wasm []byte, refill int64, tickExtra func()) schedResult {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(schedProcs))
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)

	var stop atomic.Bool
	var ticks atomic.Int64
	type guestState struct {
		last   time.Time
		maxGap time.Duration
	}
	var mu sync.Mutex
	states := map[api.Module]*guestState{}
	_, err := rt.NewHostModuleBuilder(abi.ImportModule).NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, _ []uint64) {
			now := time.Now()
			ticks.Add(1)
			mu.Lock()
			s := states[m]
			if s == nil {
				s = &guestState{}
				states[m] = s
			} else if gap := now.Sub(s.last); gap > s.maxGap {
				s.maxGap = gap
			}
			s.last = now
			mu.Unlock()
			setBudget(m, refill)
			if tickExtra != nil {
				tickExtra()
			}
			if stop.Load() {
				panic(errStop)
			}
		}), nil, nil).Export(abi.ImportTick).Instantiate(ctx)
	require.NoError(t, err)
	compiled, err := rt.CompileModule(ctx, wasm)
	require.NoError(t, err)

	var wg sync.WaitGroup
	errs := make(chan error, schedGuests)
	for i := 0; i < schedGuests; i++ {
		m, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(fmt.Sprint("g", i)))
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := m.ExportedFunction("spin").Call(ctx)
			errs <- err
		}()
	}
	var res schedResult
	fired := make(chan struct{})
	armed := time.Now()
	time.AfterFunc(schedTimer, func() {
		res.late = time.Since(armed) - schedTimer
		start := time.Now()
		runtime.GC()
		res.gc = time.Since(start)
		stop.Store(true)
		close(fired)
	})
	select {
	case <-fired:
	case <-time.After(30 * time.Second):
		t.Fatal("the timer did not fire in 30 s") // the guests keep spinning: the process must exit
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.ErrorContains(t, err, errStop.Error())
	}
	res.ticks = ticks.Load()
	for _, s := range states {
		res.maxGap = max(res.maxGap, s.maxGap)
	}
	return res
}

// TestSchedulingWithTick: with the tick, the timer fires on time and the GC completes, whether
// the tick yields explicitly (runtime.Gosched) or does nothing but refill: entering Go code is
// enough, because the preemption request that sysmon (or the GC) left on the goroutine is
// honoured at the first Go function prologue.
func TestSchedulingWithTick(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	out, _, err := Instrument(coreModule())
	require.NoError(t, err)
	for _, tc := range []struct {
		name    string
		refill  int64
		extra   func()
		checkGC bool
	}{
		// The spinning loop runs about 10^9 headers per second: 2^20 is a tick every ~1 ms,
		// 2^24 every ~16 ms.
		{"refill only, 2^20", 1 << 20, nil, false},
		{"refill only, 2^24", 1 << 24, nil, false},
		{"Gosched, 2^20", 1 << 20, runtime.Gosched, true},
		{"Gosched, 2^24", 1 << 24, runtime.Gosched, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runSpinners(t, out, tc.refill, tc.extra)
			t.Logf("timer late by %v, runtime.GC %v, %d ticks, max tick gap %v", r.late.Round(time.Microsecond),
				r.gc.Round(time.Microsecond), r.ticks, r.maxGap.Round(time.Microsecond))
			// Functional bounds only (the figures are logged; the benchmarks report them):
			// without the tick the timer never fires and the GC never completes (the
			// control test below), with it both happen within milliseconds on an idle
			// machine; the bound leaves room for a loaded CI machine.
			assert.Less(t, r.late, 500*time.Millisecond, "the 200 ms timer must fire")
			if tc.checkGC {
				assert.Less(t, r.gc, 500*time.Millisecond, "the GC must complete")
			}
		})
	}
}

// TestSchedulingWithoutTick is the control: the same guests without instrumentation keep both
// Ps forever, and the timer never fires. It runs in a child process that is killed after 2 s.
func TestSchedulingWithoutTick(t *testing.T) {
	if os.Getenv(schedChildEnv) != "" {
		schedChild()
		return
	}
	if testing.Short() {
		t.Skip("timing test")
	}
	// The child is killed 2 s after it starts spinning (its start-up may take long on a loaded
	// machine, and must not count), or after a minute in all.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestSchedulingWithoutTick$", "-test.count=1")
	cmd.Env = append(os.Environ(), schedChildEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var out strings.Builder
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
		if lines.Text() == "spinning" {
			time.AfterFunc(2*time.Second, cancel)
		}
	}
	err = cmd.Wait()
	t.Logf("child: %q, %v", out.String(), err)
	require.Error(t, err, "the child must be killed")
	assert.Contains(t, out.String(), "spinning")
	assert.NotContains(t, out.String(), "fired", "without ticks the timer must not fire while all Ps run guests")
}

func schedChild() {
	runtime.GOMAXPROCS(schedProcs)
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	_, err := rt.NewHostModuleBuilder(abi.ImportModule).NewFunctionBuilder().
		WithFunc(func() {}).Export(abi.ImportTick).Instantiate(ctx)
	if err != nil {
		panic(err)
	}
	compiled, err := rt.CompileModule(ctx, coreModule()) // not instrumented
	if err != nil {
		panic(err)
	}
	for i := 0; i < schedGuests; i++ {
		m, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(fmt.Sprint("g", i)))
		if err != nil {
			panic(err)
		}
		go m.ExportedFunction("spin").Call(ctx)
	}
	armed := time.Now()
	time.AfterFunc(schedTimer, func() {
		fmt.Printf("fired %v late\n", time.Since(armed)-schedTimer)
		os.Exit(0)
	})
	fmt.Println("spinning")
	select {}
}
