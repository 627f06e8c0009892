package goeryx

import "syscall"

// ErrorKind selects the Python exception class an Error becomes.
type ErrorKind int

// The kinds, one per Python exception class the engine can cause.
const (
	KindEryx           ErrorKind = iota // eryx.EryxError: unexpected internal failure
	KindExecution                       // eryx.ExecutionError
	KindInitialization                  // eryx.InitializationError
	KindResourceLimit                   // eryx.ResourceLimitError
	KindTimeout                         // eryx.TimeoutError
	KindCancelled                       // eryx.CancelledError
	KindValue                           // ValueError
	KindType                            // TypeError
	KindOS                              // OSError subclass chosen by Errno
)

var kindNames = [...]string{"eryx", "execution", "initialization", "resource_limit", "timeout", "cancelled", "value", "type", "os"}

// String returns the name the bridge passes to Python.
func (k ErrorKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "eryx"
}

// Error is every error the engine returns to its host.
type Error struct {
	Kind    ErrorKind
	Message string
	// ExcType is the guest exception class name for KindExecution ("" when no Python exception
	// was involved, e.g. the guest terminated).
	ExcType string
	// Stdout and Stderr are what the failed run printed (every error a run raises: execution,
	// timeout, resource limit, cancellation), scrubbed like a result's.
	Stdout, Stderr string
	// Limit is "max_memory_bytes", "max_fuel" or "snapshot" (KindResourceLimit).
	Limit string
	// StateLost is true when a Session had to replace its interpreter.
	StateLost bool
	// Errno is set for KindOS.
	Errno syscall.Errno
}

func (e *Error) Error() string { return e.Message }

// StateLostSuffix ends the message of an error after which a Session was reset.
const StateLostSuffix = "; the session's interpreter was reset and its state was lost"
