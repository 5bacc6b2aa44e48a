"""End-to-end events/s into a real rsyslogd over TCP and TLS (format CEF, spool on disk),
against the same rsyslogd fed by a plain loopback TCP writer in the same run.

    .venv/bin/python -m bench.syslog_rate [--events 50000] [--set staged|flat] [--receiver imtcp|fast] [--rounds 2]

podtrail: from the first ``submit`` (queue; then batches: CEF formatting, RFC 5424 header,
octet-counting framing, disk spool with one write and fsync per batch, replay from the
spool) until rsyslog has written every message to its file. Reference ("loopback TCP"):
the same messages, already framed, written by one ``sendall`` per 1,000 to a fresh rsyslogd
with the same configuration, until it has written them all: the receiver's and the
loopback's own ceiling. Rounds alternate reference, TCP, TLS.

podtrail runs in a child process that only submits (its events are built before the clock
starts); this process starts rsyslogd, starts the clock, and counts the file's lines
(only new bytes read), so neither the waiting nor the counting is charged to podtrail.
"per CPU-s": events per CPU-second of the podtrail process (all its threads: the
submitting one, spool, sender; user + system), read when rsyslog has written the last
message: the "one core" figure, which a loaded machine distorts less than wall time.
Every round starts with cold formatter caches.

Events: "staged" (default) is the per-stage profile's stream after the real stages
(context entities attached), "flat" the plain socket events of bench.cef_rate. Receiver:
"imtcp" is the tests' configuration (imtcp, the file written at the end of each batch);
"fast" is imptcp with an action queue (reading and writing overlap; TLS always goes through
imtcp, which holds the TLS driver). Both podtrail and the reference get the same one.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trustme

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "tests"), str(Path(__file__).resolve().parents[1] / "tests" / "forwarder")]

from rsyslog import Rsyslog  # noqa: E402

from bench.cef_rate import cold  # noqa: E402
from bench.cef_rate import events as flat_events  # noqa: E402
from bench.stage_profile import enriched_events  # noqa: E402
from podtrail.outputs.syslog import SyslogConfig, SyslogSink  # noqa: E402


def make_events(kind: str, n: int) -> list[dict[str, Any]]:
    return enriched_events(n // 6 + 1)[:n] if kind == "staged" else flat_events(n)


class LineCounter:
    def __init__(self, path: Path) -> None:
        self.path, self.off, self.n = path, 0, 0

    def count(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.off)
                data = f.read()
        except OSError:
            return self.n
        self.off += len(data)
        self.n += data.count(b"\n")
        return self.n


def _wait(counter: LineCounter, n: int, t0: float) -> None:
    while counter.count() < n and time.perf_counter() - t0 < 300:
        time.sleep(0.002)


def child(a: argparse.Namespace) -> int:
    """The podtrail side: build the events, say ready, submit them all at "go", report its
    CPU time when asked, then close."""
    evs = make_events(a.set, a.events)
    extra: dict[str, Any] = {"protocol": "tls", "ca_file": a.ca} if a.ca else {}
    sink = SyslogSink(SyslogConfig(port=a.port, queue_size=len(evs) + 1, **extra), a.spool)
    cold(evs)
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = os.times()
    for e in evs:
        sink.submit(e)
    sys.stdin.readline()
    t1 = os.times()
    print(t1.user - t0.user, t1.system - t0.system, flush=True)
    sink.close()
    return 0


def run(kind: str, n: int, tls: bool, receiver: str, tree: Path) -> tuple[float, float, float]:
    """Events/s (wall), events per CPU-second of the podtrail process (the one of source
    tree ``tree``), and the kernel's (system time's) share of that CPU time."""
    d = Path(tempfile.mkdtemp(prefix="podtrail-bench-syslog-"))
    cfg_tls = None
    args = [sys.executable, "-m", "bench.syslog_rate", "--child", "--set", kind, "--events", str(n), "--spool", str(d / "spool")]
    if tls:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        ca.cert_pem.write_to_path(str(d / "ca.pem"))
        cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
        cert.private_key_pem.write_to_path(str(d / "key.pem"))
        cfg_tls = (str(d / "ca.pem"), str(d / "cert.pem"), str(d / "key.pem"))
        args += ["--ca", str(d / "ca.pem")]
    r = Rsyslog(d / "rs", tls=cfg_tls, fast=receiver == "fast")
    r.start()
    p = subprocess.Popen([*args, "--port", str(r.tcp_port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         cwd=tree)
    try:
        assert p.stdin is not None and p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
        counter = LineCounter(r.out)
        t0 = time.perf_counter()
        p.stdin.write("go\n")
        p.stdin.flush()
        _wait(counter, n, t0)
        dt = time.perf_counter() - t0
        p.stdin.write("cpu\n")
        p.stdin.flush()
        user, system = map(float, p.stdout.readline().split())
        cpu = user + system
        p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
        r.stop()
    got = counter.count()
    assert got == n, f"rsyslog wrote {got} of {n}"
    return n / dt, n / cpu, system / cpu


def _cpu_s(pid: int) -> float:
    """User + system seconds of process ``pid`` so far."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def reference(evs: list[dict[str, Any]], receiver: str) -> tuple[float, float]:
    """Plain loopback TCP into rsyslog: pre-framed messages, one sendall per 1,000. Events/s,
    and rsyslogd's CPU µs per message (what the receiver itself costs)."""
    from podtrail.formatters.cef import format_cef_many
    from podtrail.outputs.syslog import rfc5424_framed

    d = Path(tempfile.mkdtemp(prefix="podtrail-bench-syslog-ref-"))
    r = Rsyslog(d / "rs", fast=receiver == "fast")
    r.start()
    msgs = format_cef_many(evs)
    chunks = [rfc5424_framed(evs[i:i + 1000], msgs[i:i + 1000]) for i in range(0, len(evs), 1000)]
    counter = LineCounter(r.out)
    s = socket.create_connection(("127.0.0.1", r.tcp_port))
    assert r.proc is not None
    c0 = _cpu_s(r.proc.pid)
    t0 = time.perf_counter()
    for c in chunks:
        s.sendall(c)
    _wait(counter, len(evs), t0)
    dt = time.perf_counter() - t0
    cpu = _cpu_s(r.proc.pid) - c0
    s.close()
    r.stop()
    return len(evs) / dt, cpu / len(evs) * 1e6


