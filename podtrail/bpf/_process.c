/* podtrail.bpf._process: the process sensor's ring-buffer samples (process.bpf.c exec, fork
 * and exit) decoded into podtrail events in C.
 *
 * Why: decoding was 13.5 us of agent CPU per exec in Python (an exec and an exit sample), the
 * largest single stage. Reference: ProcessDecoder.decode in podtrail/bpf/process.py, which
 * stays the fallback; this builds the very same EventDict (same keys in the same order, same
 * values and types, an event_id from the same counter), and tests hold the two equal on real
 * kernel samples and on hostile variants. Samples it does not decode (cgroup samples, unknown
 * kinds, samples shorter than a header, an exe_dev whose major os.makedev refuses) are "not
 * mine": Decoder.decode returns the sample itself and the caller hands it to the Python
 * decoder, so refusals and the on_cgroup side effect have one implementation.
 *
 * The sample layout is mirrored here and compared with process.py's ctypes declaration at
 * load (layout()): a mismatch turns the accelerator off instead of misreading samples.
 * Every length comes from the sample and is checked against its size before a read.
 *
 * The ring-buffer callback (podtrail.bpf._ring) calls the decoder through the capsule in
 * Decoder.sample_fn, without a Python call per sample. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The contract with podtrail.bpf._ring (declared in both files; the capsule name guards it):
 * a new event, or NULL without an error for a sample this decoder leaves to Python, or NULL
 * with an error set. */
#define SAMPLE_DECODER_CAPSULE "podtrail.bpf.sample_decoder"

/* process.bpf.c / task_facts.h (checked against process.py by layout()) */
#define PT_PATH_MAX 1024
#define PT_NAME_MAX 256
#define PT_PATH_BUF (PT_PATH_MAX + PT_NAME_MAX)
#define NAME_BUF 512
#define TTY_LEN 32
#define COMM_LEN 16
enum { EV_EXEC = 1, EV_FORK = 2, EV_EXIT = 3 };
enum {
    F_ARGS_TRUNCATED = 1, F_EXIT_KNOWN = 4, F_NO_ENTER = 8, F_RUNTIME_SETUP = 16,
    F_CWD_TRUNCATED = 32, F_CWD_OUTSIDE = 64, F_EXE_TRUNCATED = 128, F_EXE_OUTSIDE = 256,
    F_FORK_FOLDED = 512,
};
#define NO_CWD (F_CWD_TRUNCATED | F_CWD_OUTSIDE)
#define NO_EXE (F_EXE_TRUNCATED | F_EXE_OUTSIDE)

struct hdr_t {
    uint64_t ktime, cgroup_id, start_ns;
    uint32_t type, pid, tid, ppid, uid, gid;
    int32_t result;
    uint32_t flags;
    char comm[COMM_LEN];
};

struct exec_fixed {
    struct hdr_t h;
    uint64_t exe_ino, exe_dev, cap_effective;
    uint32_t euid, egid, auid, sessionid, mnt_ns, pid_ns, net_ns, argc, args_size;
    uint16_t name_len, cwd_off, exe_off;
    uint8_t fd_kind[3];
    uint8_t drift;
    char tty[TTY_LEN];
    char name[NAME_BUF];
    char cwd[PT_PATH_BUF];
    char exe[PT_PATH_BUF];
};

#define HDR_SIZE sizeof(struct hdr_t)
#define FORK_CWD (HDR_SIZE + 8)
#define FORK_END (FORK_CWD + PT_PATH_MAX)
#define ARGS_OFF (offsetof(struct exec_fixed, exe) + PT_PATH_BUF)

/* the event's keys, in the order ProcessDecoder builds them */
#define KEYS(X) X(event_id) X(event_type) X(action) X(time) X(time_ns) X(hostname) X(path) X(argv) \
    X(cmdline) X(args_truncated) X(result) X(cwd) X(stdin) X(stdout) X(stderr) X(euid) X(auid)     \
    X(session_id) X(cap_effective) X(mnt_ns) X(pid_ns) X(net_ns) X(source) X(pid) X(tid) X(uid)    \
    X(gid) X(ppid) X(comm) X(cgroup_id) X(mono_ns) X(start_ns) X(runtime_setup) X(cwd_truncated)    \
    X(tty) X(exe_path) X(exe_inode) X(exe_dev) X(exe_outside) X(drift) X(drift_reason)             \
    X(fork_folded) X(exit_code) X(offset)
#define DECLARE(k) static PyObject *K_##k;
KEYS(DECLARE)
static PyObject *S_exec, *S_exit, *S_fork, *S_ebpf, *S_empty, *S_space, *S_other, *S_pts, *BILLION;

/* The last value of a field and its object: the next event with the same value shares it
 * (namespaces, users, the executable, the cwd repeat from event to event; ints and strs are
 * immutable, so sharing is only less allocation). */
typedef struct {
    uint64_t v;
    PyObject *o;
} int_cache;

typedef struct {
    Py_ssize_t n;
    char *raw; /* PyMem buffer of cap bytes */
    Py_ssize_t cap;
    PyObject *o;
} text_cache;

