/* The anchor mask of a field value for the generated Sigma rule functions, in C.
 *
 * Why: an exec with a command line never seen before cost 6.5-7.4 us in the detect stage,
 * most of it the `re` trie search of the folded text for the ~53 substring words of the exec
 * rules (~20 ns per character) plus the Python calls around it. Here the words are one
 * Aho-Corasick automaton (a full transition table, built once at rule load), run over the
 * text's code points with ASCII folding on the fly (about 1-2 ns per character, linear in
 * the text whatever the words), and the other anchor tables are probed from C.
 *
 * Reference (kept, tested equal, and the fallback): podtrail.detect.codegen._mask / _memo /
 * _words and the generated per-field blocks; podtrail.detect.predicate.fold for folding
 * (ASCII letters only: non-ASCII text keeps its code points, so lengths never change).
 *
 * Types:
 * - Automaton(words: dict[str, int]): .mask(s) is the OR of the masks of every word that
 *   occurs in fold(s) (for the prefix-free "kept" words of engine.word_finder: exactly
 *   _words(rx, masks, fold(s), rx.search(fold(s)))).
 * - FieldMask(...): fm(r) is _memo/_mask of one field's plan for a value r (exact str of a
 *   text field here, anything else through the Python fallback given): its prefix and suffix
 *   tables are tries (Automaton modes 1 and 2; "last path component is x" is the suffix "/x"),
 *   walked over the folded text without a slice; only the exact table needs the folded copy.
 * - Prefilter(always, fields): p(ev) is `always` OR the mask of each (name, FieldMask or
 *   callable) whose value in the event dict is not None: the generated function's first part.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define MAX_TABLE (1 << 22) /* transition table entries (16 MiB); larger word sets stay with `re` */

static PyObject *ZERO; /* the int 0 (CPython's shared small int) */

/* *acc |= m, without a new int when either side is 0 (the common case: most values hit nothing). */
static inline int or_into(PyObject **acc, PyObject *m) {
    if (m == ZERO) return 0;
    if (*acc == ZERO && PyLong_CheckExact(m)) {
        Py_INCREF(m);
        Py_SETREF(*acc, m);
        return 0;
    }
    PyObject *r = PyNumber_Or(*acc, m);
    if (!r) return -1;
    Py_SETREF(*acc, r);
    return 0;
}

/* ---- Automaton ------------------------------------------------------------------------------ */

enum { CONTAINS = 0, PREFIX = 1, SUFFIX = 2 };

typedef struct {
    PyObject_HEAD
    int mode;          /* CONTAINS: Aho-Corasick; PREFIX / SUFFIX: a trie walked from the start / end */
    int32_t nstates, nclasses;
    int32_t *delta;    /* nstates * nclasses: next state */
    int32_t *word;     /* per state: the word ending exactly here, or -1 */
    int32_t *out;      /* per state: nearest proper-suffix state where a word ends, or -1 (CONTAINS) */
    int32_t *hit;      /* per state: itself if a word ends here, else out (CONTAINS): one load per character */
    uint64_t *seen;    /* per word: the scan epoch that last reported it */
    uint64_t epoch;
    Py_ssize_t nwords;
    PyObject **masks;  /* per word: its mask (a Python int) */
    int32_t ascii_class[256]; /* per code point < 256, after folding: its class (0: in no word) */
    Py_UCS4 *wide;     /* sorted non-ASCII code points of the words */
    int32_t *wide_class;
    Py_ssize_t nwide;
} Automaton;

static void automaton_dealloc(Automaton *a) {
    if (a->masks) {
        for (Py_ssize_t i = 0; i < a->nwords; i++) Py_XDECREF(a->masks[i]);
    }
    PyMem_Free(a->masks);
    PyMem_Free(a->delta);
    PyMem_Free(a->word);
    PyMem_Free(a->out);
    PyMem_Free(a->hit);
    PyMem_Free(a->seen);
    PyMem_Free(a->wide);
    PyMem_Free(a->wide_class);
    Py_TYPE(a)->tp_free((PyObject *)a);
}

