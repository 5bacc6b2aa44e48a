/* podtrail.outputs._jsonline: the default output's JSON lines, written in C.
 *
 * Why: the JSON line of each event (orjson on a copy of the event, then non-ASCII made into
 * \u escapes) and holding the lines until a write cost about a sixth of the agent's CPU per
 * exec. Here an event's line goes straight from its dict into one growing buffer that is kept
 * between writes (no line object, no copy of the event, no regrowing), and the list and dict
 * values of its context entities (the ancestry, pod labels and addresses) are rendered once
 * per entity version and copied from then on (kept in Entity.memo["jsonl"], see
 * podtrail/model/context.py: an entity is immutable; a change is a new entity).
 *
 * The reference is podtrail.outputs.stdout.json_line (orjson, then ascii_json): for any event
 * this writes exactly its bytes, or declines (add returns False, line returns None) and the
 * caller takes the reference. It declines what orjson refuses or where the reference leaves
 * orjson (lone surrogates, integers beyond 64 bits, keys that are not plain str, nesting
 * deeper than 64) and values of other types whose orjson text is not ASCII. Values of other
 * types (floats, subclasses, Fragments) are rendered by orjson.dumps itself.
 *
 * Written for this project from the JSON grammar (RFC 8259) and orjson's observable output;
 * only the CPython C API and libc. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define OK 0
#define DECLINE 1
#define FAIL (-1)
#define MISS 2 /* put_memo: not an entity's value (write it as any value) */
#define MAX_DEPTH 64
#define KEEP_CAP (4 << 20) /* a buffer grown past this by a burst is freed once written */

typedef struct {
    char *p;
    Py_ssize_t len, cap;
} Buf;

static int grow(Buf *b, Py_ssize_t extra) {
    if (extra > PY_SSIZE_T_MAX / 2 - b->len) {
        PyErr_NoMemory();
        return FAIL;
    }
    Py_ssize_t need = b->len + extra, cap = b->cap ? b->cap : 8192;
    while (cap < need)
        cap *= 2;
    char *p = PyMem_RawRealloc(b->p, (size_t)cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return FAIL;
    }
    b->p = p;
    b->cap = cap;
    return OK;
}

static inline int reserve(Buf *b, Py_ssize_t extra) {
    return extra <= b->cap - b->len ? OK : grow(b, extra);
}

static inline int put(Buf *b, const char *s, Py_ssize_t n) {
    if (reserve(b, n))
        return FAIL;
    memcpy(b->p + b->len, s, (size_t)n);
    b->len += n;
    return OK;
}

/* Module state: set once by configure(). */
static PyObject *dumps;                /* orjson.dumps, for values of other types */
static PyTypeObject *event_type;       /* model.context.EventDict */
static PyTypeObject *entity_type;      /* model.context.Entity */
static Py_ssize_t off_ctx, off_vals, off_memo; /* their slots */
static PyObject *memo_key;             /* "jsonl" */

/* 1: a byte of ASCII text that is written as it is in a JSON string */
static unsigned char plain[256];

static const char HEX[] = "0123456789abcdef";

static char *escape(char *o, Py_UCS4 c) {
    *o++ = '\\';
    switch (c) {
    case '"': *o++ = '"'; return o;
    case '\\': *o++ = '\\'; return o;
    case '\b': *o++ = 'b'; return o;
    case '\t': *o++ = 't'; return o;
    case '\n': *o++ = 'n'; return o;
    case '\f': *o++ = 'f'; return o;
    case '\r': *o++ = 'r'; return o;
    default: break;
    }
    if (c >= 0x10000) { /* as the surrogate pair of UTF-16 */
        c -= 0x10000;
        Py_UCS4 hi = 0xD800 | (c >> 10), lo = 0xDC00 | (c & 0x3FF);
        *o++ = 'u';
        *o++ = HEX[hi >> 12]; *o++ = HEX[(hi >> 8) & 15]; *o++ = HEX[(hi >> 4) & 15]; *o++ = HEX[hi & 15];
        *o++ = '\\';
        c = lo;
    }
    *o++ = 'u';
    *o++ = HEX[(c >> 12) & 15]; *o++ = HEX[(c >> 8) & 15]; *o++ = HEX[(c >> 4) & 15]; *o++ = HEX[c & 15];
    return o;
}

