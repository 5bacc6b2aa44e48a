/* podtrail.tables._compact: the osquery event buffers' batch compaction in C.
 *
 * Why: compacting each event into the record the tables keep cost ~6 us per event in the real
 * agent, all interpreter overhead (a handful of lookups, type checks, an id parse and a tuple).
 * The reference is the pure-Python loop of podtrail/tables/buffer.py: ``EventBuffers._compact``
 * (the family lookup and the loop over the proven layouts) and ``_Fast.record`` (one layout's
 * record). This does the very same, in the same order, with the same objects: an event no
 * proven layout takes goes to the Python general path (the ``general`` callback), and a case
 * whose outcome rests on Python-level behaviour of odd objects (a type whose metaclass
 * redefines ==) is handed to the Python ``_Fast.record`` of that layout. Exceptions the Python
 * loop would let through are let through here too.
 *
 * What it does beyond the reference, none of it visible in a record: it reads an event's values
 * where the same names sat in the last event's dict (checked by key identity, see fetch), it
 * remembers the families of the batch by identity (see Fam), and its records are not tracked
 * by the cycle collector (they cannot be in a cycle; full tables hold 150k of them). Reading by
 * position skips hash lookups, so a key object with a user-defined __eq__ colliding with a
 * field name's hash would see fewer calls than under Python; nothing else differs.
 *
 * Only the CPython C API and libc.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <structmember.h>

/* set once by setup() */
static PyObject *EventDictType;  /* podtrail.model.context.EventDict */
static PyObject *IdHead;         /* RUN_PREFIX + "-" */
static PyObject *FromNs;         /* buffer._FROM_NS */
static PyObject *ArgvType;       /* buffer._Argv */
static int ArgvUntrack;          /* its instances can leave the cycle collector (see keep) */
static PyObject *CompactId;      /* buffer._compact_id */
static PyObject *ConstNames;     /* buffer._CONST */
static PyObject *CatchFamily;    /* (AttributeError, KeyError, TypeError) */
static PyObject *StrCtx;         /* "_ctx" */
static PyObject *StrRecord;      /* "record" */
static Py_ssize_t CtxOffset = -1; /* where EventDict keeps its _ctx slot */
#define MAXC 8
static Py_ssize_t ConstHints[MAXC];
static Py_ssize_t ConstMisses;

enum { HOW_KEEP = 0, HOW_ID = 1, HOW_ARGS = 2, HOW_POOLED = 3 };

/* ------------------------------------------------------------------------------------------ */
/* Layout: a _Fast's numbers, for C                                                          */

typedef struct {
    PyObject_HEAD
    PyObject *names;   /* tuple of keys, _Fast.names_of(shape) */
    PyObject *types;   /* tuple of types, same length */
    PyObject *shape;
    PyObject *put;     /* its kind's records' append */
    PyObject *pyfast;  /* the Python _Fast (for the odd cases) */
    Py_ssize_t pid_at; /* index of pid in the values (tid at 4), or -1: tid not compared */
    Py_ssize_t rep_a, rep_b, pool_b, pool_d, others_at;
    int has_rep, mode;
    Py_ssize_t n_how;
    unsigned char *how; /* codes for the values from others_at on (modes 2 and 3) */
    Py_ssize_t *hints;  /* where each name sat in the dict's entries the last time (see fetch) */
    Py_ssize_t misses;
} Layout;

