package goeryx

import (
	"unsafe"

	"github.com/tetratelabs/wazero"

	"github.com/goeryx/goeryx/goeryx/internal/guard"
)

// enableMemoryGuard turns on wz's memory guard (loads and stores compiled without bounds checks)
// when the process has the guard's signal handler and wz is the patched wazero
// (third_party/wazero/PATCH.md); it must run before wz compiles anything. Otherwise wazero
// keeps its bounds checks, the fallback with the same results (RATIONALE.md, "Guarded linear
// memory").
func enableMemoryGuard(wz wazero.Runtime) bool {
	g, ok := wz.(interface {
		EnableMemoryGuard(abi int) bool
		MemoryGuardCodeSegments() (table unsafe.Pointer, entries int)
	})
	if !ok || !guard.Install(g.MemoryGuardCodeSegments()) {
		return false
	}
	return g.EnableMemoryGuard(guard.ABI)
}
