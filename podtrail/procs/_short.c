/* The process stage's two short paths in one C call each (issue 14, fourth pass).
 *
 * Why: a short-lived child's exec and its exit are what a busy node sends most, and their
 * Python short paths were ~100 bytecode-level steps per event. This does the same steps on the
 * same objects: the table's Proc entries, their ``extra`` memos, the event dict, the entity.
 *
 * Reference (kept, tested equal on hypothesis streams): ``podtrail/procs/stage.py``
 * ``ProcessStage.apply`` for
 *   - an exec: ``_on_exec`` then ``_exec_short`` when the parent's part and the last child's
 *     memo hold (what siblings of one parent have in common);
 *   - an exit or a non-process event: ``on_exit`` then ``_again``.
 * ``apply(stage, ev)`` returns True when it did the whole job, False when it touched nothing
 * (every check comes before the first write) and the Python path must run. Anything unusual
 * (a type not exactly the expected one, an unset slot, a memo not made yet) is a False.
 *
 * Proc, Entity and EventDict are __slots__ classes: their slots are read and written at the
 * offsets their member descriptors give (checked to be object slots at setup).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <time.h>

static PyTypeObject *Proc_T, *Entity_T, *EventDict_T;
static PyObject *ProcessKind, *ShapeNames, *ShapeKeys, *FilledButCwd; /* tuple of names */
static long long SameStart;
static Py_ssize_t SharedMax;

enum { P_PID, P_START, P_PARENT, P_PPID, P_PATH, P_CMD, P_COMM, P_CWD, P_UID, P_CG, P_EXITED, P_EXTRA, P_N };
static const char *const PROC_SLOTS[P_N] = {"pid", "start_ns", "parent", "ppid", "path", "cmdline", "comm", "cwd",
                                            "uid", "cgroup_id", "exited_at", "extra"};
static Py_ssize_t poff[P_N];
enum { E_KIND, E_NAMES, E_VALS, E_KEYS, E_MEMO, E_N };
static const char *const ENT_SLOTS[E_N] = {"kind", "names", "vals", "keys", "memo"};
static Py_ssize_t eoff[E_N];
static Py_ssize_t ctx_off;

#define SLOT(o, off) (*(PyObject **)((char *)(o) + (off)))

static void slot_set(PyObject *o, Py_ssize_t off, PyObject *v) {
    Py_INCREF(v);
    Py_XSETREF(SLOT(o, off), v);
}

static int slot_offset(PyTypeObject *tp, const char *name, Py_ssize_t *out) {
    PyObject *d = PyDict_GetItemString(tp->tp_dict, name);
    if (d == NULL || !PyObject_TypeCheck(d, &PyMemberDescr_Type) ||
        ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not an object slot", tp->tp_name, name);
        return -1;
    }
    *out = ((PyMemberDescrObject *)d)->d_member->offset;
    return 0;
}

/* interned attribute and key names */
static PyObject *s_table, *s_by_pid, *s_names, *s_epoch, *s_gen, *s_exited, *s_append, *s_held;
static PyObject *k_pid, *k_event_type, *k_action, *k_result, *k_path, *k_cmdline, *k_cwd, *k_uid, *k_comm,
    *k_cgroup_id, *k_mono_ns, *k_ppid, *k_start_ns, *k_mnt_ns, *k_stdin, *k_user, *k_runtime_setup,
    *k_as_ancestor, *k_as_parent, *k_child, *k_key, *k_ancestors, *k_ctx, *k_process_key, *k_parent_key,
    *k_parent_path, *k_parent_cmdline, *v_process, *v_exec, *v_exit, *v_empty, *v_zero;

