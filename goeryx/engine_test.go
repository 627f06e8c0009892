package goeryx

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	testRuntimeOnce sync.Once
	testRuntime     *Runtime
	testRuntimeErr  error
)

// runtimeForTest opens the guest runtime named by GOERYX_RUNTIME_DIR (build.sh sets it for
// `./build.sh test`).
func runtimeForTest(t testing.TB) *Runtime {
	t.Helper()
	dir := os.Getenv("GOERYX_RUNTIME_DIR")
	if dir == "" {
		t.Skip("GOERYX_RUNTIME_DIR not set: run ./build.sh, then ./build.sh test")
	}
	testRuntimeOnce.Do(func() {
		cache := filepath.Join(os.TempDir(), "goeryx-go-test-cache")
		testRuntime, testRuntimeErr = OpenRuntime(dir, RuntimeOptions{CacheDir: cache})
	})
	require.NoError(t, testRuntimeErr)
	return testRuntime
}

func i64(v int64) *int64 { return &v }

func TestSandboxPrint(t *testing.T) {
	rt := runtimeForTest(t)
	sb, err := rt.NewSandbox(&Config{}, nil, nil)
	require.NoError(t, err)
	res, err := sb.Execute(context.Background(), "print(6*7)\nprint('a\\n\\n')")
	require.NoError(t, err)
	require.Equal(t, "42\na", res.Stdout)
	require.Greater(t, res.PeakMemoryBytes, uint64(0))
	require.Greater(t, res.Duration, time.Duration(0))
}

func TestSandboxFreshInterpreterEachRun(t *testing.T) {
	rt := runtimeForTest(t)
	sb, err := rt.NewSandbox(&Config{}, nil, nil)
	require.NoError(t, err)
	_, err = sb.Execute(context.Background(), "x = 1")
	require.NoError(t, err)
	_, err = sb.Execute(context.Background(), "x")
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, KindExecution, e.Kind)
	require.Equal(t, "NameError", e.ExcType)
	require.Contains(t, e.Message, `File "<user>", line 1, in <module>`)
	require.NotContains(t, e.Message, "_eryx_driver")
}

func TestResultCapture(t *testing.T) {
	rt := runtimeForTest(t)
	sb, err := rt.NewSandbox(&Config{}, nil, nil)
	require.NoError(t, err)
	res, err := sb.Execute(context.Background(), "result = {'a': 1, 'b': [2, 3]}")
	require.NoError(t, err)
	require.Equal(t, `{"a": 1, "b": [2, 3]}`, *res.ResultJSON)
	res, err = sb.Execute(context.Background(), "result = {1, 2}")
	require.NoError(t, err)
	require.Nil(t, res.ResultJSON)
	require.Equal(t, "result is not JSON-serializable: set (TypeError)", *res.ResultError)
}

func TestSessionKeepsState(t *testing.T) {
	rt := runtimeForTest(t)
	s, err := rt.NewSession(context.Background(), &Config{}, nil, nil)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Execute(context.Background(), "def f(x):\n    return x * 2\ny = f(21)")
	require.NoError(t, err)
	res, err := s.Execute(context.Background(), "print(y)")
	require.NoError(t, err)
	require.Equal(t, "42", res.Stdout)
	require.Equal(t, int64(2), s.ExecutionCount())
}

func TestTimeoutCooperative(t *testing.T) {
	rt := runtimeForTest(t)
	s, err := rt.NewSession(context.Background(), &Config{}, nil, nil)
	require.NoError(t, err)
	defer s.Close()
	s.SetExecutionTimeoutMS(i64(200))
	start := time.Now()
	_, err = s.Execute(context.Background(), "x = 1\ntry:\n    while True: pass\nfinally:\n    x = 2")
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, KindTimeout, e.Kind, e.Message)
	require.False(t, e.StateLost)
	require.Less(t, time.Since(start), 1200*time.Millisecond)
	s.SetExecutionTimeoutMS(nil)
	res, err := s.Execute(context.Background(), "print(x)")
	require.NoError(t, err)
	require.Equal(t, "2", res.Stdout)
}

func TestTimeoutHardStop(t *testing.T) {
	rt := runtimeForTest(t)
	s, err := rt.NewSession(context.Background(), &Config{}, nil, nil)
	require.NoError(t, err)
	defer s.Close()
	s.SetExecutionTimeoutMS(i64(100))
	_, err = s.Execute(context.Background(), "while True:\n    try:\n        while True: pass\n    except BaseException:\n        pass")
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, KindTimeout, e.Kind)
	require.True(t, e.StateLost)
	require.True(t, strings.HasSuffix(e.Message, StateLostSuffix))
	require.Equal(t, int64(0), s.ExecutionCount())
	s.SetExecutionTimeoutMS(nil)
	res, err := s.Execute(context.Background(), "print('alive')")
	require.NoError(t, err)
	require.Equal(t, "alive", res.Stdout)
}

