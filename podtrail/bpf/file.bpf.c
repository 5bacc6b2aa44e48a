// SPDX-License-Identifier: GPL-2.0
/* podtrail file sensor (libbpf CO-RE): opens for write/create, creat, unlink, rename, chmod
 * and truncate under watched path prefixes, and reads of sensitive files, filtered in the
 * kernel; and, for container tasks, the drift record (include/drift.h).
 *
 * Paths: an absolute path is read from the syscall's user pointer. A relative one is joined
 * here, at the syscall, to the directory it is relative to (the task's cwd, or the directory
 * open on dirfd), walked up to the task's own root (nf_pathwalk.h): the path a container
 * process sees, with no /proc look-up after the fact. A successful write open reports the file the
 * fd actually refers to (links and ".." resolved by the kernel), and fchmod the file behind
 * its fd. Paths are matched here against pattern lists filled from user space as FNV-1a
 * hashes in hash maps (podtrail.bpf.netfile): write prefixes, and sensitive paths (exact, a
 * directory, or with the second component as a wildcard), so one pass over a path serves
 * any number of patterns. Matched events wait in `pending` (by tid) for the syscall's result.
 *
 * Drift: a container task that creates or writes a file (open with write flags, creat),
 * truncates it, or adds an x bit (chmod, fchmodat, fchmodat2, fchmod) records the inode in
 * drift_inodes when the syscall succeeded. The inode of an open comes from the returned fd;
 * of fchmod from its fd; of a path-based chmod/truncate from the timestamp tracepoints that
 * fire for the inode whose ctime the syscall changes (stashed per task, committed at the
 * syscall's exit only when it succeeded); see stash_inode.
 */
#include "netfile.bpf.h"
#include "nf_pathwalk.h"
#include "drift.h"

char LICENSE[] SEC("license") = "GPL";

#define A_OPEN 1     /* open with write flags */
#define A_CREATE 2   /* open with O_CREAT, creat() */
#define A_READ 3     /* read-only open of a sensitive file */
#define A_UNLINK 4
#define A_RENAME 5
#define A_CHMOD 6
#define A_TRUNCATE 7

#define PATHBUF NFP_BUF

/* Pattern kinds in the hash sets (values are bit masks). */
#define K_PREFIX 1 /* write: everything below this directory ("/etc/") */
#define K_EXACT 2  /* this path, e.g. /etc/shadow, or /proc/ANY/environ with the wildcard */
#define K_DIR 4    /* files directly in this directory; user space applies the name pattern */

#define O_WRONLY_ 01
#define O_RDWR_ 02
#define O_CREAT_ 0100
#define O_TRUNC_ 01000
#define AT_FDCWD_ -100
#define FMODE_CREATED_ (1U << 20) /* file->f_mode: this open created the file */

/* Internal state of a pending event (not reported). */
#define PF_REPORT 1      /* send to user space at the syscall's exit */
#define PF_DRIFT 2       /* record the inode in drift_inodes on success */
#define PF_HAVE_INODE 4  /* dev/ino below hold the inode to record */

/* FNV-1a, 64 bit: user space hashes the patterns the same way (podtrail.bpf.netfile.fnv1a). */
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL
#define FNV(h, c) (((h) ^ (__u8)(c)) * FNV_PRIME)

struct file_event_t {
    __u64 mono_ns;
    __u64 cgroup_id;
    __u64 dev; /* drift: the inode to record (internal) */
    __u64 ino;
    __u32 pid;
    __u32 tid;
    __u32 uid;
    __u32 gid;
    __s32 ret;
    __s32 dfd;
    __s32 dfd2;
    __u32 flags;
    __u32 mode;
    __u16 action;
    __u16 kflags;
    __u32 pflags; /* PF_*, internal */
    char comm[TASK_COMM_LEN_];
    struct nf_path_t path;
    struct nf_path_t path2; /* rename: the new path; only sent for renames */
};