enum { C_PPID, C_UID, C_GID, C_EUID, C_AUID, C_SESSION, C_CAP, C_MNT, C_PIDNS, C_NET, C_CGROUP, C_EXE_INO, C_EXE_DEV,
       N_INT_CACHES };
enum { T_COMM, T_CWD, T_PATH, T_EXE, N_TEXT_CACHES };

typedef struct {
    PyObject_HEAD
    PyTypeObject *event_dict; /* the EventDict type */
    /* the keys every event of a kind has, in order (values None): an event starts as a clone
     * of its kind's table (one allocation, no resizes) and gets its values set in place */
    PyObject *tmpl_exec, *tmpl_exec_noargv, *tmpl_fork_exit;
    int_cache ints[N_INT_CACHES];
    text_cache texts[N_TEXT_CACHES];
    PyObject *clock;         /* WallClock: .offset read per sample (it may be resynced) */
    PyObject *seq;           /* podtrail.model.event's counter (ids shared with every source) */
    PyObject *event_type;    /* Kind.PROCESS.value */
    PyObject *hostname;
    PyObject *fd_kinds;      /* tuple of 256 names, by the kernel's u8 */
    PyObject *drift_reasons; /* dict int -> name */
    PyObject *empty_args;
    char prefix[64];         /* the run's event id prefix */
    Py_ssize_t prefix_len;
    Py_ssize_t max_args, keep; /* argv: at most max_args arguments of at most keep bytes */
} Decoder;

/* Kernel bytes to text as kstr does: up to the first NUL, invalid UTF-8 kept visible. */
static PyObject *ktext(const char *p, Py_ssize_t n)
{
    const char *z = memchr(p, 0, (size_t)n);
    return PyUnicode_DecodeUTF8(p, z ? z - p : n, "backslashreplace");
}

static int put(PyObject *ev, PyObject *key, PyObject *value)
{
    if (value == NULL)
        return -1;
    int rc = PyDict_SetItem(ev, key, value);
    Py_DECREF(value);
    return rc;
}

static int put_u64(PyObject *ev, PyObject *key, uint64_t v) { return put(ev, key, PyLong_FromUnsignedLongLong(v)); }

static int put_bool(PyObject *ev, PyObject *key) { return PyDict_SetItem(ev, key, Py_True); }

static PyObject *cached_int(int_cache *c, uint64_t v)
{
    if (c->o == NULL || c->v != v) {
        PyObject *o = PyLong_FromUnsignedLongLong(v);
        if (o == NULL)
            return NULL;
        Py_XSETREF(c->o, o);
        c->v = v;
    }
    return Py_NewRef(c->o);
}

static int put_int(PyObject *ev, PyObject *key, int_cache *c, uint64_t v) { return put(ev, key, cached_int(c, v)); }

/* ktext through a cache: the bytes up to the first NUL of p[:n], decoded as kstr does */
static PyObject *cached_text(text_cache *c, const char *p, Py_ssize_t n)
{
    const char *z = memchr(p, 0, (size_t)n);
    if (z)
        n = z - p;
    if (c->o != NULL && c->n == n && memcmp(c->raw, p, (size_t)n) == 0)
        return Py_NewRef(c->o);
    PyObject *o = PyUnicode_DecodeUTF8(p, n, "backslashreplace");
    if (o == NULL || n > c->cap)
        return o;
    memcpy(c->raw, p, (size_t)n);
    c->n = n;
    Py_XSETREF(c->o, Py_NewRef(o));
    return o;
}

static PyObject *new_id(Decoder *d)
{
    PyObject *n = PyIter_Next(d->seq);
    if (n == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "the event id counter ended");
        return NULL;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(n);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) { /* past 2**64: format it in Python */
        PyErr_Clear();
        PyObject *hex = PyObject_CallMethod(n, "__format__", "s", "x");
        Py_DECREF(n);
        if (hex == NULL)
            return NULL;
        PyObject *out = PyUnicode_FromFormat("%.*s-%U", (int)d->prefix_len, d->prefix, hex);
        Py_DECREF(hex);
        return out;
    }
    Py_DECREF(n);
    char buf[96], hex[17];
    int h = 16;
    do {
        hex[--h] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    memcpy(buf, d->prefix, (size_t)d->prefix_len);
    buf[d->prefix_len] = '-';
    memcpy(buf + d->prefix_len + 1, hex + h, (size_t)(16 - h));
    return PyUnicode_FromStringAndSize(buf, d->prefix_len + 1 + 16 - h);
}