static int intern_all(void) {
#define I(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return -1;
    I(s_table, "table") I(s_by_pid, "by_pid") I(s_epoch, "_epoch")
    I(s_gen, "_gen") I(s_names, "_names") I(s_exited, "_exited") I(s_append, "append") I(s_held, "_held")
    I(k_pid, "pid") I(k_event_type, "event_type") I(k_action, "action") I(k_result, "result") I(k_path, "path")
    I(k_cmdline, "cmdline") I(k_cwd, "cwd") I(k_uid, "uid") I(k_comm, "comm") I(k_cgroup_id, "cgroup_id")
    I(k_mono_ns, "mono_ns") I(k_ppid, "ppid") I(k_start_ns, "start_ns") I(k_mnt_ns, "mnt_ns") I(k_stdin, "stdin")
    I(k_user, "user") I(k_runtime_setup, "runtime_setup") I(k_as_ancestor, "as_ancestor")
    I(k_as_parent, "as_parent") I(k_child, "child") I(k_key, "key") I(k_ancestors, "ancestors") I(k_ctx, "ctx")
    I(k_process_key, "process_key") I(k_parent_key, "parent_key") I(k_parent_path, "parent_path")
    I(k_parent_cmdline, "parent_cmdline") I(v_process, "process") I(v_exec, "exec") I(v_exit, "exit")
    I(v_empty, "")
#undef I
    v_zero = PyLong_FromLong(0);
    return v_zero == NULL ? -1 : 0;
}

static PyObject *setup(PyObject *self, PyObject *args) {
    PyObject *proc, *ent, *evd, *kind, *names, *keys, *filled;
    long long same;
    Py_ssize_t shared_max;
    if (!PyArg_ParseTuple(args, "O!O!O!OO!O!O!Ln", &PyType_Type, &proc, &PyType_Type, &ent, &PyType_Type, &evd, &kind,
                          &PyTuple_Type, &names, &PyFrozenSet_Type, &keys, &PyTuple_Type, &filled, &same, &shared_max))
        return NULL;
    for (int i = 0; i < P_N; i++)
        if (slot_offset((PyTypeObject *)proc, PROC_SLOTS[i], &poff[i]) < 0) return NULL;
    for (int i = 0; i < E_N; i++)
        if (slot_offset((PyTypeObject *)ent, ENT_SLOTS[i], &eoff[i]) < 0) return NULL;
    if (slot_offset((PyTypeObject *)evd, "_ctx", &ctx_off) < 0) return NULL;
    if (PyTuple_GET_SIZE(names) != 10) {
        PyErr_SetString(PyExc_ValueError, "the process context has ten names");
        return NULL;
    }
    Py_INCREF(proc); Py_INCREF(ent); Py_INCREF(evd); Py_INCREF(kind); Py_INCREF(names); Py_INCREF(keys);
    Py_INCREF(filled);
    Py_XSETREF(Proc_T, (PyTypeObject *)proc);
    Py_XSETREF(Entity_T, (PyTypeObject *)ent);
    Py_XSETREF(EventDict_T, (PyTypeObject *)evd);
    Py_XSETREF(ProcessKind, kind);
    Py_XSETREF(ShapeNames, names);
    Py_XSETREF(ShapeKeys, keys);
    Py_XSETREF(FilledButCwd, filled);
    SameStart = same;
    SharedMax = shared_max;
    Py_RETURN_NONE;
}

/* ev.get(key) as a borrowed reference, NULL when absent (a dict lookup error is cleared:
 * the caller then takes the Python path, which raises it again). */
static inline PyObject *get(PyObject *ev, PyObject *key) {
    PyObject *v = PyDict_GetItemWithError(ev, key);
    if (v == NULL) PyErr_Clear();
    return v;
}

static inline int is_proc(PyObject *o) { return o != NULL && Py_TYPE(o) == Proc_T; }

/* A Proc's extra dict, or NULL when it is not exactly a dict. */
static inline PyObject *extra_of(PyObject *p) {
    PyObject *x = SLOT(p, poff[P_EXTRA]);
    return x != NULL && PyDict_CheckExact(x) ? x : NULL;
}

/* A new entity of the process kind with ``vals`` (stolen), as ``context.whole`` makes it. */
static PyObject *whole(PyObject *vals) {
    PyObject *e = Entity_T->tp_alloc(Entity_T, 0);
    if (e == NULL) {
        Py_DECREF(vals);
        return NULL;
    }
    slot_set(e, eoff[E_KIND], ProcessKind);
    SLOT(e, eoff[E_VALS]) = vals;
    slot_set(e, eoff[E_MEMO], Py_None);
    slot_set(e, eoff[E_NAMES], ShapeNames);
    slot_set(e, eoff[E_KEYS], ShapeKeys);
    return e;
}