/* Patterns are hashed, so one pass over a path costs the same for 5 or 500 patterns. */
#define HASHSET(name, n)                 \
    struct {                             \
        __uint(type, BPF_MAP_TYPE_HASH); \
        __uint(max_entries, n);          \
        __type(key, __u64);              \
        __type(value, __u8);             \
    } name SEC(".maps")

HASHSET(write_set, 1024);  /* K_PREFIX directories and K_EXACT paths to watch */
HASHSET(sens_set, 4096);   /* sensitive K_EXACT paths and K_DIR directories */
HASHSET(sens_first, 256);  /* first directories ("/etc/") of sensitive patterns */
HASHSET(sens_names, 1024); /* last components, for relative paths */

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct file_event_t);
} scratch SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 10240);
    __type(key, __u32);
    __type(value, struct file_event_t);
} pending SEC(".maps");

/* tid -> slot: the exit of every open checks this array before the hash. */
#define GATE_SLOTS 16384
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, GATE_SLOTS);
    __type(key, __u32);
    __type(value, __u32);
} pending_gate SEC(".maps");

/* Drift records (per CPU): [0] recorded, [1] no inode found, [2] dropped with their cgroup. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 3);
    __type(key, __u32);
    __type(value, __u64);
} drift_stats SEC(".maps");

static __always_inline void count_drift(__u32 i) {
    __u64 *c = bpf_map_lookup_elem(&drift_stats, &i);
    if (c)
        __sync_fetch_and_add(c, 1);
}

static __always_inline int in_set(void *set, __u64 h, __u8 kind) {
    __u8 *k = bpf_map_lookup_elem(set, &h);
    return k && (*k & kind);
}

/* The matchers walk a path one byte per bpf_loop step: the verifier checks each step's body
 * once instead of every iteration of a 256- or 512-step loop (file.bpf.o loads in ~0.8 s
 * instead of ~2.2 s on a loaded machine). Each stops at the NUL, or as soon as the answer is
 * known. The first pass of match_sensitive, which every read-only open takes, stays an inline
 * loop (no call per byte), its state in map memory to keep its verification cheap too. */

/* The loop index as a bounded offset the verifier sees (clang would drop a plain mask). */
static __always_inline __u64 step_at(__u32 i, __u64 mask) {
    __u64 j = i;
    NFP_BARRIER(j);
    return j & mask;
}

struct mw_ctx {
    const struct nf_path_t *p;
    __u64 h;
    int hit;
};

static long match_write_step(__u32 i, struct mw_ctx *c) {
    const struct nf_path_t *p = c->p;
    if (!p || i >= PATHBUF)
        return 1;
    char ch = p->s[step_at(i, PATHBUF - 1)];
    if (ch == 0) {
        c->hit = in_set(&write_set, c->h, K_EXACT);
        return 1;
    }
    __u64 h = FNV(c->h, ch);
    c->h = h;
    if (ch == '/' && i > 0 && in_set(&write_set, h, K_PREFIX)) {
        c->hit = 1;
        return 1;
    }
    return 0;
}

/* Watched for writes: a K_PREFIX directory above the path, or the path itself. */
__noinline int match_write(const struct nf_path_t *p) {
    if (!p)
        return 0;
    struct mw_ctx c = {.p = p, .h = FNV_OFFSET};
    bpf_loop(PATHBUF, match_write_step, &c, 0);
    return c.hit;
}

#define FIRST_W2 2 /* sens_first value bit: patterns with '*' as second component below */
/* Sensitive patterns are short: only the first SENS_SCAN bytes of a path are matched (a
 * longer path is no sensitive file). */
#define SENS_SCAN NFP_HALF

struct ms_state {
    volatile __u64 h;
    volatile __u64 dir;
    volatile __u32 first;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct ms_state);
} ms_states SEC(".maps");

struct mw2_ctx {
    const struct nf_path_t *p;
    __u64 hw;   /* the path with its second component replaced by '*' */
    __u64 dirw; /* the same, up to its last '/' */
    __u32 slashes;
};

