/* The masking pre-check over ASCII text, compiled: Masker.hits of producers/masking.py.
 *
 * A Masker runs a detector's regex only where the detector's cheap necessary condition holds
 * (a needle such as "sk-" or "@", "bearer" in any case, a credential's name before ':' or '=',
 * a digit shape, a dotted number). In Python that check is ten passes over the text (isascii,
 * encode, translate, lower, reversal, several searches: ~3.5 us per event of the gateway's
 * batches); here it is memchr for each needle's sentinel character, memmem for the needles whose
 * sentinel occurs, and one pass for the rest. It answers for ASCII text only (None otherwise:
 * Python's regexes then see Unicode digits and spaces), exactly what masking.py's Python check
 * answers, which the tests compare on generated text.
 *
 * scan(text, entries, gates) -> int | None
 *   entries: tuple of (sentinel, needle, kind): sentinel a one-character str or "" (none); kind
 *     0 = needle is a substring of the text, 1 = of the lower-cased text (needle lower case),
 *     2 = the key=value condition (needle ignored): a name ending "ey", "et", "en", "rd" or "wd"
 *     (any case), blanks, then ':' or '='.
 *   gates: bit 0 = the digit condition (7 digits in a row, a digit then ')', or a digit, a
 *     blank, '.' or '-', and a digit), bit 1 = the dotted condition (a digit, '.', a digit).
 *   The result has bit i set for each entry i that holds, bit len(entries) for the digit
 *   condition, bit len(entries) + 1 for the dotted one.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <string.h>

enum { C_DIGIT = 1, C_BLANK = 2, C_RPAREN = 4, C_DOT = 8 };
static unsigned char CLASS[256];

static void init_classes(void) {
    for (int c = '0'; c <= '9'; c++) CLASS[c] |= C_DIGIT;
    /* str.isspace() of ASCII (\t \n \v \f \r, \x1c-\x1f, space), '.' and '-': masking.py's _DIGIT_TABLE maps them to b" " */
    static const char blanks[] = " \t\n\v\f\r\x1c\x1d\x1e\x1f.-";
    for (const char *p = blanks; *p; p++) CLASS[(unsigned char)*p] |= C_BLANK;
    CLASS[')'] |= C_RPAREN;
    CLASS['.'] |= C_DOT;
}

static inline unsigned char lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c; }

/* the next of two bytes at or after p (NULL: neither); *a and *b hold each one's next place at or after an earlier p */
static const unsigned char *next_of(const unsigned char *p, const unsigned char *end, unsigned char ca, unsigned char cb,
                                    const unsigned char **a, const unsigned char **b) {
    if (*a != NULL && *a < p) *a = memchr(p, ca, (size_t)(end - p));
    if (*b != NULL && *b < p) *b = memchr(p, cb, (size_t)(end - p));
    if (*a == NULL) return *b;
    if (*b == NULL) return *a;
    return *a < *b ? *a : *b;
}

/* needle (lower case) in the text, ASCII case folded: from each place of its first letter in either case */
static int find_folded(const unsigned char *s, Py_ssize_t n, const unsigned char *needle, Py_ssize_t m) {
    if (m == 0) return 1;
    unsigned char first = needle[0], upper = (first >= 'a' && first <= 'z') ? (unsigned char)(first - 32) : first;
    const unsigned char *end = s + n, *a = memchr(s, first, (size_t)n), *b = memchr(s, upper, (size_t)n);
    for (const unsigned char *p = s; p < end;) {
        const unsigned char *q = next_of(p, end, first, upper, &a, &b);
        if (q == NULL || q + m > end) return 0;
        Py_ssize_t k = 1;
        while (k < m && lower(q[k]) == needle[k]) k++;
        if (k == m) return 1;
        p = q + 1;
    }
    return 0;
}

/* a credential's name before ':' or '=': forward, [eE][yYtTnN] | [rR][dD] | [wW][dD], blanks, then ':' or '=' */
static int key_value_at(const unsigned char *s, Py_ssize_t i) {
    Py_ssize_t j = i - 1;
    while (j >= 0 && (CLASS[s[j]] & C_BLANK)) j--;
    if (j < 1) return 0;
    unsigned char a = lower(s[j - 1]), b = lower(s[j]);
    if (a == 'e') return b == 'y' || b == 't' || b == 'n';
    if (a == 'r' || a == 'w') return b == 'd';
    return 0;
}

