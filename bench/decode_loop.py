"""The process decoder in a tight loop over real ring-buffer samples: µs of thread CPU per exec
and per exit sample, this checkout against a reference checkout, alternating in one run. In
this checkout the Python decoder (``python``, PODTRAIL_NATIVE=0's path), the C decoder
(``c``: podtrail/bpf/_process.c) and the C ring callback with it (``c_callback``: what libbpf
calls per sample, podtrail/bpf/_ring.c, fed the sample and collecting the event) are timed on
the same samples, and the C events are checked equal to the Python ones first.

    .venv/bin/python -m bench decode_loop --samples /work/wt/prof/samples.pkl --reference /work/main [--rounds 5]

``--samples`` is a pickled list of raw samples (bytes) as the process object's ring buffer
carried them; without it, ``--execs`` posix_spawns of ``/bin/busybox true`` are recorded from
the real process object first (needs CAP_BPF). Each checkout decodes the same samples in its own
interpreter (its own ``podtrail``), best of ``--rounds``, timed with ``time.thread_time_ns``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import gc, json, pickle, struct, sys, time
from podtrail.bpf.process import ProcessDecoder
samples = pickle.load(open(sys.argv[1], "rb"))
rounds = int(sys.argv[2])
by = {1: [], 3: []}
for raw in samples:
    t = struct.unpack_from("<I", raw, 24)[0]
    if t in by:
        by[t].append(raw)
d = ProcessDecoder()
c = getattr(d, "native", None)
ways = {"python": d.decode}
if c is not None:
    from podtrail.bpf import _ring
    batch = _ring.Batch(c, 1 << 30)
    feed = _ring.feed
    ways["c"] = c.decode
    ways["c_callback"] = lambda raw: feed(batch, raw)
    same = differ = 0
    for raw in samples:
        a, b = d.decode(raw), c.decode(raw)
        if b is raw:
            continue
        if [(k, type(v), v) for k, v in a.items() if k != "event_id"] == [(k, type(v), v) for k, v in b.items() if k != "event_id"]:
            same += 1
        else:
            differ += 1
    assert differ == 0, "the C decoder disagrees with the Python decoder"
out = {}
if c is not None:
    out["c_equal_to_python"] = same
gc.disable()
for way, dec in ways.items():
    for t, name in ((1, "exec"), (3, "exit")):
        xs = by[t]
        best = float("inf")
        for _ in range(rounds):
            t0 = time.thread_time_ns()
            for raw in xs:
                dec(raw)
            best = min(best, time.thread_time_ns() - t0)
            if c is not None:
                batch.take()
        out[f"{way}_{name}_us"] = best / max(len(xs), 1) / 1e3
        out[name + "_n"] = len(xs)
print(json.dumps(out))
"""


def record(execs: int, path: Path) -> None:
    """Real samples from the process object while ``execs`` spawns of busybox true run."""

    from bench.ringbuf_read import fill
    from podtrail.bpf.libbpf import RingBuffer
    from podtrail.bpf.process import build_process_source
    from podtrail.config import SensorConfig

    src = build_process_source(SensorConfig(ringbuf_pages=16384))
    src.load()
    assert src.obj is not None
    try:
        fill(execs)
        got: list[bytes] = []
        rb = RingBuffer(src.obj.map("events"), got.append)
        rb.consume()
        rb.close()
    finally:
        src.close()
    path.write_bytes(pickle.dumps(got))


def run(checkout: Path, samples: Path, rounds: int) -> dict[str, float]:
    py = checkout / ".venv/bin/python"
    r = subprocess.run([str(py if py.exists() else sys.executable), "-c", CHILD, str(samples), str(rounds)],
                       cwd=str(checkout), env={**os.environ, "PYTHONPATH": str(checkout)},
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=Path)
    ap.add_argument("--execs", type=int, default=3000)
    ap.add_argument("--reference", type=Path, default=Path("/work/main"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--alternations", type=int, default=3)
    a = ap.parse_args()
    here = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="podtrail-decode-") as d:
        samples = a.samples
        if samples is None:
            samples = Path(d) / "samples.pkl"
            record(a.execs, samples)
        res: dict[str, list[dict[str, float]]] = {"this": [], "reference": []}
        for _ in range(a.alternations):
            res["reference"].append(run(a.reference, samples, a.rounds))
            res["this"].append(run(here, samples, a.rounds))
    best = {k: {m: min(r[m] for r in v) for m in v[0]} for k, v in res.items()}
    this, ref = best["this"], best["reference"]
    ratios = {}
    for kind in ("exec", "exit"):
        for way in ("python", "c", "c_callback"):
            if this.get(f"{way}_{kind}_us"):
                ratios[f"reference_python_over_this_{way}_{kind}"] = ref[f"python_{kind}_us"] / this[f"{way}_{kind}_us"]
        if this.get(f"c_{kind}_us"):
            ratios[f"this_python_over_this_c_{kind}"] = this[f"python_{kind}_us"] / this[f"c_{kind}_us"]
    per_exec = {k: this[f"{k}_exec_us"] + this[f"{k}_exit_us"] for k in ("python", "c", "c_callback") if f"{k}_exec_us" in this}
    per_exec["reference_python"] = ref["python_exec_us"] + ref["python_exit_us"]
    out = {"load": os.getloadavg()[0], "this": this, "reference": ref, "us_per_exec_exec_plus_exit": per_exec,
           "ratios": ratios}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
