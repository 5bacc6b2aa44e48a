"""Socket events from socket.c: connect, accept, bind and listen as normalized events.

The kernel hands over raw ends (addresses as bytes, ports in host order) and what it knows of
the socket; this module names them (tcp/udp/unix, direction) and fills the few gaps the
kernel did not: the ends of an accepted connection when neither the user sockaddr nor the
kernel's establishment record (socket.c ``estab``) gave them, looked up in
``/proc/<pid>/net/tcp*`` by the new socket's inode (rate-limited, best effort).

Transport: TCP when the kernel moved the socket to SYN_SENT or socket() said SOCK_STREAM;
UDP when socket() said SOCK_DGRAM, or (socket made before the agent started) when an inet
connect succeeded without any TCP state change, since a TCP connect always passes SYN_SENT.
"""

from __future__ import annotations

import os
import socket as pysocket
import struct
import time
from typing import Final

from podtrail.bpf.netfile import KF_PEER_KERNEL, KF_PEER_USER, KF_SYN_SENT, SensitiveMatcher, text
from podtrail.model.event import AF_INET, AF_INET6, AF_UNIX, IPPROTO_TCP, IPPROTO_UDP, Event, new_event
from podtrail.model.fields import Kind

PROGRAM: Final = "socket.c"
ACTIONS: Final = {1: "connect", 2: "accept", 3: "bind", 4: "listen"}
DIRECTION: Final = {"connect": "outbound", "accept": "inbound", "bind": "listening", "listen": "listening"}
SOCK_STREAM, SOCK_DGRAM = 1, 2

# struct sock_event_t in socket.c
_EVENT = struct.Struct("<QQQIIIIiiHHHHHHI16s16s16s128s")
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
    """Raw sample -> Event. Holds the clock offset and the rate limit for /proc look-ups."""

    def __init__(self, sensitive: SensitiveMatcher | None = None, proc_lookups_per_s: int = 200) -> None:
        self._sensitive = sensitive
        self._offset = time.time_ns() - time.monotonic_ns()
        self._budget = float(proc_lookups_per_s)
        self._rate = float(proc_lookups_per_s)
        self._last = time.monotonic()

    def decode(self, raw: bytes) -> Event | None:
        (mono, cg, _sk, pid, tid, uid, gid, fd, ret, act, family, stype, proto, lport, rport, kf,
         laddr, raddr, comm, upath) = _EVENT.unpack_from(raw)
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
        remote_known = action == "connect" or (action == "accept" and kf & (KF_PEER_USER | KF_PEER_KERNEL))
        if action == "accept" and ret >= 0 and (not remote_known or not any(laddr)):
            ends = self._proc_lookup(pid, ret)
            if ends:
                (ev["local_address"], ev["local_port"], ev["remote_address"], ev["remote_port"]) = ends
                return ev
        if lport or any(laddr):
            ev["local_address"] = _addr(family, laddr)
            if lport:  # a connect that never completed the handshake has no port yet
                ev["local_port"] = lport
        if remote_known:
            ev["remote_address"] = _addr(family, raddr)
            ev["remote_port"] = rport
        return ev

    # -- accept(fd, NULL, NULL): ends from /proc --------------------------------------------------
    def _proc_lookup(self, pid: int, fd: int) -> tuple[str, int, str, int] | None:
        now = time.monotonic()
        self._budget = min(self._rate, self._budget + (now - self._last) * self._rate)
        self._last = now
        if self._budget < 1:
            return None
        self._budget -= 1
        return proc_socket_ends(pid, fd)


def proc_socket_ends(pid: int, fd: int) -> tuple[str, int, str, int] | None:
    """(local address, local port, remote address, remote port) of an open TCP socket, from
    the process's own view of /proc/net/tcp{,6} (its network namespace)."""
    try:
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None
    if not link.startswith("socket:["):
        return None
    inode = link[8:-1]
    for name, fam in (("tcp", AF_INET), ("tcp6", AF_INET6)):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) > 9 and parts[9] == inode:
                        la, lp = _proc_addr(parts[1], fam)
                        ra, rp = _proc_addr(parts[2], fam)
                        return la, lp, ra, rp
        except OSError:
            continue
    return None


def _proc_addr(field: str, family: int) -> tuple[str, int]:
    """``0100007F:1F90`` (address as native-endian 32-bit words) -> ("127.0.0.1", 8080)."""
    hexaddr, hexport = field.split(":")
    raw = b"".join(struct.pack("<I", int(hexaddr[i:i + 8], 16)) for i in range(0, len(hexaddr), 8))
    return _addr(family, raw), int(hexport, 16)
