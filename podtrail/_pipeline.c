/* podtrail._pipeline: the pipeline thread's per-event glue, in C.
 *
 * Why: between the stages and the sinks every event went through a Python lambda per stage
 * (the chain: ``lambda ev: stage.process(ev, next)``), ``finalize`` and the events counter:
 * about 1 µs per event of frames and dict work that decide nothing. Here:
 *   - Link(process, out): calling it with ev calls process(ev, out); the reference is the
 *     lambda in pipeline.Pipeline._build_chain.
 *   - finalize_count(ev): model.event.finalize(ev), then metrics.event_out(ev) (the references),
 *     for a process event in C; any other event, or a value the C path does not take as it is
 *     (a result that is not an int, a target path to name), goes to finalize itself. Same
 *     fields, same values, same counts, same exceptions.
 *
 * Written for this project; only the CPython C API. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

/* -- Link ---------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *process, *out;
    vectorcallfunc vectorcall;
} Link;

static PyObject *Link_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Link *l = (Link *)self;
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "Link takes one event");
        return NULL;
    }
    PyObject *a[2] = {args[0], l->out};
    return PyObject_Vectorcall(l->process, a, 2, NULL);
}

static PyObject *Link_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *process, *out;
    if (kw != NULL && PyDict_GET_SIZE(kw)) {
        PyErr_SetString(PyExc_TypeError, "Link(process, out) takes no keywords");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OO:Link", &process, &out))
        return NULL;
    Link *l = (Link *)type->tp_alloc(type, 0);
    if (l == NULL)
        return NULL;
    l->process = Py_NewRef(process);
    l->out = Py_NewRef(out);
    l->vectorcall = Link_vectorcall;
    return (PyObject *)l;
}

static int Link_traverse(Link *l, visitproc visit, void *arg) {
    Py_VISIT(l->process);
    Py_VISIT(l->out);
    return 0;
}

static int Link_clear(Link *l) {
    Py_CLEAR(l->process);
    Py_CLEAR(l->out);
    return 0;
}

static void Link_dealloc(Link *l) {
    PyObject_GC_UnTrack(l);
    Link_clear(l);
    Py_TYPE(l)->tp_free((PyObject *)l);
}

static PyTypeObject LinkType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "podtrail._pipeline.Link",
    .tp_basicsize = sizeof(Link),
    .tp_dealloc = (destructor)Link_dealloc,
    .tp_vectorcall_offset = offsetof(Link, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Link(process, out)(ev) calls process(ev, out): one step of the pipeline's chain.",
    .tp_traverse = (traverseproc)Link_traverse,
    .tp_clear = (inquiry)Link_clear,
    .tp_new = Link_new,
};

/* -- finalize_count ------------------------------------------------------------------------ */

static PyObject *severity_table, *counts, *py_finalize, *py_event_out, *event_type; /* configure() */
static PyObject *s_event_type, *s_outcome, *s_result, *s_file_name, *s_target_path, *s_severity, *s_action,
    *s_drift, *s_sensitive, *s_source, *s_process, *s_failure, *s_success, *s_empty, *i_zero, *i_one, *i_four,
    *i_seven, *i_eight;

/* ev.get(name) (borrowed, NULL when missing or on error: check PyErr_Occurred) */
static inline PyObject *get(PyObject *ev, PyObject *name) {
    return PyDict_GetItemWithError(ev, name);
}

/* max(base, floor) as Python computes it: floor when floor > base (new reference). */
static PyObject *raised(PyObject *base, PyObject *floor) {
    int gt = PyObject_RichCompareBool(floor, base, Py_GT);
    if (gt < 0)
        return NULL;
    return Py_NewRef(gt ? floor : base);
}

/* finalize's work for a process event (event_type the str "process"). 1: done; 0: not this
 * path (nothing changed); -1: an exception, as finalize would raise it at that point. */
static int finalize_process(PyObject *ev) {
    int has = PyDict_Contains(ev, s_outcome);
    if (has < 0)
        return -1;
    PyObject *res = NULL;
    if (!has) {
        res = get(ev, s_result);
        if (res == NULL && PyErr_Occurred())
            return -1;
        if (res == Py_None)
            res = NULL;
        else if (res != NULL && !PyLong_CheckExact(res))
            return 0;
    }
    if ((has = PyDict_Contains(ev, s_file_name)) < 0)
        return -1;
    if (!has) {
        PyObject *tp = get(ev, s_target_path);
        if (tp == NULL && PyErr_Occurred())
            return -1;
        if (tp != NULL) {
            int t = PyObject_IsTrue(tp);
            if (t < 0)
                PyErr_Clear(); /* finalize raises it, at its own point */
            if (t)
                return 0; /* a file name to derive (or an error to raise): finalize */
        }
    }
    if (res != NULL) {
        int neg = PyObject_RichCompareBool(res, i_zero, Py_LT);
        if (neg < 0 || PyDict_SetItem(ev, s_outcome, neg ? s_failure : s_success))
            return -1;
    }
    if ((has = PyDict_Contains(ev, s_severity)) < 0)
        return -1;
    if (has)
        return 1;
    PyObject *action = get(ev, s_action);
    if (action == NULL) {
        if (PyErr_Occurred())
            return -1;
        action = s_empty;
    }
    PyObject *key = PyTuple_Pack(2, s_process, action);
    if (key == NULL)
        return -1;
    PyObject *base = PyDict_GetItemWithError(severity_table, key);
    Py_DECREF(key);
    if (base == NULL && PyErr_Occurred())
        return -1;
    base = Py_NewRef(base != NULL ? base : i_four);
    PyObject *flags[2] = {s_drift, s_sensitive}, *floors[2] = {i_eight, i_seven};
    for (int i = 0; i < 2; i++) {
        PyObject *v = get(ev, flags[i]);
        int t = 0;
        if (v == NULL && PyErr_Occurred())
            t = -1;
        else if (v != NULL)
            t = PyObject_IsTrue(v);
        if (t > 0)
            Py_SETREF(base, raised(base, floors[i]));
        if (t < 0 || base == NULL) {
            Py_XDECREF(base);
            return -1;
        }
    }
    int rc = PyDict_SetItem(ev, s_severity, base);
    Py_DECREF(base);
    return rc ? -1 : 1;
}

