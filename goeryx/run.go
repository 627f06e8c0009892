package goeryx

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goeryx/goeryx/goeryx/internal/guard"
	gnet "github.com/goeryx/goeryx/goeryx/internal/net"
)

// Timing of the interrupt machinery.
const (
	// tickBudget is how many instrumented loop headers the guest passes between two ticks:
	// about 2-3 ms of CPython's C code (sum(range(...)): ≈2.3 ms), so deadlines are noticed
	// promptly and a stop-the-world never waits long for a busy guest (measured in
	// goeryx/internal/instrument). The bytecode loop is not instrumented: the runtime ticks
	// from its eval-breaker check every 1-2 ms of Python (instrument.EvalLoopFunctions).
	tickBudget = 1 << 16
	// signalCheckInterval is how often a run whose host watches signals (Hooks.WatchSignals:
	// Ctrl-C in Python's main thread) lets the host run its signal handlers; sleeps and waits
	// wake up for it.
	signalCheckInterval = 10 * time.Millisecond
	// hardStopGrace is how long the guest may keep running after the cooperative interrupt
	// ("about 1 s", API.md §2.1): short enough that a C-level loop, which never reaches a
	// bytecode boundary, is stopped within a second of the deadline.
	hardStopGrace = 900 * time.Millisecond
)

// Sentinel panics of host functions: wazero turns a panic in a host function into the error
// returned by the guest call, which unwinds the guest.
var (
	errHardStop  = errors.New("the guest did not stop after the interrupt")
	errCancelled = errors.New("the run was cancelled")
)

// runLimits are the limits of one run.
type runLimits struct {
	timeout           time.Duration // 0: none
	callbackTimeout   time.Duration // 0: none
	maxInvocations    int64         // < 0: unlimited
	callbackIndex     map[string]int
	callbackTimeoutMS int64
	hooks             Hooks
	maxFuel           *int64 // nil: not metered
	// callbacksInFlight counts the box's callbacks whose host function has not returned,
	// including those of runs that ended (callbackSlots).
	callbacksInFlight *atomic.Int64
	// secrets replace real secret values in callback outcomes (API.md §6.5); nil: none.
	secrets *secrets
	// net is the network configuration (nil: networking is off).
	net *gnet.Options
}

// runState is the host side of one run in progress.
type runState struct {
	limits   *runLimits
	ctx      context.Context // the caller's, for the run's callbacks
	start    time.Time
	deadline time.Time // zero: none

	// interrupted is when the cooperative interrupt was raised (zero: not yet).
	interrupted time.Time
	hardStopped bool

	// cancelled is set by Close: the guest is stopped hard at its next host call.
	cancelled atomic.Bool
	// stopRequested is set when the caller's context ends: the guest is interrupted like at
	// the deadline (cooperatively, then hard after the grace period).
	stopRequested atomic.Bool
	wake          chan struct{} // closed on cancel or stop request, to end sleeps and waits
	// signals, when set, runs the host's signal handlers; true means one asks to interrupt
	// the run (Hooks.WatchSignals). nextSignalCheck rate-limits it (guest goroutine only).
	signals         func() bool
	nextSignalCheck time.Time
	wakeOnce        sync.Once
	stopCtx         func() bool // unregisters the context watcher

	// Fuel (fuel.go), used on the guest goroutine only. fuelMetered: the run meters fuel, at
	// most maxFuel, from its start to its end. fuelGiven is the fuel handed to the guest so
	// far. outOfFuel is set when the guest was stopped for overdrawing it.
	fuelMetered bool
	maxFuel     int64
	fuelGiven   int64
	outOfFuel   bool

	invocations int64
	nextID      int64
	inflight    map[int64]context.CancelFunc
	done        chan completion
	early       []completion  // completions received while waiting for another (awaitBriefly)
	finished    chan struct{} // closed when the run ends: late callback results are dropped

	// net holds the run's guest connections (nil: networking is off); all close at its end.
	net *gnet.Set
}

type completion struct {
	id     int64
	result json.RawMessage
	err    *guestError
}

// guestError is an exception the driver raises in the guest (API.md §7.4).
type guestError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

func newRunState(l *runLimits) *runState {
	r := &runState{
		limits:   l,
		ctx:      context.Background(),
		start:    time.Now(),
		wake:     make(chan struct{}),
		inflight: map[int64]context.CancelFunc{},
		done:     make(chan completion, 16),
		finished: make(chan struct{}),
	}
	if l.timeout > 0 {
		r.deadline = r.start.Add(l.timeout)
	}
	if l.net != nil {
		r.net = gnet.NewSet(l.net)
	}
	return r
}

// cancel stops the run from another goroutine: the guest is stopped at its next host call.
func (r *runState) cancel() {
	r.cancelled.Store(true)
	r.wakeOnce.Do(func() { close(r.wake) })
}

