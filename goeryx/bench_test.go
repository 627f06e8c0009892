package goeryx

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user+system CPU time (all threads).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkSandboxPrint(b *testing.B) {
	rt := runtimeForTest(b)
	sb, _ := rt.NewSandbox(&Config{}, nil, nil)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := sb.Execute(context.Background(), "print(1)"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSessionAssign(b *testing.B) {
	rt := runtimeForTest(b)
	s, _ := rt.NewSession(context.Background(), &Config{}, nil, nil)
	defer s.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Execute(context.Background(), "x = 1"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSandboxPrintParallel runs BenchmarkSandboxPrint's loop on GOMAXPROCS goroutines
// (-cpu 1,2 compares one core with two: the engine alone, without the Python layer's GIL).
func BenchmarkSandboxPrintParallel(b *testing.B) {
	rt := runtimeForTest(b)
	b.RunParallel(func(pb *testing.PB) {
		sb, _ := rt.NewSandbox(&Config{}, nil, nil)
		for pb.Next() {
			if _, err := sb.Execute(context.Background(), "print(1)"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkNewSandboxPrint is what the Python layer does per run with the default
// ResourceLimits: a new Sandbox, one execute, close.
func BenchmarkNewSandboxPrint(b *testing.B) {
	rt := runtimeForTest(b)
	timeout, callbackTimeout, memory, invocations := int64(30_000), int64(10_000), int64(128<<20), int64(1000)
	cfg := &Config{Limits: Limits{ExecutionTimeoutMS: &timeout, CallbackTimeoutMS: &callbackTimeout,
		MaxMemoryBytes: &memory, MaxCallbackInvocations: &invocations}}
	for i := 0; i < b.N; i++ {
		sb, err := rt.NewSandbox(cfg, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := sb.Execute(context.Background(), "print(1)"); err != nil {
			b.Fatal(err)
		}
		sb.Close()
	}
}

// noopHooks' callback returns null at once: the engine's share of a callback round trip.
type noopHooks struct{ NoHooks }

func (noopHooks) Callback(context.Context, int, string, int64) (string, error) { return "null", nil }

// BenchmarkCallbackRoundTrip: one guest `await noop()` per op (a run of 2000, the run's start
// amortised), with the default callback timeout. The Python bridge's share is measured by
// bench/callbacks.py.
func BenchmarkCallbackRoundTrip(b *testing.B) {
	rt := runtimeForTest(b)
	callbackTimeout := int64(10_000)
	cfg := &Config{Limits: Limits{CallbackTimeoutMS: &callbackTimeout}, Callbacks: []CallbackSpec{{Name: "noop"}}}
	s, err := rt.NewSession(context.Background(), cfg, nil, noopHooks{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const per = 2000
	code := "for _ in range(2000):\n    await noop()\n"
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i += per {
		if _, err := s.Execute(context.Background(), code); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkGuestCoroutineLoop is BenchmarkCallbackRoundTrip's loop over a guest coroutine: the
// cost of everything but the host round trip.
func BenchmarkGuestCoroutineLoop(b *testing.B) {
	rt := runtimeForTest(b)
	cfg := &Config{Callbacks: []CallbackSpec{{Name: "noop"}}}
	s, err := rt.NewSession(context.Background(), cfg, nil, noopHooks{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const per = 2000
	code := "async def gnoop(): pass\nfor _ in range(2000):\n    await gnoop()\n"
	b.ResetTimer()
	for i := 0; i < b.N; i += per {
		if _, err := s.Execute(context.Background(), code); err != nil {
			b.Fatal(err)
		}
	}
}
