/* A strict recogniser of the gateway's hot HTTP/1.1 requests, for gateway/fastpath.py.
 *
 * aiohttp's parser turns each request into a message, a header multidict, a URL and a
 * payload stream before the fast path sees it: about a third of a single-event POST's CPU
 * on the gateway's host. This reads one request at a time straight from the bytes a
 * connection received, but only one of the exact shapes the hot routes get:
 *
 *     POST /v1/experiences HTTP/1.1      POST /v1/feedback HTTP/1.1
 *     GET /v1/experiments/<id>/assignment?<name=value&...> HTTP/1.1
 *
 * with CRLF line ends, a Host header, a Content-Length body (none for GET) wholly in the
 * buffer, and header values of visible ASCII. Anything else, or anything it is not sure of,
 * gives None and the bytes go to aiohttp's parser untouched: chunked bodies, a
 * Transfer-Encoding, Content-Encoding, Expect or Upgrade header, "Connection" other than
 * keep-alive, obs-fold, bare LF, control or non-ASCII bytes, any header twice (aiohttp
 * refuses some twice, h11 others), a percent-encoded or '+' in the target, and lines or
 * header counts near aiohttp's limits. So it never needs to agree with a parser on a hard
 * case: it only has to refuse it. The start of such a request, acceptable as far as it goes,
 * gives () (the fast path waits for one more read: Python's http.client sends a head and its
 * body apart); a request line not yet whole only when it starts as a hot one does. tests/unit/gateway/test_httpscan.py checks every request it accepts against
 * aiohttp's parser and h11 (same method, target, headers, body and end).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_LINE 4096   /* aiohttp refuses lines over 8190 bytes: well below */
#define MAX_HEADERS 64  /* aiohttp: 128 */
#define MAX_ID 128

enum { EXPERIENCES = 0, FEEDBACK = 1, ASSIGNMENT = 2 };

static unsigned char tchar[256];  /* RFC 9110 token characters */
static unsigned char idchar[256]; /* characters of an experiment id here (first: alphanumeric or _) */
static unsigned char qchar[256];  /* characters of a query name or value here: unreserved and ':' */

static void init_tables(void) {
    const char *extra = "!#$%&'*+-.^_`|~";
    for (int c = 0; c < 256; c++) {
        int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        tchar[c] = alnum || (c && strchr(extra, c) != NULL);
        idchar[c] = alnum || c == '_' || c == '.' || c == ':' || c == '-';
        qchar[c] = alnum || c == '_' || c == '.' || c == '~' || c == ':' || c == '-';
    }
}

static int same_name(const char *a, const char *b, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = (char)(x + 32);
        if (y >= 'A' && y <= 'Z') y = (char)(y + 32);
        if (x != y) return 0;
    }
    return 1;
}

static int name_is(const char *p, Py_ssize_t n, const char *lower) {
    if ((size_t)n != strlen(lower)) return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = p[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
        if (c != lower[i]) return 0;
    }
    return 1;
}

/* The request target: route, and for the assignment its experiment id and first unit_id. 0: not a hot one. */
static int read_target(const char *p, Py_ssize_t n, int post, const char **id, Py_ssize_t *id_n,
                       const char **unit, Py_ssize_t *unit_n) {
    static const char exp[] = "/v1/experiences", fb[] = "/v1/feedback", pre[] = "/v1/experiments/", suf[] = "/assignment";
    if (post) {
        if (n == (Py_ssize_t)sizeof exp - 1 && memcmp(p, exp, sizeof exp - 1) == 0) return EXPERIENCES + 1;
        if (n == (Py_ssize_t)sizeof fb - 1 && memcmp(p, fb, sizeof fb - 1) == 0) return FEEDBACK + 1;
        return 0;
    }
    Py_ssize_t lp = sizeof pre - 1, ls = sizeof suf - 1;
    if (n <= lp || memcmp(p, pre, (size_t)lp) != 0) return 0;
    const char *s = p + lp, *end = p + n;
    const char *e = s;
    while (e < end && idchar[(unsigned char)*e]) e++;
    if (e == s || e - s > MAX_ID || *s == '.' || *s == ':' || *s == '-') return 0;
    if (end - e < ls || memcmp(e, suf, (size_t)ls) != 0) return 0;
    *id = s;
    *id_n = e - s;
    const char *q = e + ls;
    *unit = NULL;
    if (q == end) return ASSIGNMENT + 1;
    if (*q != '?') return 0;
    q++;
    while (q < end) { /* name=value pairs joined by '&', nothing to decode */
        const char *name = q;
        while (q < end && qchar[(unsigned char)*q]) q++;
        if (q == name || q == end || *q != '=') return 0;
        Py_ssize_t name_n = q - name;
        const char *value = ++q;
        while (q < end && qchar[(unsigned char)*q]) q++;
        if (*unit == NULL && name_n == 7 && memcmp(name, "unit_id", 7) == 0) {
            *unit = value;
            *unit_n = q - value;
        }
        if (q == end) break;
        if (*q != '&' || q + 1 == end) return 0;
        q++;
    }
    return ASSIGNMENT + 1;
}

