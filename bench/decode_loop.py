"""The process decoder in a tight loop over real ring-buffer samples: µs of thread CPU per exec
and per exit sample, this checkout against a reference checkout, alternating in one run.

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
out = {}
gc.disable()
for t, name in ((1, "exec"), (3, "exit")):
    xs = by[t]
    best = float("inf")
    for _ in range(rounds):
        dec = d.decode
        t0 = time.thread_time_ns()
        for raw in xs:
            dec(raw)
        best = min(best, time.thread_time_ns() - t0)
    out[name + "_us"] = best / max(len(xs), 1) / 1e3
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
    out = {"load": os.getloadavg()[0], "this": best["this"], "reference": best["reference"],
           "ratio_reference_over_this": {m: best["reference"][m] / best["this"][m]
                                         for m in ("exec_us", "exit_us") if best["this"][m]}}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
