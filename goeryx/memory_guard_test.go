package goeryx

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/goeryx/goeryx/goeryx/internal/guard"
)

// Tests of the guarded linear memory (memory_guard.go, internal/guard, the memory-guard part
// of third_party/wazero/PATCH.md): generated modules make loads and stores of every width at
// and around the end of memory, after memory.grow and from a host callback's re-entry, and
// every out-of-bounds one must end as wazero's ordinary trap with the host alive and the
// memory exactly as an in-bounds-only execution leaves it. The same cases run with the guard
// disabled (GOERYX_MEMORY_GUARD=0, checked code) in a child process and must agree.

// memOp is one access (or memory.grow) of a generated module.
type memOp struct {
	code   []byte // the opcode (one byte, or 0xfd + LEB for v128)
	width  uint64 // bytes accessed; 0: memory.grow by addr pages
	store  bool
	addr   uint32
	offset uint32
}

// The accesses of wasm 1.0 and SIMD, with the value stores write.
var memOpKinds = []struct {
	code  []byte
	width uint64
	store bool
}{
	{[]byte{0x28}, 4, false}, {[]byte{0x29}, 8, false}, {[]byte{0x2a}, 4, false}, {[]byte{0x2b}, 8, false},
	{[]byte{0x2c}, 1, false}, {[]byte{0x2d}, 1, false}, {[]byte{0x2e}, 2, false}, {[]byte{0x2f}, 2, false},
	{[]byte{0x30}, 1, false}, {[]byte{0x31}, 1, false}, {[]byte{0x32}, 2, false}, {[]byte{0x33}, 2, false},
	{[]byte{0x34}, 4, false}, {[]byte{0x35}, 4, false}, {[]byte{0xfd, 0x00}, 16, false},
	{[]byte{0x36}, 4, true}, {[]byte{0x37}, 8, true}, {[]byte{0x38}, 4, true}, {[]byte{0x39}, 8, true},
	{[]byte{0x3a}, 1, true}, {[]byte{0x3b}, 2, true}, {[]byte{0x3c}, 1, true}, {[]byte{0x3d}, 2, true},
	{[]byte{0x3e}, 4, true}, {[]byte{0xfd, 0x0b}, 16, true},
}

const guardTestMaxPages = 4