// requestStop interrupts the run from another goroutine as the deadline would.
func (r *runState) requestStop() {
	r.stopRequested.Store(true)
	r.wakeOnce.Do(func() { close(r.wake) })
}

// end releases what the run started.
func (r *runState) end() {
	if r.stopCtx != nil {
		r.stopCtx()
	}
	close(r.finished)
	for _, c := range r.inflight {
		c()
	}
	if r.net != nil {
		r.net.CloseAll()
	}
}

// beginRun installs a run on the instance. When ctx ends, the run is interrupted.
func (inst *instance) beginRun(ctx context.Context, l *runLimits) *runState {
	r := newRunState(l)
	r.ctx = context.WithoutCancel(ctx) // values only: the run ends its callbacks itself (end)
	if w, ok := l.hooks.(SignalWatcher); ok {
		r.signals = w.WatchSignals() // on the calling goroutine: the host may look at its thread
	}
	inst.memUse.beginRun(inst.mem)
	// A SIGSEGV handler installed since the last run (faulthandler.enable()) would see the
	// guest's out-of-bounds faults first: go back in front of it.
	guard.EnsureFront()
	inst.beginFuel(r, l.maxFuel)
	inst.run.Store(r)
	if inst.cancelled.Load() {
		r.cancel()
	}
	if ctx.Done() != nil {
		r.stopCtx = context.AfterFunc(ctx, func() {
			r.requestStop()
			inst.forceTick() // tick at the next instrumented loop header (Python: its own countdown, ≤ 2 ms)
		})
	}
	return r
}

func (inst *instance) endRun(r *runState) {
	inst.run.Store(nil)
	r.end()
}

// poll is called from host functions on the guest goroutine (tick, sleeps, waits): it raises
// the cooperative interrupt at the deadline and stops the guest hard after the grace period or
// on cancellation.
func (inst *instance) poll() {
	r := inst.run.Load()
	if r == nil {
		return
	}
	if r.cancelled.Load() {
		panic(errCancelled)
	}
	if r.signals != nil && !r.stopRequested.Load() {
		if now := time.Now(); !now.Before(r.nextSignalCheck) {
			r.nextSignalCheck = now.Add(signalCheckInterval)
			if r.signals() {
				r.requestStop() // a handler raised (KeyboardInterrupt): stop as if cancelled
			}
		}
	}
	if r.deadline.IsZero() && !r.stopRequested.Load() {
		return
	}
	now := time.Now()
	if now.Before(r.deadline) && !r.stopRequested.Load() {
		return
	}
	if r.interrupted.IsZero() {
		r.interrupted = now
		inst.interrupt()
		return
	}
	if now.Sub(r.interrupted) >= hardStopGrace {
		r.hardStopped = true
		panic(errHardStop)
	}
}

// interrupt schedules the driver's interrupt exception (re-entrant call into the guest).
func (inst *instance) interrupt() {
	// Called re-entrantly from inside a host function: the guest is paused in that call.
	if _, err := inst.callExport("eryx_interrupt"); err != nil {
		panic(err)
	}
	// Make the next instrumented loop header tick again soon, to notice a guest that
	// suppresses it (the eval loop ticks from its countdown; a fuel module within a chunk).
	if !inst.fuel {
		inst.setBudget(tickBudget)
	}
}

// nextWake is when a blocking host call must return to poll: the deadline, then the end of
// the grace period.
func (r *runState) nextWake() time.Time {
	if !r.interrupted.IsZero() {
		return r.interrupted.Add(hardStopGrace)
	}
	return r.deadline
}

// nanosleep is the guest's clock sleep (time.sleep, poll_oneoff): it returns early at the
// deadline or on cancellation, and then polls.
func (inst *instance) nanosleep(ns int64) {
	if ns <= 0 {
		inst.poll()
		return
	}
	until := time.Now().Add(time.Duration(ns))
	r := inst.run.Load()
	var wake <-chan struct{}
	if r != nil {
		wake = r.wake
		if w := r.nextWake(); !w.IsZero() && w.Before(until) {
			until = w
		}
	}
	defer inst.cpu.wait()()
	for {
		d := time.Until(until)
		if r != nil && r.signals != nil {
			d = min(d, signalCheckInterval) // wake up to let the host run its signal handlers
		}
		if d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-wake:
				t.Stop()
			}
		}
		inst.poll()
		if r == nil || !time.Now().Before(until) || r.stopRequested.Load() || !r.interrupted.IsZero() {
			return
		}
	}
}

// tick is the instrumentation's periodic host call. Yielding hands the P to other goroutines
// (timers, other guests) now rather than when the scheduler's monitor next notices.
func (inst *instance) tick() {
	if inst.fuel {
		inst.fuelTick()
	} else {
		inst.setBudget(tickBudget)
	}
	inst.poll()
	runtime.Gosched()
}

