/* podtrail process sensor (CO-RE): exec (with argv, success and failure), fork, exit and cgroup
 * creation. Compiled once against BTF (make bpf); every fact an event needs is read from kernel
 * structs at the event, so nothing is fetched from /proc later (no race with short-lived
 * processes):
 *  - exec: the name exec was called with (bprm->filename) and the file the kernel ran
 *    (bprm->file: links resolved, with inode and device), the cwd and exe path as seen from the
 *    task's own root, the kinds of fds 0-2 and the controlling tty, credentials (uid, gid, euid,
 *    loginuid, session, effective capabilities), mount/pid/net namespaces, the in-kernel drift
 *    verdict (drift.h);
 *  - every sample: real parent tgid and the task's start time (process key pid:start_ns).
 *
 * Fewer crossings: a fork (new thread group) is held in `held_forks` instead of sent. The
 * exec that follows (the usual fork+exec) takes the entry and carries the fork's facts itself
 * (fork-time parent, start time; F_FORK_FOLDED), so one sample crosses instead of two. A child
 * that exits without exec'ing gets its fork sent just before its exit; one that forks first
 * gets it sent before its child's; one that neither execs nor exits is reported by user space,
 * which sweeps entries older than a short window with BPF_MAP_LOOKUP_AND_DELETE_ELEM
 * (podtrail/bpf/process.py). Whoever deletes an entry reports it: exactly once. A full map
 * never loses a fork: it is sent at once and counted (fold_stats).
 *
 * One ring buffer carries every sample, so user space sees them in kernel order: a cgroup's
 * mkdir before the first exec inside it, a fork before the child's exec, exec before exit.
 * Read-only config (CFG, .rodata) is set by the loader before load: the verifier sees it as
 * constants. Layouts are mirrored in podtrail/bpf/process.py.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "task_facts.h"
#include "drift.h"
#include "ringbuf.h"

char LICENSE[] SEC("license") = "GPL";

#define EV_EXEC 1
#define EV_FORK 2
#define EV_EXIT 3
#define EV_CGROUP_MKDIR 4
#define EV_CGROUP_RMDIR 5

#define F_ARGS_TRUNCATED 1  /* argv cut to max_args or an argument to arg_size */
#define F_CONTAINER 2       /* task outside the host PID namespace */
#define F_EXIT_KNOWN 4      /* exit: exit_code is valid */
#define F_NO_ENTER 8        /* exec: argv could not be read from the new image */
#define F_RUNTIME_SETUP 16  /* the container runtime's own setup (runc/crun init), see is_runtime */
#define F_CWD_TRUNCATED 32
#define F_CWD_OUTSIDE 64    /* cwd not under the task's root */
#define F_EXE_TRUNCATED 128
#define F_EXE_OUTSIDE 256   /* executable not under the task's root (memfd, runtime binary) */
#define F_FORK_FOLDED 512   /* exec: this process's fork was held and is folded into this exec */

/* fold_stats slots (podtrail.bpf.process.FOLD_OUTCOMES) */
#define FOLD_FOLDED 0       /* a held fork taken by the exec that followed: never sent */
#define FOLD_MAP_FULL 1     /* held_forks was full (or had the pid): the fork was sent at once */
#define FOLD_SLOTS 2

#define ARGS_BUF 16384      /* argv bytes kept at most, whatever the config */
#define ARG_MAX_READ 4096   /* the largest per-argument size the config may set */
#define MAX_ARGS_CAP 128
#define NAME_BUF 512        /* the user-supplied exec name, before resolution */
#define TTY_LEN 32

struct config {
    __u64 host_pidns_ino;
    __u32 self_tgid;
    __u32 containers_only;
    __u32 max_args;  /* <= MAX_ARGS_CAP */
    __u32 arg_size;  /* 16..ARG_MAX_READ */
    __u32 fold_forks; /* hold forks for the exec that follows (see the top) */
    __u32 pad;
};

const volatile struct config CFG = {.max_args = 32, .arg_size = 256, .fold_forks = 1};

struct hdr_t {
    __u64 ktime;
    __u64 cgroup_id;
    __u64 start_ns;  /* task->start_boottime: with pid, the process key */
    __u32 type;
    __u32 pid;       /* tgid; for fork, the child */
    __u32 tid;
    __u32 ppid;      /* real parent's tgid */
    __u32 uid;
    __u32 gid;
    __s32 result;    /* exec: 0 or -errno; exit: exit code */
    __u32 flags;
    char comm[16];
};

