/* Shared by socket.c and file.c: the runtime config map, the per-task filter and the
 * ring buffer with in-kernel loss counting. Only helpers and tracepoint arguments are used:
 * no kernel struct is read (headers are for another kernel build). */
#include <uapi/linux/ptrace.h>
#include <linux/sched.h>

#define KF_CONTAINER 1     /* task is outside the agent's (host) PID namespace */
#define KF_SENSITIVE 2     /* read of a path on the sensitive list */
#define KF_DRIFT_ONLY 4    /* outside watched prefixes: only for the drift tracker */
#define KF_RELATIVE 8      /* path is relative to dfd / cwd */
#define KF_PEER_USER 16    /* accept: peer read from the user sockaddr */
#define KF_SYN_SENT 32     /* connect: the kernel moved the socket to SYN_SENT (TCP) */
#define KF_ESTABLISHED 64  /* connect: handshake completed (TCP) */
#define KF_TRUNCATED 128   /* path hit the in-kernel length limit */

/* Filled from user space (podtrail.bpf.netfile): config changes need no recompile. */
struct nf_cfg_t {
    u32 self_tgid;       /* the agent itself never reports */
    u32 containers_only; /* drop tasks in the host PID namespace */
    u32 loopback;        /* report loopback addresses */
    u32 n_excluded;      /* entries in excluded_comms */
    u32 drift;           /* pass exec-bit creates/chmods and renames in containers */
};
BPF_ARRAY(nf_cfg, struct nf_cfg_t, 1);

struct comm_key_t { char c[TASK_COMM_LEN]; };
BPF_HASH(excluded_comms, struct comm_key_t, u8, 256);

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_PERCPU_ARRAY(lost, u64, 1);

/* Wake the reader once per WAKEUP_EVERY samples per CPU, not per sample: in a storm a
 * wake-up per sample costs the workload more than the sample itself. The reader also polls
 * with a short timeout (netfile.py POLL_MS), so a lone event waits at most that long. */
#define WAKEUP_EVERY 128
BPF_PERCPU_ARRAY(since_wakeup, u32, 1);

/* urgent: wake the reader now (it must look at /proc while the process still exists). */
static __always_inline void submit(void *data, u64 size, int urgent) {
    u32 z = 0;
    u64 flags = BPF_RB_NO_WAKEUP;
    u32 *n = since_wakeup.lookup(&z);
    if (n && (++(*n) >= WAKEUP_EVERY || urgent)) {
        *n = 0;
        flags = BPF_RB_FORCE_WAKEUP;
    }
    if (events.ringbuf_output(data, size, flags) != 0) {
        u64 *l = lost.lookup(&z);
        if (l)
            __sync_fetch_and_add(l, 1);
    }
}

static __always_inline struct nf_cfg_t *get_cfg(void) {
    u32 z = 0;
    return nf_cfg.lookup(&z);
}

static __always_inline int in_container(void) {
    struct bpf_pidns_info ns = {};
    return bpf_get_ns_current_pid_tgid(HOST_PIDNS_DEV, HOST_PIDNS_INO, &ns, sizeof(ns)) != 0;
}

/* 0: drop this task's events; else 1, with KF_CONTAINER set in *kf when it applies. */
static __always_inline int task_allowed(struct nf_cfg_t *cfg, u32 tgid, u32 *kf) {
    if (tgid == cfg->self_tgid)
        return 0;
    int inc = in_container();
    if (cfg->containers_only && !inc)
        return 0;
    if (cfg->n_excluded) {
        struct comm_key_t k = {};
        bpf_get_current_comm(&k.c, sizeof(k.c));
        if (excluded_comms.lookup(&k))
            return 0;
    }
    if (inc)
        *kf |= KF_CONTAINER;
    return 1;
}
