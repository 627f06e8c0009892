package goeryx

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/sys"

	"github.com/goeryx/goeryx/goeryx/internal/abi"
	"github.com/goeryx/goeryx/goeryx/internal/dylink"
	"github.com/goeryx/goeryx/goeryx/internal/instrument"
	"github.com/goeryx/goeryx/goeryx/internal/protocol"
)

// wazeroVersion names the compilation cache directory, so that a new wazero never reads
// another version's compiled code.
var wazeroVersion = func() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/tetratelabs/wazero" {
				return m.Version
			}
		}
	}
	return "unknown"
}()

// mount is one file system the guest sees. view makes one instance's view of it; poll is the
// instance's poll, for vfs.Options.Poll: a guest in one long file operation (a write of
// gigabytes is a single host call) still meets its deadline and cancellation.
type mount struct {
	view      func(poll func()) experimentalsys.FS
	guestPath string
}

// fixedView is the view of a file system that does no long operations (the root listing).
func fixedView(fs experimentalsys.FS) func(func()) experimentalsys.FS {
	return func(func()) experimentalsys.FS { return fs }
}

// instanceConfig is what differs between interpreters of one runtime.
type instanceConfig struct {
	memoryLimit uint64 // bytes; 0 = wasm32 maximum
	mounts      []mount
	stdout      func(string) // streaming hooks; nil = capture only
	stderr      func(string)
	// stdoutTail and stderrTail, set when a streamed channel is scrubbed, say how many trailing
	// bytes may begin a secret placeholder (outputSink.tail).
	stdoutTail, stderrTail func([]byte) int
	fuel                   bool // instantiate the fuel module (fuel.go; compiled on first use)
}

// instance is one guest interpreter: a wazero module instance plus the host-side state its
// imports use. Only one goroutine uses an instance at a time (the caller of run/request);
// cancel may be called from any goroutine.
type instance struct {
	rt      *Runtime
	mod     api.Module
	mem     *linearMemory
	memUse  memoryUse       // peak and refused growth of the current run; outlives mem
	cpu     guestCPU        // the guest's CPU time (time.process_time)
	ctx     context.Context // carries the instance to host functions
	exports map[string]api.Function
	budget  api.MutableGlobal // the instrumentation's countdown (i32)
	// sideBudgets are the countdowns of the loaded extension modules (goeryx/dylink.go), set
	// with budget.
	sideBudgets []api.MutableGlobal
	budgetMu    sync.Mutex
	// fuel: the instance runs the fuel module, whose budget counts instructions (fuel.go).
	fuel bool

	stdout, stderr outputSink

	// response is the pending host_call response, fetched by host_take.
	response []byte
	hasResp  bool
	// responseParts, when set, is the pending response in pieces (received network data
	// handed over without being copied into one buffer first).
	responseParts [][]byte
	// netLast is the outcome of the last OpNetRead that returned no data (netcalls.go).
	netLast netOutcome
	// netBuf is what OpNetRead reads into when the guest wants bytes (not a buffer of its
	// own): at most gnet.MaxRecv, allocated on first use.
	netBuf []byte

	// run is the state of the run in progress (nil between runs).
	run atomic.Pointer[runState]
	// dead is set once the instance can no longer be used (trap, exit, hard stop).
	dead error
	// cancelled is set by cancel, from any goroutine: the current and every later run stop.
	cancelled atomic.Bool
	// dl links side modules (extension modules) into the instance; nil until the first.
	dl *dylink.Linker
}

// cancel stops the run in progress, if any, and every later one (Sandbox/Session.Close).
func (inst *instance) cancel() {
	inst.cancelled.Store(true)
	if r := inst.run.Load(); r != nil {
		r.cancel()
	}
}

type instanceKey struct{}

func instanceFrom(ctx context.Context) *instance {
	inst, _ := ctx.Value(instanceKey{}).(*instance)
	return inst
}

// instantiate creates a module instance whose memory comes from pool. When the pool holds an
// image, the instance starts as the booted interpreter it was taken from and needs no
// initialisation calls.
func (rt *Runtime) instantiate(ctx context.Context, ic *instanceConfig, pool *memoryPool) (*instance, error) {
	compiled := rt.compiled
	if ic.fuel {
		var err error
		if compiled, err = rt.fuelCompiled(); err != nil {
			return nil, err
		}
	}
	mem, err := pool.get(ic.memoryLimit)
	if err != nil {
		return nil, fmt.Errorf("cannot reserve guest memory: %v", err)
	}
	inst := &instance{rt: rt, mem: mem, exports: map[string]api.Function{}, fuel: ic.fuel}
	mem.use.Store(&inst.memUse)
	inst.stdout.emit, inst.stdout.tail = ic.stdout, ic.stdoutTail
	inst.stderr.emit, inst.stderr.tail = ic.stderr, ic.stderrTail
	inst.ctx = context.WithValue(ctx, instanceKey{}, inst)

	fsc := wazero.NewFSConfig().WithFSMount(rt.stdlib, abi.GuestStdlibDir)
	for _, m := range ic.mounts {
		fsc = fsc.(sysfs.FSConfig).WithSysFSMount(m.view(inst.poll), m.guestPath)
	}
	mc := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions().
		WithStdout(&inst.stdout).
		WithStderr(&inst.stderr).
		WithSysWalltime().
		WithNanotime(monotonicNow, 1).
		WithNanosleep(inst.nanosleep).
		WithRandSource(crand.Reader).
		WithFSConfig(fsc)
	mod, err := rt.wz.InstantiateModule(experimental.WithMemoryAllocator(inst.ctx, mem), compiled, mc)
	if err != nil {
		inst.close()
		return nil, err
	}
	inst.mod = mod
	if g, ok := mod.ExportedGlobal(instrument.ExportBudget).(api.MutableGlobal); ok {
		inst.budget = g
	}
	if image := pool.image; image != nil {
		m := mod.Memory()
		if have := uint64(m.Size()); have < uint64(len(image)) {
			if _, ok := m.Grow(uint32((uint64(len(image)) - have) / wasmPageSize)); !ok {
				inst.close()
				return nil, errMemoryTooSmall
			}
		}
		if !pool.backing.preloaded() {
			m.Write(0, image)
		}
		if _, err := inst.callExport(abi.ExportResetPreopens); err != nil {
			inst.close()
			return nil, err
		}
		if len(pool.libs) > 0 {
			// The image holds the side modules' data and state: bind them again at the same
			// bases (dylink.Linker.Replay).
			l, err := inst.linker()
			if err == nil {
				err = l.Replay(inst.ctx, pool.libs)
			}
			if err != nil {
				inst.close()
				return nil, fmt.Errorf("cannot restore the extension modules of the image: %v", err)
			}
		}
	}
	return inst, nil
}