/* The fields every event starts with (new_event's): event_id .. hostname. */
static PyObject *start_event(Decoder *d, PyObject *tmpl, PyObject *action, PyObject *ktime, uint64_t kt)
{
    PyObject *ev = d->event_dict->tp_new(d->event_dict, d->empty_args, NULL);
    if (ev == NULL)
        return NULL;
    if (PyDict_Update(ev, tmpl) < 0) { /* an empty dict updated from a clean one clones its table */
        Py_DECREF(ev);
        return NULL;
    }
    /* time_ns = ktime + clock.offset, time = time_ns // 10**9: in C while they fit, else as ints */
    PyObject *offset = PyObject_GetAttr(d->clock, K_offset), *t = NULL, *secs = NULL;
    int overflow = 0;
    long long off = offset && PyLong_Check(offset) ? PyLong_AsLongLongAndOverflow(offset, &overflow) : 0;
    if (offset != NULL && PyLong_Check(offset) && !overflow && !(off == -1 && PyErr_Occurred())) {
        __int128 ns = (__int128)kt + off;
        if (ns >= 0 && ns <= (__int128)UINT64_MAX) {
            __int128 q = ns / 1000000000;
            t = PyLong_FromUnsignedLongLong((unsigned long long)ns);
            secs = PyLong_FromLongLong((long long)q);
        } else if (ns < 0 && ns >= (__int128)INT64_MIN) {
            __int128 q = ns / 1000000000;
            if (q * 1000000000 != ns)
                q -= 1; /* floor, as // does */
            t = PyLong_FromLongLong((long long)ns);
            secs = PyLong_FromLongLong((long long)q);
        }
    }
    if (t == NULL && offset != NULL && !PyErr_Occurred()) {
        t = PyNumber_Add(ktime, offset);
        secs = t ? PyNumber_FloorDivide(t, BILLION) : NULL;
    }
    Py_XDECREF(offset);
    if (t == NULL || secs == NULL || put(ev, K_event_id, new_id(d)) || PyDict_SetItem(ev, K_event_type, d->event_type) ||
        PyDict_SetItem(ev, K_action, action) || PyDict_SetItem(ev, K_time, secs) ||
        PyDict_SetItem(ev, K_time_ns, t) || PyDict_SetItem(ev, K_hostname, d->hostname)) {
        Py_XDECREF(t);
        Py_XDECREF(secs);
        Py_DECREF(ev);
        return NULL;
    }
    Py_DECREF(t);
    Py_DECREF(secs);
    return ev;
}

/* source .. start_ns: the header's fields, shared by every kind */
static int put_header(Decoder *d, PyObject *ev, const struct hdr_t *h, PyObject *ktime)
{
    PyObject *pid = PyLong_FromUnsignedLong(h->pid);
    /* a process's main thread: one int for both (an exec's and most exits') */
    PyObject *tid = pid == NULL ? NULL : h->tid == h->pid ? Py_NewRef(pid) : PyLong_FromUnsignedLong(h->tid);
    int bad = tid == NULL || PyDict_SetItem(ev, K_source, S_ebpf) || PyDict_SetItem(ev, K_pid, pid) ||
              PyDict_SetItem(ev, K_tid, tid);
    Py_XDECREF(pid);
    Py_XDECREF(tid);
    if (bad || put_int(ev, K_uid, &d->ints[C_UID], h->uid) || put_int(ev, K_gid, &d->ints[C_GID], h->gid) ||
        put_int(ev, K_ppid, &d->ints[C_PPID], h->ppid) ||
        put(ev, K_comm, cached_text(&d->texts[T_COMM], h->comm, COMM_LEN)) ||
        put_int(ev, K_cgroup_id, &d->ints[C_CGROUP], h->cgroup_id) ||
        PyDict_SetItem(ev, K_mono_ns, ktime) || put_u64(ev, K_start_ns, h->start_ns))
        return -1;
    if ((h->flags & F_RUNTIME_SETUP) && put_bool(ev, K_runtime_setup))
        return -1;
    return 0;
}

static PyObject *fork_exit(Decoder *d, const char *raw, size_t size, const struct hdr_t *h)
{
    PyObject *ktime = PyLong_FromUnsignedLongLong(h->ktime);
    if (ktime == NULL)
        return NULL;
    PyObject *ev = start_event(d, d->tmpl_fork_exit, h->type == EV_EXIT ? S_exit : S_fork, ktime, h->ktime);
    if (ev == NULL || put_header(d, ev, h, ktime))
        goto fail;
    uint16_t off = PT_PATH_MAX;
    if (size >= HDR_SIZE + sizeof off)
        memcpy(&off, raw + HDR_SIZE, sizeof off);
    if (off < PT_PATH_MAX && size >= FORK_END) {
        PyObject *cwd = cached_text(&d->texts[T_CWD], raw + FORK_CWD + off, PT_PATH_MAX - off);
        if (cwd == NULL)
            goto fail;
        if (PyUnicode_GET_LENGTH(cwd)) {
            if (put(ev, K_cwd, cwd) || ((h->flags & NO_CWD) && put_bool(ev, K_cwd_truncated)))
                goto fail;
        } else {
            Py_DECREF(cwd);
        }
    }
    if (h->type == EV_EXIT && (h->flags & F_EXIT_KNOWN) && put(ev, K_exit_code, PyLong_FromLong(h->result)))
        goto fail;
    Py_DECREF(ktime);
    return ev;
fail:
    Py_DECREF(ktime);
    Py_XDECREF(ev);
    return NULL;
}

