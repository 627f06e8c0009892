//go:build !(linux && amd64 && cgo)

package guard

import (
	"errors"
	"unsafe"
)

// Install reports that the guard is not available on this platform: memories are mapped
// without guard regions and wazero keeps its bounds checks.
func Install(unsafe.Pointer, int) bool { return false }

// Available reports false.
func Available() bool { return false }

// EnsureFront does nothing.
func EnsureFront() {}

// Registration is never made here.
type Registration struct{}

// Register fails: there is no handler.
func Register([]byte) (Registration, error) { return Registration{}, errors.New("no memory guard") }

// Slot returns nil.
func (Registration) Slot() *uintptr { return nil }

// Unregister does nothing.
func (Registration) Unregister() {}

var _ = disabled