static long match_wild_step(__u32 i, struct mw2_ctx *c) {
    const struct nf_path_t *p = c->p;
    if (!p || i >= SENS_SCAN)
        return 1;
    char ch = p->s[step_at(i, SENS_SCAN - 1)];
    if (ch == 0)
        return 1;
    if (ch == '/') {
        __u32 n = c->slashes + 1;
        c->slashes = n;
        __u64 hw = FNV(c->hw, '/');
        if (n == 2)
            hw = FNV(hw, '*');
        c->hw = hw;
        c->dirw = hw;
    } else if (c->slashes != 2) {
        c->hw = FNV(c->hw, ch);
    }
    return 0;
}

/* Sensitive absolute path: the path or its directory, literally, or with the second
 * component as a wildcard (/proc/PID/environ matches the pattern /proc/ANY/environ).
 * A path whose first directory holds no pattern ("/usr/", "/tmp/") stops at its second '/'. */
__noinline int match_sensitive(const struct nf_path_t *p) {
    if (!p)
        return 0;
    /* inline (every read-only open takes this pass), its state in per-CPU map memory: the
     * verifier then sees unknown values and checks one state per step */
    __u32 z = 0;
    struct ms_state *st = bpf_map_lookup_elem(&ms_states, &z);
    if (!st)
        return 0;
    st->h = FNV_OFFSET;
    st->dir = FNV_OFFSET;
    st->first = 0;
    for (int j = 0; j < SENS_SCAN; j++) {
        char ch = p->s[j];
        if (ch == 0)
            break;
        __u64 h = FNV(st->h, ch);
        st->h = h;
        if (ch == '/' && j > 0) {
            if (!st->first) {
                __u8 *f = bpf_map_lookup_elem(&sens_first, &h);
                if (!f)
                    return 0;
                st->first = 0x100 | *f;
            }
            st->dir = h;
        }
    }
    __u64 h = st->h, dir = st->dir;
    __u32 first = st->first;
    if (!first)
        return 0;
    if (in_set(&sens_set, h, K_EXACT) || in_set(&sens_set, dir, K_DIR))
        return 1;
    if (!(first & FIRST_W2))
        return 0;
    struct mw2_ctx w = {.p = p, .hw = FNV_OFFSET};
    bpf_loop(SENS_SCAN, match_wild_step, &w, 0);
    return w.slashes > 2 && (in_set(&sens_set, w.hw, K_EXACT) || in_set(&sens_set, w.dirw, K_DIR));
}

struct mn_ctx {
    const struct nf_path_t *p;
    __u64 h;
};

static long match_name_step(__u32 i, struct mn_ctx *c) {
    const struct nf_path_t *p = c->p;
    if (!p || i >= PATHBUF)
        return 1;
    char ch = p->s[step_at(i, PATHBUF - 1)];
    if (ch == 0)
        return 1;
    c->h = (ch == '/') ? FNV_OFFSET : FNV(c->h, ch);
    return 0;
}

/* Relative read: the last component against the sensitive names (before any path walk). */
__noinline int match_sensitive_name(const struct nf_path_t *p) {
    if (!p)
        return 0;
    struct mn_ctx c = {.p = p, .h = FNV_OFFSET};
    bpf_loop(PATHBUF, match_name_step, &c, 0);
    return bpf_map_lookup_elem(&sens_names, &c.h) != NULL;
}

static __always_inline struct file_event_t *start_event(__u16 action) {
    __u64 pt;
    __u32 kf;
    struct file_event_t *e = start_in(&scratch, &pt, &kf);
    if (!e)
        return NULL;
    e->mono_ns = bpf_ktime_get_ns();
    e->pid = pt >> 32;
    e->tid = (__u32)pt;
    e->action = action;
    e->kflags = kf;
    e->pflags = 0;
    e->flags = 0;
    e->mode = 0;
    e->ret = 0;
    e->dev = 0;
    e->ino = 0;
    e->dfd = AT_FDCWD_;
    e->dfd2 = AT_FDCWD_;
    e->path2.s[0] = 0;
    return e;
}

