package goeryx

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/goeryx/goeryx/goeryx/internal/abi"
	"github.com/goeryx/goeryx/goeryx/internal/instrument"
	"github.com/goeryx/goeryx/goeryx/internal/protocol"
)

// Fuel metering (API.md §2.1 "fuel"; docs/ABI.md, Instrumentation).
//
// A sandbox or session with max_fuel runs on a second compiled module, instrumented by
// instrument.InstrumentFuel: its budget global counts instructions instead of loop headers,
// and the guest calls tick when the budget is negative at a loop header or a function exit.
// The module is built, cached (startup cache kind "fuelmodule", wazero's file cache) and
// compiled the first time a Sandbox or Session needs it, so processes that never meter fuel
// pay nothing. It shares the memory image of the normal module: the instrumentation changes
// no memory content, only the budget global.
//
// The host hands the guest its fuel in chunks of at most fuelChunk, which keeps ticks as
// frequent as in the normal module (deadlines, cancellation and the Go scheduler rely on
// them). runState.fuelGiven is what was handed out so far; the fuel consumed is fuelGiven
// minus the budget left in the guest, exactly, whenever the guest is paused. A tick finds
// consumed > max_fuel only when the last chunk is overdrawn, which happens at the first check
// (loop header or function exit) after the consumption exceeded max_fuel, whatever the chunk
// size: the guest is then stopped hard and the run fails with max_fuel.

// fuelChunk is the most fuel the guest gets at a time, so the longest it runs between two
// ticks: CPython executes about 10^10 instructions per second (measured on bench/compute.py),
// so 2^25 is about 3 ms, like tickBudget. It must stay well below 2^31 (the budget is an i32).
const fuelChunk = 1 << 25

// errOutOfFuel is the panic that stops a guest whose fuel ran out.
var errOutOfFuel = errors.New("the guest ran out of fuel")

// fuelModule is the fuel-instrumented module of a Runtime, compiled on first use.
type fuelModule struct {
	mu       sync.Mutex
	compiled wazero.CompiledModule
	err      error
	// variant, when set before the first use, replaces instrument.InstrumentFuel (the tests'
	// oracle); name goes into the cache key.
	variant     func([]byte) ([]byte, *instrument.Stats, error)
	variantName string
}

// fuelModuleCacheKey keys the fuel-instrumented module: like moduleCacheKey, under another
// name (and another kind of cache file), so that the two never mix.
func fuelModuleCacheKey(m *Manifest, variant string) cacheKey {
	return newCacheKey("goeryx fuel module", variant, m.WasmSHA256, sourceHash("internal/instrument", "internal/abi"))
}

// fuelCompiled returns the fuel module, building and compiling it on first use. A failure is
// remembered: every later sandbox or session with max_fuel gets the same error.
func (rt *Runtime) fuelCompiled() (wazero.CompiledModule, error) {
	f := &rt.fuel
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.compiled == nil && f.err == nil {
		f.compiled, f.err = rt.compileFuel()
	}
	return f.compiled, f.err
}

