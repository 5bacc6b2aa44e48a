"""Connect storm and open storm, with and without podtrail's socket/file sensors, in one run.

  .venv/bin/python -m bench.net_file_storm [--seconds 3] [--rounds 5] [--opens 200000]

Workloads are child processes on loopback (the agent never reports itself). "Without" and
"with" alternate round by round in the same run (the CO-RE objects stay loaded and are
detached/attached), so machine noise hits both; medians are reported. The BCC build this
replaced is measured by running the same command on a checkout from before the move.

- connect storm: TCP connect + accept + close in a loop (2 socket events per connection).
  Reported: connections/s without and with, the slowdown, socket events consumed per second
  by the real decoder (raw sample -> normalized, finalized event), and kernel losses.
  Identical events of one process within ``--repeat-window-ms`` (the agent's 1,000 ms;
  0 = every event sent) are counted in the kernel: "events" are what the samples stand for
  (the sum of their ``repeat_count``), "samples" what crossed to user space.
- open storm: open+close of files under an unwatched directory (read-only and write opens),
  the in-kernel filter drops them all. Reported: the slowdown, and samples that crossed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from podtrail.bpf.libbpf import BpfObject
from podtrail.bpf.netfile import REPEAT_WINDOW_NS, build_socket_file_sources
from podtrail.config import SensorConfig
from podtrail.model.event import finalize

ROOT = Path(__file__).resolve().parent.parent

CONNECT_STORM = r"""
import socket, sys, time
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(512)
addr = srv.getsockname(); end = time.perf_counter() + float(sys.argv[1]); n = 0
while time.perf_counter() < end:
    for _ in range(100):
        c = socket.socket(); c.connect(addr); a, _ = srv.accept(); a.close(); c.close()
    n += 100
print(n / float(sys.argv[1]))
"""

UDP_STORM = r"""
import socket, sys, time
# connect() on a UDP socket: one cheap syscall, one socket event. Paced when rate > 0.
secs, rate = float(sys.argv[1]), float(sys.argv[2])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); addr = ("127.0.0.1", 9)
t0 = time.perf_counter(); end = t0 + secs; n = 0
while time.perf_counter() < end:
    for _ in range(500):
        u.connect(addr)
    n += 500
    if rate:
        ahead = t0 + n / rate - time.perf_counter()
        if ahead > 0: time.sleep(ahead)
print(n)
"""

OPEN_STORM = r"""
import os, sys, time
d = sys.argv[1]; n = int(sys.argv[2]); paths = [os.path.join(d, "f%d" % i) for i in range(64)]
for p in paths: open(p, "w").close()
t = time.perf_counter()
for i in range(n):
    p = paths[i & 63]
    os.close(os.open(p, os.O_RDONLY))
    if i & 7 == 0: os.close(os.open(p, os.O_WRONLY))
print(time.perf_counter() - t)
"""


def _child(code: str, *args: str) -> float:
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def _set_attached(obj: BpfObject, on: bool) -> None:
    if on:
        obj.attach()
    else:
        obj.detach()


def floor_object() -> BpfObject | None:
    """bench/floor.bpf.c (empty programs on the openat tracepoints), compiled here when clang
    and the build's vmlinux.h are present; None otherwise (the floor line is then left out)."""
    src, gen = ROOT / "bench/floor.bpf.c", ROOT / "build/bpf"
    out = gen / "floor.bpf.o"
    if not (gen / "vmlinux.h").exists() or not shutil.which("clang"):
        return None
    subprocess.run(["clang", "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86", "-I", str(gen), "-c", str(src),
                    "-o", str(out)], check=True)
    obj = BpfObject(out)
    obj.load()
    return obj


