//go:build linux && amd64 && cgo

package guard

/*
#include "guard.h"
*/
import "C"

import (
	"errors"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

var (
	installOnce sync.Once
	installed   atomic.Bool
)

// Install puts the handler in front of the current SIGSEGV handler, once per process, with
// the code-segment table of the patched wazero (codeSegments, entries pairs). It reports
// whether the guard is available. A second call returns the first one's answer.
func Install(codeSegments unsafe.Pointer, entries int) bool {
	installOnce.Do(func() {
		if disabled() || codeSegments == nil || !probe() {
			return
		}
		installed.Store(C.guard_install(C.uintptr_t(uintptr(codeSegments)), C.int(entries)) == 0)
	})
	return installed.Load()
}

// Available reports whether Install succeeded.
func Available() bool { return installed.Load() }

// probe reserves and releases one reservation: a kernel that refuses (a vm.overcommit or
// address-space limit) means no guard.
func probe() bool {
	b, err := unix.Mmap(-1, 0, Reservation, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return false
	}
	_ = unix.Munmap(b)
	return true
}

// EnsureFront re-installs the handler in front if another one was installed after it (Python's
// faulthandler.enable() after goeryx was loaded), forwarding to that one. Cheap (one system
// call); goeryx calls it before running guest code.
func EnsureFront() {
	if installed.Load() {
		C.guard_ensure_front()
	}
}

// Registration is a reservation known to the handler.
type Registration struct{ id C.int }

var errFull = errors.New("too many guarded memories")

// Register makes faults in mem (a whole reservation) eligible to become traps.
func Register(mem []byte) (Registration, error) {
	id := C.guard_register(C.uintptr_t(uintptr(unsafe.Pointer(&mem[0]))), C.uintptr_t(len(mem)))
	if id < 0 {
		return Registration{}, errFull
	}
	return Registration{id: id}, nil
}

// Slot is where wazero publishes the execution context of code using the memory.
func (r Registration) Slot() *uintptr { return (*uintptr)(unsafe.Pointer(C.guard_slot(r.id))) }

// Unregister forgets the reservation (before it is unmapped).
func (r Registration) Unregister() { C.guard_unregister(r.id) }
