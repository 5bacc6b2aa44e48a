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

/* The wake-up flag for the next sample: one forced wake-up per WAKEUP_EVERY per CPU. */
static __always_inline __u64 wakeup_flags(void)
{
    __u32 z = 0;
    __u32 *n = bpf_map_lookup_elem(&since_wakeup, &z);
    if (n && ++(*n) >= WAKEUP_EVERY) {
        *n = 0;
        return BPF_RB_FORCE_WAKEUP;
    }
    return BPF_RB_NO_WAKEUP;
}

/* Send a sample built elsewhere (copied); a full ring buffer is counted, never silent. */
static __always_inline void submit(void *data, __u64 size)
{
    if (bpf_ringbuf_output(&events, data, size, wakeup_flags()) != 0)
        count_lost();
}

/* Samples built in place: a program reserves the sample's bytes in the ring buffer and
 * writes its fields there, then commits it (reserve_sample / commit_sample, or the dynptr
 * pair for a size known only at run time). Building in a per-CPU scratch value and copying
 * it with bpf_ringbuf_output writes every byte of the sample into ring memory, which is cold
 * (the reader on another CPU had it last): a 1.4 KiB exit sample cost ~1.5 us that way here,
 * most of the program. Built in place, only the bytes that carry facts are written (a path
 * buffer's used tail, not its slack); the sample's layout and size are unchanged, and the
 * bytes not written are what the ring held before (earlier samples), which user space never
 * reads: every field it reads is written (paths from their offset to the buffer's end, NUL
 * terminated strings, counted argv). */
static __always_inline void *reserve_sample(__u64 size)
{
    void *p = bpf_ringbuf_reserve(&events, size, 0);
    if (!p)
        count_lost();
    return p;
}

static __always_inline void commit_sample(void *p)
{
    bpf_ringbuf_submit(p, wakeup_flags());
}

#endif