var errMemoryTooSmall = errors.New("memory cap below the interpreter image")

// callExport calls an exported function with the instance's context.
func (inst *instance) callExport(name string, params ...uint64) (uint64, error) {
	f, ok := inst.exports[name]
	if !ok {
		var err error
		if f, err = exportFunc(inst.mod, name); err != nil {
			return 0, err
		}
		inst.exports[name] = f
	}
	res, err := f.Call(inst.ctx, params...)
	if err != nil {
		return 0, err
	}
	if len(res) == 0 {
		return 0, nil
	}
	return res[0], nil
}

// writeGuest copies data into a fresh guest allocation.
func (inst *instance) writeGuest(data []byte) (uint32, error) {
	r, err := inst.callExport(abi.ExportAlloc, uint64(len(data)))
	if err != nil {
		return 0, err
	}
	ptr := uint32(r)
	if ptr == 0 && len(data) > 0 {
		return 0, &protocolError{"guest out of memory"}
	}
	if !inst.mod.Memory().Write(ptr, data) {
		return 0, &protocolError{"guest allocation out of range"}
	}
	return ptr, nil
}

func (inst *instance) freeGuest(ptr uint32) {
	_, _ = inst.callExport(abi.ExportFree, uint64(ptr))
}

// protocolError is a response of the guest driver that breaks the protocol (docs/PROTOCOL.md):
// the driver lives in guest memory, so user code can damage or replace it.
type protocolError struct{ reason string }

func (e *protocolError) Error() string { return "the guest broke the host protocol: " + e.reason }

// request sends one frame to the driver (eryx_call) and decodes the response header into
// resp. The returned payload is a copy. The error is a *protocolError when the guest's
// response is malformed, any other error when a guest call trapped, exited or was stopped
// (the instance is then dead). Callers that let user code run (every request but configure
// on a fresh image) make the request inside a run (beginRun), so that its deadline and
// cancellation apply.
func (inst *instance) request(header any, payload []byte, resp any) ([]byte, error) {
	frame, err := protocol.Encode(header, payload)
	if err != nil {
		return nil, err
	}
	ptr, err := inst.writeGuest(frame)
	if err != nil {
		return nil, err
	}
	inst.cpu.begin()
	r, callErr := inst.callExport(abi.ExportCall, uint64(ptr), uint64(len(frame)))
	inst.cpu.end()
	if callErr != nil {
		inst.dead = callErr
		return nil, callErr
	}
	if _, err := inst.callExport(abi.ExportFree, uint64(ptr)); err != nil {
		inst.dead = err // stopped hard, or out of fuel, inside free
		return nil, err
	}
	if int64(r) == -1 {
		return nil, &protocolError{"the guest driver failed"}
	}
	rptr, rlen := uint32(r>>32), uint32(r)
	if rlen > protocol.MaxFrameBytes {
		return nil, &protocolError{fmt.Sprintf("response of %d bytes exceeds the %d-byte limit", rlen, protocol.MaxFrameBytes)}
	}
	data, ok := inst.mod.Memory().Read(rptr, rlen)
	if !ok {
		return nil, &protocolError{"response out of range"}
	}
	out, err := protocol.Decode(data, resp)
	if err != nil {
		return nil, &protocolError{err.Error()}
	}
	return append([]byte(nil), out...), nil
}

// setBudget makes the instrumentation call tick after n more loop headers (on the fuel module:
// once n more units of fuel are used, at a loop header or function exit). The guest writes
// the budget too (without a lock); the lock only orders the host's own writes, which come from
// the guest goroutine (tick) and from a cancelling goroutine (setBudget(0)). A store of 0 lost
// to a concurrent guest decrement only delays the interrupt to the next regular tick.
func (inst *instance) setBudget(n int64) {
	if inst.budget != nil {
		inst.budgetMu.Lock()
		inst.budget.Set(uint64(uint32(n)))
		for _, g := range inst.sideBudgets {
			g.Set(uint64(uint32(n)))
		}
		inst.budgetMu.Unlock()
	}
}

func (inst *instance) close() {
	if inst.dl != nil {
		inst.dl.Close(context.Background()) // they import the instance's memory and table
		inst.dl = nil
	}
	if inst.mod != nil {
		_ = inst.mod.Close(context.Background()) // wazero frees the memory (back to its pool)
		inst.mod = nil
	} else if inst.mem != nil {
		inst.mem.Free()
	}
	inst.mem = nil
}

// terminationReason describes why a guest call failed with a trap or exit.
func terminationReason(err error) string {
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		return fmt.Sprintf("exit code %d", exit.ExitCode())
	}
	msg := err.Error()
	for i := 0; i < len(msg); i++ {
		if msg[i] == '\n' {
			return msg[:i]
		}
	}
	return msg
}