/* Read a user path into buf. A relative path is appended to the path of the directory it
 * is relative to (cwd or dfd), walked in the kernel now. Returns KF_* flags to add. */
__noinline int read_path(struct nf_path_t *buf, __u64 upath, int dfd) {
    if (!buf)
        return 0;
    char c0 = 0;
    bpf_probe_read_user(&c0, 1, (const void *)upath);
    if (c0 == '/') {
        long n = bpf_probe_read_user_str(buf->s, PATHBUF, (const void *)upath);
        if (n <= 0)
            buf->s[0] = 0;
        return n >= PATHBUF ? KF_TRUNCATED : 0;
    }
    int kf = KF_RELATIVE;
    int r = nfp_base_dir(dfd, buf);
    if (r < 0) { /* no base (bad dirfd): keep the name as given */
        long n = bpf_probe_read_user_str(buf->s, NFP_HALF, (const void *)upath);
        if (n <= 0)
            buf->s[0] = 0;
        return kf | KF_PATH_CUT;
    }
    if (r & NFP_CUT)
        kf |= KF_PATH_CUT;
    __u32 pos = r & 0xffff;
    if (c0 == 0) /* empty path (AT_EMPTY_PATH): the directory itself */
        return kf;
    if (pos >= NFP_HALF - 1)
        return kf | KF_TRUNCATED;
    if (pos > 1) {
        NFP_BARRIER(pos);
        pos &= NFP_HALF - 1;
        buf->s[pos] = '/';
        pos++;
    }
    NFP_BARRIER(pos);
    pos &= NFP_HALF - 1;
    long n = bpf_probe_read_user_str(&buf->s[pos], NFP_HALF, (const void *)upath);
    return n >= NFP_HALF ? kf | KF_TRUNCATED : kf;
}

/* Keep the event for the syscall exit; fill the task fields only for events that pass. */
static __always_inline void keep(struct file_event_t *e) {
    __u64 ug = bpf_get_current_uid_gid();
    e->uid = (__u32)ug;
    e->gid = ug >> 32;
    e->cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    bpf_map_update_elem(&pending, &e->tid, e, BPF_ANY);
    __u32 slot = e->tid & (GATE_SLOTS - 1);
    __u32 *g = bpf_map_lookup_elem(&pending_gate, &slot);
    if (g)
        *g = e->tid;
}

static __always_inline int drift_on(struct file_event_t *e) {
    struct nf_cfg_t *cfg = get_cfg();
    return cfg && cfg->drift && (e->kflags & KF_CONTAINER);
}

/* Write-type events: reported when the path (or a rename's other path) is watched; kept
 * unreported when only the drift record needs the syscall's result. */
struct dd_ctx {
    const struct nf_path_t *p;
    int hit;
};

static long dotdot_step(__u32 i, struct dd_ctx *c) {
    const struct nf_path_t *p = c->p;
    __u64 j = step_at(i, PATHBUF - 1);
    if (!p || j >= PATHBUF - 1)
        return 1;
    char ch = p->s[j];
    if (ch == 0)
        return 1;
    if (ch == '.' && p->s[j + 1] == '.') {
        c->hit = 1;
        return 1;
    }
    return 0;
}

/* A joined relative path with ".." in it ("/srv/../etc/x"): the kernel cannot match it as it
 * stands, so it goes up for user space to fold and match. */
__noinline int has_dotdot(const struct nf_path_t *p) {
    if (!p)
        return 0;
    struct dd_ctx c = {.p = p};
    bpf_loop(PATHBUF - 1, dotdot_step, &c, 0);
    return c.hit;
}

