"""End-to-end events/s into a real rsyslogd over TCP and TLS (format CEF, spool on disk).

    .venv/bin/python -m bench.syslog_rate [--events 50000]

Counts from the first submit until rsyslog has written every message to its file.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import trustme

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "tests"), str(Path(__file__).resolve().parents[1] / "tests" / "forwarder")]

from rsyslog import Rsyslog  # noqa: E402

from bench.cef_rate import events  # noqa: E402
from podtrail.outputs.syslog import SyslogConfig, SyslogSink  # noqa: E402


def run(n: int, tls: bool) -> float:
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
    evs = events(n)
    sink = SyslogSink(SyslogConfig(port=r.tcp_port, queue_size=n + 1, **extra), str(d / "spool"))
    t0 = time.perf_counter()
    for e in evs:
        sink.submit(e)
    sink.flush(300)
    while len(r.lines()) < n and time.perf_counter() - t0 < 300:
        time.sleep(0.02)
    dt = time.perf_counter() - t0
    sink.close()
    r.stop()
    return n / dt


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50000)
    a = ap.parse_args()
    print(json.dumps({"events": a.events, "tcp_events_per_s": run(a.events, False), "tls_events_per_s": run(a.events, True)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
