// SPDX-License-Identifier: GPL-2.0
/* Empty programs on the tracepoints the file sensor's open path uses: the cost of tracing
 * at all, the floor any sensor on these tracepoints pays (bench/net_file_storm.py). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp/syscalls/sys_enter_openat")
int floor_enter(void *ctx) { return 0; }

SEC("tp/syscalls/sys_exit_openat")
int floor_exit(void *ctx) { return 0; }
