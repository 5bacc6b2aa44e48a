"""``podtrail run``: the agent. Default: eBPF sensor -> container context -> JSON lines on stdout."""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time

from podtrail import config as config_mod


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="run the agent (default: eBPF -> JSON lines on stdout)")
    p.add_argument("-c", "--config", help="YAML config file (default: embedded defaults)")
    p.add_argument("--source", choices=("ebpf", "auditd", "auto"), help="event source (default from config: ebpf)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--containers-only", action="store_true", help="drop host processes' events in the kernel")
    p.add_argument("--no-sockets", action="store_true", help="no socket events")
    p.add_argument("--no-files", action="store_true", help="no file events")
    p.add_argument("--no-metrics", action="store_true", help="no Prometheus endpoint")
    p.add_argument("--metrics-port", type=int, help="Prometheus port (default 9464, on 127.0.0.1)")
    p.add_argument("--cluster-name", help="cluster name put on every event")
    p.add_argument("--audit-input", choices=("plugin", "socket", "log"), help="auditd source: plugin stdin, af_unix socket, or audit.log")
    p.add_argument("--audit-log", help="audit.log to follow (with --audit-input log)")
    p.add_argument("--osquery-socket", help="serve the tables to osqueryd at this extension manager socket")
    p.set_defaults(func=run)


def apply_flags(cfg: config_mod.Config, args: argparse.Namespace) -> None:
    if args.source:
        cfg.sensor.source = args.source
    if args.containers_only:
        cfg.sensor.containers_only = True
    if args.no_sockets:
        cfg.sensor.sockets = False
    if args.no_files:
        cfg.sensor.files = False
    if args.no_metrics:
        cfg.metrics.enabled = False
    if args.metrics_port is not None:
        cfg.metrics.port = args.metrics_port
    if args.cluster_name:
        cfg.kubernetes.cluster_name = args.cluster_name
    if args.audit_input:
        cfg.audit.input = args.audit_input
    if args.audit_log:
        cfg.audit.path = args.audit_log
    if args.osquery_socket:
        cfg.osquery.socket = args.osquery_socket


def run(args: argparse.Namespace) -> int:
    from podtrail import metrics
    from podtrail.agent import SourceUnavailable, build_agent
    from podtrail.cli import UserError

    cfg = config_mod.load(args.config)
    apply_flags(cfg, args)
    if os.geteuid() != 0:
        raise UserError("podtrail run needs root (or CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE) to load its sensors")
    try:
        agent = build_agent(cfg)
        agent.start()
    except SourceUnavailable as e:
        raise UserError(f"{e}; run `podtrail doctor` for what to do") from None
    except config_mod.ConfigError:
        raise
    except Exception as e:  # a sensor that cannot load: say why in one line
        msg = (str(e).strip().splitlines() or [type(e).__name__])[-1]
        raise UserError(f"cannot start the {cfg.sensor.source} source: {msg}; run `podtrail doctor`") from None
    if cfg.metrics.enabled:
        try:
            metrics.serve(cfg.metrics.address, cfg.metrics.port)
        except OSError as e:
            agent.stop()
            raise UserError(f"cannot serve metrics on {cfg.metrics.address}:{cfg.metrics.port}: {e.strerror}") from None
    if cfg.metrics.enabled and cfg.metrics.health_port:
        from podtrail.health import HealthServer

        try:
            health = HealthServer(agent, cfg.metrics.address, cfg.metrics.health_port)
        except OSError as e:
            agent.stop()
            raise UserError(f"cannot serve health on {cfg.metrics.address}:{cfg.metrics.health_port}: {e.strerror}") from None
        health.start()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    deadline = None if args.duration is None else time.monotonic() + args.duration
    # stop on a signal, at the deadline, or when a source ends the agent (auditd closed the plugin's stdin)
    while not done.wait(0.2) and not agent.stop_event.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            break
    agent.stop()
    return 0
