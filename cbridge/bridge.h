/*
 * Declarations shared by the C half (module.c) and the Go half (*.go) of the extension module
 * eryx._eryx. See docs/BRIDGE.md for the contract.
 *
 * The module uses only the CPython limited API of 3.11 (abi3), so one build loads in every
 * CPython >= 3.11.
 */
#ifndef ERYX_BRIDGE_H
#define ERYX_BRIDGE_H

#define PY_SSIZE_T_CLEAN
#if defined(Py_LIMITED_API) && Py_LIMITED_API != 0x030B0000
#error "eryx._eryx targets exactly the 3.11 limited API"
#endif
#ifndef Py_LIMITED_API
#define Py_LIMITED_API 0x030B0000
#endif
#include <Python.h>

#include <stdint.h>

/* How on_callback answered (goeryx.CallbackFailure.Kind, or success). */
enum {
    ERYX_REPLY_OK = 0,
    ERYX_REPLY_RAISED = 1,
    ERYX_REPLY_NOT_JSON = 2,
    ERYX_REPLY_TIMEOUT = 3,
};

/* What eryx_call_callback hands back to Go. data is malloc()ed; the receiver frees it. */
typedef struct {
    int kind;
    char *data;
    Py_ssize_t len;
} eryx_reply;

/*
 * Called by Go with the GIL held (while finishing a call, see goFinish in main.go). They return a
 * new reference, or NULL with an exception set. Strings are UTF-8, decoded with "replace";
 * s may be NULL when len is 0. A negative length stands for None.
 */
PyObject *eryx_none(void);
PyObject *eryx_int(long long value);
PyObject *eryx_str(const char *s, Py_ssize_t len);
PyObject *eryx_bytes(const char *s, Py_ssize_t len);
PyObject *eryx_list(Py_ssize_t size);
int eryx_list_set_str(PyObject *list, Py_ssize_t index, const char *s, Py_ssize_t len);
PyObject *eryx_pair(PyObject *first, PyObject *second); /* steals both, NULL-safe */
PyObject *eryx_int_triple(long long a, long long b, long long c);
PyObject *eryx_result(const char *out, Py_ssize_t out_len,
                      const char *err, Py_ssize_t err_len,
                      double duration_ms, long long callback_invocations,
                      unsigned long long peak_memory_bytes,
                      int has_fuel, unsigned long long fuel_consumed,
                      const char *json, Py_ssize_t json_len,
                      const char *json_error, Py_ssize_t json_error_len);
void eryx_decref(PyObject *obj);
void eryx_raise_invalid_handle(void);
int eryx_signals_watched(void);
int eryx_run_signal_handlers(void);
void eryx_raise_error(PyObject *module,
                      const char *kind, Py_ssize_t kind_len,
                      const char *message, Py_ssize_t message_len,
                      const char *exc_type, Py_ssize_t exc_type_len,
                      const char *out, Py_ssize_t out_len,
                      const char *err, Py_ssize_t err_len,
                      const char *limit, Py_ssize_t limit_len,
                      int state_lost, long long err_no);

/*
 * Called by Go WITHOUT the GIL, on any thread: they take it with PyGILState_Ensure for the Python
 * call only. None of them keeps a pointer it was given.
 */
void eryx_call_output(PyObject *fn, int stream, const char *chunk, Py_ssize_t len);
int eryx_call_callback(PyObject *fn, long long index, const char *args, Py_ssize_t args_len,
                       long long timeout_ms, long long run_token, eryx_reply *reply);
void eryx_release_hooks(PyObject *output, PyObject *callback);

#endif /* ERYX_BRIDGE_H */
