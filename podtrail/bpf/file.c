/* podtrail file sensor: opens for write/create, creat, unlink, rename, chmod and truncate
 * under watched path prefixes, and reads of sensitive files, filtered in the kernel.
 *
 * Paths are read from the syscall's user pointer (bpf_probe_read_user_str). Absolute paths
 * are matched here against two pattern lists filled from user space as FNV-1a hashes in hash
 * maps (podtrail.bpf.netfile): write prefixes, and sensitive paths (exact, a directory, or
 * with the second component as a wildcard), so one pass over a path serves any number of
 * patterns and keeps the verifier's work small. A relative path cannot
 * be matched without the task's cwd, so a relative write passes up for user space to resolve
 * and filter, and a relative read passes only when its last component matches a sensitive
 * name. With drift tracking on, exec-bit creates/chmods and renames inside containers pass
 * even outside the watched prefixes, flagged KF_DRIFT_ONLY (they feed the drift tracker and
 * are not reported). Matched events wait in `pending` (by tid) for the syscall's result.
 */
#include "netfile.h"

#define A_OPEN 1     /* open with write flags */
#define A_CREATE 2   /* open with O_CREAT, creat() */
#define A_READ 3     /* read-only open of a sensitive file */
#define A_UNLINK 4
#define A_RENAME 5
#define A_CHMOD 6
#define A_TRUNCATE 7

#define PATHLEN 256

/* Pattern kinds in the hash sets (values are bit masks). */
#define K_PREFIX 1 /* write: everything below this directory ("/etc/") */
#define K_EXACT 2  /* this path, e.g. /etc/shadow, or /proc/ANY/environ with the wildcard */
#define K_DIR 4    /* files directly in this directory; user space applies the name pattern */

#define O_WRONLY_ 01
#define O_RDWR_ 02
#define O_CREAT_ 0100
#define O_TRUNC_ 01000
#define AT_FDCWD_ -100

/* FNV-1a, 64 bit: user space hashes the patterns the same way (podtrail.bpf.netfile.fnv1a). */
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL
#define FNV(h, c) (((h) ^ (u8)(c)) * FNV_PRIME)

struct file_event_t {
    u64 mono_ns;
    u64 cgroup_id;
    u32 pid;
    u32 tid;
    u32 uid;
    u32 gid;
    s32 ret;
    s32 dfd;
    s32 dfd2;
    u32 flags;
    u32 mode;
    u16 action;
    u16 kflags;
    char comm[TASK_COMM_LEN];
    char path[PATHLEN];
    char path2[PATHLEN]; /* rename: the new path; only sent for renames */
};

/* Patterns are hashed, so one pass over a path costs the same for 5 or 500 patterns. */
BPF_HASH(write_set, u64, u8, 1024);  /* K_PREFIX directories and K_EXACT paths to watch */
BPF_HASH(sens_set, u64, u8, 4096);   /* sensitive K_EXACT paths and K_DIR directories */
BPF_HASH(sens_first, u64, u8, 256);  /* first directories ("/etc/") of sensitive patterns */
BPF_HASH(sens_names, u64, u8, 1024); /* last components, for relative paths */
BPF_PERCPU_ARRAY(scratch, struct file_event_t, 1);
BPF_TABLE("lru_hash", u32, struct file_event_t, pending, 10240);
/* tid -> slot: the exit of every open checks this inlined array before the hash. */
#define GATE_SLOTS 16384
BPF_ARRAY(pending_gate, u32, GATE_SLOTS);

static __always_inline int in_set_write(u64 h, u8 kind) {
    u8 *k = write_set.lookup(&h);
    return k && (*k & kind);
}

static __always_inline int in_set_sens(u64 h, u8 kind) {
    u8 *k = sens_set.lookup(&h);
    return k && (*k & kind);
}

