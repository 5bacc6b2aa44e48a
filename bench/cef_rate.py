"""CEF encoding rate: podtrail's formatter vs the `cefevent` library on the same events.

    .venv/bin/python -m bench.cef_rate [--events 20000] [--rounds 5]

Two event sets: "flat", socket events built directly as plain field dicts (no context
entities: every field rendered per event, the formatter's worst case), and "staged", the
per-stage profile's stream after the real stages (process, container and pod context as
shared entities, whose CEF text is rendered once per entity version). Rounds alternate
between podtrail and cefevent; best round each; every round starts cold (no cached value
texts, no entity fragments), so repetition counts only within one pass over the stream. cefevent accepts only ArcSight's dictionary keys, so it is given the subset of each event's
fields that have one (it does less work than podtrail, which also writes the custom keys);
both escape and build the full message. Prints events/s and the ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from cefevent import CEFEvent

from bench.stage_profile import enriched_events
from podtrail.formatters.cef import clear_caches, format_cef_many
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


def cefevent_plan() -> list[tuple[str, str, Any, str | None, str | None]]:
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
    return plan


def with_cefevent(evs: list[dict], plan: list[tuple[str, str, Any, str | None, str | None]]) -> list[str]:
    out = []
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
        out.append(c.build_cef())
    return out


def cold(evs: list[dict]) -> None:
    """Every round starts as the first did: no cached value texts, no entity fragments."""
    clear_caches()
    for e in evs:
        for ent in getattr(e, "ctx", ()):
            ent.memo = None


def compare(evs: list[dict], rounds: int, plan: list[tuple[str, str, Any, str | None, str | None]]) -> dict[str, Any]:
    t_ours = t_theirs = float("inf")
    ours: list[str] = []
    theirs: list[str] = []
    for _ in range(rounds):
        cold(evs)
        t0 = time.perf_counter()
        ours = format_cef_many(evs)  # as the outputs call it: one batch at a time
        t_ours = min(t_ours, time.perf_counter() - t0)
        t0 = time.perf_counter()
        theirs = with_cefevent(evs, plan)
        t_theirs = min(t_theirs, time.perf_counter() - t0)
    n = len(evs)
    return {"events": n, "podtrail_events_per_s": round(n / t_ours), "cefevent_events_per_s": round(n / t_theirs),
            "ratio": round(t_theirs / t_ours, 2), "avg_len_podtrail": round(sum(map(len, ours)) / n),
            "avg_len_cefevent": round(sum(map(len, theirs)) / n)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    plan = cefevent_plan()
    staged = enriched_events(a.events // 6 + 1)[: a.events]
    res = {"cefevent_keys": len(plan), "flat": compare(events(a.events), a.rounds, plan),
           "staged": compare(staged, a.rounds, plan)}
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
