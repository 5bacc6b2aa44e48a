"""Assembled audit events -> podtrail events (same model, same names as the eBPF sources).

SYSCALL + EXECVE + CWD + PATH -> process exec; connect/accept/accept4/bind/listen with
SOCKADDR -> socket event. Other events are not mapped yet (returns None).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from typing import Any

from podtrail.audit.records import (
    SYSCALL_FIELDS,
    AuditEvent,
    Record,
    all_of,
    cwd_value,
    execve_argv,
    first_of,
    syscall_of,
)
from podtrail.model.event import AF_INET, AF_INET6, AF_UNIX, Event, new_event
from podtrail.model.fields import Kind

# x86_64 syscall numbers (arch=c000003e); the ENRICHED SYSCALL= name is used when present.
SYSCALLS_X86_64 = {59: "execve", 322: "execveat", 42: "connect", 43: "accept", 288: "accept4", 49: "bind", 50: "listen"}
SOCKET_ACTIONS = {"connect": "connect", "accept": "accept", "accept4": "accept", "bind": "bind", "listen": "listen"}
SYSCALLS_X86_64.update({2: "open", 257: "openat", 437: "openat2", 85: "creat", 87: "unlink", 263: "unlinkat", 82: "rename",
                        264: "renameat", 316: "renameat2", 90: "chmod", 268: "fchmodat", 76: "truncate"})
FILE_ACTIONS = {"open": "open", "openat": "open", "openat2": "open", "creat": "create", "unlink": "unlink",
                "unlinkat": "unlink", "rename": "rename", "renameat": "rename", "renameat2": "rename",
                "chmod": "chmod", "fchmodat": "chmod", "truncate": "truncate"}
# i386 (arch=40000003, the b32 exec rule): its exec numbers, for RAW logs (no ENRICHED name)
SYSCALLS_I386 = {11: "execve", 358: "execveat"}
O_ACCMODE, O_CREAT = 3, 0o100
# What ``to_event`` reads of an exec event (bench.audit_parse has auparse read the same): the
# SYSCALL fields ``SYSCALL_FIELDS``, every EXECVE field, CWD's cwd. Its PATH, BPRM_FCAPS and
# PROCTITLE records are never split (nor made into ``Record`` objects).
__all__ = ["SYSCALL_FIELDS", "cwd_of", "decode_sockaddr", "execve_args", "to_event"]


def execve_args(records: Sequence[Record]) -> list[str]:
    """argv from one or more EXECVE records, joining ``aN[k]`` chunks of long arguments."""
    if isinstance(records, AuditEvent) and records.types.count("EXECVE") == 1:
        argv = execve_argv(records.body("EXECVE") or "")  # the plain layout, in one match
        if argv is not None:
            return argv
    fields: dict[str, str] = {}
    for r in all_of(records, "EXECVE"):
        fields.update(r.fields)  # every value is needed: argc and the arguments
    argc = int(fields.get("argc", "0") or 0)
    argv = []
    for i in range(argc):
        if f"a{i}" in fields:
            argv.append(fields[f"a{i}"])
            continue
        chunks, k = [], 0
        while f"a{i}[{k}]" in fields:
            chunks.append(fields[f"a{i}[{k}]"])
            k += 1
        argv.append("".join(chunks))
    return argv


def decode_sockaddr(hexstr: str) -> dict[str, Any]:
    """SOCKADDR saddr (hex of struct sockaddr) -> family, address, port or unix path."""
    try:
        b = bytes.fromhex(hexstr)
    except ValueError:
        return {}
    if len(b) < 2:
        return {}
    fam = struct.unpack_from("<H", b)[0]
    if fam == AF_INET and len(b) >= 8:
        return {"family": fam, "port": struct.unpack_from(">H", b, 2)[0], "address": str(ipaddress.IPv4Address(b[4:8]))}
    if fam == AF_INET6 and len(b) >= 24:
        return {"family": fam, "port": struct.unpack_from(">H", b, 2)[0], "address": str(ipaddress.IPv6Address(b[8:24]))}
    if fam == AF_UNIX:
        path = b[2:]
        if path[:1] == b"\0":  # abstract socket
            return {"family": fam, "path": "@" + path[1:].split(b"\0", 1)[0].decode("utf-8", "backslashreplace")}
        return {"family": fam, "path": path.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")}
    return {"family": fam}


def _without_none(ev: Event) -> Event:
    """Drop the unset fields in place: the event stays the model's EventDict, so the stages
    can attach their shared entities and the outputs reuse rendered fragments (a plain dict
    copy made every output render every field of every audit event)."""
    for k in [k for k, v in ev.items() if v is None]:
        del ev[k]
    return ev


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def _syscall_record(records: Sequence[Record]) -> Record:
    """The SYSCALL record itself, for what is read of it only now and then."""
    sc = first_of(records, "SYSCALL")
    assert sc is not None  # to_event has found it
    return sc


def cwd_of(records: Sequence[Record]) -> str:
    """The first CWD record's cwd ("" without one)."""
    if isinstance(records, AuditEvent):
        body = records.body("CWD")
        if body is not None:
            cwd = cwd_value(body)
            if cwd is not None:
                return cwd
    rec = first_of(records, "CWD")
    return rec.get("cwd") if rec is not None else ""


