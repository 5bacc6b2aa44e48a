// SPDX-License-Identifier: GPL-2.0
/* podtrail socket sensor (libbpf CO-RE): connect, accept, bind and listen for IPv4, IPv6 and
 * unix sockets.
 *
 * What the process asked for comes from the syscall (the sockaddr passed to connect/bind);
 * everything the kernel decided is read from the socket itself (struct socket / struct sock
 * behind the fd, through BTF): its family, type and protocol (also for sockets made before
 * the agent started), the local address and port after connect, bind and listen (port 0
 * resolved), and both ends of an accepted connection (also for accept(fd, NULL, NULL), and
 * the listener's path for unix sockets). A non-blocking connect (-EINPROGRESS) is held in
 * `inflight` until the handshake ends (sock:inet_sock_set_state) and reported then. Filters
 * (self, containers only, excluded comms, loopback) run here so unwanted events never reach
 * user space.
 *
 * Repeats: an event identical to one this process sent less than repeat_window_ns ago (same
 * action, family, protocol, result and flags, to the same service end: the remote end of a
 * connect, the local end of a bind/listen/accept plus an accept's remote address, the unix
 * path) is counted in `repeats` instead of sent (the last one is kept). The next identical
 * event after the window carries the count (`repeats`); user space sweeps windows that ended
 * without one and reports the kept event with its count. An entry is taken by deleting it:
 * whoever deletes it reports the count, exactly once. Counts only grow inside a window and
 * entries are taken only after it, so a count cannot change while being taken.
 */
#include "netfile.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define A_CONNECT 1
#define A_ACCEPT 2
#define A_BIND 3
#define A_LISTEN 4

#define FAM_UNIX 1
#define FAM_INET 2
#define FAM_INET6 10
#define PROTO_TCP 6
#define ST_ESTABLISHED 1
#define ST_SYN_SENT 2
#define ERR_AGAIN 11
#define ERR_INPROGRESS 115
#define UNIX_PATH_LEN 128 /* sun_path is 108 bytes; 128 keeps the size mask simple */

struct sock_event_t {
    __u64 mono_ns;
    __u64 cgroup_id;
    __u64 sk; /* kernel socket address, only as a key */
    __u32 pid;
    __u32 tid;
    __u32 uid;
    __u32 gid;
    __s32 fd;
    __s32 ret;
    __u16 action;
    __u16 family;
    __u16 type;
    __u16 protocol;
    __u16 lport;
    __u16 rport;
    __u32 kflags;
    __u8 laddr[16];
    __u8 raddr[16];
    char comm[TASK_COMM_LEN_];
    char unix_path[UNIX_PATH_LEN];
    __u32 repeats; /* identical events counted, not sent, that this one stands for as well */
    __u32 pad;
};

/* What makes two events of a process the same (see the top). */
struct rep_key_t {
    __u32 pid;
    __u32 kflags;
    __s32 ret;
    __u16 action;
    __u16 family;
    __u16 type;
    __u16 protocol;
    __u16 port;
    __u16 pad;
    __u8 addr[16];
    __u8 peer[16]; /* accept: the remote address (not its port) */
    char unix_path[UNIX_PATH_LEN];
};

struct rep_val_t {
    __u64 since;   /* the window's start (bpf_ktime_get_ns): user space reads this first */
    __u32 count;   /* events counted in this window, not sent */
    __u32 pad;
    struct sock_event_t last; /* the last of them, reported with the count if none follows */
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 2); /* [0] the event being built, [1] a copy being sent */
    __type(key, __u32);
    __type(value, struct sock_event_t);
} scratch SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 10240);
    __type(key, __u32); /* tid */
    __type(value, struct sock_event_t);
} pending SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 10240);
    __type(key, __u64); /* sk */
    __type(value, struct sock_event_t);
} inflight SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 10240);
    __type(key, __u32); /* tid */
    __type(value, __s32); /* the listening fd */
} accept_args SEC(".maps");

/* Not LRU: an evicted entry would lose its count. Full: events are sent as they come. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8192);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct rep_key_t);
    __type(value, struct rep_val_t);
} repeats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct rep_key_t);
} rep_key_scratch SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct rep_val_t);
} rep_val_scratch SEC(".maps"); /* a new entry */

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} repeat_stats SEC(".maps"); /* events counted, not sent */