/* ev._ctx = (ent.keys, ent), as the first stage to attach anything (only for an EventDict). */
static int attach_first(PyObject *ev, PyObject *ent) {
    if (Py_TYPE(ev) != EventDict_T) return 0;
    PyObject *c = PyTuple_Pack(2, SLOT(ent, eoff[E_KEYS]), ent);
    if (c == NULL) return -1;
    Py_XSETREF(SLOT(ev, ctx_off), c);
    return 0;
}

/* ``context.shared_text``: a new reference to ``s`` interned when it is short enough. */
static PyObject *shared(PyObject *s) {
    Py_INCREF(s);
    if (PyUnicode_GET_LENGTH(s) <= SharedMax) PyUnicode_InternInPlace(&s);
    return s;
}

/* The decimal digits of ``v`` at ``end`` backwards (what str(int) writes); returns the start. */
static char *decimal(char *end, long long v) {
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--end = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) *--end = '-';
    return end;
}

/* f"{pid}:{start_ns}" (``Proc.key``): written in a buffer when both fit in 64 bits. */
static PyObject *proc_key(PyObject *pid, PyObject *start) {
    if (PyLong_CheckExact(pid) && PyLong_CheckExact(start)) {
        int o1, o2;
        long long a = PyLong_AsLongLongAndOverflow(pid, &o1), b = PyLong_AsLongLongAndOverflow(start, &o2);
        if (!o1 && !o2 && !PyErr_Occurred()) {
            char buf[48], *end = buf + sizeof buf;
            char *p = decimal(end, b);
            *--p = ':';
            p = decimal(p, a);
            return PyUnicode_FromStringAndSize(p, end - p);
        }
        PyErr_Clear();
    }
    return PyUnicode_FromFormat("%S:%S", pid, start);
}

static inline int eq(PyObject *a, PyObject *b) { return PyObject_RichCompareBool(a, b, Py_EQ); }

/* A non-empty str (what ``not x`` rejects for the strings and lists here). */
static inline int full_str(PyObject *o) { return o != NULL && PyUnicode_CheckExact(o) && PyUnicode_GET_LENGTH(o) > 0; }

#define SET(d, k, v) if (PyDict_SetItem((d), (k), (v)) < 0) goto fail

/* The parent's part of the event, in _fill's order (both short paths end with it). */
static int parent_fields(PyObject *ev, PyObject *ppid, PyObject *pkey, PyObject *ppath, PyObject *pcmd, PyObject *anc) {
    SET(ev, k_ppid, ppid);
    SET(ev, k_parent_key, pkey);
    SET(ev, k_parent_path, ppath);
    SET(ev, k_parent_cmdline, pcmd);
    SET(ev, k_ancestors, anc);
    return 0;
fail:
    return -1;
}

/* ``_on_exec`` + ``_exec_short`` for an eBPF exec of a child whose parent's part and last
 * child's memo hold. 1: done; 0: nothing touched; -1: error. */
