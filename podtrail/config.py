"""Agent configuration: YAML file -> typed dataclasses, with one-line errors for mistakes.

Each section is a dataclass; unknown keys and wrong types are reported with their YAML path
(``outputs[1].port: expected int, got 'abc'``) instead of a traceback.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml


class ConfigError(ValueError):
    """A user mistake in the configuration; the CLI prints it as one line."""


@dataclass
class SensorConfig:
    """eBPF / auditd sensor settings."""

    source: str = "ebpf"  # ebpf | auditd | auto
    argv_max_args: int = 32  # arguments kept per exec
    argv_max_arg_bytes: int = 256  # bytes kept per argument
    ringbuf_pages: int = 1024  # ring buffer size in pages (power of two)
    containers_only: bool = False  # drop host events in the kernel
    exit_grace_seconds: float = 30.0  # keep exited processes in the table this long
    max_exited_processes: int = 16384  # and at most this many (the oldest go first, counted): memory bounded by count, not exit rate
    proc_fallback: bool = False  # force /proc/<pid>/cgroup instead of cgroup ids
    # socket/file sensor (in-kernel filters)
    sockets: bool = True
    files: bool = True
    loopback: bool = True
    write_prefixes: list[str] = field(default_factory=lambda: ["/etc/", "/usr/", "/bin/", "/sbin/", "/lib/", "/root/", "/tmp/", "/dev/shm/", "/var/spool/cron/", "/home/", "/var/log/"])
    sensitive_paths: list[str] = field(default_factory=list)  # empty: the shipped list
    exclude_comms: list[str] = field(default_factory=list)
    drift: bool = True  # record container file creates/writes/exec-bit chmods in the kernel drift map


@dataclass
class AuditConfig:
    input: str = "plugin"  # plugin (stdin) | socket | log
    path: str = "/var/log/audit/audit.log"
    socket_path: str = "/var/run/audispd_events"
    event_timeout_seconds: float = 2.0


@dataclass
class KubernetesConfig:
    enabled: bool = True  # try the API; fall back to /var/log/pods when unreachable
    kubeconfig: str = ""  # empty: in-cluster config, then ~/.kube/config
    node_name: str = field(default_factory=lambda: os.environ.get("NODE_NAME", ""))
    cluster_name: str = ""
    label_allowlist: list[str] = field(default_factory=lambda: ["app", "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component", "team"])
    tombstone_seconds: float = 600.0
    pending_seconds: float = 2.0
    pending_max: int = 10000
    pod_logs_dir: str = "/var/log/pods"


DEFAULT_API_GROUP = "podtrail"


@dataclass
class OsqueryConfig:
    socket: str = ""  # osqueryd extension manager socket; empty: no extension
    events_expiry_seconds: int = 3600
    events_max: int = 50000
    api_socket: str = "/run/podtrail/api.sock"  # local query API for `podtrail query/shell/extension`
    # Who besides root may query the local API: the socket's group (a name or a gid; "" for
    # root only) and mode. A missing default group leaves the socket root-only (a warning);
    # a named group that does not exist is a config error. podtrail creates no group.
    api_socket_group: str | int = DEFAULT_API_GROUP
    api_socket_mode: str | int = "0660"  # octal; YAML's bare 0660 works too

    def __post_init__(self) -> None:
        self.api_socket_mode = socket_mode(self.api_socket_mode)
        group = self.api_socket_group
        if isinstance(group, bool) or not isinstance(group, str | int):
            raise ConfigError(f"osquery.api_socket_group: expected a group name or gid, got {group!r}")
        if isinstance(group, int) or group.isdigit():
            if int(group) < 0:
                raise ConfigError(f"osquery.api_socket_group: bad gid {group!r}")
        elif group not in ("", DEFAULT_API_GROUP) and group_id(group) is None:
            raise ConfigError(f"osquery.api_socket_group: no group {group!r} on this host (groupadd --system {group}, or a gid)")


def socket_mode(v: str | int) -> int:
    """``"0660"``, ``"660"``, ``"0o660"`` or an int (YAML reads a bare 0660 as octal) -> mode bits."""
    try:
        mode = v if isinstance(v, int) and not isinstance(v, bool) else int(str(v).removeprefix("0o"), 8)
    except ValueError:
        raise ConfigError(f"osquery.api_socket_mode: expected an octal mode like \"0660\", got {v!r}") from None
    if not 0 <= mode <= 0o777:
        raise ConfigError(f"osquery.api_socket_mode: {oct(mode)} is not a file mode (0 to 0777)")
    return mode


def group_id(group: str | int) -> int | None:
    """The gid of a group name or number; None for "" (root only) or an unknown name."""
    import grp

    if isinstance(group, int) or group.isdigit():
        return int(group)
    if not group:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


@dataclass
class MetricsConfig:
    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = 9464
    health_interval_seconds: float = 60.0
    health_port: int = 9465  # /healthz and /readyz on `address`; 0 disables
    # /readyz answers 503 (degraded) when an output has delivered nothing for this long while
    # it had something to send; 0 disables
    output_stall_seconds: float = 60.0


BASELINE_MODES = ("learn", "monitor", "off")


@dataclass
class BaselineConfig:
    """Behavioural baselines per workload (podtrail.detect.baseline)."""

    mode: str = "off"  # default mode for a new workload: learn (then monitor), monitor, off
    namespaces: dict[str, str] = field(default_factory=dict)  # namespace -> mode, overrides `mode`
    learn_seconds: float = 86400.0  # learn at least this long ...
    min_events: int = 1000  # ... and at least this many events, then monitor
    state_dir: str = "/var/lib/podtrail/profiles"
    max_items: int = 512  # per list and profile; more is counted as overflow, not learned
    alert_window_seconds: float = 3600.0  # a new item alerts once per window
    max_alerts_per_window: int = 100  # per workload: more new items in one window are counted, not alerted
    sync_seconds: float = 5.0  # write changed profiles, pick up `podtrail profile` edits

    def __post_init__(self) -> None:
        where = "detection.baseline"
        if self.mode not in BASELINE_MODES:
            raise ConfigError(f"{where}.mode: expected one of {', '.join(BASELINE_MODES)}, got {self.mode!r}")
        for ns, m in self.namespaces.items():
            if not isinstance(ns, str) or not ns:
                raise ConfigError(f"{where}.namespaces: namespace names must be non-empty strings, got {ns!r}")
            if m not in BASELINE_MODES:
                raise ConfigError(f"{where}.namespaces.{ns}: expected one of {', '.join(BASELINE_MODES)}, got {m!r}")
        for name in ("learn_seconds", "alert_window_seconds", "sync_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}.{name}: must not be negative, got {getattr(self, name)!r}")
        if self.min_events < 0:
            raise ConfigError(f"{where}.min_events: must not be negative, got {self.min_events!r}")
        if self.max_items < 1:
            raise ConfigError(f"{where}.max_items: must be at least 1, got {self.max_items!r}")
        if self.max_alerts_per_window < 1:
            raise ConfigError(f"{where}.max_alerts_per_window: must be at least 1, got {self.max_alerts_per_window!r}")
        if not self.state_dir:
            raise ConfigError(f"{where}.state_dir: must not be empty")

    def mode_for(self, namespace: str) -> str:
        return self.namespaces.get(namespace, self.mode)


@dataclass
class DetectionConfig:
    """In-agent detection (podtrail.detect): Sigma signatures and correlations on every event."""

    enabled: bool = True
    shipped_rules: bool = True  # the rules in siem_content/sigma
    rule_paths: list[str] = field(default_factory=list)  # more rule files or folders (searched recursively)
    max_groups: int = 10000  # per correlation: group-by keys kept (least recently used evicted)
    max_events_per_group: int = 10000  # per correlation group: matches kept (oldest dropped)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)  # behavioural baselines per workload


@dataclass
class Config:
    sensor: SensorConfig = field(default_factory=SensorConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    osquery: OsqueryConfig = field(default_factory=OsqueryConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    # Each output is a dict with "type" (stdout, syslog, webhook, file) and its own keys;
    # podtrail.outputs validates them. Default: JSON lines on stdout.
    outputs: list[dict[str, Any]] = field(default_factory=lambda: [{"type": "stdout", "format": "json"}])
    spool_dir: str = "/var/lib/podtrail/spool"
    # One agent per node: `podtrail run` holds this lock (with its pid inside) while it runs.
    lock_file: str = "/run/podtrail/agent.lock"


T = TypeVar("T")


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def _coerce(tp: Any, v: Any, where: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, v, where)  # type: ignore[arg-type]
    origin = typing.get_origin(tp)
    if origin is list:
        if not isinstance(v, list):
            raise ConfigError(f"{where}: expected a list, got {type(v).__name__}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_coerce(item, x, f"{where}[{i}]") for i, x in enumerate(v)]
    if origin is dict:
        if not isinstance(v, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(v).__name__}")
        return v
    if origin in (typing.Union, types.UnionType):
        return v
    if tp is Any:
        return v
    if tp is float and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if tp in (int, float, str, bool) and (not isinstance(v, tp) or (tp is int and isinstance(v, bool))):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {v!r}")
    return v


def load(path: str | Path | None) -> Config:
    """Load a YAML config file; ``None`` gives the embedded defaults."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config {p}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1
        raise ConfigError(f"{p}:{line}: not UTF-8 text (byte 0x{e.object[e.start]:02x})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {str(e).splitlines()[0]}") from None
    return from_dict(Config, data)


