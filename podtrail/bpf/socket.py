"""Socket events from socket.bpf.c: connect, accept, bind and listen as normalized events.

The kernel hands over raw ends (addresses as bytes, ports in host order) and what it read from
the socket itself (family, type, protocol, the local end after connect/bind/listen, both ends
of an accepted connection); this module names them (tcp/udp/unix, direction). Nothing is
looked up in /proc afterwards.

Transport: TCP when the socket's protocol says so or the kernel moved it to SYN_SENT; UDP
when its protocol or type says so; inferred from the action only when the kernel could not
read the socket.
"""

from __future__ import annotations

import socket as pysocket
import struct
import time
from typing import Final

from podtrail.bpf.netfile import KF_PEER_KERNEL, KF_SYN_SENT, SensitiveMatcher, is_runtime_setup, text
from podtrail.model.event import AF_INET, AF_INET6, AF_UNIX, IPPROTO_TCP, IPPROTO_UDP, Event, new_event
from podtrail.model.fields import Kind

PROGRAM: Final = "socket"
ACTIONS: Final = {1: "connect", 2: "accept", 3: "bind", 4: "listen"}
DIRECTION: Final = {"connect": "outbound", "accept": "inbound", "bind": "listening", "listen": "listening"}
SOCK_STREAM, SOCK_DGRAM = 1, 2

# struct sock_event_t in socket.bpf.c
_EVENT = struct.Struct("<QQQIIIIiiHHHHHHI16s16s16s128sII")
EVENT_SIZE: Final = _EVENT.size


def _addr(family: int, raw: bytes) -> str:
    if family == AF_INET:
        return pysocket.inet_ntop(pysocket.AF_INET, raw[:4])
    return pysocket.inet_ntop(pysocket.AF_INET6, raw)


def _unix_path(raw: bytes) -> str:
    """sun_path: a file path, or an abstract name (leading NUL) shown as ``@name``."""
    if raw[:1] == b"\0":
        return "@" + raw[1:].rstrip(b"\0").decode("utf-8", "backslashreplace")
    return text(raw)


def transport_of(family: int, stype: int, proto: int, kflags: int, action: str, ret: int) -> tuple[int, str]:
    """(IP protocol number, transport name) from what the kernel knew; see the module doc."""
    if family == AF_UNIX:
        return 0, "unix"
    if kflags & KF_SYN_SENT or proto == IPPROTO_TCP or (stype == SOCK_STREAM and proto == 0):
        return IPPROTO_TCP, "tcp"
    if proto == IPPROTO_UDP or (stype == SOCK_DGRAM and proto == 0):
        return IPPROTO_UDP, "udp"
    if stype == 0 and action in ("accept", "listen"):
        return IPPROTO_TCP, "tcp"  # only connection-oriented sockets listen (SCTP aside)
    if stype == 0 and action == "connect" and ret == 0:
        return IPPROTO_UDP, "udp"  # succeeded without SYN_SENT: not TCP
    return 0, ""


class SocketDecoder:
    """Raw sample -> Event (pure but for the clock offset taken at start)."""

    def __init__(self, sensitive: SensitiveMatcher | None = None) -> None:
        self._sensitive = sensitive
        self._offset = time.time_ns() - time.monotonic_ns()

    def decode(self, raw: bytes) -> Event | None:
        (mono, cg, _sk, pid, tid, uid, gid, fd, ret, act, family, stype, proto, lport, rport, kf,
         laddr, raddr, comm, upath, repeats, _) = _EVENT.unpack_from(raw)
        action = ACTIONS.get(act)
        if action is None:
            return None
        ipnum, transport = transport_of(family, stype, proto, kf, action, ret)
        ev = new_event(
            Kind.SOCKET, action, time_ns=mono + self._offset,
            source="ebpf", mono_ns=mono, pid=pid, tid=tid, uid=uid, gid=gid, comm=text(comm),
            cgroup_id=cg, fd=fd, result=ret, family=family, protocol=ipnum,
            direction=DIRECTION[action],
        )
        if transport:
            ev["transport"] = transport
        if repeats:  # identical events the kernel counted instead of sending (socket.bpf.c)
            ev["repeat_count"] = repeats + 1
        if is_runtime_setup(ev["comm"]):
            ev["runtime_setup"] = True
        if family == AF_UNIX:
            path = _unix_path(upath)
            if path:
                ev["socket_path"] = path
                if self._sensitive and action == "connect":
                    cat = self._sensitive.category(path)
                    if cat:
                        ev["sensitive"] = cat
            return ev
        if family not in (AF_INET, AF_INET6):
            return ev
        remote_known = action == "connect" or (action == "accept" and kf & KF_PEER_KERNEL)
        if lport or any(laddr):
            ev["local_address"] = _addr(family, laddr)
            if lport:  # a connect that never completed the handshake has no port yet
                ev["local_port"] = lport
        if remote_known:
            ev["remote_address"] = _addr(family, raddr)
            ev["remote_port"] = rport
        return ev
