/*
 * eryx_runtime.c: the guest side of the goeryx runtime ABI (docs/ABI.md, eryx_abi.h).
 *
 * Linked into CPython 3.13 for wasm32-wasip1 instead of Programs/python.o, as a WASI reactor
 * (-mexec-model=reactor): the host calls _initialize, eryx_init, eryx_boot, then eryx_call any
 * number of times. Compiled inside the CPython build tree with Py_BUILD_CORE (PY_CORE_CFLAGS),
 * because eryx_interrupt sets the thread state's async exception directly (see there).
 *
 * Single-threaded by construction (wasm32-wasip1, no threads): the "main thread state" is the
 * only one, and host functions re-entering the module (eryx_interrupt) run on the same stack.
 */
#define PY_SSIZE_T_CLEAN
#include "Python.h"
#include "pycore_ceval.h"   /* _Py_set_eval_breaker_bit, _PY_ASYNC_EXCEPTION_BIT */
#include "pycore_emscripten_signal.h"   /* _Py_EryxTick (runtime/patches/cpython-eval-tick.patch) */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eryx_abi.h"

#if ERYX_ABI_VERSION != 1
#error "eryx_runtime.c implements ABI version 1"
#endif

#define ERYX_EXPORT(name) __attribute__((export_name(name), visibility("default"), used))
#define ERYX_IMPORT(name) __attribute__((import_module(ERYX_IMPORT_MODULE), import_name(name)))
#define WIDE(s) L"" s

/* ---- imports ------------------------------------------------------------------------------ */
ERYX_IMPORT(ERYX_IMPORT_HOST_CALL)
extern int32_t eryx_import_host_call(int32_t op, const void *req, int32_t req_len);
ERYX_IMPORT(ERYX_IMPORT_HOST_TAKE)
extern int32_t eryx_import_host_take(void *dst, int32_t dst_cap);
ERYX_IMPORT(ERYX_IMPORT_TICK)
extern void eryx_import_tick(void);

/* The evaluation loop ticks every ERYX_TICK_PERIOD + 1 periodic checks (_Py_EryxTick, below). */
#ifndef ERYX_TICK_PERIOD
#define ERYX_TICK_PERIOD 16384
#endif

/* ---- state -------------------------------------------------------------------------------- */
static PyThreadState *g_tstate;   /* the main (only) thread state, set by eryx_init */
static PyObject *g_host;          /* the host module object (_host in the driver) */
static PyObject *g_driver;        /* the driver module, kept alive after eryx_boot */
static PyObject *g_handler;       /* set by _host.set_handler */
static PyObject *g_interrupt;     /* set by _host.set_interrupt: a BaseException subclass */
static PyObject *g_response;      /* bytes returned by the last eryx_call, alive until the next */

static void
write_fd2(const char *msg)
{
    size_t n = strlen(msg);
    while (n > 0) {
        ssize_t w = write(2, msg, n);
        if (w <= 0) {
            return;
        }
        msg += w;
        n -= (size_t)w;
    }
}

/* Print the raised exception (if any) with its traceback to sys.stderr (falling back to fd 2).
 * Unlike PyErr_Print, this never exits on SystemExit and does not set sys.last_exc. */
static void
print_exception(void)
{
    PyObject *exc = PyErr_GetRaisedException();
    if (exc == NULL) {
        return;
    }
    PyErr_DisplayException(exc);
    Py_DECREF(exc);
    PyErr_Clear();
}

/* Drop an interrupt that was scheduled but not delivered. */
static void
clear_pending_interrupt(void)
{
    if (g_tstate == NULL) {
        return;
    }
    _Py_unset_eval_breaker_bit(g_tstate, _PY_ASYNC_EXCEPTION_BIT);
    PyObject *old = g_tstate->async_exc;
    g_tstate->async_exc = NULL;
    Py_XDECREF(old);
}

/* ---- the host module object ------------------------------------------------------------- */
static PyObject *
raise_host_error(int32_t code)
{
    PyObject *args = Py_BuildValue("(is)", (int)-code, "eryx host call failed");
    if (args != NULL) {
        PyErr_SetObject(PyExc_OSError, args);   /* == raise OSError(-code, msg) */
        Py_DECREF(args);
    }
    return NULL;
}