func leb(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func sleb(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// storedBytes is what a store of kind code writes (little-endian, width bytes).
func storedBytes(code []byte, width uint64) []byte {
	var v [16]byte
	switch {
	case code[0] == 0xfd:
		for i := range v {
			v[i] = byte(i + 1)
		}
	case code[0] == 0x38:
		binary.LittleEndian.PutUint32(v[:], math.Float32bits(1.5))
	case code[0] == 0x39:
		binary.LittleEndian.PutUint64(v[:], math.Float64bits(-2.25))
	case code[0] == 0x36 || code[0] == 0x3a || code[0] == 0x3b:
		binary.LittleEndian.PutUint32(v[:], 0x11223344)
	default:
		binary.LittleEndian.PutUint64(v[:], 0x1122334455667788)
	}
	return v[:width]
}

// accessCode appends the instructions of one op to a function body.
func accessCode(body []byte, op memOp) []byte {
	if op.width == 0 {
		body = sleb(append(body, 0x41), int64(int32(op.addr)))
		return append(body, 0x40, 0x00, 0x1a) // memory.grow 0; drop
	}
	body = sleb(append(body, 0x41), int64(int32(op.addr))) // i32.const addr
	if op.store {
		switch {
		case op.code[0] == 0xfd:
			body = append(body, 0xfd, 0x0c)
			body = append(body, storedBytes(op.code, 16)...)
		case op.code[0] == 0x38:
			body = binary.LittleEndian.AppendUint32(append(body, 0x43), math.Float32bits(1.5))
		case op.code[0] == 0x39:
			body = binary.LittleEndian.AppendUint64(append(body, 0x44), math.Float64bits(-2.25))
		case op.code[0] == 0x36 || op.code[0] == 0x3a || op.code[0] == 0x3b:
			body = sleb(append(body, 0x41), 0x11223344)
		default:
			body = sleb(append(body, 0x42), 0x1122334455667788)
		}
	}
	body = append(body, op.code...)
	body = leb(body, 0) // alignment hint 1: any address is allowed
	body = leb(body, uint64(op.offset))
	if !op.store {
		body = append(body, 0x1a) // drop
	}
	return body
}

// guardTestModule encodes a module with one page of memory (max guardTestMaxPages), exported as
// "memory", an import env.cb (i32) -> () and two exports: run() does ops, and callback() calls
// env.cb(0) (whose host side calls run) and then does ops again: the trap may come from the
// re-entered run, or from the caller after the callback returned.
func guardTestModule(ops []memOp) []byte {
	section := func(m []byte, id byte, payload []byte) []byte {
		return append(leb(append(m, id), uint64(len(payload))), payload...)
	}
	name := func(b []byte, s string) []byte { return append(leb(b, uint64(len(s))), s...) }
	m := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	m = section(m, 1, []byte{2, 0x60, 1, 0x7f, 0, 0x60, 0, 0})             // (i32)->(), ()->()
	m = section(m, 2, append(name(name([]byte{1}, "env"), "cb"), 0x00, 0)) // import func type 0
	m = section(m, 3, []byte{2, 1, 1})                                     // run, callback: type 1
	m = section(m, 5, []byte{1, 1, 1, guardTestMaxPages})                  // memory min 1 max 4
	exports := name([]byte{3}, "run")
	exports = append(exports, 0, 1)
	exports = append(name(exports, "callback"), 0, 2)
	exports = append(name(exports, "memory"), 2, 0)
	m = section(m, 7, exports)
	var run []byte
	for _, op := range ops {
		run = accessCode(run, op)
	}
	run = append([]byte{0}, append(run, 0x0b)...)
	cb := append([]byte{0, 0x41, 0, 0x10, 0}, run[1:]...) // i32.const 0; call cb; ops
	code := leb(nil, 2)
	code = append(leb(code, uint64(len(run))), run...)
	code = append(leb(code, uint64(len(cb))), cb...)
	return section(m, 10, code)
}

// oracle executes ops on a model of the memory: the bytes the memory holds afterwards and
// whether an access was out of bounds (then the run stops there).
func oracle(ops []memOp, mem []byte) ([]byte, bool) {
	for _, op := range ops {
		if op.width == 0 {
			if n := len(mem)/wasmPageSize + int(op.addr); op.addr <= guardTestMaxPages && n <= guardTestMaxPages {
				mem = append(mem, make([]byte, int(op.addr)*wasmPageSize)...)
			}
			continue
		}
		ea := uint64(op.addr) + uint64(op.offset)
		if ea+op.width > uint64(len(mem)) {
			return mem, true
		}
		if op.store {
			copy(mem[ea:], storedBytes(op.code, op.width))
		}
	}
	return mem, false
}

// randomOps draws n accesses that cluster at the end of memory (before and after growth),
// with static offsets from 0 to 2^32-1.
func randomOps(r *rand.Rand, n int) []memOp {
	ops := make([]memOp, 0, n)
	pages := 1
	for range n {
		if r.IntN(8) == 0 {
			d := uint32(r.IntN(3))
			if r.IntN(4) == 0 {
				d = r.Uint32() // fails
			}
			ops = append(ops, memOp{addr: d})
			if int(d)+pages <= guardTestMaxPages {
				pages += int(d)
			}
			continue
		}
		k := memOpKinds[r.IntN(len(memOpKinds))]
		op := memOp{code: k.code, width: k.width, store: k.store}
		end := uint64(pages) * wasmPageSize
		switch r.IntN(6) {
		case 0: // around the end, no offset
			op.addr = uint32(end) - 20 + uint32(r.IntN(40))
		case 1: // around the end through the offset
			op.offset = uint32(end) - 20 + uint32(r.IntN(40))
			op.addr = uint32(r.IntN(8))
		case 2: // the largest effective addresses
			op.addr = math.MaxUint32 - uint32(r.IntN(32))
			op.offset = math.MaxUint32 - uint32(r.IntN(32))
		case 3: // far beyond, inside the reservation
			op.addr = r.Uint32()
			op.offset = r.Uint32() >> uint(r.IntN(32))
		default: // in bounds
			op.addr = uint32(r.IntN(int(end) - 16))
		}
		ops = append(ops, op)
	}
	return ops
}

// guardHarness is a wazero runtime made like goeryx's (newWazero) with an env.cb import.
type guardHarness struct {
	wz      wazero.Runtime
	pool    *memoryPool
	guarded bool
}

func newGuardHarness(t testing.TB) *guardHarness {
	ctx := context.Background()
	wz, err := newWazero(ctx, "")
	require.NoError(t, err)
	t.Cleanup(func() { wz.Close(ctx) })
	_, err = wz.NewHostModuleBuilder("env").NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, _ []uint64) {
			if _, err := mod.ExportedFunction("run").Call(ctx); err != nil {
				panic(err) // the trap of the inner run becomes the trap of the outer call
			}
		}), []api.ValueType{api.ValueTypeI32}, nil).Export("cb").Instantiate(ctx)
	require.NoError(t, err)
	pool, err := newMemoryPool(nil)
	require.NoError(t, err)
	t.Cleanup(pool.close)
	return &guardHarness{wz: wz, pool: pool, guarded: pool.guarded}
}