func TestTimeoutDuringSleep(t *testing.T) {
	rt := runtimeForTest(t)
	sb, err := rt.NewSandbox(&Config{Limits: Limits{ExecutionTimeoutMS: i64(200)}}, nil, nil)
	require.NoError(t, err)
	start := time.Now()
	_, err = sb.Execute(context.Background(), "import time\ntime.sleep(10)")
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, KindTimeout, e.Kind)
	require.Less(t, time.Since(start), time.Second)
}

// More busy guests than cores must not delay a timeout (DESIGN-NOTES §4).
func TestTimeoutWithMoreBusyGuestsThanCores(t *testing.T) {
	rt := runtimeForTest(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	took := make([]time.Duration, 4)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sb, err := rt.NewSandbox(&Config{Limits: Limits{ExecutionTimeoutMS: i64(300)}}, nil, nil)
			if err != nil {
				errs[i] = err
				return
			}
			start := time.Now()
			_, errs[i] = sb.Execute(context.Background(), "while True: pass")
			took[i] = time.Since(start)
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		var e *Error
		require.ErrorAs(t, err, &e)
		require.Equal(t, KindTimeout, e.Kind)
		require.Less(t, took[i], 1500*time.Millisecond, "guest %d", i)
	}
}

func TestMemoryCap(t *testing.T) {
	rt := runtimeForTest(t)
	limit := int64(rt.ImageBytes()) + 16<<20
	sb, err := rt.NewSandbox(&Config{Limits: Limits{MaxMemoryBytes: &limit}}, nil, nil)
	require.NoError(t, err)
	res, err := sb.Execute(context.Background(), "try:\n    b = bytearray(64 << 20)\nexcept MemoryError:\n    print('caught')")
	require.NoError(t, err)
	require.Equal(t, "caught", res.Stdout)
	_, err = sb.Execute(context.Background(), "b = bytearray(64 << 20)")
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, KindResourceLimit, e.Kind)
	require.Equal(t, "max_memory_bytes", e.Limit)

	small := int64(1 << 20)
	_, err = rt.NewSandbox(&Config{Limits: Limits{MaxMemoryBytes: &small}}, nil, nil)
	require.ErrorAs(t, err, &e)
	require.Equal(t, KindInitialization, e.Kind)
}

func TestGuestTermination(t *testing.T) {
	rt := runtimeForTest(t)
	sb, err := rt.NewSandbox(&Config{}, nil, nil)
	require.NoError(t, err)
	_, err = sb.Execute(context.Background(), "import os\nos._exit(3)")
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, KindExecution, e.Kind)
	require.Equal(t, "", e.ExcType)
	require.True(t, strings.HasPrefix(e.Message, "guest interpreter terminated unexpectedly: "), e.Message)
}

func TestSnapshotRestore(t *testing.T) {
	rt := runtimeForTest(t)
	ctx := context.Background()
	a, err := rt.NewSession(ctx, &Config{}, nil, nil)
	require.NoError(t, err)
	defer a.Close()
	_, err = a.Execute(ctx, "import json\nclass P:\n    def __init__(self, v): self.v = v\n    def twice(self): return self.v * 2\np = P(21)\nnothing = None\ndef g(): return p.twice()")
	require.NoError(t, err)
	data, skipped, err := a.Snapshot(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"json"}, skipped)
	b, err := rt.NewSession(ctx, &Config{}, nil, nil)
	require.NoError(t, err)
	defer b.Close()
	require.NoError(t, b.Restore(ctx, data))
	res, err := b.Execute(ctx, "print(g(), nothing)")
	require.NoError(t, err)
	require.Equal(t, "42 None", res.Stdout)

	var e *Error
	require.ErrorAs(t, b.Restore(ctx, []byte("nope")), &e)
	require.Equal(t, "invalid snapshot data: not a goeryx snapshot", e.Message)
}

func TestCloseCancelsRun(t *testing.T) {
	rt := runtimeForTest(t)
	sb, err := rt.NewSandbox(&Config{}, nil, nil)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := sb.Execute(context.Background(), "while True: pass")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	sb.Close()
	select {
	case err := <-done:
		var e *Error
		require.ErrorAs(t, err, &e)
		require.Equal(t, KindCancelled, e.Kind)
		require.Equal(t, "Sandbox was closed during execution", e.Message)
	case <-time.After(3 * time.Second):
		t.Fatal("Close did not stop the run")
	}
}