static void
Layout_dealloc(Layout *self)
{
    Py_XDECREF(self->names);
    Py_XDECREF(self->types);
    Py_XDECREF(self->shape);
    Py_XDECREF(self->put);
    Py_XDECREF(self->pyfast);
    PyMem_Free(self->how);
    PyMem_Free(self->hints);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Layout_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *names, *types, *shape, *put, *pyfast, *how;
    Py_ssize_t pid_at, rep_a, rep_b, pool_b, pool_d, others_at;
    int has_rep, mode;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "Layout takes positional arguments only");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O!O!OOOnnnnnnpiO!:Layout", &PyTuple_Type, &names, &PyTuple_Type, &types, &shape,
                          &put, &pyfast, &pid_at, &rep_a, &rep_b, &pool_b, &pool_d, &others_at, &has_rep, &mode,
                          &PyTuple_Type, &how))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    if (PyTuple_GET_SIZE(types) != n || n < 4 || pid_at >= n || (pid_at >= 0 && n < 6) || rep_a < 0 || rep_a > rep_b ||
        rep_b > n || pool_b < 0 || pool_b > pool_d || pool_d > n || others_at < 0 || others_at > n || mode < 0 ||
        mode > 3 || PyTuple_GET_SIZE(how) != n - others_at ||
        others_at != (mode == 3 ? pool_b : mode == 2 ? pool_d : n) || (mode == 0 && pool_d != n)) {
        PyErr_SetString(PyExc_ValueError, "Layout: inconsistent layout");
        return NULL;
    }
    if (PyTuple_GET_ITEM(types, 0) != (PyObject *)&PyLong_Type || PyTuple_GET_ITEM(types, 1) != (PyObject *)&PyLong_Type ||
        PyTuple_GET_ITEM(types, 2) != (PyObject *)&PyUnicode_Type || PyTuple_GET_ITEM(types, 3) != (PyObject *)&PyLong_Type) {
        PyErr_SetString(PyExc_TypeError, "Layout: time_ns, mono_ns, event_id, time must be int, int, str, int");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyType_Check(PyTuple_GET_ITEM(types, i)) || !PyUnicode_CheckExact(PyTuple_GET_ITEM(names, i))) {
            PyErr_SetString(PyExc_TypeError, "Layout: names must be str and types types");
            return NULL;
        }
    }
    Layout *self = (Layout *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->how = PyMem_Malloc(PyTuple_GET_SIZE(how) + 1);
    self->hints = PyMem_Malloc(n * sizeof(Py_ssize_t));
    if (self->how == NULL || self->hints == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->n_how = PyTuple_GET_SIZE(how);
    for (Py_ssize_t i = 0; i < n; i++)
        self->hints[i] = -1;
    self->misses = 0;
    for (Py_ssize_t i = 0; i < self->n_how; i++) {
        long c = PyLong_AsLong(PyTuple_GET_ITEM(how, i));
        if (c < HOW_KEEP || c > HOW_POOLED) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "Layout: unknown how code");
            Py_DECREF(self);
            return NULL;
        }
        self->how[i] = (unsigned char)c;
    }
    Py_INCREF(names);
    self->names = names;
    Py_INCREF(types);
    self->types = types;
    Py_INCREF(shape);
    self->shape = shape;
    Py_INCREF(put);
    self->put = put;
    Py_INCREF(pyfast);
    self->pyfast = pyfast;
    self->pid_at = pid_at;
    self->rep_a = rep_a;
    self->rep_b = rep_b;
    self->pool_b = pool_b;
    self->pool_d = pool_d;
    self->others_at = others_at;
    self->has_rep = has_rep;
    self->mode = mode;
    return (PyObject *)self;
}

static PyMemberDef Layout_members[] = {
    {"misses", T_PYSSIZET, offsetof(Layout, misses), READONLY, "events whose names were not where the hints said"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject LayoutType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "podtrail.tables._compact.Layout",
    .tp_basicsize = sizeof(Layout),
    .tp_dealloc = (destructor)Layout_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A proven layout's numbers (see buffer._Fast), for compact().",
    .tp_new = Layout_new,
    .tp_members = Layout_members,
};

/* ------------------------------------------------------------------------------------------ */
/* helpers                                                                                    */

/* ev[key] as a new reference; NULL with an error set (KeyError when missing) */
static PyObject *
get_item(PyObject *ev, int exact, PyObject *key)
{
    if (exact) {  /* an EventDict: a dict without __missing__ or __getitem__ of its own */
        PyObject *v = PyDict_GetItemWithError(ev, key);
        if (v == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetObject(PyExc_KeyError, key);
            return NULL;
        }
        Py_INCREF(v);
        return v;
    }
    return PyObject_GetItem(ev, key);
}

/* sys.intern(v) for an exact str: a new reference */
static PyObject *
interned(PyObject *v)
{
    Py_INCREF(v);
    PyUnicode_InternInPlace(&v);
    return v;
}

/* pool.setdefault(v, v): a new reference */
static PyObject *
pooled(PyObject *pool, PyObject *v)
{
    PyObject *r = PyDict_SetDefault(pool, v, v);
    Py_XINCREF(r);
    return r;
}

/* buffer._keep(v, how) for the codes KEEP, ID and ARGS: a new reference */
static PyObject *
keep(PyObject *v, int how)
{
    if (how == HOW_ID)
        return PyObject_CallOneArg(CompactId, v);
    if (how == HOW_ARGS && PyList_CheckExact(v) && PyList_GET_SIZE(v) > 0) {
        /* _Argv when every argument is exactly a str without a NUL (Python: the join works, it
           has exactly len - 1 NULs and the set of types is {str}) */
        Py_ssize_t n = PyList_GET_SIZE(v);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *a = PyList_GET_ITEM(v, i);
            if (!PyUnicode_CheckExact(a)) {
                Py_INCREF(v);
                return v;
            }
            Py_ssize_t at = PyUnicode_FindChar(a, 0, 0, PyUnicode_GET_LENGTH(a), 1);
            if (at == -2)
                return NULL;
            if (at != -1) {
                Py_INCREF(v);
                return v;
            }
        }
        PyObject *sep = PyUnicode_FromOrdinal(0);
        if (sep == NULL)
            return NULL;
        PyObject *j = PyUnicode_Join(sep, v);
        Py_DECREF(sep);
        if (j == NULL)
            return NULL;
        PyObject *r = PyObject_CallOneArg(ArgvType, j);
        Py_DECREF(j);
        /* An _Argv refers to nothing but its class (a str subclass with no __dict__): it is in
           no cycle, and the records keep one per exec for as long as its event is buffered. */
        if (r != NULL && ArgvUntrack && Py_IS_TYPE(r, (PyTypeObject *)ArgvType))
            PyObject_GC_UnTrack(r);
        return r;
    }
    Py_INCREF(v);
    return v;
}