static PyObject *
host_call(PyObject *self, PyObject *args)
{
    int op;
    Py_buffer req;
    if (!PyArg_ParseTuple(args, "iy*:call", &op, &req)) {
        return NULL;
    }
    if (req.len > INT32_MAX) {
        PyBuffer_Release(&req);
        PyErr_SetString(PyExc_OverflowError, "host request too large");
        return NULL;
    }
    int32_t n = eryx_import_host_call((int32_t)op, req.buf, (int32_t)req.len);
    PyBuffer_Release(&req);
    if (n < 0) {
        return raise_host_error(n);
    }
    if (n == 0) {
        char dummy;
        int32_t m = eryx_import_host_take(&dummy, 0);   /* drop the (empty) pending response */
        if (m < 0) {
            return raise_host_error(m);
        }
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL) {
        char dummy;
        (void)eryx_import_host_take(&dummy, 0);          /* drop it anyway */
        return NULL;
    }
    int32_t m = eryx_import_host_take(PyBytes_AS_STRING(out), n);
    if (m < 0) {
        Py_DECREF(out);
        return raise_host_error(m);
    }
    if (m != n && _PyBytes_Resize(&out, m) < 0) {
        return NULL;
    }
    return out;
}

static PyObject *
host_set_handler(PyObject *self, PyObject *fn)
{
    if (fn != Py_None && !PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "set_handler() argument must be callable or None");
        return NULL;
    }
    Py_XSETREF(g_handler, fn == Py_None ? NULL : Py_NewRef(fn));
    Py_RETURN_NONE;
}

static PyObject *
host_set_interrupt(PyObject *self, PyObject *exc_type)
{
    if (exc_type != Py_None && !PyExceptionClass_Check(exc_type)) {
        PyErr_SetString(PyExc_TypeError,
                        "set_interrupt() argument must be a BaseException subclass or None");
        return NULL;
    }
    Py_XSETREF(g_interrupt, exc_type == Py_None ? NULL : Py_NewRef(exc_type));
    Py_RETURN_NONE;
}

static PyMethodDef host_methods[] = {
    {"call", host_call, METH_VARARGS,
     "call(op: int, request: bytes) -> bytes\n--\n\nOne synchronous request to the host."},
    {"set_handler", host_set_handler, METH_O,
     "set_handler(fn)\n--\n\nfn(request: bytes) -> bytes is what eryx_call invokes."},
    {"set_interrupt", host_set_interrupt, METH_O,
     "set_interrupt(exc_type)\n--\n\nThe BaseException subclass that eryx_interrupt raises."},
    {NULL, NULL, 0, NULL},
};

