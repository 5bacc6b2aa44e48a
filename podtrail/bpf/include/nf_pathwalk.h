/* A path as the task itself sees it, built in the kernel at the event: walk a (dentry,
 * vfsmount) pair up to the task's root (task->fs->root, not the host's), crossing mounts,
 * with a bounded depth. Used by the file sensor to make relative paths absolute against the
 * cwd or dirfd captured at the syscall (no /proc race), and to name the file an fd refers to.
 *
 * The walk itself is task_facts.h's (pt_path); this adds a front-aligned copy that the
 * file sensor can match, append a relative path to, and send. Needs task_facts.h first. */
#ifndef PODTRAIL_NF_PATHWALK_H
#define PODTRAIL_NF_PATHWALK_H

#define NFP_HALF 256             /* a component (or the appended relative path) starts below this */
#define NFP_BUF (2 * NFP_HALF)   /* size of every path buffer */

/* A front-aligned path buffer (what the sensors match and send). Functions that take one
 * are global: the verifier checks them once, not at every call. */
struct nf_path_t {
    char s[NFP_BUF];
};

#define NFP_CUT (1 << 16) /* in a returned length: the path is not the task's full view */

/* Keep clang from dropping a mask the verifier needs to see. */
#define NFP_BARRIER(x) asm volatile("" : "+r"(x))

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct pt_buf);
} nfp_walk_buf SEC(".maps");

/* Write the path of (dentry, vfsmnt) seen from the current task's root (task_facts.h's walk)
 * into out, NUL terminated. Returns its length, with NFP_CUT set when the walk was cut, the
 * file is outside the task's root, or the path does not fit; -1 when nothing could be read. */
__noinline int nfp_path(__u64 dentry, __u64 vfsmnt, struct nf_path_t *out) {
    __u32 z = 0;
    struct pt_buf *b = bpf_map_lookup_elem(&nfp_walk_buf, &z);
    if (!out || !b || !dentry || !vfsmnt)
        return -1;
    struct task_struct *t = bpf_get_current_task_btf();
    struct pt_req r = {dentry, vfsmnt, 0, 0, 0, 0};
    pt_task_root(t, &r.root_d, &r.root_m);
    __u32 off = pt_path(b, &r);
    int cut = (r.flags & (PT_PATH_TRUNCATED | PT_PATH_OUTSIDE)) ? NFP_CUT : 0;
    __u32 len = PT_PATH_MAX - off;
    if (len >= NFP_BUF) { /* keep the tail: the file's own name survives */
        off = PT_PATH_MAX - (NFP_BUF - 1);
        len = NFP_BUF - 1;
        cut = NFP_CUT;
    }
    NFP_BARRIER(len);
    len &= NFP_BUF - 1;
    bpf_probe_read_kernel(out->s, len, &b->s[off & (PT_PATH_MAX - 1)]);
    out->s[len] = 0;
    return len | cut;
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
    struct file *f = pt_fd_file(t, dfd);
    if (!f)
        return -1;
    return nfp_path((__u64)BPF_CORE_READ(f, f_path.dentry), (__u64)BPF_CORE_READ(f, f_path.mnt), out);
}

#endif