static int cmp_ucs4(const void *x, const void *y) {
    Py_UCS4 a = *(const Py_UCS4 *)x, b = *(const Py_UCS4 *)y;
    return a < b ? -1 : a > b;
}

static inline int32_t wide_lookup(const Automaton *a, Py_UCS4 c) {
    Py_ssize_t lo = 0, hi = a->nwide;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (a->wide[mid] < c) lo = mid + 1;
        else hi = mid;
    }
    return lo < a->nwide && a->wide[lo] == c ? a->wide_class[lo] : 0;
}

static inline int32_t class_of(const Automaton *a, Py_UCS4 c) {
    if (c < 256) return a->ascii_class[c];
    return a->nwide ? wide_lookup(a, c) : 0;
}

/* The class of a code point of a word, as written (words are folded already). */
static int32_t word_class(const Automaton *a, Py_UCS4 c, const int32_t *raw_ascii) {
    return c < 128 ? raw_ascii[c] : wide_lookup(a, c);
}

static int automaton_build(Automaton *a, PyObject *words) {
    Py_ssize_t pos = 0, total = 0, nw = PyDict_GET_SIZE(words);
    PyObject *k, *v;
    int32_t raw_ascii[128];
    memset(raw_ascii, 0, sizeof raw_ascii);
    memset(a->ascii_class, 0, sizeof a->ascii_class);
    /* the alphabet: every code point of a word gets a class; others are class 0 */
    Py_ssize_t nwide_max = 0;
    while (PyDict_Next(words, &pos, &k, &v)) {
        if (!PyUnicode_CheckExact(k) || !PyLong_Check(v)) {
            PyErr_SetString(PyExc_TypeError, "words must map str to int");
            return -1;
        }
        total += PyUnicode_GET_LENGTH(k);
        nwide_max += PyUnicode_GET_LENGTH(k);
        if (total > INT32_MAX / 2) {
            PyErr_SetString(PyExc_ValueError, "words too long for the automaton");
            return -1;
        }
    }
    a->wide = PyMem_Malloc(sizeof(Py_UCS4) * (nwide_max + 1));
    a->wide_class = PyMem_Malloc(sizeof(int32_t) * (nwide_max + 1));
    if (!a->wide || !a->wide_class) {
        PyErr_NoMemory();
        return -1;
    }
    int32_t nclasses = 1;
    pos = 0;
    while (PyDict_Next(words, &pos, &k, &v)) {
        int kind = PyUnicode_KIND(k);
        const void *data = PyUnicode_DATA(k);
        for (Py_ssize_t i = 0, n = PyUnicode_GET_LENGTH(k); i < n; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c < 128) {
                if (!raw_ascii[c]) raw_ascii[c] = nclasses++;
            } else {
                a->wide[a->nwide++] = c;
            }
        }
    }
    if (a->nwide) { /* sort, dedupe, number */
        qsort(a->wide, (size_t)a->nwide, sizeof(Py_UCS4), cmp_ucs4);
        Py_ssize_t w = 0;
        for (Py_ssize_t i = 0; i < a->nwide; i++) {
            if (w == 0 || a->wide[w - 1] != a->wide[i]) a->wide[w++] = a->wide[i];
        }
        a->nwide = w;
        for (Py_ssize_t i = 0; i < w; i++) a->wide_class[i] = nclasses++;
    }
    for (int c = 0; c < 128; c++) { /* text is folded on the fly: 'A' reads as 'a' */
        int f = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        a->ascii_class[c] = raw_ascii[f];
    }
    for (int c = 128; c < 256; c++) a->ascii_class[c] = a->nwide ? wide_lookup(a, (Py_UCS4)c) : 0;
    int64_t maxstates = (int64_t)total + 1;
    if (maxstates * nclasses > MAX_TABLE) {
        PyErr_SetString(PyExc_ValueError, "too many words for the automaton's table");
        return -1;
    }
    a->nclasses = nclasses;
    a->delta = PyMem_Malloc(sizeof(int32_t) * (size_t)(maxstates * nclasses));
    a->word = PyMem_Malloc(sizeof(int32_t) * (size_t)maxstates);
    a->out = PyMem_Malloc(sizeof(int32_t) * (size_t)maxstates);
    a->masks = PyMem_Calloc((size_t)nw + 1, sizeof(PyObject *));
    a->seen = PyMem_Calloc((size_t)nw + 1, sizeof(uint64_t));
    a->hit = PyMem_Malloc(sizeof(int32_t) * (size_t)maxstates);
    int32_t *fail = PyMem_Malloc(sizeof(int32_t) * (size_t)maxstates);
    int32_t *queue = PyMem_Malloc(sizeof(int32_t) * (size_t)maxstates);
    if (!a->delta || !a->word || !a->out || !a->hit || !a->masks || !a->seen || !fail || !queue) {
        PyMem_Free(fail);
        PyMem_Free(queue);
        PyErr_NoMemory();
        return -1;
    }
    for (int64_t i = 0; i < maxstates * nclasses; i++) a->delta[i] = -1;
    a->word[0] = -1;
    a->nstates = 1;
    /* the trie */
    pos = 0;
    while (PyDict_Next(words, &pos, &k, &v)) {
        int kind = PyUnicode_KIND(k);
        const void *data = PyUnicode_DATA(k);
        int32_t s = 0;
        for (Py_ssize_t i = 0, n = PyUnicode_GET_LENGTH(k); i < n; i++) {
            int32_t c = word_class(a, PyUnicode_READ(kind, data, a->mode == SUFFIX ? n - 1 - i : i), raw_ascii);
            int32_t *t = &a->delta[(int64_t)s * nclasses + c];
            if (*t < 0) {
                *t = a->nstates;
                a->word[a->nstates] = -1;
                a->nstates++;
            }
            s = *t;
        }
        if (a->word[s] < 0) { /* a dict has no duplicate keys; stay safe anyway */
            a->word[s] = (int32_t)a->nwords;
            Py_INCREF(v);
            a->masks[a->nwords++] = v;
        }
    }
    if (a->mode != CONTAINS) { /* a trie: a missing transition ends the walk */
        PyMem_Free(fail);
        PyMem_Free(queue);
        return 0;
    }
    /* failure links breadth first; missing transitions become those of the failure state */
    Py_ssize_t head = 0, tail = 0;
    fail[0] = 0;
    a->out[0] = -1;
    for (int32_t c = 0; c < nclasses; c++) {
        int32_t t = a->delta[c];
        if (t < 0) {
            a->delta[c] = 0;
        } else {
            fail[t] = 0;
            a->out[t] = a->word[0] >= 0 ? 0 : -1;
            queue[tail++] = t;
        }
    }
    while (head < tail) {
        int32_t s = queue[head++];
        int32_t *row = &a->delta[(int64_t)s * nclasses];
        const int32_t *frow = &a->delta[(int64_t)fail[s] * nclasses];
        for (int32_t c = 0; c < nclasses; c++) {
            int32_t t = row[c];
            if (t < 0) {
                row[c] = frow[c];
            } else {
                int32_t f = frow[c];
                fail[t] = f;
                a->out[t] = a->word[f] >= 0 ? f : a->out[f];
                queue[tail++] = t;
            }
        }
    }
    for (int32_t s = 0; s < a->nstates; s++) a->hit[s] = a->word[s] >= 0 ? s : a->out[s];
    PyMem_Free(fail);
    PyMem_Free(queue);
    return 0;
}