/* buffer._pool(v, _POOLED, pool): a new reference */
static PyObject *
pool_one(PyObject *pool, PyObject *v)
{
    if (PyUnicode_CheckExact(v))
        return interned(v);
    if (PyLong_CheckExact(v))
        return pooled(pool, v);
    Py_INCREF(v);
    return v;
}

/* buffer._shared(rv, pool) */
static PyObject *
shared(PyObject *rv, PyObject *pool)
{
    Py_ssize_t n = PyTuple_GET_SIZE(rv);
    PyObject *t = PyTuple_New(n);
    if (t == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyTuple_GET_ITEM(rv, i), *r;
        if (PyUnicode_CheckExact(v))
            r = interned(v);
        else if (PyLong_CheckExact(v))
            r = pooled(pool, v);
        else {
            Py_INCREF(v);
            r = v;
        }
        if (r == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, r);
    }
    return t;
}

/* The event id's counter when ``eid`` (an exact str) is exactly what f"{_ID_HEAD}{seq:x}"
   makes of a counter in 0..2**64-1: 1, *seq set; 0 otherwise. */
static int
canonical_id(PyObject *eid, uint64_t *seq)
{
    Py_ssize_t h = PyUnicode_GET_LENGTH(IdHead), n = PyUnicode_GET_LENGTH(eid) - h;
    if (n < 1 || n > 16)
        return 0;
    if (PyUnicode_Tailmatch(eid, IdHead, 0, h, -1) != 1) {
        PyErr_Clear();  /* cannot fail for two str; stay safe */
        return 0;
    }
    int kind = PyUnicode_KIND(eid);
    const void *data = PyUnicode_DATA(eid);
    uint64_t s = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, h + i);
        unsigned d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return 0;
        if (i == 0 && d == 0 && n > 1)
            return 0;  /* a leading zero: never what formatting makes */
        s = (s << 4) | d;
    }
    *seq = s;
    return 1;
}

/* ``a != b`` as Python's ``if`` sees it: 1 true, 0 false, -1 error */
static int
not_equal(PyObject *a, PyObject *b)
{
    if (PyLong_CheckExact(a) && PyLong_CheckExact(b))
        return PyObject_RichCompareBool(a, b, Py_NE);  /* no identity shortcut matters for ints */
    PyObject *r = PyObject_RichCompare(a, b, Py_NE);
    if (r == NULL)
        return -1;
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

/* (t_ns << 128) | (mono << 64) | seq */
static PyObject *
packed_first(PyObject *t_ns, uint64_t mono, uint64_t seq)
{
    int over = 0;
    long long t = PyLong_AsLongLongAndOverflow(t_ns, &over);
    if (t == -1 && PyErr_Occurred())
        return NULL;
    if (!over) {
        unsigned char b[24];
        uint64_t ut = (uint64_t)t;
        for (int i = 0; i < 8; i++) {
            b[i] = (unsigned char)(seq >> (8 * i));
            b[8 + i] = (unsigned char)(mono >> (8 * i));
            b[16 + i] = (unsigned char)(ut >> (8 * i));
        }
        return _PyLong_FromByteArray(b, 24, 1, 1);
    }
    PyObject *k = NULL, *hi = NULL, *m = NULL, *s = NULL, *lo = NULL, *r = NULL;
    if ((k = PyLong_FromLong(128)) == NULL || (hi = PyNumber_Lshift(t_ns, k)) == NULL)
        goto done;
    if ((m = PyLong_FromUnsignedLongLong(mono)) == NULL || (s = PyLong_FromUnsignedLongLong(seq)) == NULL)
        goto done;
    Py_DECREF(k);
    if ((k = PyLong_FromLong(64)) == NULL || (lo = PyNumber_Lshift(m, k)) == NULL)
        goto done;
    Py_DECREF(m);
    if ((m = PyNumber_Or(hi, lo)) == NULL)
        goto done;
    r = PyNumber_Or(m, s);
done:
    Py_XDECREF(k);
    Py_XDECREF(hi);
    Py_XDECREF(m);
    Py_XDECREF(s);
    Py_XDECREF(lo);
    return r;
}

/* t_s == t_ns // 1_000_000_000 for exact ints: 1, 0, -1 error */
static int
time_matches(PyObject *t_s, PyObject *t_ns)
{
    int o1 = 0, o2 = 0;
    long long s = PyLong_AsLongLongAndOverflow(t_s, &o1);
    if (s == -1 && PyErr_Occurred())
        return -1;
    long long ns = PyLong_AsLongLongAndOverflow(t_ns, &o2);
    if (ns == -1 && PyErr_Occurred())
        return -1;
    if (!o1 && !o2) {
        long long q = ns / 1000000000LL;
        if (ns % 1000000000LL != 0 && ns < 0)
            q -= 1;  /* floor, as Python's // */
        return q == s;
    }
    PyObject *g = PyLong_FromLong(1000000000L);
    if (g == NULL)
        return -1;
    PyObject *q = PyNumber_FloorDivide(t_ns, g);
    Py_DECREF(g);
    if (q == NULL)
        return -1;
    int r = PyObject_RichCompareBool(t_s, q, Py_EQ);
    Py_DECREF(q);
    return r;
}

/* ev._ctx[1:] as a tuple */
static PyObject *
entities(PyObject *ctx)
{
    if (PyTuple_CheckExact(ctx))
        return PyTuple_GetSlice(ctx, 1, PY_SSIZE_T_MAX);
    PyObject *s = PySequence_GetSlice(ctx, 1, PY_SSIZE_T_MAX);
    if (s == NULL)
        return NULL;
    PyObject *t = PySequence_Tuple(s);
    Py_DECREF(s);
    return t;
}

/* ------------------------------------------------------------------------------------------ */
/* reading an event's values                                                                  */

/* The values of ``names`` (exact str) into vals[] as new references, in order, as itemgetter
 * reads them: the count read; fewer than all with an error set (KeyError when one is missing).
 * For an EventDict, first where the name sat the last time (``hints``: its index in the
 * dict's entries, which PyDict_Next takes as its position): a key there that IS the name (the
 * same object) holds ev[name], since a dict's keys are unique; anything else (another order,
 * a deleted entry, a first event) is looked up by hash and *missed is set. */
static Py_ssize_t
fetch(PyObject *ev, int exact, PyObject *names, Py_ssize_t *hints, PyObject **vals, int *missed)
{
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i), *k, *v;
        if (exact) {
            Py_ssize_t pos = hints[i];
            if (pos >= 0 && PyDict_Next(ev, &pos, &k, &v) && k == name) {
                Py_INCREF(v);
                vals[i] = v;
                continue;
            }
            *missed = 1;
        }
        if ((vals[i] = get_item(ev, exact, name)) == NULL)
            return i;
    }
    return n;
}

