/* Facts about a task and its files, read through BTF (CO-RE) at the event: paths as seen from
 * the task's own root, fd kinds, credentials, namespaces. Shared by the process, file and
 * socket objects. Include after vmlinux.h, bpf_helpers.h and bpf_core_read.h.
 *
 * Paths: the kernel keeps a path as (dentry, vfsmount); we walk dentry->d_parent up to the
 * task's root (task->fs->root), hopping from a mount's root to its mountpoint, then write the
 * collected names root-first. The walk is bounded (PT_DEPTH components, PT_PATH_MAX bytes);
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

/* Scratch for one walk: the names, leaf first (kept in a map value, not on the stack). */
struct pt_walk {
    const unsigned char *names[PT_DEPTH];
};

static __always_inline struct vfsmount *pt_vfsmount(struct mount *m)
{
    return (struct vfsmount *)((char *)m + bpf_core_field_offset(struct mount, mnt));
}

/* Write the path of (dentry, vfsmnt) as seen from (root_d, root_m) into buf (PT_PATH_BUF bytes,
 * a map value). Returns the length without the NUL; *flags gets PT_PATH_* bits. */
static __always_inline __u32 pt_path(char *buf, struct pt_walk *w, struct dentry *dentry,
                                     struct vfsmount *vfsmnt, struct dentry *root_d,
                                     struct vfsmount *root_m, __u32 *flags)
{
    struct mount *mnt = container_of(vfsmnt, struct mount, mnt);
    __u32 n = 0, hops = 0, done = 0;
    buf[0] = 0;
    if (!dentry || !vfsmnt)
        return 0;
    for (int i = 0; i < PT_DEPTH + PT_MOUNT_HOPS; i++) {
        if (dentry == root_d && vfsmnt == root_m) {
            done = 1;
            break;
        }
        struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
        struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
        if (dentry == mnt_root || dentry == parent) {
            struct mount *up = BPF_CORE_READ(mnt, mnt_parent);
            if (up == mnt || !up || ++hops > PT_MOUNT_HOPS) {
                *flags |= PT_PATH_OUTSIDE;
                done = 1;
                break;
            }
            dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
            mnt = up;
            vfsmnt = pt_vfsmount(up);
            continue;
        }
        if (n >= PT_DEPTH) {
            *flags |= PT_PATH_TRUNCATED;
            done = 1;
            break;
        }
        w->names[n & (PT_DEPTH - 1)] = BPF_CORE_READ(dentry, d_name.name);
        n++;
        dentry = parent;
    }
    if (!done)
        *flags |= PT_PATH_TRUNCATED;
    if (n == 0) {
        buf[0] = '/';
        buf[1] = 0;
        return 1;
    }
    __u32 off = 0;
    for (int j = 0; j < PT_DEPTH; j++) {
        if (j >= n)
            break;
        if (off >= PT_PATH_MAX - 1) {
            *flags |= PT_PATH_TRUNCATED;
            break;
        }
        buf[off & (PT_PATH_MAX - 1)] = '/';
        off++;
        long r = bpf_probe_read_kernel_str(&buf[off & (PT_PATH_MAX - 1)], PT_NAME_MAX,
                                           w->names[(n - 1 - j) & (PT_DEPTH - 1)]);
        if (r <= 0)
            break;
        off += r - 1;
    }
    return off; /* bpf_probe_read_kernel_str wrote the final NUL */
}

/* The task's root and working directory. */
static __always_inline void pt_task_root(struct task_struct *t, struct dentry **d, struct vfsmount **m)
{
    *d = BPF_CORE_READ(t, fs, root.dentry);
    *m = BPF_CORE_READ(t, fs, root.mnt);
}

/* cwd of `t` as seen from its own root. */
static __always_inline __u32 pt_cwd(char *buf, struct pt_walk *w, struct task_struct *t, __u32 *flags)
{
    struct dentry *rd;
    struct vfsmount *rm;
    pt_task_root(t, &rd, &rm);
    return pt_path(buf, w, BPF_CORE_READ(t, fs, pwd.dentry), BPF_CORE_READ(t, fs, pwd.mnt), rd, rm, flags);
}

/* Path of an open file as seen from `t`'s root. */
static __always_inline __u32 pt_file_path(char *buf, struct pt_walk *w, struct task_struct *t,
                                          struct file *f, __u32 *flags)
{
    struct dentry *rd;
    struct vfsmount *rm;
    pt_task_root(t, &rd, &rm);
    return pt_path(buf, w, BPF_CORE_READ(f, f_path.dentry), BPF_CORE_READ(f, f_path.mnt), rd, rm, flags);
}

/* The kind of an open file, from its inode's mode and device number. */
static __always_inline __u8 pt_file_kind(struct file *f)
{
    if (!f)
        return FD_NONE;
    struct inode *ino = BPF_CORE_READ(f, f_inode);
    __u16 mode = BPF_CORE_READ(ino, i_mode);
    switch (mode & S_IFMT) {
    case S_IFIFO:
        return FD_PIPE;
    case S_IFSOCK:
        return FD_SOCKET;
    case S_IFREG:
        return FD_FILE;
    case S_IFCHR: {
        __u32 rdev = BPF_CORE_READ(ino, i_rdev);
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

/* The open file behind descriptor `fd` of `t` (NULL when closed or out of range). */
static __always_inline struct file *pt_fd_file(struct task_struct *t, __u32 fd)
{
    struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
    if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
        return NULL;
    struct file **fds = BPF_CORE_READ(fdt, fd);
    struct file *f = NULL;
    bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
    return f;
}

static __always_inline __u32 pt_mnt_ns(struct task_struct *t)
{
    return BPF_CORE_READ(t, nsproxy, mnt_ns, ns.inum);
}

static __always_inline __u32 pt_net_ns(struct task_struct *t)
{
    return BPF_CORE_READ(t, nsproxy, net_ns, ns.inum);
}

/* The PID namespace the task itself lives in (not the one its children get). */
static __always_inline __u32 pt_pid_ns(struct task_struct *t)
{
    struct pid *p = BPF_CORE_READ(t, thread_pid);
    unsigned int level = BPF_CORE_READ(p, level);
    struct upid *numbers = (struct upid *)((char *)p + bpf_core_field_offset(struct pid, numbers));
    struct pid_namespace *ns = NULL;
    bpf_probe_read_kernel(&ns, sizeof(ns), &numbers[level & 31].ns);
    return BPF_CORE_READ(ns, ns.inum);
}

#endif
