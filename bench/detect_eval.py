"""In-agent Sigma evaluation cost per event, and how it grows with the rule count, against
pySigma's SQLite backend evaluating the same rules on the same events.

    .venv/bin/python -m bench.detect_eval [--events 20000] [--sizes 50,100,200,500]

Events: a mix like a busy node's (execs, connections, file writes; mostly benign, a few from
the rule-case suite's attacks), finalized as the pipeline delivers them. Part 1: every shipped
rule (signatures and correlations), the agent's ``Engine.process`` timed per event (p50, p99,
mean). Part 2: rule sets of 50..500 signatures made from the shipped ones by changing every
literal value (same shapes, different values, as more rules of the same kind would be), mean
and p99 per event at each size. Reference, same events and rules: pySigma's SQLite backend
(``podtrail.rules.evaluate``'s table and queries, queries converted beforehand), timed as the
events' insertion plus every rule's query, divided by the event count (it evaluates in batch;
the agent streams). Times are CPU time of the measuring thread (thread_time), so a busy
machine inflates them less than wall time; wall percentiles are printed too. Prints JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sqlite3
import statistics
import time
import uuid
from typing import Any

import yaml

from podtrail.detect.engine import Engine
from podtrail.detect.ruleset import RuleSet, load_paths, load_texts
from podtrail.model.event import finalize
from podtrail.rules.catalog import SIGMA_DIR, RuleFile, rule_files

CID = "4f" * 32


def make_events(n: int, seed: int = 15) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    cases = yaml.safe_load((SIGMA_DIR / "tests" / "cases.yml").read_text())
    attacks = [dict(e) for c in cases.values() for e in (c.get("match") or []) if isinstance(e, dict)]
    tools = [("/usr/bin/python3", "python3 manage.py runserver 0.0.0.0:8000"), ("/usr/local/bin/node", "node server.js"),
             ("/bin/sh", "sh -c /usr/local/bin/healthcheck --port 8080"), ("/usr/bin/curl", "curl -s http://svc.shop:8080/health"),
             ("/usr/sbin/nginx", "nginx -g daemon off;"), ("/usr/bin/java", "java -Xmx512m -jar /app/app.jar"),
             ("/bin/ls", "ls -la /app/static"), ("/usr/bin/git", "git rev-parse HEAD")]
    files = ["/tmp/sess_%d", "/app/cache/%d.bin", "/etc/nginx/conf.d/upstream-%d.conf", "/var/log/app/app-%d.log"]
    out: list[dict[str, Any]] = []
    t = 1_790_000_000_000_000_000
    for i in range(n):
        t += rnd.randrange(1_000_000, 20_000_000)
        base = {"event_id": f"b-{i}", "time_ns": t, "time": t // 10**9, "container_id": CID, "pod_uid": "p-1",
                "pid": 1000 + i % 5000, "ppid": 1, "uid": 1000, "source": "ebpf", "hostname": "node-1",
                "process_key": f"{1000 + i % 5000}:1", "parent_key": "1:1", "stdin": "null"}
        r = rnd.random()
        if r < 0.01:  # an attack event from the cases
            ev = {**base, **rnd.choice(attacks)}
            ev.setdefault("event_type", "process")
            ev.setdefault("action", "exec")
        elif r < 0.6:
            path, cmd = rnd.choice(tools)
            ev = {**base, "event_type": "process", "action": "exec", "path": path, "comm": path.rsplit("/", 1)[1][:15],
                  "cmdline": cmd, "argv": cmd.split(), "cwd": "/app", "parent_path": "/bin/sh",
                  "parent_cmdline": "sh /entrypoint.sh"}
        elif r < 0.85:
            ev = {**base, "event_type": "socket", "action": "connect", "direction": "outbound", "family": 2,
                  "protocol": 6, "transport": "tcp", "local_address": "10.244.1.5", "local_port": 40000 + i % 20000,
                  "remote_address": f"10.96.{i % 200}.{i % 250}", "remote_port": rnd.choice([80, 443, 5432, 6379, 8080]),
                  "comm": "python3", "path": "/usr/bin/python3", "result": 0}
        else:
            ev = {**base, "event_type": "file", "action": rnd.choice(["write", "create", "unlink", "rename"]),
                  "target_path": rnd.choice(files) % (i % 100), "comm": "python3", "path": "/usr/bin/python3",
                  "flags": 577, "result": 0}
        out.append(finalize(ev))
    return out


def _retitle(value: Any, k: int) -> Any:
    """Every literal changed (``*`` kept), so a variant matches different events than its origin."""
    if isinstance(value, str):
        return value if value == "*" else f"{value}{k}x"
    if isinstance(value, int) and not isinstance(value, bool):
        return value + 10000 * k
    if isinstance(value, list):
        return [_retitle(v, k) for v in value]
    if isinstance(value, dict):
        return {kk: _retitle(v, k) for kk, v in value.items()}
    return value


def variant_texts(count: int) -> tuple[list[tuple[str, str]], dict[str, bool]]:
    """``count`` signature rules: the shipped ones, then value-changed variants of them; and
    which alert on their own (building blocks and their variants do not)."""
    sigs = [rf for rf in rule_files() if rf.kind != "correlation"]
    out: list[tuple[str, str]] = []
    outputs: dict[str, bool] = {}
    k = 0
    while len(out) < count:
        for rf in sigs:
            if len(out) >= count:
                break
            doc = copy.deepcopy(rf.doc)
            if k:
                doc["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rf.name}/{k}"))
                doc["name"] = f"{rf.name}_v{k}"
                det = doc["detection"]
                for sel, body in det.items():
                    if sel != "condition" and sel != "container":
                        det[sel] = _retitle(body, k)
            out.append((f"variant/{doc['name']}.yml", yaml.safe_dump(doc, sort_keys=False)))
            outputs[doc["name"]] = rf.kind != "base"
        k += 1
    return out, outputs


def _pct(samples: list[float], q: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * q))]


def time_engine(rules: RuleSet, events: list[dict[str, Any]]) -> dict[str, float]:
    """Per event: CPU time of this thread (what evaluation costs, without the time the scheduler
    gave other work on a shared machine) and wall time; the timer's own cost is subtracted."""
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    calib = []
    for _ in range(2000):
        c0 = cpu()
        calib.append(cpu() - c0)
    overhead = sorted(calib)[len(calib) // 2]
    engine = Engine(rules)
    for ev in events[:500]:  # warm up
        engine.process(dict(ev))
    engine = Engine(rules)
    cpus: list[float] = []
    walls: list[float] = []
    alerts = 0
    copies = [dict(ev) for ev in events]
    t_all = cpu()
    for e in copies:
        w0 = wall()
        c0 = cpu()
        alerts += len(engine.process(e))
        c1 = cpu()
        walls.append((wall() - w0) / 1000)
        cpus.append(max(0, c1 - c0 - overhead) / 1000)
    total_cpu = (cpu() - t_all) / 1000 / len(copies)
    cpus.sort()
    walls.sort()
    tried = sum(st.evaluated for st in engine.sig_stats) / len(copies)
    return {"cpu_p50_us": _pct(cpus, 0.5), "cpu_p99_us": _pct(cpus, 0.99), "cpu_mean_us": statistics.fmean(cpus),
            "wall_p50_us": _pct(walls, 0.5), "wall_p99_us": _pct(walls, 0.99), "loop_cpu_per_event_us": total_cpu,
            "timer_overhead_us": overhead / 1000, "rules_tried_per_event": tried, "alerts": alerts}


def time_sqlite(texts: list[tuple[str, str]], events: list[dict[str, Any]],
                outputs: dict[str, bool] | None = None) -> dict[str, float]:
    from podtrail.rules.evaluate import event_db, sqlite_queries

    files = []
    for path, text in texts:
        doc = yaml.safe_load(text)
        kind = "correlation" if "correlation" in doc else "alert"
        files.append(RuleFile(_TextPath(path, text), doc["name"], kind, doc))  # type: ignore[arg-type]
    # building blocks have no query of their own (podtrail.rules.evaluate skips them too)
    queries = [q for rf in files if (outputs or {}).get(rf.name, True) for q in sqlite_queries(rf, files)]
    t0 = time.thread_time()
    db = event_db(events)
    t_load = time.thread_time() - t0
    rows = 0
    for q in queries:
        rows += len(db.execute(q).fetchall())
    total = time.thread_time() - t0
    db.close()
    return {"cpu_per_event_us": total / len(events) * 1e6, "load_share": t_load / total, "queries": len(queries), "rows": rows}


class _TextPath:
    """Enough of a Path for podtrail.rules.catalog.load (read_text) on generated rules."""

    def __init__(self, name: str, text: str) -> None:
        self.name, self._text = name, text

    def read_text(self) -> str:
        return self._text


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--sizes", default="50,100,200,500")
    a = ap.parse_args()
    events = make_events(a.events)
    shipped = load_paths([])
    res: dict[str, Any] = {"events": len(events), "sqlite_version": sqlite3.sqlite_version}
    shipped_texts = [(str(rf.path), rf.path.read_text()) for rf in rule_files()]
    shipped_outputs = {rf.name: rf.kind != "base" for rf in rule_files()}
    res["shipped"] = {"rules": shipped.usable, "agent": time_engine(shipped, events),
                      "sqlite": time_sqlite(shipped_texts, events, shipped_outputs)}
    res["shipped"]["ratio_sqlite_over_agent"] = (res["shipped"]["sqlite"]["cpu_per_event_us"]
                                                 / res["shipped"]["agent"]["loop_cpu_per_event_us"])
    growth: list[dict[str, Any]] = []
    for size in [int(s) for s in a.sizes.split(",")]:
        texts, outputs = variant_texts(size)
        rules = load_texts(texts, outputs=outputs)
        assert not rules.problems, rules.problems[:3]
        row: dict[str, Any] = {"rules": size, "agent": time_engine(rules, events),
                               "sqlite": time_sqlite(texts, events, outputs)}
        growth.append(row)
    first = growth[0]
    for row in growth:
        row["agent_growth"] = row["agent"]["loop_cpu_per_event_us"] / first["agent"]["loop_cpu_per_event_us"]
        row["sqlite_growth"] = row["sqlite"]["cpu_per_event_us"] / first["sqlite"]["cpu_per_event_us"]
        row["ratio_sqlite_over_agent"] = row["sqlite"]["cpu_per_event_us"] / row["agent"]["loop_cpu_per_event_us"]
        row["rule_growth"] = row["rules"] / first["rules"]
    res["growth"] = growth
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