struct exec_t {
    struct hdr_t h;
    __u64 exe_ino;
    __u64 exe_dev;        /* kernel encoding: major << 20 | minor */
    __u64 cap_effective;
    __u32 euid;
    __u32 egid;
    __u32 auid;
    __u32 sessionid;
    __u32 mnt_ns;
    __u32 pid_ns;
    __u32 net_ns;
    __u32 argc;
    __u32 args_size;
    __u16 name_len;
    __u16 cwd_off;        /* the cwd is cwd.s[cwd_off:PT_PATH_MAX] */
    __u16 exe_off;        /* the executable's path is exe.s[exe_off:PT_PATH_MAX] */
    __u8 fd_kind[3];
    __u8 drift;           /* DRIFT_* or 0 */
    char tty[TTY_LEN];
    char name[NAME_BUF];  /* what exec was called with ("./tool", "/bin/mkfifo") */
    struct pt_buf cwd;
    struct pt_buf exe;
    char args[ARGS_BUF + ARG_MAX_READ];
};

/* A failed exec's argv: read at sys_exit from the caller's pointers, still valid in the old
 * image, which the syscall's saved user registers hold (bpf_task_pt_regs). A successful exec
 * reads argv from the new image (mm->arg_start..arg_end, written by the kernel and not yet
 * touched by the program). No per-exec state is kept between the syscall's entry and exit:
 * before, a sys_enter_execve program stored these pointers in a hash map at every exec for
 * the few that fail (~0.9 us per exec here), and copying argv there cost 3-6 us before that. */

struct cgroup_t {
    struct hdr_t h;
    char path[PT_PATH_BUF];
};

/* fork: the child's cwd, inherited at this moment (a later cd in the parent does not change it);
 * exit: the cwd at exit */
struct fork_t {
    struct hdr_t h;
    __u16 cwd_off;
    __u16 held_epoch;     /* held_forks: the held_count generation it was held in */
    __u16 pad[2];
    struct pt_buf cwd;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct exec_t);
} scratch SEC(".maps");

/* An entry lives until its exec or exit, or until the sweep takes it (~0.1-0.2 s: user space,
 * FORK_HOLD_NS): 2048 entries hold every fork of a sustained 10,000 forks/s that do not exec
 * at once. Beyond, a fork is sent at once (counted, FOLD_MAP_FULL). A sweep's walk visits
 * every bucket: with 8192 it cost ~0.2 ms even on an empty map.
 * Preallocated (2048 x ~1.4 KiB, ~3 MiB of kernel memory at load): every fork inserts and
 * nearly every exec deletes, and taking an element from the preallocated free list cost
 * ~250 ns less per fork here than allocating one (bpf_mem_alloc). A preallocated element
 * can be reused as soon as it is deleted, so whoever reads an entry (fold_held, send_held)
 * uses what it read only if its own delete of that key succeeds: the key (the child's tgid)
 * is inserted once, by that child's fork, so a successful delete means the element was not
 * reused in between. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 2048);
    __type(key, __u32);            /* the child's tgid */
    __type(value, struct fork_t);  /* the fork sample, as it would have been sent */
} held_forks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct fork_t);
} fork_scratch SEC(".maps"); /* a held fork copied out before its entry is deleted */

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, FOLD_SLOTS);
    __type(key, __u32);
    __type(value, __u64);
} fold_stats SEC(".maps");

/* How many forks are held, by generation: user space starts a new generation (`epoch`) every
 * half hold time and, before a generation's slot (epoch % 3) is used again, takes the forks
 * still held from it (they are at least the hold time old); it walks held_forks only when that
 * slot's count says some are left, so forks that exec or exit within the hold time never cost a
 * walk. +1 before a hold, -1 after the kernel takes one back (user space counts its own takes):
 * a count is never below the map's. Mapped by user space (no syscall; it writes `epoch`). */
#define HELD_GENERATIONS 3
struct held_count_t {
    __s64 held[HELD_GENERATIONS];
    __u32 epoch;
    __u32 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, __u32);
    __type(value, struct held_count_t);
} held_count SEC(".maps");