def to_event(records: Sequence[Record]) -> Event | None:
    got = syscall_of(records)
    if got is None:
        return None
    (arch, syscall, success, exit_text, ppid, pid, auid, uid, gid, comm, exe, key), stamp = got
    number = _int(syscall)
    name = SYSCALLS_X86_64.get(number) if number is not None and arch == "c000003e" else None
    if name is None:  # another arch (or a number not in the table): auditd's ENRICHED name
        name = _syscall_record(records).enriched.get("SYSCALL") or \
            (SYSCALLS_I386 if arch == "40000003" else SYSCALLS_X86_64).get(number or -1, "")
    t_ns = int(float(stamp) * 1e9)
    try:  # numbers, as the kernel writes them: one try for all five
        ids: tuple[int | None, ...] = (int(pid), int(ppid), int(uid), int(gid), int(auid))
        unset = False
    except ValueError:
        ids = (_int(pid), _int(ppid), _int(uid), _int(gid), _int(auid))
        unset = None in ids
    common: dict[str, Any] = {
        "source": "auditd", "pid": ids[0], "ppid": ids[1], "uid": ids[2], "gid": ids[3], "auid": ids[4], "comm": comm, "path": exe,
    }
    ok = success == "yes"
    exit_ = _int(exit_text)
    result = 0 if ok else (exit_ if exit_ is not None and exit_ < 0 else -1)
    if name in ("execve", "execveat"):
        argv = execve_args(records)
        cwd = cwd_of(records)
        ev = new_event(Kind.PROCESS, "exec", time_ns=t_ns, **common, argv=argv, cmdline=" ".join(argv), result=result,
                       args_truncated=False)
        if cwd:
            ev["cwd"] = cwd
        return _without_none(ev) if unset else ev  # nothing else can be None
    action = SOCKET_ACTIONS.get(name)
    if action is not None:
        sa_rec = first_of(records, "SOCKADDR")
        sa = decode_sockaddr(sa_rec.get("saddr")) if sa_rec is not None else {}
        ev = new_event(Kind.SOCKET, action, time_ns=t_ns, **common, result=result if not ok else 0,
                       direction={"connect": "outbound", "accept": "inbound"}.get(action, "listening"))
        if "family" in sa:
            ev["family"] = sa["family"]
        if "path" in sa:
            ev["socket_path"] = sa["path"]
        elif "address" in sa:
            side = "local" if action == "bind" else "remote"
            ev[f"{side}_address"], ev[f"{side}_port"] = sa["address"], sa["port"]
        return _without_none(ev)
    file_action = FILE_ACTIONS.get(name)
    if file_action is not None or "sensitive_" in key:
        return _file_event(records, _syscall_record(records).fields, common, t_ns, name, file_action, key, result)
    return None


def _file_event(records: Sequence[Record], f: dict[str, str], common: dict[str, Any], t_ns: int, syscall: str,
                action: str | None, key: str, result: int) -> Event | None:
    """PATH records name what was acted on (not the PARENT entries); CWD resolves relative names."""
    paths = [p for p in (r.fields for r in all_of(records, "PATH")) if p.get("nametype") != "PARENT"]
    if not paths:
        return None
    cwd = cwd_of(records)

    def absolute(p: str) -> tuple[str, bool]:
        if p.startswith("/"):
            return p, False
        return (cwd.rstrip("/") + "/" + p, False) if cwd else (p, True)

    flags = None
    if action == "open":
        raw = f.get("a2") if syscall in ("openat", "openat2") else f.get("a1")
        try:
            flags = int(raw or "0", 16)
        except ValueError:
            flags = 0
        write = (flags & O_ACCMODE) != 0 or bool(flags & O_CREAT)
        action = ("create" if any(p.get("nametype") == "CREATE" for p in paths) else "open") if write else "read"
    action = action or "read"
    target = next((p for p in paths if p.get("nametype") in ("CREATE", "DELETE")), paths[-1])
    tp, unresolved = absolute(target.get("name", ""))
    ev = new_event(Kind.FILE, action, time_ns=t_ns, **common, target_path=tp, result=result)
    if unresolved:
        ev["path_unresolved"] = True
    if flags is not None and syscall != "openat2":
        ev["flags"] = flags
    if action == "rename":
        old = next((p for p in paths if p.get("nametype") == "DELETE"), None)
        new = next((p for p in paths if p.get("nametype") == "CREATE"), None)
        if old and new:
            ev["old_path"], ev["target_path"] = absolute(old.get("name", ""))[0], absolute(new.get("name", ""))[0]
    for k in key.split("\x01"):
        if k.startswith("sensitive_"):
            ev["sensitive"] = k[len("sensitive_"):]
    return _without_none(ev)