/* The index of the first byte at or after j that needs a look (a control character, '"',
 * '\\', non-ASCII), or where an 8-byte step would pass n: 16 (SSE2) or 8 bytes a step. */
static inline Py_ssize_t plain_run(const Py_UCS1 *d, Py_ssize_t j, Py_ssize_t n) {
#ifdef __SSE2__
    const __m128i sp = _mm_set1_epi8(0x20), qu = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\');
    while (n - j >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(d + j));
        /* signed: bytes >= 0x80 are negative, so "below 0x20" also takes non-ASCII */
        __m128i hit = _mm_or_si128(_mm_cmplt_epi8(v, sp), _mm_or_si128(_mm_cmpeq_epi8(v, qu), _mm_cmpeq_epi8(v, bs)));
        int m = _mm_movemask_epi8(hit);
        if (m)
            return j + __builtin_ctz((unsigned)m);
        j += 16;
    }
#endif
    while (n - j >= 8) {
        uint64_t w;
        memcpy(&w, d + j, 8);
        uint64_t q = w ^ 0x2222222222222222ULL, s = w ^ 0x5C5C5C5C5C5C5C5CULL;
        uint64_t hit = ((w - 0x2020202020202020ULL) | ((q - 0x0101010101010101ULL) & ~q)
                        | ((s - 0x0101010101010101ULL) & ~s) | w) & 0x8080808080808080ULL;
        if (hit)
            break;
        j += 8;
    }
    return j;
}

static int put_str(Buf *b, PyObject *s) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    Py_ssize_t per = kind == PyUnicode_4BYTE_KIND ? 12 : 6; /* the longest escape of one character */
    if (n > (PY_SSIZE_T_MAX / 2 - 2) / per) {
        PyErr_NoMemory();
        return FAIL;
    }
    if (reserve(b, n * per + 2))
        return FAIL;
    char *o = b->p + b->len;
    *o++ = '"';
    if (kind == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *d = data;
        Py_ssize_t i = 0;
        while (i < n) {
            Py_ssize_t j = plain_run(d, i, n);
            while (j < n && plain[d[j]])
                j++;
            memcpy(o, d + i, (size_t)(j - i));
            o += j - i;
            if (j < n)
                o = escape(o, d[j++]);
            i = j;
        }
    } else {
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c < 128 && plain[c])
                *o++ = (char)c;
            else if (c >= 0xD800 && c <= 0xDFFF)
                return DECLINE; /* a lone surrogate: orjson refuses it, the reference goes elsewhere */
            else
                o = escape(o, c);
        }
    }
    *o++ = '"';
    b->len = o - b->p;
    return OK;
}

static const char DIGITS[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static int put_uint(Buf *b, unsigned long long u, int neg) {
    char tmp[24];
    char *e = tmp + sizeof tmp, *s = e;
    while (u >= 100) {
        unsigned r = (unsigned)(u % 100);
        u /= 100;
        *--s = DIGITS[2 * r + 1];
        *--s = DIGITS[2 * r];
    }
    if (u >= 10) {
        *--s = DIGITS[2 * u + 1];
        *--s = DIGITS[2 * u];
    } else {
        *--s = (char)('0' + u);
    }
    if (neg)
        *--s = '-';
    return put(b, s, e - s);
}

static int put_int(Buf *b, PyObject *v) {
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow == 0) {
        if (x == -1 && PyErr_Occurred())
            return FAIL;
        return x < 0 ? put_uint(b, 0ULL - (unsigned long long)x, 1) : put_uint(b, (unsigned long long)x, 0);
    }
    if (overflow < 0)
        return DECLINE;
    unsigned long long u = PyLong_AsUnsignedLongLong(v);
    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return FAIL;
        PyErr_Clear();
        return DECLINE; /* beyond 64 bits */
    }
    return put_uint(b, u, 0);
}

/* A value of another type: orjson's own text of it, when that is ASCII. */
static int put_other(Buf *b, PyObject *v) {
    Py_INCREF(v);
    PyObject *r = PyObject_CallOneArg(dumps, v);
    Py_DECREF(v);
    if (r == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError))
            return FAIL;
        PyErr_Clear(); /* what orjson refuses: the reference decides */
        return DECLINE;
    }
    int rc = DECLINE;
    if (PyBytes_CheckExact(r)) {
        const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(r);
        Py_ssize_t n = PyBytes_GET_SIZE(r), i = 0;
        while (i < n && s[i] < 128)
            i++;
        if (i == n)
            rc = put(b, (const char *)s, n);
    }
    Py_DECREF(r);
    return rc;
}

