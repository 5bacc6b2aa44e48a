"""Assemble the agent from a Config: sources -> stages -> sinks, and run it.

Order of stages matters: the process table first (ancestry, and the pid -> process key that
later stages cache on), then container identity, then Kubernetes context (which may hold
events briefly), then detection (alerts after their trigger), then behavioural baselines
(which see each trigger, then its alerts: hybrid alerts), then sinks. Drift and relative file
paths are settled in the kernel.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from podtrail import metrics
from podtrail.config import Config
from podtrail.enrich.cgroup_index import CgroupIndex
from podtrail.enrich.container import ContainerStage
from podtrail.pipeline import Pipeline, Sink, Source, Stage
from podtrail.procs.stage import ProcessStage
from podtrail.procs.table import ProcessTable

log = logging.getLogger(__name__)


# The cyclic garbage collector, tuned for the hot path (docs/BENCHMARKS.md, "Decoder, reader,
# sweep and GC"): the event path makes no reference cycles (measured: a 10 s storm of 10,000
# execs with the collector off left 499 cyclic objects, all start-up ones, mostly argparse), so
# every collection is pure cost: with CPython's default (700, 10, 10) it ran ~20 young
# collections a second and a full one (~0.1-0.2 s over the osquery buffers) every few seconds,
# ~10-20 µs per exec. After start-up, one collection clears start-up cycles and ``gc.freeze``
# moves everything alive then (modules, Sigma rules, config) out of every later collection; a
# young collection runs every 50,000 tracked allocations (seconds at 1,000 execs/s), and a full
# one at most every 20 middle ones (minutes, and only after CPython's rule that the old
# generation grew by a quarter). Cycles are still collected, only later: memory stays bounded.
# What the agent keeps for seconds (exited processes for the exit grace period, with their
# entities; the osquery buffers' records and argv texts) is untracked once kept (procs/_retire.c,
# tables/_compact.c): verified acyclic, freed by reference counting, never walked by a
# collection (tracked objects stay flat under a steady storm instead of ~7 more per exec).
GC_THRESHOLDS = (50_000, 10, 20)
_gc_tuned = False


def tune_gc() -> None:
    """Apply the agent's collector policy once per process (after start-up)."""
    global _gc_tuned
    if _gc_tuned:
        return
    _gc_tuned = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class SourceUnavailable(RuntimeError):
    """No sensor could start; the message says why and what to do."""