static __always_inline __u32 held_generation(void)
{
    __u32 z = 0;
    struct held_count_t *c = bpf_map_lookup_elem(&held_count, &z);
    return c ? c->epoch % HELD_GENERATIONS : 0;
}

static __always_inline void count_held(__u32 gen, __s64 d)
{
    __u32 z = 0;
    struct held_count_t *c = bpf_map_lookup_elem(&held_count, &z);
    if (!c)
        return;
    if (gen == 0) /* constant indices: the verifier sees each access in bounds */
        __sync_fetch_and_add(&c->held[0], d);
    else if (gen == 1)
        __sync_fetch_and_add(&c->held[1], d);
    else if (gen == 2)
        __sync_fetch_and_add(&c->held[2], d);
}

static __always_inline void count_fold(__u32 slot)
{
    __u64 *n = bpf_map_lookup_elem(&fold_stats, &slot);
    if (n)
        __sync_fetch_and_add(n, 1);
}

/* Send tgid's held fork now, if there is one (its exit, or a child of its own, comes next).
 * Copied out first: once deleted, the entry may be reused. */
static __always_inline void send_held(__u32 tgid)
{
    struct fork_t *h = bpf_map_lookup_elem(&held_forks, &tgid);
    if (!h)
        return;
    __u32 z = 0;
    struct fork_t *c = bpf_map_lookup_elem(&fork_scratch, &z);
    if (!c)
        return;
    bpf_probe_read_kernel(c, sizeof(*c), h);
    if (bpf_map_delete_elem(&held_forks, &tgid) == 0) { /* else the sweep took it: it reports it */
        count_held(c->held_epoch, -1);
        submit(c, sizeof(*c));
    }
}

/* The exec (successful or the first failed attempt) of a child whose fork is held: take the
 * entry and carry its facts. The parent is the one at the fork, as the fork would have said
 * (the child may have been re-parented since). */
static __always_inline void fold_held(struct hdr_t *h)
{
    __u32 tgid = h->pid;
    struct fork_t *f = bpf_map_lookup_elem(&held_forks, &tgid);
    if (!f)
        return;
    __u32 ppid = f->h.ppid;
    __u32 gen = f->held_epoch;
    if (bpf_map_delete_elem(&held_forks, &tgid) != 0)
        return; /* the sweep took it first and reports the fork */
    count_held(gen, -1);
    h->ppid = ppid;
    h->flags |= F_FORK_FOLDED;
    count_fold(FOLD_FOLDED);
}


/* The runtime's setup, told by the names runtimes give their init stages: runc's nsexec
 * stages rename themselves "runc:[0:PARENT]", "runc:[1:CHILD]", "runc:[2:INIT]"; runc 1.1
 * re-executes itself as "exe" (/proc/self/exe) from a memfd copy before that. crun and youki
 * keep their own names. The workload's first exec (new comm) is not setup. */
static __always_inline int is_runtime(const char *comm, __u32 exe_flags)
{
    if (comm[0] == 'r' && comm[1] == 'u' && comm[2] == 'n' && comm[3] == 'c' && comm[4] == ':')
        return 1;
    if (comm[0] == 'c' && comm[1] == 'r' && comm[2] == 'u' && comm[3] == 'n' && comm[4] == 0)
        return 1;
    if (comm[0] == 'y' && comm[1] == 'o' && comm[2] == 'u' && comm[3] == 'k' && comm[4] == 'i' && comm[5] == 0)
        return 1;
    /* "exe" run from outside the task's root: runc's memfd copy of itself */
    if (comm[0] == 'e' && comm[1] == 'x' && comm[2] == 'e' && comm[3] == 0 && (exe_flags & PT_PATH_OUTSIDE))
        return 1;
    return 0;
}

/* 0 when task `t`'s events are filtered: the agent's own are dropped, except its forks (the
 * child is not the agent), and the host's when only containers are watched. *pid_ns gets
 * the task's PID namespace (the exec reports it too). Decided before a sample is reserved. */
static __always_inline int task_wanted(struct task_struct *t, __u32 type, __u32 *pid_ns)
{
    if (t->tgid == CFG.self_tgid && type != EV_FORK)
        return 0;
    __u32 pns = pt_pid_ns(t);
    if (CFG.containers_only && pns == (__u32)CFG.host_pidns_ino)
        return 0;
    *pid_ns = pns;
    return 1;
}

