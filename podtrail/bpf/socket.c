/* podtrail socket sensor: connect, accept, bind and listen for IPv4, IPv6 and unix sockets.
 *
 * Addresses come from the sockaddr the process passes (sys_enter_connect/bind) or gets back
 * (sys_exit_accept*), read with bpf_probe_read_user. The socket type is not in those
 * arguments, so socket() is traced to remember (tgid, fd) -> family/type/protocol, and
 * accept() copies the listener's entry to the new fd. For TCP, sock:inet_sock_set_state
 * tells the kernel's own view: SYN_SENT (in the connecting task) marks the connect as TCP
 * and gives the local address; SYN_SENT -> ESTABLISHED (any context) gives the local port
 * the kernel picked. A non-blocking connect (-EINPROGRESS) is held in `inflight` until the
 * handshake ends and reported then. Filters (self, containers only, excluded comms,
 * loopback) run here so unwanted events never reach user space.
 */
#include "netfile.h"

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
#define ST_SYN_RECV 3
#define ST_LISTEN 10
#define KF_PEER_KERNEL 256
#define ERR_AGAIN 11
#define ERR_INPROGRESS 115
#define UNIX_PATH_LEN 128 /* sun_path is 108 bytes; 128 keeps the size mask simple */

struct sock_event_t {
    u64 mono_ns;
    u64 cgroup_id;
    u64 sk; /* kernel socket address, only as a key; never dereferenced */
    u32 pid;
    u32 tid;
    u32 uid;
    u32 gid;
    s32 fd;
    s32 ret;
    u16 action;
    u16 family;
    u16 type;
    u16 protocol;
    u16 lport;
    u16 rport;
    u32 kflags;
    u8 laddr[16];
    u8 raddr[16];
    char comm[TASK_COMM_LEN];
    char unix_path[UNIX_PATH_LEN];
};

struct fdkey_t {
    u32 tgid;
    s32 fd;
};

struct sockinfo_t {
    u16 family;
    u16 type;
    u16 protocol;
    u16 lport;
    u8 laddr[16];
};

struct sock_args_t {
    u16 family;
    u16 type;
    u16 protocol;
};

struct accept_args_t {
    s32 fd;
    u64 uaddr;
    u64 ulen;
};

BPF_TABLE("lru_hash", struct fdkey_t, struct sockinfo_t, sockinfo, 65536);
BPF_TABLE("lru_hash", struct fdkey_t, struct sock_event_t, unix_bound, 1024);
BPF_HASH(sock_args, u32, struct sock_args_t, 10240);
BPF_HASH(accept_args, u32, struct accept_args_t, 10240);
BPF_TABLE("lru_hash", u32, struct sock_event_t, pending, 10240); /* tid -> connect/bind/listen */
BPF_TABLE("lru_hash", u64, u32, sk_tid, 10240);                    /* sk -> connecting tid */
BPF_TABLE("lru_hash", u64, struct sock_event_t, inflight, 10240);  /* sk -> non-blocking connect */
BPF_PERCPU_ARRAY(scratch, struct sock_event_t, 1);

/* Connections the kernel just established on a listening port (family << 16 | port), for
 * accept(fd, NULL, NULL): the new socket's ends are not in the syscall. Every accept on the
 * port takes the entry; two establishments before an accept (or on the same port in another
 * network namespace) make it ambiguous, and then no peer is guessed. A connection already
 * queued when the agent started has no record: its accept may take the next one's, the one
 * known inexactness. */
struct estab_t {
    u64 ts;
    u32 count;
    u16 rport;
    u16 pad;
    u8 laddr[16];
    u8 raddr[16];
};
BPF_TABLE("lru_hash", u32, struct estab_t, estab, 4096);

