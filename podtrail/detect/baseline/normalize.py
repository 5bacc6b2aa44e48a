"""Events -> profile items: which list an event feeds and the normalised item it contributes.

Pure functions. Randomised path parts (pids, temporary names, hashes, UUIDs) collapse to
``*`` so a profile learns ``/tmp/tmp.*/out`` once instead of one entry per run; the same
normalisation runs when learning and when checking, so it can only make a profile coarser,
never raise a false alert. ``*`` is the only wildcard; it matches within one path part.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Final

EXECUTABLES: Final = "executables"
PROCESS_PAIRS: Final = "process_pairs"
DESTINATIONS: Final = "destinations"
LISTENING_PORTS: Final = "listening_ports"
WRITE_PREFIXES: Final = "write_prefixes"
LISTS: Final = (EXECUTABLES, PROCESS_PAIRS, DESTINATIONS, LISTENING_PORTS, WRITE_PREFIXES)

PAIR_SEP: Final = " -> "
WRITE_ACTIONS: Final = frozenset({"write", "create", "truncate", "rename", "chmod"})

_SPLIT = re.compile(r"([._\-+~@:,=])")  # token separators inside one path part, kept
_HEX = re.compile(r"[0-9a-fA-F]{8,}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TEMP = re.compile(r"(?P<p>(?:tmp|temp)[._-]?)[A-Za-z0-9_]{6,}", re.IGNORECASE)  # mktemp, Python tempfile
_MAX_PATH = 1024


def _classes(tok: str) -> int:
    """How often the character class (digit, lower, upper) changes along ``tok``."""
    changes, prev = 0, ""
    for ch in tok:
        c = "d" if ch.isdigit() else ("u" if ch.isupper() else ("l" if ch.islower() else "o"))
        if prev and c != prev:
            changes += 1
        prev = c
    return changes


def _random_token(tok: str) -> bool:
    """Looks generated: long digits (pids, timestamps), long hex, or a mixed-class jumble.

    ``python3``, ``sha256sum``, ``x86`` and ``lib64`` stay; ``aB3xZ9q``, ``1700000000``,
    ``5f2e9a1c`` collapse.
    """
    n = len(tok)
    if n == 0 or not tok.isalnum() or not tok.isascii():
        return False
    if tok.isdigit():
        return n >= 4
    if n >= 8 and _HEX.fullmatch(tok) and any(c.isdigit() for c in tok):
        return True
    return n >= 6 and _classes(tok) >= 3


def _part(part: str) -> str:
    if part.isdigit() or _UUID.fullmatch(part):
        return "*"
    if part.startswith("memfd:"):
        return "memfd:*"
    t = _TEMP.fullmatch(part)
    if t:
        return t["p"] + "*"
    toks = _SPLIT.split(part)
    out = ["*" if i % 2 == 0 and _random_token(t) else t for i, t in enumerate(toks)]
    s = "".join(out)
    return re.sub(r"\*(?:[._\-+~@:,=]?\*)+", "*", s)  # one wildcard for runs of random tokens


@lru_cache(maxsize=16384)
def normalize_path(path: str) -> str:
    """``/proc/4242/status`` -> ``/proc/*/status``; ``/tmp/tmp.aB3xZ9q/x`` -> ``/tmp/tmp.*/x``.

    Cached: a node runs the same few thousand paths over and over."""
    path = path[:_MAX_PATH]
    return "/".join(_part(p) if p else p for p in path.split("/"))


def write_prefix(path: str) -> str:
    """The directory a written file is in, normalised, with a trailing slash."""
    d = path.rsplit("/", 1)[0] if "/" in path else ""
    return normalize_path(d) + "/"


def destination(ev: dict[str, Any]) -> str | None:
    """An outbound destination: the service, workload or pod inside the cluster (with the
    port), else ``ip:port`` (``[v6]:port``); a unix socket by its normalised path."""
    path = ev.get("socket_path")
    if ev.get("family") == 1 or (path and not ev.get("remote_address")):
        return f"unix:{normalize_path(path)}" if path else None
    port = ev.get("remote_port")
    ns = ev.get("remote_namespace") or ""
    for kind, name in (("service", ev.get("remote_service")), ("workload", ev.get("remote_workload"))):
        if name:
            return f"{kind}:{ns}/{name}:{port}"
    if ev.get("remote_pod"):  # a pod without a controller: its own identity
        return f"pod:{ns}/{ev['remote_pod']}:{port}"
    addr = ev.get("remote_address")
    if not addr:
        return None
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


Items = tuple[tuple[str, str], ...]


# Container runtimes start a container's first process and every `kubectl exec`: a pair with
# one of them as parent says only how the process was launched, and whether the sensor sees
# that host-side parent at all depends on timing (it often exits at once). Not learned.
_RUNTIME_PARENTS: Final = frozenset({"runc", "crun", "runsc", "youki", "conmon", "containerd-shim"})


def runtime_parent(parent: str) -> bool:
    base = parent.rsplit("/", 1)[-1]
    return (base in _RUNTIME_PARENTS or base.startswith("containerd-shim") or base.startswith("runc")
            or parent.startswith("memfd:runc"))


@lru_cache(maxsize=16384)
def _exec_items(path: str, parent: str) -> Items:
    exe = normalize_path(path)
    if not parent or runtime_parent(parent):
        return ((EXECUTABLES, exe),)
    return ((EXECUTABLES, exe), (PROCESS_PAIRS, normalize_path(parent) + PAIR_SEP + exe))


def items_of(ev: dict[str, Any]) -> Items:
    """(list, item) pairs this event contributes to its workload's profile (maybe none)."""
    kind, action = ev.get("event_type"), ev.get("action")
    if kind == "process":
        path = ev.get("path")
        if action != "exec" or not path:
            return ()
        return _exec_items(path, ev.get("parent_path") or "")
    if kind == "socket":
        if action == "connect" and ev.get("direction", "outbound") == "outbound":
            d = destination(ev)
            return ((DESTINATIONS, d),) if d else ()
        if action in ("listen", "bind") and ev.get("local_port"):
            if action == "bind" and ev.get("transport") == "tcp":
                return ()  # a TCP bind is not yet listening (and clients bind too); its listen is
            return ((LISTENING_PORTS, f"{ev.get('transport') or 'tcp'}/{ev['local_port']}"),)
        return ()
    if kind == "file" and action in WRITE_ACTIONS and ev.get("target_path"):
        return ((WRITE_PREFIXES, write_prefix(ev["target_path"])),)
    return ()


def matches(pattern: str, item: str) -> bool:
    """Does a learned (possibly wildcarded) item cover ``item``? ``*`` stays within one path part."""
    if "*" not in pattern:
        return pattern == item
    return _glob(pattern).fullmatch(item) is not None


_GLOBS: dict[str, re.Pattern[str]] = {}


def _glob(pattern: str) -> re.Pattern[str]:
    rx = _GLOBS.get(pattern)
    if rx is None:
        if len(_GLOBS) > 10000:
            _GLOBS.clear()
        rx = re.compile("[^/]*".join(re.escape(p) for p in pattern.split("*")))
        _GLOBS[pattern] = rx
    return rx
