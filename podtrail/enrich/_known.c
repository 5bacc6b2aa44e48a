/* The container and Kubernetes stages' known-subject short paths in one C call each, with the
 * step both end in: attaching the context entity (issue 14, fourth pass).
 *
 * Why: every event of a known cgroup (container stage) or a known container or the host (k8s
 * stage) is one lookup, one identity check, one dict update and one attach; in Python that was
 * a few dozen bytecode steps and a call of ``context.put`` per stage and event.
 *
 * References (kept, tested equal): ``podtrail/enrich/container.py`` ``ContainerStage.apply``'s
 * first branch (``container``), ``podtrail/enrich/k8s/stage.py`` ``K8sStage.process``'s first
 * branch (``pod``, without the ``out`` call), ``podtrail/model/context.py`` ``put`` (``put``:
 * its common cases here, the rest by calling the Python function itself). ``container`` and
 * ``pod`` return True when they did the whole job, False when they touched nothing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <time.h>

static PyTypeObject *EventDict_T, *Entity_T;
static PyObject *py_put, *unions; /* context.put and context._UNIONS */
static Py_ssize_t ctx_off, kind_off, keys_off;
static PyObject *s_by_cgroup, *s_index, *s_known, *s_last_seen, *s_known_map, *s_cache, *s_by_container, *s_ips,
    *k_cgroup_id, *k_cgroup_path, *k_container_id, *k_node_name, *k_pod_uid, *k_event_type, *v_socket, *v_empty;

#define SLOT(o, off) (*(PyObject **)((char *)(o) + (off)))

static int slot_offset(PyObject *tp, const char *name, Py_ssize_t *out) {
    PyObject *d = PyDict_GetItemString(((PyTypeObject *)tp)->tp_dict, name);
    if (d == NULL || !PyObject_TypeCheck(d, &PyMemberDescr_Type) ||
        ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not an object slot", ((PyTypeObject *)tp)->tp_name, name);
        return -1;
    }
    *out = ((PyMemberDescrObject *)d)->d_member->offset;
    return 0;
}

static PyObject *get(PyObject *d, PyObject *key) {
    PyObject *v = PyDict_GetItemWithError(d, key);
    if (v == NULL) PyErr_Clear();
    return v;
}

/* ev._ctx = t (stolen). */
static int set_ctx(PyObject *ev, PyObject *t) {
    if (t == NULL) return -1;
    Py_XSETREF(SLOT(ev, ctx_off), t);
    return 0;
}

static inline int is_entity(PyObject *o) { return o != NULL && Py_TYPE(o) == Entity_T; }

/* context.put(ev, ent): 0 or -1. */
static int put(PyObject *ev, PyObject *ent) {
    if (Py_TYPE(ev) != EventDict_T) return 0;
    if (!is_entity(ent) || SLOT(ent, kind_off) == NULL || SLOT(ent, keys_off) == NULL) goto python;
    PyObject *cur = SLOT(ev, ctx_off), *keys = SLOT(ent, keys_off), *kind = SLOT(ent, kind_off);
    if (cur == NULL) return set_ctx(ev, PyTuple_Pack(2, keys, ent));
    if (!PyTuple_CheckExact(cur)) goto python;
    Py_ssize_t n = PyTuple_GET_SIZE(cur);
    if (n != 2 && n != 3) goto python;
    for (Py_ssize_t i = 1; i < n; i++) {
        PyObject *e = PyTuple_GET_ITEM(cur, i);
        if (!is_entity(e) || SLOT(e, kind_off) == kind) goto python;
    }
    PyObject *k = PyTuple_Pack(2, PyTuple_GET_ITEM(cur, 0), keys);
    if (k == NULL) return -1;
    PyObject *u = PyDict_GetItemWithError(unions, k);
    Py_DECREF(k);
    if (u == NULL) {
        if (PyErr_Occurred()) return -1;
        goto python;
    }
    if (n == 2) return set_ctx(ev, PyTuple_Pack(3, u, PyTuple_GET_ITEM(cur, 1), ent));
    return set_ctx(ev, PyTuple_Pack(4, u, PyTuple_GET_ITEM(cur, 1), PyTuple_GET_ITEM(cur, 2), ent));
python: {
    PyObject *r = PyObject_CallFunctionObjArgs(py_put, ev, ent, NULL);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}
}