// run instantiates ops' module on a pooled memory, calls export, and checks the outcome
// against the oracle.
func (h *guardHarness) run(t testing.TB, ops []memOp, export string) {
	ctx := context.Background()
	compiled, err := h.wz.CompileModule(ctx, guardTestModule(ops))
	require.NoError(t, err)
	defer compiled.Close(ctx)
	mem, err := h.pool.get(0)
	require.NoError(t, err)
	mod, err := h.wz.InstantiateModule(experimental.WithMemoryAllocator(ctx, mem), compiled,
		wazero.NewModuleConfig().WithName("").WithStartFunctions())
	require.NoError(t, err)
	defer mod.Close(ctx)
	if h.guarded {
		require.Equal(t, uint64(guard.Reservation), mem.GuardReservation())
	}
	want, trap := oracle(ops, make([]byte, wasmPageSize))
	if export == "callback" {
		if want, trap = oracle(ops, make([]byte, wasmPageSize)); !trap {
			want, trap = oracle(ops, want)
		}
	}
	_, err = mod.ExportedFunction(export).Call(ctx)
	if trap {
		require.Error(t, err, "ops %v", ops)
		require.Contains(t, err.Error(), "out of bounds memory access")
	} else {
		require.NoError(t, err, "ops %v", ops)
	}
	got, ok := mod.Memory().Read(0, mod.Memory().Size())
	require.True(t, ok)
	require.Equal(t, len(want), len(got), "memory size")
	require.True(t, string(want) == string(got), "memory contents differ from the oracle's (ops %v)", ops)
}

// TestMemoryGuardEngine checks that the guard is really on here (Linux amd64, patched wazero):
// memories are guard reservations and the engine refuses one that is not.
func TestMemoryGuardEngine(t *testing.T) {
	requireWazeroPatch(t)
	h := newGuardHarness(t)
	if os.Getenv("GOERYX_MEMORY_GUARD") == "0" {
		require.False(t, h.guarded)
		return
	}
	if !guard.Available() {
		t.Skip("no memory guard on this platform (Linux amd64 with cgo only)")
	}
	require.True(t, h.guarded)
	ctx := context.Background()
	compiled, err := h.wz.CompileModule(ctx, guardTestModule(nil))
	require.NoError(t, err)
	_, err = h.wz.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
	require.ErrorContains(t, err, "needs a guarded linear memory")
}