func (rt *Runtime) compileFuel() (wazero.CompiledModule, error) {
	ctx := context.Background()
	s := newStartupInfo(rt.logf)
	defer s.done()
	cache := openDiskCache(rt.cacheDir, "")
	key := fuelModuleCacheKey(&rt.manifest, rt.fuel.variantName)
	wasm := s.loadCached(cache, kindFuelModule, key)
	if wasm == nil {
		unlock := cache.lock(key, s.log)
		defer unlock()
		if wasm = s.loadCached(cache, kindFuelModule, key); wasm == nil {
			var err error
			if wasm, err = rt.fuelInstrumentedModule(); err != nil {
				return nil, err
			}
			_ = cache.store(kindFuelModule, key, wasm) // a cache that cannot be written only costs time
		}
	}
	note, cached := "", ""
	if dir := filepath.Join(rt.cacheDir, "wazero-"+wazeroVersion); rt.cacheDir != "" && dirWritable(dir) {
		note, cached = ", then cached in "+dir, " (cached for later processes)"
	}
	done := s.slowNotice("goeryx: compiling the fuel-metering guest runtime for this machine (once per runtime and wazero version" + note + ")…")
	compiled, err := rt.wz.CompileModule(ctx, wasm)
	if err != nil && rt.cacheDir != "" {
		// As in Runtime.compile: an unreadable entry of wazero's file cache fails the
		// compilation; remove the entries and compile again.
		dir := filepath.Join(rt.cacheDir, "wazero-"+wazeroVersion)
		s.log("goeryx: the compiled-code cache in %s is unusable (%v); recompiling", dir, err)
		removeWazeroEntries(dir)
		compiled, err = rt.wz.CompileModule(ctx, wasm)
	}
	if err != nil {
		return nil, initError("cannot compile the fuel-metering guest runtime: %v", err)
	}
	if d := done(); d > time.Second {
		s.log("goeryx: compiled the fuel-metering guest runtime in %.1f s%s", d.Seconds(), cached)
	}
	return compiled, nil
}

// fuelInstrumentedModule reads python.wasm, checks it against the manifest, instruments it for
// fuel and strips its data segments (the memory image holds them).
func (rt *Runtime) fuelInstrumentedModule() ([]byte, error) {
	wasm, err := os.ReadFile(filepath.Join(rt.dir, rt.manifest.Wasm))
	if err != nil {
		return nil, initError("cannot load guest runtime: %v", err)
	}
	if err := checkSHA256(wasm, rt.manifest.WasmSHA256); err != nil {
		return nil, initError("guest runtime %s: %v", rt.manifest.Wasm, err)
	}
	rewrite := instrument.InstrumentFuel
	if rt.fuel.variant != nil {
		rewrite = rt.fuel.variant
	}
	if wasm, _, err = rewrite(wasm); err != nil {
		return nil, initError("cannot instrument guest runtime for fuel metering: %v", err)
	}
	if wasm, _, err = instrument.StripData(wasm); err != nil {
		return nil, initError("cannot prepare guest runtime: %v", err)
	}
	return wasm, nil
}

// ---- the host side of a metered run ----

// beginFuel sets the budget at the start of a run on inst: the loop-header budget on the
// normal module; on the fuel module, a metered run is charged from here (the host's request:
// decoding it, compiling the code, running it, answering), and an unmetered one gets an
// unmetered chunk. The host starts the meter, not the driver: user code can reach the driver
// and would silence it.
func (inst *instance) beginFuel(r *runState, maxFuel *int64) {
	if !inst.fuel {
		inst.setBudget(tickBudget)
		return
	}
	if maxFuel == nil {
		inst.setBudget(fuelChunk)
		return
	}
	r.fuelMetered, r.maxFuel = true, *maxFuel
	r.fuelGiven = min(fuelChunk, r.maxFuel)
	inst.setBudget(r.fuelGiven)
}

// fuelTick is tick's refill on a fuel module: the next chunk, or the hard stop when the run's
// fuel is overdrawn.
func (inst *instance) fuelTick() {
	r := inst.run.Load()
	if r == nil || !r.fuelMetered {
		inst.setBudget(fuelChunk)
		return
	}
	used := inst.fuelConsumed(r)
	if used > r.maxFuel {
		r.outOfFuel = true
		panic(errOutOfFuel)
	}
	next := min(fuelChunk, r.maxFuel-used)
	inst.setBudget(next)
	r.fuelGiven = used + next
}

// fuelConsumed is the fuel the run was charged so far (the guest is paused in a host function,
// or done).
func (inst *instance) fuelConsumed(r *runState) int64 {
	return r.fuelGiven - inst.getBudget()
}

// getBudget reads the budget global (an i32).
func (inst *instance) getBudget() int64 {
	if inst.budget == nil {
		return 0
	}
	inst.budgetMu.Lock()
	defer inst.budgetMu.Unlock()
	return int64(api.DecodeI32(inst.budget.Get()))
}

