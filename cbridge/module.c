/*
 * eryx._eryx: the C half of the bridge between the eryx Python package and the goeryx engine.
 *
 * Every function follows one pattern: parse the arguments with the GIL held, release the GIL,
 * call the Go half (which does the engine call and returns a "done" token), take the GIL back
 * and let goFinish turn the token into the return value or the exception. Python objects are
 * only created or released with the GIL held. The contract is docs/BRIDGE.md.
 */
#include "bridge.h"
#include "_cgo_export.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    PyObject *error; /* eryx._eryx.Error */
} eryx_state;

static inline eryx_state *
get_state(PyObject *module)
{
    return (eryx_state *)PyModule_GetState(module);
}


/* ---- Python objects for the Go half (GIL held) ------------------------------------------ */

PyObject *
eryx_none(void)
{
    return Py_NewRef(Py_None);
}

PyObject *
eryx_int(long long value)
{
    return PyLong_FromLongLong(value);
}

PyObject *
eryx_str(const char *s, Py_ssize_t len)
{
    if (len < 0) {
        return Py_NewRef(Py_None);
    }
    return PyUnicode_DecodeUTF8(len ? s : "", len, "replace");
}

PyObject *
eryx_bytes(const char *s, Py_ssize_t len)
{
    return PyBytes_FromStringAndSize(len ? s : "", len);
}

PyObject *
eryx_list(Py_ssize_t size)
{
    return PyList_New(size);
}

int
eryx_list_set_str(PyObject *list, Py_ssize_t index, const char *s, Py_ssize_t len)
{
    PyObject *item = eryx_str(s, len);
    if (item == NULL) {
        return -1;
    }
    return PyList_SetItem(list, index, item); /* steals item, even on failure */
}

PyObject *
eryx_pair(PyObject *first, PyObject *second)
{
    return Py_BuildValue("(NN)", first, second);
}

PyObject *
eryx_int_triple(long long a, long long b, long long c)
{
    return Py_BuildValue("(LLL)", a, b, c);
}

PyObject *
eryx_result(const char *out, Py_ssize_t out_len,
            const char *err, Py_ssize_t err_len,
            double duration_ms, long long callback_invocations,
            unsigned long long peak_memory_bytes,
            int has_fuel, unsigned long long fuel_consumed,
            const char *json, Py_ssize_t json_len,
            const char *json_error, Py_ssize_t json_error_len)
{
    return Py_BuildValue("(NNdLKNNN)",
                         eryx_str(out, out_len),
                         eryx_str(err, err_len),
                         duration_ms,
                         callback_invocations,
                         peak_memory_bytes,
                         has_fuel ? PyLong_FromUnsignedLongLong(fuel_consumed)
                                  : Py_NewRef(Py_None),
                         eryx_str(json, json_len),
                         eryx_str(json_error, json_error_len));
}

void
eryx_decref(PyObject *obj)
{
    Py_XDECREF(obj);
}

void
eryx_raise_invalid_handle(void)
{
    PyErr_SetString(PyExc_ValueError, "invalid or closed eryx handle");
}

void
eryx_raise_error(PyObject *module,
                 const char *kind, Py_ssize_t kind_len,
                 const char *message, Py_ssize_t message_len,
                 const char *exc_type, Py_ssize_t exc_type_len,
                 const char *out, Py_ssize_t out_len,
                 const char *err, Py_ssize_t err_len,
                 const char *limit, Py_ssize_t limit_len,
                 int state_lost, long long err_no)
{
    eryx_state *state = get_state(module);
    PyObject *exc = PyObject_CallFunction(
        state->error, "NN{sNsNsNsNsOsN}",
        eryx_str(kind, kind_len),
        eryx_str(message, message_len),
        "exc_type", eryx_str(exc_type, exc_type_len),
        "stdout", eryx_str(out, out_len),
        "stderr", eryx_str(err, err_len),
        "limit", eryx_str(limit, limit_len),
        "state_lost", state_lost ? Py_True : Py_False,
        "errno", err_no ? PyLong_FromLongLong(err_no) : Py_NewRef(Py_None));
    if (exc == NULL) {
        return;
    }
    PyErr_SetObject(state->error, exc);
    Py_DECREF(exc);
}


/* ---- Calls into Python from engine threads (GIL not held on entry) ------------------------ */