/* where each of ``names`` sits in the entries of ``ev`` (an EventDict), for fetch */
static void
relearn(PyObject *ev, PyObject *names, Py_ssize_t *hints)
{
    Py_ssize_t n = PyTuple_GET_SIZE(names), pos = 0;
    PyObject *k, *v;
    for (Py_ssize_t i = 0; i < n; i++)
        hints[i] = -1;
    while (PyDict_Next(ev, &pos, &k, &v))
        for (Py_ssize_t i = 0; i < n; i++)
            if (PyTuple_GET_ITEM(names, i) == k) {
                hints[i] = pos - 1;
                break;
            }
}

/* relearn after a miss: at once the first time, then every 32nd (an event stream in two orders
   must not pay a scan per event) */
static void
missed_once(PyObject *ev, PyObject *names, Py_ssize_t *hints, Py_ssize_t *misses)
{
    if (((*misses)++ & 31) == 0)
        relearn(ev, names, hints);
}

/* ------------------------------------------------------------------------------------------ */
/* one layout: _Fast.record                                                                   */

#define MAXV 256

/* 1 and *out = the record; 0: not this layout; -1: error. ``ctx`` is ev._ctx. */
static int
layout_record(Layout *L, PyObject *ev, int exact, PyObject *ctx, PyObject *pool, PyObject *combos, PyObject **out)
{
    Py_ssize_t n = PyTuple_GET_SIZE(L->names), got, i, nown = 0;
    PyObject *vals[MAXV], *own[MAXV];
    PyObject *first = NULL, *t_s = NULL, *rt = NULL, *ents = NULL;
    int ret = -1, odd = 0, missed = 0;
    if (n > MAXV) {  /* no proven layout has that many names; Python's record does it */
        got = 0;
        odd = 1;
        goto judge;
    }
    /* vals = self.get(ev): every value first (a KeyError: not this layout) */
    got = fetch(ev, exact, L->names, L->hints, vals, &missed);
    if (missed)
        missed_once(ev, L->names, L->hints, &L->misses);
    if (got < n) {
        if (PyErr_ExceptionMatches(PyExc_KeyError)) {
            PyErr_Clear();
            ret = 0;
        }
        goto done;
    }
    /* tuple(map(type, vals)) != self.types: identical types, or Python decides */
    for (i = 0; i < n; i++) {
        PyObject *t = (PyObject *)Py_TYPE(vals[i]), *want = PyTuple_GET_ITEM(L->types, i);
        if (t == want)
            continue;
        int eq = PyObject_RichCompareBool(t, want, Py_EQ);
        if (eq < 0)
            goto done;
        if (eq) {  /* a type equal to another: let Python's record judge the whole event */
            odd = 1;
            break;
        }
        PyObject *ne = PyObject_RichCompare(t, want, Py_NE);
        if (ne == NULL)
            goto done;
        int truth = PyObject_IsTrue(ne);
        Py_DECREF(ne);
        if (truth < 0)
            goto done;
        if (truth) {
            ret = 0;  /* not this layout (the usual case) */
            goto done;
        }
        odd = 1;
        break;
    }
judge:
    if (odd) {
        PyObject *r = PyObject_CallMethodObjArgs(L->pyfast, StrRecord, ev, pool, combos, NULL);
        if (r == NULL)
            goto done;
        if (r == Py_None) {
            Py_DECREF(r);
            ret = 0;
        } else {
            *out = r;
            ret = 1;
        }
        goto done;
    }
    /* the fixed values: time_ns, mono_ns, event_id, time (int, int, str, int: Layout checks) */
    PyObject *t_ns = vals[0], *mono = vals[1], *eid = vals[2], *ts = vals[3];
    uint64_t seq = 0, umono = 0;
    int canon = canonical_id(eid, &seq);
    if (!canon) {  /* would int(tail, 16) raise ValueError? then Python returns None before tid != pid */
        PyObject *tail = PyUnicode_Substring(eid, PyUnicode_GET_LENGTH(IdHead), PY_SSIZE_T_MAX);
        if (tail == NULL)
            goto done;
        PyObject *num = PyLong_FromUnicodeObject(tail, 16);
        Py_DECREF(tail);
        if (num == NULL) {
            if (PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                ret = 0;
            }
            goto done;
        }
        Py_DECREF(num);
    }
    if (L->pid_at >= 0) {
        int ne = not_equal(vals[4], vals[L->pid_at]);
        if (ne < 0)
            goto done;
        if (ne) {
            ret = 0;
            goto done;
        }
    }
    if (!canon) {
        ret = 0;
        goto done;
    }
    umono = PyLong_AsUnsignedLongLong(mono);
    if (umono == (uint64_t)-1 && PyErr_Occurred()) {  /* negative, or 2**64 and over */
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            goto done;
        PyErr_Clear();
        ret = 0;
        goto done;
    }
    /* the record's own values, in Python's order (pooling has effects: which object stays) */
    Py_ssize_t b = L->pool_b, d = L->pool_d, o = L->others_at;
    if (L->mode == 3) {
        for (i = b; i < n; i++) {
            int how = L->how[i - o];
            PyObject *r = how == HOW_POOLED ? pool_one(pool, vals[i]) : keep(vals[i], how);
            if (r == NULL)
                goto done;
            own[nown++] = r;
        }
    } else {
        for (i = b; i < d; i++) {
            PyObject *r = pooled(pool, vals[i]);
            if (r == NULL)
                goto done;
            own[nown++] = r;
        }
        if (L->mode)
            for (i = d; i < n; i++) {
                PyObject *r;
                if (L->mode == 2)
                    r = keep(vals[i], L->how[i - o]);
                else {
                    Py_INCREF(vals[i]);
                    r = vals[i];
                }
                if (r == NULL)
                    goto done;
                own[nown++] = r;
            }
    }
    int same = time_matches(ts, t_ns);
    if (same < 0)
        goto done;
    if (same) {
        Py_INCREF(FromNs);
        t_s = FromNs;
    } else if ((t_s = pooled(pool, ts)) == NULL)
        goto done;
    if ((first = packed_first(t_ns, umono, seq)) == NULL)
        goto done;
    if (PyTuple_CheckExact(ctx)) {
        Py_INCREF(ctx);
        ents = ctx;  /* its items from 1 on */
    } else if ((ents = entities(ctx)) == NULL)
        goto done;
    Py_ssize_t e0 = ents == ctx ? 1 : 0, ne_ = PyTuple_GET_SIZE(ents) - e0;
    if (L->has_rep) {
        PyObject *rv = PyTuple_New(L->rep_b - L->rep_a);
        if (rv == NULL)
            goto done;
        for (i = L->rep_a; i < L->rep_b; i++) {
            Py_INCREF(vals[i]);
            PyTuple_SET_ITEM(rv, i - L->rep_a, vals[i]);
        }
        rt = PyDict_GetItemWithError(combos, rv);
        if (rt != NULL)
            Py_INCREF(rt);
        else if (!PyErr_Occurred()) {
            rt = shared(rv, pool);
            if (rt != NULL && PyDict_SetItem(combos, rv, rt) < 0)
                Py_CLEAR(rt);
        }
        Py_DECREF(rv);
        if (rt == NULL)
            goto done;
    }
    /* (first, t_s, shape, *ents, [rt,] *own) */
    PyObject *rec = PyTuple_New(3 + ne_ + (rt ? 1 : 0) + nown);
    if (rec == NULL)
        goto done;
    Py_ssize_t k = 0;
    PyTuple_SET_ITEM(rec, k++, first);
    first = NULL;
    PyTuple_SET_ITEM(rec, k++, t_s);
    t_s = NULL;
    Py_INCREF(L->shape);
    PyTuple_SET_ITEM(rec, k++, L->shape);
    for (i = 0; i < ne_; i++) {
        PyObject *e = PyTuple_GET_ITEM(ents, e0 + i);
        Py_INCREF(e);
        PyTuple_SET_ITEM(rec, k++, e);
    }
    if (rt) {
        PyTuple_SET_ITEM(rec, k++, rt);
        rt = NULL;
    }
    for (i = 0; i < nown; i++)
        PyTuple_SET_ITEM(rec, k++, own[i]);
    nown = 0;  /* moved */
    /* A record is in no reference cycle (an immutable tuple of values that existed before it,
       reachable only from its kind's deque): the cycle collector need not walk it, and the
       150k records of full tables would otherwise make every full collection walk them all. */
    PyObject_GC_UnTrack(rec);
    *out = rec;
    ret = 1;
done:
    for (i = 0; i < got; i++)
        Py_DECREF(vals[i]);
    for (i = 0; i < nown; i++)
        Py_DECREF(own[i]);
    Py_XDECREF(first);
    Py_XDECREF(t_s);
    Py_XDECREF(rt);
    Py_XDECREF(ents);
    return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* the batch: EventBuffers._compact's loop                                                    */

/* The families seen in this batch, by identity: an event whose (ctx[0], len(ctx), len(ev),
 * *constants) are the very objects (and numbers) of one looked up before finds the same
 * entry of ``cfast``, as long as nothing changed ``cfast`` since (only the general path does:
 * the cache is emptied before each call of it). Holds its references. */
#define FAMS 8
typedef struct {
    PyObject *c0, *cv[MAXC], *cands;
    Py_ssize_t nc, nev;
} Fam;

typedef struct {
    Fam f[FAMS];
    int used, next;
} Fams;

static void
fams_clear(Fams *fs)
{
    Py_ssize_t m = PyTuple_GET_SIZE(ConstNames);
    for (int i = 0; i < fs->used; i++) {
        Py_DECREF(fs->f[i].c0);
        for (Py_ssize_t j = 0; j < m; j++)
            Py_DECREF(fs->f[i].cv[j]);
        Py_DECREF(fs->f[i].cands);
    }
    fs->used = fs->next = 0;
}

static void
fams_put(Fams *fs, PyObject *c0, Py_ssize_t nc, Py_ssize_t nev, PyObject **cv, PyObject *cands)
{
    Py_ssize_t m = PyTuple_GET_SIZE(ConstNames);
    int at;
    if (fs->used < FAMS)
        at = fs->used++;
    else {
        at = fs->next;
        fs->next = (fs->next + 1) % FAMS;
        Fam *old = &fs->f[at];
        Py_DECREF(old->c0);
        for (Py_ssize_t j = 0; j < m; j++)
            Py_DECREF(old->cv[j]);
        Py_DECREF(old->cands);
    }
    Fam *f = &fs->f[at];
    Py_INCREF(c0);
    f->c0 = c0;
    for (Py_ssize_t j = 0; j < m; j++) {
        Py_INCREF(cv[j]);
        f->cv[j] = cv[j];
    }
    Py_INCREF(cands);
    f->cands = cands;
    f->nc = nc;
    f->nev = nev;
}

/* fast[(ctx[0], len(ctx), len(ev), _const_of(ev))] as a new reference; NULL with an error set
   (the caller decides which errors mean "no family") */
static PyObject *
family(PyObject *ev, int exact, PyObject *ctx, PyObject *cfast, Fams *fs)
{
    PyObject *c0, *cv[MAXC], *cands = NULL;
    Py_ssize_t nc, nev, m = PyTuple_GET_SIZE(ConstNames), got = 0;
    if (PyTuple_CheckExact(ctx) && PyTuple_GET_SIZE(ctx) > 0) {
        c0 = PyTuple_GET_ITEM(ctx, 0);
        Py_INCREF(c0);
    } else {
        PyObject *zero = PyLong_FromLong(0);
        if (zero == NULL)
            return NULL;
        c0 = PyObject_GetItem(ctx, zero);
        Py_DECREF(zero);
        if (c0 == NULL)
            return NULL;
    }
    if ((nc = PyObject_Size(ctx)) < 0 || (nev = exact ? PyDict_GET_SIZE(ev) : PyObject_Size(ev)) < 0)
        goto done;
    int missed = 0;
    got = fetch(ev, exact, ConstNames, ConstHints, cv, &missed);
    if (missed)
        missed_once(ev, ConstNames, ConstHints, &ConstMisses);
    if (got < m)
        goto done;
    for (int i = 0; i < fs->used; i++) {
        Fam *f = &fs->f[i];
        if (f->c0 != c0 || f->nc != nc || f->nev != nev)
            continue;
        Py_ssize_t j = 0;
        while (j < m && f->cv[j] == cv[j])
            j++;
        if (j == m) {
            cands = f->cands;
            Py_INCREF(cands);
            goto done;
        }
    }
    PyObject *consts = PyTuple_New(m);
    if (consts == NULL)
        goto done;
    for (Py_ssize_t j = 0; j < m; j++) {
        Py_INCREF(cv[j]);
        PyTuple_SET_ITEM(consts, j, cv[j]);
    }
    PyObject *key = Py_BuildValue("(OnnN)", c0, nc, nev, consts);
    if (key == NULL)
        goto done;
    cands = PyDict_GetItemWithError(cfast, key);
    Py_DECREF(key);
    if (cands == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetNone(PyExc_KeyError);  /* caught by the caller, as Python's except KeyError */
        goto done;
    }
    Py_INCREF(cands);
    fams_put(fs, c0, nc, nev, cv, cands);
done:
    Py_DECREF(c0);
    for (Py_ssize_t j = 0; j < got; j++)
        Py_DECREF(cv[j]);
    return cands;
}

/* ev._ctx as a new reference, NULL with an error set */
static PyObject *
context(PyObject *ev, int exact)
{
    if (exact && CtxOffset >= 0) {  /* the slot, as its descriptor reads it */
        PyObject *c = *(PyObject **)((char *)ev + CtxOffset);
        if (c == NULL) {
            PyErr_SetObject(PyExc_AttributeError, StrCtx);
            return NULL;
        }
        Py_INCREF(c);
        return c;
    }
    return PyObject_GetAttr(ev, StrCtx);
}

static int
one_event(PyObject *ev, PyObject *cfast, PyObject *pool, PyObject *combos, PyObject *general, Fams *fs)
{
    int exact = (PyObject *)Py_TYPE(ev) == EventDictType;
    PyObject *cands = NULL;
    PyObject *ctx = context(ev, exact);
    if (ctx != NULL)
        cands = family(ev, exact, ctx, cfast, fs);
    if (cands == NULL) {
        if (!PyErr_ExceptionMatches(CatchFamily)) {
            Py_XDECREF(ctx);
            return -1;
        }
        PyErr_Clear();
    }
    if (cands != NULL && PyList_CheckExact(cands)) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(cands); i++) {
            PyObject *L = PyList_GET_ITEM(cands, i), *rec = NULL;
            if (!PyObject_TypeCheck(L, &LayoutType))
                continue;
            Py_INCREF(L);
            int r = layout_record((Layout *)L, ev, exact, ctx, pool, combos, &rec);
            if (r > 0) {
                PyObject *ok = PyObject_CallOneArg(((Layout *)L)->put, rec);
                Py_DECREF(rec);
                Py_DECREF(L);
                Py_DECREF(cands);
                Py_DECREF(ctx);
                if (ok == NULL)
                    return -1;
                Py_DECREF(ok);
                return 0;
            }
            Py_DECREF(L);
            if (r < 0) {
                Py_DECREF(cands);
                Py_DECREF(ctx);
                return -1;
            }
        }
    }
    Py_XDECREF(cands);
    Py_XDECREF(ctx);
    fams_clear(fs);  /* the general path may change cfast */
    PyObject *ok = PyObject_CallOneArg(general, ev);
    if (ok == NULL)
        return -1;
    Py_DECREF(ok);
    return 0;
}