/* Fill the header from task `t` (a pointer from the kernel: direct loads, task_facts.h). */
static __always_inline void fill_hdr(struct hdr_t *h, struct task_struct *t, __u32 type, __u32 pid_ns)
{
    h->ktime = bpf_ktime_get_ns();
    h->cgroup_id = bpf_get_current_cgroup_id();
    h->start_ns = t->start_boottime;
    h->type = type;
    h->pid = t->tgid;
    h->tid = t->pid;
    h->ppid = t->real_parent->tgid;
    const struct cred *c = t->cred;
    h->uid = c->uid.val;
    h->gid = c->gid.val;
    h->result = 0;
    h->flags = pid_ns != (__u32)CFG.host_pidns_ino ? F_CONTAINER : 0;
    /* comm: NUL-terminated in the kernel (zero-padded by strscpy_pad); the bytes up to the
     * NUL are what user space reads, as with the string read before */
    __builtin_memcpy(h->comm, t->comm, sizeof(h->comm));
}

/* ---- exec ---------------------------------------------------------------------------------- */

/* A failed exec's argv, from the caller's pointers (the old image is intact): at most
 * max_args arguments of at most arg_size bytes each. */
static __always_inline void argv_from_user(struct exec_t *e, const char *const *argv)
{
    e->argc = 0;
    e->args_size = 0;
    int i;
    for (i = 0; i < MAX_ARGS_CAP && i < CFG.max_args; i++) {
        const char *argp = NULL;
        bpf_probe_read_user(&argp, sizeof(argp), &argv[i]);
        if (!argp)
            break;
        __u32 off = e->args_size;
        if (off >= ARGS_BUF) {
            e->h.flags |= F_ARGS_TRUNCATED;
            break;
        }
        long n = bpf_probe_read_user_str(&e->args[off & (ARGS_BUF - 1)], CFG.arg_size & (ARG_MAX_READ * 2 - 1), argp);
        if (n <= 0)
            break;
        if (n == CFG.arg_size)
            e->h.flags |= F_ARGS_TRUNCATED;
        e->args_size = off + n;
        e->argc++;
    }
    if (i == CFG.max_args) {
        const char *more = NULL;
        bpf_probe_read_user(&more, sizeof(more), &argv[i]);
        if (more)
            e->h.flags |= F_ARGS_TRUNCATED;
    }
}

/* A successful exec's argv, from the new image in one read: NUL-separated, as the kernel laid
 * it out. At most max_args * arg_size bytes cross (user space applies the per-argument limits
 * and sets F_ARGS_TRUNCATED's counterpart); argc is the kernel's count. */
static __always_inline void argv_from_mm(struct exec_t *e, struct task_struct *t, struct linux_binprm *bprm)
{
    struct mm_struct *mm = t->mm;
    __u64 start = mm->arg_start, end = mm->arg_end;
    __u64 cap = (__u64)CFG.max_args * CFG.arg_size;
    if (cap > ARGS_BUF)
        cap = ARGS_BUF;
    __u64 n = end > start ? end - start : 0;
    if (n > cap) {
        n = cap;
        e->h.flags |= F_ARGS_TRUNCATED;
    }
    asm volatile("" : "+r"(n));
    if (n > ARGS_BUF)
        n = 0;
    e->argc = bprm->argc;
    e->args_size = 0;
    if (n == 0) {
        e->argc = 0; /* an empty argv (argc 0) is a fact worth reporting as such */
    } else if (bpf_probe_read_user(&e->args, n, (const void *)start) == 0) {
        e->args_size = n;
    } else {
        e->argc = 0;
        e->h.flags |= F_NO_ENTER; /* unreadable: user space takes it from /proc if it can */
    }
}

static __always_inline __u32 cwd_flags(__u32 fl)
{
    return ((fl & PT_PATH_TRUNCATED) ? F_CWD_TRUNCATED : 0) | ((fl & PT_PATH_OUTSIDE) ? F_CWD_OUTSIDE : 0);
}

/* Credentials, namespaces, cwd, fds and tty of the current task into e (not the exe);
 * pid_ns as fill_hdr read it. */