static PyObject *automaton_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"words", "mode", NULL};
    PyObject *words;
    int mode = CONTAINS;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!|i", kwlist, &PyDict_Type, &words, &mode)) return NULL;
    if (mode != CONTAINS && mode != PREFIX && mode != SUFFIX) {
        PyErr_SetString(PyExc_ValueError, "mode must be 0 (contains), 1 (prefix) or 2 (suffix)");
        return NULL;
    }
    Automaton *a = (Automaton *)type->tp_alloc(type, 0);
    if (!a) return NULL;
    a->mode = mode;
    if (automaton_build(a, words) < 0) {
        Py_DECREF(a);
        return NULL;
    }
    return (PyObject *)a;
}

/* OR the mask of word state t and of every word on its suffix chain into *acc, each word once
 * per scan: a chain walked once is walked to its end, so a word seen ends the walk. */
static inline int report(Automaton *a, int32_t t, PyObject **acc) {
    while (t >= 0) {
        int32_t w = a->word[t];
        if (a->seen[w] == a->epoch) return 0;
        a->seen[w] = a->epoch;
        if (or_into(acc, a->masks[w]) < 0) return -1;
        t = a->out[t];
    }
    return 0;
}

#define SCAN(TYPE)                                                                      \
    do {                                                                                \
        const TYPE *p = (const TYPE *)data;                                             \
        for (Py_ssize_t i = 0; i < n; i++) {                                            \
            st = delta[(int64_t)st * K + CLASS(p[i])];                                  \
            int32_t t = hit[st];                                                        \
            if (t >= 0 && a->seen[a->word[t]] != a->epoch && report(a, t, &acc) < 0) {  \
                Py_DECREF(acc);                                                         \
                return NULL;                                                            \
            }                                                                           \
        }                                                                               \
    } while (0)

