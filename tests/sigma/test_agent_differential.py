"""The agent's streaming evaluation agrees with pySigma's SQLite backend on every rule case.

For each case of ``siem_content/sigma/tests/cases.yml`` (match, near miss and known issue alike)
the rule and the rules it references are compiled by ``podtrail.detect`` and the case's events
are streamed through the engine in time order; the verdict (did the rule alert) must equal the
verdict of ``podtrail.rules.evaluate`` (the SQLite backend on the same events). Plain unit tests:
no root, no kernel.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from test_rule_cases import CASES, RULES, _files_for, _scenario, fires

from podtrail.detect.engine import Engine
from podtrail.detect.ruleset import RuleSet, load_texts


@cache
def _ruleset(name: str) -> RuleSet:
    files = _files_for(name)
    rs = load_texts([(str(f.path), f.path.read_text()) for f in files], outputs={f.name: True for f in files})
    assert not rs.problems, rs.problems
    return rs


def agent_fires(name: str, events: list[dict[str, Any]]) -> bool:
    engine = Engine(_ruleset(name))
    rule_id = str(RULES[name].doc["id"])
    ordered = sorted(events, key=lambda e: e.get("time", 0))  # arrival in time order, as from a sensor
    return any(a["rule_id"] == rule_id for ev in ordered for a in engine.process(dict(ev)))


def _all_cases() -> list[Any]:
    out = []
    for name in sorted(CASES):
        if name not in RULES:
            continue
        for expect in ("match", "nomatch"):
            for i, case in enumerate(CASES[name].get(expect) or []):
                out.append(pytest.param(name, case, id=f"{name}-{expect}{i}"))
        for i, issue in enumerate(CASES[name].get("known_issues") or []):
            out.append(pytest.param(name, issue.get("case"), id=f"{name}-known_issue{i}"))
    return out


@pytest.mark.parametrize(("name", "case"), _all_cases())
def test_agent_verdict_equals_sqlite(name: str, case: Any) -> None:
    events = _scenario(RULES[name], case)
    sqlite = fires(name, events)
    agent = agent_fires(name, events)
    assert agent == sqlite, f"{name}: agent {'fired' if agent else 'stayed quiet'}, SQLite did not agree on {events}"


def test_every_shipped_rule_compiles() -> None:
    from podtrail.detect.ruleset import load_paths

    rs = load_paths([])
    assert rs.problems == []
    assert rs.usable == rs.read == len(RULES)