/* ev.get(name) or "" (new reference) */
static PyObject *or_empty(PyObject *ev, PyObject *name) {
    PyObject *v = get(ev, name);
    if (v == NULL) {
        if (PyErr_Occurred())
            return NULL;
        return Py_NewRef(s_empty);
    }
    int t = PyObject_IsTrue(v);
    if (t < 0)
        return NULL;
    return Py_NewRef(t ? v : s_empty);
}

static PyObject *finalize_count(PyObject *mod, PyObject *ev) {
    if (counts == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_pipeline: configure() was not called");
        return NULL;
    }
    int done = 0, plain = PyDict_CheckExact(ev) || Py_TYPE(ev) == (PyTypeObject *)event_type;
    if (plain) {
        PyObject *et = get(ev, s_event_type);
        if (et == NULL && PyErr_Occurred())
            return NULL;
        if (et != NULL && PyUnicode_CheckExact(et)) {
            int eq = et == s_process ? 1 : PyUnicode_Compare(et, s_process) == 0;
            if (eq && (done = finalize_process(ev)) < 0)
                return NULL;
        }
    }
    if (!done) {
        PyObject *r = PyObject_CallOneArg(py_finalize, ev);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    if (!plain) /* another mapping (its own get): event_out itself */
        return PyObject_CallOneArg(py_event_out, ev);
    PyObject *a = or_empty(ev, s_source), *b = a ? or_empty(ev, s_event_type) : NULL, *c = b ? or_empty(ev, s_action) : NULL;
    PyObject *key = c ? PyTuple_Pack(3, a, b, c) : NULL;
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(c);
    if (key == NULL)
        return NULL;
    PyObject *old = PyDict_GetItemWithError(counts, key);
    PyObject *n = old != NULL ? PyNumber_Add(old, i_one) : PyErr_Occurred() ? NULL : Py_NewRef(i_one);
    int rc = n != NULL ? PyDict_SetItem(counts, key, n) : -1;
    Py_XDECREF(n);
    Py_DECREF(key);
    if (rc)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *configure(PyObject *mod, PyObject *args) {
    PyObject *table, *cnt, *fin, *out, *evt;
    if (!PyArg_ParseTuple(args, "O!O!OOO!:configure", &PyDict_Type, &table, &PyDict_Type, &cnt, &fin, &out, &PyType_Type,
                          &evt))
        return NULL;
    Py_XSETREF(py_event_out, Py_NewRef(out));
    Py_XSETREF(severity_table, Py_NewRef(table));
    Py_XSETREF(counts, Py_NewRef(cnt));
    Py_XSETREF(py_finalize, Py_NewRef(fin));
    Py_XSETREF(event_type, Py_NewRef(evt));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(severity table, events counts, finalize, event_out, EventDict): the references' own objects"},
    {"finalize_count", finalize_count, METH_O, "finalize_count(ev): model.event.finalize(ev), then metrics.event_out(ev)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "podtrail._pipeline", "The pipeline thread's per-event glue in C; see pipeline.py.", -1,
    methods, NULL, NULL, NULL, NULL,
};

static int intern(PyObject **p, const char *s) {
    *p = PyUnicode_InternFromString(s);
    return *p == NULL ? -1 : 0;
}

PyMODINIT_FUNC PyInit__pipeline(void) {
    if (intern(&s_event_type, "event_type") || intern(&s_outcome, "outcome") || intern(&s_result, "result")
        || intern(&s_file_name, "file_name") || intern(&s_target_path, "target_path") || intern(&s_severity, "severity")
        || intern(&s_action, "action") || intern(&s_drift, "drift") || intern(&s_sensitive, "sensitive")
        || intern(&s_source, "source") || intern(&s_process, "process") || intern(&s_failure, "failure")
        || intern(&s_success, "success") || intern(&s_empty, ""))
        return NULL;
    i_zero = PyLong_FromLong(0);
    i_one = PyLong_FromLong(1);
    i_four = PyLong_FromLong(4);
    i_seven = PyLong_FromLong(7);
    i_eight = PyLong_FromLong(8);
    if (!i_zero || !i_one || !i_four || !i_seven || !i_eight || PyType_Ready(&LinkType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Link", (PyObject *)&LinkType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