/* The start of a request, acceptable so far: () */
#define MORE PyTuple_New(0)

/* scan(data, pos, max_body) -> None | () | (route, experiment_id, unit_id, authorization, tenant, agent, body_start, end) */
static PyObject *scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "scan(data, pos, max_body) takes 3 arguments");
        return NULL;
    }
    if (!PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "scan: data must be bytes");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t max_body = PyLong_AsSsize_t(args[2]);
    if (max_body == -1 && PyErr_Occurred()) return NULL;
    const char *buf = PyBytes_AS_STRING(args[0]);
    Py_ssize_t len = PyBytes_GET_SIZE(args[0]);
    if (pos < 0 || pos >= len) Py_RETURN_NONE;
    const char *p = buf + pos, *end = buf + len;

    /* request line */
    const char *eol = memchr(p, '\r', (size_t)(end - p) < MAX_LINE ? (size_t)(end - p) : MAX_LINE);
    if (eol == NULL || eol + 1 >= end) { /* the request line is not whole yet: more only if it starts as a hot one */
        static const char *starts[] = {"POST /v1/experiences ", "POST /v1/feedback ", "GET /v1/experiments/"};
        Py_ssize_t have = end - p;
        if (have >= MAX_LINE) Py_RETURN_NONE;
        for (int i = 0; i < 3; i++) {
            Py_ssize_t n = (Py_ssize_t)strlen(starts[i]);
            if (memcmp(p, starts[i], (size_t)(have < n ? have : n)) == 0) return MORE;
        }
        Py_RETURN_NONE;
    }
    if (eol[1] != '\n') Py_RETURN_NONE;
    int post;
    if (eol - p > 5 && memcmp(p, "POST ", 5) == 0) post = 1, p += 5;
    else if (eol - p > 4 && memcmp(p, "GET ", 4) == 0) post = 0, p += 4;
    else Py_RETURN_NONE;
    static const char version[] = " HTTP/1.1";
    Py_ssize_t lv = sizeof version - 1;
    if (eol - p <= lv || memcmp(eol - lv, version, (size_t)lv) != 0) Py_RETURN_NONE;
    const char *id = NULL, *unit = NULL;
    Py_ssize_t id_n = 0, unit_n = 0;
    int route = read_target(p, eol - lv - p, post, &id, &id_n, &unit, &unit_n) - 1;
    if (route < 0) Py_RETURN_NONE;
    p = eol + 2;

    /* header lines, to the empty one */
    const char *val[3] = {NULL, NULL, NULL}; /* authorization, x-agentgym-tenant, x-agentgym-agent */
    Py_ssize_t val_n[3] = {0, 0, 0};
    const char *names[MAX_HEADERS];
    Py_ssize_t names_n[MAX_HEADERS];
    int host = 0, length = 0, count = 0; /* (each header comes once: repeats are refused below) */
    Py_ssize_t content_length = 0;
    for (;;) {
        if (end - p < 2) return MORE;
        if (p[0] == '\r' && p[1] == '\n') {
            p += 2;
            break;
        }
        if (count == MAX_HEADERS) Py_RETURN_NONE;
        const char *name = p, *lim = end - p < MAX_LINE ? end : p + MAX_LINE;
        while (p < lim && tchar[(unsigned char)*p]) p++;
        if (p == lim && lim == end) return MORE;
        if (p == name || p == lim || *p != ':') Py_RETURN_NONE; /* no name, space before ':', obs-fold, too long */
        Py_ssize_t name_n = p - name;
        for (int i = 0; i < count; i++) /* a repeated header: aiohttp refuses some (Content-Type, Host...) */
            if (names_n[i] == name_n && same_name(names[i], name, name_n)) Py_RETURN_NONE;
        names[count] = name, names_n[count] = name_n, count++;
        p++;
        while (p < lim && (*p == ' ' || *p == '\t')) p++;
        const char *v = p;
        while (p < lim && ((*p >= 0x21 && *p <= 0x7e) || *p == ' ' || *p == '\t')) p++;
        if (p >= lim) {
            if (lim == end) return MORE;
            Py_RETURN_NONE; /* too long */
        }
        if (p[0] != '\r') Py_RETURN_NONE; /* a control, non-ASCII or bare LF */
        if (p + 1 >= end) return MORE;
        if (p[1] != '\n') Py_RETURN_NONE;
        Py_ssize_t v_n = p - v;
        if (v_n && (v[v_n - 1] == ' ' || v[v_n - 1] == '\t')) Py_RETURN_NONE; /* trailing whitespace */
        p += 2;
        switch (name_n) {
        case 4:
            if (name_is(name, name_n, "host")) host = 1;
            break;
        case 6:
            if (name_is(name, name_n, "expect")) Py_RETURN_NONE;
            break;
        case 7:
            if (name_is(name, name_n, "upgrade")) Py_RETURN_NONE;
            break;
        case 10:
            if (name_is(name, name_n, "connection") && !name_is(v, v_n, "keep-alive")) Py_RETURN_NONE;
            break;
        case 13:
            if (name_is(name, name_n, "authorization")) val[0] = v, val_n[0] = v_n;
            break;
        case 14:
            if (name_is(name, name_n, "content-length")) {
                if (v_n == 0 || v_n > 9) Py_RETURN_NONE;
                length = 1;
                for (Py_ssize_t i = 0; i < v_n; i++) {
                    if (v[i] < '0' || v[i] > '9') Py_RETURN_NONE;
                    content_length = content_length * 10 + (v[i] - '0');
                }
            }
            break;
        case 16:
            if (name_is(name, name_n, "content-encoding")) Py_RETURN_NONE;
            if (name_is(name, name_n, "x-agentgym-agent")) val[2] = v, val_n[2] = v_n;
            break;
        case 17:
            if (name_is(name, name_n, "transfer-encoding")) Py_RETURN_NONE;
            if (name_is(name, name_n, "x-agentgym-tenant")) val[1] = v, val_n[1] = v_n;
            break;
        }
    }
    if (!host) Py_RETURN_NONE;
    if (post ? (!length || content_length > max_body) : content_length != 0) Py_RETURN_NONE;
    if (end - p < content_length) return MORE; /* the body is still arriving */
    Py_ssize_t body_start = p - buf, stop = body_start + content_length;

    PyObject *items[8] = {NULL};
    items[0] = PyLong_FromLong(route);
    items[1] = id ? PyUnicode_DecodeASCII(id, id_n, NULL) : Py_NewRef(Py_None);
    items[2] = unit ? PyUnicode_DecodeASCII(unit, unit_n, NULL) : Py_NewRef(Py_None);
    for (int i = 0; i < 3; i++) items[3 + i] = val[i] ? PyUnicode_DecodeASCII(val[i], val_n[i], NULL) : Py_NewRef(Py_None);
    items[6] = PyLong_FromSsize_t(body_start);
    items[7] = PyLong_FromSsize_t(stop);
    PyObject *out = NULL;
    for (int i = 0; i < 8; i++)
        if (items[i] == NULL) goto done;
    out = PyTuple_New(8);
    if (out == NULL) goto done;
    for (int i = 0; i < 8; i++) {
        PyTuple_SET_ITEM(out, i, items[i]);
        items[i] = NULL;
    }
done:
    for (int i = 0; i < 8; i++) Py_XDECREF(items[i]);
    return out;
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(data, pos, max_body) -> None | () | (route, experiment_id, unit_id, authorization, tenant, agent, body_start, end):\n"
     "the hot request at data[pos:] if it is one of the strict shapes gateway/fastpath.py answers and is whole;\n"
     "() if data[pos:] is the start of one, acceptable so far;\n"
     "None if it is not one the scanner reads.\n"
     "route 0: POST /v1/experiences, 1: POST /v1/feedback, 2: GET /v1/experiments/{id}/assignment."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_httpscan",
    .m_doc = "A strict recogniser of the gateway's hot HTTP/1.1 requests (see gateway/fastpath.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__httpscan(void) {
    init_tables();
    return PyModule_Create(&module);
}