class Counter:
    """The pipeline's per-event work minus sinks: finalize, count (events a sample stands for
    in ``n``, samples in ``samples``)."""

    def __init__(self) -> None:
        self.n = 0
        self.samples = 0

    def __call__(self, ev: Any) -> None:
        finalize(ev)
        self.n += ev.get("repeat_count", 1)
        self.samples += 1


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="connect storm length per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--opens", type=int, default=200_000, help="opens per open-storm round")
    ap.add_argument("--rates", type=lambda v: [float(x) for x in v.split(",")], default=[60_000.0, 100_000.0, 0.0],
                    help="UDP connect storm rates in events/s, 0 = unpaced (default 60000,100000,0)")
    ap.add_argument("--repeat-window-ms", type=float, default=REPEAT_WINDOW_NS / 1e6,
                    help="count identical socket events within this window in the kernel (0: send each)")
    a = ap.parse_args(argv)

    cfg = SensorConfig()  # shipped defaults: watched prefixes, sensitive list, loopback on
    sources = build_socket_file_sources(cfg)
    window_s = a.repeat_window_ms / 1000
    for s in sources:
        s.repeat_window_ns = int(a.repeat_window_ms * 1e6)
    t0 = time.monotonic()
    for s in sources:
        s.load()
    print(f"loaded socket.bpf.o + file.bpf.o (CO-RE, nothing compiled) in {time.monotonic() - t0:.2f} s")
    sock = next(s for s in sources if s.name == "ebpf-socket")
    files = next(s for s in sources if s.name == "ebpf-file")
    counters = {s.name: Counter() for s in sources}
    stop = threading.Event()
    threads = [threading.Thread(target=s.run, args=(counters[s.name], stop), daemon=True) for s in sources]
    for t in threads:
        t.start()
    def attach(on: bool) -> None:
        for s in sources:
            assert s.obj is not None
            _set_attached(s.obj, on)

    floor = floor_object()  # empty programs on the same tracepoints: the cost of tracing at all

    conn_ratio, conn_rate_with, conn_rate_base, ev_rates = [], [], [], []
    crossed: list[int] = []
    represented: list[int] = []
    open_ratio, open_base, floor_ratio = [], [], []
    tmp = tempfile.mkdtemp(prefix="ptnf-bench-", dir="/var/tmp")
    lost0 = {s.name: s.lost() for s in sources}
    crossed0 = files.samples
    try:
        for r in range(a.rounds):
            attach(False)
            base = _child(CONNECT_STORM, str(a.seconds))
            attach(True)
            before, t = counters[sock.name].n, time.monotonic()
            samples0 = counters[sock.name].samples
            with_ = _child(CONNECT_STORM, str(a.seconds))
            t_end = time.monotonic()
            time.sleep(0.3 + (window_s + 0.2 if window_s else 0))  # let the reader drain, the last window end
            got = counters[sock.name].n - before
            ev_rates.append(got / (t_end - t))
            crossed.append(counters[sock.name].samples - samples0)
            represented.append(got)
            conn_rate_base.append(base)
            conn_rate_with.append(with_)
            conn_ratio.append(base / with_)

            attach(False)
            ob = _child(OPEN_STORM, tmp, str(a.opens))
            of = ob
            if floor is not None:
                _set_attached(floor, True)
                of = _child(OPEN_STORM, tmp, str(a.opens))
                _set_attached(floor, False)
            attach(True)
            ow = _child(OPEN_STORM, tmp, str(a.opens))
            open_base.append(ob)
            open_ratio.append(ow / ob)
            floor_ratio.append(of / ob)
            print(f"round {r + 1}: connect {base:,.0f}/s -> {with_:,.0f}/s, {ev_rates[-1]:,.0f} socket events/s consumed;"
                  f" open storm {ob:.3f}s -> {of:.3f}s (empty programs) -> {ow:.3f}s (podtrail)")
        conn_lost = sock.lost() - lost0[sock.name]
    finally:
        subprocess.run(["rm", "-rf", tmp], check=False)
        if floor is not None:
            floor.close()
    # socket event throughput: UDP connect storms, paced at --rate and unpaced
    udp = []
    for rate in a.rates:
        for _ in range(2):
            l0, before, t = sock.lost(), counters[sock.name].n, time.monotonic()
            produced = int(_child(UDP_STORM, str(a.seconds), str(rate)))
            deadline = time.monotonic() + 10
            while counters[sock.name].n - before < produced - (sock.lost() - l0) and time.monotonic() < deadline:
                time.sleep(0.05)
            consumed = counters[sock.name].n - before
            udp.append((rate, produced / a.seconds, consumed / (time.monotonic() - t), sock.lost() - l0))
    stop.set()
    for t in threads:
        t.join(5)
    lost = {s.name: s.lost() - lost0[s.name] for s in sources}
    med = statistics.median
    n_opens = a.opens + a.opens // 8
    print()
    print(f"connect storm: {med(conn_rate_base):,.0f} conn/s without, {med(conn_rate_with):,.0f} with; "
          f"slowdown x{med(conn_ratio):.3f} ({(med(conn_ratio) - 1) * 100:+.1f} %)")
    print(f"socket events consumed during the connect storm: median {med(ev_rates):,.0f}/s, "
          f"max {max(ev_rates):,.0f}/s; lost in kernel: {conn_lost}; samples that crossed per round "
          f"{crossed} for {represented} events (repeat window {a.repeat_window_ms:g} ms)")
    print(f"open storm ({n_opens:,} opens on an unwatched path): {med(open_base):.3f} s without; "
          f"slowdown x{med(open_ratio):.3f} ({(med(open_ratio) - 1) * 100:+.1f} %) with podtrail, "
          f"x{med(floor_ratio):.3f} ({(med(floor_ratio) - 1) * 100:+.1f} %) with empty programs on the same "
          f"tracepoints; file samples that reached user space during the run (any process): "
          f"{files.samples - crossed0}; lost: {lost['ebpf-file']}")
    for rate, prod, cons, lst in udp:
        label = f"paced at {rate:,.0f}/s" if rate else "unpaced"
        print(f"UDP connect storm {label}: produced {prod:,.0f} events/s, consumed {cons:,.0f} events/s "
              f"(decoded and finalized), lost in kernel: {lst}")
    print(f"(per-round open ratios: podtrail {', '.join(f'{x:.3f}' for x in open_ratio)}; "
          f"empty {', '.join(f'{x:.3f}' for x in floor_ratio)}; load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
