"""A profile as Sigma rules that flag everything outside it, so a SIEM can hold the same
baseline as the agent.

One rule per list (executables, parent -> child pairs, destinations, listening ports, write
directories), in podtrail's canonical field names under ``logsource: product: podtrail``
like the shipped content, so ``podtrail rules`` pipelines convert them for every SIEM. Each
rule selects the workload's events and excludes every learned item. A profile's ``*``
becomes Sigma's ``*``, which (unlike the agent's) also crosses ``/``: the SIEM rule is as
strict or a little more lenient, never stricter.
"""

from __future__ import annotations

import uuid
from typing import Any

import yaml

from podtrail.detect.baseline.alerts import LIST_LEVEL, LIST_TITLE, RULE_PREFIX
from podtrail.detect.baseline.model import Profile
from podtrail.detect.baseline.normalize import (
    DESTINATIONS,
    EXECUTABLES,
    LISTENING_PORTS,
    LISTS,
    PAIR_SEP,
    PROCESS_PAIRS,
    WRITE_ACTIONS,
    WRITE_PREFIXES,
)

_NS = uuid.UUID("6b0f6c2e-3f0e-5a51-9d43-5c1f2b0d7e18")
_CATEGORY = {EXECUTABLES: "process_creation", PROCESS_PAIRS: "process_creation", DESTINATIONS: "network_connection",
             LISTENING_PORTS: "network_connection", WRITE_PREFIXES: "file_event"}


def _value(item: str) -> str:
    """A profile item as a Sigma string: its ``*`` stay wildcards, ``?`` and ``\\`` are literal."""
    return item.replace("\\", "\\\\").replace("?", "\\?")


def _port(s: str) -> int | str:
    return int(s) if s.isdigit() else s


def destination_fields(item: str) -> dict[str, Any]:
    """The event fields a destination item stands for (inverse of ``normalize.destination``)."""
    kind, _, rest = item.partition(":")
    if kind == "unix":
        return {"socket_path": _value(rest)}
    if kind in ("service", "workload", "pod"):
        where, _, port = rest.rpartition(":")
        ns, _, name = where.partition("/")
        return {"remote_namespace": ns, f"remote_{kind}": name, "remote_port": _port(port)}
    addr, _, port = item.rpartition(":")
    return {"remote_address": addr.strip("[]"), "remote_port": _port(port)}


def _workload_selection(p: Profile) -> dict[str, Any]:
    k = p.key
    sel: dict[str, Any] = {"namespace": k.namespace}
    if k.kind == "Pod":
        sel["pod_name"] = k.name
    else:
        sel["workload_name"] = k.name
        if k.kind != "Workload":
            sel["workload_kind"] = k.kind
    if k.cluster:
        sel["cluster_name"] = k.cluster
    return sel


def _known(lst: str, items: list[str]) -> dict[str, Any]:
    """Named selections, each matching events some learned item covers."""
    if not items:
        return {}
    if lst == EXECUTABLES:
        return {"known": {"path": [_value(i) for i in items]}}
    if lst == WRITE_PREFIXES:
        return {"known": {"target_path": [_value(i) + "*" for i in items]}}
    if lst == LISTENING_PORTS:
        out = {}
        for n, i in enumerate(items):
            transport, _, port = i.partition("/")
            out[f"known_{n}"] = {"transport": transport, "local_port": _port(port)}
        return out
    if lst == PROCESS_PAIRS:
        out = {}
        for n, i in enumerate(items):
            parent, _, child = i.partition(PAIR_SEP)
            out[f"known_{n}"] = {"parent_path": _value(parent), "path": _value(child)}
        return out
    return {f"known_{n}": destination_fields(i) for n, i in enumerate(items)}


def rule(p: Profile, lst: str) -> dict[str, Any]:
    v = p.current
    items = sorted(v.items[lst])
    sel = _workload_selection(p)
    if lst in (DESTINATIONS,):
        sel.update(action="connect", direction="outbound")
    elif lst == LISTENING_PORTS:
        sel["action"] = ["listen", "bind"]
    elif lst == WRITE_PREFIXES:
        sel["action"] = sorted(WRITE_ACTIONS)
    known = _known(lst, items)
    cond = "selection"
    if len(known) == 1:
        cond += f" and not {next(iter(known))}"
    elif known:
        cond += " and not 1 of known_*"
    rule_id = uuid.uuid5(_NS, f"{p.key.text}|{v.version}|{lst}")
    return {
        "title": f"{LIST_TITLE[lst]}: {p.key.text}",
        "id": str(rule_id),
        "name": f"{RULE_PREFIX}{lst}_{rule_id.hex[:12]}",
        "status": "experimental",
        "description": (f"Exported podtrail profile of {p.key.text}, version {v.version} (learned since "
                        f"{int(v.created)}): flags {lst.replace('_', ' ')} outside the {len(items)} learned."),
        "author": "podtrail profile export",
        "logsource": {"product": "podtrail", "category": _CATEGORY[lst]},
        "detection": {"selection": sel, **known, "condition": cond},
        "falsepositives": ["Legitimate behaviour the profile did not see while learning"],
        "level": LIST_LEVEL[lst],
    }


def rules(p: Profile) -> list[dict[str, Any]]:
    return [rule(p, lst) for lst in LISTS]


def to_yaml(p: Profile) -> str:
    """Every list's rule, as one multi-document YAML file."""
    return yaml.safe_dump_all(rules(p), sort_keys=False, allow_unicode=True)
