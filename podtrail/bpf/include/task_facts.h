/* Facts about a task and its files, read through BTF (CO-RE) at the event: paths as seen from
 * the task's own root, fd kinds, credentials, namespaces. Shared by the process, file and
 * socket objects. Include after vmlinux.h, bpf_helpers.h and bpf_core_read.h.
 *
 * Paths: the kernel keeps a path as (dentry, vfsmount); we walk dentry->d_parent up to the
 * task's root (task->fs->root), hopping from a mount's root to its mountpoint, writing each
 * name in front of the previous one (as the kernel's d_path does). The walk is bounded (PT_DEPTH components, PT_PATH_MAX bytes);
 * cut paths carry PT_PATH_TRUNCATED. A file not under the task's root (a memfd, a file of
 * another mount namespace, the runtime's own binary) carries PT_PATH_OUTSIDE; its path is then
 * relative to its mount's topmost root ("/memfd:name" for a memfd).
 */
#ifndef PODTRAIL_TASK_FACTS_H
#define PODTRAIL_TASK_FACTS_H

#define PT_DEPTH 32       /* path components kept (power of two) */
#define PT_MOUNT_HOPS 16  /* mount crossings allowed during one walk */
#define PT_PATH_MAX 1024  /* write offset bound (power of two); a path may end up to */
#define PT_NAME_MAX 256   /* PT_NAME_MAX bytes longer: buffers are PT_PATH_BUF bytes */
#define PT_PATH_BUF (PT_PATH_MAX + PT_NAME_MAX)

#define PT_PATH_TRUNCATED 1 /* deeper than PT_DEPTH or longer than PT_PATH_MAX: the top is cut */
#define PT_PATH_OUTSIDE 2   /* not reachable from the task's root */

/* fd kinds (user space: podtrail.bpf.process.FD_KINDS) */
#define FD_NONE 0 /* closed */
#define FD_TTY 1
#define FD_PIPE 2
#define FD_SOCKET 3
#define FD_FILE 4
#define FD_NULL 5
#define FD_OTHER 6

#ifndef S_IFMT
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define S_IFREG 0100000
#define S_IFCHR 0020000
#define S_IFIFO 0010000
#endif

/* A path buffer: the path occupies [off, PT_PATH_MAX) where off is what pt_path returned
 * (written back to front, as the kernel's d_path does); the tail is slack for the verifier. */
struct pt_buf {
    char s[PT_PATH_BUF];
};

/* Cost: a field read through BPF_CORE_READ is a bpf_probe_read_kernel call (tens of ns with
 * its fault handling, and an exec reads ~100 fields); a direct load through a BTF-typed
 * pointer is one instruction that the verifier makes fault-safe (PROBE_MEM). Facts reached
 * from a pointer the program got from the kernel (a tp_btf argument, bpf_get_current_task_btf,
 * and the pointers loaded from those: t->fs->pwd.dentry, bprm->file->f_inode) are read with
 * direct loads, with CO-RE relocations as before (vmlinux.h marks every struct
 * preserve_access_index); a bad address reads as 0. Addresses kept as plain numbers (the
 * path walk's state across bpf_loop steps, an fd table slot, a mount found by container_of)
 * are read with the helper (PT_RD): typing them needs the kfunc bpf_rdonly_cast, which tracing
 * programs get only from Linux 6.2 (measured: ~0.5 us less per exec here), and the sensor
 * must keep loading on 6.1 nodes. */
#define PT_RD(type, addr, field) ({ type *_pt_p = (type *)(__u64)(addr); BPF_CORE_READ(_pt_p, field); })

struct pt_req {
    __u64 dentry, vfsmnt, root_d, root_m; /* kernel addresses */
    __u32 flags;                          /* out: PT_PATH_* */
    __u32 pad;
};

/* The walk's state; kernel addresses as numbers (read with PT_RD). */
struct pt_walk_ctx {
    struct pt_buf *b;
    __u64 dentry;
    __u64 vfsmnt;
    __u64 mnt;
    __u64 mnt_root; /* vfsmnt->mnt_root, read once per mount */
    __u64 root_d;
    __u64 root_m;
    __u32 off;
    __u32 flags;
    __u32 done;
};