static int exec_short(PyObject *stage, PyObject *ev, PyObject *pid) {
    int r = 0;
    PyObject *table = NULL, *by_pid = NULL, *epoch = NULL, *gen = NULL, *key = NULL, *newsib = NULL, *names = NULL;
    int made = 0;
    PyObject *res = get(ev, k_result);
    if (res != NULL && res != Py_None) {
        if (!PyLong_CheckExact(res)) return 0;
        if (_PyLong_Sign(res) < 0) return 0;
    }
    PyObject *path = get(ev, k_path), *cmd = get(ev, k_cmdline), *cwd = get(ev, k_cwd), *uid = get(ev, k_uid);
    if (path == NULL || !PyUnicode_CheckExact(path) || cmd == NULL || !PyUnicode_CheckExact(cmd) || !full_str(cwd)
        || uid == NULL || !PyLong_CheckExact(uid))
        return 0;
    if (PyUnicode_GET_LENGTH(path) > 0 && PyUnicode_READ_CHAR(path, 0) != '/') return 0; /* relative: resolved in Python */
    PyObject *comm = get(ev, k_comm), *cg = get(ev, k_cgroup_id), *mono = get(ev, k_mono_ns);
    PyObject *ppid = get(ev, k_ppid), *start = get(ev, k_start_ns), *mnt = get(ev, k_mnt_ns);
    if (comm == NULL || comm == Py_None || (PyUnicode_CheckExact(comm) && PyUnicode_GET_LENGTH(comm) == 0)) comm = v_empty;
    else if (!PyUnicode_CheckExact(comm)) return 0;
    if (cg == NULL || cg == Py_None) cg = v_zero;
    else if (!PyLong_CheckExact(cg)) return 0;
    else if (_PyLong_Sign(cg) == 0) cg = v_zero;
    if (mono == NULL || !PyLong_CheckExact(mono) || _PyLong_Sign(mono) == 0) return 0;
    if (start == NULL || !PyLong_CheckExact(start) || mnt == NULL || !PyLong_CheckExact(mnt) || _PyLong_Sign(mnt) == 0)
        return 0;
    if (ppid != NULL && ppid != Py_None && !PyLong_CheckExact(ppid)) return 0;
    int has_stdin = PyDict_Contains(ev, k_stdin), has_user = PyDict_Contains(ev, k_user);
    if (has_stdin < 0 || has_user < 0) return -1;
    if (!has_stdin || has_user) return 0;
    PyObject *setup_ = get(ev, k_runtime_setup);
    if (setup_ != NULL && setup_ != Py_None && setup_ != Py_False) return 0;

    table = PyObject_GetAttr(stage, s_table);
    if (table == NULL) goto fail;
    by_pid = PyObject_GetAttr(table, s_by_pid);
    if (by_pid == NULL) goto fail;
    if (!PyDict_CheckExact(by_pid)) goto out;
    PyObject *p = get(by_pid, pid); /* borrowed; the table keeps it */
    if (p != NULL) {
        if (!is_proc(p)) goto out;
        PyObject *px = extra_of(p);
        if (px == NULL) goto out;
        int anc_ = PyDict_Contains(px, k_as_ancestor);
        if (anc_ < 0) goto fail;
        if (anc_) goto out; /* an ancestor's image changes: Python */
        PyObject *exited = SLOT(p, poff[P_EXITED]), *pstart = SLOT(p, poff[P_START]);
        if (exited == NULL || pstart == NULL || !PyLong_CheckExact(pstart)) goto out;
        if (exited != Py_None) p = NULL;
        else {
            int of1, of2;
            long long a = PyLong_AsLongLongAndOverflow(pstart, &of1), b = PyLong_AsLongLongAndOverflow(start, &of2);
            if (of1 || of2 || (a == -1 && PyErr_Occurred()) || (b == -1 && PyErr_Occurred())) {
                PyErr_Clear();
                goto out;
            }
            if ((a > b ? (unsigned long long)a - (unsigned long long)b : (unsigned long long)b - (unsigned long long)a)
                > (unsigned long long)SameStart)
                p = NULL; /* a new process under a reused pid */
        }
    }
    PyObject *parent;
    if (p == NULL) {
        if (ppid == NULL || ppid == Py_None || _PyLong_Sign(ppid) == 0) goto out;
        parent = get(by_pid, ppid);
    } else {
        parent = SLOT(p, poff[P_PARENT]);
    }
    if (!is_proc(parent) || parent == p) goto out; /* (its own parent: the clear below would free the parent's part) */
    PyObject *pext = extra_of(parent), *ppid_of_parent = SLOT(parent, poff[P_PID]);
    if (pext == NULL || ppid_of_parent == NULL) goto out;
    epoch = PyObject_GetAttr(stage, s_epoch);
    gen = PyObject_GetAttr(stage, s_gen);
    if (epoch == NULL || gen == NULL) goto fail;
    PyObject *up = get(pext, k_as_parent);
    if (up == NULL || !PyTuple_CheckExact(up) || PyTuple_GET_SIZE(up) != 5) goto out;
    int same = eq(PyTuple_GET_ITEM(up, 0), epoch);
    if (same <= 0) goto checked;
    PyObject *ppath = PyTuple_GET_ITEM(up, 1), *pcmd = PyTuple_GET_ITEM(up, 2), *pkey = PyTuple_GET_ITEM(up, 3),
             *anc = PyTuple_GET_ITEM(up, 4);
    if (!full_str(ppath) || !full_str(pcmd) || !PyList_CheckExact(anc) || PyList_GET_SIZE(anc) == 0) goto out;
    /* the last child's (memo generation, mnt_ns, uid, name, path, cmdline, cwd), or a new one
     * made from the user names memo (``_name``'s first answer; a name not there: Python asks) */
    PyObject *sib = get(pext, k_child);
    if (sib != NULL && PyTuple_CheckExact(sib) && PyTuple_GET_SIZE(sib) == 7) {
        PyObject *const *sv = &PyTuple_GET_ITEM(sib, 0);
        if ((same = eq(sv[0], gen)) < 0 || (same && (same = eq(sv[1], mnt)) < 0) || (same && (same = eq(sv[2], uid)) < 0)
            || (same && (same = eq(sv[4], path)) < 0) || (same && (same = eq(sv[5], cmd)) < 0)
            || (same && (same = eq(sv[6], cwd)) < 0))
            goto fail;
        if (same) {
            Py_INCREF(sib);
            newsib = sib;
        }
    } else if (sib != NULL) {
        goto out;
    }
    if (newsib == NULL) {
        names = PyObject_GetAttr(stage, s_names);
        if (names == NULL) goto fail;
        if (!PyDict_CheckExact(names)) goto out;
        PyObject *k = PyTuple_Pack(2, mnt, uid);
        if (k == NULL) goto fail;
        PyObject *nm = PyDict_GetItemWithError(names, k);
        Py_DECREF(k);
        if (nm == NULL && PyErr_Occurred()) goto fail;
        if (!full_str(nm)) goto out;
        PyObject *ipath = shared(path), *icmd = shared(cmd), *icwd = shared(cwd);
        if (ipath && icmd && icwd) newsib = PyTuple_Pack(7, gen, mnt, uid, nm, ipath, icmd, icwd);
        Py_XDECREF(ipath); Py_XDECREF(icmd); Py_XDECREF(icwd);
        if (newsib == NULL) goto fail;
        made = 1;
    }
    PyObject *const *sv = &PyTuple_GET_ITEM(newsib, 0);
    PyObject *name = sv[3];
    if (!full_str(name)) goto out;
    if (p != NULL) { /* the key of the entry itself (Proc.key) */
        if (SLOT(p, poff[P_PID]) == NULL) goto out;
        key = proc_key(SLOT(p, poff[P_PID]), SLOT(p, poff[P_START]));
    } else {
        key = proc_key(pid, start);
    }
    if (key == NULL) goto fail;
    /* -- every check passed: from here on, ProcessTable.on_exec and _exec_short's writes -- */
    PyObject *ext;
    if (p == NULL) {
        p = Proc_T->tp_alloc(Proc_T, 0);
        if (p == NULL) goto fail;
        ext = _PyDict_NewPresized(6); /* the six names set below: no resize */
        if (ext == NULL) {
            Py_DECREF(p);
            goto fail;
        }
        slot_set(p, poff[P_PID], pid);
        slot_set(p, poff[P_START], start);
        slot_set(p, poff[P_PARENT], parent);
        slot_set(p, poff[P_PPID], ppid);
        slot_set(p, poff[P_PATH], path);
        slot_set(p, poff[P_CMD], cmd);
        slot_set(p, poff[P_COMM], comm);
        slot_set(p, poff[P_CWD], cwd);
        slot_set(p, poff[P_UID], uid);
        slot_set(p, poff[P_CG], cg);
        slot_set(p, poff[P_EXITED], Py_None);
        SLOT(p, poff[P_EXTRA]) = ext;
        int bad = PyDict_SetItem(by_pid, pid, p);
        Py_DECREF(p); /* the table holds it */
        if (bad < 0) goto fail;
    } else {
        slot_set(p, poff[P_PATH], path);
        slot_set(p, poff[P_CMD], cmd);
        slot_set(p, poff[P_COMM], comm);
        slot_set(p, poff[P_UID], uid);
        slot_set(p, poff[P_CG], cg);
        ext = SLOT(p, poff[P_EXTRA]);
        PyDict_Clear(ext);
        slot_set(p, poff[P_CWD], cwd);
    }
    SET(ext, k_mnt_ns, mnt);
    SET(ext, k_key, key);
    if (made) SET(pext, k_child, newsib);
    SET(ext, k_user, name);
    SET(ext, k_uid, uid);
    SET(ext, k_ancestors, anc);
    SET(ev, k_process_key, key);
    SET(ev, k_user, name);
    if (parent_fields(ev, ppid_of_parent, pkey, ppath, pcmd, anc) < 0) goto fail;
    PyObject *vals = PyTuple_Pack(10, key, ppid_of_parent, pkey, sv[4], sv[5], sv[6], name, ppath, pcmd, anc);
    if (vals == NULL) goto fail;
    PyObject *ent = whole(vals);
    if (ent == NULL) goto fail;
    int bad = PyDict_SetItem(ext, k_ctx, ent) < 0 || attach_first(ev, ent) < 0;
    Py_DECREF(ent);
    if (bad) goto fail;
    r = 1;
    goto out;
checked:
    if (same < 0) goto fail;
out:
    Py_XDECREF(table); Py_XDECREF(by_pid); Py_XDECREF(epoch); Py_XDECREF(gen);
    Py_XDECREF(key); Py_XDECREF(newsib); Py_XDECREF(names);
    return r;
fail:
    r = -1;
    goto out;
}

