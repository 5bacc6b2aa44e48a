"""Profiles <-> plain documents: the one format of state files, exports and imports.

The document is versioned (``format``) and readable: lists sorted, times in epoch seconds.
The state directory stores it as JSON (fast to write); ``podtrail profile export`` writes the
same document as YAML, which is what ``import`` reads, so a profile learned in staging can be
reviewed in git and imported in production. ``from_doc`` says exactly what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from podtrail.detect.baseline.model import MODES, Profile, ProfileVersion, WorkloadKey
from podtrail.detect.baseline.normalize import LISTS

FORMAT: Final = 1
DOC_KIND: Final = "podtrail-profile"
# format N -> function upgrading a format-N document to N+1 (none yet: format 1 is the first)
UPGRADES: Final[dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {}


class ProfileFormatError(ValueError):
    """A profile document that cannot be read; the message names the problem."""


def _version_doc(v: ProfileVersion) -> dict[str, Any]:
    return {"version": v.version, "images": dict(sorted(v.images.items())), "created": round(v.created, 3),
            "monitor_since": round(v.monitor_since, 3) if v.monitor_since is not None else None,
            "events": v.events, "overflow": {k: n for k, n in v.overflow.items() if n},
            **{n: sorted(v.items[n]) for n in LISTS}}


def to_doc(p: Profile) -> dict[str, Any]:
    return {"format": FORMAT, "kind": DOC_KIND, "workload": p.key.as_dict(), "mode": p.mode, "pinned": p.pinned,
            "last_change": round(p.last_change, 3), "current": _version_doc(p.current),
            "previous": [_version_doc(v) for v in p.previous]}


def _num(d: dict[str, Any], k: str, where: str, default: float | None = None) -> float:
    v = d.get(k, default)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ProfileFormatError(f"{where}.{k}: expected a number, got {v!r}")
    return float(v)


def _version(d: Any, where: str) -> ProfileVersion:
    if not isinstance(d, dict):
        raise ProfileFormatError(f"{where}: expected a mapping")
    images = d.get("images") or {}
    if not isinstance(images, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in images.items()):
        raise ProfileFormatError(f"{where}.images: expected a mapping of container name to digest")
    ms = d.get("monitor_since")
    v = ProfileVersion(int(_num(d, "version", where)), dict(images), _num(d, "created", where, 0),
                       events=int(_num(d, "events", where, 0)),
                       monitor_since=None if ms is None else _num(d, "monitor_since", where))
    for n in LISTS:
        items = d.get(n) or []
        if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
            raise ProfileFormatError(f"{where}.{n}: expected a list of non-empty strings")
        v.items[n] = set(items)
    over = d.get("overflow") or {}
    if not isinstance(over, dict):
        raise ProfileFormatError(f"{where}.overflow: expected a mapping")
    for n, c in over.items():
        if n not in LISTS or isinstance(c, bool) or not isinstance(c, int):
            raise ProfileFormatError(f"{where}.overflow.{n}: unknown list or not a count")
        v.overflow[n] = c
    return v


def from_doc(doc: Any) -> Profile:
    if not isinstance(doc, dict):
        raise ProfileFormatError("not a profile document (expected a mapping)")
    fmt = doc.get("format")
    if doc.get("kind") != DOC_KIND or isinstance(fmt, bool) or not isinstance(fmt, int):
        raise ProfileFormatError(f"not a profile document (kind {DOC_KIND!r} and an integer format expected)")
    if fmt > FORMAT:
        raise ProfileFormatError(f"profile format {fmt} is newer than this podtrail reads ({FORMAT})")
    while fmt < FORMAT:
        if fmt not in UPGRADES:
            raise ProfileFormatError(f"profile format {fmt} cannot be upgraded")
        doc = UPGRADES[fmt](doc)
        fmt = doc["format"]
    w = doc.get("workload")
    if not isinstance(w, dict):
        raise ProfileFormatError("workload: expected a mapping of cluster, namespace, kind, name")
    try:
        key = WorkloadKey(str(w.get("cluster") or ""), str(w["namespace"]), str(w["kind"]), str(w["name"]))
    except KeyError as e:
        raise ProfileFormatError(f"workload.{e.args[0]}: missing") from None
    if not (key.namespace and key.kind and key.name):
        raise ProfileFormatError("workload: namespace, kind and name must not be empty")
    mode = doc.get("mode")
    if mode not in MODES:
        raise ProfileFormatError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    prev = doc.get("previous") or []
    if not isinstance(prev, list):
        raise ProfileFormatError("previous: expected a list")
    return Profile(key, _version(doc.get("current"), "current"), mode=str(mode), pinned=bool(doc.get("pinned")),
                   last_change=_num(doc, "last_change", "profile", 0),
                   previous=[_version(v, f"previous[{i}]") for i, v in enumerate(prev)])
