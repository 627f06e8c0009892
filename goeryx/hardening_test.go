package goeryx

// Tests of issue 19 (hardening): the guest, its driver included, is hostile. Each case is one
// that broke the host before: a guest switched a limit off, hung a host wait, or got a
// classification it should not have.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goeryx/goeryx/goeryx/internal/abi"
)

// driverGlobals is guest code that reaches the driver's globals, as any user code can.
const driverGlobals = "import sys\ng = sys._getframe(1).f_globals\n"

func requireKind(t *testing.T, err error, kind ErrorKind) *Error {
	t.Helper()
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, kind, e.Kind, e.Message)
	return e
}

// blockingHooks: every callback blocks until release is closed, ignoring its context, as a
// sync Python function that sleeps does.
type blockingHooks struct {
	NoHooks
	release chan struct{}
	mu      sync.Mutex
	running int
	peak    int
}

func (h *blockingHooks) Callback(context.Context, int, string, int64) (string, error) {
	h.mu.Lock()
	h.running++
	h.peak = max(h.peak, h.running)
	h.mu.Unlock()
	<-h.release
	h.mu.Lock()
	h.running--
	h.mu.Unlock()
	return `"x"`, nil
}

// fireCallbacks starts n calls of slow() without awaiting them, gives them a moment and
// prints how many were refused and one refusal message.
func fireCallbacks(n int) string {
	return fmt.Sprintf(`import asyncio
ts = [asyncio.ensure_future(slow()) for _ in range(%d)]
await asyncio.sleep(0.2)
refused = [t.exception() for t in ts if t.done() and t.exception() is not None]
print(len(refused), type(refused[0]).__name__ if refused else '', str(refused[0]) if refused else '')`, n)
}

// TestCallbacksInFlightBounded: sync host functions cannot be stopped, so the calls a guest
// leaves running when its run ends keep their threads; before, 1,000 slow calls per run
// aborted the process (thread exhaustion) after ~9 runs. Calls in flight are bounded per
// sandbox and per process, those of ended runs included.
func TestCallbacksInFlightBounded(t *testing.T) {
	rt := runtimeForTest(t)
	ctx := context.Background()
	h := &blockingHooks{release: make(chan struct{})}
	cfg := &Config{Callbacks: []CallbackSpec{{Name: "slow"}}, Limits: Limits{MaxCallbackInvocations: i64(100_000)}}
	sb, err := rt.NewSandbox(cfg, nil, h)
	require.NoError(t, err)
	defer sb.Close()

	res, err := sb.Execute(ctx, fireCallbacks(MaxCallbacksInFlightPerSandbox+40))
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprintf("40 CallbackLimitError too many host callbacks in flight: at most %d per sandbox or session (calls still running from earlier runs count)", MaxCallbacksInFlightPerSandbox), res.Stdout)
	// The run ended; its calls still run and still count.
	res, err = sb.Execute(ctx, fireCallbacks(10))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(res.Stdout, "10 CallbackLimitError"), res.Stdout)

	// Other sandboxes fill the process's bound.
	var others []*Sandbox
	for range MaxCallbacksInFlightPerProcess/MaxCallbacksInFlightPerSandbox - 1 {
		o, err := rt.NewSandbox(cfg, nil, h)
		require.NoError(t, err)
		defer o.Close()
		res, err = o.Execute(ctx, fireCallbacks(MaxCallbacksInFlightPerSandbox))
		require.NoError(t, err)
		assert.Equal(t, "0  ", res.Stdout)
		others = append(others, o)
	}
	last, err := rt.NewSandbox(cfg, nil, h)
	require.NoError(t, err)
	defer last.Close()
	res, err = last.Execute(ctx, fireCallbacks(5))
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprintf("5 CallbackLimitError too many host callbacks in flight: at most %d in this process (calls still running from earlier runs count)", MaxCallbacksInFlightPerProcess), res.Stdout)
	h.mu.Lock()
	assert.Equal(t, MaxCallbacksInFlightPerProcess, h.peak)
	h.mu.Unlock()

	// When the host functions return, their slots are free again.
	close(h.release)
	require.Eventually(t, func() bool { return callbacksInFlight.Load() == 0 }, 5*time.Second, 10*time.Millisecond)
	res, err = sb.Execute(ctx, fireCallbacks(3))
	require.NoError(t, err)
	assert.Equal(t, "0  ", res.Stdout)
}