static __always_inline void write_like(struct file_event_t *e, int drift_candidate, int is_rename) {
    if (match_write(&e->path) || (is_rename && e->path2.s[0] && match_write(&e->path2)))
        e->pflags |= PF_REPORT;
    else if ((e->kflags & KF_RELATIVE) && (has_dotdot(&e->path) || (is_rename && has_dotdot(&e->path2))))
        e->pflags |= PF_REPORT;
    else if (e->kflags & KF_PATH_CUT) /* not the full path: cannot be matched, reported as such */
        e->pflags |= PF_REPORT;
    if (drift_candidate && drift_on(e))
        e->pflags |= PF_DRIFT;
    if (e->pflags)
        keep(e);
}

static __always_inline void set_inode(struct file_event_t *e, struct inode *ino) {
    if (!ino)
        return;
    e->dev = BPF_CORE_READ(ino, i_sb, s_dev);
    e->ino = BPF_CORE_READ(ino, i_ino);
    e->pflags |= PF_HAVE_INODE;
}

static __always_inline void drift_record(struct file_event_t *e, __u32 reason) {
    if (!(e->pflags & PF_HAVE_INODE)) {
        count_drift(1);
        return;
    }
    struct drift_key k = {.dev = e->dev, .ino = e->ino};
    struct drift_val v = {.cgroup_id = e->cgroup_id, .ktime = bpf_ktime_get_ns(), .reason = reason};
    struct drift_val *old = bpf_map_lookup_elem(&drift_inodes, &k);
    if (old && old->reason == DRIFT_CREATED)
        v.reason = DRIFT_CREATED; /* created, then written: still created in the container */
    struct task_struct *t = bpf_get_current_task_btf();
    v.mnt_ns = BPF_CORE_READ(t, nsproxy, mnt_ns, ns.inum);
    bpf_map_update_elem(&drift_inodes, &k, &v, BPF_ANY);
    count_drift(0);
}

static __always_inline int do_open(int dfd, const char *upath, __u32 flags, __u32 mode) {
    int writes = flags & (O_WRONLY_ | O_RDWR_ | O_CREAT_ | O_TRUNC_);
    if (!writes) {
        /* The hot path: nearly every open is a read of an unwatched file. Match the path
         * first; the task lookups, filters and path walks run only for the few that hit. */
        __u32 z = 0;
        struct file_event_t *e = bpf_map_lookup_elem(&scratch, &z);
        if (!e)
            return 0;
        long n = bpf_probe_read_user_str(e->path.s, PATHBUF, upath);
        if (n <= 0)
            return 0;
        int relative = e->path.s[0] != '/';
        int hit = relative ? match_sensitive_name(&e->path) : match_sensitive(&e->path);
        if (!hit)
            return 0;
        e = start_event(A_READ);
        if (!e)
            return 0;
        if (relative) /* name matched: joined here, matched in user space after folding ".." */
            e->kflags |= read_path(&e->path, (__u64)upath, dfd);
        else if (n >= PATHBUF) {
            e->kflags |= KF_TRUNCATED;
        }
        e->kflags |= KF_SENSITIVE;
        e->dfd = dfd;
        e->flags = flags;
        e->mode = mode;
        e->pflags = PF_REPORT;
        keep(e);
        return 0;
    }
    struct file_event_t *e = start_event((flags & O_CREAT_) ? A_CREATE : A_OPEN);
    if (!e)
        return 0;
    e->dfd = dfd;
    e->flags = flags;
    e->mode = mode;
    e->kflags |= read_path(&e->path, (__u64)upath, dfd);
    write_like(e, 1, 0);
    return 0;
}

static __always_inline struct file_event_t *take_pending(void) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    __u32 slot = tid & (GATE_SLOTS - 1);
    __u32 *g = bpf_map_lookup_elem(&pending_gate, &slot);
    if (!g || *g != tid)
        return NULL;
    *g = 0;
    return bpf_map_lookup_elem(&pending, &tid);
}

