/* podtrail process sensor: exec (with argv, success and failure), fork, exit, and cgroup
 * creation, from tracepoints only. No kernel struct is read: the headers BCC compiles with
 * belong to another kernel build, so everything comes from tracepoint arguments and helpers
 * (pid/tgid, uid/gid, comm, cgroup id, ktime). Parent pids, paths of other processes and
 * container identity are derived in user space (podtrail.procs, podtrail.enrich).
 *
 * One ring buffer carries every sample, so user space sees them in kernel order: a cgroup's
 * mkdir before the first exec inside it, a fork before the child's exec, exec before exit.
 *
 * Compile-time constants (from podtrail.bpf.process): MAX_ARGS, ARG_SIZE, RINGBUF_PAGES,
 * HOST_PIDNS_DEV/INO, HAVE_GROUP_DEAD.
 */
#include <uapi/linux/ptrace.h>
#include <linux/sched.h>

#define EV_EXEC 1
#define EV_FORK 2
#define EV_EXIT 3
#define EV_CGROUP_MKDIR 4
#define EV_CGROUP_RMDIR 5

#define F_ARGS_TRUNCATED 1 /* argv cut to MAX_ARGS or an argument to ARG_SIZE */
#define F_CONTAINER 2      /* task outside the host PID namespace */
#define F_EXIT_KNOWN 4     /* exit: the code came from exit()/exit_group() or a fatal signal */
#define F_NO_ENTER 8       /* exec: no sys_enter seen (agent started mid-exec): no argv */

#define PATH_LEN 512
#define ARGS_BUF (MAX_ARGS * ARG_SIZE)
#define LAST_ARG (ARGS_BUF - ARG_SIZE)
#define CLONE_THREAD_FLAG 0x00010000ULL

struct hdr_t {
    u64 ktime;
    u64 cgroup_id;
    u32 type;
    u32 pid;   /* tgid; for fork, the child */
    u32 tid;
    u32 ppid;  /* fork: the parent's tgid; else 0 (user space knows it) */
    u32 uid;
    u32 gid;
    s32 result; /* exec: 0 or -errno; exit: exit code */
    u32 flags;
    char comm[TASK_COMM_LEN];
};

struct exec_t {
    struct hdr_t h;
    u32 argc;
    u32 args_size;
    char path[PATH_LEN];
    char args[ARGS_BUF];
};

struct cgroup_t {
    struct hdr_t h;
    char path[PATH_LEN];
};

struct cfg_t {
    u32 self_tgid;
    u32 containers_only;
};

BPF_ARRAY(cfg, struct cfg_t, 1);
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_PERCPU_ARRAY(lost, u64, 1);
BPF_PERCPU_ARRAY(scratch, struct exec_t, 1);
BPF_HASH(execs, u32, struct exec_t, 4096);       /* tid -> exec in progress */
BPF_HASH(clone_flags, u32, u64, 4096);           /* tid -> flags of a clone in progress */
BPF_HASH(exit_codes, u32, s32, 8192);            /* tgid -> code from exit_group / fatal signal */

static __always_inline void count_lost(void) {
    u32 z = 0;
    u64 *l = lost.lookup(&z);
    if (l)
        __sync_fetch_and_add(l, 1);
}

/* Wake the reader once per WAKEUP_EVERY samples per CPU, not per sample: in an exec storm a
 * wake-up per sample costs the workload more than the sample. The reader also polls with a
 * short timeout, so a lone sample waits at most that long. */
#define WAKEUP_EVERY 64
BPF_PERCPU_ARRAY(since_wakeup, u32, 1);

static __always_inline void submit(void *data, u64 size) {
    u32 z = 0;
    u64 flags = BPF_RB_NO_WAKEUP;
    u32 *n = since_wakeup.lookup(&z);
    if (n && ++(*n) >= WAKEUP_EVERY) {
        *n = 0;
        flags = BPF_RB_FORCE_WAKEUP;
    }
    if (events.ringbuf_output(data, size, flags) != 0)
        count_lost();
}

static __always_inline int in_container(void) {
    struct bpf_pidns_info ns = {};
    return bpf_get_ns_current_pid_tgid(HOST_PIDNS_DEV, HOST_PIDNS_INO, &ns, sizeof(ns)) != 0;
}