// ---- callbacks ----------------------------------------------------------------------------

func (inst *instance) startCallback(name string, args []byte) (any, error) {
	r := inst.run.Load()
	if r == nil {
		return map[string]any{"error": guestError{"CallbackError", "callbacks are only available during a run"}}, nil
	}
	r.invocations++
	l := r.limits
	if l.maxInvocations >= 0 && r.invocations > l.maxInvocations {
		return map[string]any{"error": guestError{"CallbackLimitError",
			fmt.Sprintf("callback limit exceeded: at most %d invocations per execution", l.maxInvocations)}}, nil
	}
	if len(args) > maxCallbackArgs {
		return map[string]any{"error": guestError{"CallbackError",
			fmt.Sprintf("callback arguments too large: %d bytes (limit %d)", len(args), maxCallbackArgs)}}, nil
	}
	index, ok := l.callbackIndex[name]
	if !ok {
		return map[string]any{"error": guestError{"CallbackError", fmt.Sprintf("callback '%s' not found", name)}}, nil
	}
	release, refusal := acquireCallbackSlot(l.callbacksInFlight)
	if refusal != "" {
		return map[string]any{"error": guestError{"CallbackLimitError", refusal}}, nil
	}
	r.nextID++
	id := r.nextID
	// The callback's context carries the values of the run's (the bridge finds its
	// execute_async call there); it ends when the callback is cancelled or the run ends.
	ctx, cancel := context.WithCancel(r.ctx)
	r.inflight[id] = cancel
	argsJSON := string(args)
	// The completion is delivered once: by the callback, or by the timeout (the callback's own
	// late result is then dropped: a sync host function cannot be stopped). The timeout claims
	// the delivery before it cancels the callback's context, so a callback that returns as soon
	// as it sees the cancellation cannot pass its "context canceled" off as the outcome.
	var claimed atomic.Bool
	deliver := func(c completion) {
		select {
		case r.done <- c:
		case <-r.finished:
		}
	}
	var timer *time.Timer
	if l.callbackTimeout > 0 {
		timer = time.AfterFunc(l.callbackTimeout, func() {
			if !claimed.CompareAndSwap(false, true) {
				return
			}
			cancel()
			deliver(completion{id: id, err: &guestError{"TimeoutError",
				fmt.Sprintf("callback '%s' timed out after %d ms", name, l.callbackTimeoutMS)}})
		})
	}
	go func() {
		defer release() // when the host function returns, not when the run stops waiting
		out, err := l.hooks.Callback(ctx, index, argsJSON, l.callbackTimeoutMS)
		if timer != nil {
			timer.Stop()
		}
		if claimed.CompareAndSwap(false, true) {
			deliver(callbackCompletion(id, name, out, err, l.callbackTimeoutMS, l.secrets))
		}
	}()
	// Most callbacks finish within microseconds: wait a moment, so that the guest gets the
	// outcome from this very host call and skips an event-loop round trip. Concurrent
	// callbacks (asyncio.gather) are delayed by at most this much each.
	if c, ok := inst.awaitBriefly(r, id, inlineCallbackWait); ok {
		delete(r.inflight, id)
		if c.err != nil {
			return map[string]any{"id": id, "error": c.err}, nil
		}
		return callbackDoneFrame(c.result), nil
	}
	return map[string]any{"id": id}, nil
}

// callbackDoneHeader is the header of OP_CALLBACK_START's response for a callback that
// completed at once; the result's JSON is the payload. A constant header lets the driver skip
// decoding it: this is the response to nearly every callback.
const callbackDoneHeader = `{"done":true}`

func callbackDoneFrame(result []byte) encodedFrame {
	out := make([]byte, 4+len(callbackDoneHeader)+len(result))
	binary.LittleEndian.PutUint32(out, uint32(len(callbackDoneHeader)))
	copy(out[4:], callbackDoneHeader)
	copy(out[4+len(callbackDoneHeader):], result)
	return out
}

// Bounds on host callbacks whose host function is still running. A sync host function runs on
// an OS thread and cannot be stopped: when its run ends (timeout, cancellation, or simply
// returning without awaiting it) it keeps its thread until it returns. Without a bound, a guest
// that starts many slow calls per run and returns exhausts the process's threads (Go aborts the
// process at 10,000). Calls beyond either bound are refused with CallbackLimitError.
const (
	MaxCallbacksInFlightPerSandbox = 256
	MaxCallbacksInFlightPerProcess = 1024
)

var callbacksInFlight atomic.Int64 // the process's