static __always_inline __u64 pt_mount_of(__u64 vfsmnt)
{
    return vfsmnt - bpf_core_field_offset(struct mount, mnt);
}

static __always_inline __u64 pt_vfsmount_of(__u64 mnt)
{
    return mnt + bpf_core_field_offset(struct mount, mnt);
}

/* One step of the walk (a bpf_loop callback, so the verifier checks the body once):
 * stop at the root, hop from a mount's root to its mountpoint, or prepend one name. */
static long pt_step(__u32 i, struct pt_walk_ctx *c)
{
    __u64 da = c->dentry;
    if (da == c->root_d && c->vfsmnt == c->root_m) {
        c->done = 1;
        return 1;
    }
    __u64 parent = (__u64)PT_RD(struct dentry, da, d_parent);
    __u64 mnt_root = c->mnt_root;
    if (da == parent && da != mnt_root) {
        /* a pseudo file's dentry is its own parent (memfd, anonymous files): keep its name */
        c->flags |= PT_PATH_OUTSIDE;
        c->done = 1;
        c->dentry = 0;
    } else if (da == mnt_root || da == parent) {
        __u64 up = (__u64)PT_RD(struct mount, c->mnt, mnt_parent);
        if (up == c->mnt || !up) {
            c->flags |= PT_PATH_OUTSIDE;
            c->done = 1;
            return 1;
        }
        c->dentry = (__u64)PT_RD(struct mount, c->mnt, mnt_mountpoint);
        c->mnt = up;
        c->vfsmnt = pt_vfsmount_of(up);
        c->mnt_root = (__u64)PT_RD(struct vfsmount, c->vfsmnt, mnt_root);
        return 0;
    }
    __u32 len = PT_RD(struct dentry, da, d_name.len);
    /* (for a pseudo file, c->done is set: its name is prepended, then the walk stops) */
    const unsigned char *name = PT_RD(struct dentry, da, d_name.name);
    __u32 off = c->off;
    if (len >= PT_NAME_MAX || len + 1 > off || off > PT_PATH_MAX) {
        c->flags |= PT_PATH_TRUNCATED;
        c->done = 1;
        return 1;
    }
    off -= len + 1;
    struct pt_buf *b = c->b;
    if (!b)
        return 1;
    bpf_probe_read_kernel(&b->s[(off + 1) & (PT_PATH_MAX - 1)], len & (PT_NAME_MAX - 1), name);
    b->s[off & (PT_PATH_MAX - 1)] = '/';
    c->off = off;
    if (c->done)
        return 1;
    c->dentry = parent;
    return 0;
}

/* Write the path of (dentry, vfsmnt) as seen from (root_d, root_m) into b, back to front.
 * Returns the offset where the path starts ("/" alone when dentry is the root); PT_PATH_*
 * bits go to r->flags. Needs bpf_loop (Linux 5.17+). */
static __always_inline int pt_path(struct pt_buf *b, struct pt_req *r)
{
    struct pt_walk_ctx c = {
        .b = b,
        .dentry = r->dentry,
        .vfsmnt = r->vfsmnt,
        .root_d = r->root_d,
        .root_m = r->root_m,
        .off = PT_PATH_MAX,
    };
    if (!c.dentry || !c.vfsmnt) {
        b->s[PT_PATH_MAX - 1] = 0;
        return PT_PATH_MAX - 1;
    }
    c.mnt = pt_mount_of(c.vfsmnt);
    c.mnt_root = (__u64)PT_RD(struct vfsmount, c.vfsmnt, mnt_root);
    bpf_loop(PT_DEPTH + PT_MOUNT_HOPS, pt_step, &c, 0);
    if (!c.done)
        c.flags |= PT_PATH_TRUNCATED;
    r->flags |= c.flags;
    __u32 off = c.off;
    if (off >= PT_PATH_MAX) {
        off = PT_PATH_MAX - 1;
        b->s[PT_PATH_MAX - 1] = '/';
    }
    return off & (PT_PATH_MAX - 1);
}

