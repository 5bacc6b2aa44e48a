"""Kubernetes enrichment cost per event and cache memory.

    .venv/bin/python -m bench.k8s_enrich [--pods 250] [--services 20000] [--events 200000]

Builds the caches as the watchers would (pods converted from API-shaped dicts by the same
code, 20,000 service cluster IPs in the IP history), then times K8sStage.process per event
for a mix of process events (container -> pod) and socket events (remote IP -> pod/service).
Memory is what tracemalloc attributes to building the caches.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import statistics
import time
import tracemalloc
import uuid

from podtrail.enrich.k8s.cache import PodCache
from podtrail.enrich.k8s.convert import pod_from_api
from podtrail.enrich.k8s.iphistory import Holder, IPHistory
from podtrail.enrich.k8s.stage import K8sStage
from podtrail.model.event import new_event
from podtrail.model.fields import Kind


def api_pod(i: int) -> dict:
    cids = [secrets.token_hex(32) for _ in range(3)]
    return {
        "metadata": {"name": f"web-{i}-abcde", "namespace": f"ns{i % 20}", "uid": str(uuid.uuid4()),
                     "labels": {"app": f"web{i}", "pod-template-hash": "abcde", "team": "t"},
                     "ownerReferences": [{"kind": "ReplicaSet", "name": f"web-{i}-abcde", "controller": True}]},
        "spec": {"nodeName": "n1", "serviceAccountName": "sa",
                 "containers": [{"name": f"c{k}", "image": f"reg/app{k}:1"} for k in range(3)]},
        "status": {"podIP": f"10.1.{i // 250}.{i % 250}", "containerStatuses": [
            {"name": f"c{k}", "containerID": f"containerd://{cid}", "imageID": "reg/app@sha256:" + "ab" * 32}
            for k, cid in enumerate(cids)]},
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=250)
    ap.add_argument("--services", type=int, default=20000)
    ap.add_argument("--events", type=int, default=200000)
    a = ap.parse_args()
    tracemalloc.start()
    cache, ips = PodCache(), IPHistory()
    pods = [pod_from_api(api_pod(i)) for i in range(a.pods)]
    for p in pods:
        cache.upsert(p)
        for ip in p.pod_ips:
            ips.claim(ip, Holder("pod", p.namespace, p.name, f"{p.workload_kind}/{p.workload_name}"))
    for s in range(a.services):
        ips.claim(f"10.96.{s // 250}.{s % 250}", Holder("service", f"ns{s % 50}", f"svc-{s}"))
    mem = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    stage = K8sStage(cache, None, cluster_name="c", node_name="n1", labels=["app"], ips=ips)
    cids = [cid for p in pods for cid in p.containers]
    rnd = random.Random(1)
    evs = []
    for i in range(a.events):
        if i % 2:
            evs.append(new_event(Kind.PROCESS, "exec", pid=1, container_id=rnd.choice(cids), pod_uid="x"))
        else:
            ip = f"10.96.{rnd.randrange(a.services) // 250}.{rnd.randrange(250)}" if i % 4 else f"10.1.0.{rnd.randrange(a.pods % 250 or 250)}"
            evs.append(new_event(Kind.SOCKET, "connect", pid=1, container_id=rnd.choice(cids), pod_uid="x", remote_address=ip))
    out = []
    sink = out.append
    times = []
    perf = time.perf_counter_ns
    for ev in evs:
        t0 = perf()
        stage.process(ev, sink)
        times.append(perf() - t0)
    times.sort()
    res = {"pods": a.pods, "services": a.services, "events": a.events,
           "p50_us": times[len(times) // 2] / 1000, "p99_us": times[int(len(times) * 0.99)] / 1000,
           "mean_us": statistics.fmean(times) / 1000, "cache_memory_mb": mem / 2**20,
           "enriched": sum(1 for e in out if "pod_name" in e)}
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