static int put_value(Buf *b, PyObject *v, int depth);

/* Containers are held while their items are written (only orjson's calls for other types,
 * and the memo's allocations, can run Python code, through the collector; items are read again
 * from the container after each, bounds checked). */
static int put_list(Buf *b, PyObject *v, int depth) {
    if (put(b, "[", 1))
        return FAIL;
    Py_INCREF(v);
    int rc = OK;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(v); i++) {
        if (i && (rc = put(b, ",", 1)))
            break;
        if ((rc = put_value(b, PySequence_Fast_GET_ITEM(v, i), depth + 1)))
            break;
    }
    Py_DECREF(v);
    return rc ? rc : put(b, "]", 1);
}

static int put_key(Buf *b, PyObject *k) {
    if (!PyUnicode_CheckExact(k))
        return DECLINE;
    int rc = put_str(b, k);
    if (rc)
        return rc;
    return put(b, ":", 1);
}

/* The keys of events (the declared names, interned: a few dozen objects) as written, with the
 * comma before them, by identity; each slot holds its key, so the address is not reused. */
#define KEY_SLOTS 512
#define KEY_TEXT 48
static struct {
    PyObject *key;
    Py_ssize_t len;
    char text[KEY_TEXT]; /* ,"name": */
} keys[KEY_SLOTS];

static int put_top_key(Buf *b, PyObject *k, int first) {
    size_t h = (((uintptr_t)k >> 4) ^ ((uintptr_t)k >> 13)) % KEY_SLOTS;
    if (keys[h].key == k) {
        if (reserve(b, KEY_TEXT))
            return FAIL;
        memcpy(b->p + b->len, keys[h].text + first, KEY_TEXT - 1);
        b->len += keys[h].len - first;
        return OK;
    }
    Py_ssize_t start = b->len;
    int rc = (first ? OK : put(b, ",", 1));
    if (rc || (rc = put_key(b, k)))
        return rc;
    Py_ssize_t n = b->len - start + first; /* with the comma */
    if (n <= KEY_TEXT - 1) {
        PyObject *old = keys[h].key;
        keys[h].text[0] = ',';
        memcpy(keys[h].text + 1, b->p + start + (first ? 0 : 1), (size_t)(n - 1));
        keys[h].len = n;
        keys[h].key = Py_NewRef(k);
        Py_XDECREF(old);
    }
    return OK;
}

static int put_dict(Buf *b, PyObject *v, int depth) {
    if (put(b, "{", 1))
        return FAIL;
    Py_INCREF(v);
    Py_ssize_t pos = 0;
    PyObject *k, *x;
    int first = 1, rc = OK;
    while (PyDict_Next(v, &pos, &k, &x)) {
        if (!first && (rc = put(b, ",", 1)))
            break;
        first = 0;
        if ((rc = put_key(b, k)) || (rc = put_value(b, x, depth + 1)))
            break;
    }
    Py_DECREF(v);
    return rc ? rc : put(b, "}", 1);
}

static int put_value(Buf *b, PyObject *v, int depth) {
    if (depth > MAX_DEPTH)
        return DECLINE;
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyUnicode_Type)
        return put_str(b, v);
    if (t == &PyLong_Type)
        return put_int(b, v);
    if (v == Py_None)
        return put(b, "null", 4);
    if (v == Py_True)
        return put(b, "true", 4);
    if (v == Py_False)
        return put(b, "false", 5);
    if (t == &PyList_Type || t == &PyTuple_Type)
        return put_list(b, v, depth);
    if (t == &PyDict_Type)
        return put_dict(b, v, depth);
    return put_other(b, v);
}

/* Lists and dicts inside the values of context entities, by identity: an entity's values are
 * immutable (a change is a new entity), and siblings' entities share their ancestry list, its
 * ancestor dicts one per ancestor image (procs/stage.py). Each slot holds the object (so its
 * address is not reused while it is here) and its text. */
