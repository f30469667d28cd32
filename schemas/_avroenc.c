/* Avro binary encoding of Python records, compiled: the producer's and the gateway's hot path.
 *
 * schemas/fastencode.py turns a record schema into a plan (nested tuples, the schema with
 * named types, field order, enum indexes and union branches resolved); Encoder(plan).encode
 * walks the plan and a record and returns the Avro binary body. It takes exactly what the
 * generated Python encoder of fastencode.py takes, with the same bytes (both are tested
 * against fastavro and Apache avro), and raises for anything else (TypeError, KeyError,
 * OverflowError, UnicodeEncodeError): AvroCodec then lets fastavro write it or name the
 * problem. Containers must be the built-in types themselves (dict, list, tuple): their
 * subclasses may iterate otherwise, so they go to fastavro.
 *
 * Memory safety: every value is held (a new reference) while it is encoded, sizes are read
 * once and checked again at each item, and the depth is the plan's, never the data's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

enum { K_NULL, K_BOOLEAN, K_LONG, K_FLOAT, K_DOUBLE, K_STRING, K_BYTES, K_ENUM, K_ARRAY, K_MAP, K_RECORD, K_UNION };

static const char *KIND_NAMES[] = {"null", "boolean", "long", "float", "double", "string", "bytes",
                                   "enum", "array", "map", "record", "union", NULL};

#define MAX_DEPTH 64

typedef struct Node {
    int kind;
    Py_ssize_t n;           /* record: fields; union: branches */
    struct Node **children; /* record: field types; union: branches; array: items; map: values */
    PyObject **names;       /* record: field names */
    PyObject **defaults;    /* record: a field's default, or NULL (required) */
    PyObject *symbols;      /* enum: dict symbol -> index */
} Node;

static void node_free(Node *node) {
    if (node == NULL) return;
    Py_ssize_t count = (node->kind == K_ARRAY || node->kind == K_MAP) ? 1 : node->n;
    if (node->children) {
        for (Py_ssize_t i = 0; i < count; i++) node_free(node->children[i]);
        PyMem_Free(node->children);
    }
    if (node->names) {
        for (Py_ssize_t i = 0; i < node->n; i++) Py_XDECREF(node->names[i]);
        PyMem_Free(node->names);
    }
    if (node->defaults) {
        for (Py_ssize_t i = 0; i < node->n; i++) Py_XDECREF(node->defaults[i]);
        PyMem_Free(node->defaults);
    }
    Py_XDECREF(node->symbols);
    PyMem_Free(node);
}

static int kind_of(PyObject *name) {
    for (int k = 0; KIND_NAMES[k] != NULL; k++)
        if (PyUnicode_CompareWithASCIIString(name, KIND_NAMES[k]) == 0) return k;
    return -1;
}

/* plan: (kind,) | ("enum", (symbols...)) | ("array", plan) | ("map", plan)
 *       | ("record", ((name, plan, has_default, default), ...)) | ("union", (plan, ...)) */
