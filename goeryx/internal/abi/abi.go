// Package abi holds the constants of the engine ↔ guest-runtime boundary. Their one
// definition is eryx_abi.h in this directory (read by the runtime's C code); abi_test.go checks
// that every #define there has the same value here. Semantics: docs/ABI.md.
package abi

// Version is ERYX_ABI_VERSION: the runtime manifest's "abi" must equal it.
const Version = 1

// Import module and functions provided by the host.
const (
	ImportModule   = "_eryx"
	ImportHostCall = "host_call"
	ImportHostTake = "host_take"
	ImportTick     = "tick"
)

// Negative results of host_call / host_take.
const (
	HostErrBadRequest = -1
	HostErrUnknownOp  = -2
	HostErrTooLarge   = -3
	HostErrNoResponse = -4
)

// host_call ops of the runtime's dynamic loader (goeryx/internal/dylink). They share host_call's
// numbers with the driver's ops (internal/protocol): hostCall's switch refuses a duplicate.
const (
	OpDlopen = 13
	OpDlsym  = 14
)

// Exports of the guest module.
const (
	ExportInitialize    = "_initialize"
	ExportInit          = "eryx_init"
	ExportBoot          = "eryx_boot"
	ExportCall          = "eryx_call"
	ExportInterrupt     = "eryx_interrupt"
	ExportAlloc         = "eryx_alloc"
	ExportFree          = "eryx_free"
	ExportTickAnchor    = "eryx_tick_anchor"
	ExportResetPreopens = "eryx_reset_preopens"
)

// Fixed guest configuration.
const (
	GuestPrefix      = "/usr/local"
	GuestStdlibDir   = "/usr/local/lib/python3.13"
	DriverModule     = "_eryx_driver"
	DriverHostGlobal = "_host"
)