// acquireCallbackSlot takes a slot of the sandbox (box) and of the process for one callback:
// release gives both back, or refusal says why none was free.
func acquireCallbackSlot(box *atomic.Int64) (release func(), refusal string) {
	if box != nil && box.Add(1) > MaxCallbacksInFlightPerSandbox {
		box.Add(-1)
		return nil, fmt.Sprintf("too many host callbacks in flight: at most %d per sandbox or session "+
			"(calls still running from earlier runs count)", MaxCallbacksInFlightPerSandbox)
	}
	if callbacksInFlight.Add(1) > MaxCallbacksInFlightPerProcess {
		callbacksInFlight.Add(-1)
		if box != nil {
			box.Add(-1)
		}
		return nil, fmt.Sprintf("too many host callbacks in flight: at most %d in this process "+
			"(calls still running from earlier runs count)", MaxCallbacksInFlightPerProcess)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			callbacksInFlight.Add(-1)
			if box != nil {
				box.Add(-1)
			}
		})
	}, ""
}

// inlineCallbackWait is how long OpCallbackStart waits for the callback to complete.
const inlineCallbackWait = time.Millisecond

// awaitBriefly waits up to d for callback id to complete; completions of other callbacks that
// arrive meanwhile are kept for the next wait.
func (inst *instance) awaitBriefly(r *runState, id int64, d time.Duration) (completion, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case c := <-r.done:
			if c.id == id {
				return c, true
			}
			r.early = append(r.early, c)
		case <-t.C:
			return completion{}, false
		case <-r.wake:
			return completion{}, false
		}
	}
}

const maxCallbackArgs = 10 << 20

// callbackCompletion is what the guest receives for a callback's outcome. Each real secret
// value in it, in the result or in an error message, is replaced by its placeholder.
func callbackCompletion(id int64, name, out string, err error, timeoutMS int64, sec *secrets) completion {
	if err == nil {
		if !json.Valid([]byte(out)) {
			return completion{id: id, err: &guestError{"CallbackError",
				fmt.Sprintf("callback '%s' returned a value that is not JSON-serializable: str", name)}}
		}
		return completion{id: id, result: json.RawMessage(sec.echoJSON(out))}
	}
	var f *CallbackFailure
	if errors.As(err, &f) {
		switch f.Kind {
		case "not_json":
			return completion{id: id, err: &guestError{"CallbackError",
				fmt.Sprintf("callback '%s' returned a value that is not JSON-serializable: %s", name, sec.echoText(f.Message))}}
		case "timeout":
			return completion{id: id, err: &guestError{"TimeoutError", fmt.Sprintf("callback '%s' timed out after %d ms", name, timeoutMS)}}
		default:
			return completion{id: id, err: &guestError{"CallbackError", sec.echoText(f.Message)}}
		}
	}
	return completion{id: id, err: &guestError{"CallbackError", sec.echoText(err.Error())}}
}

func (inst *instance) cancelCallback(id int64) {
	if r := inst.run.Load(); r != nil {
		if c, ok := r.inflight[id]; ok {
			c()
			delete(r.inflight, id)
		}
	}
}

// wait blocks until a callback completes, the timeout passes, or the run must be polled.
func (inst *instance) wait(timeout time.Duration) []map[string]any {
	return inst.waitFor(timeout, nil, nil)
}

// waitFor is wait that also returns when ready reports true (checked before blocking and
// whenever notify fires): the guest's network connections (netcalls.go).
func (inst *instance) waitFor(timeout time.Duration, ready func() bool, notify <-chan struct{}) []map[string]any {
	r := inst.run.Load()
	if r == nil {
		return nil // no run, so nothing to wait for and no deadline to bound a wait
	}
	var timer <-chan time.Time
	until := time.Time{}
	if timeout >= 0 {
		until = time.Now().Add(timeout)
	}
	if w := r.nextWake(); !w.IsZero() && (until.IsZero() || w.Before(until)) {
		until = w
	}
	if r.signals != nil {
		// Return early to let the host run its signal handlers (the event loop waits again).
		if c := time.Now().Add(signalCheckInterval); until.IsZero() || c.Before(until) {
			until = c
		}
	}
	if !until.IsZero() {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		timer = t.C
	}
	done := []map[string]any{}
	add := func(c completion) {
		delete(r.inflight, c.id)
		item := map[string]any{"id": c.id}
		if c.err != nil {
			item["error"] = c.err
		} else {
			item["result"] = c.result
		}
		done = append(done, item)
	}
	for _, c := range r.early {
		add(c)
	}
	r.early = r.early[:0]
	if len(done) == 0 && (ready == nil || !ready()) {
		stopWaiting := inst.cpu.wait()
		select {
		case c := <-r.done:
			add(c)
		case <-notify: // nil without a network: never
		case <-timer:
		case <-r.wake:
		}
		stopWaiting()
	}
	for more := true; more; {
		select {
		case c := <-r.done:
			add(c)
		default:
			more = false
		}
	}
	inst.poll()
	return done
}
