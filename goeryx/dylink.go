package goeryx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/tetratelabs/wazero/api"

	"github.com/goeryx/goeryx/goeryx/internal/abi"
	"github.com/goeryx/goeryx/goeryx/internal/dylink"
	"github.com/goeryx/goeryx/goeryx/internal/instrument"
	"github.com/goeryx/goeryx/goeryx/internal/protocol"
)

// Native extension modules: the guest's dlopen/dlsym (runtime/eryx/eryx_runtime.c) reach the
// host through host_call; goeryx/internal/dylink links the side module into the instance.

// maxDlopenRequest bounds a dlopen request: a path and the file.
const maxDlopenRequest = dylink.MaxModuleBytes + 64<<10

// dlRuntime is a Runtime's part of dynamic loading: what python.wasm exports and the compiled
// side modules. main is nil when the runtime was not linked for side modules.
type dlRuntime struct {
	main  *dylink.Main
	cache *dylink.Cache
}

// linker returns the instance's side module linker, made on first use.
func (inst *instance) linker() (*dylink.Linker, error) {
	if inst.dl != nil {
		return inst.dl, nil
	}
	rt := inst.rt
	if rt.dl.main == nil || !rt.dl.main.CanLoad() {
		return nil, errors.New("this guest runtime is not linked for side modules")
	}
	inst.dl = &dylink.Linker{Cache: rt.dl.cache, Main: rt.dl.main, Guest: inst.mod, Alloc: inst.allocAligned,
		OnModule: func(m api.Module) {
			// the module's loops tick like the interpreter's: its countdown is set with the
			// instance's (setBudget), starting at the instance's current value
			if g, ok := m.ExportedGlobal(instrument.ExportBudget).(api.MutableGlobal); ok && inst.budget != nil {
				inst.budgetMu.Lock()
				g.Set(inst.budget.Get())
				inst.sideBudgets = append(inst.sideBudgets, g)
				inst.budgetMu.Unlock()
			}
		}}
	return inst.dl, nil
}

// allocAligned reserves size bytes of guest memory aligned to align, with the guest's
// allocator (never freed: side modules stay loaded).
func (inst *instance) allocAligned(size, align uint32) (uint32, error) {
	if uint64(size)+uint64(align) > 1<<31 {
		return 0, fmt.Errorf("cannot reserve %d bytes of guest memory", size)
	}
	r, err := inst.callExport(abi.ExportAlloc, uint64(size+align))
	if err != nil {
		return 0, err
	}
	if uint32(r) == 0 {
		return 0, fmt.Errorf("guest out of memory (reserving %d bytes for the module)", size)
	}
	return (uint32(r) + align - 1) &^ (align - 1), nil
}

// dlCall answers OpDlopen and OpDlsym: the response payload is an i32 result, then the
// reason of a failure (abi.h).
func (inst *instance) dlCall(op int32, frame []byte) any {
	payload, err := protocol.Decode(frame, &struct{}{})
	if err != nil {
		return nil
	}
	result := func(v uint32, reason string) framed {
		out := binary.LittleEndian.AppendUint32(nil, v)
		return framed{header: map[string]any{}, payload: append(out, reason...)}
	}
	switch op {
	case abi.OpDlopen:
		path, data, ok := cutByte(payload, 0)
		if !ok || !utf8.Valid(path) {
			return nil
		}
		l, err := inst.linker()
		if err != nil {
			return result(0, err.Error())
		}
		// data is a view of guest memory: the loader keeps the file (the image's record)
		lib, err := l.Load(inst.ctx, string(path), append([]byte(nil), data...))
		if err != nil {
			return result(0, err.Error())
		}
		for i, x := range l.Libraries() {
			if x == lib {
				return result(uint32(i+1), "")
			}
		}
		return result(0, "internal error: library not recorded")
	default: // abi.OpDlsym
		if len(payload) < 4 || inst.dl == nil {
			return result(0, "no such library")
		}
		h := binary.LittleEndian.Uint32(payload)
		libs := inst.dl.Libraries()
		if h == 0 || int(h) > len(libs) {
			return result(0, "no such library")
		}
		slot, ok := libs[h-1].Symbol(string(payload[4:]))
		if !ok {
			return result(0, "undefined symbol")
		}
		return result(slot, "")
	}
}

func cutByte(b []byte, sep byte) ([]byte, []byte, bool) {
	for i, c := range b {
		if c == sep {
			return b[:i], b[i+1:], true
		}
	}
	return nil, nil, false
}
