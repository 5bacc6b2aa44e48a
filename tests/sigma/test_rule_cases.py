"""Every shipped Sigma rule fires on its cases and stays quiet on their near misses.

The cases live in ``siem_content/sigma/tests/cases.yml`` (its header describes the format and the
defaults filled in here). Each case runs alone, in its own event table, through
``podtrail.rules.evaluate.evaluate`` with only the rule and the rules it references, so cases
cannot interfere and conversion stays cheap. ``known_issues`` cases are strict xfails: they
document what a rule gets wrong today and fail once it is fixed, to be moved to match/nomatch.
Plain unit tests: no root, no kernel.
"""

from __future__ import annotations

import itertools
from functools import cache
from typing import Any

import pytest
import yaml

from podtrail.rules.catalog import SIGMA_DIR, RuleFile, by_name, rule_files
from podtrail.rules.evaluate import evaluate
from podtrail.rules.targets import CATEGORIES

CASES_FILE = SIGMA_DIR / "tests" / "cases.yml"
BASE_TIME = 1_790_000_000
CONTAINER_ID = "a3f9c2e4b1d0" + "7" * 52
POD_UID = "0f6c2d9e-3b1a-4c5d-8e7f-a1b2c3d4e5f6"
# event_type -> defaults for an event of that kind (file events must give their own action)
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "process": {"action": "exec"},
    "socket": {"action": "connect", "direction": "outbound", "family": 2},
    "file": {},
}
CASE_KEYS = {"match", "nomatch", "known_issues"}

FILES = rule_files()
RULES = by_name(FILES)
CASES: dict[str, dict[str, Any]] = yaml.safe_load(CASES_FILE.read_text()) or {}
_ids = itertools.count(1)


def _category_types(rf: RuleFile) -> set[str]:
    """Event types the rule's events can be (a correlation: those of the rules it uses)."""
    if rf.kind == "correlation":
        return set().union(*(_category_types(RULES[r]) for r in rf.referenced))
    return {CATEGORIES[rf.doc["logsource"]["category"]][0].value}


def _event(rf: RuleFile, partial: dict[str, Any], index: int) -> dict[str, Any]:
    ev = dict(partial)
    types = _category_types(rf)
    if "event_type" not in ev:
        assert len(types) == 1, f"{rf.name}: give event_type (the rules cover {sorted(types)}): {partial}"
        ev["event_type"] = next(iter(types))
    ev = {**KIND_DEFAULTS[ev["event_type"]], **ev}
    assert "action" in ev, f"{rf.name}: a file event must give its action: {partial}"
    ev.setdefault("container_id", CONTAINER_ID)
    ev.setdefault("pod_uid", POD_UID)
    ev.setdefault("event_id", f"case-{next(_ids)}")
    ev.setdefault("time", BASE_TIME + index)
    return ev


def _scenario(rf: RuleFile, case: Any) -> list[dict[str, Any]]:
    """A case as events: an alert's case is one event, a correlation's a list of them."""
    if rf.kind == "correlation":
        assert isinstance(case, list) and case, f"{rf.name}: a correlation case is a non-empty list of events"
        return [_event(rf, e, i) for i, e in enumerate(case)]
    assert isinstance(case, dict), f"{rf.name}: an alert case is one event (a mapping)"
    return [_event(rf, case, 0)]


@cache
def _files_for(name: str) -> tuple[RuleFile, ...]:
    rf = RULES[name]
    return (rf, *(RULES[r] for r in rf.referenced))


def fires(name: str, events: list[dict[str, Any]]) -> bool:
    hits = evaluate(events, include_base=True, files=list(_files_for(name)))
    if name not in hits:
        return False
    if RULES[name].kind != "correlation":  # the alert row is one of the case's events
        ids = {e["event_id"] for e in events}
        assert all(r["event_id"] in ids for r in hits[name].rows)
    return True


def _params(expect: str) -> list[Any]:
    out = []
    for name in sorted(CASES):
        if name not in RULES:
            continue  # reported by test_no_orphan_cases
        for i, case in enumerate(CASES[name].get(expect) or []):
            out.append(pytest.param(name, case, id=f"{name}-{expect}{i}"))
        for i, issue in enumerate(CASES[name].get("known_issues") or []):
            if issue.get("should") == expect:
                out.append(pytest.param(name, issue.get("case"), id=f"{name}-known_issue{i}-{expect}",
                                        marks=pytest.mark.xfail(strict=True, reason=issue.get("reason", ""))))
    return out


def test_cases_file_present() -> None:
    assert CASES_FILE.is_file(), CASES_FILE
    assert RULES, "no rule files found"


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_has_cases(name: str) -> None:
    cases = CASES.get(name)
    assert isinstance(cases, dict), f"{name}: no cases in {CASES_FILE.name}"
    assert set(cases) <= CASE_KEYS, f"{name}: unknown keys {sorted(set(cases) - CASE_KEYS)}"
    assert len(cases.get("match") or []) >= 1, f"{name}: needs at least one match case"
    assert len(cases.get("nomatch") or []) >= 1, f"{name}: needs at least one nomatch (near miss) case"
    for issue in cases.get("known_issues") or []:
        assert issue.get("should") in ("match", "nomatch"), f"{name}: known issue without should: {issue}"
        assert issue.get("reason"), f"{name}: known issue without a reason: {issue}"
        assert issue.get("case"), f"{name}: known issue without a case: {issue}"


def test_no_orphan_cases() -> None:
    orphans = sorted(set(CASES) - set(RULES))
    assert not orphans, f"cases for rules that do not exist: {orphans}"


@pytest.mark.parametrize(("name", "case"), _params("match"))
def test_rule_matches(name: str, case: Any) -> None:
    events = _scenario(RULES[name], case)
    assert fires(name, events), f"{name} did not fire on {events}"


@pytest.mark.parametrize(("name", "case"), _params("nomatch"))
def test_rule_ignores_near_miss(name: str, case: Any) -> None:
    events = _scenario(RULES[name], case)
    assert not fires(name, events), f"{name} fired on the near miss {events}"
