"""From the stages' end to the default output, on host process events: µs per event for the
container and Kubernetes stages, the pipeline's delivery (hand-over, a five-stage chain,
``finalize``, the events counter), the stdout JSON line, and the sink's ends of batch with their
writes.

    .venv/bin/python -m bench delivery [--rounds 7] [--batch 16] [--samples FILE | --pods] [--reference DIR]
                                       [--native-off]

The stream is the exec storm's at 1,000 execs/s (``bench/exec_storm.py``'s paced phase): exec
and exit of ``/bin/busybox true`` in the host's root cgroup, children of a Python process that
is a child of this one, so their ancestry is this process's real one from the seeded process
table. ``--samples`` replays a pickled list of raw ring-buffer samples instead (taken from
the real agent); ``--pods`` takes bench/stage_profile's stream of processes in 250 pods
(fork, exec, two connects, an open, exit; pod metadata cached) with fresh stages per round. Samples go through the real decoder and process stage (not timed), then,
``--batch`` events at a time (the events stay in the cache, as in the pipeline), through the
real container stage (real cgroup index), the real Kubernetes stage as the agent builds it
without an API server, the real ``Pipeline`` (emit of the batch, one take as after a nap, its
chain of five pass-through stages, delivery to a sink that keeps nothing), and a ``StdoutSink`` writing a regular file
(the batch's lines, then one end of batch per event: the pipeline's batches at 1,000 execs/s are one or two
events). Last, the hand-over itself: a producer thread emits one event every 300 µs into a
running ``Pipeline`` (so its thread sleeps before each), both threads' CPU per event (the
pipeline thread's includes its idle ticks). Best of ``--rounds``, thread CPU time (kernel time of the write included).
``--reference DIR`` runs the same benchmark code against DIR's ``podtrail`` in a subprocess
and prints this checkout's figures over the reference's; ``--native-off`` does the same with
this checkout and ``PODTRAIL_NATIVE=0`` (the pure-Python paths of the C accelerators).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
BASE_PID = 200_000  # above pid_max: /proc never answers for these
STAGES = ("container", "k8s", "delivery (emit, chain, finalize, counter)", "stdout JSON line", "stdout ends of batch (writes)")
HANDOVER = "hand-over to a sleeping pipeline (both threads)"


class Pass:
    """A stage that passes every event on (the chain's own cost)."""

    def process(self, ev: Any, out: Any) -> None:
        out(ev)

    def tick(self, now: float, out: Any) -> None:
        return None


class Null:
    """A sink that keeps nothing (delivery's own cost)."""

    name = "null"

    def submit(self, ev: Any) -> None:
        return None

    def close(self) -> None:
        return None


def _samples(n_execs: int) -> list[bytes]:
    from bench.process_samples import exec_sample, header_sample
    from podtrail.bpf.process import EV_EXIT, ExecFixed
    from podtrail.enrich.cgroup_index import cgroup2_mount

    root = cgroup2_mount()
    cgid = os.stat(root).st_ino if root else 1
    mnt = os.stat("/proc/self/ns/mnt").st_ino
    out = []
    for i in range(n_execs):
        pid, t = BASE_PID + 1 + i, 1_000_000_000 + 1_000_000 * i
        raw = bytearray(exec_sample("/bin/busybox", "/work", "/usr/bin/busybox", ["/bin/busybox", "true", "paced-pt"],
                                    pid=pid, ppid=BASE_PID, cgroup_id=cgid, ktime=t, comm=b"busybox"))
        struct.pack_into("<I", raw, ExecFixed.mnt_ns.offset, mnt)
        out.append(bytes(raw))
        out.append(header_sample(EV_EXIT, pid, BASE_PID, cgid, t + 500_000, comm=b"busybox"))
    return out


def _pods(cycles: int) -> tuple[list[list[tuple[str, Any]]], Any]:
    """bench/stage_profile's stream (shell in a pod: fork, exec of curl, two connects, an open,
    exit; 250 pods with their cgroups and pod metadata cached), and a maker of fresh stages."""
    from bench.stage_profile import World, decode_items, stream
    from podtrail.bpf.process import ProcessDecoder
    from podtrail.enrich.container import ContainerStage
    from podtrail.enrich.k8s.stage import K8sStage
    from podtrail.procs.stage import ProcessStage

    items = stream(World(), cycles)

    def fresh() -> tuple[Any, Any, Any, Any]:
        w = World()
        dec = ProcessDecoder()
        return ((lambda chunk: decode_items(dec, chunk)), ProcessStage(w.table), ContainerStage(w.index),
                K8sStage(w.cache, None, cluster_name="prod-eu-1", node_name="node-1", labels=["app"]))

    return [items], fresh


def _no_pods() -> tuple[Any, Any, Any, Any]:
    raise AssertionError("--pods not given")


def measure(rounds: int, batch: int, samples_file: str | None, pods: bool = False) -> dict[str, float]:
    from podtrail.bpf.process import ProcessDecoder
    from podtrail.config import KubernetesConfig
    from podtrail.enrich.cgroup_index import CgroupIndex
    from podtrail.enrich.container import ContainerStage
    from podtrail.enrich.k8s import build_k8s_stage
    from podtrail.outputs.stdout import StdoutSink
    from podtrail.pipeline import Pipeline
    from podtrail.procs.stage import ProcessStage
    from podtrail.procs.table import Proc, ProcessTable

    pod_items, pod_stages = _pods(3000) if pods else ([], _no_pods)
    samples = [] if pods else pickle.loads(Path(samples_file).read_bytes()) if samples_file else _samples(10_000)
    table = ProcessTable()
    table.seed()
    me = table.get(os.getpid())
    runner = Proc(BASE_PID, 1, me, os.getpid(), sys.executable, f"{sys.executable} -m bench exec_storm --paced", "python", "/work")
    table.by_pid[BASE_PID] = runner
    dec0 = ProcessDecoder()
    for s in samples[:200]:  # a replay's parents: the runner too
        e = dec0.decode(s)
        if e is not None and e.get("ppid") and e["ppid"] not in table.by_pid:
            table.by_pid[e["ppid"]] = Proc(e["ppid"], 1, me, os.getpid(), runner.path, runner.cmdline, "python", "/work")
    procs = ProcessStage(table)
    cont = ContainerStage(CgroupIndex())
    k8s, stop_k8s, _ = build_k8s_stage(KubernetesConfig(), "node-1")

    pipe = Pipeline([Pass() for _ in range(5)], [Null()], queue_size=1 << 20)
    fd, path = tempfile.mkstemp(prefix="podtrail-bench-delivery-", suffix=".jsonl")
    os.close(fd)
    best = dict.fromkeys(STAGES, float("inf"))
    tc = time.thread_time_ns
    try:
        with open(path, "w") as f:
            sink = StdoutSink(f)
            for _ in range(rounds):
                dec = ProcessDecoder()
                decode: Any = lambda chunk, dec=dec: [dec.decode(x) for x in chunk]  # noqa: E731
                source: list[Any] = samples
                if pods:
                    decode, procs, cont, k8s = pod_stages()
                    source = pod_items[0]
                spent = dict.fromkeys(STAGES, 0)
                n = 0
                for i in range(0, len(source), batch):
                    evs: list[Any] = []
                    for e in decode(source[i:i + batch]):
                        if e is not None:
                            procs.process(e, evs.append)
                    n += len(evs)
                    t0 = tc()
                    for e in evs:
                        cont.apply(e)
                    t1 = tc()
                    got: list[Any] = []
                    for e in evs:
                        k8s.process(e, got.append)
                    t2 = tc()
                    for e in got:
                        pipe.emit(e)
                    taken, _ = pipe._q.take(1024, 0)
                    for x in taken:
                        pipe._outs[0](x)
                    t3 = tc()
                    for e in got:
                        sink.submit(e)
                    t4 = tc()
                    for _ in got:  # an end of batch per event, as at 1,000 execs/s
                        sink.end_batch()
                    t5 = tc()
                    for k, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                        spent[k] += dt
                for k in STAGES:
                    best[k] = min(best[k], spent[k] / n / 1e3)
            sink.close()
    finally:
        os.unlink(path)
        stop_k8s()
    best[HANDOVER] = min(_handover(Pipeline, 2000) for _ in range(max(1, rounds // 2)))
    return best


def _handover(pipeline_cls: Any, n: int) -> float:
    """µs of CPU per event, producer and pipeline thread together, when each event arrives
    on its own (every 300 µs, as at 1,000 execs/s): the emit, the wake-up, the take, a
    one-event batch through no stage to a sink that keeps nothing."""
    from podtrail.model.event import new_event
    from podtrail.model.fields import Kind

    p = pipeline_cls([], [Null()], queue_size=1 << 20)
    evs = [new_event(Kind.PROCESS, "exit", pid=i, source="ebpf") for i in range(n)]
    spent = [0]

    def run() -> None:
        t0 = time.thread_time_ns()
        p.run()
        spent[0] = time.thread_time_ns() - t0

    import threading

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.05)
    mine = 0
    for ev in evs:
        time.sleep(0.0003)
        t0 = time.thread_time_ns()
        p.emit(ev)
        mine += time.thread_time_ns() - t0
    time.sleep(0.05)
    p._closing.set()
    t.join()
    return (mine + spent[0]) / n / 1e3


def _reference(ref: Path, argv: list[str], native: bool = True) -> dict[str, float]:
    """The same benchmark code against ``ref``'s podtrail (a folder of two links: -m puts the
    working directory first on sys.path, so PYTHONPATH alone would not do it); ``native``
    False: with PODTRAIL_NATIVE=0 (its pure-Python paths)."""
    with tempfile.TemporaryDirectory(prefix="podtrail-bench-ref-") as d:
        os.symlink(ref.resolve() / "podtrail", Path(d) / "podtrail")
        os.symlink(HERE / "bench", Path(d) / "bench")
        py = ref / ".venv/bin/python"
        env = {**os.environ, **({} if native else {"PODTRAIL_NATIVE": "0"})}
        out = subprocess.run([str(py if py.exists() else sys.executable), "-m", "bench.delivery", *argv, "--json"],
                             cwd=d, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--samples", help="a pickled list of raw ring-buffer samples to replay")
    ap.add_argument("--pods", action="store_true", help="bench/stage_profile's stream of processes in pods instead")
    ap.add_argument("--reference", type=Path, help="another checkout (main) to run the same code against")
    ap.add_argument("--native-off", action="store_true",
                    help="also this checkout with PODTRAIL_NATIVE=0 (its pure-Python paths), in the same run")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    argv = ["--rounds", str(a.rounds), "--batch", str(a.batch), *(["--samples", a.samples] if a.samples else []),
            *(["--pods"] if a.pods else [])]
    ref = _reference(a.reference, argv) if a.reference else None
    off = _reference(HERE, argv, native=False) if a.native_off else None
    this = measure(a.rounds, a.batch, a.samples, a.pods)
    if a.json:
        print(json.dumps(this))
        return
    cols = [(name, r) for name, r in (("native off", off), ("reference", ref)) if r]
    print(f"load average {os.getloadavg()[0]:.1f}; µs per event, best of {a.rounds} rounds")
    print(f"{'stage':45s} {'this':>7s}" + "".join(f" {n:>10s} {'ratio':>6s}" for n, _ in cols))
    for k in (*STAGES, HANDOVER, "total"):
        v = this[k] if k != "total" else sum(this.values())
        line = f"{k:45s} {v:7.2f}"
        for _, r in cols:
            rv = r[k] if k != "total" else sum(r.values())
            line += f" {rv:10.2f} {v / rv:6.2f}"
        print(line)


if __name__ == "__main__":
    main()