/* ``on_exit`` (for an exit) + ``_again``. 1: done; 0: nothing touched; -1: error. */
static int again(PyObject *stage, PyObject *ev, PyObject *pid, int exit_) {
    int r = 0, c;
    PyObject *table = PyObject_GetAttr(stage, s_table), *by_pid = NULL;
    if (table == NULL) return -1;
    by_pid = PyObject_GetAttr(table, s_by_pid);
    if (by_pid == NULL) goto fail;
    if (!PyDict_CheckExact(by_pid)) goto out;
    PyObject *p = get(by_pid, pid);
    if (!is_proc(p)) goto out;
    PyObject *ext = extra_of(p), *parent = SLOT(p, poff[P_PARENT]);
    if (ext == NULL || !is_proc(parent)) goto out;
    PyObject *ent = get(ext, k_ctx);
    if (ent == NULL || Py_TYPE(ent) != Entity_T) goto out;
    PyObject *vals = SLOT(ent, eoff[E_VALS]);
    if (vals == NULL || !PyTuple_CheckExact(vals) || PyTuple_GET_SIZE(vals) != 10) goto out;
    PyObject *const *v = &PyTuple_GET_ITEM(vals, 0);
    PyObject *key = v[0], *ppid = v[1], *pkey = v[2], *path = v[3], *cmd = v[4], *cwd = v[5], *user = v[6],
             *ppath = v[7], *pcmd = v[8], *anc = v[9];
    PyObject *uid = get(ev, k_uid), *own_cwd = get(ev, k_cwd);
    if (uid == NULL || !PyLong_CheckExact(uid)) goto out;
    PyObject *xuid = get(ext, k_uid), *xuser = get(ext, k_user);
    if (xuid == NULL || xuser == NULL) goto out; /* None != uid, None != user (user is never None) */
    if ((c = eq(xuid, uid)) <= 0 || (c = eq(xuser, user)) <= 0) goto checked;
    if ((c = PyObject_IsTrue(user)) <= 0 || (c = PyObject_IsTrue(path)) <= 0) goto checked;
    PyObject *pp = SLOT(p, poff[P_PATH]), *pc = SLOT(p, poff[P_CMD]), *pw = SLOT(p, poff[P_CWD]);
    PyObject *qpid = SLOT(parent, poff[P_PID]), *qp = SLOT(parent, poff[P_PATH]), *qc = SLOT(parent, poff[P_CMD]);
    if (pp == NULL || pc == NULL || pw == NULL || qpid == NULL || qp == NULL || qc == NULL) goto out;
    if ((c = eq(pp, path)) <= 0 || (c = PyObject_IsTrue(cmd)) <= 0 || (c = eq(pc, cmd)) <= 0
        || (c = PyObject_IsTrue(cwd)) <= 0)
        goto checked;
    int own = 0;
    if (own_cwd != NULL && (own = PyObject_IsTrue(own_cwd)) < 0) goto fail;
    if ((c = eq(own ? own_cwd : pw, cwd)) <= 0 || (c = eq(qpid, ppid)) <= 0 || (c = PyObject_IsTrue(ppath)) <= 0
        || (c = eq(qp, ppath)) <= 0 || (c = PyObject_IsTrue(pcmd)) <= 0 || (c = eq(qc, pcmd)) <= 0
        || (c = PyObject_IsTrue(anc)) <= 0)
        goto checked;
    if (get(ext, k_ancestors) != anc) goto out;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(FilledButCwd); i++) {
        if ((c = PyDict_Contains(ev, PyTuple_GET_ITEM(FilledButCwd, i))) != 0) {
            c = c < 0 ? -1 : 0;
            goto checked;
        }
    }
    /* -- every check passed: on_exit's and _again's writes -- */
    if (exit_ && SLOT(p, poff[P_EXITED]) == Py_None) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts); /* time.monotonic()'s clock */
        PyObject *now = PyFloat_FromDouble((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
        if (now == NULL) goto fail;
        Py_XSETREF(SLOT(p, poff[P_EXITED]), now);
        PyObject *q = PyObject_GetAttr(table, s_exited);
        if (q == NULL) goto fail;
        PyObject *done = PyObject_CallMethodOneArg(q, s_append, p);
        Py_DECREF(q);
        if (done == NULL) goto fail;
        Py_DECREF(done);
    }
    SET(ev, k_process_key, key);
    SET(ev, k_path, path);
    SET(ev, k_cmdline, cmd);
    if (!own) SET(ev, k_cwd, cwd);
    SET(ev, k_user, user);
    if (parent_fields(ev, ppid, pkey, ppath, pcmd, anc) < 0) goto fail;
    if (attach_first(ev, ent) < 0) goto fail;
    r = 1;
    goto out;
checked:
    if (c < 0) goto fail;
out:
    Py_XDECREF(table); Py_XDECREF(by_pid);
    return r;
fail:
    r = -1;
    goto out;
}