/* posixpath.normpath on bytes (the decoded text's normpath: '/' and '.' are ASCII, so they are
 * the same bytes before and after backslashreplace decoding). out holds n + 2 bytes. */
static Py_ssize_t normpath(const char *p, Py_ssize_t n, char *out, int *starts, int *lens)
{
    if (n == 0) {
        out[0] = '.';
        return 1;
    }
    int initial = p[0] == '/';
    if (initial && n >= 2 && p[1] == '/' && !(n >= 3 && p[2] == '/'))
        initial = 2;
    Py_ssize_t k = 0, i = 0;
    while (i <= n) {
        Py_ssize_t j = i;
        while (j < n && p[j] != '/')
            j++;
        Py_ssize_t len = j - i;
        int dot = len == 1 && p[i] == '.', dotdot = len == 2 && p[i] == '.' && p[i + 1] == '.';
        if (len == 0 || dot) {
            /* skipped */
        } else if (!dotdot || (!initial && k == 0) || (k > 0 && lens[k - 1] == 2 && p[starts[k - 1]] == '.' &&
                                                     p[starts[k - 1] + 1] == '.')) {
            starts[k] = (int)i;
            lens[k++] = (int)len;
        } else if (k > 0) {
            k--;
        }
        i = j + 1;
    }
    Py_ssize_t o = 0;
    for (int s = 0; s < initial; s++)
        out[o++] = '/';
    for (Py_ssize_t c = 0; c < k; c++) {
        if (c)
            out[o++] = '/';
        memcpy(out + o, p + starts[c], (size_t)lens[c]);
        o += lens[c];
    }
    if (o == 0)
        out[o++] = '.';
    return o;
}

/* absolute(name, cwd) of process.py on the sample's bytes: name is relative, cwd non-empty */
static PyObject *absolute(const char *name, Py_ssize_t nlen, const char *cwd, Py_ssize_t clen)
{
    char joined[PT_PATH_MAX + NAME_BUF + 2], out[PT_PATH_MAX + NAME_BUF + 4];
    int starts[PT_PATH_MAX + NAME_BUF + 2], lens[PT_PATH_MAX + NAME_BUF + 2];
    Py_ssize_t n = clen;
    memcpy(joined, cwd, (size_t)clen);
    if (cwd[clen - 1] != '/')
        joined[n++] = '/';
    memcpy(joined + n, name, (size_t)nlen);
    n += nlen;
    Py_ssize_t o = normpath(joined, n, out, starts, lens);
    return PyUnicode_DecodeUTF8(out, o, "backslashreplace");
}

/* split_args of process.py: the first min(argc, pieces) NUL-separated pieces of buf, at most
 * max_args of them, each cut to keep bytes; *cut says whether anything was cut. */
static PyObject *split_args(Decoder *d, const char *buf, Py_ssize_t len, uint32_t argc, int *cut)
{
    Py_ssize_t pieces = 1;
    for (const char *q = buf, *end = buf + len; (q = memchr(q, 0, (size_t)(end - q))) != NULL; q++)
        pieces++;
    Py_ssize_t k = pieces < (Py_ssize_t)argc ? pieces : (Py_ssize_t)argc;
    *cut = 0;
    if (k > d->max_args) {
        k = d->max_args;
        *cut = 1;
    }
    PyObject *argv = PyList_New(k);
    if (argv == NULL)
        return NULL;
    const char *q = buf, *end = buf + len;
    for (Py_ssize_t i = 0; i < k; i++) {
        const char *z = memchr(q, 0, (size_t)(end - q));
        Py_ssize_t n = z ? z - q : end - q;
        if (n > d->keep) {
            *cut = 1;
            n = d->keep;
        }
        PyObject *s = PyUnicode_DecodeUTF8(q, n, "backslashreplace");
        if (s == NULL) {
            Py_DECREF(argv);
            return NULL;
        }
        PyList_SET_ITEM(argv, i, s);
        q = z ? z + 1 : end;
    }
    return argv;
}

/* tty_name: "pts3" -> "pts/3" when everything after "pts" is a digit (str.isdigit) */
static PyObject *tty_name(PyObject *raw)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(raw);
    if (n <= 3 || PyUnicode_Tailmatch(raw, S_pts, 0, 3, -1) != 1)
        return raw;
    int kind = PyUnicode_KIND(raw);
    const void *data = PyUnicode_DATA(raw);
    for (Py_ssize_t i = 3; i < n; i++)
        if (!Py_UNICODE_ISDIGIT(PyUnicode_READ(kind, data, i)))
            return raw;
    PyObject *rest = PyUnicode_Substring(raw, 3, n);
    Py_DECREF(raw);
    if (rest == NULL)
        return NULL;
    PyObject *out = PyUnicode_FromFormat("pts/%U", rest);
    Py_DECREF(rest);
    return out;
}

