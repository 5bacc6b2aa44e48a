"""osquery table schemas, derived from the one field declaration (podtrail.model.fields).

Evented tables take every field of their kind that has an osquery column, with the column
options osquery understands (INDEX=1, REQUIRED=2, ADDITIONAL=4, OPTIMIZED=8, HIDDEN=16), so
osqueryd plans queries knowing which constraints podtrail pushes down. State tables name
their columns here, reusing declared fields where the meaning is the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from podtrail.detect.baseline.normalize import LISTS as PROFILE_LISTS
from podtrail.model.fields import FIELDS, FieldType, Kind, fields_for

INDEX, REQUIRED, ADDITIONAL, OPTIMIZED, HIDDEN = 1, 2, 4, 8, 16


@dataclass(frozen=True, slots=True)
class Column:
    name: str  # osquery column name
    type: str  # TEXT, INTEGER, BIGINT, DOUBLE
    options: int
    key: str  # the canonical field (or state attribute) it reads
    json: bool = False  # value is a list/dict rendered as compact JSON


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    description: str
    kind: Kind | None = None  # evented tables: the event kind they buffer

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


def _field_column(name: str) -> Column:
    f = FIELDS[name]
    assert f.osquery is not None, name
    opts = (INDEX if f.index else 0) | (HIDDEN if f.hidden else 0)
    return Column(f.osquery, f.osquery_type, opts, f.name, f.type is FieldType.JSON)


def event_table(name: str, kind: Kind, description: str) -> TableSpec:
    cols = tuple(_field_column(f.name) for f in fields_for(kind) if f.osquery)
    return TableSpec(name, cols, description, kind)


def _state(name: str, description: str, cols: list[str | Column]) -> TableSpec:
    return TableSpec(name, tuple(c if isinstance(c, Column) else _field_column(c) for c in cols), description)


CONTAINER_CONTEXT = ["container_id", "container_runtime", "pod_uid", "pod_name", "namespace", "container_name",
                     "image", "workload_kind", "workload_name"]

TABLES: dict[str, TableSpec] = {t.name: t for t in (
    event_table("container_process_events", Kind.PROCESS, "Process exec/fork/exit events with container and pod context."
                " Host processes' events too (container_id empty) unless the agent runs with --containers-only."),
    event_table("container_socket_events", Kind.SOCKET, "Socket connect/accept/bind/listen events with container and pod context."
                " Host processes' events too (container_id empty) unless the agent runs with --containers-only."),
    event_table("container_file_events", Kind.FILE, "File writes, creates, deletes, renames, chmods and sensitive reads with container context."
                " Host processes' events too (container_id empty) unless the agent runs with --containers-only."),
    event_table("container_alerts", Kind.ALERT, "Alerts from in-agent detection (Sigma signatures, correlations, baselines) with the trigger's process, container and pod."),
    _state("container_processes", "Running processes known to the agent, with container and pod context.",
           ["pid", "ppid", "path", "cmdline", "cwd", "uid", "comm", "process_key", *CONTAINER_CONTEXT, "cgroup_path"]),
    _state("containers", "Containers seen on this node (from cgroups) with their pod, when known.",
           ["container_id", "container_runtime", "pod_uid", "qos_class", "cgroup_path",
            Column("first_seen", "BIGINT", 0, "first_seen"), Column("last_seen", "BIGINT", 0, "last_seen"),
            "pod_name", "namespace", "container_name", "image", "image_digest", "privileged", "workload_kind", "workload_name"]),
    _state("pods", "Pods on this node from the Kubernetes cache (deleted pods while their tombstone lasts).",
           ["pod_uid", "pod_name", "namespace", "node_name", "service_account", "workload_kind", "workload_name",
            "pod_ips", "host_network", "host_pid", "pod_labels", Column("deleted", "INTEGER", 0, "deleted")]),
    _state("container_profiles", "Behavioural baselines: one row per workload profile (mode, version, learned counts, last change).",
           [Column("workload", "TEXT", INDEX, "workload"), "cluster_name", "namespace", "workload_kind", "workload_name",
            Column("mode", "TEXT", 0, "mode"), Column("pinned", "INTEGER", 0, "pinned"), Column("version", "INTEGER", 0, "version"),
            "image_digest", Column("learned_since", "BIGINT", 0, "learned_since"),
            Column("monitor_since", "BIGINT", 0, "monitor_since"), Column("events", "BIGINT", 0, "events"),
            *(Column(n, "INTEGER", 0, n) for n in PROFILE_LISTS), Column("overflow", "INTEGER", 0, "overflow"),
            Column("previous_versions", "INTEGER", 0, "previous_versions"), Column("last_change", "BIGINT", 0, "last_change")]),
)}
