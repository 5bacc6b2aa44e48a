/* podtrail.procs._retire: the process table's exited processes out of the cyclic collector.
 *
 * Why (issue 14, fifth pass): the table keeps every exited process for its grace period
 * (30 s), and with it ~6 tracked objects per exec (the Proc, its extra dict, its process
 * entity, the entity's value tuple, memo dict and JSON fragment list). At 1,000 execs/s that
 * is ~200,000 objects the cyclic collector walks again and again (a young collection took
 * 22-25 ms, ~3-5 us per exec, and full collections grow with uptime), although none of them is
 * ever part of a reference cycle: they are freed by reference counting when the table prunes
 * them. ``retire`` takes them off the collector's lists (PyObject_GC_UnTrack); they stay
 * ordinary objects, freed by reference counting exactly as before.
 *
 * There is no Python reference: what it replaces is "nothing" (the fallback leaves the objects
 * tracked, which is correct, only slower). What it must never do is untrack an object that is
 * or may become part of a cycle: a cycle through an untracked object is never collected (a
 * leak, never a crash). So it untracks only what it has verified, bottom-up:
 *   - data: any object the collector does not track (texts, numbers, None; a tuple or dict
 *     CPython untracked; a container untracked before): a cycle through such an object is
 *     never collected anyway (the collector cannot see its references), so untracking what
 *     holds it makes no collectable cycle uncollectable. And tracked exact tuples, frozensets,
 *     lists and dicts whose items are data, at most MAX_DEPTH deep (a container that contains
 *     itself is deeper than any bound: refused); tracked instances of the record types given
 *     to setup (the process entity and its kind) whose every slot holds data. What is
 *     reachable from a verified object through tracked objects is then a finite, acyclic
 *     graph, so it cannot lead back to itself. (The reference every instance of a class holds
 *     to its class leads only to module-level objects, never garbage while the agent runs.)
 *   - a Proc whose slots (but ``parent``) and ``extra`` dict are data, and whose parent chain
 *     is Procs ending in None (or in an untracked, i.e. retired, Proc) within MAX_CHAIN steps
 *     without meeting it again. Nothing of the table keeps a Proc in an ``extra`` dict (only
 *     data and entities: podtrail/procs/table.py), so the parent chain is the only way from a
 *     Proc to a Proc.
 * Anything unexpected (another type, a subclass, a set, an unset slot in a Proc's parent
 * chain) leaves the object tracked, and with it every container that holds it.
 * Later changes: a dict tracks itself again when a container is put in it (CPython does this
 * for every dict); a Proc's slots get only texts, numbers and its one extra dict; an entity is
 * immutable but for ``memo``, which gets a new dict of fragments (rendered data); the JSON
 * fragment list in ``memo["jsonl"]`` gets only bytes (podtrail/outputs/_jsonline.c).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define MAX_DEPTH 8    /* nesting of verified data: entity -> values -> ancestry list -> dict */
#define MAX_CHAIN 4096 /* parents above a process (a deeper chain stays tracked) */
#define MAX_TYPES 4

static PyTypeObject *Proc_T;
static PyTypeObject *Records[MAX_TYPES]; /* slotted record types whose slots hold only data */
static int n_records;
static Py_ssize_t off_parent;

#define SLOT(o, off) (*(PyObject **)((char *)(o) + (off)))

static inline void untrack(PyObject *o) {
    if (PyObject_GC_IsTracked(o)) PyObject_GC_UnTrack(o);
}

static inline int is_record(PyTypeObject *t) {
    for (int i = 0; i < n_records; i++)
        if (Records[i] == t) return 1;
    return 0;
}

static int data(PyObject *o, int depth);

/* Every object slot of a slotted instance is data (``skip``: the offset of one not checked
 * here, -1 for none). An unset slot is no reference. */
static int slots_are_data(PyObject *o, Py_ssize_t skip, int depth) {
    for (PyMemberDef *m = Py_TYPE(o)->tp_members; m != NULL && m->name != NULL; m++) {
        if (m->type != T_OBJECT_EX || m->offset == skip) continue;
        PyObject *v = SLOT(o, m->offset);
        if (v != NULL && !data(v, depth + 1)) return 0;
    }
    return 1;
}

/* 1 when ``o`` is data (see the top), untracking each container on the way; 0 when not (the
 * containers found to be data below it are untracked all the same: each is on its own). */
