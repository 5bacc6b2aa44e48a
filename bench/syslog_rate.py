"""End-to-end events/s into a real rsyslogd over TCP and TLS (format CEF, spool on disk),
against the same rsyslogd fed by a plain loopback TCP writer in the same run.

    .venv/bin/python -m bench.syslog_rate [--events 50000] [--set staged|flat]

podtrail: from the first ``submit`` (CEF formatting, RFC 5424 header, queue, disk spool with
fsync per batch, replay from the spool, octet-counting framing) until rsyslog has written
every message to its file. Reference ("loopback TCP"): the same messages, already framed,
written by one ``sendall`` per 1,000 to a fresh rsyslogd, until it has written them all: the
receiver's and the loopback's own ceiling. Also events per CPU-second of the podtrail
process (all its threads: formatting, spool, sender), the "one core" figure, which a loaded
machine distorts less than wall time. Every run starts with cold formatter caches. The file is counted incrementally (only new bytes
read), so waiting costs the measured process next to nothing. Events: "staged" (default) is
the per-stage profile's stream after the real stages (context entities attached), "flat" the
plain socket events of bench.cef_rate.
"""

from __future__ import annotations

import argparse
import json
import socket
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
from podtrail.formatters.cef import format_cef  # noqa: E402
from podtrail.outputs.syslog import SyslogConfig, SyslogSink, rfc5424  # noqa: E402


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
        time.sleep(0.01)


def run(evs: list[dict[str, Any]], tls: bool) -> tuple[float, float]:
    n = len(evs)
    d = Path(tempfile.mkdtemp(prefix="podtrail-bench-syslog-"))
    cfg_tls = None
    extra: dict = {}
    if tls:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        ca.cert_pem.write_to_path(str(d / "ca.pem"))
        cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
        cert.private_key_pem.write_to_path(str(d / "key.pem"))
        cfg_tls = (str(d / "ca.pem"), str(d / "cert.pem"), str(d / "key.pem"))
        extra = {"protocol": "tls", "ca_file": str(d / "ca.pem")}
    r = Rsyslog(d / "rs", tls=cfg_tls)
    r.start()
    sink = SyslogSink(SyslogConfig(port=r.tcp_port, queue_size=n + 1, **extra), str(d / "spool"))
    counter = LineCounter(r.out)
    cold(evs)
    c0 = time.process_time()
    t0 = time.perf_counter()
    for e in evs:
        sink.submit(e)
    _wait(counter, n, t0)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    got = counter.count()
    sink.close()
    r.stop()
    assert got == n, f"rsyslog wrote {got} of {n}"
    return n / dt, n / cpu


def reference(evs: list[dict[str, Any]]) -> float:
    """Plain loopback TCP into rsyslog: pre-framed messages, one sendall per 1,000."""
    d = Path(tempfile.mkdtemp(prefix="podtrail-bench-syslog-ref-"))
    r = Rsyslog(d / "rs")
    r.start()
    framed = []
    for e in evs:
        m = rfc5424(format_cef(e), ts_ns=e.get("time_ns"))
        framed.append(b"%d %s" % (len(m), m))
    chunks = [b"".join(framed[i:i + 1000]) for i in range(0, len(framed), 1000)]
    counter = LineCounter(r.out)
    s = socket.create_connection(("127.0.0.1", r.tcp_port))
    t0 = time.perf_counter()
    for c in chunks:
        s.sendall(c)
    _wait(counter, len(evs), t0)
    dt = time.perf_counter() - t0
    s.close()
    r.stop()
    return len(evs) / dt


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50000)
    ap.add_argument("--set", choices=("staged", "flat"), default="staged")
    a = ap.parse_args()
    evs = enriched_events(a.events // 6 + 1)[: a.events] if a.set == "staged" else flat_events(a.events)
    ref = reference(evs)
    tcp, tcp_cpu = run(evs, False)
    tls, tls_cpu = run(evs, True)
    avg = sum(len(format_cef(e)) for e in evs[:2000]) / min(2000, len(evs))
    print(json.dumps({"events": a.events, "set": a.set, "avg_cef_chars": round(avg), "loopback_tcp_reference_per_s": round(ref),
                      "podtrail_tcp_events_per_s": round(tcp), "podtrail_tls_events_per_s": round(tls),
                      "podtrail_tcp_events_per_cpu_s": round(tcp_cpu), "podtrail_tls_events_per_cpu_s": round(tls_cpu),
                      "tcp_ratio_to_reference": round(tcp / ref, 2)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