/* Engine goroutines call into Python from the Go runtime's own OS threads. The first call on
 * each thread creates a Python thread state and keeps it (the GILState counter stays above
 * zero), so later calls only take the GIL: PyGILState_Ensure on a thread without a state would
 * create and destroy one every time, which costs more than a whole no-op callback. The
 * threads are few (Go reuses them) and their states are freed at interpreter finalisation. */
static _Thread_local int thread_state_kept;

static PyGILState_STATE
ensure_gil(void)
{
    if (!thread_state_kept) {
        (void)PyGILState_Ensure();   /* creates the state; never released */
        (void)PyEval_SaveThread();   /* but the GIL is */
        thread_state_kept = 1;
    }
    return PyGILState_Ensure();
}

static int keep_signal_exception(void);

void
eryx_call_output(PyObject *fn, int stream, const char *chunk, Py_ssize_t len)
{
    PyGILState_STATE gil = ensure_gil();
    PyObject *result = PyObject_CallFunction(fn, "iN", stream, eryx_str(chunk, len));
    if (result == NULL) {
        if (!keep_signal_exception()) {
            PyErr_WriteUnraisable(fn);
        }
    }
    else {
        Py_DECREF(result);
    }
    PyGILState_Release(gil);
}

/* Copies the UTF-8 bytes of a bytes object into reply->data. -1: out of memory (no exception). */
static int
reply_set_data(eryx_reply *reply, int kind, PyObject *utf8)
{
    char *data;
    Py_ssize_t len;

    if (PyBytes_AsStringAndSize(utf8, &data, &len) < 0) {
        PyErr_Clear();
        return -1;
    }
    reply->data = malloc(len > 0 ? (size_t)len : 1);
    if (reply->data == NULL) {
        return -1;
    }
    memcpy(reply->data, data, (size_t)len);
    reply->len = len;
    reply->kind = kind;
    return 0;
}

/* Turns the current exception into ("raised", "<ExcType>: <message>") and clears it. */
static int
reply_from_exception(eryx_reply *reply)
{
    PyObject *type, *value, *traceback;
    PyObject *name = NULL, *text = NULL, *message = NULL, *utf8 = NULL;
    int status;

    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (type != NULL && PyType_Check(type)) {
        name = PyType_GetName((PyTypeObject *)type);
    }
    if (name != NULL && value != NULL) {
        text = PyObject_Str(value);
    }
    if (text != NULL) {
        if (PyUnicode_GetLength(text) > 0) {
            message = PyUnicode_FromFormat("%U: %U", name, text);
        }
        else {
            message = Py_NewRef(name);
        }
    }
    if (message != NULL) {
        utf8 = PyUnicode_AsEncodedString(message, "utf-8", "backslashreplace");
    }
    if (utf8 == NULL) {
        PyErr_Clear();
        utf8 = PyBytes_FromString("RuntimeError: on_callback raised an unprintable exception");
    }
    status = utf8 == NULL ? -1 : reply_set_data(reply, ERYX_REPLY_RAISED, utf8);
    PyErr_Clear();
    Py_XDECREF(utf8);
    Py_XDECREF(message);
    Py_XDECREF(text);
    Py_XDECREF(name);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
    return status;
}

static int
reply_from_result(eryx_reply *reply, PyObject *result)
{
    static const char *const kinds[] = {
        [ERYX_REPLY_OK] = "ok",
        [ERYX_REPLY_RAISED] = "raised",
        [ERYX_REPLY_NOT_JSON] = "not_json",
        [ERYX_REPLY_TIMEOUT] = "timeout",
    };
    PyObject *kind, *payload, *utf8;
    int status;

    if (!PyTuple_Check(result) || PyTuple_Size(result) != 2) {
        PyErr_SetString(PyExc_TypeError,
                        "on_callback must return a (kind, payload) tuple of two str");
        return reply_from_exception(reply);
    }
    kind = PyTuple_GetItem(result, 0);
    payload = PyTuple_GetItem(result, 1);
    if (!PyUnicode_Check(kind) || !PyUnicode_Check(payload)) {
        PyErr_SetString(PyExc_TypeError,
                        "on_callback must return a (kind, payload) tuple of two str");
        return reply_from_exception(reply);
    }
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (PyUnicode_CompareWithASCIIString(kind, kinds[i]) != 0) {
            continue;
        }
        utf8 = PyUnicode_AsUTF8String(payload);
        if (utf8 == NULL) {
            return reply_from_exception(reply);
        }
        status = reply_set_data(reply, (int)i, utf8);
        Py_DECREF(utf8);
        return status;
    }
    PyErr_Format(PyExc_ValueError, "on_callback returned the unknown kind %R", kind);
    return reply_from_exception(reply);
}

