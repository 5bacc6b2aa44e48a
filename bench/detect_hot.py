"""The detection stage's cost per event on the hot path: the generated rule functions with their
anchor masks in C (``podtrail.detect._multimatch``), the same with the masks in Python (as with
``PODTRAIL_NATIVE=0``), the interpreted engine (the closures and index the agent used before), and
the generated functions of another checkout (``--reference``, default ``/work/main`` when it
exists; measured by a child process importing that tree), same events, one run.

    .venv/bin/python -m bench detect_hot [--execs 10000] [--cycles 5000] [--rounds 5] [--samples FILE]
                                         [--reference DIR | --no-reference]

Streams, each through ``DetectStage.process`` with the shipped rules (finalize included, as in
the agent; the downstream ``out`` is a list append):
- ``busybox true, host``: exec and exit events of a short-lived ``busybox true`` run from the
  host namespace, as the process sensor decodes them (the real agent benchmark at 1,000
  execs/s); ``--samples`` replays a pickled list of raw ring-buffer samples instead;
- ``busybox true, in a pod``: the same events with the container and pod fields a pod's
  process carries (no rule matches them either, but nothing lets them skip the rules);
- ``stage_profile``: ``bench.stage_profile``'s stream as it reaches the detect stage (fork,
  exec of curl, two outbound connections, a file open and the exit, in 250 pods), per kind:
  every connection matches the building blocks of three correlations.

CPU time of the measuring thread (thread_time), best of ``--rounds``, µs per event; each round
starts from fresh engines (empty memos: every command line is new in stage_profile) and fresh
copies of the events. Prints JSON with each side's ratio to the C side; the alert counts of all
sides must be equal.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.process_samples import exec_sample, header_sample
from podtrail.bpf.process import EV_EXIT, FD_KINDS, ExecFixed, ProcessDecoder
from podtrail.detect.engine import Engine
from podtrail.detect.ruleset import load_paths
from podtrail.detect.stage import DetectStage, SigmaDetector

POD = {"container_id": "4f" * 32, "container_runtime": "containerd", "pod_uid": "00000000-0000-4000-8000-000000000001",
       "pod_name": "web-0", "namespace": "shop", "container_name": "app", "image": "registry.example/shop/web:1.4.2"}


def busybox_samples(execs: int) -> list[bytes]:
    """What the process sensor reads for ``busybox true`` run from a shell: exec (fork folded in), exit."""
    out = []
    for i in range(execs):
        pid, t = 200_000 + i, 1_000_000_000 + 1_000_000 * i
        raw = bytearray(exec_sample("/bin/busybox", "/root", "/usr/bin/busybox", ["/bin/busybox", "true", "paced-pt"],
                                    pid=pid, ppid=4242, cgroup_id=1, ktime=t, comm=b"busybox"))
        # as the real run's samples: stdin /dev/null, stdout and stderr pipes, no terminal
        raw[ExecFixed.fd_kind.offset:ExecFixed.fd_kind.offset + 3] = bytes(FD_KINDS.index(k) for k in ("null", "pipe", "pipe"))
        raw[ExecFixed.tty.offset:ExecFixed.tty.offset + ExecFixed.tty.size] = bytes(ExecFixed.tty.size)
        out.append(bytes(raw))
        out.append(header_sample(EV_EXIT, pid, 4242, 1, t + 500_000, comm=b"busybox"))
    return out


def decode(samples: list[bytes]) -> list[Any]:
    dec = ProcessDecoder()
    return [ev for ev in map(dec.decode, samples) if ev is not None]


def stage_profile_events(cycles: int) -> list[Any]:
    from bench.stage_profile import World, decode_items, stream, through
    from podtrail.enrich.container import ContainerStage
    from podtrail.enrich.k8s.stage import K8sStage
    from podtrail.procs.stage import ProcessStage

    w = World()
    evs = decode_items(ProcessDecoder(), stream(w, cycles))
    return through([ProcessStage(w.table), ContainerStage(w.index),
                    K8sStage(w.cache, None, cluster_name="prod-eu-1", node_name="node-1", labels=["app"])], evs)


def per_event(make: Callable[[], DetectStage], events: list[Any], rounds: int) -> tuple[float, int]:
    """Best-of-rounds µs per event, and the alerts of the last round."""
    best, alerts = float("inf"), 0
    for _ in range(rounds):
        stage = make()
        evs = [copy.copy(ev) for ev in events]
        out: list[Any] = []
        push = out.append
        t0 = time.thread_time_ns()
        for ev in evs:
            stage.process(ev, push)
        dt = time.thread_time_ns() - t0
        best = min(best, dt / len(evs) / 1000)
        alerts = len(out) - len(evs)
    return best, alerts


def reference_run(checkout: str, argv: list[str]) -> dict[str, Any]:
    """``generated`` µs and alerts per stream of the checkout's own code (a child process with that
    tree first on its path)."""
    env = {**os.environ, "PYTHONPATH": str(Path(checkout).resolve())}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv, "--child"], env=env, cwd=checkout,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--execs", type=int, default=10000)
    ap.add_argument("--cycles", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--samples", help="a pickled list of raw process ring-buffer samples to replay")
    ap.add_argument("--reference", default="/work/main" if Path("/work/main/podtrail").is_dir() else None,
                    help="another checkout whose generated functions run on the same streams")
    ap.add_argument("--no-reference", dest="reference", action="store_const", const=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    rules = load_paths([])
    if a.samples:
        with open(a.samples, "rb") as f:
            host = decode(pickle.load(f))  # noqa: S301 - a file of our own samples, named on the command line
    else:
        host = decode(busybox_samples(a.execs))
    pod = [copy.copy(ev) for ev in host]
    for ev in pod:
        ev.update(POD)
    sp = stage_profile_events(a.cycles)
    streams: dict[str, list[Any]] = {"busybox true, host": host, "busybox true, in a pod": pod, "stage_profile": sp}
    for kind in ("fork", "exec", "connect", "open", "exit"):
        streams[f"stage_profile {kind}"] = [ev for ev in sp if ev.get("action") == kind]
    if a.child:  # the reference checkout's generated functions, whatever their mask
        print(json.dumps({name: per_event(lambda: DetectStage([SigmaDetector(Engine(rules))]), evs, a.rounds)
                          for name, evs in streams.items()}))
        return 0
    from podtrail.detect.codegen import accelerator

    if accelerator() is None:
        raise SystemExit("podtrail.detect._multimatch is not built (or PODTRAIL_NATIVE=0): run `make native`")
    engines = {"c": lambda: Engine(rules), "python": lambda: Engine(rules, native=False),
               "interpreted": lambda: Engine(rules, compiled=False)}
    res: dict[str, Any] = {"load_avg_1m": os.getloadavg()[0], "rules": rules.usable, "reference": a.reference,
                           "streams": {}}
    argv = [f"--execs={a.execs}", f"--cycles={a.cycles}", f"--rounds={a.rounds}"] + (
        [f"--samples={Path(a.samples).resolve()}"] if a.samples else [])
    ref = reference_run(a.reference, argv) if a.reference else {}
    for name, evs in streams.items():
        row: dict[str, Any] = {"events": len(evs)}
        for label, build in engines.items():
            us, alerts = per_event(lambda build=build: DetectStage([SigmaDetector(build())]), evs, a.rounds)  # type: ignore[misc]
            row[f"{label}_us"] = round(us, 2)
            row[f"{label}_alerts"] = alerts
        if name in ref:
            row["reference_us"], row["reference_alerts"] = round(ref[name][0], 2), ref[name][1]
        labels = [k[:-3] for k in row if k.endswith("_us")]
        assert len({row[f"{k}_alerts"] for k in labels}) == 1, (name, row)
        for k in labels:
            if k != "c":
                row[f"{k}_over_c"] = round(row[f"{k}_us"] / row["c_us"], 2)
        res["streams"][name] = row
    res["load_avg_1m_end"] = os.getloadavg()[0]
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