/* PREFIX / SUFFIX: the OR of the masks of every word fold(text) starts / ends with: one walk of
 * the trie, at most as many steps as the longest word. */
static PyObject *anchored_scan(Automaton *a, PyObject *text) {
    PyObject *acc = Py_NewRef(ZERO);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text), back = a->mode == SUFFIX;
    const void *data = PyUnicode_DATA(text);
    int32_t st = 0;
    for (Py_ssize_t i = 0;; i++) {
        int32_t w = a->word[st];
        if (w >= 0 && or_into(&acc, a->masks[w]) < 0) {
            Py_DECREF(acc);
            return NULL;
        }
        if (i >= n) break;
        st = a->delta[(int64_t)st * a->nclasses + class_of(a, PyUnicode_READ(kind, data, back ? n - 1 - i : i))];
        if (st < 0) break;
    }
    return acc;
}

/* CONTAINS: the OR of the masks of every word occurring in fold(text); a new reference. */
static PyObject *automaton_scan(Automaton *a, PyObject *text) {
    if (a->mode != CONTAINS) return anchored_scan(a, text);
    PyObject *acc = Py_NewRef(ZERO);
    a->epoch++;
    if (a->word[0] >= 0 && report(a, 0, &acc) < 0) { /* the empty word occurs in every text */
        Py_DECREF(acc);
        return NULL;
    }
    const int32_t *delta = a->delta, *hit = a->hit, *cls = a->ascii_class;
    const int64_t K = a->nclasses;
    int32_t st = 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    const void *data = PyUnicode_DATA(text);
    switch (PyUnicode_KIND(text)) {
#define CLASS(c) cls[c] /* a 1-byte kind reads its class from the table alone */
    case PyUnicode_1BYTE_KIND: SCAN(Py_UCS1); break;
#undef CLASS
#define CLASS(c) class_of(a, c)
    case PyUnicode_2BYTE_KIND: SCAN(Py_UCS2); break;
    default: SCAN(Py_UCS4); break;
#undef CLASS
    }
    return acc;
}

static PyObject *automaton_mask(Automaton *a, PyObject *text) {
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "mask() takes a str");
        return NULL;
    }
    return automaton_scan(a, text);
}

static PyObject *automaton_states(Automaton *a, void *closure) {
    return PyLong_FromLong(a->nstates);
}