@dataclass
class Agent:
    cfg: Config
    sources: list[Source] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    sinks: list[Sink] = field(default_factory=list)
    table: ProcessTable | None = None
    containers: ContainerStage | None = None
    source_name: str = ""
    source_reason: str = ""
    started_at: float = 0.0
    _threads: list[threading.Thread] = field(default_factory=list)
    _pipeline: Pipeline | None = None
    _closables: list[Any] = field(default_factory=list)
    _starters: list[Any] = field(default_factory=list)
    tables: Any = None  # TableService when the osquery tables are enabled
    detect: Any = None  # DetectStage (podtrail.detect.stage) unless detection is disabled; add detectors to .detectors
    baselines: Any = None  # BaselineStage when detection.baseline is on
    end_reason: str = ""  # why the agent ended by itself (an output closed, a source ended)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._pipeline = Pipeline(self.stages, self.sinks)
        for sink in self.sinks:  # outputs report spool overflows and failures as agent-health events
            if hasattr(sink, "on_health"):
                sink.on_health = self._pipeline.emit
            if hasattr(sink, "on_closed"):
                sink.on_closed = self._output_closed
        for s in self.sources:  # compile/attach first: a failure here is reported, not half-run
            load = getattr(s, "load", None)
            if load is not None:
                load()
        try:  # the local API first: a path another agent serves fails here, before any source runs
            for start in self._starters:
                start()
        except Exception:
            self._pipeline.close()
            for c in self._closables:
                try:
                    c()
                except Exception:  # noqa: BLE001 - the first error is the one to report
                    log.debug("cleanup after a failed start", exc_info=True)
            for src in self.sources:
                close = getattr(src, "close", None)
                if callable(close):
                    close()
            raise
        tune_gc()
        from podtrail import native

        for name, why in native.missing().items():  # visible at once, not only under -v
            log.warning("native accelerator %s: %s; running its pure-Python twin (same output, more CPU)", name, why)
        self._pipeline.start()
        for s in self.sources:
            t = threading.Thread(target=self._run_source, args=(s,), name=f"podtrail-{s.name}", daemon=True)
            t.start()
            self._threads.append(t)
        if self.cfg.metrics.health_interval_seconds > 0:
            from podtrail.health import periodic_health

            threading.Thread(target=periodic_health, name="podtrail-health-events", daemon=True,
                             args=(self, self._pipeline.emit, self.cfg.metrics.health_interval_seconds,
                                   self._pipeline.stop_event)).start()
        self.started_at = time.time()

    def _output_closed(self, name: str) -> None:
        """An output whose reader went away (``podtrail run | head -1``): the agent ends when
        it was the only output; otherwise that output stops, with an error on stderr."""
        outputs = [s for s in self.sinks if s.name != "tables"]
        if len(outputs) <= 1:
            self.end_reason = f"output {name} closed"
            self.stop_event.set()
        else:
            log.error("output %s: closed by its reader; its events are dropped (counted), other outputs continue", name)

    def _run_source(self, s: Source) -> None:
        assert self._pipeline is not None
        try:
            s.run(self._pipeline.emit, self._pipeline.stop_event)
        except Exception:
            log.exception("source %s failed", s.name)
            metrics.dropped(s.name, "source_failed")

    @property
    def stop_event(self) -> threading.Event:
        assert self._pipeline is not None
        return self._pipeline.stop_event

    def stop(self) -> None:
        if self._pipeline is None:
            return
        self._pipeline.stop_event.set()
        for s in self.sources:  # a reader asleep in its poll notices now, not at its timeout
            wake = getattr(s, "wake", None)
            if callable(wake):
                wake()
        for t in self._threads:
            t.join(10)
        # detach the sensors now (their readers have returned), side by side and while the
        # pipeline drains: each detach waits for the kernel; left to exit, they run one by one
        closers = [threading.Thread(target=s.close, daemon=True)  # type: ignore[attr-defined]
                   for s in self.sources if callable(getattr(s, "close", None))]
        for t in closers:
            t.start()
        self._pipeline.close()
        for c in self._closables:
            try:
                c()
            except Exception:
                log.exception("shutdown step failed")
        for t in closers:
            t.join(10)

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def state(self) -> dict[str, Any]:
        """What the health endpoint and `doctor` report."""
        return {
            "source": self.source_name,
            "source_reason": self.source_reason,
            "sources": [s.name for s in self.sources],
            "alive": self.alive(),
            "process_table_size": len(self.table) if self.table is not None else 0,
            "containers": len(self.containers.containers) if self.containers is not None else 0,
            "uptime_s": time.time() - self.started_at if self.started_at else 0.0,
            **({"baseline": self.baselines.state()} if self.baselines is not None else {}),
        }


def _ebpf_sources(cfg: Config, index: CgroupIndex) -> tuple[list[Source], list[Stage]]:
    from podtrail.bpf.libbpf import SharedMaps
    from podtrail.bpf.process import build_process_source

    # One drift_inodes map for the file sensor (which records) and the process sensor (which
    # judges an exec): whichever object loads first creates it, the other reuses it.
    shared = SharedMaps()
    sources: list[Source] = [build_process_source(cfg.sensor, index.learn, shared)]
    if cfg.sensor.sockets or cfg.sensor.files:
        from podtrail.bpf.netfile import build_socket_file_sources

        sources.extend(build_socket_file_sources(cfg.sensor, shared=shared))
    return sources, []