#define SHARED_SLOTS 512
static struct {
    PyObject *obj, *text;
} shared[SHARED_SLOTS];

static int put_shared(Buf *b, PyObject *v, int depth) {
    if (depth > MAX_DEPTH)
        return DECLINE;
    size_t h = ((uintptr_t)v >> 4) % SHARED_SLOTS;
    if (shared[h].obj == v)
        return put(b, PyBytes_AS_STRING(shared[h].text), PyBytes_GET_SIZE(shared[h].text));
    Py_ssize_t start = b->len;
    int rc = OK;
    Py_INCREF(v);
    if (PyList_CheckExact(v)) {
        rc = put(b, "[", 1);
        for (Py_ssize_t i = 0; !rc && i < PyList_GET_SIZE(v); i++) {
            if (i && (rc = put(b, ",", 1)))
                break;
            PyObject *x = PyList_GET_ITEM(v, i);
            rc = PyList_CheckExact(x) || PyDict_CheckExact(x) ? put_shared(b, x, depth + 1) : put_value(b, x, depth + 1);
        }
        if (!rc)
            rc = put(b, "]", 1);
    } else {
        rc = put_dict(b, v, depth);
    }
    if (!rc) {
        PyObject *t = PyBytes_FromStringAndSize(b->p + start, b->len - start);
        if (t == NULL) {
            rc = FAIL;
        } else {
            PyObject *old_obj = shared[h].obj, *old_text = shared[h].text;
            shared[h].obj = v; /* takes the reference held above */
            shared[h].text = t;
            Py_XDECREF(old_obj);
            Py_XDECREF(old_text);
            return OK;
        }
    }
    Py_DECREF(v);
    return rc;
}

/* The slot at ``off`` of ``o`` (borrowed; NULL when unset). */
static inline PyObject *slot(PyObject *o, Py_ssize_t off) {
    return *(PyObject **)((char *)o + off);
}

/* A list or dict value of the event that is a value of one of its entities: its text from the
 * entity's memo (rendered there at first use). MISS: not an entity's value (nothing written). */
static int put_memo(Buf *b, PyObject *v, PyObject *ctx) {
    Py_ssize_t ne = PyTuple_GET_SIZE(ctx);
    for (Py_ssize_t e = 1; e < ne; e++) {
        PyObject *ent = PyTuple_GET_ITEM(ctx, e);
        if (Py_TYPE(ent) != entity_type)
            continue;
        PyObject *vals = slot(ent, off_vals);
        if (vals == NULL || !PyTuple_CheckExact(vals))
            continue;
        Py_ssize_t nv = PyTuple_GET_SIZE(vals);
        for (Py_ssize_t i = 0; i < nv; i++) {
            if (PyTuple_GET_ITEM(vals, i) != v)
                continue;
            PyObject *memo = slot(ent, off_memo);
            if (memo == NULL || memo == Py_None) {
                memo = PyDict_New();
                if (memo == NULL)
                    return FAIL;
                int rc = PyObject_SetAttrString(ent, "memo", memo);
                Py_DECREF(memo);
                if (rc)
                    return FAIL;
                memo = slot(ent, off_memo);
            }
            if (!PyDict_CheckExact(memo))
                return MISS;
            PyObject *frags = PyDict_GetItemWithError(memo, memo_key);
            if (frags == NULL) {
                if (PyErr_Occurred())
                    return FAIL;
                frags = PyList_New(nv);
                if (frags == NULL)
                    return FAIL;
                for (Py_ssize_t j = 0; j < nv; j++) {
                    Py_INCREF(Py_None);
                    PyList_SET_ITEM(frags, j, Py_None);
                }
                int rc = PyDict_SetItem(memo, memo_key, frags);
                Py_DECREF(frags);
                if (rc)
                    return FAIL;
            }
            if (!PyList_CheckExact(frags) || PyList_GET_SIZE(frags) != nv)
                return MISS;
            PyObject *f = PyList_GET_ITEM(frags, i);
            if (PyBytes_CheckExact(f))
                return put(b, PyBytes_AS_STRING(f), PyBytes_GET_SIZE(f));
            Py_ssize_t start = b->len;
            int rc = put_shared(b, v, 1);
            if (rc)
                return rc;
            f = PyBytes_FromStringAndSize(b->p + start, b->len - start);
            if (f == NULL)
                return FAIL;
            return PyList_SetItem(frags, i, f) ? FAIL : OK; /* steals f */
        }
    }
    return MISS;
}

