package goeryx

import (
	"context"
	"sync"
	"time"
)

// Sandbox runs each Execute in a fresh interpreter started from the runtime's image. It is
// safe for concurrent use: concurrent Executes get separate interpreters.
type Sandbox struct {
	box *box

	mu      sync.Mutex
	closed  bool
	running map[*instance]struct{}
}

// NewSandbox validates cfg and prepares a sandbox. store, if not nil, is mounted instead of a
// private store per run.
func (rt *Runtime) NewSandbox(cfg *Config, store *VFS, hooks Hooks) (*Sandbox, error) {
	b, err := newBox(rt, cfg, store, hooks)
	if err != nil {
		return nil, err
	}
	return &Sandbox{box: b, running: map[*instance]struct{}{}}, nil
}

var errSandboxClosed = &Error{Kind: KindValue, Message: "Sandbox is closed"}

// Execute runs code in a fresh interpreter. When ctx ends, the run is interrupted and Execute
// returns a KindCancelled error.
func (s *Sandbox) Execute(ctx context.Context, code string) (*Result, error) {
	return s.ExecuteWith(ctx, code, nil)
}

// ExecuteWith is Execute with per-run options (nil: none).
func (s *Sandbox) ExecuteWith(ctx context.Context, code string, opts *RunOptions) (*Result, error) {
	start := time.Now()
	if s.isClosed() {
		return nil, errSandboxClosed
	}
	maxFuel := s.box.cfg.Limits.MaxFuel
	inst, err := s.box.sandboxInterpreter(ctx, maxFuel != nil)
	if err != nil {
		return nil, err
	}
	defer s.box.releaseInterpreter(inst)
	// Register the interpreter so that Close can cancel its run.
	s.mu.Lock()
	if s.closed {
		inst.cancel()
	}
	s.running[inst] = struct{}{}
	s.mu.Unlock()
	out := s.box.execute(ctx, inst, code, opts, s.box.cfg.Limits.ExecutionTimeoutMS, maxFuel, "Sandbox", start)
	s.mu.Lock()
	delete(s.running, inst)
	s.mu.Unlock()
	if out.err != nil {
		return nil, out.err
	}
	return out.result, nil
}

// Close makes running Executes fail with KindCancelled and later ones with KindValue.
func (s *Sandbox) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	for inst := range s.running {
		inst.cancel()
	}
	s.box.closeFilesystems()
}

func (s *Sandbox) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
