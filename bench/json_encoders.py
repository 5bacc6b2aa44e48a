"""JSON encoders for the JSON outputs: stdlib json vs orjson vs msgspec on enriched events.

    .venv/bin/python -m bench.json_encoders [--cycles 3000] [--rounds 7]

The events are the per-stage profile's stream after the real stages (flat, with ancestry and
pod context). Rounds alternate between the encoders so load on a shared machine hits all
alike; best round per encoder, µs per event, and the ratio to stdlib ``json.dumps`` as the
JSON-lines output used it (``ensure_ascii``, compact separators).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from bench.stage_profile import enriched_events


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    evs = [dict(e) for e in enriched_events(a.cycles)]
    enc = msgspec.json.Encoder(enc_hook=str)
    cands: dict[str, Callable[[Any], Any]] = {
        "stdlib json": lambda e: json.dumps(e, ensure_ascii=True, separators=(",", ":"), default=str),
        "orjson": lambda e: orjson.dumps(e, default=str),
        "msgspec": enc.encode,
    }
    best = dict.fromkeys(cands, float("inf"))
    for _ in range(a.rounds):
        for name, fn in cands.items():
            t0 = time.perf_counter()
            for e in evs:
                fn(e)
            best[name] = min(best[name], time.perf_counter() - t0)
    base = best["stdlib json"]
    print(json.dumps({"events": len(evs), "us_per_event": {k: round(v / len(evs) * 1e6, 2) for k, v in best.items()},
                      "speedup_vs_stdlib": {k: round(base / v, 2) for k, v in best.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
