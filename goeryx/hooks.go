package goeryx

import "context"

// Stream numbers passed to Hooks.Output.
const (
	Stdout = 1
	Stderr = 2
)

// Hooks are the engine's calls back into its host (the Python package, through the bridge).
type Hooks interface {
	// Output receives each chunk the guest writes to fd 1 or fd 2, for the streams enabled in
	// Config. It is called on the goroutine running the guest, in order, before Execute returns.
	// A UTF-8 sequence split across writes is held back until it is complete.
	Output(stream int, chunk string)
	// Callback runs host callback Config.Callbacks[index] with the JSON-encoded keyword
	// arguments and returns its JSON-encoded result, or a *CallbackFailure. The engine calls it
	// on a goroutine of its own, possibly several at once. ctx is cancelled when the engine stops
	// waiting (callback timeout, end of run); timeout is the per-callback timeout (0: none).
	// Callback should return soon after ctx ends when it can stop its work; work it cannot stop
	// (a sync Python function) must finish before Callback returns: the engine counts the call
	// in flight until then, and bounds that count (MaxCallbacksInFlightPerSandbox, ...PerProcess).
	Callback(ctx context.Context, index int, argsJSON string, timeoutMS int64) (resultJSON string, err error)
}

// CallbackFailure is how a host callback failed.
type CallbackFailure struct {
	// Kind is "raised" (Message is "<ExcType>: <message>"), "not_json" (Message is the type
	// name of the returned value) or "timeout".
	Kind    string
	Message string
}

func (f *CallbackFailure) Error() string { return f.Kind + ": " + f.Message }

// NoHooks discards output and has no callbacks.
type NoHooks struct{}

// Output implements Hooks.
func (NoHooks) Output(int, string) {}

// Callback implements Hooks.
func (NoHooks) Callback(context.Context, int, string, int64) (string, error) {
	return "", &CallbackFailure{Kind: "raised", Message: "RuntimeError: no callbacks"}
}

// SignalWatcher is implemented by Hooks whose host handles signals on the thread that calls
// Execute (Python runs its signal handlers, KeyboardInterrupt included, in its main thread
// only, and that thread is inside Execute for the whole run). WatchSignals is called at the
// start of every run, on the calling goroutine; a non-nil function is then called from the
// goroutine running the guest every few milliseconds (ticks; sleeps and waits wake up for it)
// to run the host's pending handlers, and returning true interrupts the run as if its context
// had ended.
type SignalWatcher interface {
	WatchSignals() func() bool
}