static __always_inline void task_facts(struct exec_t *e, struct task_struct *t, __u32 pid_ns)
{
    const struct cred *c = t->cred;
    e->euid = c->euid.val;
    e->egid = c->egid.val;
    /* 64 bits whatever the kernel's kernel_cap_t looks like (u32[2] before 6.3) */
    __builtin_memcpy(&e->cap_effective, &c->cap_effective, sizeof(e->cap_effective));
    e->auid = (__u32)-1;
    e->sessionid = (__u32)-1;
    if (bpf_core_field_exists(t->loginuid)) {
        e->auid = t->loginuid.val;
        e->sessionid = t->sessionid;
    }
    e->mnt_ns = pt_mnt_ns(t);
    e->pid_ns = pid_ns;
    e->net_ns = pt_net_ns(t);
    __u32 fl = 0;
    e->cwd_off = pt_cwd(&e->cwd, t, &fl);
    e->h.flags |= cwd_flags(fl);
    for (int i = 0; i < 3; i++)
        e->fd_kind[i] = pt_file_kind(pt_fd_file(t, i));
    e->tty[0] = 0;
    struct tty_struct *tty = t->signal->tty;
    if (tty)
        bpf_probe_read_kernel_str(&e->tty, sizeof(e->tty), &tty->name);
}

static __always_inline int starts_with_memfd(const char *s)
{
    return s[0] == '/' && s[1] == 'm' && s[2] == 'e' && s[3] == 'm' && s[4] == 'f' && s[5] == 'd' && s[6] == ':';
}

static __always_inline int starts_with_dev_shm(const char *s)
{
    return s[0] == '/' && s[1] == 'd' && s[2] == 'e' && s[3] == 'v' && s[4] == '/' && s[5] == 's' &&
           s[6] == 'h' && s[7] == 'm' && s[8] == '/';
}

/* Reserve an exec sample of its exact size (the argv read into scratch `s` decides it), put
 * the argv and the header of task `t` in it; the rest is written in place by the caller
 * (ringbuf.h), then bpf_ringbuf_submit_dynptr. NULL (nothing to release) when the ring buffer
 * is full. */
static __always_inline struct exec_t *exec_reserve(struct bpf_dynptr *dp, struct exec_t *s, struct task_struct *t,
                                                   __u32 pid_ns)
{
    __u64 n = s->args_size;
    asm volatile("" : "+r"(n)); /* keep the bound check below in the verifier's sight */
    if (n > ARGS_BUF + ARG_MAX_READ)
        n = 0;
    if (bpf_ringbuf_reserve_dynptr(&events, offsetof(struct exec_t, args) + n, 0, dp) != 0) {
        count_lost();
        bpf_ringbuf_discard_dynptr(dp, 0);
        return NULL;
    }
    struct exec_t *e = bpf_dynptr_data(dp, 0, offsetof(struct exec_t, args));
    if (!e) {
        bpf_ringbuf_discard_dynptr(dp, 0);
        return NULL;
    }
    if (n)
        bpf_dynptr_write(dp, offsetof(struct exec_t, args), s->args, n, 0);
    e->argc = s->argc;
    e->args_size = n;
    fill_hdr(&e->h, t, EV_EXEC, pid_ns);
    e->h.flags |= s->h.flags; /* the argv's */
    return e;
}

