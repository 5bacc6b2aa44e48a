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
 *     fields, same values, same counts, same exceptions. ``finalize(ev)`` is its first half alone.
 *   - Chain(steps, outs, sinks, finalized): the whole chain for the common event in one call
 *     (issue 14, fifth pass: the Python frames between the stages' C short paths were most of
 *     the agent's CPU). Each stage hands over its C short path (``fast_step``), each sink its
 *     C-level submit (``fast_submit``); a step that declines has touched nothing, and the event
 *     goes on through the Python chain from that stage (``outs``, pipeline._build_chain: the
 *     reference, and the whole path of anything unusual). The detection stage is done as
 *     DetectStage.process is (finalize, the rest, then each detector's alerts after their
 *     trigger), with Engine.process's "no rule for this (type, action)" looked up here.
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

static int configured(void) {
    if (counts != NULL)
        return 1;
    PyErr_SetString(PyExc_RuntimeError, "_pipeline: configure() was not called");
    return 0;
}

/* A dict or an EventDict: read here by key (another mapping is read through its own get). */
static inline int plain(PyObject *ev) {
    return PyDict_CheckExact(ev) || Py_TYPE(ev) == (PyTypeObject *)event_type;
}

/* model.event.finalize(ev): 0, or -1 with its exception. */
static int finalize_ev(PyObject *ev) {
    int done = 0;
    if (plain(ev)) {
        PyObject *et = get(ev, s_event_type);
        if (et == NULL && PyErr_Occurred())
            return -1;
        if (et != NULL && PyUnicode_CheckExact(et)) {
            int eq = et == s_process ? 1 : PyUnicode_Compare(et, s_process) == 0;
            if (eq && (done = finalize_process(ev)) < 0)
                return -1;
        }
    }
    if (!done) {
        PyObject *r = PyObject_CallOneArg(py_finalize, ev);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    return 0;
}

/* metrics.event_out(ev): 0, or -1 with its exception. */
static int count_ev(PyObject *ev) {
    if (!plain(ev)) { /* another mapping (its own get): event_out itself */
        PyObject *r = PyObject_CallOneArg(py_event_out, ev);
        Py_XDECREF(r);
        return r == NULL ? -1 : 0;
    }
    PyObject *a = or_empty(ev, s_source), *b = a ? or_empty(ev, s_event_type) : NULL, *c = b ? or_empty(ev, s_action) : NULL;
    PyObject *key = c ? PyTuple_Pack(3, a, b, c) : NULL;
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(c);
    if (key == NULL)
        return -1;
    PyObject *old = PyDict_GetItemWithError(counts, key);
    PyObject *n = old != NULL ? PyNumber_Add(old, i_one) : PyErr_Occurred() ? NULL : Py_NewRef(i_one);
    int rc = n != NULL ? PyDict_SetItem(counts, key, n) : -1;
    Py_XDECREF(n);
    Py_DECREF(key);
    return rc ? -1 : 0;
}

static PyObject *finalize_count(PyObject *mod, PyObject *ev) {
    if (!configured() || finalize_ev(ev) < 0 || count_ev(ev) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *finalize_only(PyObject *mod, PyObject *ev) {
    if (!configured() || finalize_ev(ev) < 0)
        return NULL;
    return Py_NewRef(ev);
}

/* -- Chain: the whole chain for the common event, in one call ------------------------------ */

/* A stage's step: ("step", fn, head, tail): fn(head, ev, *tail) is True when it did the
 * stage's work (the event goes on), False when it touched nothing (the stage's own process
 * then runs, and the Python chain from there). ("detect", Engine.process, stage, failed):
 * DetectStage.process (finalize, the rest of the chain, then each of stage.detectors' alerts
 * through the Python chain after it; an engine's "no rule for this (type, action)" looked up
 * here; a detector's exception handed to failed(detector, exception)). */
enum { K_STEP, K_DETECT };
#define MAX_TAIL 4

typedef struct {
    int kind;
    PyObject *fn, *head, *failed; /* borrowed from the Chain's spec */
    PyObject *tail[MAX_TAIL];
    Py_ssize_t ntail;
    PyObject *out, *next; /* the Python chain from this stage on (outs[i]), and after it (outs[i + 1]) */
} Step;

/* A sink: ("plain", submit): submit(ev). ("lines", add, sink, failed): add(ev) True: the line is
 * in, sink._n += 1; False: sink.submit(ev) (the Python way); an exception: failed(exception).
 * ("queue", deque, limit, flush): the deque takes ev; flush() once it holds limit events. */
enum { S_PLAIN, S_LINES, S_QUEUE };

typedef struct {
    int kind;
    PyObject *a, *b, *c; /* borrowed from the Chain's spec */
    Py_ssize_t limit;
} SinkRef;

typedef struct {
    PyObject_HEAD
    PyObject *spec; /* (steps, outs, sinks): what the borrowed pointers below point into */
    Step *steps;
    SinkRef *sinks;
    Py_ssize_t nsteps, nsinks;
    int tail, finalized; /* tail: the sinks here (else outs[nsteps]); finalized: the last step finalizes */
    PyObject *rest;      /* outs[nsteps] */
    vectorcallfunc vectorcall;
} Chain;

static PyObject *s_detectors, *s_process_attr, *s_scan, *s_alerts, *s_n, *s_submit, *k_step, *k_detect, *k_plain,
    *k_lines, *k_queue;

static int call1(PyObject *fn, PyObject *arg) {
    PyObject *r = PyObject_CallOneArg(fn, arg);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* The exception raised now, taken (normalized, with its traceback): a new reference. */
static PyObject *take_exception(void) {
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb != NULL && v != NULL)
        PyException_SetTraceback(v, tb);
    Py_XDECREF(t);
    Py_XDECREF(tb);
    return v != NULL ? v : Py_NewRef(Py_None);
}

/* handler(*args, exception) for an Exception (``except Exception``): 0, or -1 when the handler
 * itself raised or the exception is not one (it goes on up). */
static int handled(PyObject *handler, PyObject *first) {
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyObject *exc = take_exception();
    PyObject *args[2] = {first, exc};
    PyObject *r = first != NULL ? PyObject_Vectorcall(handler, args, 2, NULL) : PyObject_Vectorcall(handler, args + 1, 1, NULL);
    Py_DECREF(exc);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

static int deliver(Chain *c, PyObject *ev) {
    if (!c->tail)
        return call1(c->rest, ev);
    if ((!c->finalized && finalize_ev(ev) < 0) || count_ev(ev) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < c->nsinks; i++) {
        SinkRef *s = &c->sinks[i];
        if (s->kind == S_PLAIN) {
            if (call1(s->a, ev) < 0)
                return -1;
        } else if (s->kind == S_LINES) {
            PyObject *r = PyObject_CallOneArg(s->a, ev);
            if (r == NULL) {
                if (handled(s->c, NULL) < 0)
                    return -1;
                continue;
            }
            int t = r == Py_True ? 1 : r == Py_False ? 0 : PyObject_IsTrue(r);
            Py_DECREF(r);
            if (t < 0) { /* as the sink's submit would see it: its own handler */
                if (handled(s->c, NULL) < 0)
                    return -1;
                continue;
            }
            if (!t) {
                PyObject *submit = PyObject_GetAttr(s->b, s_submit);
                int rc = submit != NULL ? call1(submit, ev) : -1;
                Py_XDECREF(submit);
                if (rc < 0)
                    return -1;
                continue;
            }
            PyObject *n = PyObject_GetAttr(s->b, s_n), *n1 = n != NULL ? PyNumber_Add(n, i_one) : NULL;
            int rc = n1 != NULL ? PyObject_SetAttr(s->b, s_n, n1) : -1;
            Py_XDECREF(n);
            Py_XDECREF(n1);
            if (rc < 0)
                return -1;
        } else {
            if (call1(s->a, ev) < 0)
                return -1;
            Py_ssize_t n = PyObject_Size(s->b);
            if (n < 0)
                return -1;
            if (n >= s->limit) {
                PyObject *r = PyObject_CallNoArgs(s->c);
                if (r == NULL)
                    return -1;
                Py_DECREF(r);
            }
        }
    }
    return 0;
}

/* The engine's process(ev) (Engine.process, its reference): 1 with *alerts, 0 for none, -1. */
static int engine_alerts(PyObject *engine, PyObject *method, PyObject *ev, PyObject **alerts) {
    PyObject *scans = PyObject_GetAttr(engine, s_scan), *scan = NULL;
    if (scans == NULL)
        PyErr_Clear();
    else if (PyDict_CheckExact(scans)) {
        PyObject *et = get(ev, s_event_type), *action = et != NULL || !PyErr_Occurred() ? get(ev, s_action) : NULL;
        PyObject *key = PyErr_Occurred() ? NULL : PyTuple_Pack(2, et ? et : Py_None, action ? action : Py_None);
        if (key != NULL) {
            scan = PyDict_GetItemWithError(scans, key);
            Py_XINCREF(scan);
            Py_DECREF(key);
        }
        PyErr_Clear(); /* not there (or not hashable): the engine's own process finds it */
    }
    Py_XDECREF(scans);
    if (scan == NULL) {
        *alerts = PyObject_CallOneArg(method, ev);
        return *alerts == NULL ? -1 : 1;
    }
    if (scan == Py_None) { /* no rule for this (type, action) */
        Py_DECREF(scan);
        return 0;
    }
    PyObject *hits = PyObject_CallOneArg(scan, ev);
    Py_DECREF(scan);
    if (hits == NULL)
        return -1;
    int t = PyObject_IsTrue(hits);
    if (t <= 0) {
        Py_DECREF(hits);
        return t;
    }
    *alerts = PyObject_CallMethodObjArgs(engine, s_alerts, ev, hits, NULL);
    Py_DECREF(hits);
    return *alerts == NULL ? -1 : 1;
}

static int chain_from(Chain *c, Py_ssize_t i, PyObject *ev);

static int detect(Chain *c, Py_ssize_t i, PyObject *ev) {
    Step *s = &c->steps[i];
    if (finalize_ev(ev) < 0 || chain_from(c, i + 1, ev) < 0)
        return -1;
    PyObject *dets = PyObject_GetAttr(s->head, s_detectors), *it = NULL;
    if (dets == NULL)
        return -1;
    int list = PyList_CheckExact(dets), rc = 0;
    if (!list && (it = PyObject_GetIter(dets)) == NULL) {
        Py_DECREF(dets);
        return -1;
    }
    for (Py_ssize_t j = 0;; j++) { /* for d in self.detectors (a list: its length read at each step, as its iterator) */
        PyObject *d;
        if (list) {
            if (j >= PyList_GET_SIZE(dets))
                break;
            d = Py_NewRef(PyList_GET_ITEM(dets, j));
        } else if ((d = PyIter_Next(it)) == NULL) {
            if (PyErr_Occurred())
                rc = -1;
            break;
        }
        PyObject *alerts = NULL, *m = PyObject_GetAttr(d, s_process_attr);
        int got;
        if (m == NULL)
            got = -1;
        else if (PyMethod_Check(m) && PyMethod_GET_FUNCTION(m) == s->fn)
            got = engine_alerts(PyMethod_GET_SELF(m), m, ev, &alerts);
        else
            got = (alerts = PyObject_CallOneArg(m, ev)) != NULL ? 1 : -1;
        Py_XDECREF(m);
        if (got < 0) { /* a detector bug: logged and counted by the stage, the others still run */
            rc = handled(s->failed, d);
            Py_DECREF(d);
            if (rc < 0)
                break;
            continue;
        }
        Py_DECREF(d);
        if (got == 0)
            continue;
        PyObject *ait = PyObject_GetIter(alerts), *a;
        Py_DECREF(alerts);
        if (ait == NULL) {
            rc = -1;
            break;
        }
        while ((a = PyIter_Next(ait)) != NULL) {
            rc = call1(s->next, a);
            Py_DECREF(a);
            if (rc < 0)
                break;
        }
        Py_DECREF(ait);
        if (rc < 0 || PyErr_Occurred()) {
            rc = -1;
            break;
        }
    }
    Py_DECREF(dets);
    Py_XDECREF(it);
    return rc;
}

static int chain_from(Chain *c, Py_ssize_t i, PyObject *ev) {
    for (; i < c->nsteps; i++) {
        Step *s = &c->steps[i];
        if (s->kind == K_DETECT)
            return detect(c, i, ev);
        PyObject *args[2 + MAX_TAIL] = {s->head, ev};
        for (Py_ssize_t k = 0; k < s->ntail; k++)
            args[2 + k] = s->tail[k];
        PyObject *r = PyObject_Vectorcall(s->fn, args, 2 + s->ntail, NULL);
        if (r == NULL)
            return -1;
        int t = r == Py_True ? 1 : r == Py_False ? 0 : PyObject_IsTrue(r);
        Py_DECREF(r);
        if (t < 0)
            return -1;
        if (!t) /* declined (nothing touched): this stage's own process, and the Python chain after it */
            return call1(s->out, ev);
    }
    return deliver(c, ev);
}

static PyObject *Chain_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Chain *c = (Chain *)self;
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "Chain takes one event");
        return NULL;
    }
    PyObject *ev = args[0];
    if (c->steps == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Chain: cleared");
        return NULL;
    }
    int rc = plain(ev) ? chain_from(c, 0, ev) : call1(c->steps[0].out, ev); /* another mapping: Python */
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* The spec's items, checked: a tuple of at least ``n`` items whose first is ``kind``. */
static PyObject *item(PyObject *seq, Py_ssize_t i, Py_ssize_t n, Py_ssize_t max) {
    PyObject *t = PyTuple_GET_ITEM(seq, i);
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) < n || PyTuple_GET_SIZE(t) > max || !PyUnicode_Check(PyTuple_GET_ITEM(t, 0))) {
        PyErr_Format(PyExc_TypeError, "Chain: item %zd is not a (kind, ...) tuple of %zd", i, n);
        return NULL;
    }
    return t;
}

static int parse_steps(Chain *c, PyObject *steps, PyObject *outs) {
    c->nsteps = PyTuple_GET_SIZE(steps);
    if (c->nsteps == 0 || PyTuple_GET_SIZE(outs) != c->nsteps + 1) {
        PyErr_SetString(PyExc_ValueError, "Chain: one step or more, and one out more than steps");
        return -1;
    }
    c->steps = PyMem_Calloc((size_t)c->nsteps, sizeof(Step));
    if (c->steps == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < c->nsteps; i++) {
        PyObject *t = item(steps, i, 4, 4);
        if (t == NULL)
            return -1;
        Step *s = &c->steps[i];
        PyObject *kind = PyTuple_GET_ITEM(t, 0);
        s->fn = PyTuple_GET_ITEM(t, 1);
        s->head = PyTuple_GET_ITEM(t, 2);
        s->out = PyTuple_GET_ITEM(outs, i);
        s->next = PyTuple_GET_ITEM(outs, i + 1);
        if (PyUnicode_Compare(kind, k_step) == 0) {
            PyObject *tail = PyTuple_GET_ITEM(t, 3);
            if (!PyTuple_Check(tail) || PyTuple_GET_SIZE(tail) > MAX_TAIL) {
                PyErr_SetString(PyExc_TypeError, "Chain: a step's tail is a tuple of at most 4");
                return -1;
            }
            s->kind = K_STEP;
            s->ntail = PyTuple_GET_SIZE(tail);
            for (Py_ssize_t k = 0; k < s->ntail; k++)
                s->tail[k] = PyTuple_GET_ITEM(tail, k);
        } else if (PyUnicode_Compare(kind, k_detect) == 0) {
            s->kind = K_DETECT;
            s->failed = PyTuple_GET_ITEM(t, 3);
        } else {
            PyErr_Format(PyExc_ValueError, "Chain: unknown step %R", kind);
            return -1;
        }
        if (!PyCallable_Check(s->fn) && s->kind == K_STEP) {
            PyErr_SetString(PyExc_TypeError, "Chain: a step's fn is not callable");
            return -1;
        }
    }
    return 0;
}

static int parse_sinks(Chain *c, PyObject *sinks) {
    c->nsinks = PyTuple_GET_SIZE(sinks);
    c->sinks = PyMem_Calloc((size_t)c->nsinks + 1, sizeof(SinkRef));
    if (c->sinks == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < c->nsinks; i++) {
        PyObject *t = item(sinks, i, 2, 4);
        if (t == NULL)
            return -1;
        SinkRef *s = &c->sinks[i];
        PyObject *kind = PyTuple_GET_ITEM(t, 0);
        Py_ssize_t n = PyTuple_GET_SIZE(t);
        s->a = PyTuple_GET_ITEM(t, 1);
        if (PyUnicode_Compare(kind, k_plain) == 0 && n == 2) {
            s->kind = S_PLAIN;
        } else if (PyUnicode_Compare(kind, k_lines) == 0 && n == 4) {
            s->kind = S_LINES;
            s->b = PyTuple_GET_ITEM(t, 2);
            s->c = PyTuple_GET_ITEM(t, 3);
        } else if (PyUnicode_Compare(kind, k_queue) == 0 && n == 4) {
            s->kind = S_QUEUE;
            s->b = PyTuple_GET_ITEM(t, 1);
            s->limit = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 2));
            if (s->limit == -1 && PyErr_Occurred())
                return -1;
            s->a = PyObject_GetAttrString(s->b, "append"); /* kept in the spec below */
            if (s->a == NULL)
                return -1;
            int bad = PyList_Append(PyTuple_GET_ITEM(c->spec, 3), s->a);
            Py_DECREF(s->a);
            if (bad)
                return -1;
            s->c = PyTuple_GET_ITEM(t, 3);
        } else {
            PyErr_Format(PyExc_ValueError, "Chain: unknown sink %R of %zd items", kind, n);
            return -1;
        }
    }
    return 0;
}