int
eryx_call_callback(PyObject *fn, long long index, const char *args, Py_ssize_t args_len,
                   long long timeout_ms, long long run_token, eryx_reply *reply)
{
    PyGILState_STATE gil = ensure_gil();
    PyObject *result;
    int status;

    result = PyObject_CallFunction(fn, "LNLL", index, eryx_str(args, args_len), timeout_ms,
                                   run_token);
    if (result == NULL) {
        status = reply_from_exception(reply);
    }
    else {
        status = reply_from_result(reply, result);
        Py_DECREF(result);
    }
    PyGILState_Release(gil);
    return status;
}

void
eryx_release_hooks(PyObject *output, PyObject *callback)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    Py_XDECREF(output);
    Py_XDECREF(callback);
    PyGILState_Release(gil);
}


/* ---- Argument parsing and GIL release --------------------------------------------------- */

/* Raises TypeError("<what>, not <type name of obj>"). */
static void
raise_type_error(const char *what, PyObject *obj)
{
    PyObject *type_name = PyType_GetName(Py_TYPE(obj));
    if (type_name != NULL) {
        PyErr_Format(PyExc_TypeError, "%s, not %U", what, type_name);
        Py_DECREF(type_name);
    }
}

/* A str argument as UTF-8, borrowed from the str object (which the argument tuple owns). */
typedef struct {
    const char *s;
    Py_ssize_t len;
} utf8_arg;

/* PyArg_ParseTuple converter ("O&") for utf8_arg: accepts str only. */
static int
to_utf8(PyObject *obj, void *result)
{
    utf8_arg *arg = result;

    if (!PyUnicode_Check(obj)) {
        raise_type_error("expected str", obj);
        return 0;
    }
    arg->s = PyUnicode_AsUTF8AndSize(obj, &arg->len);
    return arg->s != NULL;
}

typedef uintptr_t (*handle_fn)(long long h);
typedef uintptr_t (*handle_str_fn)(long long h, char *s, Py_ssize_t len);
typedef uintptr_t (*new_fn)(long long rt, char *config, Py_ssize_t config_len, long long vfs,
                            PyObject *on_output, PyObject *on_callback);

