/* Drift, decided in the kernel: the contract between the file sensor (which records) and the
 * process sensor (which judges an exec). Both objects declare this map; the loader makes the
 * process object reuse the file object's map (bpf_map__reuse_fd), so one map serves both.
 *
 * A container task that creates a file, writes one, or makes one executable records the
 * file's inode here; an exec of a recorded inode by a task of the same container (cgroup or
 * mount namespace) carries the verdict in its own sample. No user-space ordering is involved.
 */
#ifndef PODTRAIL_DRIFT_H
#define PODTRAIL_DRIFT_H

#define DRIFT_CREATED 1  /* created inside the container */
#define DRIFT_MODIFIED 2 /* written, or made executable, inside the container */
#define DRIFT_MEMFD 3    /* exec of a memfd */
#define DRIFT_DEV_SHM 4  /* exec from /dev/shm (tmpfs shared memory) */

struct drift_key {
    __u64 dev; /* inode->i_sb->s_dev */
    __u64 ino; /* inode->i_ino */
};

struct drift_val {
    __u64 cgroup_id; /* cgroup v2 id of the writer */
    __u64 ktime;     /* when it was recorded (bpf_ktime_get_ns) */
    __u32 mnt_ns;    /* mount namespace inode of the writer */
    __u32 reason;    /* DRIFT_CREATED or DRIFT_MODIFIED */
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct drift_key);
    __type(value, struct drift_val);
} drift_inodes SEC(".maps");

#endif