def _audit_sources(cfg: Config) -> list[Source]:
    try:
        from podtrail.audit import build_audit_source
    except ImportError:
        raise SourceUnavailable("the auditd source is not available in this build") from None
    return [build_audit_source(cfg)]


def _try_ebpf(cfg: Config, index: CgroupIndex) -> tuple[list[Source], list[Stage]]:
    sources, stages = _ebpf_sources(cfg, index)
    for s in sources:
        s.load()  # type: ignore[attr-defined]
    return sources, stages


def build_agent(cfg: Config, sinks: list[Sink] | None = None, extra_stages: list[Stage] | None = None) -> Agent:
    """Choose the source (eBPF, auditd, or auto: eBPF when it loads, else auditd), build the
    stages and the sinks. Raises SourceUnavailable with the reason when nothing can run."""
    from podtrail.detect.stage import build_detect_stage

    detect = build_detect_stage(cfg.detection)  # first: a bad rule path fails before any sensor loads
    table = ProcessTable(cfg.sensor.exit_grace_seconds, max_exited=cfg.sensor.max_exited_processes)
    table.seed()
    index = CgroupIndex()
    containers = ContainerStage(index, force_proc=cfg.sensor.proc_fallback)
    containers.scan()
    agent = Agent(cfg, table=table, containers=containers)
    src = cfg.sensor.source
    extra: list[Stage] = []
    if src == "ebpf":
        agent.sources, extra = _ebpf_sources(cfg, index)
        agent.source_name, agent.source_reason = "ebpf", "selected by configuration"
        table.proc_fallback = False  # every fact arrives in the event
    elif src == "auditd":
        agent.sources = _audit_sources(cfg)
        agent.source_name, agent.source_reason = "auditd", "selected by configuration"
    elif src == "auto":
        try:
            agent.sources, extra = _try_ebpf(cfg, index)
            agent.source_name, agent.source_reason = "ebpf", "auto: eBPF programs loaded"
            table.proc_fallback = False
        except Exception as e:  # noqa: BLE001 - any load failure means: fall back
            reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            agent.sources = _audit_sources(cfg)
            agent.source_name, agent.source_reason = "auditd", f"auto: eBPF could not load ({reason})"
    else:
        raise SourceUnavailable(f"unknown source {src!r} (ebpf, auditd or auto)")
    from podtrail.enrich.k8s import build_k8s_stage
    from podtrail.model.event import HOSTNAME

    k8s_stage, k8s_stop, _watcher = build_k8s_stage(cfg.kubernetes, HOSTNAME)
    agent._closables.append(k8s_stop)
    agent.stages = [ProcessStage(table), containers, *extra, k8s_stage, *(extra_stages or [])]
    agent.detect = detect
    if detect is not None:  # last: it sees every field, and alerts follow their trigger
        agent.stages.append(agent.detect)
    if _baselines_on(cfg):  # after signature detection: it sees each trigger, then its alerts (hybrid)
        from podtrail.detect.baseline.stage import build_baseline_stage

        agent.baselines = build_baseline_stage(cfg.detection.baseline)
        agent.stages.append(agent.baselines)
    agent.sinks = list(sinks) if sinks is not None else build_default_sinks(cfg)
    if cfg.osquery.socket or cfg.osquery.api_socket:
        _add_tables(agent, k8s_stage)
    return agent


def _baselines_on(cfg: Config) -> bool:
    b = cfg.detection.baseline
    return b.mode != "off" or any(m != "off" for m in b.namespaces.values())


