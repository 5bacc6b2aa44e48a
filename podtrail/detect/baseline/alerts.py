"""Findings -> alert events: the ``behavior`` alert, and the hybrid signature alert.

Levels (Sigma's names). A behaviour alert takes the highest level of its findings' lists:

    executables medium, destinations medium, listening_ports medium,
    process_pairs low, write_prefixes low

A signature alert whose trigger is also outside its workload's profile (hybrid) carries the
behaviour findings next to its own and is raised one level:

    informational -> low -> medium -> high -> critical (critical stays critical)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from podtrail.detect.alert import LEVELS, new_alert, severity_for_level
from podtrail.detect.baseline.engine import Finding
from podtrail.detect.baseline.normalize import (
    DESTINATIONS,
    EXECUTABLES,
    LISTENING_PORTS,
    PROCESS_PAIRS,
    WRITE_PREFIXES,
)
from podtrail.model.event import Event

LIST_LEVEL: Final = {EXECUTABLES: "medium", DESTINATIONS: "medium", LISTENING_PORTS: "medium",
                     PROCESS_PAIRS: "low", WRITE_PREFIXES: "low"}
LIST_TITLE: Final = {
    EXECUTABLES: "Executable outside the workload's profile",
    PROCESS_PAIRS: "Parent and child executables outside the workload's profile",
    DESTINATIONS: "Outbound destination outside the workload's profile",
    LISTENING_PORTS: "Listening port outside the workload's profile",
    WRITE_PREFIXES: "Write to a directory outside the workload's profile",
}
RULE_PREFIX: Final = "podtrail_baseline_"
FINDINGS_KEY: Final = "behavior"  # the key behaviour findings take in an alert's `findings`


def raised(level: str) -> str:
    """One level up (hybrid): a signature hit that is also new behaviour for its workload."""
    i = LEVELS.index(level) if level in LEVELS else LEVELS.index("medium")
    return LEVELS[min(i + 1, len(LEVELS) - 1)]


def _rank(lst: str) -> int:
    return LEVELS.index(LIST_LEVEL[lst])


def behavior_alert(trigger: Event, findings: Sequence[Finding]) -> Event:
    """One alert for everything new in one event, named by its most serious list."""
    top = max(findings, key=lambda f: _rank(f.list))
    return new_alert(trigger, rule_id=RULE_PREFIX + top.list, title=LIST_TITLE[top.list],
                     level=LIST_LEVEL[top.list], kind="behavior", tactics=[], techniques=[],
                     trigger_ids=[trigger["event_id"]], status="experimental",
                     findings={FINDINGS_KEY: [f.as_dict() for f in findings]})


def make_hybrid(alert: Event, findings: Sequence[Finding]) -> None:
    """Add behaviour findings to a signature alert and raise its level, in place."""
    current: dict[str, Any] = dict(alert.get("findings") or {})
    known = {(f.get("list"), f.get("item")) for f in current.get(FINDINGS_KEY, [])}
    extra = [f.as_dict() for f in findings if (f.list, f.item) not in known]
    if not extra:
        return
    current[FINDINGS_KEY] = [*current.get(FINDINGS_KEY, []), *extra]
    alert["findings"] = current
    if not known:  # raise once, however many findings join
        level = raised(str(alert.get("rule_level") or "medium"))
        alert["rule_level"] = level
        alert["severity"] = severity_for_level(level)