/* Watched for writes: a K_PREFIX directory above the path, or the path itself. */
static __always_inline int match_write(const char *path) {
    u64 h = FNV_OFFSET;
#pragma unroll(1)
    for (int j = 0; j < PATHLEN; j++) {
        char c = path[j];
        if (c == 0)
            return in_set_write(h, K_EXACT);
        h = FNV(h, c);
        if (c == '/' && j > 0 && in_set_write(h, K_PREFIX))
            return 1;
    }
    return 0;
}

/* Walk state for the wildcard pass, in per-CPU map memory (volatile): the verifier then
 * treats it as unknown and checks one state per loop step instead of one per mix of
 * (step, slash count, ...). Only paths under a first directory with such patterns take it. */
struct walk_t {
    volatile u64 hw;
    volatile u64 dirw;
    volatile u32 slashes;
};
BPF_PERCPU_ARRAY(walk, struct walk_t, 1);

#define FIRST_W2 2 /* sens_first value bit: patterns with '*' as second component below */

/* Sensitive absolute path: the path or its directory, literally, or with the second
 * component as a wildcard (/proc/PID/environ matches the pattern /proc/ANY/environ).
 * One register-only pass hashes the path; a path whose first directory holds no pattern
 * ("/usr/", "/tmp/") stops at its second '/'. */
static __always_inline int match_sensitive(const char *path) {
    u64 h = FNV_OFFSET, dir = FNV_OFFSET;
    u8 *first = NULL;
#pragma unroll(1)
    for (int j = 0; j < PATHLEN; j++) {
        char c = path[j];
        if (c == 0)
            break;
        h = FNV(h, c);
        if (c == '/' && j > 0) {
            if (!first) {
                first = sens_first.lookup(&h);
                if (!first)
                    return 0;
            }
            dir = h;
        }
    }
    if (!first)
        return 0;
    if (in_set_sens(h, K_EXACT) || in_set_sens(dir, K_DIR))
        return 1;
    if (!(*first & FIRST_W2))
        return 0;
    u32 z = 0;
    struct walk_t *w = walk.lookup(&z);
    if (!w)
        return 0;
    w->hw = FNV_OFFSET;
    w->dirw = 0;
    w->slashes = 0;
#pragma unroll(1)
    for (int j = 0; j < PATHLEN; j++) {
        char c = path[j];
        if (c == 0)
            break;
        if (c == '/') {
            u32 n = w->slashes + 1;
            w->slashes = n;
            u64 hw = FNV(w->hw, '/');
            if (n == 2)
                hw = FNV(hw, '*');
            w->hw = hw;
            w->dirw = hw;
        } else if (w->slashes != 2) {
            w->hw = FNV(w->hw, c);
        }
    }
    return w->slashes > 2 && (in_set_sens(w->hw, K_EXACT) || in_set_sens(w->dirw, K_DIR));
}

/* Relative read: the last component against the sensitive names. */
static __always_inline int match_sensitive_name(const char *path) {
    u64 h = FNV_OFFSET;
#pragma unroll(1)
    for (int j = 0; j < PATHLEN; j++) {
        char c = path[j];
        if (c == 0)
            break;
        h = (c == '/') ? FNV_OFFSET : FNV(h, c);
    }
    return sens_names.lookup(&h) != NULL;
}

static __always_inline struct file_event_t *start_event(u16 action) {
    struct nf_cfg_t *cfg = get_cfg();
    if (!cfg)
        return NULL;
    u64 pt = bpf_get_current_pid_tgid();
    u32 kf = 0;
    if (!task_allowed(cfg, pt >> 32, &kf))
        return NULL;
    u32 z = 0;
    struct file_event_t *e = scratch.lookup(&z);
    if (!e)
        return NULL;
    e->mono_ns = bpf_ktime_get_ns();
    e->pid = pt >> 32;
    e->tid = (u32)pt;
    e->action = action;
    e->kflags = kf;
    e->flags = 0;
    e->mode = 0;
    e->ret = 0;
    e->dfd = AT_FDCWD_;
    e->dfd2 = AT_FDCWD_;
    e->path2[0] = 0;
    return e;
}