static __always_inline int is_loopback(u16 fam, const u8 *a) {
    if (fam == FAM_INET)
        return a[0] == 127;
    if (fam != FAM_INET6)
        return 0;
#pragma unroll
    for (int i = 0; i < 10; i++)
        if (a[i])
            return 0;
    if (a[10] == 0xff && a[11] == 0xff) /* ::ffff:127.x.y.z */
        return a[12] == 127;
    if (a[10] || a[11] || a[12] || a[13] || a[14])
        return 0;
    return a[15] == 1; /* ::1 */
}

/* Start an event in the per-CPU scratch slot; NULL when the task is filtered out. */
static __always_inline struct sock_event_t *start_event(u16 action) {
    struct nf_cfg_t *cfg = get_cfg();
    if (!cfg)
        return NULL;
    u64 pt = bpf_get_current_pid_tgid();
    u32 kf = 0;
    if (!task_allowed(cfg, pt >> 32, &kf))
        return NULL;
    u32 z = 0;
    struct sock_event_t *e = scratch.lookup(&z);
    if (!e)
        return NULL;
    __builtin_memset(e, 0, sizeof(*e));
    u64 ug = bpf_get_current_uid_gid();
    e->mono_ns = bpf_ktime_get_ns();
    e->cgroup_id = bpf_get_current_cgroup_id();
    e->pid = pt >> 32;
    e->tid = (u32)pt;
    e->uid = (u32)ug;
    e->gid = ug >> 32;
    e->action = action;
    e->kflags = kf;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    return e;
}