static PyObject *
new_host_module(void)
{
    /* A plain module object: never registered in sys.modules or the inittab, so nothing can
     * import it; only the driver's globals reference it. */
    PyObject *mod = PyModule_New(ERYX_DRIVER_HOST_GLOBAL);
    if (mod == NULL) {
        return NULL;
    }
    if (PyModule_AddFunctions(mod, host_methods) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}

/* ---- exports -------------------------------------------------------------------------------- */
#define CHECK_STATUS(call)                          \
    do {                                            \
        status = (call);                            \
        if (PyStatus_Exception(status)) {           \
            goto fail;                              \
        }                                           \
    } while (0)

PyMODINIT_FUNC PyInit__eryx_scrypt(void); /* eryx_scrypt.c: hashlib.scrypt */

ERYX_EXPORT(ERYX_EXPORT_INIT)
int32_t
eryx_init(void)
{
    if (Py_IsInitialized()) {
        write_fd2("eryx_init: the interpreter is already initialised\n");
        return 1;
    }
    /* Built-in modules of the runtime's own (before Py_Initialize). */
    if (PyImport_AppendInittab("_eryx_scrypt", PyInit__eryx_scrypt) < 0) {
        return 1;
    }
    /* C-level stdio unbuffered too: every write reaches fd 1/2 at once. */
    setvbuf(stdout, NULL, _IONBF, 0);
    setvbuf(stderr, NULL, _IONBF, 0);

    PyStatus status;
    PyConfig config;
    PyConfig_InitIsolatedConfig(&config);
#ifdef ERYX_ALLOCATOR_MIMALLOC
    /* Memory allocator chosen at build time (runtime/build.sh ERYX_ALLOCATOR; see README). */
    PyPreConfig preconfig;
    PyPreConfig_InitIsolatedConfig(&preconfig);
    preconfig.allocator = PYMEM_ALLOCATOR_MIMALLOC;
    CHECK_STATUS(Py_PreInitialize(&preconfig));
#endif
    CHECK_STATUS(PyConfig_SetString(&config, &config.home, WIDE(ERYX_GUEST_PREFIX)));
    CHECK_STATUS(PyConfig_SetString(&config, &config.prefix, WIDE(ERYX_GUEST_PREFIX)));
    CHECK_STATUS(PyConfig_SetString(&config, &config.exec_prefix, WIDE(ERYX_GUEST_PREFIX)));
    config.module_search_paths_set = 1;
    CHECK_STATUS(PyWideStringList_Append(&config.module_search_paths,
                                         WIDE(ERYX_GUEST_STDLIB_DIR)));
    config.site_import = 0;
    config.user_site_directory = 0;
    config.write_bytecode = 0;
    config.buffered_stdio = 0;
    config.install_signal_handlers = 0;
    config.use_environment = 0;
    config.parse_argv = 0;
    wchar_t *argv[] = {L""};
    CHECK_STATUS(PyConfig_SetArgv(&config, 1, argv));
    config.safe_path = 1;
    config.use_hash_seed = 1;
    config.hash_seed = 0;
    CHECK_STATUS(PyConfig_SetString(&config, &config.stdio_encoding, L"utf-8"));
    CHECK_STATUS(PyConfig_SetString(&config, &config.stdio_errors, L"backslashreplace"));
    CHECK_STATUS(PyConfig_SetString(&config, &config.filesystem_encoding, L"utf-8"));
    config.faulthandler = 0;
    config.tracemalloc = 0;

    CHECK_STATUS(Py_InitializeFromConfig(&config));
    PyConfig_Clear(&config);
    g_tstate = PyThreadState_Get();
    return 0;

fail:
    PyConfig_Clear(&config);
    write_fd2("eryx_init: ");
    if (status.func != NULL) {
        write_fd2(status.func);
        write_fd2(": ");
    }
    write_fd2(status.err_msg != NULL ? status.err_msg : "initialisation failed");
    write_fd2("\n");
    return 1;
}

ERYX_EXPORT(ERYX_EXPORT_BOOT)
int32_t
eryx_boot(const char *src, int32_t src_len)
{
    if (g_tstate == NULL) {
        write_fd2("eryx_boot: eryx_init has not succeeded\n");
        return 1;
    }
    if (g_driver != NULL) {
        write_fd2("eryx_boot: the driver is already booted\n");
        return 1;
    }
    if (src_len < 0) {
        write_fd2("eryx_boot: negative source length\n");
        return 1;
    }
    PyObject *code = NULL, *mod = NULL, *res = NULL;
    /* NUL-terminated copy of the source (the compiler needs one). */
    PyObject *buf = PyBytes_FromStringAndSize(src, src_len);
    if (buf == NULL) {
        goto error;
    }
    if (g_host == NULL && (g_host = new_host_module()) == NULL) {
        goto error;
    }
    mod = PyModule_New(ERYX_DRIVER_MODULE);
    if (mod == NULL) {
        goto error;
    }
    PyObject *globals = PyModule_GetDict(mod);   /* borrowed */
    if (PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins()) < 0 ||
        PyDict_SetItemString(globals, ERYX_DRIVER_HOST_GLOBAL, g_host) < 0) {
        goto error;
    }
    code = Py_CompileStringExFlags(PyBytes_AS_STRING(buf), "<" ERYX_DRIVER_MODULE ">",
                                   Py_file_input, NULL, -1);
    if (code == NULL) {
        goto error;
    }
    res = PyEval_EvalCode(code, globals, globals);
    if (res == NULL) {
        goto error;
    }
    if (g_handler == NULL) {
        write_fd2("eryx_boot: the driver did not register a handler (_host.set_handler)\n");
        goto fail_noexc;
    }
    Py_DECREF(res);
    Py_DECREF(code);
    Py_DECREF(buf);
    g_driver = mod;
    clear_pending_interrupt();
    return 0;

error:
    print_exception();
fail_noexc:
    Py_XDECREF(res);
    Py_XDECREF(code);
    Py_XDECREF(mod);
    Py_XDECREF(buf);
    Py_CLEAR(g_handler);
    clear_pending_interrupt();
    return 1;
}