static __always_inline void finish(struct file_event_t *e, long ret) {
    e->ret = ret;
    if (e->pflags & PF_REPORT)
        submit(e, e->action == A_RENAME ? sizeof(*e) : sizeof(*e) - PATHBUF);
    __u32 tid = e->tid;
    bpf_map_delete_elem(&pending, &tid);
}

/* Opens: the fd names the file actually written (links, "..", the dirfd all resolved by the
 * kernel), and is where the drift record's inode comes from. A sensitive read keeps the path
 * it was matched on: the list names paths as processes use them (/var/run/secrets/...). */
static __always_inline int open_exit(long ret) {
    struct file_event_t *e = take_pending();
    if (!e)
        return 0;
    if (ret >= 0) {
        struct task_struct *t = bpf_get_current_task_btf();
        struct file *f = pt_fd_file(t, (int)ret);
        if (f) {
            if ((e->pflags & PF_REPORT) && e->action != A_READ) {
                __u32 z = 0;
                struct file_event_t *tmp = bpf_map_lookup_elem(&scratch, &z);
                if (tmp) {
                    int r = nfp_path((__u64)BPF_CORE_READ(f, f_path.dentry), (__u64)BPF_CORE_READ(f, f_path.mnt), &tmp->path);
                    if (r > 0 && !(r & NFP_CUT)) {
                        __builtin_memcpy(&e->path, &tmp->path, sizeof(e->path));
                        e->kflags &= ~(KF_PATH_CUT | KF_TRUNCATED);
                    }
                }
            }
            if (e->pflags & PF_DRIFT) {
                set_inode(e, BPF_CORE_READ(f, f_inode));
                drift_record(e, (BPF_CORE_READ(f, f_mode) & FMODE_CREATED_) ? DRIFT_CREATED : DRIFT_MODIFIED);
            }
        }
    }
    finish(e, ret);
    return 0;
}

/* Path operations: chmod/truncate commit the inode stashed by inode_setattr on success. */
static __always_inline int path_exit(long ret) {
    struct file_event_t *e = take_pending();
    if (!e)
        return 0;
    if (ret == 0 && (e->pflags & PF_DRIFT))
        drift_record(e, DRIFT_MODIFIED);
    finish(e, ret);
    return 0;
}

static __always_inline int do_path_op(__u16 action, int dfd, const char *upath, __u32 mode, int drift) {
    struct file_event_t *e = start_event(action);
    if (!e)
        return 0;
    e->dfd = dfd;
    e->mode = mode;
    e->kflags |= read_path(&e->path, (__u64)upath, dfd);
    write_like(e, drift, 0);
    return 0;
}

static __always_inline int do_rename(int olddfd, const char *oldp, int newdfd, const char *newp, __u32 flags) {
    struct file_event_t *e = start_event(A_RENAME);
    if (!e)
        return 0;
    e->dfd = olddfd;
    e->dfd2 = newdfd;
    e->flags = flags;
    e->kflags |= read_path(&e->path, (__u64)oldp, olddfd);
    e->kflags |= read_path(&e->path2, (__u64)newp, newdfd);
    write_like(e, 0, 1); /* a rename keeps the inode: its drift record still holds */
    return 0;
}

/* Unlinks by any task (the host removing an old container's rootfs too): the last name of a
 * regular file going away frees its inode number for reuse, so its drift record goes with it
 * (else a new, never-written file could inherit it). The victim is the inode whose ctime the
 * unlink sets while it still has its last link. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, GATE_SLOTS);
    __type(key, __u32);
    __type(value, __u32);
} unlink_gate SEC(".maps");

static __always_inline void set_unlink_gate(__u32 value) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    __u32 slot = tid & (GATE_SLOTS - 1);
    bpf_map_update_elem(&unlink_gate, &slot, value ? &tid : &value, BPF_ANY);
}

static __always_inline void forget_inode(struct inode *ino) {
    if (!ino || (BPF_CORE_READ(ino, i_mode) & S_IFMT) != S_IFREG || BPF_CORE_READ(ino, i_nlink) > 1)
        return;
    struct drift_key k = {.dev = BPF_CORE_READ(ino, i_sb, s_dev), .ino = BPF_CORE_READ(ino, i_ino)};
    bpf_map_delete_elem(&drift_inodes, &k);
}

#define ARG(i) (ctx->args[i])
#define ENTER(name) SEC("tp/syscalls/sys_enter_" #name) int enter_##name(struct trace_event_raw_sys_enter *ctx)
#define EXIT(name, fn) \
    SEC("tp/syscalls/sys_exit_" #name) int exit_##name(struct trace_event_raw_sys_exit *ctx) { return fn(ctx->ret); }

/* ---- opens -------------------------------------------------------------------------------- */