static PyObject *exec_event(Decoder *d, const char *raw, size_t size)
{
    char pad[ARGS_OFF];
    if (size < ARGS_OFF) { /* a short sample reads as zeros past its end */
        memcpy(pad, raw, size);
        memset(pad + size, 0, ARGS_OFF - size);
        raw = pad;
        size = ARGS_OFF;
    }
    struct exec_fixed e;
    memcpy(&e, raw, offsetof(struct exec_fixed, tty)); /* the numbers; texts are read in place */
    /* the lines read below, fetched side by side (the kernel wrote them on another CPU) */
    if (e.cwd_off < PT_PATH_MAX)
        __builtin_prefetch(raw + offsetof(struct exec_fixed, cwd) + e.cwd_off);
    if (e.exe_off < PT_PATH_MAX)
        __builtin_prefetch(raw + offsetof(struct exec_fixed, exe) + e.exe_off);
    __builtin_prefetch(raw + ARGS_OFF);
    __builtin_prefetch(raw + offsetof(struct exec_fixed, name));
    const char *tty = raw + offsetof(struct exec_fixed, tty), *name = raw + offsetof(struct exec_fixed, name);
    const char *cwd_buf = raw + offsetof(struct exec_fixed, cwd), *exe_buf = raw + offsetof(struct exec_fixed, exe);
    const struct hdr_t *h = &e.h;
    uint64_t major = e.exe_dev >> 20, minor = e.exe_dev & 0xFFFFF;
    if (h->result == 0 && major > INT32_MAX)
        return NULL; /* os.makedev refuses it: the Python decoder's error, counted there */

    PyObject *ktime = NULL, *ev = NULL, *cwd = NULL, *path = NULL, *argv = NULL;
    const char *cwd_p = cwd_buf;
    Py_ssize_t cwd_len = 0;
    if (e.cwd_off < PT_PATH_MAX) {
        cwd_p = cwd_buf + e.cwd_off;
        const char *z = memchr(cwd_p, 0, PT_PATH_MAX - e.cwd_off);
        cwd_len = z ? z - cwd_p : PT_PATH_MAX - e.cwd_off;
    }
    cwd = cached_text(&d->texts[T_CWD], cwd_p, cwd_len);
    const char *nz = memchr(name, 0, NAME_BUF);
    Py_ssize_t name_len = nz ? nz - name : NAME_BUF;
    if (cwd == NULL)
        goto fail;
    path = name_len && name[0] != '/' && cwd_len ? absolute(name, name_len, cwd_p, cwd_len)
                                                 : cached_text(&d->texts[T_PATH], name, name_len);
    if (path == NULL)
        goto fail;
    Py_ssize_t args_len = (Py_ssize_t)size - (Py_ssize_t)ARGS_OFF;
    if (args_len > (Py_ssize_t)e.args_size)
        args_len = e.args_size;
    int cut = 0;
    argv = split_args(d, raw + ARGS_OFF, args_len, e.argc, &cut);
    ktime = PyLong_FromUnsignedLongLong(h->ktime);
    if (argv == NULL || ktime == NULL)
        goto fail;
    ev = start_event(d, (h->flags & F_NO_ENTER) ? d->tmpl_exec_noargv : d->tmpl_exec, S_exec, ktime, h->ktime);
    if (ev == NULL || PyDict_SetItem(ev, K_path, path))
        goto fail;
    if (!(h->flags & F_NO_ENTER) &&
        (PyDict_SetItem(ev, K_argv, argv) || put(ev, K_cmdline, PyUnicode_Join(S_space, argv))))
        goto fail;
    if (PyDict_SetItem(ev, K_args_truncated, (cut || (h->flags & F_ARGS_TRUNCATED)) ? Py_True : Py_False) ||
        put(ev, K_result, PyLong_FromLong(h->result)) || PyDict_SetItem(ev, K_cwd, cwd) ||
        PyDict_SetItem(ev, K_stdin, PyTuple_GET_ITEM(d->fd_kinds, e.fd_kind[0])) ||
        PyDict_SetItem(ev, K_stdout, PyTuple_GET_ITEM(d->fd_kinds, e.fd_kind[1])) ||
        PyDict_SetItem(ev, K_stderr, PyTuple_GET_ITEM(d->fd_kinds, e.fd_kind[2])) ||
        put_int(ev, K_euid, &d->ints[C_EUID], e.euid) || put_int(ev, K_auid, &d->ints[C_AUID], e.auid) ||
        put_int(ev, K_session_id, &d->ints[C_SESSION], e.sessionid) ||
        put_int(ev, K_cap_effective, &d->ints[C_CAP], e.cap_effective) || put_int(ev, K_mnt_ns, &d->ints[C_MNT], e.mnt_ns) ||
        put_int(ev, K_pid_ns, &d->ints[C_PIDNS], e.pid_ns) || put_int(ev, K_net_ns, &d->ints[C_NET], e.net_ns) ||
        put_header(d, ev, h, ktime))
        goto fail;
    if ((h->flags & NO_CWD) && put_bool(ev, K_cwd_truncated))
        goto fail;
    if (tty[0]) {
        PyObject *t = ktext(tty, TTY_LEN);
        t = t ? tty_name(t) : NULL;
        if (t == NULL)
            goto fail;
        if (PyUnicode_GET_LENGTH(t) ? put(ev, K_tty, t) : (Py_DECREF(t), 0))
            goto fail;
    }
    if (h->result == 0) {
        PyObject *exe = e.exe_off < PT_PATH_MAX ? cached_text(&d->texts[T_EXE], exe_buf + e.exe_off, PT_PATH_MAX - e.exe_off)
                                                : Py_NewRef(S_empty);
        /* os.makedev(major, minor), glibc's encoding */
        uint64_t dev = ((major & 0xfffff000ULL) << 32) | ((major & 0xfffULL) << 8) |
                       ((minor & 0xffffff00ULL) << 12) | (minor & 0xffULL);
        if (put(ev, K_exe_path, exe) || put_int(ev, K_exe_inode, &d->ints[C_EXE_INO], e.exe_ino) ||
            put_int(ev, K_exe_dev, &d->ints[C_EXE_DEV], dev))
            goto fail;
        if ((h->flags & NO_EXE) && put_bool(ev, K_exe_outside))
            goto fail;
    }
    if (e.drift) {
        PyObject *key = PyLong_FromLong(e.drift);
        PyObject *reason = key ? PyDict_GetItemWithError(d->drift_reasons, key) : NULL;
        Py_XDECREF(key);
        if (reason == NULL && (key == NULL || PyErr_Occurred()))
            goto fail;
        if (put_bool(ev, K_drift) || PyDict_SetItem(ev, K_drift_reason, reason ? reason : S_other))
            goto fail;
    }
    if ((h->flags & F_FORK_FOLDED) && put_bool(ev, K_fork_folded))
        goto fail;
    Py_DECREF(ktime);
    Py_DECREF(cwd);
    Py_DECREF(path);
    Py_DECREF(argv);
    return ev;
fail:
    Py_XDECREF(ktime);
    Py_XDECREF(cwd);
    Py_XDECREF(path);
    Py_XDECREF(argv);
    Py_XDECREF(ev);
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_SystemError, "process sample decoding failed");
    return NULL;
}

