/* One ordered ring buffer per object, its per-CPU `lost` counter (read by
 * podtrail.bpf.runtime.RingBufferSource.lost and exported as metrics), and batched wake-ups.
 * Include after vmlinux.h and bpf_helpers.h. The loader sets the ring buffer's real size.
 *
 * The reader is woken once per WAKEUP_EVERY samples per CPU, not per sample: in a storm a
 * wake-up per sample costs the workload more than the sample. The reader also polls with a
 * short timeout, so a lone sample waits at most that long. */
#ifndef PODTRAIL_RINGBUF_H
#define PODTRAIL_RINGBUF_H

#ifndef WAKEUP_EVERY
#define WAKEUP_EVERY 64
#endif

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4096); /* the loader sets the configured size */
} events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} lost SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} since_wakeup SEC(".maps");

static __always_inline void count_lost(void)
{
    __u32 z = 0;
    __u64 *l = bpf_map_lookup_elem(&lost, &z);
    if (l)
        __sync_fetch_and_add(l, 1);
}

/* Send a sample; a full ring buffer is counted, never silent. */
static __always_inline void submit(void *data, __u64 size)
{
    __u32 z = 0;
    __u64 flags = BPF_RB_NO_WAKEUP;
    __u32 *n = bpf_map_lookup_elem(&since_wakeup, &z);
    if (n && ++(*n) >= WAKEUP_EVERY) {
        *n = 0;
        flags = BPF_RB_FORCE_WAKEUP;
    }
    if (bpf_ringbuf_output(&events, data, size, flags) != 0)
        count_lost();
}

#endif