static PyMethodDef automaton_methods[] = {
    {"mask", (PyCFunction)automaton_mask, METH_O,
     "mask(s) -> int: the OR of the masks of every word occurring in (mode 0), starting (1) or ending (2) "
     "s, ASCII letters folded."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef automaton_getset[] = {
    {"states", (getter)automaton_states, NULL, "states of the automaton", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject AutomatonType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "podtrail.detect._multimatch.Automaton",
    .tp_basicsize = sizeof(Automaton),
    .tp_dealloc = (destructor)automaton_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Automaton(words: dict[str, int], mode=0): folded words, each with its mask; mode 0: "
              "Aho-Corasick (contains), 1: prefixes, 2: suffixes.",
    .tp_methods = automaton_methods,
    .tp_getset = automaton_getset,
    .tp_new = automaton_new,
};

/* ---- FieldMask ------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    int text;            /* the field's str values normalize to themselves (not a numeric field) */
    PyObject *eq;        /* dict folded value -> mask, or NULL */
    PyObject *pre;       /* Automaton (PREFIX) or NULL */
    PyObject *suf;       /* Automaton (SUFFIX) or NULL */
    PyObject *words;     /* Automaton or NULL */
    PyObject *memo;      /* dict raw value -> mask */
    PyObject *fallback;  /* callable(r) -> int, for every value this type does not handle */
    Py_ssize_t memo_size, memo_max_len;
} FieldMask;

static int fm_traverse(FieldMask *f, visitproc visit, void *arg) {
    Py_VISIT(f->eq);
    Py_VISIT(f->pre);
    Py_VISIT(f->suf);
    Py_VISIT(f->words);
    Py_VISIT(f->memo);
    Py_VISIT(f->fallback);
    return 0;
}

static int fm_clear(FieldMask *f) {
    Py_CLEAR(f->eq);
    Py_CLEAR(f->pre);
    Py_CLEAR(f->suf);
    Py_CLEAR(f->words);
    Py_CLEAR(f->memo);
    Py_CLEAR(f->fallback);
    return 0;
}

static void fm_dealloc(FieldMask *f) {
    PyObject_GC_UnTrack(f);
    fm_clear(f);
    Py_TYPE(f)->tp_free((PyObject *)f);
}

static PyObject *fm_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"text", "eq", "pre", "suf", "words", "memo", "memo_size", "memo_max_len", "fallback",
                             NULL};
    int text;
    PyObject *eq, *pre, *suf, *words, *memo, *fallback;
    Py_ssize_t memo_size, memo_max_len;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "pOOOOO!nnO", kwlist, &text, &eq, &pre, &suf, &words, &PyDict_Type,
                                     &memo, &memo_size, &memo_max_len, &fallback))
        return NULL;
    if (eq != Py_None && !PyDict_Check(eq)) {
        PyErr_SetString(PyExc_TypeError, "eq must be a dict or None");
        return NULL;
    }
    if ((words != Py_None && (!PyObject_TypeCheck(words, &AutomatonType) || ((Automaton *)words)->mode != CONTAINS)) ||
        (pre != Py_None && (!PyObject_TypeCheck(pre, &AutomatonType) || ((Automaton *)pre)->mode != PREFIX)) ||
        (suf != Py_None && (!PyObject_TypeCheck(suf, &AutomatonType) || ((Automaton *)suf)->mode != SUFFIX))) {
        PyErr_SetString(PyExc_TypeError, "words, pre and suf must be Automatons of mode 0, 1, 2 or None");
        return NULL;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return NULL;
    }
    FieldMask *f = (FieldMask *)type->tp_alloc(type, 0);
    if (!f) return NULL;
    f->text = text;
#define KEEP(field, obj) f->field = (obj == Py_None || (PyDict_Check(obj) && !PyDict_GET_SIZE(obj))) ? NULL \
                                                                                              : (Py_INCREF(obj), obj)
    KEEP(eq, eq);
    KEEP(pre, pre);
    KEEP(suf, suf);
    KEEP(words, words);
#undef KEEP
    Py_INCREF(memo);
    f->memo = memo;
    Py_INCREF(fallback);
    f->fallback = fallback;
    f->memo_size = memo_size;
    f->memo_max_len = memo_max_len;
    return (PyObject *)f;
}

/* fold(s) of predicate.py: ASCII letters lowered, every other code point kept; s itself when
 * nothing changes (equal, which is all the dict probes need). A new reference. */
