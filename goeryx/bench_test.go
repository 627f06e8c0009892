package goeryx

import (
	"context"
	"testing"
)

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