func TestSecretsArePlaceholdersAndScrubbed(t *testing.T) {
	rt := runtimeForTest(t)
	cfg := &Config{Secrets: []Secret{{Name: "API_KEY", Value: "real-secret-value"}},
		Scrub: Scrub{Stdout: true, Stderr: true, Files: true}}
	sb, err := rt.NewSandbox(cfg, nil, nil)
	require.NoError(t, err)
	res, err := sb.Execute(context.Background(), "import os\nv = os.environ['API_KEY']\nprint(v)\nprint(v.startswith('ERYX_SECRET_PLACEHOLDER_'), len(v))\nresult = v")
	require.NoError(t, err)
	require.Equal(t, "[REDACTED]\nTrue 56", res.Stdout)
	require.NotContains(t, *res.ResultJSON, "real-secret-value")
	require.Contains(t, *res.ResultJSON, SecretPlaceholderPrefix, "scrub_result is off")
	_, err = sb.Execute(context.Background(), "import os\nraise ValueError(os.environ['API_KEY'])")
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Contains(t, e.Message, "ValueError: [REDACTED]")

	store := NewVFS(1 << 20)
	sb, err = rt.NewSandbox(cfg, store, nil)
	require.NoError(t, err)
	_, err = sb.Execute(context.Background(), "import os\nopen('/data/k.txt', 'w').write('key=' + os.environ['API_KEY'])")
	require.NoError(t, err)
	data, err := store.ReadFile("k.txt")
	require.NoError(t, err)
	require.Equal(t, "key=[REDACTED]", string(data))
}

// Pooled memories are reset between interpreters: nothing a run writes may reach a later one.
func TestSandboxStateNeverLeaksThroughPooledMemory(t *testing.T) {
	rt := runtimeForTest(t)
	sb, err := rt.NewSandbox(&Config{}, nil, nil)
	require.NoError(t, err)
	ctx := context.Background()
	for i := 0; i < 300; i++ {
		_, err := sb.Execute(ctx, fmt.Sprintf(
			"import json, sys, random\njson.leak = 'x' * %d\nsys.leak = list(range(%d))\nbig = bytearray(%d)\n",
			1000*(i+1), 5000*(i%7+1), (i%5)*(8<<20)))
		require.NoError(t, err)
		res, err := sb.Execute(ctx, "import json, sys\nprint(hasattr(json, 'leak'), hasattr(sys, 'leak'), 'big' in globals())")
		require.NoError(t, err)
		require.Equal(t, "False False False", res.Stdout, "run %d", i)
	}
}

// cancelledHooks' callback waits for its context and returns the cancellation at once, as a
// host function that honours ctx does.
type cancelledHooks struct{ NoHooks }

func (cancelledHooks) Callback(ctx context.Context, _ int, _ string, _ int64) (string, error) {
	<-ctx.Done()
	return "", ctx.Err()
}

// TestCallbackTimeoutWinsOverCancellation: at the callback timeout the guest gets TimeoutError,
// even when the callback returns "context canceled" the moment its context ends (the engine
// cancels that context at the timeout; the two used to race for the outcome).
func TestCallbackTimeoutWinsOverCancellation(t *testing.T) {
	rt := runtimeForTest(t)
	timeoutMS := int64(2)
	cfg := &Config{Limits: Limits{CallbackTimeoutMS: &timeoutMS}, Callbacks: []CallbackSpec{{Name: "cb"}}}
	sb, err := rt.NewSandbox(cfg, nil, cancelledHooks{})
	require.NoError(t, err)
	defer sb.Close()
	code := `
try:
    await cb()
except TimeoutError as e:
    print(type(e).__name__, e)
`
	for i := 0; i < 300; i++ {
		res, err := sb.Execute(context.Background(), code)
		require.NoError(t, err, "run %d", i)
		require.Equal(t, "TimeoutError callback 'cb' timed out after 2 ms", res.Stdout, "run %d", i)
	}
}

// TestRunOptions: stdin, the REPL's interactive mode, the file name in tracebacks and argv.
func TestRunOptions(t *testing.T) {
	rt := runtimeForTest(t)
	ctx := context.Background()
	s, err := rt.NewSession(ctx, &Config{}, nil, nil)
	require.NoError(t, err)
	defer s.Close()
	res, err := s.ExecuteWith(ctx, "import sys\nprint(input(), sys.argv)\nlen(sys.stdin.read())",
		&RunOptions{Stdin: []byte("line\nrest"), Argv: []string{"prog.py", "a"}})
	require.NoError(t, err)
	require.Equal(t, "line ['prog.py', 'a']", res.Stdout)
	require.Equal(t, "4", *res.ResultJSON, "the last expression's value")
	res, err = s.ExecuteWith(ctx, "6 * 7", &RunOptions{Interactive: true})
	require.NoError(t, err)
	require.Equal(t, "42", res.Stdout, "echoed by sys.displayhook")
	require.Nil(t, res.ResultJSON)
	_, err = s.ExecuteWith(ctx, "\n1/0", &RunOptions{Filename: "job.py"})
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Contains(t, e.Message, `File "job.py", line 2, in <module>`)
	_, err = s.ExecuteWith(ctx, "input()", nil)
	require.ErrorAs(t, err, &e)
	require.Equal(t, "EOFError", e.ExcType, "stdin is per run")
}
