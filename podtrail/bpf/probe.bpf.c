/* The smallest real podtrail program: `podtrail doctor` loads and attaches it to prove that
 * CO-RE objects load here (BTF, verifier, attach), and the loader's tests use it. It reports
 * each exec of the tgid set in its config: pid and the task's cwd inode, read through BTF. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct probe_cfg {
    __u32 parent_tgid; /* report execs of children of this tgid only (0: none) */
    __u32 magic;       /* echoed in every sample, proves .rodata was set before load */
};

const volatile struct probe_cfg CFG = {};

struct probe_sample {
    __u32 pid;
    __u32 magic;
    __u64 cwd_ino;
};

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4096);
} events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} lost SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, __u32);
    __type(value, __u64);
} scratch_hash SEC(".maps");

SEC("tp_btf/sched_process_exec")
int BPF_PROG(probe_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
    if (!CFG.parent_tgid || BPF_CORE_READ(task, real_parent, tgid) != CFG.parent_tgid)
        return 0;
    struct probe_sample s = {};
    s.pid = BPF_CORE_READ(task, tgid);
    s.magic = CFG.magic;
    s.cwd_ino = BPF_CORE_READ(task, fs, pwd.dentry, d_inode, i_ino);
    if (bpf_ringbuf_output(&events, &s, sizeof(s), 0)) {
        __u32 z = 0;
        __u64 *l = bpf_map_lookup_elem(&lost, &z);
        if (l)
            __sync_fetch_and_add(l, 1);
    }
    return 0;
}

/* Never loaded by podtrail ("?" = no autoload): the loader's test turns it on to check that a
 * verifier rejection comes back with the verifier's own words. It reads past a stack buffer. */
SEC("?tp_btf/sched_process_exec")
int BPF_PROG(probe_rejected, struct task_struct *task)
{
    char buf[8] = {};
    __u32 i = bpf_get_prandom_u32();
    return buf[i];
}