static void Chain_free_arrays(Chain *c) {
    PyMem_Free(c->steps);
    PyMem_Free(c->sinks);
    c->steps = NULL;
    c->sinks = NULL;
    c->nsteps = c->nsinks = 0;
}

static PyObject *Chain_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *steps, *outs, *sinks;
    int finalized;
    if (kw != NULL && PyDict_GET_SIZE(kw)) {
        PyErr_SetString(PyExc_TypeError, "Chain(steps, outs, sinks, finalized) takes no keywords");
        return NULL;
    }
    if (!configured() || !PyArg_ParseTuple(args, "OOOp:Chain", &steps, &outs, &sinks, &finalized))
        return NULL;
    Chain *c = (Chain *)type->tp_alloc(type, 0);
    if (c == NULL)
        return NULL;
    c->vectorcall = Chain_vectorcall;
    steps = PySequence_Tuple(steps);
    outs = steps ? PySequence_Tuple(outs) : NULL;
    sinks = outs ? (sinks == Py_None ? Py_NewRef(Py_None) : PySequence_Tuple(sinks)) : NULL;
    PyObject *kept = sinks ? PyList_New(0) : NULL; /* objects the spec holds that the caller did not give */
    c->spec = kept ? PyTuple_Pack(4, steps, outs, sinks, kept) : NULL;
    Py_XDECREF(steps);
    Py_XDECREF(outs);
    Py_XDECREF(sinks);
    Py_XDECREF(kept);
    if (c->spec == NULL || parse_steps(c, steps, outs) < 0 || (sinks != Py_None && parse_sinks(c, sinks) < 0)) {
        Py_DECREF(c);
        return NULL;
    }
    c->tail = sinks != Py_None;
    c->finalized = finalized;
    c->rest = PyTuple_GET_ITEM(outs, c->nsteps);
    return (PyObject *)c;
}