/* Success: runs inside exec once the new image is in place (credentials, comm updated). */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *t, pid_t old_pid, struct linux_binprm *bprm)
{
    __u32 z = 0, pid_ns = 0;
    if (!task_wanted(t, EV_EXEC, &pid_ns))
        return 0;
    struct exec_t *s = bpf_map_lookup_elem(&scratch, &z);
    if (!s)
        return 0;
    s->h.flags = 0;
    argv_from_mm(s, t, bprm);
    struct bpf_dynptr dp;
    struct exec_t *e = exec_reserve(&dp, s, t, pid_ns);
    if (!e)
        return 0;
    /* the name exec was called with, as the kernel received it */
    long n = bpf_probe_read_kernel_str(&e->name, sizeof(e->name), bprm->filename);
    if (n <= 0)
        e->name[0] = 0;
    e->name_len = n > 0 ? n - 1 : 0;
    task_facts(e, t, pid_ns);
    /* the file actually run */
    struct file *f = bprm->file;
    __u32 fl = 0;
    e->exe_off = pt_file_path(&e->exe, t, f, &fl);
    if (fl & PT_PATH_TRUNCATED)
        e->h.flags |= F_EXE_TRUNCATED;
    if (fl & PT_PATH_OUTSIDE)
        e->h.flags |= F_EXE_OUTSIDE;
    struct inode *ino = f->f_inode;
    e->exe_ino = ino->i_ino;
    e->exe_dev = ino->i_sb->s_dev;
    if (is_runtime(e->h.comm, fl))
        e->h.flags |= F_RUNTIME_SETUP;
    /* drift, decided here: an inode recorded by the file sensor in this container */
    e->drift = 0;
    struct drift_key k = {.dev = e->exe_dev, .ino = e->exe_ino};
    struct drift_val *d = bpf_map_lookup_elem(&drift_inodes, &k);
    if (d && (d->cgroup_id == e->h.cgroup_id || (d->mnt_ns && d->mnt_ns == e->mnt_ns)))
        e->drift = d->reason;
    else if ((fl & PT_PATH_OUTSIDE) && starts_with_memfd(&e->exe.s[e->exe_off & (PT_PATH_MAX - 1)]) && !(e->h.flags & F_RUNTIME_SETUP))
        e->drift = DRIFT_MEMFD;
    else if (!(fl & PT_PATH_OUTSIDE) && starts_with_dev_shm(&e->exe.s[e->exe_off & (PT_PATH_MAX - 1)]))
        e->drift = DRIFT_DEV_SHM;
    fold_held(&e->h);
    bpf_ringbuf_submit_dynptr(&dp, wakeup_flags());
    return 0;
}

/* Failure: sys_exit with a negative result (success was reported above; execve returns 0
 * then, and nothing else is done). The caller's arguments are in its saved registers. */
static __always_inline int exec_exit(long ret, int at)
{
    if (ret >= 0)
        return 0;
    __u32 z = 0, pid_ns = 0;
    struct task_struct *t = bpf_get_current_task_btf();
    if (!task_wanted(t, EV_EXEC, &pid_ns))
        return 0;
    struct exec_t *s = bpf_map_lookup_elem(&scratch, &z);
    if (!s)
        return 0;
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(t);
    /* execve(filename, argv, envp); execveat(dfd, filename, argv, envp, flags) */
    __u64 filename = at ? PT_REGS_PARM2_CORE_SYSCALL(regs) : PT_REGS_PARM1_CORE_SYSCALL(regs);
    __u64 argv = at ? PT_REGS_PARM3_CORE_SYSCALL(regs) : PT_REGS_PARM2_CORE_SYSCALL(regs);
    s->h.flags = 0;
    argv_from_user(s, (const char *const *)argv);
    struct bpf_dynptr dp;
    struct exec_t *e = exec_reserve(&dp, s, t, pid_ns);
    if (!e)
        return 0;
    e->h.result = (__s32)ret;
    long n = bpf_probe_read_user_str(&e->name, sizeof(e->name), (const char *)filename);
    if (n <= 0)
        e->name[0] = 0;
    e->name_len = n > 0 ? n - 1 : 0;
    task_facts(e, t, pid_ns);
    e->exe.s[PT_PATH_MAX - 1] = 0;
    e->exe_off = PT_PATH_MAX - 1;
    e->exe_ino = 0;
    e->exe_dev = 0;
    e->drift = 0;
    if (is_runtime(e->h.comm, 0))
        e->h.flags |= F_RUNTIME_SETUP;
    fold_held(&e->h);
    bpf_ringbuf_submit_dynptr(&dp, wakeup_flags());
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int exit_execve(struct trace_event_raw_sys_exit *ctx) { return exec_exit(ctx->ret, 0); }

SEC("tracepoint/syscalls/sys_exit_execveat")
int exit_execveat(struct trace_event_raw_sys_exit *ctx) { return exec_exit(ctx->ret, 1); }
static __always_inline void fork_cwd(struct fork_t *f, struct task_struct *t)
{
    __u32 fl = 0;
    f->cwd_off = pt_cwd(&f->cwd, t, &fl);
    f->h.flags |= cwd_flags(fl);
}

/* ---- fork: a new thread group only (a thread has pid != tgid) ------------------------------- */

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
    if (child->pid != child->tgid)
        return 0;
    __u32 z = 0, pid_ns = 0;
    __u32 ptgid = parent->tgid;
    if (ptgid == CFG.self_tgid && child->tgid == CFG.self_tgid)
        return 0;
    if (!task_wanted(child, EV_FORK, &pid_ns))
        return 0;
    struct exec_t *s = bpf_map_lookup_elem(&scratch, &z);
    if (!s)
        return 0;
    struct fork_t *f = (struct fork_t *)s; /* built here: it is held in a map, or sent */
    fill_hdr(&f->h, child, EV_FORK, pid_ns);
    /* The child is not running yet: its cgroup is the parent's unless clone3 put it elsewhere. */
    f->h.cgroup_id = child->cgroups->dfl_cgrp->kn->id;
    if (is_runtime(f->h.comm, 0))
        f->h.flags |= F_RUNTIME_SETUP;
    fork_cwd(f, child);
    /* a held parent (forking before it execs, a subshell) is reported first: the child's
     * ancestry needs it */
    send_held(ptgid);
    f->held_epoch = 0;
    if (CFG.fold_forks) {
        __u32 gen = held_generation();
        f->held_epoch = gen;
        count_held(gen, 1);
        if (bpf_map_update_elem(&held_forks, &f->h.pid, f, BPF_NOEXIST) == 0)
            return 0;
        count_held(gen, -1);
        count_fold(FOLD_MAP_FULL);
    }
    submit(f, sizeof(*f));
    return 0;
}