/* The capsule's function: a new event; NULL without an error for a sample that is not mine;
 * NULL with an error when decoding failed (memory). */
static PyObject *decode_sample(PyObject *self, const char *raw, size_t size)
{
    Decoder *d = (Decoder *)self;
    if (d->event_dict == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Decoder used before __init__");
        return NULL;
    }
    if (size < HDR_SIZE)
        return NULL;
    struct hdr_t h;
    memcpy(&h, raw, sizeof h);
    if (h.type == EV_EXEC)
        return exec_event(d, raw, size);
    if (h.type == EV_EXIT || h.type == EV_FORK)
        return fork_exit(d, raw, size, &h);
    return NULL;
}

static PyObject *Decoder_decode(PyObject *self, PyObject *raw)
{
    if (!PyBytes_Check(raw)) {
        PyErr_Format(PyExc_TypeError, "a sample is bytes, not %.100s", Py_TYPE(raw)->tp_name);
        return NULL;
    }
    PyObject *ev = decode_sample(self, PyBytes_AS_STRING(raw), (size_t)PyBytes_GET_SIZE(raw));
    if (ev == NULL && !PyErr_Occurred())
        return Py_NewRef(raw);
    return ev;
}

static int Decoder_init(Decoder *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"event_dict", "clock", "seq", "run_prefix", "event_type", "hostname", "fd_kinds",
                            "drift_reasons", "max_args", "arg_size", NULL};
    PyObject *event_dict, *clock, *seq, *prefix, *event_type, *hostname, *fd_kinds, *drift;
    Py_ssize_t max_args, arg_size;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOUUUO!O!nn:Decoder", names, &event_dict, &clock, &seq, &prefix,
                                     &event_type, &hostname, &PyTuple_Type, &fd_kinds, &PyDict_Type, &drift,
                                     &max_args, &arg_size))
        return -1;
    if (PyTuple_GET_SIZE(fd_kinds) != 256) {
        PyErr_SetString(PyExc_ValueError, "fd_kinds: one name per u8 value (256)");
        return -1;
    }
    for (Py_ssize_t i = 0; i < 256; i++)
        if (!PyUnicode_Check(PyTuple_GET_ITEM(fd_kinds, i))) {
            PyErr_SetString(PyExc_TypeError, "fd_kinds: names are str");
            return -1;
        }
    if (max_args < 0 || arg_size < 1) {
        PyErr_SetString(PyExc_ValueError, "max_args >= 0 and arg_size >= 1");
        return -1;
    }
    Py_ssize_t plen;
    const char *p = PyUnicode_AsUTF8AndSize(prefix, &plen);
    if (p == NULL)
        return -1;
    if (plen >= (Py_ssize_t)sizeof self->prefix) {
        PyErr_SetString(PyExc_ValueError, "run_prefix too long");
        return -1;
    }
    if (!PyIter_Check(seq)) {
        PyErr_SetString(PyExc_TypeError, "seq: an iterator of ints");
        return -1;
    }
    if (!PyType_Check(event_dict) || !PyType_IsSubtype((PyTypeObject *)event_dict, &PyDict_Type)) {
        PyErr_SetString(PyExc_TypeError, "event_dict: a dict subclass");
        return -1;
    }
    PyObject *exec_keys[] = {K_event_id, K_event_type, K_action, K_time, K_time_ns, K_hostname, K_path, K_argv,
                             K_cmdline, K_args_truncated, K_result, K_cwd, K_stdin, K_stdout, K_stderr, K_euid,
                             K_auid, K_session_id, K_cap_effective, K_mnt_ns, K_pid_ns, K_net_ns, K_source, K_pid,
                             K_tid, K_uid, K_gid, K_ppid, K_comm, K_cgroup_id, K_mono_ns, K_start_ns};
    PyObject *fork_keys[] = {K_event_id, K_event_type, K_action, K_time, K_time_ns, K_hostname, K_source, K_pid,
                             K_tid, K_uid, K_gid, K_ppid, K_comm, K_cgroup_id, K_mono_ns, K_start_ns};
    PyObject *t_exec = PyDict_New(), *t_noargv = PyDict_New(), *t_fork = PyDict_New();
    PyObject *empty = PyTuple_New(0);
    int bad = t_exec == NULL || t_noargv == NULL || t_fork == NULL || empty == NULL;
    for (size_t i = 0; !bad && i < sizeof exec_keys / sizeof *exec_keys; i++)
        bad = PyDict_SetItem(t_exec, exec_keys[i], Py_None) < 0 ||
              (exec_keys[i] != K_argv && exec_keys[i] != K_cmdline && PyDict_SetItem(t_noargv, exec_keys[i], Py_None) < 0);
    for (size_t i = 0; !bad && i < sizeof fork_keys / sizeof *fork_keys; i++)
        bad = PyDict_SetItem(t_fork, fork_keys[i], Py_None) < 0;
    for (int i = 0; !bad && i < N_TEXT_CACHES; i++) {
        if (self->texts[i].raw == NULL) {
            self->texts[i].cap = PT_PATH_MAX;
            self->texts[i].raw = PyMem_Malloc(PT_PATH_MAX);
            bad = self->texts[i].raw == NULL;
        }
    }
    if (bad) {
        Py_XDECREF(t_exec);
        Py_XDECREF(t_noargv);
        Py_XDECREF(t_fork);
        Py_XDECREF(empty);
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        return -1;
    }
    Py_XSETREF(self->tmpl_exec, t_exec);
    Py_XSETREF(self->tmpl_exec_noargv, t_noargv);
    Py_XSETREF(self->tmpl_fork_exit, t_fork);
    Py_XSETREF(self->empty_args, empty);
    memcpy(self->prefix, p, (size_t)plen);
    self->prefix_len = plen;
    Py_XSETREF(self->event_dict, (PyTypeObject *)Py_NewRef(event_dict));
    Py_XSETREF(self->clock, Py_NewRef(clock));
    Py_XSETREF(self->seq, Py_NewRef(seq));
    Py_XSETREF(self->event_type, Py_NewRef(event_type));
    Py_XSETREF(self->hostname, Py_NewRef(hostname));
    Py_XSETREF(self->fd_kinds, Py_NewRef(fd_kinds));
    Py_XSETREF(self->drift_reasons, Py_NewRef(drift));
    self->max_args = max_args;
    self->keep = arg_size - 1;
    return 0;
}