/* None of ``names`` (a tuple) in ``ev``: 1, 0, or -1 on error. */
static int disjoint(PyObject *ev, PyObject *names) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
        int c = PyDict_Contains(ev, PyTuple_GET_ITEM(names, i));
        if (c != 0) return c < 0 ? -1 : 0;
    }
    return 1;
}

static int ready(PyObject *const *args, Py_ssize_t nargs, const char *sig) {
    if (nargs != 3 || !PyTuple_CheckExact(args[2])) {
        PyErr_Format(PyExc_TypeError, "%s", sig);
        return 0;
    }
    return 1;
}

static PyObject *done(int r) {
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}

static PyObject *container(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!ready(args, nargs, "container(stage, ev, filled)")) return NULL;
    PyObject *stage = args[0], *ev = args[1], *filled = args[2];
    if (!PyDict_Check(ev)) Py_RETURN_FALSE;
    PyObject *cg = get(ev, k_cgroup_id);
    if (cg == NULL || !PyLong_CheckExact(cg)) Py_RETURN_FALSE;
    int r = 0;
    PyObject *by_cgroup = PyObject_GetAttr(stage, s_by_cgroup), *index = NULL, *now = NULL;
    if (by_cgroup == NULL) return NULL;
    if (!PyDict_CheckExact(by_cgroup)) goto out; /* a stand-in's own get: Python */
    PyObject *hit = get(by_cgroup, cg);
    if (hit == NULL || !PyTuple_CheckExact(hit) || PyTuple_GET_SIZE(hit) != 5) goto out;
    Py_INCREF(hit); /* the known() call below may run arbitrary code */
    index = PyObject_GetAttr(stage, s_index);
    if (index == NULL) goto fail_hit;
    now = PyObject_CallMethodOneArg(index, s_known, cg);
    if (now == NULL) goto fail_hit;
    PyObject *path = PyTuple_GET_ITEM(hit, 0), *ent = PyTuple_GET_ITEM(hit, 1), *info = PyTuple_GET_ITEM(hit, 2),
             *vals = PyTuple_GET_ITEM(hit, 3), *host = PyTuple_GET_ITEM(hit, 4);
    if (now != path) goto out_hit;
    int h = PyObject_IsTrue(host);
    if (h < 0) goto fail_hit;
    if (h) { /* a cgroup of no container: its path, and the entity of it and the event's id */
        if (PyDict_SetItem(ev, k_cgroup_path, path) < 0 || put(ev, ent) < 0) goto fail_hit;
        r = 1;
        goto out_hit;
    }
    int c = disjoint(ev, filled);
    if (c < 0) goto fail_hit;
    if (!c || !PyDict_CheckExact(vals)) goto out_hit;
    if (PyDict_Update(ev, vals) < 0 || put(ev, ent) < 0) goto fail_hit;
    if (info != Py_None) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts); /* time.time()'s clock */
        PyObject *t = PyFloat_FromDouble((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
        if (t == NULL) goto fail_hit;
        int bad = PyObject_SetAttr(info, s_last_seen, t);
        Py_DECREF(t);
        if (bad < 0) goto fail_hit;
    }
    r = 1;
out_hit:
    Py_DECREF(hit);
out:
    Py_DECREF(by_cgroup);
    Py_XDECREF(index);
    Py_XDECREF(now);
    return done(r);
fail_hit:
    r = -1;
    goto out_hit;
}