/* The task's root. */
static __always_inline void pt_task_root(struct task_struct *t, __u64 *d, __u64 *m)
{
    struct fs_struct *fs = t->fs;
    *d = (__u64)fs->root.dentry;
    *m = (__u64)fs->root.mnt;
}

/* cwd of `t` as seen from its own root; returns pt_path's offset. */
static __always_inline int pt_cwd(struct pt_buf *b, struct task_struct *t, __u32 *flags)
{
    struct fs_struct *fs = t->fs;
    struct pt_req r = {(__u64)fs->pwd.dentry, (__u64)fs->pwd.mnt, (__u64)fs->root.dentry, (__u64)fs->root.mnt, 0, 0};
    int off = pt_path(b, &r);
    *flags |= r.flags;
    return off;
}

/* Path of an open file as seen from `t`'s root; returns pt_path's offset. */
static __always_inline int pt_file_path(struct pt_buf *b, struct task_struct *t, struct file *f,
                                        __u32 *flags)
{
    struct pt_req r = {(__u64)f->f_path.dentry, (__u64)f->f_path.mnt, 0, 0, 0, 0};
    pt_task_root(t, &r.root_d, &r.root_m);
    int off = pt_path(b, &r);
    *flags |= r.flags;
    return off;
}

/* The kind of an open file, from its inode's mode and device number. */
static __always_inline __u8 pt_file_kind(struct file *f)
{
    if (!f)
        return FD_NONE;
    __u64 ino = (__u64)PT_RD(struct file, f, f_inode);
    __u16 mode = PT_RD(struct inode, ino, i_mode);
    switch (mode & S_IFMT) {
    case S_IFIFO:
        return FD_PIPE;
    case S_IFSOCK:
        return FD_SOCKET;
    case S_IFREG:
        return FD_FILE;
    case S_IFCHR: {
        __u32 rdev = PT_RD(struct inode, ino, i_rdev);
        __u32 major = rdev >> 20, minor = rdev & 0xfffff;
        if (major == 1 && minor == 3)
            return FD_NULL;
        /* 4: tty0-63/ttyS; 5: /dev/tty, console, ptmx; 136-143: pts; 204: low-density serial */
        if (major == 4 || major == 5 || (major >= 136 && major <= 143) || major == 204)
            return FD_TTY;
        return FD_OTHER;
    }
    default:
        return FD_OTHER;
    }
}

/* The open file behind descriptor `fd` of `t` (NULL when closed or out of range). The slot
 * is read with a helper: BTF does not type the fd array's elements. */
static __always_inline struct file *pt_fd_file(struct task_struct *t, __u32 fd)
{
    struct fdtable *fdt = t->files->fdt;
    if (!fdt || fd >= fdt->max_fds)
        return NULL;
    struct file **fds = fdt->fd;
    __u64 f = 0;
    bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
    return (struct file *)f;
}

static __always_inline __u32 pt_mnt_ns(struct task_struct *t)
{
    return t->nsproxy->mnt_ns->ns.inum;
}

static __always_inline __u32 pt_net_ns(struct task_struct *t)
{
    return t->nsproxy->net_ns->ns.inum;
}

/* The PID namespace the task itself lives in (not the one its children get): the upid of
 * its own level (an array indexed by a variable, read with a helper). */
static __always_inline __u32 pt_pid_ns(struct task_struct *t)
{
    struct pid *p = t->thread_pid;
    unsigned int level = p->level;
    __u64 numbers = (__u64)p + bpf_core_field_offset(struct pid, numbers);
    __u64 ns = 0;
    bpf_probe_read_kernel(&ns, sizeof(ns), &((struct upid *)numbers)[level & 31].ns);
    return PT_RD(struct pid_namespace, ns, ns.inum);
}

#endif