# -- range checks: every number, port and address, before anything loads ----------------------

Rule = typing.Callable[[Any], "str | None"]


def port(v: Any) -> str | None:
    return None if isinstance(v, int) and 1 <= v <= 65535 else f"a port 1-65535, not {v!r}"


def port_or_zero(v: Any) -> str | None:
    return None if v == 0 else (port(v) and f"a port 1-65535 (0: off), not {v!r}")


def positive(v: Any) -> str | None:
    return None if isinstance(v, int | float) and v > 0 else f"must be > 0, not {v!r}"


def not_negative(v: Any) -> str | None:
    return None if isinstance(v, int | float) and v >= 0 else f"must be >= 0, not {v!r}"


def between(lo: int, hi: int) -> Rule:
    return lambda v: None if isinstance(v, int) and lo <= v <= hi else f"must be {lo}-{hi}, not {v!r}"


def power_of_two(lo: int, hi: int) -> Rule:
    def rule(v: Any) -> str | None:
        ok = isinstance(v, int) and lo <= v <= hi and v & (v - 1) == 0
        return None if ok else f"a power of two {lo}-{hi}, not {v!r}"
    return rule


def ip_address(v: Any) -> str | None:
    try:
        ipaddress.ip_address(v)
        return None
    except ValueError:
        return f"an IP address, not {v!r}"