def _add_tables(agent: Agent, k8s_stage: Any) -> None:
    """The osquery tables: buffers as one more sink; served over the local API (for `podtrail
    query`/`shell`/`extension`) and, with ``osquery.socket``, to osqueryd directly."""
    from podtrail.tables.buffer import EventBuffers
    from podtrail.tables.local_api import LocalAPIServer
    from podtrail.tables.service import TableService
    from podtrail.tables.state import container_rows, pod_rows, process_rows

    cfg = agent.cfg.osquery
    assert agent.table is not None and agent.containers is not None
    buffers = EventBuffers(cfg.events_max, cfg.events_expiry_seconds)
    agent.sinks.append(buffers)
    fill = k8s_stage.fill_container
    pods = k8s_stage.cache.pods if k8s_stage.cache is not None else (lambda: [])
    svc = TableService(buffers, process_rows(agent.table, agent.containers, fill),
                       container_rows(agent.containers, fill), pod_rows(pods),
                       agent.baselines.rows if agent.baselines is not None else (lambda: []))
    agent.tables = svc
    if cfg.api_socket:
        api = LocalAPIServer(cfg.api_socket, svc.generate, cfg.api_socket_group, int(cfg.api_socket_mode))
        agent._starters.append(api.start)
        agent._closables.append(api.stop)
    if cfg.socket:
        from podtrail.tables.osquery_ext import OsqueryExtension
        from podtrail.tables.schema import TABLES

        # Registers when osqueryd answers, and again whenever it restarts (a new uuid).
        ext = OsqueryExtension(cfg.socket, TABLES, svc.select_wire, reregister=True)
        agent._starters.append(ext.start_when_ready)
        agent._closables.append(ext.stop)


def check_outputs(cfg: Config) -> None:
    """Every output's settings and the spool directory, checked before anything loads, so a
    mistake there is reported as the output's (``outputs[1].protocol: ...``), not a sensor's."""
    from podtrail.config import ConfigError
    from podtrail.outputs.syslog import syslog_config
    from podtrail.outputs.webhook import webhook_config

    spooled = False
    for i, spec in enumerate(cfg.outputs):
        where, kind = f"outputs[{i}]", spec.get("type")
        if kind == "stdout":
            fmt = spec.get("format", "json")
            if fmt not in ("json", "ecs", "cef", "leef"):
                raise ConfigError(f"{where}.format: json, ecs, cef or leef, not {fmt!r}")
        elif kind == "syslog":
            syslog_config(spec, where)
            spooled = True
        elif kind == "webhook":
            webhook_config(spec, where)
            spooled = True
        else:
            raise ConfigError(f"{where}.type: output type {kind!r} is not available (stdout, syslog, webhook)")
    if spooled:
        problem = spool_problem(cfg.spool_dir)
        if problem:
            raise ConfigError(f"spool_dir: {problem}")


def spool_problem(path: str) -> str:
    """Why the spool cannot live at ``path`` ('' when it can), without creating anything."""
    import os

    p = os.path.abspath(path)
    if os.path.exists(p):
        if not os.path.isdir(p):
            return f"{path} is not a directory"
        return "" if os.access(p, os.W_OK | os.X_OK) else f"{path} is not writable"
    parent = os.path.dirname(p)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{parent} is not a directory"
    return "" if os.access(parent, os.W_OK | os.X_OK) else f"cannot create {path} ({parent} is not writable)"


def build_default_sinks(cfg: Config) -> list[Sink]:
    """The configured outputs (podtrail.outputs.build_sinks when the forwarder is present)."""
    from podtrail import outputs

    build_sinks = getattr(outputs, "build_sinks", None)
    if build_sinks is not None:
        return list(build_sinks(cfg))
    from podtrail.config import ConfigError
    from podtrail.outputs.stdout import build_stdout
    from podtrail.outputs.syslog import build_syslog

    sinks: list[Sink] = []
    for i, spec in enumerate(cfg.outputs):
        kind = spec.get("type")
        if kind == "stdout":
            sinks.append(build_stdout(spec))
        elif kind == "syslog":
            sinks.append(build_syslog(spec, cfg.spool_dir, f"outputs[{i}]"))
        elif kind == "webhook":
            from podtrail.outputs.webhook import build_webhook

            sinks.append(build_webhook(spec, cfg.spool_dir, f"outputs[{i}]"))
        else:
            raise ConfigError(f"outputs[{i}]: output type {kind!r} is not available (stdout, syslog, webhook)")
    return sinks