static int Chain_traverse(Chain *c, visitproc visit, void *arg) {
    Py_VISIT(c->spec);
    return 0;
}

static int Chain_clear(Chain *c) {
    Chain_free_arrays(c); /* the borrowed pointers go with the spec */
    Py_CLEAR(c->spec);
    return 0;
}

static void Chain_dealloc(Chain *c) {
    PyObject_GC_UnTrack(c);
    Chain_clear(c);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyTypeObject ChainType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "podtrail._pipeline.Chain",
    .tp_basicsize = sizeof(Chain),
    .tp_dealloc = (destructor)Chain_dealloc,
    .tp_vectorcall_offset = offsetof(Chain, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Chain(steps, outs, sinks, finalized)(ev): the stages' C steps, then finalize, the events counter and the "
              "sinks, in one call; a step that declines hands the event to the Python chain (outs) from its stage on.",
    .tp_traverse = (traverseproc)Chain_traverse,
    .tp_clear = (inquiry)Chain_clear,
    .tp_new = Chain_new,
};

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
    {"finalize", finalize_only, METH_O, "finalize(ev) -> ev: model.event.finalize(ev)"},
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
        || intern(&s_success, "success") || intern(&s_empty, "") || intern(&s_detectors, "detectors")
        || intern(&s_process_attr, "process") || intern(&s_scan, "_scan") || intern(&s_alerts, "_alerts")
        || intern(&s_n, "_n") || intern(&s_submit, "submit") || intern(&k_step, "step") || intern(&k_detect, "detect")
        || intern(&k_plain, "plain") || intern(&k_lines, "lines") || intern(&k_queue, "queue"))
        return NULL;
    i_zero = PyLong_FromLong(0);
    i_one = PyLong_FromLong(1);
    i_four = PyLong_FromLong(4);
    i_seven = PyLong_FromLong(7);
    i_eight = PyLong_FromLong(8);
    if (!i_zero || !i_one || !i_four || !i_seven || !i_eight || PyType_Ready(&LinkType) < 0 || PyType_Ready(&ChainType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Link", (PyObject *)&LinkType) < 0
        || PyModule_AddObjectRef(m, "Chain", (PyObject *)&ChainType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
