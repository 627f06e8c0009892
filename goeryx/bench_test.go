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