// sessionWithTimeout is a session whose runs (and state operations) time out after ms.
func sessionWithTimeout(t *testing.T, ms int64) *Session {
	t.Helper()
	s, err := runtimeForTest(t).NewSession(context.Background(), &Config{Limits: Limits{ExecutionTimeoutMS: i64(ms)}}, nil, nil)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// TestStateOperationsHaveDeadlines: snapshot, clear_state and restore run guest code
// (__reduce__, __del__, whatever a pickle calls); they used to run outside any run, so such
// code hung them for good. They now run under the session's timeout, Close and hard stop.
func TestStateOperationsHaveDeadlines(t *testing.T) {
	ctx := context.Background()
	within := func(t *testing.T, d time.Duration, f func() error) error {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			return err
		case <-time.After(d):
			t.Fatalf("the operation did not end within %v", d)
			return nil
		}
	}

	t.Run("snapshot of a looping __reduce__", func(t *testing.T) {
		s := sessionWithTimeout(t, 300)
		_, err := s.Execute(ctx, "class L:\n    def __reduce__(self):\n        while True: pass\nx = L()\nkeep = 7")
		require.NoError(t, err)
		err = within(t, 5*time.Second, func() error { _, _, err := s.Snapshot(ctx); return err })
		e := requireKind(t, err, KindTimeout)
		assert.False(t, e.StateLost, "the interrupt was honoured")
		res, err := s.Execute(ctx, "print(keep)")
		require.NoError(t, err)
		assert.Equal(t, "7", res.Stdout)
	})

	t.Run("clear_state with a __del__ that ignores the interrupt", func(t *testing.T) {
		s := sessionWithTimeout(t, 300)
		_, err := s.Execute(ctx, "class D:\n    def __del__(self):\n        while True:\n            try:\n                while True: pass\n            except BaseException: pass\nd = D()")
		require.NoError(t, err)
		err = within(t, 5*time.Second, func() error { return s.ClearState(ctx) })
		e := requireKind(t, err, KindTimeout)
		assert.True(t, e.StateLost, "stopped hard: the interpreter was replaced")
		res, err := s.Execute(ctx, "print('d' in globals())")
		require.NoError(t, err)
		assert.Equal(t, "False", res.Stdout)
	})

	t.Run("restore of a snapshot that sleeps on load", func(t *testing.T) {
		s := sessionWithTimeout(t, 300)
		_, err := s.Execute(ctx, "import time\nclass S:\n    def __reduce__(self):\n        return (time.sleep, (3600,))\nx = S()")
		require.NoError(t, err)
		data, _, err := s.Snapshot(ctx)
		require.NoError(t, err)
		err = within(t, 5*time.Second, func() error { return s.Restore(ctx, data) })
		requireKind(t, err, KindTimeout)
	})

	t.Run("Close ends a state operation", func(t *testing.T) {
		s := sessionWithTimeout(t, 60_000)
		_, err := s.Execute(ctx, "class L:\n    def __reduce__(self):\n        while True: pass\nx = L()")
		require.NoError(t, err)
		go func() { time.Sleep(200 * time.Millisecond); s.Close() }()
		err = within(t, 5*time.Second, func() error { _, _, err := s.Snapshot(ctx); return err })
		e := requireKind(t, err, KindCancelled)
		assert.Equal(t, "Session was closed during execution", e.Message)
	})

	t.Run("a trap during restore resets the session", func(t *testing.T) {
		s := sessionWithTimeout(t, 10_000)
		_, err := s.Execute(ctx, "import os\nclass X:\n    def __reduce__(self):\n        return (os._exit, (3,))\nx = X()")
		require.NoError(t, err)
		data, _, err := s.Snapshot(ctx)
		require.NoError(t, err)
		_, err = s.Execute(ctx, "y = 1")
		require.NoError(t, err)
		e := requireKind(t, s.Restore(ctx, data), KindExecution)
		assert.True(t, e.StateLost)
		assert.Contains(t, e.Message, "exit code 3")
		// The session works, on a new interpreter.
		res, err := s.Execute(ctx, "print('y' in globals())")
		require.NoError(t, err)
		assert.Equal(t, "False", res.Stdout)
		_, _, err = s.Snapshot(ctx)
		require.NoError(t, err)
	})
}

// TestFuelCannotBeSwitchedOff: the driver used to start the meter with a host call right
// before the user's code; replacing its hook (reachable from user code) turned metering off
// (fuel_consumed 0, no limit). The host meters every run from its start.
func TestFuelCannotBeSwitchedOff(t *testing.T) {
	rt := runtimeForTest(t)
	ctx := context.Background()
	honest, err := rt.NewSession(ctx, &Config{Limits: Limits{MaxFuel: &fuelUnlimited}}, nil, nil)
	require.NoError(t, err)
	defer honest.Close()
	const loop = "x = 0\nfor i in range(100000):\n    x += i\n"
	res, err := honest.Execute(ctx, loop)
	loopFuel := fuelOfRun(t, res, err)
	require.Greater(t, loopFuel, uint64(1_000_000))

	s, err := rt.NewSession(ctx, &Config{Limits: Limits{MaxFuel: &fuelUnlimited, ExecutionTimeoutMS: i64(20_000)}}, nil, nil)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Execute(ctx, driverGlobals+"g['_start_fuel'] = lambda: None")
	require.NoError(t, err)
	res, err = s.Execute(ctx, loop)
	// (Runs of one loop in two sessions differ by a few percent: CPython's specialisation.)
	assert.Greater(t, fuelOfRun(t, res, err), loopFuel*9/10, "the silenced hook does not make the run free")

	// The retired OpFuelStart is an unknown host call: it cannot restart the meter.
	res, err = s.Execute(ctx, loop+driverGlobals+"try:\n    g['_host'].call(4, b'\\x02\\0\\0\\0{}')\nexcept OSError as e:\n    print(e.errno)")
	assert.Greater(t, fuelOfRun(t, res, err), loopFuel*9/10)
	assert.Equal(t, fmt.Sprint(-abi.HostErrUnknownOp), res.Stdout)

	// And the limit holds.
	s.SetMaxFuel(i64(5_000_000))
	_, err = s.Execute(ctx, "while True:\n    pass")
	requireOutOfFuel(t, err, 5_000_000, true)
}