ENTER(open) { return do_open(AT_FDCWD_, (const char *)ARG(0), ARG(1), ARG(2)); }
ENTER(openat) { return do_open(ARG(0), (const char *)ARG(1), ARG(2), ARG(3)); }
ENTER(openat2) {
    __u64 how[2] = {}; /* struct open_how starts with u64 flags, u64 mode */
    bpf_probe_read_user(how, sizeof(how), (void *)ARG(2));
    return do_open(ARG(0), (const char *)ARG(1), (__u32)how[0], (__u32)how[1]);
}
ENTER(creat) { return do_open(AT_FDCWD_, (const char *)ARG(0), O_CREAT_ | O_WRONLY_ | O_TRUNC_, ARG(1)); }

/* ---- namespace changes ------------------------------------------------------------------- */

ENTER(unlink) {
    set_unlink_gate(1);
    return do_path_op(A_UNLINK, AT_FDCWD_, (const char *)ARG(0), 0, 0);
}
ENTER(unlinkat) {
    set_unlink_gate(1);
    return do_path_op(A_UNLINK, ARG(0), (const char *)ARG(1), 0, 0);
}
ENTER(rename) { return do_rename(AT_FDCWD_, (const char *)ARG(0), AT_FDCWD_, (const char *)ARG(1), 0); }
ENTER(renameat) { return do_rename(ARG(0), (const char *)ARG(1), ARG(2), (const char *)ARG(3), 0); }
ENTER(renameat2) { return do_rename(ARG(0), (const char *)ARG(1), ARG(2), (const char *)ARG(3), ARG(4)); }

/* ---- metadata -------------------------------------------------------------------------------- */

ENTER(chmod) { return do_path_op(A_CHMOD, AT_FDCWD_, (const char *)ARG(0), ARG(1), ARG(1) & 0111); }
ENTER(fchmodat) { return do_path_op(A_CHMOD, ARG(0), (const char *)ARG(1), ARG(2), ARG(2) & 0111); }
/* fchmodat2 exists from Linux 6.6; the loader leaves it out where the tracepoint is missing. */
ENTER(fchmodat2) { return do_path_op(A_CHMOD, ARG(0), (const char *)ARG(1), ARG(2), ARG(2) & 0111); }
ENTER(truncate) { return do_path_op(A_TRUNCATE, AT_FDCWD_, (const char *)ARG(0), 0, 1); }

/* fchmod(fd): the path and the inode are those of the open file behind fd. */
ENTER(fchmod) {
    struct file_event_t *e = start_event(A_CHMOD);
    if (!e)
        return 0;
    int fd = ARG(0);
    e->dfd = fd;
    e->mode = ARG(1);
    e->path.s[0] = 0;
    struct file *f = pt_fd_file(bpf_get_current_task_btf(), fd);
    if (!f)
        return 0;
    int r = nfp_path((__u64)BPF_CORE_READ(f, f_path.dentry), (__u64)BPF_CORE_READ(f, f_path.mnt), &e->path);
    if (r < 0)
        return 0;
    if (r & NFP_CUT)
        e->kflags |= KF_PATH_CUT;
    write_like(e, e->mode & 0111, 0);
    if (e->pflags & PF_DRIFT) {
        __u32 tid = e->tid;
        struct file_event_t *p = bpf_map_lookup_elem(&pending, &tid);
        if (p)
            set_inode(p, BPF_CORE_READ(f, f_inode));
    }
    return 0;
}