/* Read a user sockaddr into the remote (or local) end of e; returns the family. */
static __always_inline u16 read_sockaddr(struct sock_event_t *e, const void *uaddr, int len, int remote) {
    u16 fam = 0;
    if (!uaddr || len < 2 || bpf_probe_read_user(&fam, sizeof(fam), uaddr))
        return 0;
    e->family = fam;
    if (fam == FAM_INET) {
        struct { u16 fam; u16 port; u8 a[4]; } sin = {};
        bpf_probe_read_user(&sin, sizeof(sin), uaddr);
        if (remote) {
            e->rport = bpf_ntohs(sin.port);
            __builtin_memcpy(e->raddr, sin.a, 4);
        } else {
            e->lport = bpf_ntohs(sin.port);
            __builtin_memcpy(e->laddr, sin.a, 4);
        }
    } else if (fam == FAM_INET6) {
        struct { u16 fam; u16 port; u32 flow; u8 a[16]; } sin6 = {};
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

static __always_inline void add_sockinfo(struct sock_event_t *e, u32 tgid, s32 fd, int local) {
    struct fdkey_t k = {.tgid = tgid, .fd = fd};
    struct sockinfo_t *si = sockinfo.lookup(&k);
    if (!si)
        return;
    if (!e->family)
        e->family = si->family;
    e->type = si->type;
    e->protocol = si->protocol;
    if (local) {
        e->lport = si->lport;
        __builtin_memcpy(e->laddr, si->laddr, 16);
    }
}

static __always_inline int wanted_family(u16 fam) {
    return fam == FAM_INET || fam == FAM_INET6 || fam == FAM_UNIX;
}

/* ---- socket(): remember what kind of socket each fd is ---------------------------------- */

TRACEPOINT_PROBE(syscalls, sys_enter_socket) {
    u16 fam = args->family;
    if (!wanted_family(fam))
        return 0;
    struct nf_cfg_t *cfg = get_cfg();
    u64 pt = bpf_get_current_pid_tgid();
    u32 kf = 0;
    if (!cfg || !task_allowed(cfg, pt >> 32, &kf))
        return 0;
    u32 tid = (u32)pt;
    struct sock_args_t a = {.family = fam, .type = args->type & 0xf, .protocol = args->protocol};
    sock_args.update(&tid, &a);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_socket) {
    u64 pt = bpf_get_current_pid_tgid();
    u32 tid = (u32)pt;
    struct sock_args_t *a = sock_args.lookup(&tid);
    if (!a)
        return 0;
    if (args->ret >= 0) {
        struct fdkey_t k = {.tgid = pt >> 32, .fd = args->ret};
        struct sockinfo_t si = {.family = a->family, .type = a->type, .protocol = a->protocol};
        sockinfo.update(&k, &si);
    }
    sock_args.delete(&tid);
    return 0;
}

/* ---- connect ---------------------------------------------------------------------------- */

/* connect and bind: the address comes from the caller's sockaddr (remote for connect,
 * local for bind); the event waits in `pending` for the syscall's result. */
static __always_inline int sockaddr_enter(u16 action, int fd, void *uaddr, int len, int remote) {
    struct sock_event_t *e = start_event(action);
    if (!e)
        return 0;
    u16 fam = read_sockaddr(e, uaddr, len, remote);
    if (!wanted_family(fam))
        return 0;
    struct nf_cfg_t *cfg = get_cfg();
    if (cfg && !cfg->loopback && is_loopback(fam, remote ? e->raddr : e->laddr))
        return 0;
    e->fd = fd;
    add_sockinfo(e, e->pid, e->fd, 0);
    pending.update(&e->tid, e);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_connect) {
    return sockaddr_enter(A_CONNECT, args->fd, (void *)args->uservaddr, args->addrlen, 1);
}

TRACEPOINT_PROBE(syscalls, sys_exit_connect) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct sock_event_t *p = pending.lookup(&tid);
    if (!p)
        return 0;
    long ret = args->ret;
    if (p->action == A_CONNECT) {
        if (ret == -ERR_INPROGRESS && (p->kflags & KF_SYN_SENT) && !(p->kflags & KF_ESTABLISHED)) {
            p->ret = ret; /* report when the handshake ends (inet_sock_set_state) */
            u64 sk = p->sk;
            inflight.update(&sk, p);
            sk_tid.delete(&sk);
        } else {
            p->ret = (ret == -ERR_INPROGRESS && (p->kflags & KF_ESTABLISHED)) ? 0 : ret;
            if (p->sk) {
                u64 sk = p->sk;
                sk_tid.delete(&sk);
            }
            submit(p, sizeof(*p), 0);
        }
    }
    pending.delete(&tid);
    return 0;
}

/* Local address from the tracepoint (a macro: BCC declares the args struct only inside
 * TRACEPOINT_PROBE; a helper copy because clang's inlined copy trips the ctx-pointer rule). */
#define COPY_LOCAL(p, args)                                                        \
    do {                                                                           \
        if ((args)->family == FAM_INET)                                            \
            bpf_probe_read_kernel((p)->laddr, 4, (void *)(args)->saddr);           \
        else                                                                       \
            bpf_probe_read_kernel((p)->laddr, 16, (void *)(args)->saddr_v6);       \
    } while (0)

TRACEPOINT_PROBE(sock, inet_sock_set_state) {
    if (args->protocol != PROTO_TCP)
        return 0;
    u64 sk = (u64)args->skaddr;
    if (args->newstate == ST_LISTEN) {
        /* runs in the listening task: the port the kernel holds (bind to port 0) */
        u32 tid = (u32)bpf_get_current_pid_tgid();
        struct sock_event_t *p = pending.lookup(&tid);
        if (p && p->action == A_LISTEN) {
            p->lport = args->sport;
            COPY_LOCAL(p, args);
        }
        return 0;
    }
    if (args->newstate == ST_SYN_SENT) {
        /* runs in the connecting task (tcp_v4_connect / tcp_v6_connect) */
        u32 tid = (u32)bpf_get_current_pid_tgid();
        struct sock_event_t *p = pending.lookup(&tid);
        if (!p || p->action != A_CONNECT)
            return 0;
        p->sk = sk;
        p->protocol = PROTO_TCP;
        p->kflags |= KF_SYN_SENT;
        COPY_LOCAL(p, args);
        sk_tid.update(&sk, &tid);
        return 0;
    }
    if (args->oldstate == ST_SYN_RECV && args->newstate == ST_ESTABLISHED) {
        u32 key = ((u32)args->family << 16) | args->sport;
        u64 now = bpf_ktime_get_ns();
        struct estab_t *old = estab.lookup(&key);
        struct estab_t en = {.ts = now, .count = 1, .rport = args->dport};
        if (old) /* not taken by an accept yet: two candidates, guess neither */
            en.count = old->count + 1;
        if (args->family == FAM_INET) {
            bpf_probe_read_kernel(en.laddr, 4, (void *)args->saddr);
            bpf_probe_read_kernel(en.raddr, 4, (void *)args->daddr);
        } else {
            bpf_probe_read_kernel(en.laddr, 16, (void *)args->saddr_v6);
            bpf_probe_read_kernel(en.raddr, 16, (void *)args->daddr_v6);
        }
        estab.update(&key, &en);
        return 0;
    }
    if (args->oldstate != ST_SYN_SENT)
        return 0;
    /* handshake over: may run in softirq context, so find the event by socket */
    struct sock_event_t *p = NULL;
    u32 *tidp = sk_tid.lookup(&sk);
    if (tidp) {
        u32 tid = *tidp;
        p = pending.lookup(&tid);
        if (p && p->sk != sk)
            p = NULL;
    }
    int held = 0;
    if (!p) {
        p = inflight.lookup(&sk);
        held = 1;
    }
    if (!p)
        return 0;
    p->lport = args->sport;
    COPY_LOCAL(p, args);
    if (args->newstate == ST_ESTABLISHED)
        p->kflags |= KF_ESTABLISHED;
    if (held) {
        if (args->newstate == ST_ESTABLISHED)
            p->ret = 0;
        submit(p, sizeof(*p), 0);
        inflight.delete(&sk);
    } else {
        sk_tid.delete(&sk);
    }
    return 0;
}

/* ---- accept / accept4 ------------------------------------------------------------------- */

static __always_inline int accept_enter(int fd, void *uaddr, int *ulen) {
    struct nf_cfg_t *cfg = get_cfg();
    u64 pt = bpf_get_current_pid_tgid();
    u32 kf = 0;
    if (!cfg || !task_allowed(cfg, pt >> 32, &kf))
        return 0;
    u32 tid = (u32)pt;
    struct accept_args_t a = {.fd = fd, .uaddr = (u64)uaddr, .ulen = (u64)ulen};
    accept_args.update(&tid, &a);
    return 0;
}

static __always_inline int accept_exit(long ret) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct accept_args_t *a = accept_args.lookup(&tid);
    if (!a)
        return 0;
    struct accept_args_t aa = *a;
    accept_args.delete(&tid);
    if (ret == -ERR_AGAIN) /* non-blocking servers poll: not an event */
        return 0;
    struct sock_event_t *e = start_event(A_ACCEPT);
    if (!e)
        return 0;
    e->ret = ret;
    e->fd = ret >= 0 ? ret : aa.fd;
    struct fdkey_t lk = {.tgid = e->pid, .fd = aa.fd};
    struct sockinfo_t *si = sockinfo.lookup(&lk);
    if (si) {
        e->family = si->family;
        e->type = si->type;
        e->protocol = si->protocol;
        e->lport = si->lport;
        __builtin_memcpy(e->laddr, si->laddr, 16);
    }
    if (ret >= 0 && aa.uaddr && aa.ulen) {
        int len = 0;
        bpf_probe_read_user(&len, sizeof(len), (void *)aa.ulen);
        if (read_sockaddr(e, (void *)aa.uaddr, len, 1))
            e->kflags |= KF_PEER_USER;
    }
    if (ret >= 0 && e->lport && (e->family == FAM_INET || e->family == FAM_INET6)) {
        u32 key = ((u32)e->family << 16) | e->lport;
        struct estab_t *en = estab.lookup(&key);
        if (en) {
            if (!(e->kflags & KF_PEER_USER) && en->count == 1) {
                e->rport = en->rport;
                __builtin_memcpy(e->raddr, en->raddr, 16);
                __builtin_memcpy(e->laddr, en->laddr, 16);
                e->kflags |= KF_PEER_KERNEL;
            }
            estab.delete(&key);
        }
    }
    struct nf_cfg_t *cfg = get_cfg();
    if (cfg && !cfg->loopback) {
        if ((e->kflags & KF_PEER_USER) ? is_loopback(e->family, e->raddr) : is_loopback(e->family, e->laddr))
            return 0;
    }
    if (e->family && !wanted_family(e->family))
        return 0;
    if (ret >= 0 && si) {
        struct fdkey_t nk = {.tgid = e->pid, .fd = ret};
        sockinfo.update(&nk, si);
    }
    /* no peer yet: user space looks in /proc/<pid>/net while the socket is open */
    submit(e, sizeof(*e), ret >= 0 && !(e->kflags & (KF_PEER_USER | KF_PEER_KERNEL)));
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_accept) {
    return accept_enter(args->fd, args->upeer_sockaddr, args->upeer_addrlen);
}

