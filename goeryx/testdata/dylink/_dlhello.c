/* A tiny CPython extension built as a WebAssembly side module (build.sh), for goeryx's
 * dynamic loading tests: multi-phase init, module state, a heap type with a finaliser, a
 * libc call, a C callback invoked by the interpreter (a key function for sorted()), a C loop
 * that never ends (spin). */
#include <Python.h>
#include <string.h>

static int initialised = 0;   /* set by the constructor: a replay from an image must keep it */
__attribute__((constructor)) static void ctor(void) { initialised = 7; }

typedef struct { PyObject_HEAD long value; } Counter;

static PyObject *
counter_bump(Counter *self, PyObject *Py_UNUSED(ignored))
{
    self->value++;
    return PyLong_FromLong(self->value);
}

static void
counter_dealloc(Counter *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef counter_methods[] = {
    {"bump", (PyCFunction)counter_bump, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot counter_slots[] = {
    {Py_tp_dealloc, counter_dealloc},
    {Py_tp_methods, counter_methods},
    {Py_tp_new, PyType_GenericNew},
    {0, NULL},
};

static PyType_Spec counter_spec = {
    "_dlhello.Counter", sizeof(Counter), 0, Py_TPFLAGS_DEFAULT, counter_slots,
};

static PyObject *
greet(PyObject *self, PyObject *arg)
{
    const char *s = PyUnicode_AsUTF8(arg);
    if (s == NULL) {
        return NULL;
    }
    return PyUnicode_FromFormat("hello %s (%d chars, ctor %d)", s, (int)strlen(s), initialised);
}

static PyObject *
neg_key(PyObject *self, PyObject *arg)
{
    return PyNumber_Negative(arg);
}

static PyObject *
sort_desc(PyObject *self, PyObject *list)
{
    static PyMethodDef key_def = {"neg_key", neg_key, METH_O, NULL};
    PyObject *key = PyCFunction_New(&key_def, NULL);
    if (key == NULL) {
        return NULL;
    }
    PyObject *builtins = PyEval_GetBuiltins();
    PyObject *sorted = PyDict_GetItemString(builtins, "sorted");
    PyObject *args = PyTuple_Pack(1, list);
    PyObject *kwargs = Py_BuildValue("{s:O}", "key", key);
    PyObject *res = (args && kwargs) ? PyObject_Call(sorted, args, kwargs) : NULL;
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    Py_DECREF(key);
    return res;
}

static PyObject *
set_ctor_value(PyObject *self, PyObject *arg)
{
    initialised = (int)PyLong_AsLong(arg);
    Py_RETURN_NONE;
}

/* A C loop that never returns: only the engine's instrumentation of side modules stops it. */
static PyObject *
spin(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    volatile unsigned long n = 0;
    for (;;) {
        n++;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"spin", spin, METH_NOARGS, NULL},
    {"greet", greet, METH_O, NULL},
    {"sort_desc", sort_desc, METH_O, NULL},
    {"set_ctor_value", set_ctor_value, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static int
exec_module(PyObject *m)
{
    PyObject *tp = PyType_FromModuleAndSpec(m, &counter_spec, NULL);
    if (tp == NULL || PyModule_AddObjectRef(m, "Counter", tp) < 0) {
        Py_XDECREF(tp);
        return -1;
    }
    Py_DECREF(tp);
    return PyModule_AddIntConstant(m, "ANSWER", 42);
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef def = {
    PyModuleDef_HEAD_INIT, "_dlhello", NULL, 0, methods, slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__dlhello(void)
{
    return PyModuleDef_Init(&def);
}