def breakdown(evs: list[dict[str, Any]], rounds: int = 3) -> dict[str, float]:
    """µs per event of each step of the podtrail side, one after the other in this thread
    (best of ``rounds``, cold caches each): queueing (``submit``), CEF formatting, RFC 5424
    header + octet-counting framing + encode, spool append (one write + fsync per 1,024)."""
    from podtrail.formatters.cef import format_cef_many
    from podtrail.inbox import Inbox
    from podtrail.outputs.spool import Spool
    from podtrail.outputs.syslog import rfc5424_framed

    n = len(evs)
    best: dict[str, float] = {}

    def keep(name: str, dt: float) -> None:
        best[name] = min(best.get(name, float("inf")), dt / n * 1e6)

    for _ in range(rounds):
        cold(evs)
        q: Inbox[dict[str, Any]] = Inbox(n + 1)
        t0 = time.perf_counter()
        for e in evs:
            q.put_nowait(e)
        keep("queue (submit)", time.perf_counter() - t0)
        batches = [evs[i:i + 1024] for i in range(0, n, 1024)]
        t0 = time.perf_counter()
        msgs = [format_cef_many(b) for b in batches]
        keep("CEF format", time.perf_counter() - t0)
        t0 = time.perf_counter()
        framed = [rfc5424_framed(b, m) for b, m in zip(batches, msgs, strict=True)]
        keep("RFC 5424 header + framing + encode", time.perf_counter() - t0)
        sp = Spool(Path(tempfile.mkdtemp(prefix="podtrail-bench-spool-")))
        t0 = time.perf_counter()
        for b, data in zip(batches, framed, strict=True):
            sp.append_framed(data, len(b))
        keep("spool append (write + fsync per 1,024)", time.perf_counter() - t0)
        sp.close()
    return {k: round(v, 2) for k, v in best.items()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50000)
    ap.add_argument("--set", choices=("staged", "flat"), default="staged")
    ap.add_argument("--receiver", choices=("imtcp", "fast"), default="imtcp")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--before", metavar="DIR", help="also run the podtrail side from this source tree (an earlier "
                    "version with this file and tests/forwarder/rsyslog.py copied in), alternating with this one")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--spool", help=argparse.SUPPRESS)
    ap.add_argument("--ca", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a)
    from podtrail.formatters.cef import format_cef_many

    here = Path(__file__).resolve().parents[1]
    evs = make_events(a.set, a.events)
    rounds = []
    for _ in range(a.rounds):
        ref, receiver_us = reference(evs, a.receiver)
        tcp = run(a.set, a.events, False, a.receiver, here)
        tls = run(a.set, a.events, True, a.receiver, here)
        rnd = {"loopback_tcp_reference_per_s": round(ref), "rsyslogd_cpu_us_per_message": round(receiver_us, 2),
               "podtrail_tcp_events_per_s": round(tcp[0]),
               "podtrail_tcp_events_per_cpu_s": round(tcp[1]), "tcp_system_share": round(tcp[2], 2),
               "podtrail_tls_events_per_s": round(tls[0]), "podtrail_tls_events_per_cpu_s": round(tls[1]),
               "tls_system_share": round(tls[2], 2), "tcp_ratio_to_reference": round(tcp[0] / ref, 2)}
        if a.before:
            old = run(a.set, a.events, False, a.receiver, Path(a.before))
            rnd.update({"before_tcp_events_per_s": round(old[0]), "before_tcp_events_per_cpu_s": round(old[1]),
                        "before_tcp_system_share": round(old[2], 2), "tcp_per_cpu_s_ratio_to_before": round(tcp[1] / old[1], 2)})
        rounds.append(rnd)
    avg = sum(map(len, format_cef_many(evs[:2000]))) / min(2000, len(evs))
    print(json.dumps({
        "events": a.events, "set": a.set, "receiver": a.receiver, "avg_cef_chars": round(avg),
        "loadavg_1m": round(os.getloadavg()[0], 2), "rounds": rounds,
        "podtrail_steps_us_per_event": breakdown(evs)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