/* Read a user path into buf; marks relative and truncated paths. */
static __always_inline void read_path(struct file_event_t *e, char *buf, const char *upath) {
    long n = bpf_probe_read_user_str(buf, PATHLEN, upath);
    if (n <= 0)
        buf[0] = 0;
    if (n >= PATHLEN)
        e->kflags |= KF_TRUNCATED;
    if (buf[0] != '/')
        e->kflags |= KF_RELATIVE;
}

/* Keep the event for the syscall exit; fill the task fields only for events that pass. */
static __always_inline void keep(struct file_event_t *e) {
    u64 ug = bpf_get_current_uid_gid();
    e->uid = (u32)ug;
    e->gid = ug >> 32;
    e->cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    pending.update(&e->tid, e);
    u32 slot = e->tid & (GATE_SLOTS - 1);
    u32 *g = pending_gate.lookup(&slot);
    if (g)
        *g = e->tid;
}

/* Write-type events: watched prefix (absolute), any relative path, or a drift candidate. */
static __always_inline void write_like(struct file_event_t *e, int drift_candidate, int is_rename) {
    int watched = (e->path[0] != '/') || match_write(e->path);
    if (!watched && is_rename && e->path2[0])
        watched = (e->path2[0] != '/') || match_write(e->path2);
    if (!watched) {
        struct nf_cfg_t *cfg = get_cfg();
        if (!drift_candidate || !cfg || !cfg->drift || !(e->kflags & KF_CONTAINER))
            return;
        e->kflags |= KF_DRIFT_ONLY;
    }
    keep(e);
}

static __always_inline int do_open(int dfd, const char *upath, u32 flags, u32 mode) {
    int writes = flags & (O_WRONLY_ | O_RDWR_ | O_CREAT_ | O_TRUNC_);
    if (!writes) {
        /* The hot path: nearly every open is a read of an unwatched file. Match the path
         * first; the task lookups and filters run only for the few that hit. */
        u32 z = 0;
        struct file_event_t *e = scratch.lookup(&z);
        if (!e)
            return 0;
        e->kflags = 0;
        read_path(e, e->path, upath);
        int hit = (e->path[0] == '/') ? match_sensitive(e->path) : match_sensitive_name(e->path);
        if (!hit)
            return 0;
        u16 pk = e->kflags;
        e = start_event(A_READ);
        if (!e)
            return 0;
        e->kflags |= pk | KF_SENSITIVE;
        e->dfd = dfd;
        e->flags = flags;
        e->mode = mode;
        keep(e);
        return 0;
    }
    struct file_event_t *e = start_event(writes ? ((flags & O_CREAT_) ? A_CREATE : A_OPEN) : A_READ);
    if (!e)
        return 0;
    e->dfd = dfd;
    e->flags = flags;
    e->mode = mode;
    read_path(e, e->path, upath);
    write_like(e, (flags & O_CREAT_) && (mode & 0111), 0);
    return 0;
}

static __always_inline int file_exit(long ret) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u32 slot = tid & (GATE_SLOTS - 1);
    u32 *g = pending_gate.lookup(&slot);
    if (!g || *g != tid)
        return 0;
    *g = 0;
    struct file_event_t *e = pending.lookup(&tid);
    if (!e)
        return 0;
    e->ret = ret;
    /* relative paths are resolved from /proc/<pid>: wake the reader while it exists */
    submit(e, e->action == A_RENAME ? sizeof(*e) : sizeof(*e) - PATHLEN, e->kflags & KF_RELATIVE);
    pending.delete(&tid);
    return 0;
}

static __always_inline int do_path_op(u16 action, int dfd, const char *upath, u32 mode, int drift) {
    struct file_event_t *e = start_event(action);
    if (!e)
        return 0;
    e->dfd = dfd;
    e->mode = mode;
    read_path(e, e->path, upath);
    write_like(e, drift, 0);
    return 0;
}