static PyObject *pod(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!ready(args, nargs, "pod(stage, ev, pod_names)")) return NULL;
    PyObject *stage = args[0], *ev = args[1], *names = args[2];
    if (!PyDict_Check(ev)) Py_RETURN_FALSE;
    PyObject *cid = get(ev, k_container_id);
    if (cid == NULL || cid == Py_None) cid = v_empty;
    else if (!PyUnicode_CheckExact(cid)) Py_RETURN_FALSE; /* (a falsy non-str: Python) */
    else if (PyUnicode_GET_LENGTH(cid) == 0) cid = v_empty;
    int r = 0, c;
    PyObject *map = PyObject_GetAttr(stage, s_known_map), *known = NULL, *pod = NULL, *ips = NULL;
    if (map == NULL) return NULL;
    if (!PyDict_CheckExact(map)) goto out;
    known = get(map, cid);
    if (known == NULL || !PyTuple_CheckExact(known) || PyTuple_GET_SIZE(known) != 4) {
        known = NULL;
        goto out;
    }
    Py_INCREF(known);
    int host = cid == v_empty;
    int go = 0;
    if (host) {
        if ((c = PyDict_Contains(ev, k_node_name)) < 0) goto fail;
        go = !c;
    }
    if (!go) {
        if (host) {
            pod = Py_None;
            Py_INCREF(pod);
        } else { /* K8sStage._pod_of */
            PyObject *cache = PyObject_GetAttr(stage, s_cache);
            if (cache == NULL) goto fail;
            if (cache == Py_None) {
                pod = cache;
            } else {
                pod = PyObject_CallMethodOneArg(cache, s_by_container, cid);
                Py_DECREF(cache);
                if (pod == NULL) goto fail;
            }
        }
        if (PyTuple_GET_ITEM(known, 0) != pod) goto out;
        if ((c = disjoint(ev, names)) <= 0) {
            r = c;
            goto out;
        }
    }
    ips = PyObject_GetAttr(stage, s_ips);
    if (ips == NULL) goto fail;
    if (ips != Py_None) { /* the peer's pod from the IP history: Python */
        PyObject *et = get(ev, k_event_type);
        if (et != NULL && PyUnicode_CheckExact(et) && PyUnicode_Compare(et, v_socket) == 0) goto out;
        if (PyErr_Occurred()) goto fail;
    }
    PyObject *vals = PyTuple_GET_ITEM(known, 3), *uid = PyTuple_GET_ITEM(known, 2);
    if (!PyDict_Check(vals)) goto out;
    if (PyDict_Update(ev, vals) < 0) goto fail;
    if (uid != Py_None) {
        if ((c = PyDict_Contains(ev, k_pod_uid)) < 0) goto fail;
        if (!c && PyDict_SetItem(ev, k_pod_uid, uid) < 0) goto fail;
    }
    if (put(ev, PyTuple_GET_ITEM(known, 1)) < 0) goto fail;
    r = 1;
out:
    Py_DECREF(map);
    Py_XDECREF(known);
    Py_XDECREF(pod);
    Py_XDECREF(ips);
    return done(r);
fail:
    r = -1;
    goto out;
}

static PyObject *put_py(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "put(ev, ent)");
        return NULL;
    }
    if (put(args[0], args[1]) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"container", (PyCFunction)(void (*)(void))container, METH_FASTCALL,
     "container(stage, ev, filled) -> bool: ContainerStage.apply's known-cgroup branch done, or nothing touched"},
    {"pod", (PyCFunction)(void (*)(void))pod, METH_FASTCALL,
     "pod(stage, ev, pod_names) -> bool: K8sStage.process's known-container branch done (but out), or nothing touched"},
    {"put", (PyCFunction)(void (*)(void))put_py, METH_FASTCALL, "context.put(ev, ent)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_known", "The enrichment stages' short paths in C.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__known(void) {
#define I(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL;
    I(s_by_cgroup, "_by_cgroup") I(s_index, "index") I(s_known, "known") I(s_last_seen, "last_seen")
    I(s_known_map, "_known") I(s_cache, "cache") I(s_by_container, "by_container") I(s_ips, "ips")
    I(k_cgroup_id, "cgroup_id") I(k_cgroup_path, "cgroup_path") I(k_container_id, "container_id")
    I(k_node_name, "node_name") I(k_pod_uid, "pod_uid") I(k_event_type, "event_type") I(v_socket, "socket")
    I(v_empty, "")
#undef I
    PyObject *ctx = PyImport_ImportModule("podtrail.model.context");
    if (ctx == NULL) return NULL;
    PyObject *evd = PyObject_GetAttrString(ctx, "EventDict"), *ent = PyObject_GetAttrString(ctx, "Entity");
    py_put = PyObject_GetAttrString(ctx, "put");
    unions = PyObject_GetAttrString(ctx, "_UNIONS");
    Py_DECREF(ctx);
    if (evd == NULL || ent == NULL || py_put == NULL || unions == NULL || !PyType_Check(evd) || !PyType_Check(ent)
        || !PyDict_CheckExact(unions) || slot_offset(evd, "_ctx", &ctx_off) < 0 || slot_offset(ent, "kind", &kind_off) < 0
        || slot_offset(ent, "keys", &keys_off) < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "podtrail.model.context is not what _known expects");
        Py_XDECREF(evd); Py_XDECREF(ent);
        return NULL;
    }
    EventDict_T = (PyTypeObject *)evd;
    Entity_T = (PyTypeObject *)ent;
    return PyModule_Create(&module);
}