/* Fill the common header from the current task; 0 when the task's events are filtered.
 * The agent's own events are dropped, except its forks: the child is not the agent. */
static __always_inline int fill_hdr(struct hdr_t *h, u32 type) {
    u32 z = 0;
    struct cfg_t *c = cfg.lookup(&z);
    u64 pt = bpf_get_current_pid_tgid();
    u32 tgid = pt >> 32;
    if (c && tgid == c->self_tgid && type != EV_FORK)
        return 0;
    int inc = in_container();
    if (c && c->containers_only && !inc)
        return 0;
    u64 ug = bpf_get_current_uid_gid();
    h->ktime = bpf_ktime_get_ns();
    h->cgroup_id = bpf_get_current_cgroup_id();
    h->type = type;
    h->pid = tgid;
    h->tid = (u32)pt;
    h->ppid = 0;
    h->uid = (u32)ug;
    h->gid = ug >> 32;
    h->result = 0;
    h->flags = inc ? F_CONTAINER : 0;
    bpf_get_current_comm(&h->comm, sizeof(h->comm));
    return 1;
}

/* ---- exec ------------------------------------------------------------------------------- */

static __always_inline int exec_enter(const char *filename, const char *const *argv) {
    u32 z = 0;
    struct exec_t *e = scratch.lookup(&z);
    if (!e)
        return 0;
    if (!fill_hdr(&e->h, EV_EXEC))
        return 0;
    e->argc = 0;
    e->args_size = 0;
    bpf_probe_read_user_str(&e->path, sizeof(e->path), filename);
    int i;
    for (i = 0; i < MAX_ARGS; i++) {
        const char *argp = NULL;
        bpf_probe_read_user(&argp, sizeof(argp), &argv[i]);
        if (!argp)
            break;
        if (e->args_size > LAST_ARG) {
            e->h.flags |= F_ARGS_TRUNCATED;
            break;
        }
        int n = bpf_probe_read_user_str(&e->args[e->args_size], ARG_SIZE, argp);
        if (n <= 0)
            break;
        if (n == ARG_SIZE)
            e->h.flags |= F_ARGS_TRUNCATED;
        e->args_size += n;
        e->argc++;
    }
    if (i == MAX_ARGS) {
        const char *more = NULL;
        bpf_probe_read_user(&more, sizeof(more), &argv[MAX_ARGS]);
        if (more)
            e->h.flags |= F_ARGS_TRUNCATED;
    }
    u32 tid = e->h.tid;
    execs.update(&tid, e);
    return 0;
}

static __always_inline void emit_exec(struct exec_t *e) {
    u64 n = e->args_size;
    asm volatile("" : "+r"(n)); /* keep the bound check below in the verifier's sight */
    if (n > ARGS_BUF)
        n = 0;
    submit(e, offsetof(struct exec_t, args) + n);
}

TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    return exec_enter((const char *)args->filename, (const char *const *)args->argv);
}

TRACEPOINT_PROBE(syscalls, sys_enter_execveat) {
    return exec_enter((const char *)args->filename, (const char *const *)args->argv);
}

/* Success: runs inside exec, after the new image is in place (credentials, comm updated). */
TRACEPOINT_PROBE(sched, sched_process_exec) {
    u32 old = args->old_pid;
    struct exec_t *e = execs.lookup(&old);
    if (!e) {
        u32 z = 0;
        e = scratch.lookup(&z);
        if (!e)
            return 0;
        e->argc = 0;
        e->args_size = 0;
        if (!fill_hdr(&e->h, EV_EXEC))
            return 0;
        e->h.flags |= F_NO_ENTER;
    } else {
        u32 keep = e->h.flags & F_ARGS_TRUNCATED;
        if (!fill_hdr(&e->h, EV_EXEC)) {
            execs.delete(&old);
            return 0;
        }
        e->h.flags |= keep;
    }
    TP_DATA_LOC_READ_STR(&e->path, filename, sizeof(e->path));
    e->h.result = 0;
    emit_exec(e);
    execs.delete(&old);
    return 0;
}

/* Failure: sys_exit with a negative result (success already reported above). */
static __always_inline int exec_exit(long ret) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct exec_t *e = execs.lookup(&tid);
    if (!e)
        return 0;
    if (ret < 0) {
        e->h.result = (s32)ret;
        e->h.ktime = bpf_ktime_get_ns();
        emit_exec(e);
    }
    execs.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_execve) { return exec_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_execveat) { return exec_exit(args->ret); }