// TestFuelChargesTheWholeRun: compiling the code is part of the run's fuel (the host meters
// from its request), so a larger source costs more even when it does nothing.
func TestFuelChargesTheWholeRun(t *testing.T) {
	rt := runtimeForTest(t)
	sb := fuelSandbox(t, rt, fuelUnlimited, nil)
	res, err := sb.Execute(context.Background(), "pass")
	small := fuelOfRun(t, res, err)
	res, err = sb.Execute(context.Background(), "if False:\n"+strings.Repeat("    x = [1, 2, 3]\n", 2000))
	large := fuelOfRun(t, res, err)
	assert.Greater(t, large, small+2000*1000, "compiling 2,000 statements is charged")
}

// TestMemoryLimitSurvivesExit: a guest that hit the memory cap and then exited used to get
// ExecutionError: the refusal was recorded on the memory, which the exit returned to the pool.
func TestMemoryLimitSurvivesExit(t *testing.T) {
	rt := runtimeForTest(t)
	sb, err := rt.NewSandbox(&Config{Limits: Limits{MaxMemoryBytes: i64(64 << 20)}}, nil, nil)
	require.NoError(t, err)
	_, err = sb.Execute(context.Background(), "try:\n    bytearray(10**9)\nexcept MemoryError:\n    pass\nimport os\nos._exit(3)")
	e := requireKind(t, err, KindResourceLimit)
	assert.Equal(t, "max_memory_bytes", e.Limit)
}

// TestGuestResponseValidatedOnHost: the result and the response frame come from guest memory;
// user code that replaces the driver's functions can forge them.
func TestGuestResponseValidatedOnHost(t *testing.T) {
	rt := runtimeForTest(t)
	ctx := context.Background()
	s, err := rt.NewSession(ctx, &Config{}, nil, nil)
	require.NoError(t, err)
	defer s.Close()
	forge := func(resultJSON string) *Result {
		_, err := s.Execute(ctx, driverGlobals+fmt.Sprintf("g['_capture_result'] = lambda: {'result_json': %q}", resultJSON))
		require.NoError(t, err)
		res, err := s.Execute(ctx, "result = 1")
		require.NoError(t, err)
		return res
	}
	for text, why := range map[string]string{
		"NaN":   "it is not valid JSON",
		"[1, 2": "it is not valid JSON",
		strings.Repeat("[", 600) + strings.Repeat("]", 600): fmt.Sprintf("nested deeper than %d levels", MaxResultDepth),
		`"caf\u00e9"`: "",
	} {
		res := forge(text)
		if why == "" {
			require.NotNil(t, res.ResultJSON)
			continue
		}
		assert.Nil(t, res.ResultJSON, text)
		require.NotNil(t, res.ResultError)
		assert.Equal(t, "result was rejected by the host: "+why, *res.ResultError)
	}

	// A driver that answers with a broken frame: the run fails, the interpreter is replaced.
	_, err = s.Execute(ctx, driverGlobals+"g['_HANDLERS'][g['REQ_RUN']] = lambda h, p: b'\\xff\\xff\\xff\\x7f{}'")
	require.NoError(t, err)
	_, err = s.Execute(ctx, "pass")
	e := requireKind(t, err, KindExecution)
	assert.True(t, e.StateLost)
	assert.Contains(t, e.Message, "the guest broke the host protocol")
	res, err := s.Execute(ctx, "result = 2")
	require.NoError(t, err)
	assert.Equal(t, "2", *res.ResultJSON)
}

func TestCheckResult(t *testing.T) {
	ok := `{"a": [1, "]]]]"], "b": "\"[["}`
	j, e := checkResult(&ok, nil)
	assert.Equal(t, &ok, j)
	assert.Nil(t, e)
	big := `"` + strings.Repeat("a", 10<<20) + `"`
	j, e = checkResult(&big, nil)
	assert.Nil(t, j)
	assert.Contains(t, *e, "bytes of JSON (limit 10485760)")
	long := strings.Repeat("e", 10_000)
	_, e = checkResult(nil, &long)
	assert.Len(t, *e, maxResultErrorBytes)
	nonASCII := `"é"`
	_, e = checkResult(&nonASCII, nil)
	assert.Equal(t, "result was rejected by the host: it is not ASCII JSON", *e)
}
