"""Where each SIEM finds podtrail's fields: one table derived from the field declaration.

Rules are written in podtrail's canonical field names under ``logsource: product: podtrail``
with one of three categories. A target says which declared name the SIEM sees (CEF key for
Splunk, ECS path for Elastic, LEEF key for QRadar, the canonical name for SQLite) and how a
log-source category becomes a condition there. Pure data: no pySigma import.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from podtrail.model.fields import FIELDS, Field, Kind

PRODUCT = "podtrail"
# log-source category -> (event kind, canonical conditions)
CATEGORIES: dict[str, tuple[Kind, dict[str, str]]] = {
    "process_creation": (Kind.PROCESS, {"event_type": "process", "action": "exec"}),
    "network_connection": (Kind.SOCKET, {"event_type": "socket"}),
    "file_event": (Kind.FILE, {"event_type": "file"}),
}


@dataclass(frozen=True)
class Target:
    name: str
    attr: str  # which Field attribute names the field in this SIEM
    extra_conditions: dict[str, str] = field(default_factory=dict)  # added to every rule, target names
    value_renames: bool = False  # apply Field.ecs_values
    state: dict[str, str] = field(default_factory=dict)  # pySigma processing state (ES|QL index)

    def field_name(self, name: str) -> str:
        f = FIELDS.get(name)
        if f is None:
            raise KeyError(f"unknown podtrail field {name!r}")
        mapped = name if self.attr == "name" else getattr(f, self.attr)
        if not mapped:
            raise KeyError(f"podtrail field {name!r} has no {self.attr} name, so {self.name} cannot see it")
        return str(mapped)

    def value(self, f: Field, v: str) -> str:
        return f.ecs_values.get(v, v) if self.value_renames else v

    def field_mapping(self) -> dict[str, str]:
        """canonical -> target name, for every field this target can see."""
        out = {}
        for name in FIELDS:
            try:
                out[name] = self.field_name(name)
            except KeyError:
                continue
        return out

    def category_conditions(self, category: str) -> dict[str, str]:
        _, conds = CATEGORIES[category]
        out = dict(self.extra_conditions)
        for k, v in conds.items():
            out[self.field_name(k)] = self.value(FIELDS[k], v)
        return out


ELASTIC_INDEX = "podtrail-*"
SPLUNK = Target("splunk", "cef", {"sourcetype": "podtrail:cef"})
ELASTIC = Target("elastic", "ecs", value_renames=True, state={"index": ELASTIC_INDEX})
# QRadar: the LEEF events arrive on a log source of a custom type named "podtrail"; each LEEF
# key a rule uses is a custom event property of that name (siem_content/qradar lists them).
QRADAR = Target("qradar", "leef", {"LOGSOURCETYPENAME(devicetype)": "podtrail"})
SQLITE = Target("sqlite", "name")
TARGETS = {t.name: t for t in (SPLUNK, ELASTIC, QRADAR, SQLITE)}
