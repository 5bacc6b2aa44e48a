"""Every modifier the agent claims to support gives the verdict of pySigma's SQLite backend on the
same event (podtrail.rules.evaluate: the SIEM-side semantics), over events chosen to sit on each
modifier's edges: case, absent and empty fields, numbers as text, JSON fields, NOT of an absent
field. Rules written here in podtrail's and in the generic taxonomy."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from podtrail.detect.engine import Engine
from podtrail.detect.ruleset import load_texts
from podtrail.rules.catalog import RuleFile
from podtrail.rules.evaluate import evaluate

CID = "d" * 64

DETECTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "plain_case": ("podtrail", {"s": {"comm": "Bash"}, "condition": "s"}),
    "wildcards": ("podtrail", {"s": {"cmdline": "curl *|?sh*"}, "condition": "s"}),
    "contains_all": ("linux", {"s": {"CommandLine|contains|all": ["-o", "/tmp/"]}, "condition": "s"}),
    "startswith_endswith": ("linux", {"a": {"Image|startswith": "/usr/"}, "b": {"Image|endswith": ["/python3", "/perl"]},
                                      "condition": "a and b"}),
    "re_flags": ("linux", {"s": {"CommandLine|re|i": r"BASE64\s+-d"}, "condition": "s"}),
    "re_case": ("linux", {"s": {"CommandLine|re": r"^sh -c [A-Z]"}, "condition": "s"}),
    "cidr": ("linux", {"s": {"DestinationIp|cidr": ["10.0.0.0/8", "fd00::/8"]}, "condition": "s"}),
    "windash": ("linux", {"s": {"CommandLine|windash|contains": " -enc "}, "condition": "s"}),
    "base64": ("linux", {"s": {"CommandLine|base64|contains": "id;"}, "condition": "s"}),
    "base64offset": ("linux", {"s": {"CommandLine|base64offset|contains": "/bin/sh"}, "condition": "s"}),
    "cased": ("podtrail", {"s": {"cmdline|cased|contains": "XMRig"}, "condition": "s"}),
    "exists": ("podtrail", {"s": {"stdin|exists": True}, "t": {"cwd|exists": False}, "condition": "s and t"}),
    "numbers": ("podtrail", {"s": {"uid|lt": 1000, "remote_port|gte": 1024}, "condition": "s"}),
    "number_as_text": ("podtrail", {"s": {"uid": "0"}, "condition": "s"}),
    "fieldref": ("podtrail", {"s": {"cmdline|fieldref": "path"}, "condition": "s"}),
    "not_absent": ("podtrail", {"s": {"comm": "sh"}, "f": {"parent_path": "/usr/sbin/cron"}, "condition": "s and not f"}),
    "null": ("podtrail", {"s": {"comm": "sh", "user": None}, "condition": "s"}),
    "json_field": ("podtrail", {"s": {"ancestors|contains": '"path":"/usr/sbin/nginx"'}, "condition": "s"}),
    "bool_field": ("podtrail", {"s": {"drift": True}, "condition": "s"}),
    "one_of": ("podtrail", {"sel_a": {"comm": "nc"}, "sel_b": {"comm": "ncat"}, "condition": "1 of sel_*"}),
    "all_of": ("podtrail", {"sel_a": {"comm|startswith": "n"}, "sel_b": {"comm|endswith": "c"}, "condition": "all of sel_*"}),
}

EVENTS: list[dict[str, Any]] = [
    {"comm": "bash", "path": "/bin/bash", "cmdline": "bash", "uid": 0},
    {"comm": "BASH", "path": "/bin/BASH", "cmdline": "BASH -i", "uid": 1000, "stdin": "tty"},
    {"comm": "sh", "path": "/bin/sh", "cmdline": "curl -s http://x |bsh -s", "user": "", "uid": 33},
    {"comm": "curl", "path": "/usr/bin/curl", "cmdline": "curl -o /tmp/x http://y", "cwd": "/"},
    {"comm": "python3", "path": "/usr/bin/python3", "cmdline": "python3 -c 'import os'", "stdin": "pipe"},
    {"comm": "perl", "path": "/usr/local/bin/perl", "cmdline": "perl -e 1"},
    {"comm": "sh", "path": "/bin/sh", "cmdline": "sh -c echo aWQ7IHVuYW1lIC1h | base64 -D", "parent_path": "/usr/sbin/cron"},
    {"comm": "sh", "path": "/bin/sh", "cmdline": "sh -c Base64  -d x", "parent_path": "/usr/sbin/nginx",
     "ancestors": [{"pid": 1, "path": "/usr/sbin/nginx", "cmdline": "nginx"}]},
    {"comm": "pwsh", "path": "/opt/pwsh", "cmdline": "pwsh /enc AAA", "drift": True},
    {"comm": "pwsh", "path": "/opt/pwsh", "cmdline": "pwsh -enc AAA", "drift": False},
    {"comm": "x", "path": "/tmp/x", "cmdline": "/tmp/x L2Jpbi9zaA== Y29tbWFuZCAvYmluL3No", "stdin": ""},
    {"comm": "xmrig", "path": "/tmp/xmrig", "cmdline": "xmrig --XMRig", "uid": "12"},
    {"comm": "xmrig", "path": "/tmp/xmrig", "cmdline": "xmrig --xmrig"},
    {"comm": "nc", "path": "/bin/nc", "cmdline": "/bin/nc"},
    {"comm": "ncat", "path": "/usr/bin/ncat", "cmdline": "ncat"},
    {"event_type": "socket", "action": "connect", "comm": "nc", "path": "/bin/nc", "direction": "outbound",
     "dst_address": "10.1.2.3", "remote_port": 4444, "uid": 0},
    {"event_type": "socket", "action": "connect", "comm": "nc", "path": "/bin/nc", "direction": "outbound",
     "dst_address": "fd00::1", "remote_port": 80, "uid": 999},
    {"event_type": "socket", "action": "connect", "comm": "nc", "path": "/bin/nc", "direction": "outbound",
     "dst_address": "192.168.1.1", "remote_port": 1024, "uid": 1001},
]


def _rule(name: str, product: str, detection: dict[str, Any]) -> dict[str, Any]:
    category = "network_connection" if name in ("cidr", "numbers") else "process_creation"
    return {"title": name, "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"podtrail-test/{name}")), "name": f"t_{name}",
            "status": "test", "level": "low", "logsource": {"product": product, "category": category},
            "detection": detection}


def _event(i: int, partial: dict[str, Any]) -> dict[str, Any]:
    ev = {"event_type": "process", "action": "exec", "container_id": CID, "event_id": f"m-{i}", "time": 1_790_000_000 + i}
    ev.update(partial)
    return ev


@pytest.mark.parametrize("name", sorted(DETECTIONS))
def test_modifier_verdicts_equal_sqlite(name: str, tmp_path: Path) -> None:
    product, det = DETECTIONS[name]
    doc = _rule(name, product, det)
    text = yaml.safe_dump(doc, sort_keys=False)
    path = tmp_path / f"{name}.yml"
    path.write_text(text)
    rules = load_texts([(str(path), text)])
    assert not rules.problems, rules.problems
    rf = RuleFile(path, doc["name"], "alert", doc)
    verdicts = []
    for i, partial in enumerate(EVENTS):
        ev = _event(i, partial)
        sqlite = bool(evaluate([ev], files=[rf]))
        agent = bool(Engine(rules).process(dict(ev)))
        assert agent == sqlite, f"{name}: agent {agent}, SQLite {sqlite} on {ev}"
        verdicts.append(agent)
    assert any(verdicts) and not all(verdicts), f"{name}: the events do not exercise it ({verdicts})"


def test_every_pair_of_events_is_independent() -> None:
    """A rule's state never leaks between events: the same verdicts in any order (signatures)."""
    docs = [_rule(n, p, d) for n, (p, d) in DETECTIONS.items()]
    rules = load_texts([(f"{d['name']}.yml", yaml.safe_dump(d)) for d in docs])
    events = [_event(i, e) for i, e in enumerate(EVENTS)]
    alone = {e["event_id"]: sorted(a["rule_id"] for a in Engine(rules).process(dict(e))) for e in events}
    engine = Engine(rules)
    for a, b in itertools.permutations(events[:8], 2):
        for e in (a, b):
            assert sorted(x["rule_id"] for x in engine.process(dict(e))) == alone[e["event_id"]]
