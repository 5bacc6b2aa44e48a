"""Alerts are events: ``new_alert`` builds one from the event that triggered it.

An alert carries the rule (id, title, level, status, ATT&CK tactics and techniques), how it
was detected (``signature``, ``correlation``, or ``behavior`` for baseline detectors), the
ids of the triggering events, free ``findings``, and the trigger's process, container, pod
and ancestry under the same field names as the trigger itself: every field declared for both
the trigger's kind and ``Kind.ALERT`` is copied. Pure: no I/O, no clock beyond the event id.

Level -> severity (0..10), used by CEF's header severity, LEEF ``sev`` and ECS
``event.severity`` through the ordinary ``severity`` field:

    informational 2, low 4, medium 6, high 8, critical 10
"""

from __future__ import annotations

from typing import Any, Final

from podtrail.model.event import Event, new_event
from podtrail.model.fields import FIELDS_LIST, Kind

LEVELS: Final = ("informational", "low", "medium", "high", "critical")
LEVEL_SEVERITY: Final[dict[str, int]] = {"informational": 2, "low": 4, "medium": 6, "high": 8, "critical": 10}
DETECTION_KINDS: Final = ("signature", "correlation", "behavior")
STATUSES: Final = ("stable", "test", "experimental", "deprecated", "unsupported")

# Per trigger kind: the fields an alert copies from it (declared for both kinds), derived once.
_COPY: Final[dict[str, tuple[str, ...]]] = {
    k.value: tuple(f.name for f in FIELDS_LIST if Kind.ALERT in f.kinds and k in f.kinds and f.name != "event_id"
                   and f.name not in ("event_type", "action", "time", "time_ns", "mono_ns", "severity",
                                      "source", "message", "result", "outcome"))
    for k in Kind
}


def severity_for_level(level: str) -> int:
    """0..10 for a Sigma level; an unknown level counts as medium."""
    return LEVEL_SEVERITY.get(level, LEVEL_SEVERITY["medium"])


def new_alert(
    trigger: Event,
    *,
    rule_id: str,
    title: str,
    level: str,
    kind: str,
    tactics: list[str],
    techniques: list[str],
    trigger_ids: list[str],
    status: str = "stable",
    findings: dict[str, Any] | None = None,
    source: str = "detect",
) -> Event:
    """An alert event about ``trigger`` (the last event that made the rule fire).

    Its time is the trigger's, so an alert sorts right after what caused it; its action is
    the detection kind. Raises ValueError for an unknown level or kind (a detector bug).
    """
    if level not in LEVEL_SEVERITY:
        raise ValueError(f"unknown rule level {level!r} (one of {', '.join(LEVELS)})")
    if kind not in DETECTION_KINDS:
        raise ValueError(f"unknown detection kind {kind!r} (one of {', '.join(DETECTION_KINDS)})")
    t = trigger.get("time_ns")
    ev = new_event(Kind.ALERT, kind, time_ns=t if isinstance(t, int) else None)
    for name in _COPY.get(trigger.get("event_type", ""), ()):
        v = trigger.get(name)
        if v is not None and v != "":
            ev[name] = v
    where = trigger.get("pod_name") or trigger.get("container_id", "")[:12] or "host"
    ev.update(
        source=source,
        message=f"{title} ({where})",
        severity=severity_for_level(level),
        rule_id=rule_id,
        rule_title=title,
        rule_level=level,
        rule_status=status,
        detection_kind=kind,
        tactics=list(tactics),
        techniques=list(techniques),
        trigger_ids=list(trigger_ids),
    )
    if findings:
        ev["findings"] = findings
    return ev