static PyObject *
compact(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "compact(pending, cfast, pool, combos, general)");
        return NULL;
    }
    PyObject *pending = args[0], *cfast = args[1], *pool = args[2], *combos = args[3], *general = args[4];
    if (!PyDict_Check(cfast) || !PyDict_Check(pool) || !PyDict_Check(combos)) {
        PyErr_SetString(PyExc_TypeError, "compact: cfast, pool and combos must be dicts");
        return NULL;
    }
    if (EventDictType == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "compact: setup() was not called");
        return NULL;
    }
    Py_ssize_t n = PyObject_Size(pending);
    if (n < 0)
        return NULL;
    PyObject *popleft = PyObject_GetAttrString(pending, "popleft");
    if (popleft == NULL)
        return NULL;
    Fams fs;
    fs.used = fs.next = 0;
    for (Py_ssize_t i = 0; i < n; i++) {  /* only those there now: later submits wait */
        PyObject *ev = PyObject_CallNoArgs(popleft);
        if (ev == NULL)
            goto fail;
        int r = one_event(ev, cfast, pool, combos, general, &fs);
        Py_DECREF(ev);
        if (r < 0)
            goto fail;
    }
    fams_clear(&fs);
    Py_DECREF(popleft);
    Py_RETURN_NONE;