static PyObject *
call_handle(PyObject *module, PyObject *arg, handle_fn fn)
{
    long long h;
    uintptr_t done;

    h = PyLong_AsLongLong(arg);
    if (h == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    done = fn(h);
    Py_END_ALLOW_THREADS
    return goFinish(module, done);
}

static PyObject *
call_handle_str(PyObject *module, PyObject *args, const char *format, handle_str_fn fn)
{
    long long h;
    utf8_arg s;
    uintptr_t done;

    if (!PyArg_ParseTuple(args, format, &h, to_utf8, &s)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    done = fn(h, (char *)s.s, s.len);
    Py_END_ALLOW_THREADS
    return goFinish(module, done);
}

static int
check_hook(PyObject *obj, const char *what)
{
    if (obj == Py_None || PyCallable_Check(obj)) {
        return 0;
    }
    raise_type_error(what, obj);
    return -1;
}

/* sandbox_new and session_new. fn takes over the references to the hooks. */
static PyObject *
new_instance(PyObject *module, PyObject *args, const char *format, new_fn fn)
{
    long long rt, vfs;
    Py_buffer config;
    PyObject *on_output, *on_callback;
    uintptr_t done;

    if (!PyArg_ParseTuple(args, format, &rt, &config, &vfs, &on_output, &on_callback)) {
        return NULL;
    }
    if (check_hook(on_output, "on_output must be callable or None") < 0 ||
        check_hook(on_callback, "on_callback must be callable or None") < 0) {
        PyBuffer_Release(&config);
        return NULL;
    }
    on_output = on_output == Py_None ? NULL : Py_NewRef(on_output);
    on_callback = on_callback == Py_None ? NULL : Py_NewRef(on_callback);
    Py_BEGIN_ALLOW_THREADS
    done = fn(rt, config.buf, config.len, vfs, on_output, on_callback);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&config);
    return goFinish(module, done);
}

/* None -> *has = 0; an int -> *has = 1 and *value. */
static int
optional_int64(PyObject *obj, int *has, long long *value)
{
    *has = obj != Py_None;
    *value = 0;
    if (*has) {
        *value = PyLong_AsLongLong(obj);
        if (*value == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    return 0;
}


/* ---- Module functions ------------------------------------------------------------------- */

PyDoc_STRVAR(open_runtime_doc,
"open_runtime($module, runtime_dir, cache_dir, /)\n--\n\n"
"goeryx.OpenRuntime; once per process: later calls return the first handle.");

static PyObject *
open_runtime(PyObject *module, PyObject *args)
{
    utf8_arg dir, cache;
    uintptr_t done;

    if (!PyArg_ParseTuple(args, "O&O&:open_runtime", to_utf8, &dir, to_utf8, &cache)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    done = goOpenRuntime((char *)dir.s, dir.len, (char *)cache.s, cache.len);
    Py_END_ALLOW_THREADS
    return goFinish(module, done);
}

PyDoc_STRVAR(guest_python_version_doc,
"guest_python_version($module, rt, /)\n--\n\nRuntime.GuestPythonVersion.");

static PyObject *
guest_python_version(PyObject *module, PyObject *rt)
{
    return call_handle(module, rt, goGuestPythonVersion);
}

PyDoc_STRVAR(ready_stats_doc,
"ready_stats($module, rt, /)\n--\n\nRuntime.ReadyStats as JSON.");

static PyObject *
ready_stats(PyObject *module, PyObject *rt)
{
    return call_handle(module, rt, goReadyStats);
}

PyDoc_STRVAR(vfs_new_doc,
"vfs_new($module, max_bytes, /)\n--\n\ngoeryx.NewVFS; returns a handle.");

static PyObject *
vfs_new(PyObject *module, PyObject *max_bytes)
{
    return call_handle(module, max_bytes, goVFSNew);
}

PyDoc_STRVAR(vfs_read_doc,
"vfs_read($module, h, path, /)\n--\n\nVFS.ReadFile.");

static PyObject *
vfs_read(PyObject *module, PyObject *args)
{
    return call_handle_str(module, args, "LO&:vfs_read", goVFSRead);
}

PyDoc_STRVAR(vfs_write_doc,
"vfs_write($module, h, path, data, /)\n--\n\nVFS.WriteFile; data is any bytes-like object.");

static PyObject *
vfs_write(PyObject *module, PyObject *args)
{
    long long h;
    utf8_arg path;
    Py_buffer data;
    uintptr_t done;

    if (!PyArg_ParseTuple(args, "LO&y*:vfs_write", &h, to_utf8, &path, &data)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    done = goVFSWrite(h, (char *)path.s, path.len, data.buf, data.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    return goFinish(module, done);
}

PyDoc_STRVAR(vfs_list_doc,
"vfs_list($module, h, path, /)\n--\n\nVFS.List.");

static PyObject *
vfs_list(PyObject *module, PyObject *args)
{
    return call_handle_str(module, args, "LO&:vfs_list", goVFSList);
}

PyDoc_STRVAR(vfs_remove_doc,
"vfs_remove($module, h, path, /)\n--\n\nVFS.Remove.");

static PyObject *
vfs_remove(PyObject *module, PyObject *args)
{
    return call_handle_str(module, args, "LO&:vfs_remove", goVFSRemove);
}

PyDoc_STRVAR(vfs_stats_doc,
"vfs_stats($module, h, /)\n--\n\nVFS.Stats: (files, used_bytes, max_bytes).");

static PyObject *
vfs_stats(PyObject *module, PyObject *h)
{
    return call_handle(module, h, goVFSStats);
}

PyDoc_STRVAR(sandbox_new_doc,
"sandbox_new($module, rt, config, vfs, on_output, on_callback, /)\n--\n\n"
"Runtime.NewSandbox; config is the JSON configuration, vfs 0 for none.");

static PyObject *
sandbox_new(PyObject *module, PyObject *args)
{
    return new_instance(module, args, "Ly*LOO:sandbox_new", goSandboxNew);
}

/* The execute functions take an optional cancel token (0: none, see token_new), stdin
 * (stdin_len -1: none) and the JSON of the other run options (options_len -1: none). */
typedef uintptr_t (*execute_fn)(long long h, char *code, Py_ssize_t len, long long token,
                                char *stdin_data, Py_ssize_t stdin_len,
                                char *options, Py_ssize_t options_len);

/* Signal handlers during a run. Python runs them in its main thread only, and a run keeps its
 * calling thread inside the engine; so while a run called from the main thread is in
 * progress, the engine calls eryx_run_signal_handlers from that same thread every few
 * milliseconds (goeryx.SignalWatcher), as time.sleep wakes up for them. A handler that raises
 * (KeyboardInterrupt on Ctrl-C) interrupts the run cooperatively, and call_execute raises its
 * exception instead of the run's outcome. */
static _Thread_local int watch_signals;      /* a main-thread run is in the engine */
static _Thread_local int in_signal_handlers; /* eryx_run_signal_handlers is running them */
static _Thread_local PyObject *signal_type, *signal_value, *signal_tb; /* what one raised */
static long long main_thread_ident = -1;     /* -1: not looked up yet; -2: unknown */

static int
on_main_thread(void)
{
    if (main_thread_ident == -1) {
        PyObject *threading = PyImport_ImportModule("threading");
        PyObject *main = threading ? PyObject_CallMethod(threading, "main_thread", NULL) : NULL;
        PyObject *ident = main ? PyObject_GetAttrString(main, "ident") : NULL;
        main_thread_ident = ident ? PyLong_AsLongLong(ident) : -2;
        Py_XDECREF(ident);
        Py_XDECREF(main);
        Py_XDECREF(threading);
        if (PyErr_Occurred()) {
            PyErr_Clear();
            main_thread_ident = -2;
        }
    }
    return main_thread_ident == (long long)PyThread_get_thread_ident();
}

int
eryx_signals_watched(void)
{
    return watch_signals;
}

/* A handler's exception surfaces in whatever Python code runs on the thread: during a main
 * thread's run, that may be an on_stdout/on_stderr handler (Python code called on this
 * thread). A KeyboardInterrupt raised there is kept to interrupt the run instead of being
 * reported as unraisable. GIL held, an exception set; 1 when it was kept. */
static int
keep_signal_exception(void)
{
    if (!watch_signals || signal_type != NULL || !PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        return 0;
    }
    PyErr_Fetch(&signal_type, &signal_value, &signal_tb);
    return 1;
}

/* GIL not held on entry (the engine calls it from inside a run). */
int
eryx_run_signal_handlers(void)
{
    if (!watch_signals || signal_type != NULL) {
        return signal_type != NULL;
    }
    PyGILState_STATE gil = PyGILState_Ensure(); /* the main thread's own state, resumed */
    in_signal_handlers = 1;
    if (PyErr_CheckSignals() < 0) {
        PyErr_Fetch(&signal_type, &signal_value, &signal_tb);
        if (signal_type == NULL) { /* an error without a type cannot happen; be safe */
            signal_type = Py_NewRef(PyExc_KeyboardInterrupt);
        }
    }
    in_signal_handlers = 0;
    PyGILState_Release(gil);
    return signal_type != NULL;
}

static PyObject *
call_execute(PyObject *module, PyObject *args, const char *format, execute_fn fn)
{
    long long h, token = 0;
    utf8_arg s;
    uintptr_t done;
    PyObject *stdin_obj = Py_None, *options_obj = Py_None;
    char *stdin_data = NULL, *options = NULL;
    Py_ssize_t stdin_len = -1, options_len = -1;

    if (!PyArg_ParseTuple(args, format, &h, to_utf8, &s, &token, &stdin_obj, &options_obj)) {
        return NULL;
    }
    /* bytes or None each (the package encodes them): TypeError otherwise */
    if (stdin_obj != Py_None && PyBytes_AsStringAndSize(stdin_obj, &stdin_data, &stdin_len) < 0) {
        return NULL;
    }
    if (options_obj != Py_None && PyBytes_AsStringAndSize(options_obj, &options, &options_len) < 0) {
        return NULL;
    }
    if (in_signal_handlers) {
        /* A handler that runs code in a sandbox while this thread's run is paused in it
         * would wait for that run (a Session) or nest engine calls: refuse. */
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot run sandboxed code from a signal handler that interrupts a run");
        return NULL;
    }
    int watch = on_main_thread();
    Py_BEGIN_ALLOW_THREADS
    watch_signals = watch;
    done = fn(h, (char *)s.s, s.len, token, stdin_data, stdin_len, options, options_len);
    watch_signals = 0;
    Py_END_ALLOW_THREADS
    PyObject *result = goFinish(module, done);
    if (signal_type == NULL) {
        return result;
    }
    /* A signal handler raised during the run: the run was interrupted for it. */
    Py_XDECREF(result);
    PyErr_Clear();
    PyErr_Restore(signal_type, signal_value, signal_tb);
    signal_type = signal_value = signal_tb = NULL;
    return NULL;
}

PyDoc_STRVAR(sandbox_execute_doc,
"sandbox_execute($module, h, code, token=0, stdin=None, options=None, /)\n--\n\n"
"Sandbox.Execute; returns the result tuple. Cancelling the token interrupts the run;\n"
"stdin: bytes the guest reads, or None; options: JSON bytes of the other run options.");

static PyObject *
sandbox_execute(PyObject *module, PyObject *args)
{
    return call_execute(module, args, "LO&|LOO:sandbox_execute", goSandboxExecute);
}

PyDoc_STRVAR(token_new_doc,
"token_new($module, /)\n--\n\nA cancel token for one execute call; free it with handle_free.");

static PyObject *
token_new(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return goFinish(module, goTokenNew());
}

PyDoc_STRVAR(token_cancel_doc,
"token_cancel($module, t, /)\n--\n\nInterrupts the run using the token (never blocks).");

static PyObject *
token_cancel(PyObject *module, PyObject *t)
{
    return call_handle(module, t, goTokenCancel);
}

PyDoc_STRVAR(sandbox_close_doc,
"sandbox_close($module, h, /)\n--\n\nSandbox.Close; the handle stays valid.");

static PyObject *
sandbox_close(PyObject *module, PyObject *h)
{
    return call_handle(module, h, goSandboxClose);
}

PyDoc_STRVAR(session_new_doc,
"session_new($module, rt, config, vfs, on_output, on_callback, /)\n--\n\n"
"Runtime.NewSession; config is the JSON configuration, vfs 0 for none.");

static PyObject *
session_new(PyObject *module, PyObject *args)
{
    return new_instance(module, args, "Ly*LOO:session_new", goSessionNew);
}

PyDoc_STRVAR(session_execute_doc,
"session_execute($module, h, code, token=0, stdin=None, options=None, /)\n--\n\n"
"Session.Execute; returns the result tuple. stdin: bytes the guest reads, or None.");

static PyObject *
session_execute(PyObject *module, PyObject *args)
{
    return call_execute(module, args, "LO&|LOO:session_execute", goSessionExecute);
}

PyDoc_STRVAR(session_reset_doc,
"session_reset($module, h, /)\n--\n\nSession.Reset.");

static PyObject *
session_reset(PyObject *module, PyObject *h)
{
    return call_handle(module, h, goSessionReset);
}

PyDoc_STRVAR(session_clear_state_doc,
"session_clear_state($module, h, /)\n--\n\nSession.ClearState.");

static PyObject *
session_clear_state(PyObject *module, PyObject *h)
{
    return call_handle(module, h, goSessionClearState);
}

PyDoc_STRVAR(session_snapshot_doc,
"session_snapshot($module, h, /)\n--\n\nSession.Snapshot: (data, skipped_names).");

static PyObject *
session_snapshot(PyObject *module, PyObject *h)
{
    return call_handle(module, h, goSessionSnapshot);
}

PyDoc_STRVAR(session_restore_doc,
"session_restore($module, h, data, /)\n--\n\nSession.Restore; data is any bytes-like object.");

static PyObject *
session_restore(PyObject *module, PyObject *args)
{
    long long h;
    Py_buffer data;
    uintptr_t done;

    if (!PyArg_ParseTuple(args, "Ly*:session_restore", &h, &data)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    done = goSessionRestore(h, data.buf, data.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    return goFinish(module, done);
}

PyDoc_STRVAR(session_set_limits_doc,
"session_set_limits($module, h, execution_timeout_ms, max_fuel, /)\n--\n\n"
"Session.SetExecutionTimeoutMS and Session.SetMaxFuel; None means no limit.");

static PyObject *
session_set_limits(PyObject *module, PyObject *args)
{
    long long h, timeout_ms, max_fuel;
    PyObject *timeout_obj, *fuel_obj;
    int has_timeout, has_fuel;
    uintptr_t done;

    if (!PyArg_ParseTuple(args, "LOO:session_set_limits", &h, &timeout_obj, &fuel_obj)) {
        return NULL;
    }
    if (optional_int64(timeout_obj, &has_timeout, &timeout_ms) < 0 ||
        optional_int64(fuel_obj, &has_fuel, &max_fuel) < 0) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    done = goSessionSetLimits(h, has_timeout, timeout_ms, has_fuel, max_fuel);
    Py_END_ALLOW_THREADS
    return goFinish(module, done);
}

PyDoc_STRVAR(session_execution_count_doc,
"session_execution_count($module, h, /)\n--\n\nSession.ExecutionCount.");

static PyObject *
session_execution_count(PyObject *module, PyObject *h)
{
    return call_handle(module, h, goSessionExecutionCount);
}

PyDoc_STRVAR(session_close_doc,
"session_close($module, h, /)\n--\n\nSession.Close; the handle stays valid.");

static PyObject *
session_close(PyObject *module, PyObject *h)
{
    return call_handle(module, h, goSessionClose);
}

PyDoc_STRVAR(handle_free_doc,
"handle_free($module, h, /)\n--\n\n"
"Close the object behind a VFS, sandbox or session handle and release it.");

static PyObject *
handle_free(PyObject *module, PyObject *h)
{
    return call_handle(module, h, goHandleFree);
}

/* ---- SandboxFactory (API.md §10): sandbox_new and session_new take a factory handle in
 * place of the runtime's. spec is a JSON object (cbridge/factory.go). ---- */

PyDoc_STRVAR(factory_new_doc,
"factory_new($module, rt, spec, /)\n--\n\nRuntime.NewFactory; returns a handle.");

static PyObject *
factory_new(PyObject *module, PyObject *args)
{
    return call_handle_str(module, args, "LO&:factory_new", goFactoryNew);
}

PyDoc_STRVAR(factory_load_doc,
"factory_load($module, rt, spec, /)\n--\n\nRuntime.LoadFactory; returns a handle.");

static PyObject *
factory_load(PyObject *module, PyObject *args)
{
    return call_handle_str(module, args, "LO&:factory_load", goFactoryLoad);
}

PyDoc_STRVAR(factory_from_bytes_doc,
"factory_from_bytes($module, rt, data, spec, /)\n--\n\n"
"Runtime.FactoryFromBytes; data is any bytes-like object.");

static PyObject *
factory_from_bytes(PyObject *module, PyObject *args)
{
    long long rt;
    Py_buffer data;
    utf8_arg spec;
    uintptr_t done;

    if (!PyArg_ParseTuple(args, "Ly*O&:factory_from_bytes", &rt, &data, to_utf8, &spec)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    done = goFactoryFromBytes(rt, data.buf, data.len, (char *)spec.s, spec.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    return goFinish(module, done);
}

PyDoc_STRVAR(factory_to_bytes_doc, "factory_to_bytes($module, h, /)\n--\n\nFactory.Bytes.");

static PyObject *
factory_to_bytes(PyObject *module, PyObject *h)
{
    return call_handle(module, h, goFactoryToBytes);
}

PyDoc_STRVAR(factory_size_doc, "factory_size($module, h, /)\n--\n\nlen(Factory.Bytes()).");

static PyObject *
factory_size(PyObject *module, PyObject *h)
{
    return call_handle(module, h, goFactorySize);
}

PyDoc_STRVAR(factory_save_doc, "factory_save($module, h, path, /)\n--\n\nFactory.Save.");

static PyObject *
factory_save(PyObject *module, PyObject *args)
{
    return call_handle_str(module, args, "LO&:factory_save", goFactorySave);
}

PyDoc_STRVAR(factory_imports_doc, "factory_imports($module, h, /)\n--\n\nFactory.Imports.");

static PyObject *
factory_imports(PyObject *module, PyObject *h)
{
    return call_handle(module, h, goFactoryImports);
}

PyDoc_STRVAR(factory_close_doc, "factory_close($module, h, /)\n--\n\nFactory.Close.");

static PyObject *
factory_close(PyObject *module, PyObject *h)
{
    return call_handle(module, h, goFactoryClose);
}

static PyMethodDef eryx_methods[] = {
    {"open_runtime", open_runtime, METH_VARARGS, open_runtime_doc},
    {"guest_python_version", guest_python_version, METH_O, guest_python_version_doc},
    {"ready_stats", ready_stats, METH_O, ready_stats_doc},
    {"vfs_new", vfs_new, METH_O, vfs_new_doc},
    {"vfs_read", vfs_read, METH_VARARGS, vfs_read_doc},
    {"vfs_write", vfs_write, METH_VARARGS, vfs_write_doc},
    {"vfs_list", vfs_list, METH_VARARGS, vfs_list_doc},
    {"vfs_remove", vfs_remove, METH_VARARGS, vfs_remove_doc},
    {"vfs_stats", vfs_stats, METH_O, vfs_stats_doc},
    {"sandbox_new", sandbox_new, METH_VARARGS, sandbox_new_doc},
    {"sandbox_execute", sandbox_execute, METH_VARARGS, sandbox_execute_doc},
    {"sandbox_close", sandbox_close, METH_O, sandbox_close_doc},
    {"session_new", session_new, METH_VARARGS, session_new_doc},
    {"session_execute", session_execute, METH_VARARGS, session_execute_doc},
    {"session_reset", session_reset, METH_O, session_reset_doc},
    {"session_clear_state", session_clear_state, METH_O, session_clear_state_doc},
    {"session_snapshot", session_snapshot, METH_O, session_snapshot_doc},
    {"session_restore", session_restore, METH_VARARGS, session_restore_doc},
    {"session_set_limits", session_set_limits, METH_VARARGS, session_set_limits_doc},
    {"session_execution_count", session_execution_count, METH_O, session_execution_count_doc},
    {"session_close", session_close, METH_O, session_close_doc},
    {"handle_free", handle_free, METH_O, handle_free_doc},
    {"factory_new", factory_new, METH_VARARGS, factory_new_doc},
    {"factory_load", factory_load, METH_VARARGS, factory_load_doc},
    {"factory_from_bytes", factory_from_bytes, METH_VARARGS, factory_from_bytes_doc},
    {"factory_to_bytes", factory_to_bytes, METH_O, factory_to_bytes_doc},
    {"factory_size", factory_size, METH_O, factory_size_doc},
    {"factory_save", factory_save, METH_VARARGS, factory_save_doc},
    {"factory_imports", factory_imports, METH_O, factory_imports_doc},
    {"factory_close", factory_close, METH_O, factory_close_doc},
    {"token_new", token_new, METH_NOARGS, token_new_doc},
    {"token_cancel", token_cancel, METH_O, token_cancel_doc},
    {NULL, NULL, 0, NULL},
};


/* ---- Module initialisation ------------------------------------------------------------- */

/* Registered with atexit: from then on the engine's threads no longer call into Python. */
static PyObject *
at_exit(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    goShutdown();
    Py_RETURN_NONE;
}

static PyMethodDef at_exit_def = {"_eryx_at_exit", at_exit, METH_NOARGS, NULL};

static int
register_at_exit(void)
{
    PyObject *atexit, *fn, *result;

    atexit = PyImport_ImportModule("atexit");
    if (atexit == NULL) {
        return -1;
    }
    fn = PyCFunction_NewEx(&at_exit_def, NULL, NULL);
    if (fn == NULL) {
        Py_DECREF(atexit);
        return -1;
    }
    result = PyObject_CallMethod(atexit, "register", "O", fn);
    Py_DECREF(fn);
    Py_DECREF(atexit);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

PyDoc_STRVAR(error_doc,
"Error(kind, message, details): an error of the goeryx engine.\n\n"
"kind is the goeryx.ErrorKind name, details a dict with exc_type, stdout, limit,\n"
"state_lost and errno. The eryx package turns it into its public exceptions.");

static int
eryx_exec(PyObject *module)
{
    eryx_state *state = get_state(module);

    state->error = PyErr_NewExceptionWithDoc("eryx._eryx.Error", error_doc,
                                             PyExc_Exception, NULL);
    if (state->error == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "Error", state->error) < 0) {
        return -1;
    }
    return register_at_exit();
}

static int
eryx_traverse(PyObject *module, visitproc visit, void *arg)
{
    eryx_state *state = get_state(module);
    Py_VISIT(state->error);
    return 0;
}

static int
eryx_clear(PyObject *module)
{
    eryx_state *state = get_state(module);
    Py_CLEAR(state->error);
    return 0;
}

static void
eryx_free(void *module)
{
    (void)eryx_clear((PyObject *)module);
}

static PyModuleDef_Slot eryx_slots[] = {
    {Py_mod_exec, eryx_exec},
    {0, NULL},
};

PyDoc_STRVAR(module_doc,
"Bridge between the eryx package and the goeryx engine (see docs/BRIDGE.md).\n\n"
"Engine objects are referred to by integer handles; every engine call runs\n"
"without the GIL. This is a private module: use the eryx package instead.");

static struct PyModuleDef eryx_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "eryx._eryx",
    .m_doc = module_doc,
    .m_size = sizeof(eryx_state),
    .m_methods = eryx_methods,
    .m_slots = eryx_slots,
    .m_traverse = eryx_traverse,
    .m_clear = eryx_clear,
    .m_free = eryx_free,
};

PyMODINIT_FUNC
PyInit__eryx(void)
{
    return PyModuleDef_Init(&eryx_module);
}