static int data(PyObject *o, int depth) {
    PyTypeObject *t = Py_TYPE(o);
    if (t == &PyUnicode_Type || t == &PyLong_Type || !PyObject_GC_IsTracked(o)) return 1;
    if (depth >= MAX_DEPTH) return 0;
    if (t == &PyTuple_Type) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(o); i++)
            if (!data(PyTuple_GET_ITEM(o, i), depth + 1)) return 0;
    } else if (t == &PyList_Type) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(o); i++) /* no Python code runs here: the list stays as it is */
            if (!data(PyList_GET_ITEM(o, i), depth + 1)) return 0;
    } else if (t == &PyDict_Type) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(o, &pos, &k, &v))
            if (!data(k, depth + 1) || !data(v, depth + 1)) return 0;
    } else if (t == &PyFrozenSet_Type) {
        Py_ssize_t pos = 0;
        PyObject *k;
        Py_hash_t h;
        while (_PySet_NextEntry(o, &pos, &k, &h))
            if (!data(k, depth + 1)) return 0;
    } else if (is_record(t)) {
        if (!slots_are_data(o, -1, depth)) return 0;
    } else {
        return 0;
    }
    untrack(o);
    return 1;
}

/* A Proc: its slots but the parent are data, and its parent chain ends without meeting it. */
static int proc(PyObject *p) {
    if (Py_TYPE(p) != Proc_T) return 0;
    int ok = slots_are_data(p, off_parent, 0); /* the extra dict and what is in it: untracked on the way */
    PyObject *q = SLOT(p, off_parent);
    for (int i = 0; ok && q != NULL && q != Py_None; i++) {
        if (q == p || Py_TYPE(q) != Proc_T || i >= MAX_CHAIN) ok = 0;
        else if (!PyObject_GC_IsTracked(q)) break; /* retired: its chain was checked then (parents never change) */
        else q = SLOT(q, off_parent);
    }
    if (ok && q == NULL) ok = 0; /* an unset parent slot: not a Proc as the table makes them */
    if (ok) untrack(p);
    return ok;
}

static int member_offset(PyTypeObject *tp, const char *name, Py_ssize_t *out) {
    PyObject *d = PyDict_GetItemString(tp->tp_dict, name);
    if (d == NULL || !PyObject_TypeCheck(d, &PyMemberDescr_Type)
        || ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not an object slot", tp->tp_name, name);
        return -1;
    }
    *out = ((PyMemberDescrObject *)d)->d_member->offset;
    return 0;
}

/* A type whose instances hold references only in their slots (no __dict__, no item storage). */
static int slotted_only(PyTypeObject *tp) {
    if (tp->tp_dictoffset != 0 || tp->tp_itemsize != 0 || tp->tp_base != &PyBaseObject_Type
        || !(tp->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        PyErr_Format(PyExc_TypeError, "%s is not a plain __slots__ class", tp->tp_name);
        return -1;
    }
    return 0;
}

static PyObject *setup(PyObject *self, PyObject *args) {
    PyObject *proc_t, *records;
    if (!PyArg_ParseTuple(args, "O!O!:setup", &PyType_Type, &proc_t, &PyTuple_Type, &records)) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(records);
    if (n > MAX_TYPES) {
        PyErr_SetString(PyExc_ValueError, "too many record types");
        return NULL;
    }
    Py_ssize_t off;
    if (slotted_only((PyTypeObject *)proc_t) < 0 || member_offset((PyTypeObject *)proc_t, "parent", &off) < 0)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyTuple_GET_ITEM(records, i);
        if (!PyType_Check(t)) {
            PyErr_SetString(PyExc_TypeError, "record types must be types");
            return NULL;
        }
        if (slotted_only((PyTypeObject *)t) < 0) return NULL;
    }
    for (int i = 0; i < n_records; i++) Py_CLEAR(Records[i]);
    for (Py_ssize_t i = 0; i < n; i++) {
        Records[i] = (PyTypeObject *)Py_NewRef(PyTuple_GET_ITEM(records, i));
    }
    n_records = (int)n;
    Py_XSETREF(Proc_T, (PyTypeObject *)Py_NewRef(proc_t));
    off_parent = off;
    Py_RETURN_NONE;
}

static PyObject *retire(PyObject *self, PyObject *iterable) {
    if (Proc_T == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "setup() first");
        return NULL;
    }
    PyObject *it = PyObject_GetIter(iterable);
    if (it == NULL) return NULL;
    long done = 0;
    PyObject *p;
    while ((p = PyIter_Next(it)) != NULL) {
        done += proc(p);
        Py_DECREF(p);
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return NULL;
    return PyLong_FromLong(done);
}

static PyObject *data_py(PyObject *self, PyObject *o) {
    return PyBool_FromLong(data(o, 0));
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS, "setup(Proc, record_types): the table's process type and the entity types"},
    {"retire", retire, METH_O,
     "retire(procs) -> how many of these exited processes (and their data) left the cyclic collector"},
    {"data", data_py, METH_O, "data(obj) -> True when obj is verified data (and untracked where it is a container)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_retire",
                                    "Exited processes out of the cyclic garbage collector.", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__retire(void) {
    return PyModule_Create(&module);
}