static __always_inline int is_loopback(__u16 fam, const __u8 *a) {
    if (fam == FAM_INET)
        return a[0] == 127;
    if (fam != FAM_INET6)
        return 0;
    for (int i = 0; i < 10; i++)
        if (a[i])
            return 0;
    if (a[10] == 0xff && a[11] == 0xff) /* ::ffff:127.x.y.z */
        return a[12] == 127;
    if (a[10] || a[11] || a[12] || a[13] || a[14])
        return 0;
    return a[15] == 1; /* ::1 */
}

static __always_inline int wanted_family(__u16 fam) {
    return fam == FAM_INET || fam == FAM_INET6 || fam == FAM_UNIX;
}

/* Start an event in the per-CPU scratch slot; NULL when the task is filtered out. */
static __always_inline struct sock_event_t *start_event(__u16 action) {
    __u64 pt;
    __u32 kf;
    struct sock_event_t *e = start_in(&scratch, &pt, &kf);
    if (!e)
        return NULL;
    __builtin_memset(e, 0, sizeof(*e));
    __u64 ug = bpf_get_current_uid_gid();
    e->mono_ns = bpf_ktime_get_ns();
    e->cgroup_id = bpf_get_current_cgroup_id();
    e->pid = pt >> 32;
    e->tid = (__u32)pt;
    e->uid = (__u32)ug;
    e->gid = ug >> 32;
    e->action = action;
    e->kflags = kf;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    return e;
}

/* Read a user sockaddr into the remote (or local) end of e; returns the family. */
static __always_inline __u16 read_sockaddr(struct sock_event_t *e, const void *uaddr, int len, int remote) {
    __u16 fam = 0;
    if (!uaddr || len < 2 || bpf_probe_read_user(&fam, sizeof(fam), uaddr))
        return 0;
    e->family = fam;
    if (fam == FAM_INET) {
        struct { __u16 fam; __u16 port; __u8 a[4]; } sin = {};
        bpf_probe_read_user(&sin, sizeof(sin), uaddr);
        if (remote) {
            e->rport = bpf_ntohs(sin.port);
            __builtin_memcpy(e->raddr, sin.a, 4);
        } else {
            e->lport = bpf_ntohs(sin.port);
            __builtin_memcpy(e->laddr, sin.a, 4);
        }
    } else if (fam == FAM_INET6) {
        struct { __u16 fam; __u16 port; __u32 flow; __u8 a[16]; } sin6 = {};
        bpf_probe_read_user(&sin6, sizeof(sin6), uaddr);
        if (remote) {
            e->rport = bpf_ntohs(sin6.port);
            __builtin_memcpy(e->raddr, sin6.a, 16);
        } else {
            e->lport = bpf_ntohs(sin6.port);
            __builtin_memcpy(e->laddr, sin6.a, 16);
        }
    } else if (fam == FAM_UNIX) {
        int n = len - 2;
        if (n > 108)
            n = 108;
        if (n > 0)
            bpf_probe_read_user(e->unix_path, n & (UNIX_PATH_LEN - 1), (const char *)uaddr + 2);
    }
    return fam;
}

/* ---- the kernel's view of a socket -------------------------------------------------------- */

/* The struct sock behind fd (NULL when fd is not a socket). */
static __always_inline struct sock *fd_sock(int fd, struct socket **sop) {
    if (fd < 0)
        return NULL;
    struct file *f = pt_fd_file(bpf_get_current_task_btf(), fd);
    if (!f)
        return NULL;
    __u16 mode = BPF_CORE_READ(f, f_inode, i_mode);
    if ((mode & S_IFMT) != S_IFSOCK)
        return NULL;
    struct socket *so = BPF_CORE_READ(f, private_data);
    if (sop)
        *sop = so;
    return BPF_CORE_READ(so, sk);
}

/* Family, type and protocol from the socket (when the syscall did not give the family). */
static __always_inline void sock_kind(struct sock_event_t *e, struct socket *so, struct sock *sk) {
    if (!e->family)
        e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
    e->type = BPF_CORE_READ(so, type);
    e->protocol = BPF_CORE_READ(sk, sk_protocol);
    e->sk = (__u64)sk;
}