// forceTick makes a busy guest tick at its next instrumented loop header (to notice a stop
// request now rather than at its next regular tick); Python code, whose bytecode loop is not
// instrumented, ticks from the runtime's countdown within 1-2 ms (0.5-2 ms measured). On a fuel module the budget holds fuel that the
// accounting needs, so it is left alone: the guest ticks within one chunk anyway.
func (inst *instance) forceTick() {
	if !inst.fuel {
		inst.setBudget(0)
	}
}

func outOfFuelError(maxFuel int64) *Error {
	return &Error{Kind: KindResourceLimit, Limit: "max_fuel",
		Message: fmt.Sprintf("execution ran out of fuel (max_fuel=%d)", maxFuel)}
}

// ---- a session that starts metering ----

// toFuelModule moves the interpreter old, which runs on the normal module, to a new instance
// of the fuel module with the same state: the memory is copied (the globals of the runtime,
// its stack pointer, are at their initial values between calls, as for an image) and the new
// instance re-reads its WASI preopens. Descriptors the guest opened itself (a file kept open
// across runs) belong to the old instance and are closed with it: in the new one their
// numbers hold read-only placeholders, so that using them fails instead of reaching a file
// opened later. old is left untouched on failure; on success the caller closes it.
func (b *box) toFuelModule(ctx context.Context, old *instance, timeoutMS *int64) (*instance, runOutcome) {
	if _, err := b.rt.fuelCompiled(); err != nil {
		return nil, runOutcome{err: asError(err)}
	}
	// Both requests run in memory the user's code has shaped: under a run, with its timeout.
	var fds struct {
		OK  bool    `json:"ok"`
		FDs []int64 `json:"fds"`
	}
	if out, failed := b.guestRequest(ctx, old, timeoutMS, map[string]any{"op": protocol.ReqOpenFds}, &fds); failed {
		return nil, out
	} else if !fds.OK {
		return nil, runOutcome{err: &Error{Kind: KindEryx, Message: "cannot start fuel metering: the guest driver failed"}}
	}
	ic, err := b.instanceConfig(true)
	if err != nil {
		return nil, runOutcome{err: asError(err)}
	}
	inst, err := b.rt.instantiate(ctx, ic, b.pool())
	if err != nil {
		return nil, runOutcome{err: initError("failed to start guest interpreter: %v", err)}
	}
	src, dst := old.mod.Memory(), inst.mod.Memory()
	if have, need := dst.Size(), src.Size(); have < need {
		if _, ok := dst.Grow((need - have) / wasmPageSize); !ok {
			inst.close()
			return nil, runOutcome{err: initError("failed to start guest interpreter: cannot grow its memory to %d bytes", need)}
		}
	}
	data, _ := src.Read(0, src.Size())
	dst.Write(0, data)
	if _, err := inst.callExport(abi.ExportResetPreopens); err != nil {
		inst.close()
		return nil, runOutcome{err: initError("failed to start guest interpreter: %v", err)}
	}
	var resp struct {
		OK bool `json:"ok"`
	}
	out, failed := b.guestRequest(ctx, inst, timeoutMS, map[string]any{"op": protocol.ReqHoldFds, "fds": fds.FDs}, &resp)
	if !failed && !resp.OK {
		out, failed = runOutcome{err: initError("failed to start guest interpreter: the guest driver failed")}, true
	}
	if failed {
		inst.close()
		return nil, out
	}
	return inst, runOutcome{}
}

// guestRequest makes one request of the host's own (no user code, but in memory the user's
// code has shaped) under a run with the given timeout, and classifies a failure like a run's.
func (b *box) guestRequest(ctx context.Context, inst *instance, timeoutMS *int64, header map[string]any, resp any) (runOutcome, bool) {
	r := inst.beginRun(ctx, b.limits(timeoutMS, nil))
	_, reqErr := inst.request(header, nil, resp)
	inst.endRun(r)
	inst.stdout.take()
	inst.stderr.take()
	return b.failure(inst, r, reqErr, "Session")
}
