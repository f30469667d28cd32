/* The nesting depth of a JSON text, in one pass over its bytes: the gateway's depth limit.
 *
 * gateway/body.py refuses a body that nests deeper than the limit. It used to walk the parsed
 * objects (every container of every event, ~3 us per event of a batch of 100); this reads the
 * raw bytes once instead, skipping each string with memchr. The text has already been parsed
 * (orjson), so it is valid JSON; on any other input the answer is meaningless but the scan
 * stays memory-safe (it never reads outside the buffer). The Python walk of body.py is the
 * fallback when this is not compiled, and the tests compare the two.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* depth_exceeds(data, limit) -> bool: whether containers ([ and {) nest deeper than limit. */
static PyObject *depth_exceeds(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "depth_exceeds(data, limit) takes 2 arguments");
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(args[1]);
    if (limit == -1 && PyErr_Occurred()) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    const char *p = view.buf, *end = p + view.len;
    Py_ssize_t depth = 0;
    int exceeded = 0;
    while (p < end) {
        char c = *p++;
        if (c == '"') { /* a string: to its closing quote, the first one after an even run of backslashes */
            for (;;) {
                const char *q = memchr(p, '"', (size_t)(end - p));
                if (q == NULL) {
                    p = end;
                    break;
                }
                const char *b = q;
                while (b > p && b[-1] == '\\') b--;
                p = q + 1;
                if (((q - b) & 1) == 0) break;
            }
        } else if (c == '[' || c == '{') {
            if (++depth > limit) {
                exceeded = 1;
                break;
            }
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    PyBuffer_Release(&view);
    return PyBool_FromLong(exceeded);
}

static PyMethodDef methods[] = {
    {"depth_exceeds", (PyCFunction)(void (*)(void))depth_exceeds, METH_FASTCALL,
     "depth_exceeds(data, limit) -> bool: whether the JSON text nests containers deeper than limit."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_jsonscan",
    .m_doc = "One-pass scans of JSON request bodies (see gateway/body.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__jsonscan(void) { return PyModule_Create(&module); }