static __always_inline void sock_local(struct sock_event_t *e, struct sock *sk) {
    e->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
    if (e->family == FAM_INET) {
        __u32 a = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
        __builtin_memcpy(e->laddr, &a, 4);
    } else if (e->family == FAM_INET6) {
        BPF_CORE_READ_INTO(&e->laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
    }
}

static __always_inline void sock_remote(struct sock_event_t *e, struct sock *sk) {
    e->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
    if (e->family == FAM_INET) {
        __u32 a = BPF_CORE_READ(sk, __sk_common.skc_daddr);
        __builtin_memcpy(e->raddr, &a, 4);
    } else if (e->family == FAM_INET6) {
        BPF_CORE_READ_INTO(&e->raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
    }
}

/* A unix socket's own address (a listener's, or the one an accepted socket inherits). */
static __always_inline void sock_unix_path(struct sock_event_t *e, struct sock *sk) {
    struct unix_sock *u = (struct unix_sock *)sk;
    struct unix_address *addr = BPF_CORE_READ(u, addr);
    if (!addr)
        return;
    int n = BPF_CORE_READ(addr, len) - 2; /* minus sun_family */
    if (n > 108)
        n = 108;
    if (n > 0)
        bpf_probe_read_kernel(e->unix_path, n & (UNIX_PATH_LEN - 1),
                              (char *)addr + bpf_core_field_offset(struct unix_address, name) + 2);
}

static __always_inline int loopback_dropped(struct sock_event_t *e, int remote) {
    struct nf_cfg_t *cfg = get_cfg();
    return cfg && !cfg->loopback && is_loopback(e->family, remote ? e->raddr : e->laddr);
}

/* ---- repeats ------------------------------------------------------------------------------ */

static __always_inline void rep_key(struct rep_key_t *k, struct sock_event_t *e)
{
    __builtin_memset(k, 0, sizeof(*k));
    k->pid = e->pid;
    k->kflags = e->kflags;
    k->ret = e->ret;
    k->action = e->action;
    k->family = e->family;
    k->type = e->type;
    k->protocol = e->protocol;
    if (e->action == A_CONNECT) {
        k->port = e->rport;
        __builtin_memcpy(k->addr, e->raddr, 16);
    } else {
        k->port = e->lport;
        __builtin_memcpy(k->addr, e->laddr, 16);
        if (e->action == A_ACCEPT)
            __builtin_memcpy(k->peer, e->raddr, 16);
    }
    __builtin_memcpy(k->unix_path, e->unix_path, UNIX_PATH_LEN);
}

/* Send e unless it repeats an event sent less than the window ago (then count it). */
static __always_inline void send(struct sock_event_t *e)
{
    struct nf_cfg_t *cfg = get_cfg();
    __u64 window = cfg ? cfg->repeat_window_ns : 0;
    e->repeats = 0;
    if (!window) {
        submit(e, sizeof(*e));
        return;
    }
    __u32 z = 0;
    struct rep_key_t *k = bpf_map_lookup_elem(&rep_key_scratch, &z);
    struct rep_val_t *nv = bpf_map_lookup_elem(&rep_val_scratch, &z);
    if (!k || !nv) {
        submit(e, sizeof(*e));
        return;
    }
    rep_key(k, e);
    __u64 now = bpf_ktime_get_ns();
    struct rep_val_t *v = bpf_map_lookup_elem(&repeats, k);
    if (v) {
        if (now - v->since < window) {
            __sync_fetch_and_add(&v->count, 1);
            bpf_probe_read_kernel(&v->last, sizeof(v->last), e);
            __u64 *n = bpf_map_lookup_elem(&repeat_stats, &z);
            if (n)
                __sync_fetch_and_add(n, 1);
            return;
        }
        __u32 n = v->count; /* final: the window is over */
        if (bpf_map_delete_elem(&repeats, k) == 0)
            e->repeats = n; /* else user space took the entry and reports its count */
    }
    nv->since = now;
    nv->count = 0;
    bpf_map_update_elem(&repeats, k, nv, BPF_NOEXIST); /* full or raced: no window, no loss */
    submit(e, sizeof(*e));
}

/* ---- connect and bind: the address from the caller, the rest from the socket --------------- */

static __always_inline int sockaddr_enter(__u16 action, int fd, void *uaddr, int len) {
    int remote = action == A_CONNECT;
    struct sock_event_t *e = start_event(action);
    if (!e)
        return 0;
    __u16 fam = read_sockaddr(e, uaddr, len, remote);
    if (!wanted_family(fam) || loopback_dropped(e, remote))
        return 0;
    e->fd = fd;
    struct socket *so = NULL;
    struct sock *sk = fd_sock(fd, &so);
    if (sk)
        sock_kind(e, so, sk);
    bpf_map_update_elem(&pending, &e->tid, e, BPF_ANY);
    return 0;
}

static __always_inline struct sock_event_t *take(__u16 action) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct sock_event_t *p = bpf_map_lookup_elem(&pending, &tid);
    if (!p)
        return NULL;
    __u32 one = 1;
    struct sock_event_t *e = bpf_map_lookup_elem(&scratch, &one);
    if (e)
        __builtin_memcpy(e, p, sizeof(*e));
    bpf_map_delete_elem(&pending, &tid);
    return e && e->action == action ? e : NULL;
}

SEC("tp/syscalls/sys_enter_connect")
int enter_connect(struct trace_event_raw_sys_enter *ctx) {
    return sockaddr_enter(A_CONNECT, ctx->args[0], (void *)ctx->args[1], ctx->args[2]);
}

SEC("tp/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx) {
    struct sock_event_t *e = take(A_CONNECT);
    if (!e)
        return 0;
    long ret = ctx->ret;
    e->ret = ret;
    struct sock *sk = (struct sock *)e->sk;
    if (!sk || e->family == FAM_UNIX) {
        send(e);
        return 0;
    }
    sock_local(e, sk); /* the port the kernel picked (TCP at SYN_SENT, UDP at connect) */
    int state = BPF_CORE_READ(sk, __sk_common.skc_state);
    /* A TCP connect that returned 0 sent its SYN whatever the state is by now: this program
     * can run after a preemption, when the peer may already have closed (CLOSE_WAIT). Read
     * from the state alone, the flag (part of the repeats key) split one window in two. */
    if (e->protocol == PROTO_TCP && (ret == 0 || state == ST_SYN_SENT || state == ST_ESTABLISHED || ret == -ERR_INPROGRESS))
        e->kflags |= KF_SYN_SENT;
    if (ret == -ERR_INPROGRESS) {
        if (state == ST_ESTABLISHED) {
            e->kflags |= KF_ESTABLISHED;
            e->ret = 0;
        } else if (state == ST_SYN_SENT) {
            /* report when the handshake ends; whoever removes the entry sends it */
            __u64 key = e->sk;
            bpf_map_update_elem(&inflight, &key, e, BPF_ANY);
            state = BPF_CORE_READ(sk, __sk_common.skc_state);
            if (state == ST_SYN_SENT || bpf_map_delete_elem(&inflight, &key) != 0)
                return 0;
            if (state == ST_ESTABLISHED) {
                e->kflags |= KF_ESTABLISHED;
                e->ret = 0;
            }
        }
    }
    send(e);
    return 0;
}

/* Handshake over for a held non-blocking connect (may run in softirq context). */
SEC("tp/sock/inet_sock_set_state")
int sock_state(struct trace_event_raw_inet_sock_set_state *ctx) {
    if (ctx->protocol != PROTO_TCP || ctx->oldstate != ST_SYN_SENT)
        return 0;
    __u64 key = (__u64)ctx->skaddr;
    struct sock_event_t *p = bpf_map_lookup_elem(&inflight, &key);
    if (!p)
        return 0;
    __u32 one = 1;
    struct sock_event_t *e = bpf_map_lookup_elem(&scratch, &one);
    if (!e)
        return 0;
    __builtin_memcpy(e, p, sizeof(*e));
    if (bpf_map_delete_elem(&inflight, &key) != 0)
        return 0; /* the connect's exit took it */
    e->lport = ctx->sport;
    if (ctx->newstate == ST_ESTABLISHED) {
        e->kflags |= KF_ESTABLISHED;
        e->ret = 0;
    }
    send(e);
    return 0;
}

SEC("tp/syscalls/sys_enter_bind")
int enter_bind(struct trace_event_raw_sys_enter *ctx) {
    return sockaddr_enter(A_BIND, ctx->args[0], (void *)ctx->args[1], ctx->args[2]);
}

SEC("tp/syscalls/sys_exit_bind")
int exit_bind(struct trace_event_raw_sys_exit *ctx) {
    struct sock_event_t *e = take(A_BIND);
    if (!e)
        return 0;
    e->ret = ctx->ret;
    struct sock *sk = (struct sock *)e->sk;
    if (e->ret == 0 && sk && e->family != FAM_UNIX)
        sock_local(e, sk); /* bind to port 0: the port the kernel chose */
    send(e);
    return 0;
}

/* ---- listen and accept: everything from the socket ------------------------------------------ */

SEC("tp/syscalls/sys_enter_listen")
int enter_listen(struct trace_event_raw_sys_enter *ctx) {
    struct sock_event_t *e = start_event(A_LISTEN);
    if (!e)
        return 0;
    e->fd = ctx->args[0];
    bpf_map_update_elem(&pending, &e->tid, e, BPF_ANY);
    return 0;
}

SEC("tp/syscalls/sys_exit_listen")
int exit_listen(struct trace_event_raw_sys_exit *ctx) {
    struct sock_event_t *e = take(A_LISTEN);
    if (!e)
        return 0;
    e->ret = ctx->ret;
    struct socket *so = NULL;
    struct sock *sk = fd_sock(e->fd, &so);
    if (sk) {
        sock_kind(e, so, sk);
        if (e->family == FAM_UNIX)
            sock_unix_path(e, sk);
        else
            sock_local(e, sk);
    }
    if ((e->family && !wanted_family(e->family)) || loopback_dropped(e, 0))
        return 0;
    send(e);
    return 0;
}

static __always_inline int accept_enter(int fd) {
    struct nf_cfg_t *cfg = get_cfg();
    __u64 pt = bpf_get_current_pid_tgid();
    __u32 kf = 0;
    if (!cfg || !task_allowed(cfg, pt >> 32, &kf))
        return 0;
    __u32 tid = (__u32)pt;
    __s32 lfd = fd;
    bpf_map_update_elem(&accept_args, &tid, &lfd, BPF_ANY);
    return 0;
}

static __always_inline int accept_exit(long ret) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    __s32 *a = bpf_map_lookup_elem(&accept_args, &tid);
    if (!a)
        return 0;
    __s32 lfd = *a;
    bpf_map_delete_elem(&accept_args, &tid);
    if (ret == -ERR_AGAIN) /* non-blocking servers poll: not an event */
        return 0;
    struct sock_event_t *e = start_event(A_ACCEPT);
    if (!e)
        return 0;
    e->ret = ret;
    e->fd = ret >= 0 ? ret : lfd;
    struct socket *so = NULL;
    struct sock *sk = fd_sock(e->fd, &so);
    if (sk) {
        sock_kind(e, so, sk);
        if (e->family == FAM_UNIX) {
            sock_unix_path(e, sk);
        } else {
            sock_local(e, sk);
            if (ret >= 0) {
                sock_remote(e, sk);
                e->kflags |= KF_PEER_KERNEL;
            }
        }
    }
    if ((e->family && !wanted_family(e->family)) || loopback_dropped(e, e->kflags & KF_PEER_KERNEL))
        return 0;
    send(e);
    return 0;
}

SEC("tp/syscalls/sys_enter_accept")
int enter_accept(struct trace_event_raw_sys_enter *ctx) { return accept_enter(ctx->args[0]); }

SEC("tp/syscalls/sys_enter_accept4")
int enter_accept4(struct trace_event_raw_sys_enter *ctx) { return accept_enter(ctx->args[0]); }

SEC("tp/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx) { return accept_exit(ctx->ret); }

SEC("tp/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx) { return accept_exit(ctx->ret); }
