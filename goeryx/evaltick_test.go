package goeryx

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The bytecode loop of CPython is not instrumented: the runtime ticks from its eval-breaker
// check (runtime/patches/cpython-eval-tick.patch, instrument.EvalLoopFunctions). Every shape of
// busy guest must still time out, and a cancelled one must stop promptly.
var busyGuests = map[string]string{
	"while":           "while True: pass",
	"itertools.count": "import itertools\nfor _ in itertools.count(): pass",
	"tree recursion":  "def f(n): return f(n - 1) + f(n - 1) if n else 0\nf(200)",
	"deep recursion":  "import sys\nsys.setrecursionlimit(4000)\ndef f(n): return f(n + 1) if n < 3000 else 0\nwhile True: f(0)",
	"generator in C":  "import itertools\nany(False for _ in itertools.count())",
	"exceptions":      "while True:\n    try:\n        raise ValueError\n    except ValueError:\n        pass",
	"comprehension":   "import itertools\n[0 for _ in itertools.count() if False]",
	"async":           "import asyncio\nasync def f():\n    while True:\n        await asyncio.sleep(0)\nawait f()",
	"time.sleep":      "import time\ntime.sleep(10)",
	"C loop":          "sum(range(10**12))",
	"regex backtrack": "import re\nre.match(r'(a+)+$', 'a' * 64 + 'b')",
	"builtin calls":   "while True: len(())",
}

func TestEvalLoopTimeouts(t *testing.T) {
	rt := runtimeForTest(t)
	for name, code := range busyGuests {
		t.Run(name, func(t *testing.T) {
			sb, err := rt.NewSandbox(&Config{Limits: Limits{ExecutionTimeoutMS: i64(200)}}, nil, nil)
			require.NoError(t, err)
			defer sb.Close()
			start := time.Now()
			_, err = sb.Execute(context.Background(), code)
			var e *Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, KindTimeout, e.Kind, e.Message)
			// cooperative at 200 ms, or hard after the grace period (C loops)
			require.Less(t, time.Since(start), 200*time.Millisecond+hardStopGrace+1500*time.Millisecond) // generous: a loaded machine
		})
	}
}

func TestEvalLoopCancelLatency(t *testing.T) {
	rt := runtimeForTest(t)
	for _, name := range []string{"while", "itertools.count", "tree recursion", "exceptions", "builtin calls"} {
		t.Run(name, func(t *testing.T) {
			sb, err := rt.NewSandbox(&Config{}, nil, nil)
			require.NoError(t, err)
			done := make(chan time.Time, 1)
			go func() {
				_, err := sb.Execute(context.Background(), busyGuests[name])
				var e *Error
				if !errors.As(err, &e) || e.Kind != KindCancelled {
					t.Errorf("not cancelled: %v", err)
				}
				done <- time.Now()
			}()
			time.Sleep(100 * time.Millisecond)
			t0 := time.Now()
			sb.Close()
			select {
			case end := <-done:
				// 0.5-2 ms measured; generous for a shared machine
				require.Less(t, end.Sub(t0), 200*time.Millisecond)
				t.Logf("stopped %v after Close", end.Sub(t0))
			case <-time.After(3 * time.Second):
				t.Fatal("Close did not stop the run")
			}
		})
	}
}
