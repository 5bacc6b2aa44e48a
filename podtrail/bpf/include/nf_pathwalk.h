/* A path as the task itself sees it, built in the kernel at the event: walk a (dentry,
 * vfsmount) pair up to the task's root (task->fs->root, not the host's), crossing mounts,
 * with a bounded depth. Used by the file sensor to make relative paths absolute against the
 * cwd or dirfd captured at the syscall (no /proc race), and to name the file an fd refers to.
 *
 * Needs "vmlinux.h" and the libbpf headers included first. */
#ifndef PODTRAIL_NF_PATHWALK_H
#define PODTRAIL_NF_PATHWALK_H

#define NFP_MAX_DEPTH 32         /* path components kept; deeper paths are cut (flagged) */
#define NFP_MAX_STEPS 48         /* components plus mount crossings */
#define NFP_HALF 256             /* a component (or the appended relative path) starts below this */
#define NFP_BUF (2 * NFP_HALF)   /* size of every path buffer */

/* Walk state lives in per-CPU map memory (volatile): the verifier then treats the counters
 * as unknown and checks one state per loop step, not one per (step, depth, offset) mix. */
struct nfp_names_t {
    const unsigned char *name[NFP_MAX_DEPTH];
    volatile __u32 n;
    volatile __u32 pos;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct nfp_names_t);
} nfp_names SEC(".maps");

/* A path buffer. Functions that take one are global (verified once, not at every call). */
struct nf_path_t {
    char s[NFP_BUF];
};

#define NFP_CUT (1 << 16) /* in a returned length: the path is not the task's full view */

/* Keep clang from dropping a mask the verifier needs to see. */
#define NFP_BARRIER(x) asm volatile("" : "+r"(x))

/* Write the path of (dentry d, vfsmount m) seen from the current task's root into out, NUL
 * terminated. Returns its length, with NFP_CUT set when the depth limit was hit or the walk
 * reached the top of the mount tree without meeting the task's root (a cwd outside its
 * chroot); -1 when nothing could be read. */
__noinline int nfp_path(__u64 dentry, __u64 vfsmnt, struct nf_path_t *out) {
    __u32 z = 0;
    struct nfp_names_t *nm = bpf_map_lookup_elem(&nfp_names, &z);
    struct dentry *d = (struct dentry *)dentry;
    struct vfsmount *m = (struct vfsmount *)vfsmnt;
    if (!out || !nm || !d || !m)
        return -1;
    struct task_struct *t = bpf_get_current_task_btf();
    struct dentry *root_d = BPF_CORE_READ(t, fs, root.dentry);
    struct vfsmount *root_m = BPF_CORE_READ(t, fs, root.mnt);
    struct mount *mnt = container_of(m, struct mount, mnt);
    int met = 0, cut = 0;
    nm->n = 0;
    for (int i = 0; i < NFP_MAX_STEPS; i++) {
        if (d == root_d && m == root_m) {
            met = 1;
            break;
        }
        struct dentry *parent = BPF_CORE_READ(d, d_parent);
        if (d == BPF_CORE_READ(m, mnt_root) || d == parent) {
            struct mount *pm = BPF_CORE_READ(mnt, mnt_parent);
            if (pm == mnt)
                break; /* top of the mount tree */
            d = BPF_CORE_READ(mnt, mnt_mountpoint);
            mnt = pm;
            m = &pm->mnt;
            continue;
        }
        __u32 n = nm->n;
        if (n >= NFP_MAX_DEPTH)
            break;
        nm->name[n & (NFP_MAX_DEPTH - 1)] = BPF_CORE_READ(d, d_name.name);
        nm->n = n + 1;
        d = parent;
    }
    if (!met)
        cut = NFP_CUT;
    if (nm->n == 0) {
        out->s[0] = '/';
        out->s[1] = 0;
        return 1 | cut;
    }
    nm->pos = 0;
    for (int j = 0; j < NFP_MAX_DEPTH; j++) {
        __u32 n = nm->n;
        if (j >= n)
            break;
        __u32 pos = nm->pos;
        if (pos >= NFP_HALF - 1) {
            cut = NFP_CUT;
            break;
        }
        out->s[pos & (NFP_HALF - 1)] = '/';
        pos++;
        long r = bpf_probe_read_kernel_str(&out->s[pos & (NFP_HALF - 1)], NFP_HALF,
                                           nm->name[(n - 1 - j) & (NFP_MAX_DEPTH - 1)]);
        if (r > 1)
            pos += r - 1;
        nm->pos = pos;
    }
    __u32 pos = nm->pos;
    out->s[pos & (NFP_BUF - 1)] = 0;
    return (pos & (NFP_BUF - 1)) | cut;
}

/* The directory a relative path of a syscall starts from: the cwd for AT_FDCWD, else the
 * directory open on dfd. Its path goes into out; returns as nfp_path. */
__noinline int nfp_base_dir(int dfd, struct nf_path_t *out) {
    struct task_struct *t = bpf_get_current_task_btf();
    if (!out)
        return -1;
    if (dfd == -100) /* AT_FDCWD */
        return nfp_path((__u64)BPF_CORE_READ(t, fs, pwd.dentry), (__u64)BPF_CORE_READ(t, fs, pwd.mnt), out);
    if (dfd < 0)
        return -1;
    struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
    if (!fdt || (unsigned int)dfd >= BPF_CORE_READ(fdt, max_fds))
        return -1;
    struct file **fds = BPF_CORE_READ(fdt, fd);
    struct file *f = NULL;
    bpf_probe_read_kernel(&f, sizeof(f), &fds[dfd]);
    if (!f)
        return -1;
    return nfp_path((__u64)BPF_CORE_READ(f, f_path.dentry), (__u64)BPF_CORE_READ(f, f_path.mnt), out);
}

#endif