static PyObject *fold(PyObject *s) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(s), i;
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    for (i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c >= 'A' && c <= 'Z') break;
    }
    if (i == n) {
        Py_INCREF(s);
        return s;
    }
    PyObject *out = PyUnicode_New(n, PyUnicode_MAX_CHAR_VALUE(s));
    if (!out) return NULL;
    void *od = PyUnicode_DATA(out);
    memcpy(od, data, (size_t)n * (size_t)kind);
    for (; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c >= 'A' && c <= 'Z') PyUnicode_WRITE(kind, od, i, c + 32);
    }
    return out;
}

static int or_probe(PyObject **acc, PyObject *table, PyObject *key) {
    PyObject *m = PyDict_GetItemWithError(table, key);
    if (!m) return PyErr_Occurred() ? -1 : 0;
    return or_into(acc, m);
}

static int or_walk(PyObject **acc, PyObject *trie, PyObject *text) {
    PyObject *m = anchored_scan((Automaton *)trie, text);
    if (!m) return -1;
    int e = or_into(acc, m);
    Py_DECREF(m);
    return e;
}

/* _mask of codegen for a non-empty str of a text field. A new reference. */
static PyObject *fm_text_mask(FieldMask *f, PyObject *r) {
    PyObject *acc = f->words ? automaton_scan((Automaton *)f->words, r) : Py_NewRef(ZERO);
    if (!acc) return NULL;
    if ((f->pre && or_walk(&acc, f->pre, r) < 0) || (f->suf && or_walk(&acc, f->suf, r) < 0)) goto fail_acc;
    if (!f->eq) return acc;
    PyObject *s = fold(r);
    if (!s) goto fail_acc;
    int e = or_probe(&acc, f->eq, s);
    Py_DECREF(s);
    if (e < 0) goto fail_acc;
    return acc;
fail_acc:
    Py_DECREF(acc);
    return NULL;
}

/* fm(r): the mask of value r (not None). A new reference. */
static PyObject *fm_mask(FieldMask *f, PyObject *r) {
    int str = PyUnicode_CheckExact(r);
    if (!str && !PyLong_CheckExact(r)) return PyObject_CallOneArg(f->fallback, r);
    PyObject *m = PyDict_GetItemWithError(f->memo, r); /* exact str and int values are remembered */
    if (m) {
        Py_INCREF(m);
        return m;
    }
    if (PyErr_Occurred()) return NULL;
    if (!str || !f->text) return PyObject_CallOneArg(f->fallback, r); /* it remembers what it computes */
    Py_ssize_t n = PyUnicode_GET_LENGTH(r);
    if (!n) return PyLong_FromLong(0); /* an empty string is absent */
    m = fm_text_mask(f, r);
    if (!m) return NULL;
    if (n <= f->memo_max_len) {
        if (PyDict_GET_SIZE(f->memo) >= f->memo_size) PyDict_Clear(f->memo);
        if (PyDict_SetItem(f->memo, r, m) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}

static PyObject *fm_call(FieldMask *f, PyObject *args, PyObject *kwds) {
    PyObject *r;
    if (kwds && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "FieldMask takes one value");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "FieldMask", 1, 1, &r)) return NULL;
    if (r == Py_None) return PyLong_FromLong(0);
    return fm_mask(f, r);
}

static PyTypeObject FieldMaskType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "podtrail.detect._multimatch.FieldMask",
    .tp_basicsize = sizeof(FieldMask),
    .tp_dealloc = (destructor)fm_dealloc,
    .tp_call = (ternaryfunc)fm_call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "FieldMask(text, eq, pre, suf, words, memo, memo_size, memo_max_len, fallback): "
              "fm(value) is the anchor mask of one field's value (codegen._memo).",
    .tp_traverse = (traverseproc)fm_traverse,
    .tp_clear = (inquiry)fm_clear,
    .tp_new = fm_new,
};

/* ---- Prefilter ------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *always; /* int */
    PyObject *fields; /* tuple of (name, FieldMask or callable) */
} Prefilter;

static int pf_traverse(Prefilter *p, visitproc visit, void *arg) {
    Py_VISIT(p->always);
    Py_VISIT(p->fields);
    return 0;
}