def host(v: Any) -> str | None:
    if ip_address(v) is None:
        return None
    name = str(v)
    ok = 0 < len(name) <= 253 and all(0 < len(part) <= 63 and part.replace("-", "").replace("_", "").isalnum()
                                      for part in name.rstrip(".").split("."))
    return None if ok else f"a host name or IP address, not {v!r}"


def one_of(*choices: str) -> Rule:
    return lambda v: None if v in choices else f"{', '.join(choices[:-1])} or {choices[-1]}, not {v!r}"


RULES: dict[str, Rule] = {
    "sensor.source": one_of("ebpf", "auditd", "auto"),
    "sensor.argv_max_args": between(1, 128),
    "sensor.argv_max_arg_bytes": between(16, 4096),
    "sensor.ringbuf_pages": power_of_two(1, 1 << 18),
    "sensor.exit_grace_seconds": not_negative,
    "sensor.max_exited_processes": between(1, 1 << 24),
    "audit.input": one_of("plugin", "socket", "log"),
    "audit.event_timeout_seconds": positive,
    "kubernetes.tombstone_seconds": not_negative,
    "kubernetes.pending_seconds": not_negative,
    "kubernetes.pending_max": positive,
    "osquery.events_expiry_seconds": positive,
    "osquery.events_max": positive,
    "metrics.address": ip_address,
    "metrics.port": port,
    "metrics.health_port": port_or_zero,
    "metrics.health_interval_seconds": not_negative,
    "metrics.output_stall_seconds": not_negative,
}

# Keys every output type shares; podtrail.outputs checks the rest (type, format, url).
OUTPUT_RULES: dict[str, Rule] = {
    "host": host,
    "port": port,
    "udp_max_bytes": between(64, 65507),
    "queue_size": positive,
    "spool_max_bytes": positive,
    "batch_max": positive,
    "batch_max_bytes": positive,
    "linger_seconds": not_negative,
    "timeout_seconds": positive,
    "min_severity": between(0, 10),
}

# Files an output reads when it connects: missing ones are a config error now, not a silent
# retry loop later.
OUTPUT_FILES = ("ca_file", "client_cert", "client_key", "auth_value_file")


def check(cfg: Config) -> None:
    """Ranges, signs, addresses and files of a loaded config (after command-line flags);
    the first problem is a ConfigError naming its YAML path."""
    for path, rule in RULES.items():
        section, key = path.split(".")
        problem = rule(getattr(getattr(cfg, section), key))
        if problem:
            raise ConfigError(f"{path}: {problem}")
    if cfg.metrics.enabled and cfg.metrics.port == cfg.metrics.health_port:
        raise ConfigError(f"metrics.health_port: {cfg.metrics.health_port} is also metrics.port")
    for i, spec in enumerate(cfg.outputs):
        where = f"outputs[{i}]"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(spec).__name__}")
        for key, rule in OUTPUT_RULES.items():
            if key in spec:
                problem = rule(spec[key])
                if problem:
                    raise ConfigError(f"{where}.{key}: {problem}")
        for key in OUTPUT_FILES:
            if spec.get(key) and not os.access(spec[key], os.R_OK):
                raise ConfigError(f"{where}.{key}: cannot read {spec[key]}")