/* ---- fork: threads are told apart by CLONE_THREAD in the clone flags ---------------------- */

TRACEPOINT_PROBE(syscalls, sys_enter_clone) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 flags = args->clone_flags;
    clone_flags.update(&tid, &flags);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_clone3) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 flags = 0;
    bpf_probe_read_user(&flags, sizeof(flags), (void *)args->uargs); /* clone_args.flags */
    clone_flags.update(&tid, &flags);
    return 0;
}

static __always_inline int clone_exit(void) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    clone_flags.delete(&tid);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_clone) { return clone_exit(); }
TRACEPOINT_PROBE(syscalls, sys_exit_clone3) { return clone_exit(); }

/* Runs in the parent; child_pid is in the host PID namespace. */
TRACEPOINT_PROBE(sched, sched_process_fork) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 *fl = clone_flags.lookup(&tid);
    if (fl && (*fl & CLONE_THREAD_FLAG))
        return 0;
    struct hdr_t h = {};
    if (!fill_hdr(&h, EV_FORK))
        return 0;
    h.ppid = h.pid;
    h.pid = args->child_pid;
    h.tid = args->child_pid;
    submit(&h, sizeof(h));
    return 0;
}

/* ---- exit: the code from exit_group()/exit(), else 128+signal from a fatal default signal -- */

TRACEPOINT_PROBE(syscalls, sys_enter_exit_group) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    s32 code = (s32)(args->error_code & 0xff);
    exit_codes.update(&tgid, &code);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_exit) {
    u64 pt = bpf_get_current_pid_tgid();
    u32 tgid = pt >> 32;
    if ((u32)pt != tgid)
        return 0; /* a thread's exit() does not end the process */
    s32 code = (s32)(args->error_code & 0xff);
    exit_codes.update(&tgid, &code);
    return 0;
}

/* A signal delivered with the default action (handler 0): if it is fatal, the process dies
 * with it. Non-fatal defaults (SIGCHLD, SIGWINCH, SIGURG, SIGCONT, stop signals) are ignored. */
TRACEPOINT_PROBE(signal, signal_deliver) {
    int sig = args->sig;
    if (args->sa_handler != 0)
        return 0;
    if (sig == 17 || sig == 28 || sig == 23 || sig == 18 || sig == 19 || sig == 20 || sig == 21 || sig == 22)
        return 0;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    s32 code = 128 + sig;
    exit_codes.update(&tgid, &code);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit) {
    u64 pt = bpf_get_current_pid_tgid();
    u32 tgid = pt >> 32;
#ifdef HAVE_GROUP_DEAD
    if (!args->group_dead)
        return 0;
#else
    if ((u32)pt != tgid)
        return 0;
#endif
    struct hdr_t h = {};
    s32 *code = exit_codes.lookup(&tgid);
    if (fill_hdr(&h, EV_EXIT)) {
        if (code) {
            h.result = *code;
            h.flags |= F_EXIT_KNOWN;
        }
        submit(&h, sizeof(h));
    }
    exit_codes.delete(&tgid);
    return 0;
}

/* ---- cgroups (v2 hierarchy only: root 0): the id -> path index learns a new container's
 * cgroup before any process in it reports ---------------------------------------------------- */

TRACEPOINT_PROBE(cgroup, cgroup_mkdir) {
    if (args->root != 0)
        return 0;
    u32 z = 0;
    struct exec_t *s = scratch.lookup(&z);
    if (!s)
        return 0;
    struct cgroup_t *c = (struct cgroup_t *)s;
    __builtin_memset(&c->h, 0, sizeof(c->h));
    c->h.type = EV_CGROUP_MKDIR;
    c->h.ktime = bpf_ktime_get_ns();
    c->h.cgroup_id = args->id;
    TP_DATA_LOC_READ_STR(&c->path, path, sizeof(c->path));
    submit(c, sizeof(*c));
    return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_rmdir) {
    if (args->root != 0)
        return 0;
    struct hdr_t h = {};
    h.type = EV_CGROUP_RMDIR;
    h.ktime = bpf_ktime_get_ns();
    h.cgroup_id = args->id;
    submit(&h, sizeof(h));
    return 0;
}