static int Decoder_traverse(Decoder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->event_dict);
    Py_VISIT(self->tmpl_exec);
    Py_VISIT(self->tmpl_exec_noargv);
    Py_VISIT(self->tmpl_fork_exit);
    Py_VISIT(self->clock);
    Py_VISIT(self->seq);
    Py_VISIT(self->drift_reasons);
    return 0;
}

static int Decoder_clear(Decoder *self)
{
    Py_CLEAR(self->event_dict);
    Py_CLEAR(self->tmpl_exec);
    Py_CLEAR(self->tmpl_exec_noargv);
    Py_CLEAR(self->tmpl_fork_exit);
    Py_CLEAR(self->empty_args);
    for (int i = 0; i < N_INT_CACHES; i++)
        Py_CLEAR(self->ints[i].o);
    for (int i = 0; i < N_TEXT_CACHES; i++)
        Py_CLEAR(self->texts[i].o);
    Py_CLEAR(self->clock);
    Py_CLEAR(self->seq);
    Py_CLEAR(self->event_type);
    Py_CLEAR(self->hostname);
    Py_CLEAR(self->fd_kinds);
    Py_CLEAR(self->drift_reasons);
    return 0;
}

static void Decoder_dealloc(Decoder *self)
{
    PyObject_GC_UnTrack(self);
    Decoder_clear(self);
    for (int i = 0; i < N_TEXT_CACHES; i++)
        PyMem_Free(self->texts[i].raw);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Decoder_sample_fn(PyObject *self, void *closure)
{
    return PyCapsule_New((void *)decode_sample, SAMPLE_DECODER_CAPSULE, NULL);
}

static PyMethodDef Decoder_methods[] = {
    {"decode", Decoder_decode, METH_O,
     "decode(raw) -> the event; raw itself when the Python decoder is to take it (not decoded here)"},
    {NULL},
};

static PyGetSetDef Decoder_getset[] = {
    {"sample_fn", Decoder_sample_fn, NULL, "the C decode function, for podtrail.bpf._ring.Batch", NULL},
    {NULL},
};

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "podtrail.bpf._process.Decoder",
    .tp_basicsize = sizeof(Decoder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "ProcessDecoder.decode in C (podtrail/bpf/process.py is the reference)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Decoder_init,
    .tp_dealloc = (destructor)Decoder_dealloc,
    .tp_traverse = (traverseproc)Decoder_traverse,
    .tp_clear = (inquiry)Decoder_clear,
    .tp_methods = Decoder_methods,
    .tp_getset = Decoder_getset,
};

static PyObject *layout(PyObject *self, PyObject *unused)
{
    return Py_BuildValue(
        "{s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,"
        "s:i,s:i,s:i}",
        "HDR_SIZE", (Py_ssize_t)HDR_SIZE, "FORK_CWD", (Py_ssize_t)FORK_CWD, "ARGS_OFF", (Py_ssize_t)ARGS_OFF,
        "TTY_OFF", (Py_ssize_t)offsetof(struct exec_fixed, tty), "NAME_OFF", (Py_ssize_t)offsetof(struct exec_fixed, name),
        "CWD_OFF", (Py_ssize_t)offsetof(struct exec_fixed, cwd), "EXE_OFF", (Py_ssize_t)offsetof(struct exec_fixed, exe),
        "exe_ino", (Py_ssize_t)offsetof(struct exec_fixed, exe_ino), "argc", (Py_ssize_t)offsetof(struct exec_fixed, argc),
        "args_size", (Py_ssize_t)offsetof(struct exec_fixed, args_size),
        "cwd_off", (Py_ssize_t)offsetof(struct exec_fixed, cwd_off), "exe_off", (Py_ssize_t)offsetof(struct exec_fixed, exe_off),
        "fd_kind", (Py_ssize_t)offsetof(struct exec_fixed, fd_kind), "drift", (Py_ssize_t)offsetof(struct exec_fixed, drift),
        "comm", (Py_ssize_t)offsetof(struct hdr_t, comm), "flags", (Py_ssize_t)offsetof(struct hdr_t, flags),
        "result", (Py_ssize_t)offsetof(struct hdr_t, result), "PT_PATH_MAX", PT_PATH_MAX, "NAME_BUF", NAME_BUF,
        "TTY_LEN", TTY_LEN, "EV_EXEC", EV_EXEC, "EV_FORK", EV_FORK, "EV_EXIT", EV_EXIT,
        "F_ARGS_TRUNCATED", F_ARGS_TRUNCATED, "F_EXIT_KNOWN", F_EXIT_KNOWN, "F_NO_ENTER", F_NO_ENTER,
        "F_RUNTIME_SETUP", F_RUNTIME_SETUP, "F_CWD", NO_CWD, "F_EXE", NO_EXE, "F_FORK_FOLDED", F_FORK_FOLDED);
}

static PyObject *normpath_py(PyObject *self, PyObject *arg)
{
    char *p;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(arg, &p, &n) < 0)
        return NULL;
    if (n > PT_PATH_MAX + NAME_BUF + 1) {
        PyErr_SetString(PyExc_ValueError, "longer than a cwd and a name");
        return NULL;
    }
    char out[PT_PATH_MAX + NAME_BUF + 4];
    int starts[PT_PATH_MAX + NAME_BUF + 2], lens[PT_PATH_MAX + NAME_BUF + 2];
    Py_ssize_t o = normpath(p, n, out, starts, lens);
    return PyBytes_FromStringAndSize(out, o);
}

