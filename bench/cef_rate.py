"""CEF encoding rate: podtrail's formatter vs the `cefevent` library on the same events.

    .venv/bin/python -m bench.cef_rate [--events 20000]

cefevent accepts only ArcSight's dictionary keys, so it is given the subset of each event's
fields that have one (it does less work than podtrail, which also writes the custom keys);
both escape and build the full message. Prints events/s and the ratio.
"""

from __future__ import annotations

import argparse
import json
import time

from cefevent import CEFEvent

from podtrail.formatters.cef import format_cef
from podtrail.formatters.common import render
from podtrail.model.event import finalize, new_event
from podtrail.model.fields import FIELDS_LIST, Kind


def events(n: int) -> list[dict]:
    return [finalize(new_event(
        Kind.SOCKET, "connect", pid=1000 + i, ppid=1, uid=0, comm="curl", path="/usr/bin/curl",
        cmdline=f"curl -s http://10.0.{i % 250}.1/x=y|z", local_address="10.1.0.5", local_port=40000 + i % 20000,
        remote_address=f"10.0.{i % 250}.1", remote_port=443, direction="outbound", transport="tcp", family=2, protocol=6,
        result=0, container_id="a" * 64, pod_name=f"web-{i % 250}", namespace="shop", image="reg/web:1",
        workload_name="web", cluster_name="prod", source="ebpf")) for i in range(n)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20000)
    a = ap.parse_args()
    evs = events(a.events)
    probe = CEFEvent()
    plan = []
    for f in FIELDS_LIST:
        if not f.cef:
            continue
        try:
            probe.set_field(f.cef, "1")
            plan.append((f.name, f.cef, f.type, f"{f.cef}Label" if f.cef_label else None, f.cef_label))
        except Exception:  # noqa: BLE001 - not in cefevent's dictionary
            continue

    t0 = time.perf_counter()
    ours = [format_cef(e) for e in evs]
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    theirs = []
    for e in evs:
        c = CEFEvent()
        c.set_field("deviceVendor", "podtrail")
        c.set_field("deviceProduct", "podtrail")
        c.set_field("name", f"{e['event_type']}:{e['action']}")
        c.set_field("severity", e["severity"])
        for name, key, ftype, label_key, label in plan:
            v = e.get(name)
            if v is None or v == "":
                continue
            c.set_field(key, render(v, ftype))
            if label_key:
                c.set_field(label_key, label)
        theirs.append(c.build_cef())
    t_theirs = time.perf_counter() - t0
    res = {"events": a.events, "podtrail_events_per_s": a.events / t_ours, "cefevent_events_per_s": a.events / t_theirs,
           "ratio": t_theirs / t_ours, "cefevent_keys": len(plan),
           "avg_len_podtrail": sum(map(len, ours)) / len(ours), "avg_len_cefevent": sum(map(len, theirs)) / len(theirs)}
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