// Every kind of access at every byte around the end of memory, with the address in the
// operand or in the static offset, before and after growth.
func TestMemoryGuardBoundary(t *testing.T) {
	requireWazeroPatch(t)
	h := newGuardHarness(t)
	for _, k := range memOpKinds {
		for _, grow := range []uint32{0, 2} {
			end := uint32(1+grow) * wasmPageSize
			for d := -int(k.width) - 1; d <= 1; d++ {
				for _, viaOffset := range []bool{false, true} {
					op := memOp{code: k.code, width: k.width, store: k.store, addr: uint32(int(end) + d)}
					if viaOffset {
						op.addr, op.offset = 3, uint32(int(end)+d-3)
					}
					var ops []memOp
					if grow > 0 {
						ops = append(ops, memOp{addr: grow})
					}
					h.run(t, append(ops, op), "run")
				}
			}
		}
	}
}

// Random programs, also through the callback re-entry, in several goroutines at once.
func TestMemoryGuardRandom(t *testing.T) {
	requireWazeroPatch(t)
	h := newGuardHarness(t)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 15))
			for i := range 60 {
				export := "run"
				if i%3 == 0 {
					export = "callback"
				}
				h.run(t, randomOps(r, 1+r.IntN(12)), export)
			}
		}()
	}
	wg.Wait()
}

// The same outcomes with checked code: the tests above in a child process with the guard off.
func TestMemoryGuardFallbackAgrees(t *testing.T) {
	requireWazeroPatch(t)
	if os.Getenv("GOERYX_MEMORY_GUARD") == "0" {
		t.Skip("already the fallback")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestMemoryGuard(Engine|Boundary|Random)$", "-test.count=1")
	cmd.Env = append(os.Environ(), "GOERYX_MEMORY_GUARD=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "PASS")
}

// FuzzMemoryGuard: generated modules with random out-of-bounds accesses all end as traps, the
// host alive, memory as the oracle says.
func FuzzMemoryGuard(f *testing.F) {
	if !strings.Contains(os.Getenv("GOFLAGS"), "go.wazero.mod") {
		f.Skip("pristine wazero: GOFLAGS does not select build/go.wazero.mod (third_party/wazero/apply.sh)")
	}
	h := newGuardHarness(f)
	f.Add(uint64(1), uint8(5), false)
	f.Add(uint64(2), uint8(12), true)
	f.Fuzz(func(t *testing.T, seed uint64, n uint8, callback bool) {
		r := rand.New(rand.NewPCG(seed, uint64(n)))
		export := "run"
		if callback {
			export = "callback"
		}
		h.run(t, randomOps(r, 1+int(n%32)), export)
	})
}

// Faults that are not guest accesses reach Go's handler unchanged: a nil dereference in Go
// code is still Go's panic, and so is a fault at a guarded address from Go code (not wazero's
// code: the handler checks the PC), which debug.SetPanicOnFault turns into a panic.
func TestMemoryGuardForwardsOtherFaults(t *testing.T) {
	requireWazeroPatch(t)
	h := newGuardHarness(t)
	if !h.guarded {
		t.Skip("memory guard off")
	}
	recovered := func(f func()) (r any) {
		defer func() { r = recover() }()
		f()
		return nil
	}
	var nilPtr *int
	r := recovered(func() { _ = *nilPtr })
	require.Contains(t, fmt.Sprint(r), "nil pointer dereference")

	mem, err := h.pool.get(0)
	require.NoError(t, err)
	defer mem.Free()
	mem.Reallocate(wasmPageSize)
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	r = recovered(func() { guardTestSink = mem.reserved[2*wasmPageSize] })
	fault, ok := r.(interface{ Addr() uintptr })
	require.True(t, ok, "%v", r)
	require.Equal(t, uintptr(unsafe.Pointer(&mem.reserved[2*wasmPageSize])), fault.Addr())
}

var guardTestSink byte
