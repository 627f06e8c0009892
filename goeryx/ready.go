package goeryx

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/goeryx/goeryx/goeryx/internal/ready"
)

// Ready interpreters (RATIONALE.md, "Ready interpreters"): a Sandbox run starts on an
// interpreter that was instantiated and configured before it was asked for, and its used
// interpreter is released (its memory reset) after the result is returned, both on one
// background goroutine of the runtime's pool (internal/ready). The work is the work a run
// did inline before, moved off the caller's path (though doing it on another thread costs more
// CPU: wake-ups, cold caches; hence off by default): the pool works only while a CPU
// is left over by the runs in progress (else the run releases inline, as before), refills
// only for the configuration last asked for, and releases what it holds once nobody took
// from it for idleRelease.

// DefaultReadyInterpreters is the pool's size when RuntimeOptions.ReadyInterpreters is not
// set: none. Measured on a 2-CPU VM, the pool (size 2) halves a run's latency with gaps but
// costs 10-80% more process CPU per run (work handed to another thread: wake-ups, cold caches),
// which the default must not (RATIONALE.md); 2 serves one thread back to back or two taking turns.
const DefaultReadyInterpreters = 0

// MaxReadyInterpreters bounds the size (each ready interpreter holds a few MiB).
const MaxReadyInterpreters = 64

// ReadyEnv is the environment variable the Python package's runtime reads the size from.
const ReadyEnv = "GOERYX_READY_INTERPRETERS"

// ReadyFromEnv parses ReadyEnv: unset or empty means DefaultReadyInterpreters.
func ReadyFromEnv() (int, error) {
	v := strings.TrimSpace(os.Getenv(ReadyEnv))
	if v == "" {
		return DefaultReadyInterpreters, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > MaxReadyInterpreters {
		return 0, initError("%s must be an integer from 0 to %d, got %q", ReadyEnv, MaxReadyInterpreters, v)
	}
	return n, nil
}

// ReadyStats describe the runtime's pool of ready interpreters.
type ReadyStats struct {
	Size    int    `json:"size"`    // the most interpreters kept ready (0: off)
	Ready   int    `json:"ready"`   // ready now
	Hits    uint64 `json:"hits"`    // Sandbox runs that started on a ready interpreter
	Misses  uint64 `json:"misses"`  // eligible runs that found none and started their own
	Made    uint64 `json:"made"`    // interpreters the pool made
	Expired uint64 `json:"expired"` // made but released unused (idle, or another configuration)
	// ImageBytes is the memory image each interpreter starts from: a ready interpreter
	// holds a mapping of it plus the pages its configuration wrote (about 1 MiB).
	ImageBytes uint64 `json:"image_bytes"`
}

// ReadyStats returns the pool's counters.
func (rt *Runtime) ReadyStats() ReadyStats {
	if rt.ready == nil {
		return ReadyStats{ImageBytes: rt.ImageBytes()}
	}
	s := rt.ready.Stats()
	return ReadyStats{Size: s.Size, Ready: s.Ready, Hits: s.Hits, Misses: s.Misses, Made: s.Made,
		Expired: s.Expired, ImageBytes: rt.ImageBytes()}
}

// newReadyPool is the runtime's pool of size n (0: none).
func (rt *Runtime) newReadyPool(n int) {
	// Spare CPU: a CPU (a Go P) is left over by the runs in progress. The pool's goroutine
	// needs a P of its own, and a caller coming back from Python into Go waits for one: with
	// GOMAXPROCS runs in progress, or one less, the pool would make a caller wait. On two
	// CPUs: only while no run is in progress (between runs, or while the caller is in Python).
	// And not for a while after runs used every P at once (runStarted): between the runs of
	// such a process, its threads are about to come back for the Ps, and the pool would take
	// one from them (a 2-thread loop lost a fifth of its throughput so).
	spare := max(1, int64(runtime.GOMAXPROCS(0))-1)
	rt.ready = ready.New(ready.Options[*instance]{
		Size:        n,
		IdleRelease: idleRelease,
		Spare: func() bool {
			return rt.runs.Load() < spare && time.Now().UnixNano() >= rt.saturatedUntil.Load()
		},
		Release: (*instance).close,
	})
}

// readyKey is what makes two interpreters of this box interchangeable: the configure request
// and what was mounted, when nothing else about them is particular to the box. ok is false
// for boxes whose interpreters are not pooled: those with a shared store, volumes, a
// factory's packages, secrets (their placeholders differ per box), streamed output (its hooks
// are the box's) or fuel.
func (b *box) readyKey() (key string, ok bool) {
	b.readyOnce.Do(func() { b.readyKeyStr, b.readyOK = b.makeReadyKey() })
	return b.readyKeyStr, b.readyOK
}

func (b *box) makeReadyKey() (key string, ok bool) {
	if b.rt.ready == nil || b.store != nil || len(b.volumes) > 0 || b.fac != nil || b.pkgs != nil ||
		len(b.cfg.Secrets) > 0 || b.cfg.StreamStdout || b.cfg.StreamStderr || b.cfg.Limits.MaxFuel != nil {
		return "", false
	}
	conf, err := json.Marshal(b.configured)
	if err != nil {
		return "", false
	}
	maxVFS := int64(DefaultMaxVFSBytes)
	if m := b.cfg.Limits.MaxVFSBytes; m != nil {
		maxVFS = *m
	}
	t := b.readyTemplate()
	b.readyMake = func() (*instance, error) { return t.newInterpreter(context.Background(), false) }
	return fmt.Sprintf("%d\x00%s\x00%t\x00%d\x00%s", reservation(b.memLimit), b.mountPath, b.scratch, maxVFS, conf), true
}

// readyTemplate is the part of b that making its interpreters needs: the pool keeps it (for
// refills) past the box's life, without its hooks or anything else the caller owns.
func (b *box) readyTemplate() *box {
	t := &box{rt: b.rt, hooks: NoHooks{}, secrets: b.secrets, mountPath: b.mountPath, resultVar: b.resultVar,
		memLimit: b.memLimit, configured: b.configured, root: b.root, scratch: b.scratch, callbacks: map[string]int{}}
	t.cfg.Limits.MaxVFSBytes = b.cfg.Limits.MaxVFSBytes
	t.cfg.Limits.MaxMemoryBytes = b.cfg.Limits.MaxMemoryBytes
	return t
}

// saturatedFor is how long the pool stays idle after runs used every P at once.
const saturatedFor = time.Second

// runStarted and runEnded count the runs in progress (the pool's measure of spare CPU).
func (rt *Runtime) runStarted() {
	if rt.runs.Add(1) >= int64(runtime.GOMAXPROCS(0)) && rt.ready != nil {
		rt.saturatedUntil.Store(time.Now().Add(saturatedFor).UnixNano())
	}
}

func (rt *Runtime) runEnded() {
	rt.runs.Add(-1)
	if rt.ready != nil {
		rt.ready.Kick()
	}
}

// sandboxInterpreter is the interpreter of one Sandbox run: a ready one when the pool has one
// for this configuration, else a new one.
func (b *box) sandboxInterpreter(ctx context.Context, fuel bool) (*instance, error) {
	if !fuel {
		if key, ok := b.readyKey(); ok {
			if inst, ok := b.rt.ready.Get(key, b.readyMake); ok {
				return inst, nil
			}
		}
	}
	return b.newInterpreter(ctx, fuel)
}

// releaseInterpreter releases a Sandbox run's interpreter: in the background when there is
// a pool.
func (b *box) releaseInterpreter(inst *instance) {
	if b.rt.ready == nil {
		inst.close()
		return
	}
	b.rt.ready.Discard(inst)
}