ERYX_EXPORT(ERYX_EXPORT_CALL)
int64_t
eryx_call(const char *req, int32_t req_len)
{
    Py_CLEAR(g_response);
    if (g_handler == NULL) {
        write_fd2("eryx_call: no handler registered (eryx_boot first)\n");
        return -1;
    }
    if (req_len < 0) {
        write_fd2("eryx_call: negative request length\n");
        return -1;
    }
    /* An interrupt only ever applies to the eryx_call during which it was scheduled. */
    clear_pending_interrupt();
    /* Every call starts with a full period: where the ticks fall (and so the instructions a
     * fuel-metered run executes) does not depend on earlier calls. */
#ifndef ERYX_NO_EVAL_TICK
    _Py_EryxSetClock(ERYX_TICK_PERIOD);
#endif
    PyObject *arg = PyBytes_FromStringAndSize(req, req_len);
    PyObject *res = arg != NULL ? PyObject_CallOneArg(g_handler, arg) : NULL;
    Py_XDECREF(arg);
    if (res == NULL) {
        print_exception();
        clear_pending_interrupt();
        return -1;
    }
    clear_pending_interrupt();
    if (!PyBytes_Check(res)) {
        PyObject *msg = PyUnicode_FromFormat(
            "eryx_call: the handler returned %.200s, not bytes\n", Py_TYPE(res)->tp_name);
        Py_DECREF(res);
        const char *text = msg != NULL ? PyUnicode_AsUTF8(msg) : NULL;
        write_fd2(text != NULL ? text : "eryx_call: the handler did not return bytes\n");
        Py_XDECREF(msg);
        PyErr_Clear();
        return -1;
    }
    g_response = res;
    uint32_t ptr = (uint32_t)(uintptr_t)PyBytes_AS_STRING(res);
    uint32_t len = (uint32_t)PyBytes_GET_SIZE(res);
    return (int64_t)(((uint64_t)ptr << 32) | (uint64_t)len);
}

ERYX_EXPORT(ERYX_EXPORT_INTERRUPT)
void
eryx_interrupt(void)
{
    /* PyThreadState_SetAsyncExc semantics, but without going through the current thread
     * state: this export may be re-entered from a host function (or from the engine's tick)
     * at any point, including while the thread state is detached (e.g. inside time.sleep),
     * where PyThreadState_SetAsyncExc would crash. The only thread state is the main one; no
     * lock is needed in a single-threaded guest. Nothing is ever released here (an interrupt
     * already pending is kept), so no destructor can run at an arbitrary point. */
    if (g_tstate == NULL || g_interrupt == NULL) {
        return;
    }
    if (g_tstate->async_exc == NULL) {
        g_tstate->async_exc = Py_NewRef(g_interrupt);
    }
    _Py_set_eval_breaker_bit(g_tstate, _PY_ASYNC_EXCEPTION_BIT);
}

ERYX_EXPORT(ERYX_EXPORT_ALLOC)
void *
eryx_alloc(int32_t size)
{
    if (size < 0) {
        return NULL;
    }
    return malloc(size > 0 ? (size_t)size : 1);
}

ERYX_EXPORT(ERYX_EXPORT_FREE)
void
eryx_free(void *ptr)
{
    free(ptr);
}

ERYX_EXPORT(ERYX_EXPORT_TICK_ANCHOR)
void
eryx_tick_anchor(void)
{
    eryx_import_tick();
}

/* ---- the evaluation loop's tick (runtime/patches/cpython-eval-tick.patch) ----------------
 * The engine does not instrument the loop headers of _PyEval_EvalFrameDefault (one per
 * bytecode: the dispatch loop). Instead, CPython's own periodic check (CHECK_EVAL_BREAKER at
 * RESUME, JUMP_BACKWARD and the CALL family, and RESUME_CHECK) counts a clock down and calls
 * _Py_EryxTick when it is 0: every ERYX_TICK_PERIOD + 1 checks, the host's tick runs (about
 * every 1-3 ms of busy Python, see runtime/README.md). The tick may re-enter eryx_interrupt;
 * the check that called it then sees the eval breaker at once.
 * The clock is a mutable wasm global, defined here (the patch declares it): a global costs the
 * engine one load or store, a C variable in linear memory adds bounds checks. It is not part of
 * the memory image; it starts at 0 in every instance (so the first check ticks) and eryx_call
 * sets it to a full period. */
#ifndef ERYX_NO_EVAL_TICK /* ERYX_EVAL_TICK=no (runtime/build.sh): a baseline without the patch */
__asm__(".globl eryx_tick_clock\n"
        "eryx_tick_clock:\n");

void
_Py_EryxTick(void)
{
    _Py_EryxSetClock(ERYX_TICK_PERIOD);
    eryx_import_tick();
}
#endif

/* wasi-libc caches the WASI preopens (the mounts) in linear memory the first time a path is
 * resolved. An instance started from a memory image must forget the image's table and read
 * its own, since every sandbox may mount different volumes. */