static PyObject *apply(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "apply(stage, ev)");
        return NULL;
    }
    if (Proc_T == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "setup() first");
        return NULL;
    }
    PyObject *stage = args[0], *ev = args[1];
    if (!PyDict_Check(ev)) Py_RETURN_FALSE;
    PyObject *pid = get(ev, k_pid);
    if (pid == NULL || !PyLong_CheckExact(pid)) Py_RETURN_FALSE;
    PyObject *et = get(ev, k_event_type);
    int r;
    if (et == NULL || !PyUnicode_CheckExact(et)) Py_RETURN_FALSE;
    if (!_PyUnicode_EQ(et, v_process)) {
        r = again(stage, ev, pid, 0);
    } else {
        PyObject *action = get(ev, k_action);
        if (action == NULL || !PyUnicode_CheckExact(action)) Py_RETURN_FALSE;
        if (_PyUnicode_EQ(action, v_exec)) r = exec_short(stage, ev, pid);
        else if (_PyUnicode_EQ(action, v_exit)) r = again(stage, ev, pid, 1);
        else r = 0;
    }
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}

/* ``ProcessStage.process`` but its ``out`` call, for the pipeline's C chain: ``apply``, when the
 * stage would not hold the event (a process event; or none held, and ``apply``'s later-event
 * path needs the pid's entry in the table, so ``_unknown`` is False). True: done; False: nothing
 * touched (``process`` itself then runs). */
