"""Per-stage cost of the hot path: µs per event for decode, process table, container, k8s,
detect (the shipped Sigma rules), finalize and each output, on one realistic stream.

    .venv/bin/python -m bench.stage_profile [--cycles 20000] [--rounds 3]

The stream is what a busy node sends: a shell in a Kubernetes pod forks and execs a child
(``curl`` with a long command line) that makes two connections, opens a file and exits, so six
events per cycle (fork, exec, connect, connect, open, exit) across 250 pods. Process samples
go through the real eBPF decoder (raw ring-buffer bytes), every event through the real stages
in the agent's order (process table seeded with a 4-deep ancestry whose entrypoint is a JVM
with a command line longer than an ancestor keeps, cgroup index, pod cache, the Sigma stage),
``finalize`` (the pipeline's delivery does it again after the detect stage), the events
counter, then each output's own per-event work: the JSON line, ECS, CEF and LEEF
formatters, the syslog message (CEF with its RFC 5424 header), the webhook body and the osquery
event buffers. Stage by stage over the whole stream, best of ``--rounds``, in CPU time of the
measuring thread (``thread_time``: a busy machine inflates it far less than wall time); pids
are above pid_max, so no /proc read finds anything (the real stages still try where they
would); execs carry the agent's own mount namespace, as the kernel reports one, so user names
come from the per-namespace cache as in the agent.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import tempfile
import time
import types
import uuid
from collections.abc import Callable
from typing import Any

from bench.process_samples import exec_sample, header_sample
from podtrail import metrics
from podtrail.bpf.process import EV_EXEC, EV_EXIT, EV_FORK, ExecFixed, ProcessDecoder
from podtrail.config import DetectionConfig
from podtrail.detect.stage import build_detect_stage
from podtrail.enrich.cgroup_index import CgroupIndex
from podtrail.enrich.container import ContainerStage
from podtrail.enrich.k8s.cache import PodCache
from podtrail.enrich.k8s.convert import pod_from_api
from podtrail.enrich.k8s.stage import K8sStage
from podtrail.formatters.cef import format_cef
from podtrail.formatters.ecs_json import format_ecs
from podtrail.formatters.leef import format_leef
from podtrail.model.event import finalize, new_event
from podtrail.model.fields import Kind
from podtrail.outputs.stdout import to_json_line
from podtrail.outputs.syslog import SyslogSink
from podtrail.procs.stage import ProcessStage
from podtrail.procs.table import Proc, ProcessTable
from podtrail.tables.buffer import EventBuffers

PODS = 250
_JAVA = ("java -Xms512m -Xmx2g -XX:+UseG1GC -Dspring.profiles.active=prod -cp "
         + ":".join(f"/app/lib/dependency-{k}-1.2.{k}.jar" for k in range(24)) + " com.example.shop.Application")
BASE_PID = 100_000  # above pid_max (32768 here): /proc never answers for these


MNT_NS = os.stat("/proc/self/ns/mnt").st_ino  # a namespace whose passwd the user-name cache can read


def _raw(kind: int, pid: int, ppid: int, cgid: int, ktime: int, path: str = "", argv: list[str] | None = None) -> bytes:
    if kind == EV_EXEC:
        raw = bytearray(exec_sample(path, "/app", path, argv or [], pid=pid, ppid=ppid, cgroup_id=cgid, ktime=ktime,
                                    uid=1000, comm=b"curl"))
        struct.pack_into("<I", raw, ExecFixed.mnt_ns.offset, MNT_NS)  # as the kernel fills it in
        return bytes(raw)
    return header_sample(kind, pid, ppid, cgid, ktime, uid=1000, comm=b"curl" if kind != EV_FORK else b"sh")


class World:
    """Pods, their cgroups and a seeded process table: one shell per pod under shim and runc init."""

    def __init__(self) -> None:
        self.cache = PodCache()
        self.index = CgroupIndex(root=tempfile.mkdtemp(prefix="podtrail-prof-cg-"))
        self.table = ProcessTable()
        init = Proc(1, 1, None, 0, "/lib/systemd/systemd", "/lib/systemd/systemd --system --deserialize 18", "systemd")
        self.table.by_pid[1] = init
        self.pods: list[tuple[int, int]] = []  # (shell pid, cgroup id)
        for i in range(PODS):
            uid = str(uuid.UUID(int=i + 1))
            cid = f"{i:064x}"
            api = {"metadata": {"name": f"web-{i}-7d9f", "namespace": f"ns{i % 20}", "uid": uid,
                                "labels": {"app": f"web{i}", "team": "shop"},
                                "ownerReferences": [{"kind": "ReplicaSet", "name": f"web-{i}-7d9f", "controller": True}]},
                   "spec": {"nodeName": "node-1", "serviceAccountName": "web",
                            "containers": [{"name": "app", "image": f"registry.example/shop/web{i}:1.4.2"}]},
                   "status": {"podIP": f"10.1.{i // 250}.{i % 250}", "containerStatuses": [
                       {"name": "app", "containerID": f"containerd://{cid}", "imageID": "registry.example/shop/web@sha256:" + "ab" * 32}]}}
            self.cache.upsert(pod_from_api(api))
            cgid = 10_000 + i
            self.index.learn(cgid, f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid.replace('-', '_')}.slice/"
                                   f"cri-containerd-{cid}.scope")
            base = BASE_PID + 10 * i
            shim = Proc(base, 2, init, 1, "/usr/bin/containerd-shim-runc-v2",
                        f"/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id {cid} -address /run/containerd/containerd.sock", "containerd-shim")
            pinit = Proc(base + 1, 3, shim, base, "/usr/bin/java", _JAVA, "java", "/", 1000, cgid)
            sh = Proc(base + 2, 4, pinit, base + 1, "/bin/sh", "/bin/sh -c while true; do curl -s https://api.example/health; sleep 1; done", "sh", "/app", 1000, cgid)
            for p in (shim, pinit, sh):
                p.extra["user"], p.extra["uid"] = "app", 1000
                self.table.by_pid[p.pid] = p
            self.pods.append((sh.pid, cgid))


def cycle(world: World, c: int) -> list[tuple[str, Any]]:
    """Cycle ``c``: ("raw", bytes) for process samples, ("ev", fields) for socket/file events."""
    sh, cgid = world.pods[c % PODS]
    pid = BASE_PID + 10 * PODS + 100 + c
    t = 1_000_000_000 + 50_000 * (c + 1)
    argv = ["curl", "-s", "-H", "Authorization: Bearer $TOKEN", f"https://api.example/v1/items/{c}?expand=owner,tags"]
    out: list[tuple[str, Any]] = [("raw", _raw(EV_FORK, pid, sh, cgid, t)), ("raw", _raw(EV_EXEC, pid, sh, cgid, t + 1000, "/usr/bin/curl", argv))]
    for k in range(2):
        out.append(("ev", dict(kind=Kind.SOCKET, action="connect", source="ebpf", pid=pid, tid=pid, uid=1000, gid=1000,
                               comm="curl", cgroup_id=cgid, mono_ns=t + 2000 + k, family=2, protocol=6, transport="tcp",
                               direction="outbound", local_address="10.1.0.7", local_port=40000 + (c + k) % 20000,
                               remote_address=f"10.96.0.{(c + k) % 250}", remote_port=443, result=0, fd=3 + k)))
    out.append(("ev", dict(kind=Kind.FILE, action="open", source="ebpf", pid=pid, tid=pid, uid=1000, gid=1000, comm="curl",
                           cgroup_id=cgid, mono_ns=t + 3000, target_path="/tmp/curl-cache/items.json", flags=0o101, result=3, fd=5)))
    out.append(("raw", _raw(EV_EXIT, pid, sh, cgid, t + 4000)))
    return out


def stream(world: World, cycles: int) -> list[tuple[str, Any]]:
    return [item for c in range(cycles) for item in cycle(world, c)]


def enriched_events(cycles: int) -> list[Any]:
    """The stream after decode, the stages and finalize (what every output receives)."""
    w = World()
    evs = decode_items(ProcessDecoder(), stream(w, cycles))
    evs = through([ProcessStage(w.table), ContainerStage(w.index),
                   K8sStage(w.cache, None, cluster_name="prod-eu-1", node_name="node-1", labels=["app"]), _detect()], evs)
    return [finalize(ev) for ev in evs]


def through(stages: list[Any], evs: list[Any]) -> list[Any]:
    """Events through the stages in order, each ticked at the end to let go what it held."""
    for st in stages:
        out: list[Any] = []
        for ev in evs:
            st.process(ev, out.append)
        st.tick(float("inf"), out.append)
        evs = out
    return evs


def _detect() -> Any:
    """The detection stage as the agent builds it by default (shipped rules), compiled."""
    st = build_detect_stage(DetectionConfig())
    assert st is not None
    for d in st.detectors:
        _ = d.engine  # type: ignore[attr-defined]  # wait for the background compile
    return st


def decode_items(dec: ProcessDecoder, items: list[tuple[str, Any]]) -> list[Any]:
    """The stream's items as events: raw samples through the real decoder, the rest built."""
    evs = []
    for k, v in items:
        if k == "raw":
            evs.append(dec.decode(v))
        else:
            d = dict(v)
            evs.append(new_event(d.pop("kind"), d.pop("action"), **d))
    return evs


