/* Shared by socket.bpf.c and file.bpf.c (libbpf CO-RE): the runtime config map, the per-task
 * filter, and (ringbuf.h) the ring buffer with in-kernel loss counting and batched wake-ups.
 * Everything a user may change is in maps, filled by podtrail.bpf.netfile: the objects are
 * compiled once, at build time, and never depend on the node's headers. */
#ifndef PODTRAIL_NETFILE_BPF_H
#define PODTRAIL_NETFILE_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "task_facts.h"

#define TASK_COMM_LEN_ 16

#define KF_CONTAINER 1     /* task is outside the agent's (host) PID namespace */
#define KF_SENSITIVE 2     /* read of a path on the sensitive list */
#define KF_RELATIVE 8      /* the syscall's path was relative; the kernel joined it to cwd / dirfd */
#define KF_SYN_SENT 32     /* connect: the kernel moved the socket to SYN_SENT (TCP) */
#define KF_ESTABLISHED 64  /* connect: handshake completed (TCP) */
#define KF_TRUNCATED 128   /* path hit the in-kernel length limit */
#define KF_PEER_KERNEL 256 /* accept: ends read from the new socket's struct sock */
#define KF_PATH_CUT 512    /* cwd / dirfd walk hit its depth limit or never met the task's root */

/* Filled from user space (podtrail.bpf.netfile.NfCfg): config changes need no recompile. */
struct nf_cfg_t {
    __u64 host_pidns_dev; /* the agent's PID namespace: tasks outside it are in containers */
    __u64 host_pidns_ino;
    __u32 self_tgid;       /* the agent itself never reports */
    __u32 containers_only; /* drop tasks in the host PID namespace */
    __u32 loopback;        /* report loopback addresses */
    __u32 n_excluded;      /* entries in excluded_comms */
    __u32 drift;           /* record container file changes in drift_inodes */
    __u32 pad;
    __u64 repeat_window_ns; /* socket.bpf.c: count identical events within it; 0: send each */
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct nf_cfg_t);
} nf_cfg SEC(".maps");

struct comm_key_t {
    char c[TASK_COMM_LEN_];
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 256);
    __type(key, struct comm_key_t);
    __type(value, __u8);
} excluded_comms SEC(".maps");

/* The ring buffer, its lost counter and batched wake-ups (ringbuf.h: at once after a quiet
 * spell, else once per WAKEUP_EVERY samples per CPU; nothing needs /proc after the fact any
 * more, so no sample is urgent). */
#include "ringbuf.h"

static __always_inline struct nf_cfg_t *get_cfg(void) {
    __u32 z = 0;
    return bpf_map_lookup_elem(&nf_cfg, &z);
}

static __always_inline int in_container(struct nf_cfg_t *cfg) {
    struct bpf_pidns_info ns = {};
    return bpf_get_ns_current_pid_tgid(cfg->host_pidns_dev, cfg->host_pidns_ino, &ns, sizeof(ns)) != 0;
}

/* 0: drop this task's events; else 1, with KF_CONTAINER set in *kf when it applies. */
static __always_inline int task_allowed(struct nf_cfg_t *cfg, __u32 tgid, __u32 *kf) {
    if (tgid == cfg->self_tgid)
        return 0;
    int inc = in_container(cfg);
    if (cfg->containers_only && !inc)
        return 0;
    if (cfg->n_excluded) {
        struct comm_key_t k = {};
        bpf_get_current_comm(&k.c, sizeof(k.c));
        if (bpf_map_lookup_elem(&excluded_comms, &k))
            return 0;
    }
    if (inc)
        *kf |= KF_CONTAINER;
    return 1;
}

/* What every event starts with: the task filters, then the per-CPU slot to build the event
 * in (NULL when the task is filtered out). *pt gets pid_tgid, *kf the KF_CONTAINER flag. */
static __always_inline void *start_in(void *scratch_map, __u64 *pt, __u32 *kf) {
    struct nf_cfg_t *cfg = get_cfg();
    if (!cfg)
        return NULL;
    *pt = bpf_get_current_pid_tgid();
    *kf = 0;
    if (!task_allowed(cfg, *pt >> 32, kf))
        return NULL;
    __u32 z = 0;
    return bpf_map_lookup_elem(scratch_map, &z);
}

#endif
