package goeryx

import (
	"context"
	"sync"
	"unsafe"

	"github.com/tetratelabs/wazero"

	"github.com/goeryx/goeryx/goeryx/internal/guard"
)

// memoryGuarder is what the patched wazero's runtime offers for the memory guard
// (third_party/wazero/PATCH.md, change 4); pristine wazero's runtime lacks it.
type memoryGuarder interface {
	EnableMemoryGuard(abi int) bool
	MemoryGuardCodeSegments() (table unsafe.Pointer, entries int)
}

var memoryGuard struct {
	once sync.Once
	on   bool
}

// memoryGuardOn reports, the same for the whole process, whether wazero runtimes compile
// loads and stores without bounds checks (RATIONALE.md, "Why guest memory has guard regions
// instead of bounds checks"): wazero is the patched one and the guard's signal handler is
// installed (Linux amd64 with cgo, a reservation granted, GOERYX_MEMORY_GUARD not "0").
// Otherwise wazero keeps its bounds checks, the fallback with the same results.
func memoryGuardOn() bool {
	memoryGuard.once.Do(func() {
		ctx := context.Background()
		wz := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
		defer wz.Close(ctx)
		if g, ok := wz.(memoryGuarder); ok {
			memoryGuard.on = guard.Install(g.MemoryGuardCodeSegments())
		}
	})
	return memoryGuard.on
}

// enableMemoryGuard turns on wz's memory guard when memoryGuardOn; it must run before wz
// compiles anything.
func enableMemoryGuard(wz wazero.Runtime) {
	if !memoryGuardOn() {
		return
	}
	if g, ok := wz.(memoryGuarder); !ok || !g.EnableMemoryGuard(guard.ABI) {
		// Cannot happen (the same wazero said yes above); fail closed: the pools are guarded,
		// so checked code would still be correct, only slower.
		return
	}
}