static Node *node_build(PyObject *plan, int depth) {
    if (depth > MAX_DEPTH) {
        PyErr_SetString(PyExc_ValueError, "plan nested too deeply");
        return NULL;
    }
    if (!PyTuple_Check(plan) || PyTuple_GET_SIZE(plan) < 1 || !PyUnicode_Check(PyTuple_GET_ITEM(plan, 0))) {
        PyErr_SetString(PyExc_ValueError, "a plan node is a tuple starting with its kind");
        return NULL;
    }
    int kind = kind_of(PyTuple_GET_ITEM(plan, 0));
    if (kind < 0) {
        PyErr_Format(PyExc_ValueError, "unknown plan kind %R", PyTuple_GET_ITEM(plan, 0));
        return NULL;
    }
    Node *node = PyMem_Calloc(1, sizeof(Node));
    if (node == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    node->kind = kind;
    if (kind < K_ENUM) return node;
    if (PyTuple_GET_SIZE(plan) != 2) {
        PyErr_Format(PyExc_ValueError, "a %s plan node has two items", KIND_NAMES[kind]);
        goto fail;
    }
    PyObject *arg = PyTuple_GET_ITEM(plan, 1);
    if (kind == K_ENUM) {
        if (!PyTuple_Check(arg)) {
            PyErr_SetString(PyExc_ValueError, "enum symbols must be a tuple");
            goto fail;
        }
        node->symbols = PyDict_New();
        if (node->symbols == NULL) goto fail;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(arg); i++) {
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL) goto fail;
            int rc = PyDict_SetItem(node->symbols, PyTuple_GET_ITEM(arg, i), index);
            Py_DECREF(index);
            if (rc < 0) goto fail;
        }
        return node;
    }
    if (kind == K_ARRAY || kind == K_MAP) {
        node->children = PyMem_Calloc(1, sizeof(Node *));
        if (node->children == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        node->children[0] = node_build(arg, depth + 1);
        if (node->children[0] == NULL) goto fail;
        return node;
    }
    if (!PyTuple_Check(arg)) {
        PyErr_Format(PyExc_ValueError, "a %s plan node's second item must be a tuple", KIND_NAMES[kind]);
        goto fail;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(arg);
    node->children = PyMem_Calloc(n ? n : 1, sizeof(Node *));
    if (node->children == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    if (kind == K_RECORD) {
        node->names = PyMem_Calloc(n ? n : 1, sizeof(PyObject *));
        node->defaults = PyMem_Calloc(n ? n : 1, sizeof(PyObject *));
        if (node->names == NULL || node->defaults == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    node->n = n;  /* set before the children: node_free frees what is built */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(arg, i);
        if (kind == K_UNION) {
            node->children[i] = node_build(item, depth + 1);
            if (node->children[i] == NULL) goto fail;
            if (node->children[i]->kind == K_UNION) {
                PyErr_SetString(PyExc_ValueError, "a union cannot hold a union");
                goto fail;
            }
            continue;
        }
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 4 || !PyUnicode_CheckExact(PyTuple_GET_ITEM(item, 0))) {
            PyErr_SetString(PyExc_ValueError, "a record field is (name, plan, has_default, default)");
            goto fail;
        }
        PyObject *name = PyTuple_GET_ITEM(item, 0);
        Py_INCREF(name);
        PyUnicode_InternInPlace(&name);
        node->names[i] = name;
        int has_default = PyObject_IsTrue(PyTuple_GET_ITEM(item, 2));
        if (has_default < 0) goto fail;
        if (has_default) {
            node->defaults[i] = Py_NewRef(PyTuple_GET_ITEM(item, 3));
        }
        node->children[i] = node_build(PyTuple_GET_ITEM(item, 1), depth + 1);
        if (node->children[i] == NULL) goto fail;
    }
    return node;
fail:
    node_free(node);
    return NULL;
}

/* -- output buffer: on the stack until it outgrows it ------------------------------ */
#define STACK_BYTES 4096

typedef struct {
    char *p;
    Py_ssize_t len, cap;
    int heap;
} Buf;

static int buf_grow(Buf *b, Py_ssize_t need) {
    if (need > PY_SSIZE_T_MAX / 2 - b->len) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t cap = b->cap * 2;
    while (cap < b->len + need) cap *= 2;
    char *p;
    if (b->heap) {
        p = PyMem_Realloc(b->p, cap);
    } else {
        p = PyMem_Malloc(cap);
        if (p != NULL) memcpy(p, b->p, b->len);
    }
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    b->heap = 1;
    return 0;
}

#define RESERVE(b, need) (((b)->len + (need) <= (b)->cap) ? 0 : buf_grow((b), (need)))

static int put_long(Buf *b, long long v) {
    unsigned long long n = ((unsigned long long)v << 1) ^ (unsigned long long)(v >> 63);
    if (RESERVE(b, 10) < 0) return -1;
    char *p = b->p + b->len;
    while (n & ~0x7FULL) {
        *p++ = (char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    *p++ = (char)n;
    b->len = p - b->p;
    return 0;
}

static int put_raw(Buf *b, const char *data, Py_ssize_t n) {
    if (put_long(b, (long long)n) < 0 || RESERVE(b, n) < 0) return -1;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static int type_error(const char *expected, PyObject *v) {
    PyErr_Format(PyExc_TypeError, "expected %s, got %.100s", expected, Py_TYPE(v)->tp_name);
    return -1;
}

static int encode(Node *node, PyObject *v, Buf *b);

static int encode_union(Node *node, PyObject *v, Buf *b) {
    for (Py_ssize_t i = 0; i < node->n; i++) {
        Node *branch = node->children[i];
        int fits;
        switch (branch->kind) {  /* the first branch whose Python type fits, as fastencode.py picks it */
            case K_NULL: fits = v == Py_None; break;
            case K_STRING: case K_ENUM: fits = PyUnicode_CheckExact(v); break;
            case K_BOOLEAN: fits = PyBool_Check(v); break;
            case K_LONG: fits = PyLong_CheckExact(v); break;
            case K_FLOAT: case K_DOUBLE: fits = PyFloat_CheckExact(v) || PyLong_CheckExact(v); break;
            case K_BYTES: fits = PyBytes_Check(v) || PyByteArray_Check(v); break;
            case K_RECORD: case K_MAP: fits = PyDict_Check(v); break;
            case K_ARRAY: fits = PyList_Check(v) || PyTuple_Check(v); break;
            default: fits = 0;
        }
        if (fits) {
            if (put_long(b, (long long)i) < 0) return -1;
            return branch->kind == K_NULL ? 0 : encode(branch, v, b);
        }
    }
    PyErr_Format(PyExc_TypeError, "no union branch fits %.100s", Py_TYPE(v)->tp_name);
    return -1;
}

static int encode_record(Node *node, PyObject *v, Buf *b) {
    if (!PyDict_CheckExact(v)) return type_error("a dict (record)", v);
    for (Py_ssize_t i = 0; i < node->n; i++) {
        PyObject *value = PyDict_GetItemWithError(v, node->names[i]);
        if (value == NULL) {
            if (PyErr_Occurred()) return -1;
            value = node->defaults[i];
            if (value == NULL) {
                PyErr_SetObject(PyExc_KeyError, node->names[i]);
                return -1;
            }
        }
        Py_INCREF(value);
        int rc = encode(node->children[i], value, b);
        Py_DECREF(value);
        if (rc < 0) return -1;
    }
    return 0;
}

static int encode_array(Node *node, PyObject *v, Buf *b) {
    int is_list = PyList_CheckExact(v);
    if (!is_list && !PyTuple_CheckExact(v)) return type_error("a list or tuple (array)", v);
    Py_ssize_t n = Py_SIZE(v);
    if (n > 0) {
        if (put_long(b, (long long)n) < 0) return -1;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (Py_SIZE(v) != n) {
                PyErr_SetString(PyExc_RuntimeError, "list changed size during encoding");
                return -1;
            }
            PyObject *item = is_list ? PyList_GET_ITEM(v, i) : PyTuple_GET_ITEM(v, i);
            Py_INCREF(item);
            int rc = encode(node->children[0], item, b);
            Py_DECREF(item);
            if (rc < 0) return -1;
        }
    }
    if (RESERVE(b, 1) < 0) return -1;
    b->p[b->len++] = 0;
    return 0;
}

static int encode_map(Node *node, PyObject *v, Buf *b) {
    if (!PyDict_CheckExact(v)) return type_error("a dict (map)", v);
    Py_ssize_t n = PyDict_GET_SIZE(v);
    if (n > 0) {
        if (put_long(b, (long long)n) < 0) return -1;
        Py_ssize_t pos = 0, done = 0;
        PyObject *key, *value;
        while (PyDict_Next(v, &pos, &key, &value)) {
            if (PyDict_GET_SIZE(v) != n || ++done > n) {
                PyErr_SetString(PyExc_RuntimeError, "dict changed size during encoding");
                return -1;
            }
            if (!PyUnicode_Check(key)) return type_error("str keys (map)", key);
            Py_ssize_t size;
            const char *data = PyUnicode_AsUTF8AndSize(key, &size);
            if (data == NULL || put_raw(b, data, size) < 0) return -1;
            Py_INCREF(key);
            Py_INCREF(value);
            int rc = encode(node->children[0], value, b);
            Py_DECREF(value);
            Py_DECREF(key);
            if (rc < 0) return -1;
        }
        if (done != n) {
            PyErr_SetString(PyExc_RuntimeError, "dict changed size during encoding");
            return -1;
        }
    }
    if (RESERVE(b, 1) < 0) return -1;
    b->p[b->len++] = 0;
    return 0;
}

static int encode(Node *node, PyObject *v, Buf *b) {
    switch (node->kind) {
        case K_NULL:
            if (v != Py_None) return type_error("None (null)", v);
            return 0;
        case K_BOOLEAN:
            if (v != Py_True && v != Py_False) return type_error("bool", v);
            if (RESERVE(b, 1) < 0) return -1;
            b->p[b->len++] = v == Py_True ? 1 : 0;
            return 0;
        case K_LONG: {
            if (!PyLong_CheckExact(v) && !PyBool_Check(v)) return type_error("int", v);
            int overflow = 0;
            long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
            if (overflow) {
                PyErr_SetString(PyExc_OverflowError, "long out of range");
                return -1;
            }
            if (x == -1 && PyErr_Occurred()) return -1;
            return put_long(b, x);
        }
        case K_FLOAT:
        case K_DOUBLE: {
            double x;
            if (PyFloat_CheckExact(v)) {
                x = PyFloat_AS_DOUBLE(v);
            } else if (PyLong_CheckExact(v)) {
                x = PyLong_AsDouble(v);
                if (x == -1.0 && PyErr_Occurred()) return -1;
            } else {
                return type_error("a number", v);
            }
            int size = node->kind == K_DOUBLE ? 8 : 4;
            if (RESERVE(b, size) < 0) return -1;
            if ((size == 8 ? PyFloat_Pack8(x, b->p + b->len, 1) : PyFloat_Pack4(x, b->p + b->len, 1)) < 0) return -1;
            b->len += size;
            return 0;
        }
        case K_STRING: {
            if (!PyUnicode_Check(v)) return type_error("str", v);
            Py_ssize_t size;
            const char *data = PyUnicode_AsUTF8AndSize(v, &size);
            if (data == NULL) return -1;
            return put_raw(b, data, size);
        }
        case K_BYTES:
            if (PyBytes_Check(v)) return put_raw(b, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
            if (PyByteArray_Check(v)) return put_raw(b, PyByteArray_AS_STRING(v), PyByteArray_GET_SIZE(v));
            return type_error("bytes", v);
        case K_ENUM: {
            if (!PyUnicode_CheckExact(v)) return type_error("str (enum symbol)", v);
            PyObject *index = PyDict_GetItemWithError(node->symbols, v);
            if (index == NULL) {
                if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, v);
                return -1;
            }
            return put_long(b, PyLong_AsLongLong(index));
        }
        case K_ARRAY: return encode_array(node, v, b);
        case K_MAP: return encode_map(node, v, b);
        case K_RECORD: return encode_record(node, v, b);
        case K_UNION: return encode_union(node, v, b);
    }
    PyErr_SetString(PyExc_SystemError, "bad plan node");
    return -1;
}

/* -- the Encoder type ---------------------------------------------------------------- */
typedef struct {
    PyObject_HEAD
    Node *root;
} Encoder;

static int Encoder_init(Encoder *self, PyObject *args, PyObject *kwds) {
    PyObject *plan;
    static char *kwlist[] = {"plan", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Encoder", kwlist, &plan)) return -1;
    Node *root = node_build(plan, 0);
    if (root == NULL) return -1;
    if (root->kind != K_RECORD) {
        node_free(root);
        PyErr_SetString(PyExc_ValueError, "the top of a plan must be a record");
        return -1;
    }
    node_free(self->root);
    self->root = root;
    return 0;
}

static void Encoder_dealloc(Encoder *self) {
    node_free(self->root);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Encoder_encode(Encoder *self, PyObject *record) {
    if (self->root == NULL) {
        PyErr_SetString(PyExc_ValueError, "Encoder not initialised");
        return NULL;
    }
    char stack[STACK_BYTES];
    Buf b = {stack, 0, STACK_BYTES, 0};
    PyObject *out = NULL;
    Py_INCREF(record);
    if (encode(self->root, record, &b) == 0) out = PyBytes_FromStringAndSize(b.p, b.len);
    Py_DECREF(record);
    if (b.heap) PyMem_Free(b.p);
    return out;
}

static PyMethodDef Encoder_methods[] = {
    {"encode", (PyCFunction)Encoder_encode, METH_O,
     "encode(record) -> bytes: the Avro binary body of a record (raises for what the plan does not take)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "agentgym.schemas._avroenc.Encoder",
    .tp_doc = "Encoder(plan): an Avro record encoder compiled from a plan (see schemas/fastencode.py)",
    .tp_basicsize = sizeof(Encoder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Encoder_init,
    .tp_dealloc = (destructor)Encoder_dealloc,
    .tp_methods = Encoder_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_avroenc",
    .m_doc = "Compiled Avro record encoders (see schemas/fastencode.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__avroenc(void) {
    if (PyType_Ready(&EncoderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&EncoderType);
    if (PyModule_AddObject(m, "Encoder", (PyObject *)&EncoderType) < 0) {
        Py_DECREF(&EncoderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