/* ---- exit: the whole thread group is gone (signal->live reached 0); the code is the wait
 * status the kernel stored: (code << 8) for exit(), the signal number for a fatal signal ---- */

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *t)
{
    if (t->signal->live.counter != 0)
        return 0;
    send_held(t->tgid); /* never exec'd: its fork, then its exit */
    __u32 pid_ns = 0;
    if (!task_wanted(t, EV_EXIT, &pid_ns))
        return 0;
    struct fork_t *f = reserve_sample(sizeof(*f)); /* same layout: header and the cwd at exit */
    if (!f)
        return 0;
    fill_hdr(&f->h, t, EV_EXIT, pid_ns);
    f->held_epoch = 0;
    f->pad[0] = 0;
    f->pad[1] = 0;
    int code = t->exit_code;
    f->h.result = (code & 0x7f) ? 128 + (code & 0x7f) : (code >> 8) & 0xff;
    f->h.flags |= F_EXIT_KNOWN;
    if (is_runtime(f->h.comm, 0))
        f->h.flags |= F_RUNTIME_SETUP;
    fork_cwd(f, t); /* empty when task->fs is already gone */
    commit_sample(f);
    return 0;
}

/* ---- cgroups (v2 hierarchy only: hierarchy id 0): the id -> path index learns a new
 * container's cgroup before any process in it reports ---------------------------------------- */

SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(on_cgroup_mkdir, struct cgroup *cgrp, const char *path)
{
    if (BPF_CORE_READ(cgrp, root, hierarchy_id) != 0)
        return 0;
    __u32 z = 0;
    struct exec_t *s = bpf_map_lookup_elem(&scratch, &z);
    if (!s)
        return 0;
    struct cgroup_t *c = (struct cgroup_t *)s;
    __builtin_memset(&c->h, 0, sizeof(c->h));
    c->h.type = EV_CGROUP_MKDIR;
    c->h.ktime = bpf_ktime_get_ns();
    c->h.cgroup_id = BPF_CORE_READ(cgrp, kn, id);
    bpf_probe_read_kernel_str(&c->path, sizeof(c->path), path);
    submit(c, sizeof(*c));
    return 0;
}

SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(on_cgroup_rmdir, struct cgroup *cgrp, const char *path)
{
    if (BPF_CORE_READ(cgrp, root, hierarchy_id) != 0)
        return 0;
    struct hdr_t h = {};
    h.type = EV_CGROUP_RMDIR;
    h.ktime = bpf_ktime_get_ns();
    h.cgroup_id = BPF_CORE_READ(cgrp, kn, id);
    submit(&h, sizeof(h));
    return 0;
}
