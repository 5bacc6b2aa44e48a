"""The one declaration of every event field.

Each field is declared exactly once here, with its type, meaning, and the name it takes in
every consumer: osquery column, CEF key, LEEF key, ECS JSON path. Tables, formatters,
``docs/fields.md`` and validation are all derived from this list, in the spirit of osquery's
``specs/*.table`` files. Add a field here and every output learns it.

Naming rules:
- ``name`` is podtrail's canonical snake_case key in the event dict.
- ``osquery`` defaults to ``name``; ``None`` means "not a column".
- ``cef``: a standard ArcSight key where one means the same thing, ``cs1``..``cs6`` with
  ``cef_label`` for the six labelled context strings, else a lowerCamel custom key.
- ``leef``: a predefined LEEF key where one exists, else a lowerCamel custom key.
- ``ecs``: the ECS path where ECS has the concept, else ``podtrail.<name>``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final


class FieldType(enum.Enum):
    """Logical value types; each consumer maps them to its own types."""

    TEXT = "text"
    INTEGER = "integer"  # fits in 32 bits
    BIGINT = "bigint"  # 64-bit
    DOUBLE = "double"
    BOOLEAN = "boolean"  # Python bool; osquery INTEGER 0/1
    TIMESTAMP_NS = "timestamp_ns"  # wall clock, ns since the Unix epoch
    JSON = "json"  # list or dict; osquery TEXT holding compact JSON

    @property
    def osquery_type(self) -> str:
        return _OSQUERY_TYPES[self]


_OSQUERY_TYPES: Final = {
    FieldType.TEXT: "TEXT",
    FieldType.INTEGER: "INTEGER",
    FieldType.BIGINT: "BIGINT",
    FieldType.DOUBLE: "DOUBLE",
    FieldType.BOOLEAN: "INTEGER",
    FieldType.TIMESTAMP_NS: "BIGINT",
    FieldType.JSON: "TEXT",
}


class Kind(enum.Enum):
    """Event kinds; each is an osquery evented table and a SIEM event class."""

    PROCESS = "process"
    SOCKET = "socket"
    FILE = "file"
    AGENT = "agent"  # agent health and self-reports
    ALERT = "alert"  # a detection (podtrail.detect) about one or more events above


ALL_KINDS: Final = frozenset(Kind)
ACTIVITY: Final = frozenset({Kind.PROCESS, Kind.SOCKET, Kind.FILE})
P: Final = frozenset({Kind.PROCESS})
S: Final = frozenset({Kind.SOCKET})
F: Final = frozenset({Kind.FILE})
A: Final = frozenset({Kind.ALERT})
# An alert carries its trigger's process, container, pod and ancestry under the same names.
CONTEXT: Final = ACTIVITY | A
PA: Final = P | A

_DEFAULT = "\0default"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: FieldType
    kinds: frozenset[Kind]
    description: str
    osquery: str | None = _DEFAULT
    hidden: bool = False  # osquery HIDDEN column option
    index: bool = False  # osquery INDEX column option (pushed-down constraint)
    cef: str | None = None
    cef_label: str | None = None  # for cs1..cs6 / cn1..cn3
    cef_max: int = 4000  # the CEF spec's maximum value length for the key
    leef: str | None = None
    ecs: str | None = None
    ecs_values: dict[str, str] = field(default_factory=dict)  # value renames for ECS

    def __post_init__(self) -> None:
        if self.osquery == _DEFAULT:
            object.__setattr__(self, "osquery", self.name)

    @property
    def osquery_type(self) -> str:
        return self.type.osquery_type


def _f(
    name: str,
    type_: FieldType,
    kinds: frozenset[Kind],
    description: str,
    **kw: object,
) -> Field:
    return Field(name, type_, kinds, description, **kw)  # type: ignore[arg-type]


T, I, B, D, BOOL, TS, J = (  # noqa: E741 - short names keep the table readable
    FieldType.TEXT,
    FieldType.INTEGER,
    FieldType.BIGINT,
    FieldType.DOUBLE,
    FieldType.BOOLEAN,
    FieldType.TIMESTAMP_NS,
    FieldType.JSON,
)

FIELDS_LIST: Final[tuple[Field, ...]] = (
    # ---- every event -------------------------------------------------------------------
    _f("event_id", T, ALL_KINDS, "Unique id of this event (host-unique, stable across replays) so a SIEM can drop duplicates.",
       osquery="eid", hidden=True, cef="externalId", cef_max=40, leef="eventId", ecs="event.id"),
    _f("event_type", T, ALL_KINDS, "Event kind: process, socket, file, agent or alert.",
       osquery=None, cef="cat", cef_max=1023, leef="cat", ecs="event.category",
       ecs_values={"socket": "network", "agent": "host", "alert": "intrusion_detection"}),
    _f("action", T, ALL_KINDS, "What happened: exec, fork, exit, connect, accept, bind, listen, open, create, write, read, unlink, rename, chmod, truncate, health.",
       index=True, cef="act", cef_max=63, leef="action", ecs="event.action"),
    _f("time", B, ALL_KINDS, "Wall-clock time of the event, seconds since the Unix epoch (osquery's `time`).",
       index=True, cef=None, leef=None, ecs=None),
    _f("time_ns", TS, ALL_KINDS, "Wall-clock time of the event, nanoseconds since the Unix epoch.",
       hidden=True, cef="rt", leef="devTime", ecs="@timestamp"),
    _f("mono_ns", B, ALL_KINDS, "Monotonic kernel time (CLOCK_MONOTONIC / bpf_ktime_get_ns) of the event, ns since boot.",
       osquery="uptime_ns", hidden=True, cef=None, leef=None, ecs="podtrail.mono_ns"),
    _f("severity", I, ALL_KINDS, "Severity 0 (lowest) to 10, mapped from the event's action and flags.",
       cef=None, leef="sev", ecs="event.severity"),
    _f("source", T, ALL_KINDS, "Which sensor produced the event: ebpf, auditd or procfs; detect for alerts (podtrail.detect).",
       cef="sourceServiceName", cef_max=1023, leef="source", ecs="event.provider"),
    _f("hostname", T, ALL_KINDS, "Host name of the node that observed the event.",
       osquery=None, cef="dvchost", cef_max=100, leef="identHostName", ecs="host.hostname"),
    _f("message", T, ALL_KINDS, "Human summary (agent events carry their health report here).",
       osquery=None, cef="msg", cef_max=1023, leef="msg", ecs="message"),
    _f("result", I, ALL_KINDS, "Syscall result: 0 or a count on success, -errno on failure.",
       osquery="status", cef="reason", cef_max=1023, leef="result", ecs="podtrail.result"),
    _f("outcome", T, ALL_KINDS, "success or failure, from `result`.",
       osquery=None, cef="outcome", cef_max=63, leef="outcome", ecs="event.outcome"),
    _f("dropped_before", B, frozenset({Kind.AGENT}), "Agent events: events dropped since the previous health report.",
       osquery=None, cef="cnt", leef="droppedBefore", ecs="podtrail.dropped_before"),
    # ---- process context (every activity event) -------------------------------------------
    _f("pid", I, CONTEXT, "Process (thread group) id as seen from the host PID namespace.",
       index=True, cef="spid", leef="pid", ecs="process.pid"),
    _f("tid", I, CONTEXT, "Thread id.", hidden=True, cef="tid", leef="tid", ecs="process.thread.id"),
    _f("ppid", I, CONTEXT, "Parent process id.",
       osquery="parent", cef="ppid", leef="ppid", ecs="process.parent.pid"),
    _f("process_key", T, CONTEXT, "Stable process identity `pid:start_ns` (pid reuse cannot mix two processes).",
       hidden=True, cef="processKey", leef="processKey", ecs="process.entity_id"),
    _f("parent_key", T, CONTEXT, "process_key of the parent.",
       hidden=True, cef="parentKey", leef="parentKey", ecs="process.parent.entity_id"),
    _f("comm", T, CONTEXT, "Kernel task name (comm, at most 15 bytes).",
       cef="sproc", cef_max=1023, leef="comm", ecs="process.name"),
    _f("path", T, CONTEXT, "Executable path of the process: the name it was exec'd with, made absolute against its cwd (`/bin/mkfifo` even where that links to busybox; `exe_path` is the file run).",
       cef="processPath", leef="processPath", ecs="process.executable"),
    _f("cmdline", T, CONTEXT, "Command line, arguments joined by spaces.",
       cef="cmdline", leef="cmdline", ecs="process.command_line"),
    _f("argv", J, PA, "Arguments as a list (exec only), at most the configured count and size.",
       osquery="json_cmdline", cef=None, leef=None, ecs="process.args"),
    _f("args_truncated", BOOL, P, "True when argv was cut to the configured count or size.",
       cef="argsTruncated", leef="argsTruncated", ecs="process.args_truncated"),
    _f("stdin", T, PA, "What standard input was at exec, read in the kernel: tty, socket, pipe, null, file, other, closed; empty when unknown (a reverse shell's is a socket, `kubectl exec -it`'s a tty).",
       osquery="stdin_type", cef="stdinType", leef="stdinType", ecs="podtrail.stdin"),
    _f("stdout", T, PA, "What standard output was at exec (same kinds as stdin).",
       osquery="stdout_type", cef="stdoutType", leef="stdoutType", ecs="podtrail.stdout"),
    _f("stderr", T, PA, "What standard error was at exec (same kinds as stdin).",
       osquery="stderr_type", cef="stderrType", leef="stderrType", ecs="podtrail.stderr"),
    _f("tty", T, PA, "Controlling terminal at exec (pts/0, tty1, console); empty without one.",
       cef="tty", leef="tty", ecs="podtrail.tty"),
    _f("exe_path", T, PA, "The file the kernel actually ran, links resolved, as seen from the process's own root (`/bin/busybox` for `/bin/mkfifo`); `path` is the name it was called with.",
       cef="exePath", leef="exePath", ecs="podtrail.exe.path"),
    _f("exe_inode", B, P, "Inode number of exe_path (what drift tracking keys on).",
       cef="exeInode", leef="exeInode", ecs="podtrail.exe.inode"),
    _f("exe_dev", B, P, "Device number of exe_path's filesystem, as stat(2) reports st_dev.",
       cef="exeDev", leef="exeDev", ecs="podtrail.exe.dev"),
    _f("exe_outside", BOOL, P, "True when the executable is not under the process's root (a memfd, a runtime's own binary) or its path was cut.",
       cef="exeOutside", leef="exeOutside", ecs="podtrail.exe.outside"),
    _f("start_ns", B, P, "Task start time, ns since boot (kernel start_boottime): with pid, the process key.",
       hidden=True, cef="startNs", leef="startNs", ecs="podtrail.start_ns"),
    _f("cwd", T, CONTEXT, "Working directory of the process as seen inside its own root (a container's view), when known.",
       cef="cwd", leef="cwd", ecs="process.working_directory"),
    _f("cwd_truncated", BOOL, P, "True when cwd (exec, fork, exit) was cut (deeper than 32 components or longer than 1 KiB) or is not under the process's root.",
       cef="cwdTruncated", leef="cwdTruncated", ecs="podtrail.cwd_truncated"),
    _f("uid", I, CONTEXT, "Real user id.", index=True, cef="suid", cef_max=1023, leef="uid", ecs="user.id"),
    _f("gid", I, CONTEXT, "Real group id.", cef="sgid", leef="gid", ecs="group.id"),
    _f("user", T, CONTEXT, "User name for uid, from the container's own /etc/passwd when in a container.",
       osquery="username", cef="suser", cef_max=1023, leef="usrName", ecs="user.name"),
    _f("auid", I, CONTEXT, "Audit (login) user id, 4294967295 when unset.",
       cef="auid", leef="auid", ecs="user.audit.id"),
    _f("euid", I, P, "Effective user id at exec.", cef="euid", leef="euid", ecs="user.effective.id"),
    _f("session_id", B, P, "Audit session id, 4294967295 when unset.",
       cef="sessionId", leef="sessionId", ecs="podtrail.session_id"),
    _f("cap_effective", B, P, "Effective capability set at exec, as a bit mask (CAP_SYS_ADMIN is bit 21): privilege as a fact of the process.",
       cef="capEffective", leef="capEffective", ecs="podtrail.cap_effective"),
    _f("mnt_ns", B, P, "Mount namespace inode of the process (which filesystem view it has).",
       cef="mntNs", leef="mntNs", ecs="podtrail.ns.mnt"),
    _f("pid_ns", B, P, "PID namespace inode of the process.", cef="pidNs", leef="pidNs", ecs="podtrail.ns.pid"),
    _f("net_ns", B, P, "Network namespace inode of the process.", cef="netNs", leef="netNs", ecs="podtrail.ns.net"),
    _f("runtime_setup", BOOL, CONTEXT, "The container runtime's own setup (runc/crun/youki init stages before the workload's first exec), not container activity; its paths are the host's.",
       cef="runtimeSetup", leef="runtimeSetup", ecs="podtrail.runtime_setup"),
    _f("exit_code", I, P, "Exit status (exit events): the code, or 128+signal when killed.",
       cef="exitCode", leef="exitCode", ecs="process.exit_code"),
    _f("fork_folded", BOOL, P, "Exec: the fork that created this process was not sent as an event of its own; this exec carries its facts (ppid as at the fork, start_ns). See 'Fewer crossings' below.",
       cef="forkFolded", leef="forkFolded", ecs="podtrail.fork_folded"),
    _f("parent_path", T, CONTEXT, "Executable path of the parent.",
       cef="parentPath", leef="parentPath", ecs="process.parent.executable"),
    _f("parent_cmdline", T, CONTEXT, "Command line of the parent.",
       cef="parentCmdline", leef="parentCmdline", ecs="process.parent.command_line"),
    _f("ancestors", J, CONTEXT, "Up to 5 ancestors above the parent, nearest first: [{pid, path, cmdline}].",
       cef="ancestors", leef="ancestors", ecs="podtrail.ancestors"),
    _f("drift", BOOL, PA, "Exec of a binary created or modified inside the container after it started, or run from memfd or /dev/shm.",
       cef="drift", leef="drift", ecs="podtrail.drift"),
    _f("drift_reason", T, PA, "Why `drift` is set: created_in_container, modified_in_container, memfd or dev_shm.",
       cef="driftReason", leef="driftReason", ecs="podtrail.drift_reason"),
    # ---- container and Kubernetes context (every activity event) ----------------------------
    _f("cgroup_id", B, CONTEXT, "cgroup v2 id of the task (inode of its cgroup directory).",
       hidden=True, cef="cgroupId", leef="cgroupId", ecs="podtrail.cgroup_id"),
    _f("cgroup_path", T, CONTEXT, "cgroup v2 path of the task, relative to the cgroup2 mount.",
       hidden=True, cef="cgroupPath", leef="cgroupPath", ecs="podtrail.cgroup_path"),
    _f("container_id", T, CONTEXT, "Full 64-hex container id; empty for host processes.",
       index=True, cef="cs4", cef_label="containerId", leef="containerId", ecs="container.id"),
    _f("container_runtime", T, CONTEXT, "Container runtime from the cgroup path: docker, containerd, cri-o, podman, cri-dockerd, kubelet.",
       cef="containerRuntime", leef="containerRuntime", ecs="container.runtime"),
    _f("container_id_method", T, CONTEXT, "How the container was found: cgroup_id (eBPF cgroup v2 id) or proc_cgroup (/proc/<pid>/cgroup).",
       hidden=True, cef="containerIdMethod", leef="containerIdMethod", ecs="podtrail.container_id_method"),
    _f("container_name", T, CONTEXT, "Container name in its pod.",
       cef="containerName", leef="containerName", ecs="container.name"),
    _f("image", T, CONTEXT, "Container image reference.",
       cef="cs5", cef_label="image", leef="image", ecs="container.image.name"),
    _f("image_digest", T, CONTEXT, "Container image digest (sha256:...).",
       cef="imageDigest", leef="imageDigest", ecs="container.image.hash.all"),
    _f("privileged", BOOL, CONTEXT, "The container runs privileged.",
       cef="privileged", leef="privileged", ecs="podtrail.privileged"),
    _f("pod_name", T, CONTEXT, "Kubernetes pod name.",
       index=True, cef="cs3", cef_label="pod", leef="podName", ecs="orchestrator.resource.name"),
    _f("pod_uid", T, CONTEXT, "Kubernetes pod UID (from the cgroup path even without API access).",
       index=True, cef="podUid", leef="podUid", ecs="orchestrator.resource.id"),
    _f("namespace", T, CONTEXT, "Kubernetes namespace of the pod.",
       index=True, cef="cs2", cef_label="namespace", leef="namespace", ecs="orchestrator.namespace"),
    _f("qos_class", T, CONTEXT, "Pod QoS class from the cgroup path: guaranteed, burstable or besteffort.",
       cef="qosClass", leef="qosClass", ecs="podtrail.qos_class"),
    _f("workload_kind", T, CONTEXT, "Controller kind: Deployment, StatefulSet, DaemonSet, CronJob, Job, ReplicaSet, or empty.",
       cef="workloadKind", leef="workloadKind", ecs="podtrail.workload.kind"),
    _f("workload_name", T, CONTEXT, "Controller name (Deployment for a ReplicaSet's pods, CronJob for a Job's).",
       cef="cs6", cef_label="workload", leef="workload", ecs="podtrail.workload.name"),
    _f("service_account", T, CONTEXT, "Pod service account.",
       cef="serviceAccount", leef="serviceAccount", ecs="podtrail.service_account"),
    _f("pod_labels", J, CONTEXT, "Selected pod labels (configured allow-list) as an object.",
       cef="podLabels", leef="podLabels", ecs="orchestrator.resource.label"),
    _f("pod_ips", J, CONTEXT, "Pod IP addresses.", cef="podIps", leef="podIps", ecs="podtrail.pod_ips"),
    _f("host_network", BOOL, CONTEXT, "The pod uses the host network namespace.",
       cef="hostNetwork", leef="hostNetwork", ecs="podtrail.host_network"),
    _f("host_pid", BOOL, CONTEXT, "The pod uses the host PID namespace.",
       cef="hostPid", leef="hostPid", ecs="podtrail.host_pid"),
    _f("node_name", T, ALL_KINDS, "Kubernetes node name (NODE_NAME), else the host name.",
       cef="nodeName", leef="nodeName", ecs="host.name"),
    _f("cluster_name", T, ALL_KINDS, "Configured cluster name.",
       cef="cs1", cef_label="cluster", leef="cluster", ecs="orchestrator.cluster.name"),
    _f("metadata_source", T, CONTEXT, "Which source filled the pod metadata: api, pod_logs, cgroup, or empty for host processes.",
       cef="metadataSource", leef="metadataSource", ecs="podtrail.metadata_source"),
    _f("metadata_missing", BOOL, CONTEXT, "A container event whose pod metadata could not be found in time.",
       cef="metadataMissing", leef="metadataMissing", ecs="podtrail.metadata_missing"),
    # ---- socket events ----------------------------------------------------------------------
    _f("family", I, S, "Address family: 2 (AF_INET), 10 (AF_INET6), 1 (AF_UNIX).",
       cef="family", leef="family", ecs="podtrail.family"),
    _f("protocol", I, S, "IP protocol number: 6 (TCP), 17 (UDP), 0 when unknown.",
       cef="protocol", leef="protocol", ecs="network.iana_number"),
    _f("transport", T, S, "tcp, udp or unix.", osquery=None, cef="proto", cef_max=31, leef="proto", ecs="network.transport"),
    _f("direction", T, S, "outbound (connect), inbound (accept), or listening (bind, listen).",
       cef="direction", leef="direction", ecs="network.direction"),
    _f("fd", I, S | F, "File descriptor the syscall used, when known.", cef="fd", leef="fd", ecs="podtrail.fd"),
    _f("local_address", T, S, "Local IP address.", cef="localAddress", leef="localAddress", ecs="podtrail.local.address"),
    _f("local_port", I, S, "Local port.", cef="localPort", leef="localPort", ecs="podtrail.local.port"),
    _f("remote_address", T, S, "Remote IP address.", index=True, cef="remoteAddress", leef="remoteAddress", ecs="podtrail.remote.address"),
    _f("remote_port", I, S, "Remote port.", cef="remotePort", leef="remotePort", ecs="podtrail.remote.port"),
    _f("src_address", T, S, "Initiator address (remote for inbound, local for outbound).",
       osquery=None, cef="src", leef="src", ecs="source.ip"),
    _f("src_port", I, S, "Initiator port.", osquery=None, cef="spt", leef="srcPort", ecs="source.port"),
    _f("dst_address", T, S, "Responder address (local for inbound, remote for outbound).",
       osquery=None, cef="dst", leef="dst", ecs="destination.ip"),
    _f("dst_port", I, S, "Responder port.", osquery=None, cef="dpt", leef="dstPort", ecs="destination.port"),
    _f("socket_path", T, S, "Path of a unix socket.", osquery="socket", cef="socketPath", leef="socketPath", ecs="podtrail.socket_path"),
    _f("remote_pod", T, S, "Pod that held the remote address at the event's time.",
       cef="remotePod", leef="remotePod", ecs="podtrail.remote.pod"),
    _f("remote_namespace", T, S, "Namespace of the remote pod or service.",
       cef="remoteNamespace", leef="remoteNamespace", ecs="podtrail.remote.namespace"),
    _f("remote_workload", T, S, "Workload (Kind/name) of the remote pod.",
       cef="remoteWorkload", leef="remoteWorkload", ecs="podtrail.remote.workload"),
    _f("remote_service", T, S, "Service whose cluster IP is the remote address.",
       cef="remoteService", leef="remoteService", ecs="podtrail.remote.service"),
    _f("repeat_count", I, S, "How many identical socket events this one stands for (itself included; absent means 1): the same process, action, family, protocol and result to the same service end within the repeat window were counted in the kernel, not sent. See 'Fewer crossings' below.",
       cef="repeatCount", leef="repeatCount", ecs="podtrail.repeat_count"),
    # ---- file events --------------------------------------------------------------------------
    _f("target_path", T, F, "Path of the file acted on, absolute when it could be resolved.",
       index=True, cef="filePath", cef_max=1023, leef="filePath", ecs="file.path"),
    _f("file_name", T, F, "Last path component of target_path.", osquery=None, cef="fname", cef_max=1023, leef="fileName", ecs="file.name"),
    _f("old_path", T, F, "Previous path (rename).", cef="oldFilePath", cef_max=1023, leef="oldFilePath", ecs="podtrail.file.old_path"),
    _f("flags", I, F, "open(2) flags.", cef="openFlags", leef="openFlags", ecs="podtrail.file.flags"),
    _f("mode", I, F, "File mode (create, chmod).", cef="fileMode", leef="fileMode", ecs="file.mode"),
    _f("path_unresolved", BOOL, F, "True when the path is not the process's full view: the kernel's walk to its root was cut (depth/length bound) or the file lies outside its root.",
       cef="pathUnresolved", leef="pathUnresolved", ecs="podtrail.file.path_unresolved"),
    _f("sensitive", T, S | F, "Sensitive-file category matched (shadow, ssh_key, sa_token, ...; runtime_socket for a unix connect to a container runtime socket), empty otherwise.",
       cef="sensitive", leef="sensitive", ecs="podtrail.file.sensitive"),
    # ---- alerts (podtrail.detect; the trigger's context is in the context fields above) -------
    _f("rule_id", T, A, "Id of the rule that fired (a Sigma rule's `id`; a baseline profile's rule id for behaviour alerts).",
       index=True, cef="ruleId", leef="ruleId", ecs="rule.id"),
    _f("rule_title", T, A, "Title of the rule that fired (also the CEF header's name).",
       cef="ruleTitle", cef_max=1023, leef="ruleTitle", ecs="rule.name"),
    _f("rule_level", T, A, "Rule level: informational, low, medium, high or critical; `severity` follows it (podtrail.detect.alert.LEVEL_SEVERITY).",
       index=True, cef="ruleLevel", cef_max=63, leef="ruleLevel", ecs="podtrail.rule.level"),
    _f("rule_status", T, A, "Rule maturity: stable, test, experimental, deprecated or unsupported.",
       cef="ruleStatus", cef_max=63, leef="ruleStatus", ecs="podtrail.rule.status"),
    _f("detection_kind", T, A, "How it was detected: signature (one event), correlation (several events over time) or behavior (deviation from a learned baseline).",
       index=True, cef="detectionKind", cef_max=63, leef="detectionKind", ecs="rule.category"),
    _f("tactics", J, A, "MITRE ATT&CK tactics from the rule's tags (e.g. execution, command-and-control).",
       cef="tactics", leef="tactics", ecs="threat.tactic.name"),
    _f("techniques", J, A, "MITRE ATT&CK technique ids from the rule's tags (e.g. T1059.004).",
       cef="techniques", leef="techniques", ecs="threat.technique.id"),
    _f("trigger_ids", J, A, "event_id of every event that made the rule fire, oldest first (the alert's own event follows them).",
       cef="triggerIds", leef="triggerIds", ecs="podtrail.trigger_ids"),
    _f("findings", J, A, "What the detector found, as an object: a signature's matched field values, a correlation's group and count, a baseline's new item, list and profile.",
       cef="findings", leef="findings", ecs="podtrail.findings"),
)

FIELDS: Final[dict[str, Field]] = {f.name: f for f in FIELDS_LIST}

# What the sensors do not send one by one, and how held samples are sent otherwise: the
# outcomes of the metric podtrail_kernel_reductions_total{program, outcome}. Nothing here is
# lost: each is either carried by another event or sent later.
KERNEL_REDUCTIONS: Final[tuple[tuple[str, str, str], ...]] = (
    ("fork_folded", "ebpf-process",
     "A fork (new process, not a thread) is held in the kernel; when the child execs, the exec carries its facts "
     "(`fork_folded`, ppid as at the fork, start_ns) and no `fork` event is sent. A child that exits without exec'ing "
     "gets its `fork` just before its `exit`; one that forks first gets it before its child's; a failed exec (a PATH "
     "search) takes it like a successful one."),
    ("fork_sent_late", "ebpf-process",
     "A held fork whose child neither exec'd nor exited within 100 ms: reported by the agent's sweep while the child "
     "lives, with the fork's own time (events of that child from other sensors may precede it)."),
    ("fork_map_full", "ebpf-process",
     "The kernel's map of held forks was full: the fork was sent at once, as without folding."),
    ("socket_repeats", "ebpf-socket",
     "A socket event identical to one sent shortly before by the same process (same action, family, protocol, result, "
     "remote end for connect, local end for bind/listen/accept, unix path), counted in the kernel instead of sent; the "
     "next such event sent, or the flush at the end of the window, carries the count in `repeat_count`. What differs "
     "between the repeats (their ephemeral ports, fds and times) is not reported."),
)


def fields_for(kind: Kind) -> tuple[Field, ...]:
    """The fields an event of ``kind`` may carry, in declaration order."""
    return _BY_KIND[kind]


_BY_KIND: Final = {k: tuple(f for f in FIELDS_LIST if k in f.kinds) for k in Kind}


# ---- the generic Sigma taxonomy (SigmaHQ's `product: linux` rules) ------------------------------
# Generic field name -> canonical field, so community rules run as they are: in the agent
# (podtrail.detect) and in every SIEM (podtrail.rules.pipeline). A generic name missing here has
# no podtrail counterpart, and a rule using it is reported unusable (`podtrail rules check`).
SIGMA_TAXONOMY: Final[dict[str, str]] = {
    "Image": "path",
    "CommandLine": "cmdline",
    "ParentImage": "parent_path",
    "ParentCommandLine": "parent_cmdline",
    "User": "user",
    "CurrentDirectory": "cwd",
    "ProcessId": "pid",
    "ParentProcessId": "ppid",
    "ProcessGuid": "process_key",
    "ParentProcessGuid": "parent_key",
    "TargetFilename": "target_path",
    "DestinationIp": "dst_address",
    "DestinationPort": "dst_port",
    "SourceIp": "src_address",
    "SourcePort": "src_port",
    "Protocol": "transport",
    "Initiated": "direction",  # values too: 'true' -> outbound, 'false' -> inbound
}
SIGMA_VALUES: Final[dict[str, dict[str, str]]] = {"Initiated": {"true": "outbound", "false": "inbound"}}
# Generic names that exist in the taxonomy but mean nothing podtrail observes, with the reason.
SIGMA_UNMAPPED: Final[dict[str, str]] = {
    "OriginalFileName": "a PE header field (the name a Windows binary was built as); Linux executables carry none",
    "LogonId": "a Windows logon session id; podtrail records the login uid (auid), which is not a session",
    "DestinationHostname": "podtrail sees connections by address, not by the host name resolved before them",
    "SourceHostname": "podtrail sees connections by address, not by host name",
    "Hashes": "podtrail does not hash executables",
    "IntegrityLevel": "a Windows integrity level",
}
