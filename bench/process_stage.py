"""The process table stage alone: µs of thread CPU per event, and the same for another
checkout's stage in the same run (issue 14: ``--against /work/main``).

    .venv/bin/python -m bench process_stage [--cycles 10000] [--rounds 5] [--against CHECKOUT]
                                            [--native-off] [--samples FILE]

Two workloads, each through the real eBPF decoder and then ``ProcessStage.process`` as the
pipeline calls it, the table as the agent keeps it with eBPF (``proc_fallback`` off):

- ``host``: what the exec storm sends (a long-lived parent in the table, 3 ancestors above it,
  spawns a short-lived child): the child's exec with its fork folded in, in the host mount
  namespace, then its exit with the kernel's cwd; two events per exec. ``--samples`` replays
  a pickled list of raw ring-buffer samples from the real agent instead (their parent is
  put in the table as above).
- ``pod``: ``bench.stage_profile``'s stream (a shell in a pod forks and execs curl, which
  connects twice, opens a file and exits; ancestry 4 deep).

Best of ``--rounds``, each on fresh events and a fresh table. ``no_gc`` is the same loop with
the collector off (the agent's collections are a line of their own in its profile). Pids
are above pid_max: nothing is read from /proc. ``--against`` runs this file's measurement
in a subprocess whose ``podtrail`` package is the other checkout's, then prints the ratios;
``--native-off`` runs it in a subprocess of this checkout with ``PODTRAIL_NATIVE=0`` (the
pure-Python paths the C accelerators stand in for).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
PARENT = 3_000_000  # the long-lived parent of the host workload (above pid_max)
CHILD = 3_100_000


def _host_samples(cycles: int) -> list[bytes]:
    from bench.process_samples import exec_sample, fork_exit_sample
    from podtrail.bpf.process import EV_EXIT, F_EXIT_KNOWN, F_FORK_FOLDED, ExecFixed

    mnt_ns = os.stat("/proc/self/ns/mnt").st_ino  # the host's, whose passwd the name cache reads
    out = []
    for c in range(cycles):
        pid, start, t = CHILD + c, 1_000_000_000 + 1_000_000 * c, 1_000_000_000 + 1_000_000 * c + 500_000
        raw = bytearray(exec_sample("/bin/busybox", "/work/main", "/usr/bin/busybox", ["/bin/busybox", "true", "paced-pt"],
                                    F_FORK_FOLDED, pid=pid, ppid=PARENT, cgroup_id=1, ktime=t, comm=b"busybox", start_ns=start))
        raw[ExecFixed.mnt_ns.offset:ExecFixed.mnt_ns.offset + 4] = mnt_ns.to_bytes(4, "little")
        out.append(bytes(raw))
        out.append(fork_exit_sample(EV_EXIT, pid, PARENT, 1, t + 300_000, "/work/main", comm=b"busybox",
                                    flags=F_EXIT_KNOWN, start_ns=start))
    return out


def _host_table(parent_pid: int) -> Any:
    from podtrail.procs.table import Proc, ProcessTable

    t = ProcessTable(30.0, proc_fallback=False)
    prev = None
    args = " ".join(f"--opt{k}=value{k}" for k in range(60))  # a long command line, as a real agent's runner has
    for pid, path, cmd in ((1, "/sbin/init", "/sbin/init splash"), (700, "/usr/sbin/sshd", "sshd: /usr/sbin/sshd -D"),
                           (800, "/bin/bash", "-bash"), (parent_pid, "/usr/bin/python3", f"python3 run.py {args}")):
        p = Proc(pid, pid * 1000, prev, prev.pid if prev else 0, path, cmd, path.rsplit("/", 1)[-1], "/root", 0, 1)
        t.by_pid[pid] = prev = p
    return t


def _timed(run: Callable[[], float], rounds: int) -> tuple[float, float]:
    """Best µs per event of ``run`` (which returns it), with and without the collector."""
    best, best_no_gc = float("inf"), float("inf")
    for _ in range(rounds):
        best = min(best, run())
        gc.collect()
        gc.disable()
        try:
            best_no_gc = min(best_no_gc, run())
        finally:
            gc.enable()
        gc.collect()
    return best, best_no_gc


def measure(cycles: int, rounds: int, samples: str | None) -> dict[str, Any]:
    from bench.stage_profile import World, decode_items, stream
    from podtrail.bpf.process import ProcessDecoder
    from podtrail.procs.stage import ProcessStage

    res: dict[str, Any] = {}
    if samples:
        with open(samples, "rb") as f:
            raws: list[bytes] = pickle.load(f)
        first = ProcessDecoder().decode(raws[0])
        parent = first.get("ppid", PARENT) if first else PARENT
    else:
        raws, parent = _host_samples(cycles), PARENT

    def host() -> float:
        dec = ProcessDecoder()
        evs = [e for e in (dec.decode(r) for r in raws) if e is not None]
        stage, out = ProcessStage(_host_table(parent)), list[Any]()
        push = out.append
        t0 = time.thread_time_ns()
        for ev in evs:
            stage.process(ev, push)
        return (time.thread_time_ns() - t0) / len(evs) / 1000

    res["host"] = _timed(host, rounds)

    world = World()
    items = stream(world, cycles)

    def pod() -> float:
        w = World()
        w.table.proc_fallback = False  # as the agent runs it with eBPF
        evs = decode_items(ProcessDecoder(), items)
        stage, out = ProcessStage(w.table), list[Any]()
        push = out.append
        t0 = time.thread_time_ns()
        for ev in evs:
            stage.process(ev, push)
        stage.tick(float("inf"), push)
        return (time.thread_time_ns() - t0) / len(evs) / 1000

    res["pod"] = _timed(pod, rounds)
    return {k: {"us_per_event": round(v[0], 2), "no_gc": round(v[1], 2)} for k, v in res.items()}


def _against(checkout: str, argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """This measurement with ``checkout``'s podtrail (imported first, so that every podtrail
    module is its) and this checkout's bench code, with ``env`` added to the environment."""
    code = ("import sys, json; sys.path.insert(0, {!r}); import podtrail; assert podtrail.__file__.startswith({!r}), "
            "podtrail.__file__; sys.path.insert(0, {!r}); from bench.process_stage import main; "
            "sys.exit(main({!r}))").format(checkout, checkout, str(HERE), [*argv, "--json"])
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env={**os.environ, **(env or {})}).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--samples", help="a pickled list of raw process samples to replay as the host workload")
    ap.add_argument("--against", help="another checkout, measured in the same run (e.g. /work/main)")
    ap.add_argument("--native-off", action="store_true", help="also this checkout with PODTRAIL_NATIVE=0, in the same run")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.samples:
        a.samples = os.path.abspath(a.samples)
    own_argv = ["--cycles", str(a.cycles), "--rounds", str(a.rounds), *(["--samples", a.samples] if a.samples else [])]
    if a.json:
        print(json.dumps(measure(a.cycles, a.rounds, a.samples)))
        return 0
    ref = _against(os.path.abspath(a.against), own_argv) if a.against else None
    off = _against(str(HERE), own_argv, {"PODTRAIL_NATIVE": "0"}) if a.native_off else None
    mine = measure(a.cycles, a.rounds, a.samples)
    report: dict[str, Any] = {"this checkout": mine, "load": round(os.getloadavg()[0], 2)}
    for name, other in (("PODTRAIL_NATIVE=0", off), (a.against, ref)):
        if other is not None:
            report[name] = other
            report[f"ratio ({name} / this)"] = {k: {m: round(other[k][m] / mine[k][m], 2) for m in mine[k]} for k in mine}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