void __wasilibc_reset_preopens(void);

ERYX_EXPORT(ERYX_EXPORT_RESET_PREOPENS)
void
eryx_reset_preopens(void)
{
    __wasilibc_reset_preopens();
}

/* ---- dynamic loading (dlopen/dlsym for CPython's Python/dynload_shlib.c) ------------------
 * wasi-libc's libdl only has weak stubs that fail; these definitions replace them. The file
 * is read here, through the guest's own file system (its mounts and limits), and handed to
 * the host, which links it into this instance as a WebAssembly side module
 * (goeryx/internal/dylink) and answers with a handle; dlsym answers with the function table
 * slot of an exported function, which is what a C function pointer is in wasm. */
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>

#define ERYX_DL_MAX_FILE (64 << 20)   /* = dylink.MaxModuleBytes */
static char g_dlerror[512];
static int g_dlerror_set;

static void
dl_fail(const char *path, const char *reason, size_t reason_len)
{
    snprintf(g_dlerror, sizeof g_dlerror, "%s: cannot be loaded by this guest runtime: %.*s",
             path, (int)reason_len, reason);
    g_dlerror_set = 1;
}

/* Sends op with payload (prefix, then data) and returns the result (0 on failure, with the
 * reason in dlerror). */
static int32_t
dl_call(int32_t op, const char *path, const void *prefix, size_t prefix_len,
        const void *data, size_t data_len)
{
    size_t n = 6 + prefix_len + data_len;
    unsigned char *req = malloc(n);
    if (req == NULL) {
        dl_fail(path, "out of memory", 13);
        return 0;
    }
    memcpy(req, "\x02\x00\x00\x00{}", 6);
    memcpy(req + 6, prefix, prefix_len);
    if (data_len > 0) {
        memcpy(req + 6 + prefix_len, data, data_len);
    }
    int32_t rn = eryx_import_host_call(op, req, (int32_t)n);
    free(req);
    if (rn < 0) {
        dl_fail(path, "the host refused the request", 28);
        return 0;
    }
    unsigned char *resp = malloc(rn > 0 ? (size_t)rn : 1);
    if (resp == NULL) {
        char dummy;
        (void)eryx_import_host_take(&dummy, 0);
        dl_fail(path, "out of memory", 13);
        return 0;
    }
    int32_t m = eryx_import_host_take(resp, rn);
    uint32_t hlen = 0;
    if (m >= 4) {
        memcpy(&hlen, resp, 4);
    }
    if (m < 4 || hlen > (uint32_t)m - 4 || (uint32_t)m - 4 - hlen < 4) {
        free(resp);
        dl_fail(path, "malformed host response", 23);
        return 0;
    }
    unsigned char *payload = resp + 4 + hlen;
    size_t plen = (size_t)m - 4 - hlen;
    int32_t result;
    memcpy(&result, payload, 4);
    if (result == 0) {
        dl_fail(path, (const char *)payload + 4, plen - 4);
    }
    free(resp);
    return result;
}

void *
dlopen(const char *path, int flags)
{
    (void)flags;
    if (path == NULL) {
        dl_fail("(null)", "dlopen(NULL) is not supported", 29);
        return NULL;
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        const char *e = strerror(errno);
        dl_fail(path, e, strlen(e));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size > ERYX_DL_MAX_FILE) {
        close(fd);
        dl_fail(path, "the file is too large", 21);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size > 0 ? size : 1);
    size_t got = 0;
    while (buf != NULL && got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r <= 0) {
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    if (buf == NULL || got != size) {
        free(buf);
        dl_fail(path, "cannot read the file", 20);
        return NULL;
    }
    int32_t h = dl_call(ERYX_OP_DLOPEN, path, path, strlen(path) + 1, buf, size);
    free(buf);
    return h > 0 ? (void *)(uintptr_t)h : NULL;
}

void *
dlsym(void *handle, const char *name)
{
    uint32_t h = (uint32_t)(uintptr_t)handle;
    int32_t slot = dl_call(ERYX_OP_DLSYM, "dlsym", &h, 4, name, strlen(name));
    return slot > 0 ? (void *)(uintptr_t)slot : NULL;
}

char *
dlerror(void)
{
    if (!g_dlerror_set) {
        return NULL;
    }
    g_dlerror_set = 0;
    return g_dlerror;
}

int
dlclose(void *handle)
{
    (void)handle;   /* side modules stay loaded, as CPython never unloads extensions */
    return 0;
}
