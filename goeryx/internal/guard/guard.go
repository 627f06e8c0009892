// Package guard is the signal-handling half of goeryx's guarded linear memory (RATIONALE.md,
// "Why guest memory has guard regions instead of bounds checks"): each guest memory sits at the
// start of a reservation of Reservation bytes, inaccessible beyond the memory's size, and
// wazero (patched, see third_party/wazero/PATCH.md) compiles loads and stores without bounds
// checks. An access beyond the memory faults; the handler installed here, in front of Go's and
// any other, turns such a fault into wazero's out-of-bounds trap and passes every other fault
// on.
//
// Available reports whether this process has the handler (Linux on amd64 with cgo, the
// handler installed, a reservation granted, and GOERYX_MEMORY_GUARD not "0"); without it
// memories are mapped as before and wazero keeps its bounds checks.
package guard

import "os"

// Reservation is the address space reserved per guarded memory: more than any wasm32 address
// plus static offset plus access size (2^32 + 2^32 + 16), as wazero's memory guard requires.
const Reservation = 8<<30 + 64<<10

// ABI is the version of wazero's memory-guard contract the handler implements.
const ABI = 1

// disabled says whether the environment turns the guard off (to compare with checked code,
// or to work around a platform problem).
func disabled() bool { return os.Getenv("GOERYX_MEMORY_GUARD") == "0" }