def _best(rounds: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, res = float("inf"), None
    for _ in range(rounds):
        t0 = time.thread_time()
        res = fn()
        best = min(best, time.thread_time() - t0)
    return best, res


def profile(cycles: int, rounds: int) -> dict[str, Any]:
    world = World()
    items = stream(world, cycles)
    n = len(items)
    us: dict[str, float] = {}

    dec = ProcessDecoder()

    def decode() -> list[Any]:
        return decode_items(dec, items)

    dt, _ = _best(rounds, decode)
    us["decode"] = dt / n * 1e6

    # Enrichment mutates events: each round starts again from freshly decoded ones and a fresh table.
    def stage_round(stop_after: int) -> tuple[dict[str, float], list[Any]]:
        w = World()
        evs = decode()
        stages: list[tuple[str, Any]] = [
            ("process table", ProcessStage(w.table)),
            ("container", ContainerStage(w.index)),
            ("k8s", K8sStage(w.cache, None, cluster_name="prod-eu-1", node_name="node-1", labels=["app"])),
            ("detect", detect),
        ]
        times: dict[str, float] = {}
        for name, st in stages:
            out: list[Any] = []
            push = out.append
            t0 = time.thread_time()
            for ev in evs:
                st.process(ev, push)
            st.tick(float("inf"), push)
            times[name] = time.thread_time() - t0
            evs = out
        t0 = time.thread_time()
        for ev in evs:
            finalize(ev)
        times["finalize"] = time.thread_time() - t0
        t0 = time.thread_time()
        for ev in evs:
            metrics.event_out(ev)
        times["events counter"] = time.thread_time() - t0
        return times, evs

    detect = _detect()
    best: dict[str, float] = {}
    evs: list[Any] = []
    for _ in range(rounds):
        times, evs = stage_round(3)
        for k, v in times.items():
            best[k] = min(best.get(k, float("inf")), v)
    for k, v in best.items():
        us[k] = v / n * 1e6
    alerts = sum(1 for ev in evs if ev.get("event_type") == "alert")
    assert len(evs) - alerts == n, (len(evs), alerts, n)
    evs = [ev for ev in evs if ev.get("event_type") != "alert"]

    syslog = types.SimpleNamespace(cfg=types.SimpleNamespace(header="rfc5424"), _fmt=format_cef)
    outputs: dict[str, Callable[[Any], Any]] = {
        "out: json line (stdout, webhook json)": to_json_line,
        "out: ECS JSON (stdout ecs, webhook ecs)": format_ecs,
        "out: CEF": format_cef,
        "out: LEEF 2.0": format_leef,
        "out: syslog message (CEF + RFC 5424)": lambda ev: SyslogSink.message(syslog, ev),  # type: ignore[arg-type]
    }
    for name, fn in outputs.items():
        dt, _ = _best(rounds, lambda fn=fn: [fn(ev) for ev in evs])  # type: ignore[misc]
        us[name] = dt / n * 1e6

    def buffers() -> EventBuffers:
        b = EventBuffers(events_max=10 * n)
        for i in range(0, len(evs), 64):  # the pipeline's batches: compaction at their end counts too
            for ev in evs[i:i + 64]:
                b.submit(ev)
            b.end_batch()
        return b

    dt, _ = _best(rounds, buffers)
    us["out: osquery event buffers (submit)"] = dt / n * 1e6
    stages_total = sum(us[k] for k in ("decode", "process table", "container", "k8s", "detect", "finalize",
                                       "events counter"))
    return {"events": n, "cycles": cycles, "us_per_event": {k: round(v, 2) for k, v in us.items()},
            "alerts": alerts, "decode+stages+finalize_us": round(stages_total, 2),
            "with json+cef+buffers_us": round(stages_total + us["out: json line (stdout, webhook json)"]
                                               + us["out: syslog message (CEF + RFC 5424)"] + us["out: osquery event buffers (submit)"], 2)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    print(json.dumps(profile(a.cycles, a.rounds), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