TRACEPOINT_PROBE(syscalls, sys_enter_accept4) {
    return accept_enter(args->fd, args->upeer_sockaddr, args->upeer_addrlen);
}

TRACEPOINT_PROBE(syscalls, sys_exit_accept) {
    return accept_exit(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_accept4) {
    return accept_exit(args->ret);
}

/* ---- bind / listen ---------------------------------------------------------------------- */

TRACEPOINT_PROBE(syscalls, sys_enter_bind) {
    return sockaddr_enter(A_BIND, args->fd, (void *)args->umyaddr, args->addrlen, 0);
}

TRACEPOINT_PROBE(syscalls, sys_exit_bind) {
    u64 pt = bpf_get_current_pid_tgid();
    u32 tid = (u32)pt;
    struct sock_event_t *p = pending.lookup(&tid);
    if (!p)
        return 0;
    if (p->action == A_BIND) {
        p->ret = args->ret;
        struct fdkey_t k = {.tgid = pt >> 32, .fd = p->fd};
        if (p->ret == 0) {
            struct sockinfo_t *si = sockinfo.lookup(&k);
            if (si) {
                si->lport = p->lport;
                __builtin_memcpy(si->laddr, p->laddr, 16);
            }
            if (p->family == FAM_UNIX)
                unix_bound.update(&k, p);
        }
        submit(p, sizeof(*p), 0);
    }
    pending.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_listen) {
    struct sock_event_t *e = start_event(A_LISTEN);
    if (!e)
        return 0;
    e->fd = args->fd;
    add_sockinfo(e, e->pid, e->fd, 1);
    struct fdkey_t k = {.tgid = e->pid, .fd = e->fd};
    struct sock_event_t *ub = unix_bound.lookup(&k);
    if (ub) {
        e->family = FAM_UNIX;
        __builtin_memcpy(e->unix_path, ub->unix_path, UNIX_PATH_LEN);
    }
    if (e->family && !wanted_family(e->family))
        return 0;
    struct nf_cfg_t *cfg = get_cfg();
    if (cfg && !cfg->loopback && is_loopback(e->family, e->laddr))
        return 0;
    pending.update(&e->tid, e);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_listen) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct sock_event_t *p = pending.lookup(&tid);
    if (!p)
        return 0;
    if (p->action == A_LISTEN) {
        p->ret = args->ret;
        if (p->ret == 0 && p->lport) { /* accept() then knows the listener's port */
            struct fdkey_t k = {.tgid = p->pid, .fd = p->fd};
            struct sockinfo_t *si = sockinfo.lookup(&k);
            if (si) {
                si->lport = p->lport;
                __builtin_memcpy(si->laddr, p->laddr, 16);
            }
        }
        submit(p, sizeof(*p), 0);
    }
    pending.delete(&tid);
    return 0;
}