static PyMethodDef methods[] = {
    {"layout", layout, METH_NOARGS, "the sample layout compiled in (checked against process.py)"},
    {"normpath", normpath_py, METH_O, "posixpath.normpath on bytes, as the decoder uses it (for tests)"},
    {NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "podtrail.bpf._process",
                                    "process.bpf.c samples to events (ProcessDecoder.decode in C)", -1, methods};

PyMODINIT_FUNC PyInit__process(void)
{
#define INTERN(k) if ((K_##k = PyUnicode_InternFromString(#k)) == NULL) return NULL;
    KEYS(INTERN)
    if (!(S_exec = PyUnicode_InternFromString("exec")) || !(S_exit = PyUnicode_InternFromString("exit")) ||
        !(S_fork = PyUnicode_InternFromString("fork")) || !(S_ebpf = PyUnicode_InternFromString("ebpf")) ||
        !(S_empty = PyUnicode_FromString("")) || !(S_space = PyUnicode_FromString(" ")) ||
        !(S_other = PyUnicode_InternFromString("other")) || !(S_pts = PyUnicode_FromString("pts")) ||
        !(BILLION = PyLong_FromLong(1000000000L)))
        return NULL;
    if (PyType_Ready(&DecoderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Decoder", (PyObject *)&DecoderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
