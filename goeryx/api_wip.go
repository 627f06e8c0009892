package goeryx

// WORK IN PROGRESS: signatures of the engine API (docs/BRIDGE.md). The lead engineer replaces
// this file with the implementation; until then every call fails.

import (
	"context"
	"errors"
)

var errWIP = &Error{Kind: KindEryx, Message: "engine not implemented yet"}

// RuntimeOptions configure OpenRuntime.
type RuntimeOptions struct {
	// CacheDir holds compiled code and images ("" disables the disk cache).
	CacheDir string
}

// Runtime is a loaded and compiled guest runtime.
type Runtime struct{}

// OpenRuntime loads the runtime artifact in dir (docs/ABI.md) and compiles it.
func OpenRuntime(dir string, opts RuntimeOptions) (*Runtime, error) { return nil, errWIP }

// GuestPythonVersion is the guest's platform.python_version().
func (rt *Runtime) GuestPythonVersion() string { return "" }

// Sandbox runs each Execute in a fresh interpreter.
type Sandbox struct{}

// NewSandbox validates cfg and prepares a sandbox. store may be nil.
func (rt *Runtime) NewSandbox(cfg *Config, store *VFS, hooks Hooks) (*Sandbox, error) {
	return nil, errWIP
}

// Execute runs code in a fresh interpreter.
func (s *Sandbox) Execute(ctx context.Context, code string) (*Result, error) { return nil, errWIP }

// Close makes running and later Executes fail.
func (s *Sandbox) Close() {}

// Session keeps one interpreter across runs.
type Session struct{}

// NewSession creates the session's interpreter.
func (rt *Runtime) NewSession(ctx context.Context, cfg *Config, store *VFS, hooks Hooks) (*Session, error) {
	return nil, errWIP
}

// Execute runs code in the session's interpreter.
func (s *Session) Execute(ctx context.Context, code string) (*Result, error) { return nil, errWIP }

// Reset replaces the interpreter.
func (s *Session) Reset(ctx context.Context) error { return errWIP }

// ClearState deletes user globals.
func (s *Session) ClearState(ctx context.Context) error { return errWIP }

// Snapshot serialises user globals.
func (s *Session) Snapshot(ctx context.Context) ([]byte, []string, error) { return nil, nil, errWIP }

// Restore merges a snapshot into the globals.
func (s *Session) Restore(ctx context.Context, data []byte) error { return errWIP }

// SetExecutionTimeoutMS sets the timeout of later runs (nil: none).
func (s *Session) SetExecutionTimeoutMS(ms *int64) {}

// SetMaxFuel sets the fuel limit of later runs (nil: not metered).
func (s *Session) SetMaxFuel(fuel *int64) {}

// ExecutionCount is the number of runs since creation or the last reset.
func (s *Session) ExecutionCount() int64 { return 0 }

// Close releases the interpreter; running calls fail with KindCancelled.
func (s *Session) Close() {}

// VFS is a thread-safe in-memory file store.
type VFS struct{}

// NewVFS makes an empty store capped at maxBytes.
func NewVFS(maxBytes int64) *VFS { return &VFS{} }

// ReadFile returns a file's contents.
func (v *VFS) ReadFile(path string) ([]byte, error) { return nil, errors.New("wip") }

// WriteFile creates or replaces a file, making parent directories.
func (v *VFS) WriteFile(path string, data []byte) error { return errors.New("wip") }

// List returns the sorted entry names of a directory, subdirectories with a trailing "/".
func (v *VFS) List(path string) ([]string, error) { return nil, errors.New("wip") }

// Remove removes a file or an empty directory.
func (v *VFS) Remove(path string) error { return errors.New("wip") }

// Stats returns the number of files, the bytes used and the cap.
func (v *VFS) Stats() (files int, usedBytes, maxBytes int64) { return 0, 0, 0 }