fail:
    fams_clear(&fs);
    Py_DECREF(popleft);
    return NULL;
}

/* _Shape.observe's loop: for each (name, values) of ``seen``, add ev.get(name) when the set
   has at most repeat_max values and it is exactly a str, an int or None, else a new object() */
static PyObject *
observe(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyDict_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "observe(seen: dict, ev, repeat_max)");
        return NULL;
    }
    PyObject *seen = args[0], *ev = args[1], *name, *vals;
    Py_ssize_t rmax = PyLong_AsSsize_t(args[2]), pos = 0;
    if (rmax == -1 && PyErr_Occurred())
        return NULL;
    int exact = PyDict_CheckExact(ev) || (PyObject *)Py_TYPE(ev) == EventDictType;
    PyObject *get = NULL;
    if (!exact && (get = PyObject_GetAttrString(ev, "get")) == NULL)
        return NULL;
    while (PyDict_Next(seen, &pos, &name, &vals)) {
        if (!PySet_CheckExact(vals)) {
            PyErr_SetString(PyExc_TypeError, "observe: values must be sets");
            goto fail;
        }
        PyObject *v;
        if (exact) {
            v = PyDict_GetItemWithError(ev, name);
            if (v == NULL && PyErr_Occurred())
                goto fail;
            v = v ? v : Py_None;
            Py_INCREF(v);
        } else if ((v = PyObject_CallOneArg(get, name)) == NULL)
            goto fail;
        int r;
        if (PySet_GET_SIZE(vals) <= rmax && (PyUnicode_CheckExact(v) || PyLong_CheckExact(v) || v == Py_None))
            r = PySet_Add(vals, v);
        else {
            PyObject *o = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
            r = o ? PySet_Add(vals, o) : -1;
            Py_XDECREF(o);
        }
        Py_DECREF(v);
        if (r < 0)
            goto fail;
    }
    Py_XDECREF(get);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(get);
    return NULL;
}

