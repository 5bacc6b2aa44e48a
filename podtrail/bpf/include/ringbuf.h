/* One ordered ring buffer per object, its per-CPU `lost` counter (read by
 * podtrail.bpf.runtime.RingBufferSource.lost and exported as metrics), and batched wake-ups.
 * Include after vmlinux.h and bpf_helpers.h. The loader sets the ring buffer's real size.
 *
 * Wake-ups: a sample wakes the reader when no sample on its CPU did for WAKE_QUIET_NS (the
 * first after a quiet spell: a lone exec is read at once), else once per WAKEUP_EVERY samples
 * per CPU; the reader's poll timeout (podtrail.bpf.runtime.POLL_MS, the same 200 ms) picks up
 * the rest. A wake-up is not free for either side: in a storm a wake-up per sample cost the
 * workload more than the sample, and each wake-up of the agent's reader and pipeline threads
 * costs ~0.1-0.2 ms of CPU here however little it finds (docs/BENCHMARKS.md, "Fewer wake-ups"),
 * so under load they come once per WAKEUP_EVERY samples and, idle, not at all. */
#ifndef PODTRAIL_RINGBUF_H
#define PODTRAIL_RINGBUF_H

#ifndef WAKEUP_EVERY
#define WAKEUP_EVERY 256
#endif
#define WAKE_QUIET_NS 200000000ULL /* = POLL_MS: a sample waits at most about that long */

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

struct wake_state_t {
    __u64 last_ns; /* this CPU's last forced wake-up */
    __u32 since;   /* samples on this CPU since */
    __u32 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct wake_state_t);
} wake_state SEC(".maps");

static __always_inline void count_lost(void)
{
    __u32 z = 0;
    __u64 *l = bpf_map_lookup_elem(&lost, &z);
    if (l)
        __sync_fetch_and_add(l, 1);
}

/* The wake-up flag for the next sample: forced for the first sample on this CPU after
 * WAKE_QUIET_NS without one, and for every WAKEUP_EVERY-th. */
static __always_inline __u64 wakeup_flags(void)
{
    __u32 z = 0;
    struct wake_state_t *w = bpf_map_lookup_elem(&wake_state, &z);
    if (!w)
        return 0; /* cannot happen (an array's slot 0); libbpf's default: wake when caught up */
    __u64 now = bpf_ktime_get_ns();
    if (++w->since >= WAKEUP_EVERY || now - w->last_ns >= WAKE_QUIET_NS) {
        w->since = 0;
        w->last_ns = now;
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