static PyObject *process(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "process(stage, ev)");
        return NULL;
    }
    PyObject *ev = args[1];
    if (!PyDict_Check(ev)) Py_RETURN_FALSE;
    PyObject *et = get(ev, k_event_type);
    if (et == NULL || !PyUnicode_CheckExact(et) || !_PyUnicode_EQ(et, v_process)) {
        PyObject *held = PyObject_GetAttr(args[0], s_held);
        if (held == NULL) return NULL;
        Py_ssize_t n = PyObject_Size(held);
        Py_DECREF(held);
        if (n < 0) return NULL;
        if (n > 0) Py_RETURN_FALSE;
    }
    return apply(self, args, nargs);
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS, "setup(Proc, Entity, EventDict, PROCESS_CTX, names, keys, filled_but_cwd, same_start, shared_text_max)"},
    {"apply", (PyCFunction)(void (*)(void))apply, METH_FASTCALL,
     "apply(stage, ev) -> bool: the exec or later-event short path done (True), or nothing touched (False)"},
    {"process", (PyCFunction)(void (*)(void))process, METH_FASTCALL,
     "process(stage, ev) -> bool: ProcessStage.process but out: apply when nothing is held for it, or nothing touched"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_short", "The process stage's short paths in C.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__short(void) {
    if (intern_all() < 0) return NULL;
    return PyModule_Create(&module);
}