/* The event's line and a newline, appended to ``b``; on DECLINE or FAIL ``b`` is as before. */
static int put_event(Buf *b, PyObject *ev) {
    if (dumps == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_jsonline: configure() was not called");
        return FAIL;
    }
    if (!PyDict_Check(ev))
        return DECLINE;
    PyObject *ctx = NULL;
    if (Py_TYPE(ev) == event_type) {
        ctx = slot(ev, off_ctx);
        if (ctx != NULL && !PyTuple_CheckExact(ctx))
            ctx = NULL;
    }
    Py_XINCREF(ctx);
    Py_ssize_t start = b->len, pos = 0;
    PyObject *k, *v;
    int rc = put(b, "{", 1), first = 1;
    while (!rc && PyDict_Next(ev, &pos, &k, &v)) {
        rc = put_top_key(b, k, first);
        first = 0;
        if (!rc) {
            PyTypeObject *t = Py_TYPE(v);
            rc = MISS;
            if (ctx != NULL && (t == &PyList_Type || t == &PyDict_Type)) {
                Py_INCREF(v);
                rc = put_memo(b, v, ctx);
                Py_DECREF(v);
            }
            if (rc == MISS)
                rc = put_value(b, v, 1);
        }
    }
    Py_XDECREF(ctx);
    if (!rc)
        rc = put(b, "}\n", 2);
    if (rc)
        b->len = start;
    return rc;
}

/* -- Lines: the buffer of lines not written yet ------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Buf b;
    int busy; /* a write is under way without the GIL */
} Lines;

static int check_idle(Lines *self) {
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Lines: in use by a write");
        return -1;
    }
    return 0;
}

static PyObject *Lines_add(Lines *self, PyObject *ev) {
    if (check_idle(self))
        return NULL;
    int rc = put_event(&self->b, ev);
    if (rc == FAIL)
        return NULL;
    return PyBool_FromLong(rc == OK);
}

static PyObject *Lines_extend(Lines *self, PyObject *arg) {
    if (check_idle(self))
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE))
        return NULL;
    int rc = put(&self->b, view.buf, view.len);
    PyBuffer_Release(&view);
    if (rc)
        return NULL;
    Py_RETURN_NONE;
}

static void drop(Lines *self, Py_ssize_t n) {
    Buf *b = &self->b;
    if (n >= b->len) {
        b->len = 0;
        if (b->cap > KEEP_CAP) {
            PyMem_RawFree(b->p);
            b->p = NULL;
            b->cap = 0;
        }
        return;
    }
    memmove(b->p, b->p + n, (size_t)(b->len - n));
    b->len -= n;
}

static PyObject *Lines_write(Lines *self, PyObject *args) {
    int fd, flags = 0;
    if (!PyArg_ParseTuple(args, "i|i:write", &fd, &flags))
        return NULL;
    if (check_idle(self))
        return NULL;
    if (self->b.len == 0)
        return PyLong_FromLong(0);
    ssize_t n;
    int err;
    self->busy = 1;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        if (flags) {
            struct iovec iov = {self->b.p, (size_t)self->b.len};
            n = pwritev2(fd, &iov, 1, -1, flags);
        } else {
            n = write(fd, self->b.p, (size_t)self->b.len);
        }
        err = errno;
        Py_END_ALLOW_THREADS
        if (n >= 0 || err != EINTR)
            break;
        if (PyErr_CheckSignals()) { /* as os.write: retry unless a handler raised */
            self->busy = 0;
            return NULL;
        }
    }
    self->busy = 0;
    if (n < 0) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    drop(self, (Py_ssize_t)n);
    return PyLong_FromSsize_t((Py_ssize_t)n);
}

static PyObject *Lines_take(Lines *self, PyObject *unused) {
    if (check_idle(self))
        return NULL;
    PyObject *r = PyBytes_FromStringAndSize(self->b.p, self->b.len);
    if (r != NULL)
        drop(self, self->b.len);
    return r;
}