/* The inode a path-based chmod or truncate acts on, as the kernel resolved it: the one whose
 * ctime the syscall changes (fs/inode.c timestamp tracepoints, Linux 6.13+; the loader leaves
 * these out where they are missing). Path lookup changes no ctime, so within a pending chmod
 * the only inodes seen are the target's; on overlayfs the upper inode comes first and the
 * overlay inode (the one exec sees) last, so the last one wins. LSM (inode_setattr) would
 * give the dentry directly, but BPF LSM and trampoline programs do not load on every kernel
 * that has BTF (this VM refuses them with EPERM); tracepoints load wherever tracing works. */
static __always_inline int stash_inode(struct inode *ino) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    __u32 slot = tid & (GATE_SLOTS - 1);
    __u32 *u = bpf_map_lookup_elem(&unlink_gate, &slot);
    if (u && *u == tid) {
        forget_inode(ino);
        return 0;
    }
    __u32 *g = bpf_map_lookup_elem(&pending_gate, &slot);
    if (!g || *g != tid)
        return 0;
    struct file_event_t *e = bpf_map_lookup_elem(&pending, &tid);
    if (!e || !(e->pflags & PF_DRIFT) || (e->action != A_CHMOD && e->action != A_TRUNCATE))
        return 0;
    set_inode(e, ino);
    return 0;
}

SEC("tp_btf/ctime_ns_xchg")
int BPF_PROG(drift_ctime_xchg, struct inode *inode) { return stash_inode(inode); }

SEC("tp_btf/ctime_xchg_skip")
int BPF_PROG(drift_ctime_skip, struct inode *inode) { return stash_inode(inode); }

SEC("tp_btf/inode_set_ctime_to_ts")
int BPF_PROG(drift_ctime_set, struct inode *inode) { return stash_inode(inode); }

/* A container's cgroup is removed: its drift records go with it. Records are keyed by inode,
 * and inode numbers, device numbers (overlayfs mounts get anonymous ones) and namespace
 * inodes are all reused once freed; a record must not outlive its container and be matched by
 * a later one. Cgroup removals are rare, so one walk of the map each is cheap. */
struct cg_gone_ctx {
    __u64 cgroup_id;
};

static long forget_cgroup_record(void *map, struct drift_key *k, struct drift_val *v, struct cg_gone_ctx *c) {
    if (v->cgroup_id == c->cgroup_id && bpf_map_delete_elem(map, k) == 0)
        count_drift(2);
    return 0;
}

SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(drift_cgroup_gone, struct cgroup *cgrp, const char *path) {
    if (BPF_CORE_READ(cgrp, root, hierarchy_id) != 0) /* cgroup v2 only: the ids tasks carry */
        return 0;
    struct cg_gone_ctx c = {.cgroup_id = BPF_CORE_READ(cgrp, kn, id)};
    bpf_for_each_map_elem(&drift_inodes, forget_cgroup_record, &c, 0);
    return 0;
}

/* ---- results --------------------------------------------------------------------------------- */

EXIT(open, open_exit)
EXIT(openat, open_exit)
EXIT(openat2, open_exit)
EXIT(creat, open_exit)
static __always_inline int unlink_exit(long ret) {
    set_unlink_gate(0);
    return path_exit(ret);
}

EXIT(unlink, unlink_exit)
EXIT(unlinkat, unlink_exit)
EXIT(rename, path_exit)
EXIT(renameat, path_exit)
EXIT(renameat2, path_exit)
EXIT(chmod, path_exit)
EXIT(fchmodat, path_exit)
EXIT(fchmodat2, path_exit)
EXIT(fchmod, path_exit)
EXIT(truncate, path_exit)
