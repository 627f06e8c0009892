/*
 * eryx_abi.h: the one definition of the boundary between the goeryx engine (Go, wazero)
 * and the guest runtime (CPython for wasm32-wasip1). See docs/ABI.md for the semantics.
 *
 * This file is read by the C side of the runtime (runtime/eryx/*.c, compiled with
 * -I goeryx/internal/abi) and by the Go engine: goeryx/internal/abi/abi_test.go parses every
 * #define below and checks it against the Go constants in abi.go. Change both together and
 * bump ERYX_ABI_VERSION whenever the meaning of anything here changes.
 *
 * Only plain `#define NAME <integer or "string">` lines; no expressions.
 */
#ifndef ERYX_ABI_H
#define ERYX_ABI_H

/* Bumped on any incompatible change; recorded in the runtime manifest ("abi") and checked by
 * the engine when it opens a runtime. */
#define ERYX_ABI_VERSION 1

/* ---- wasm import module provided by the host ------------------------------------------ */
#define ERYX_IMPORT_MODULE "_eryx"
/* int32 host_call(int32 op, int32 req_ptr, int32 req_len): one synchronous request to the
 * host; returns the response length (>= 0; fetch it with host_take) or a negative
 * ERYX_HOSTERR_* code. The host may block (sleep, callback waits) inside this call. */
#define ERYX_IMPORT_HOST_CALL "host_call"
/* int32 host_take(int32 dst_ptr, int32 dst_cap): copy the pending response of the last
 * host_call into guest memory; returns the number of bytes copied, or ERYX_HOSTERR_NO_RESPONSE.
 * The pending response is dropped afterwards even if dst_cap was smaller. */
#define ERYX_IMPORT_HOST_TAKE "host_take"
/* void tick(void): called by the loop-header instrumentation that the engine inserts
 * (goeryx/internal/instrument) whenever the budget global runs out. The runtime itself must
 * import it and reference it (see ERYX_EXPORT_TICK_ANCHOR) so that wasm-ld keeps the import. */
#define ERYX_IMPORT_TICK "tick"

#define ERYX_HOSTERR_BAD_REQUEST (-1)
#define ERYX_HOSTERR_UNKNOWN_OP (-2)
#define ERYX_HOSTERR_TOO_LARGE (-3)
#define ERYX_HOSTERR_NO_RESPONSE (-4)

/* ---- host_call ops of the runtime's dynamic loader (dlopen/dlsym in eryx_runtime.c) -------
 * Frames as every host_call (docs/PROTOCOL.md): u32 header length, JSON header "{}", payload.
 * DLOPEN payload: the guest path, NUL, the file's bytes. DLSYM payload: u32 handle, the name.
 * Response payload: i32 result (a handle > 0, a function table slot > 0; 0 = failed) then the
 * reason of a failure in UTF-8. */
#define ERYX_OP_DLOPEN 13
#define ERYX_OP_DLSYM 14

/* ---- exports of the guest module ------------------------------------------------------- */
/* Standard WASI reactor constructor: runs wasi-libc/C constructors. Called once per fresh
 * (not image-restored) instance, before anything else. */
#define ERYX_EXPORT_INITIALIZE "_initialize"
/* int32 eryx_init(void): initialise CPython (see ERYX_GUEST_* below for the fixed
 * configuration). 0 on success; otherwise a diagnostic was written to fd 2. */
#define ERYX_EXPORT_INIT "eryx_init"
/* int32 eryx_boot(int32 src_ptr, int32 src_len): execute the guest driver (UTF-8 Python
 * source, not NUL-terminated) in a fresh module named ERYX_DRIVER_MODULE, whose globals
 * contain ERYX_DRIVER_HOST_GLOBAL bound to the host module object (see docs/ABI.md). The driver
 * must call host.set_handler(fn). 0 on success; otherwise the traceback was written to fd 2. */
#define ERYX_EXPORT_BOOT "eryx_boot"
/* int64 eryx_call(int32 req_ptr, int32 req_len): call the driver's handler with the request
 * bytes. Returns (ptr << 32) | len of the response bytes, valid until the next eryx_call, or -1
 * if the handler raised (traceback written to fd 2) or returned something other than bytes. */
#define ERYX_EXPORT_CALL "eryx_call"
/* void eryx_interrupt(void): may be called re-entrantly from inside any host function while
 * the guest is running Python code. Schedules the driver's interrupt exception (registered
 * with host.set_interrupt) in the main thread, like PyThreadState_SetAsyncExc: it is raised at
 * the next bytecode boundary. No-op if no interrupt type was registered. */
#define ERYX_EXPORT_INTERRUPT "eryx_interrupt"
/* int32 eryx_alloc(int32 size) / void eryx_free(int32 ptr): malloc/free, for request buffers. */
#define ERYX_EXPORT_ALLOC "eryx_alloc"
#define ERYX_EXPORT_FREE "eryx_free"
/* void eryx_tick_anchor(void): calls the tick import once; exists only so the import is kept.
 * The host never calls it. */
#define ERYX_EXPORT_TICK_ANCHOR "eryx_tick_anchor"
/* void eryx_reset_preopens(void): calls wasi-libc's __wasilibc_reset_preopens() so that an instance
 * started from a memory image re-reads its own WASI preopens (mounts differ per instance). The
 * engine calls it first thing in every image-restored instance. */
#define ERYX_EXPORT_RESET_PREOPENS "eryx_reset_preopens"

/* ---- fixed guest configuration (eryx_init) --------------------------------------------- */
/* sys.prefix / sys.exec_prefix. */
#define ERYX_GUEST_PREFIX "/usr/local"
/* The stdlib directory (read-only mount served by the host from the runtime's stdlib.zip);
 * it is the only entry of sys.path after init. */
#define ERYX_GUEST_STDLIB_DIR "/usr/local/lib/python3.13"
/* Name of the driver module created by eryx_boot. Not in sys.modules. */
#define ERYX_DRIVER_MODULE "_eryx_driver"
/* Global of the driver module bound to the host module object. */
#define ERYX_DRIVER_HOST_GLOBAL "_host"

#endif /* ERYX_ABI_H */