static int pf_clear(Prefilter *p) {
    Py_CLEAR(p->always);
    Py_CLEAR(p->fields);
    return 0;
}

static void pf_dealloc(Prefilter *p) {
    PyObject_GC_UnTrack(p);
    pf_clear(p);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static PyObject *pf_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"always", "fields", NULL};
    PyObject *always, *fields;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!", kwlist, &PyLong_Type, &always, &PyTuple_Type, &fields))
        return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(fields); i++) {
        PyObject *it = PyTuple_GET_ITEM(fields, i);
        if (!PyTuple_Check(it) || PyTuple_GET_SIZE(it) != 2 || !PyUnicode_CheckExact(PyTuple_GET_ITEM(it, 0)) ||
            !PyCallable_Check(PyTuple_GET_ITEM(it, 1))) {
            PyErr_SetString(PyExc_TypeError, "fields must be a tuple of (name, callable)");
            return NULL;
        }
    }
    Prefilter *p = (Prefilter *)type->tp_alloc(type, 0);
    if (!p) return NULL;
    Py_INCREF(always);
    p->always = always;
    Py_INCREF(fields);
    p->fields = fields;
    return (PyObject *)p;
}

static PyObject *pf_call(Prefilter *p, PyObject *args, PyObject *kwds) {
    PyObject *ev;
    if (kwds && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "Prefilter takes one event");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "Prefilter", 1, 1, &ev)) return NULL;
    if (!PyDict_Check(ev)) {
        PyErr_SetString(PyExc_TypeError, "an event is a dict");
        return NULL;
    }
    PyObject *acc = p->always;
    Py_INCREF(acc);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(p->fields); i++) {
        PyObject *it = PyTuple_GET_ITEM(p->fields, i);
        PyObject *r = PyDict_GetItemWithError(ev, PyTuple_GET_ITEM(it, 0));
        if (!r) {
            if (PyErr_Occurred()) goto fail;
            continue;
        }
        if (r == Py_None) continue;
        Py_INCREF(r); /* the fallback may run Python code that changes the event */
        PyObject *fn = PyTuple_GET_ITEM(it, 1);
        PyObject *m = Py_IS_TYPE(fn, &FieldMaskType) ? fm_mask((FieldMask *)fn, r) : PyObject_CallOneArg(fn, r);
        Py_DECREF(r);
        if (!m) goto fail;
        int e = or_into(&acc, m);
        Py_DECREF(m);
        if (e < 0) goto fail;
    }
    return acc;
fail:
    Py_DECREF(acc);
    return NULL;
}

static PyMemberDef pf_members[] = {
    {"fields", T_OBJECT_EX, offsetof(Prefilter, fields), READONLY, "(name, FieldMask or callable) per field"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject PrefilterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "podtrail.detect._multimatch.Prefilter",
    .tp_basicsize = sizeof(Prefilter),
    .tp_dealloc = (destructor)pf_dealloc,
    .tp_call = (ternaryfunc)pf_call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Prefilter(always, fields): p(ev) is always | the mask of each field's value that is not None.",
    .tp_traverse = (traverseproc)pf_traverse,
    .tp_clear = (inquiry)pf_clear,
    .tp_members = pf_members,
    .tp_new = pf_new,
};

/* ---- module --------------------------------------------------------------------------------- */

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "podtrail.detect._multimatch",
    "Anchor masks of field values for the generated Sigma rule functions (reference: codegen._memo).", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__multimatch(void) {
    if (!ZERO && !(ZERO = PyLong_FromLong(0))) return NULL;
    if (PyType_Ready(&AutomatonType) < 0 || PyType_Ready(&FieldMaskType) < 0 || PyType_Ready(&PrefilterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Automaton", (PyObject *)&AutomatonType) < 0 ||
        PyModule_AddObjectRef(m, "FieldMask", (PyObject *)&FieldMaskType) < 0 ||
        PyModule_AddObjectRef(m, "Prefilter", (PyObject *)&PrefilterType) < 0 ||
        PyModule_AddIntConstant(m, "MAX_TABLE", MAX_TABLE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