static PyObject *Lines_clear(Lines *self, PyObject *unused) {
    if (check_idle(self))
        return NULL;
    drop(self, self->b.len);
    Py_RETURN_NONE;
}

static Py_ssize_t Lines_len(Lines *self) {
    return self->b.len;
}

static void Lines_dealloc(Lines *self) {
    PyMem_RawFree(self->b.p);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Lines_methods[] = {
    {"add", (PyCFunction)Lines_add, METH_O,
     "add(ev) -> bool: append ev's JSON line and a newline; False: declined, nothing appended (take json_line)"},
    {"extend", (PyCFunction)Lines_extend, METH_O, "extend(data): append bytes as they are"},
    {"write", (PyCFunction)Lines_write, METH_VARARGS,
     "write(fd, flags=0) -> int: write the start of the buffer (pwritev2 with flags if given) and drop what was written; OSError as os.write"},
    {"take", (PyCFunction)Lines_take, METH_NOARGS, "take() -> bytes: everything waiting, and empty the buffer"},
    {"clear", (PyCFunction)Lines_clear, METH_NOARGS, "clear(): drop everything waiting"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Lines_as_sequence = {.sq_length = (lenfunc)Lines_len};

static PyTypeObject LinesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "podtrail.outputs._jsonline.Lines",
    .tp_basicsize = sizeof(Lines),
    .tp_dealloc = (destructor)Lines_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "JSON lines waiting to be written, in one buffer kept between writes.",
    .tp_methods = Lines_methods,
    .tp_as_sequence = &Lines_as_sequence,
    .tp_new = PyType_GenericNew,
};

/* -- module functions -------------------------------------------------------------------- */

static PyObject *line(PyObject *mod, PyObject *ev) {
    Buf b = {NULL, 0, 0};
    int rc = put_event(&b, ev);
    PyObject *r = NULL;
    if (rc == OK)
        r = PyBytes_FromStringAndSize(b.p, b.len - 1); /* without the newline */
    else if (rc == DECLINE)
        r = Py_NewRef(Py_None);
    PyMem_RawFree(b.p);
    return r;
}

static int member_offset(PyTypeObject *t, const char *name, Py_ssize_t *off) {
    PyObject *d = PyDict_GetItemString(t->tp_dict, name); /* borrowed */
    if (d == NULL || Py_TYPE(d) != &PyMemberDescr_Type) {
        PyErr_Format(PyExc_TypeError, "%s has no slot %s", t->tp_name, name);
        return -1;
    }
    PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
    if (m->type != T_OBJECT_EX) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not an object slot", t->tp_name, name);
        return -1;
    }
    *off = m->offset;
    return 0;
}

static PyObject *configure(PyObject *mod, PyObject *args) {
    PyObject *evt, *ent, *dump;
    if (!PyArg_ParseTuple(args, "O!O!O:configure", &PyType_Type, &evt, &PyType_Type, &ent, &dump))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)evt, &PyDict_Type)) {
        PyErr_SetString(PyExc_TypeError, "configure: the event type must be a dict subclass");
        return NULL;
    }
    Py_ssize_t a, b, c;
    if (member_offset((PyTypeObject *)evt, "_ctx", &a) || member_offset((PyTypeObject *)ent, "vals", &b)
        || member_offset((PyTypeObject *)ent, "memo", &c))
        return NULL;
    off_ctx = a;
    off_vals = b;
    off_memo = c;
    Py_XSETREF(event_type, (PyTypeObject *)Py_NewRef(evt));
    Py_XSETREF(entity_type, (PyTypeObject *)Py_NewRef(ent));
    Py_XSETREF(dumps, Py_NewRef(dump));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(EventDict, Entity, orjson.dumps): the types whose slots are read, and the encoder of other values"},
    {"line", line, METH_O, "line(ev) -> bytes | None: ev's JSON line (no newline); None: declined"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "podtrail.outputs._jsonline",
    "JSON lines of events in C; reference: podtrail.outputs.stdout.json_line.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__jsonline(void) {
    for (int c = 0x20; c < 128; c++) /* and none of 128..255 */
        plain[c] = 1;
    plain['"'] = 0;
    plain['\\'] = 0;
    memo_key = PyUnicode_InternFromString("jsonl");
    if (memo_key == NULL || PyType_Ready(&LinesType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Lines", (PyObject *)&LinesType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