static PyObject *
setup(PyObject *mod, PyObject *args)
{
    PyObject *evd, *head, *from_ns, *argv_t, *cid, *consts;
    if (!PyArg_ParseTuple(args, "O!UOO!OO!:setup", &PyType_Type, &evd, &head, &from_ns, &PyType_Type, &argv_t, &cid,
                          &PyTuple_Type, &consts))
        return NULL;
    if (PyTuple_GET_SIZE(consts) > MAXC) {
        PyErr_SetString(PyExc_ValueError, "setup: too many constant names");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(consts); i++)
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(consts, i))) {
            PyErr_SetString(PyExc_TypeError, "setup: constant names must be str");
            return NULL;
        }
    /* the _ctx slot's offset, when it is a plain object slot of the EventDict type itself */
    Py_ssize_t off = -1;
    PyObject *descr = PyDict_GetItemWithError(((PyTypeObject *)evd)->tp_dict, StrCtx);
    if (descr == NULL && PyErr_Occurred())
        return NULL;
    if (descr != NULL && Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyMemberDef *md = ((PyMemberDescrObject *)descr)->d_member;
        if (md->type == T_OBJECT_EX && md->offset > 0 && (size_t)md->offset + sizeof(PyObject *) <=
                                                               (size_t)((PyTypeObject *)evd)->tp_basicsize)
            off = md->offset;
    }
    CtxOffset = off;
    for (int i = 0; i < MAXC; i++)
        ConstHints[i] = -1;
    Py_INCREF(evd);
    Py_XSETREF(EventDictType, evd);
    Py_INCREF(head);
    Py_XSETREF(IdHead, head);
    Py_INCREF(from_ns);
    Py_XSETREF(FromNs, from_ns);
    Py_INCREF(argv_t);
    Py_XSETREF(ArgvType, argv_t);
    PyTypeObject *at = (PyTypeObject *)argv_t;
    ArgvUntrack = at->tp_base == &PyUnicode_Type && at->tp_dictoffset == 0 && PyType_IS_GC(at);
    Py_INCREF(cid);
    Py_XSETREF(CompactId, cid);
    Py_INCREF(consts);
    Py_XSETREF(ConstNames, consts);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS,
     "setup(EventDict, id_head, from_ns, Argv, compact_id, const_names): the buffer module's objects."},
    {"compact", (PyCFunction)(void (*)(void))compact, METH_FASTCALL,
     "compact(pending, cfast, pool, combos, general): EventBuffers._compact's loop over the pending events."},
    {"observe", (PyCFunction)(void (*)(void))observe, METH_FASTCALL,
     "observe(seen, ev, repeat_max): _Shape.observe's loop over the values a learning shape counts."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT, "podtrail.tables._compact",
    "The osquery event buffers' batch compaction (reference: podtrail.tables.buffer).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__compact(void)
{
    if (PyType_Ready(&LayoutType) < 0)
        return NULL;
    if (StrCtx == NULL && (StrCtx = PyUnicode_InternFromString("_ctx")) == NULL)
        return NULL;
    if (StrRecord == NULL && (StrRecord = PyUnicode_InternFromString("record")) == NULL)
        return NULL;
    if (CatchFamily == NULL &&
        (CatchFamily = PyTuple_Pack(3, PyExc_AttributeError, PyExc_KeyError, PyExc_TypeError)) == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (m == NULL)
        return NULL;
    Py_INCREF(&LayoutType);
    if (PyModule_AddObject(m, "Layout", (PyObject *)&LayoutType) < 0) {
        Py_DECREF(&LayoutType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
