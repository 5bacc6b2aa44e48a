"""The pipeline's C chain in the real agent (real eBPF process sensor, real stages) against the
Python chain on the same events: each event the kernel sends is copied before the agent's C
chain takes it, and the copy goes through twin stages (the process table copied at start, the
same cgroup index, fresh container, Kubernetes and detection stages built from the same
configuration) by the Python chain, ticked at the agent's ticks. Both sides must deliver the
same events in the same order, alerts included (a rule in the test's rule file fires on the
test's own execs)."""

from __future__ import annotations

import copy
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from agent_harness import CaptureSink, process_only_config
from conftest import require_ebpf

from podtrail import pipeline
from podtrail.model.context import EventDict

MARK = "fastchain-agent-marker"


def _rule_file(tmp: Path) -> Path:
    doc = {"title": "fast chain agent marker", "id": "00000000-0000-4000-8000-00000000fc02", "status": "test",
           "logsource": {"category": "process_creation", "product": "linux"}, "level": "high",
           "detection": {"sel": {"CommandLine|contains": MARK}, "condition": "sel"}}
    path = tmp / "marker.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _plain(ev: Any) -> dict[str, Any]:
    """An event as compared: alerts' own ids (each side's new_alert takes the next id) left out."""
    d = dict(ev)
    if d.get("event_type") == "alert":
        d.pop("event_id", None)
    return d


def test_the_agents_c_chain_delivers_what_the_python_chain_does(tmp_path: Path, monkeypatch: Any) -> None:
    require_ebpf()
    assert pipeline._native is not None, "podtrail._pipeline is not built: make native"
    from podtrail.agent import build_agent
    from podtrail.detect.stage import build_detect_stage
    from podtrail.enrich.container import ContainerStage
    from podtrail.enrich.k8s import build_k8s_stage
    from podtrail.procs.stage import ProcessStage

    cfg = process_only_config()
    cfg.metrics.enabled = False
    cfg.detection.rule_paths = [str(_rule_file(tmp_path))]
    cfg.osquery.api_socket = str(tmp_path / "api.sock")
    fast_sink, py_sink = CaptureSink(), CaptureSink()
    agent = build_agent(cfg, sinks=[fast_sink])
    procs, cont, k8s, detect = agent.stages
    twin_k8s, twin_stop, _ = build_k8s_stage(cfg.kubernetes, "node-twin")
    twin_k8s.node_name, twin_k8s.cluster_name = k8s.node_name, k8s.cluster_name
    twin_detect = build_detect_stage(cfg.detection)
    twin = pipeline.Pipeline([ProcessStage(copy.deepcopy(procs.table)), ContainerStage(cont.index, cont.force_proc),
                              twin_k8s, twin_detect], [py_sink])
    chains: list[Any] = []
    build = pipeline.Pipeline._fast_chain

    def both(self: pipeline.Pipeline) -> Any:
        fast = build(self)
        chains.append(fast)
        py = twin._outs[0]

        def each(ev: Any) -> None:
            mine = EventDict({k: list(v) if type(v) is list else v for k, v in ev.items()})
            try:
                py(mine)
            finally:
                fast(ev)
        return each

    ticks = pipeline.Pipeline._tick

    def tick_both(self: pipeline.Pipeline, now: float) -> None:
        ticks(twin, now)
        ticks(self, now)

    monkeypatch.setattr(pipeline.Pipeline, "_fast_chain", both)
    monkeypatch.setattr(pipeline.Pipeline, "_tick", tick_both)
    agent.start()
    try:
        assert chains and type(chains[0]).__name__ == "Chain"
        for i in range(40):
            subprocess.run(["/bin/busybox", "true", MARK if i % 10 == 3 else "fastchain-agent"], check=True)
        fast_sink.wait_for(lambda e: e.get("event_type") == "alert", timeout=20, count=4)
        time.sleep(0.5)  # the exits, and a few ticks
        assert agent._pipeline is not None and agent._pipeline._thread is not None
        assert agent._pipeline._thread.is_alive()
    finally:
        agent.stop()
        twin.close()
        twin_stop()
    ours = [_plain(e) for e in fast_sink.events if "fastchain-agent" in str(e.get("cmdline", ""))]
    assert len([e for e in ours if e["action"] == "exec"]) == 40 and len([e for e in ours if e["action"] == "exit"]) == 40
    assert len([e for e in fast_sink.events if e.get("event_type") == "alert"]) >= 4
    assert [_plain(e) for e in fast_sink.events] == [_plain(e) for e in py_sink.events]
