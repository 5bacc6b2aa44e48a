"""``podtrail run``: the agent. Default: eBPF sensor -> container context -> JSON lines on stdout.

Order matters for a first user: every check that can fail (flags, config ranges, outputs,
spool, the one-agent lock, busy ports) runs before the sensors load, and says what is wrong
in one line; once running, one ready line on stderr says what runs where.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from podtrail import config as config_mod


def port_arg(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535, not {v}")
    return v


def seconds_arg(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, not {text}")
    return v


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="run the agent (default: eBPF -> JSON lines on stdout)",
                       description="Run the agent: eBPF (or auditd) sensors -> container/Kubernetes context -> outputs. "
                                   "Events are JSON lines on stdout (podtrail run > events.jsonl); status on stderr.")
    p.add_argument("-c", "--config", help="YAML config file (default: embedded defaults)")
    p.add_argument("--source", choices=("ebpf", "auditd", "auto"), help="event source (default from config: ebpf)")
    p.add_argument("--duration", type=seconds_arg, help="stop after this many seconds")
    p.add_argument("--containers-only", action="store_true",
                   help="only container processes' events (host events are dropped in the kernel; "
                        "without it, the container_*_events tables mostly hold host events)")
    p.add_argument("--no-sockets", action="store_true", help="no socket events")
    p.add_argument("--no-files", action="store_true", help="no file events")
    p.add_argument("--no-metrics", action="store_true", help="no Prometheus or health endpoint")
    p.add_argument("--metrics-port", type=port_arg, help="Prometheus /metrics port (default 9464, on 127.0.0.1)")
    p.add_argument("--health-port", type=port_arg, help="/healthz and /readyz port (default 9465, on 127.0.0.1)")
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
    if getattr(args, "health_port", None) is not None:
        cfg.metrics.health_port = args.health_port
    if args.cluster_name:
        cfg.kubernetes.cluster_name = args.cluster_name
    if args.audit_input:
        cfg.audit.input = args.audit_input
    if args.audit_log:
        cfg.audit.path = args.audit_log
    if args.osquery_socket:
        cfg.osquery.socket = args.osquery_socket


def _http_addr(address: str, port: int) -> str:
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"


def ready_line(agent: Any, servers: dict[str, str], load_s: float) -> str:
    cfg = agent.cfg
    parts = [f"source={agent.source_name}", f"sensors={','.join(s.name for s in agent.sources)}"]
    if agent.tables is not None and cfg.osquery.api_socket:
        parts.append(f"api={cfg.osquery.api_socket}")
    if cfg.osquery.socket:
        parts.append(f"osquery={cfg.osquery.socket}")
    parts += [f"{k}={v}" for k, v in servers.items()] or ["metrics=off"]
    parts.append(f"outputs={','.join(s.name for s in agent.sinks if s.name != 'tables')}")
    return f"podtrail: ready in {load_s:.1f}s: " + " ".join(parts)


def _bind_servers(cfg: config_mod.Config) -> tuple[list[Any], Any, dict[str, str]]:
    """Bind the metrics and health ports now: a busy port is an error before the sensors load."""
    from podtrail.cli import UserError
    from podtrail.health import HealthServer
    from podtrail.metrics import metrics_server

    servers: list[Any] = []
    health = None
    where: dict[str, str] = {}
    if not cfg.metrics.enabled:
        return servers, health, where
    m = cfg.metrics
    try:
        servers.append(metrics_server(m.address, m.port))
        where["metrics"] = _http_addr(m.address, m.port) + "/metrics"
    except OSError as e:
        raise UserError(f"cannot serve metrics on {m.address}:{m.port}: {e.strerror} (--metrics-port)") from None
    if m.health_port:
        try:
            health = HealthServer(None, m.address, m.health_port)
        except OSError as e:
            for s in servers:
                s.server_close()
            raise UserError(f"cannot serve health on {m.address}:{m.health_port}: {e.strerror} (--health-port)") from None
        servers.append(health.httpd)
        where["health"] = _http_addr(m.address, m.health_port) + "/readyz"
    return servers, health, where


def run(args: argparse.Namespace) -> int:
    from podtrail.agent import SourceUnavailable, build_agent, check_outputs
    from podtrail.cli import UserError
    from podtrail.lock import AgentLock, AgentRunning

    cfg = config_mod.load(args.config)
    apply_flags(cfg, args)
    config_mod.check(cfg)
    check_outputs(cfg)
    if os.geteuid() != 0:
        raise UserError("podtrail run needs root (or CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE) to load its sensors")
    lock = AgentLock(cfg.lock_file)
    try:
        lock.acquire()
    except AgentRunning as e:
        raise UserError(str(e)) from None
    except OSError as e:
        raise UserError(f"cannot take the agent lock {cfg.lock_file}: {e.strerror}") from None
    servers: list[Any] = []
    try:
        servers, health, where = _bind_servers(cfg)
        t0 = time.monotonic()
        try:
            agent = build_agent(cfg)
            agent.start()
        except SourceUnavailable as e:
            raise UserError(f"{e}; run `podtrail doctor` for what to do") from None
        except OSError as e:  # the API socket path is taken, a spool cannot be written
            raise UserError(f"cannot start: {e.strerror or e}") from None
        except Exception as e:  # a sensor that cannot load: say why in one line
            if isinstance(e, config_mod.ConfigError):
                raise
            msg = (str(e).strip().splitlines() or [type(e).__name__])[-1]
            raise UserError(f"cannot start the {cfg.sensor.source} source: {msg}; run `podtrail doctor`") from None
        if health is not None:
            health.agent = agent
        for i, srv in enumerate(servers):
            srv.start(f"podtrail-http-{i}")
        print(ready_line(agent, where, time.monotonic() - t0), file=sys.stderr, flush=True)
        reason = _wait(agent, args.duration)
        print(f"podtrail: stopping ({reason})", file=sys.stderr, flush=True)
        t1 = time.monotonic()
        agent.stop()
        logging.getLogger("podtrail.run").debug("agent stopped in %.2fs", time.monotonic() - t1)
        return 0
    finally:
        for srv in servers:
            try:
                srv.server_close()
            except OSError:
                pass
        lock.release()


WAIT_S = 1.0  # the agent ending by itself is noticed within this (a signal at once)


def _wait(agent: Any, duration: float | None) -> str:
    """Until a signal, the deadline, or the agent ending by itself (its only output closed,
    auditd closed the plugin's stdin); returns why.

    A signal wakes the wait at once: CPython's own handler writes the signal's number to the
    wake-up fd, which the wait selects on, whichever thread the kernel delivered it to. The
    agent ending by itself is seen within ``WAIT_S``. (Waking every 0.1 s to look cost an idle
    agent ~0.1 % of a core here: each wake-up of an idle thread is ~0.1 ms of CPU.)"""
    got: list[str] = []

    def on_signal(signum: int, _frame: Any) -> None:
        # Only a note, read by the loop below (which sets the stop event): nothing here may
        # take a lock this thread could hold when the handler runs between two bytecodes.
        got.append(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    stop = agent.stop_event
    deadline = None if duration is None else time.monotonic() + duration
    r, w = socket.socketpair()
    r.setblocking(False)
    w.setblocking(False)
    old = signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False)
    try:
        while not stop.is_set() and not got:
            left = WAIT_S if deadline is None else min(WAIT_S, deadline - time.monotonic())
            if left <= 0:
                break
            if select.select([r], [], [], left)[0]:
                try:
                    r.recv(64)
                except BlockingIOError:
                    pass
    finally:
        signal.set_wakeup_fd(old)
        r.close()
        w.close()
    if got:
        stop.set()
        return got[0]
    if stop.is_set():
        return agent.end_reason or "a source ended"
    return f"--duration {duration:g}s"