static __always_inline int do_rename(int olddfd, const char *oldp, int newdfd, const char *newp, u32 flags) {
    struct file_event_t *e = start_event(A_RENAME);
    if (!e)
        return 0;
    e->dfd = olddfd;
    e->dfd2 = newdfd;
    e->flags = flags;
    read_path(e, e->path, oldp);
    read_path(e, e->path2, newp);
    write_like(e, 1, 1);
    return 0;
}

/* ---- opens -------------------------------------------------------------------------------- */

TRACEPOINT_PROBE(syscalls, sys_enter_open) {
    return do_open(AT_FDCWD_, args->filename, args->flags, args->mode);
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat) {
    return do_open(args->dfd, args->filename, args->flags, args->mode);
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat2) {
    u64 how[2] = {}; /* struct open_how starts with u64 flags, u64 mode */
    bpf_probe_read_user(how, sizeof(how), args->how);
    return do_open(args->dfd, args->filename, (u32)how[0], (u32)how[1]);
}

TRACEPOINT_PROBE(syscalls, sys_enter_creat) {
    return do_open(AT_FDCWD_, args->pathname, O_CREAT_ | O_WRONLY_ | O_TRUNC_, args->mode);
}

/* ---- namespace changes ------------------------------------------------------------------- */

TRACEPOINT_PROBE(syscalls, sys_enter_unlink) {
    return do_path_op(A_UNLINK, AT_FDCWD_, args->pathname, 0, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_unlinkat) {
    return do_path_op(A_UNLINK, args->dfd, args->pathname, 0, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_rename) {
    return do_rename(AT_FDCWD_, args->oldname, AT_FDCWD_, args->newname, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_renameat) {
    return do_rename(args->olddfd, args->oldname, args->newdfd, args->newname, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_renameat2) {
    return do_rename(args->olddfd, args->oldname, args->newdfd, args->newname, args->flags);
}

/* ---- metadata -------------------------------------------------------------------------------- */

TRACEPOINT_PROBE(syscalls, sys_enter_chmod) {
    return do_path_op(A_CHMOD, AT_FDCWD_, args->filename, args->mode, args->mode & 0111);
}

TRACEPOINT_PROBE(syscalls, sys_enter_fchmodat) {
    return do_path_op(A_CHMOD, args->dfd, args->filename, args->mode, args->mode & 0111);
}

#ifdef HAVE_FCHMODAT2
TRACEPOINT_PROBE(syscalls, sys_enter_fchmodat2) {
    return do_path_op(A_CHMOD, args->dfd, args->filename, args->mode, args->mode & 0111);
}
#endif

/* fchmod(fd): no path in the kernel; exec-bit chmods in containers pass for user space to
 * resolve /proc/<pid>/fd/<fd> (drift: "chmod +x" of a dropped binary). */
TRACEPOINT_PROBE(syscalls, sys_enter_fchmod) {
    if (!(args->mode & 0111))
        return 0;
    struct file_event_t *e = start_event(A_CHMOD);
    if (!e || !(e->kflags & KF_CONTAINER))
        return 0;
    e->dfd = args->fd;
    e->mode = args->mode;
    e->path[0] = 0;
    e->kflags |= KF_RELATIVE;
    keep(e);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_truncate) {
    return do_path_op(A_TRUNCATE, AT_FDCWD_, args->path, 0, 0);
}

/* ---- results --------------------------------------------------------------------------------- */

TRACEPOINT_PROBE(syscalls, sys_exit_open) { return file_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_openat) { return file_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_openat2) { return file_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_creat) { return file_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_unlink) { return file_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_unlinkat) { return file_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_rename) { return file_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_renameat) { return file_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_renameat2) { return file_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_chmod) { return file_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_fchmodat) { return file_exit(args->ret); }
#ifdef HAVE_FCHMODAT2
TRACEPOINT_PROBE(syscalls, sys_exit_fchmodat2) { return file_exit(args->ret); }
#endif
TRACEPOINT_PROBE(syscalls, sys_exit_fchmod) { return file_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_truncate) { return file_exit(args->ret); }