static PyObject *scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyUnicode_Check(args[0]) || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "scan(text: str, entries: tuple, gates: int)");
        return NULL;
    }
    PyObject *text = args[0], *entries = args[1];
    long gates = PyLong_AsLong(args[2]);
    if (gates == -1 && PyErr_Occurred()) return NULL;
    if (PyUnicode_READY(text) < 0) return NULL;
    if (!PyUnicode_IS_ASCII(text)) Py_RETURN_NONE;
    const unsigned char *s = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    Py_ssize_t count = PyTuple_GET_SIZE(entries);
    if (count > 60) {
        PyErr_SetString(PyExc_ValueError, "at most 60 entries");
        return NULL;
    }
    signed char present[256];
    memset(present, -1, sizeof present);
    int kv = -1; /* the key=value condition, computed once */
    unsigned long long mask = 0;
    for (Py_ssize_t e = 0; e < count; e++) {
        PyObject *entry = PyTuple_GET_ITEM(entries, e);
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 3) {
            PyErr_SetString(PyExc_TypeError, "an entry is (sentinel, needle, kind)");
            return NULL;
        }
        PyObject *sentinel = PyTuple_GET_ITEM(entry, 0), *needle = PyTuple_GET_ITEM(entry, 1);
        long kind = PyLong_AsLong(PyTuple_GET_ITEM(entry, 2));
        if (kind == -1 && PyErr_Occurred()) return NULL;
        if (!PyUnicode_Check(sentinel) || !PyUnicode_Check(needle) || PyUnicode_READY(sentinel) < 0 ||
            PyUnicode_READY(needle) < 0 || !PyUnicode_IS_ASCII(sentinel) || !PyUnicode_IS_ASCII(needle) ||
            PyUnicode_GET_LENGTH(sentinel) > 1) {
            PyErr_SetString(PyExc_TypeError, "sentinel and needle are ASCII str, the sentinel one character or none");
            return NULL;
        }
        if (PyUnicode_GET_LENGTH(sentinel) == 1) {
            unsigned char c = PyUnicode_1BYTE_DATA(sentinel)[0];
            if (present[c] < 0) present[c] = memchr(s, c, (size_t)n) != NULL;
            if (!present[c]) continue;
        }
        const unsigned char *nd = PyUnicode_1BYTE_DATA(needle);
        Py_ssize_t m = PyUnicode_GET_LENGTH(needle);
        int found;
        if (kind == 0) {
            found = m == 0 || memmem(s, (size_t)n, nd, (size_t)m) != NULL;
        } else if (kind == 1) {
            found = find_folded(s, n, nd, m);
        } else if (kind == 2) {
            if (kv < 0) {
                kv = 0;
                const unsigned char *end = s + n, *a = memchr(s, ':', (size_t)n), *b = memchr(s, '=', (size_t)n);
                for (const unsigned char *p = s; p < end;) {
                    const unsigned char *q = next_of(p, end, ':', '=', &a, &b);
                    if (q == NULL) break;
                    if (key_value_at(s, q - s)) {
                        kv = 1;
                        break;
                    }
                    p = q + 1;
                }
            }
            found = kv;
        } else {
            PyErr_SetString(PyExc_ValueError, "kind is 0, 1 or 2");
            return NULL;
        }
        if (found) mask |= 1ULL << e;
    }
    if (gates & 3) {
        int digits = !(gates & 1), dotted = !(gates & 2);
        Py_ssize_t run = 0;            /* digits in a row, ending here */
        unsigned char prev = 0, prev2 = 0; /* classes of the two bytes before */
        for (Py_ssize_t i = 0; i < n && !(digits && dotted); i++) {
            unsigned char c = CLASS[s[i]];
            if (c & C_DIGIT) {
                if (++run >= 7 || ((prev & C_BLANK) && (prev2 & C_DIGIT))) digits = 1;
                if ((prev & C_DOT) && (prev2 & C_DIGIT)) dotted = 1;
            } else {
                run = 0;
                if ((c & C_RPAREN) && (prev & C_DIGIT)) digits = 1;
            }
            prev2 = prev;
            prev = c;
        }
        if ((gates & 1) && digits) mask |= 1ULL << count;
        if ((gates & 2) && dotted) mask |= 1ULL << (count + 1);
    }
    return PyLong_FromUnsignedLongLong(mask);
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(text, entries, gates) -> int | None: the masking pre-check over ASCII text (see producers/masking.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_maskscan",
    .m_doc = "The masking pre-check over ASCII text, compiled (see producers/masking.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__maskscan(void) {
    init_classes();
    return PyModule_Create(&module);
}
