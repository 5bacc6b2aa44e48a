"""Syslog output: RFC 5424 or RFC 3164 headers; UDP, TCP (RFC 6587 octet counting or LF
framing) or TLS (RFC 5425, server certificate verified by default); spooled to disk first.

``submit`` only formats and queues (bounded; overflow counted). A writer thread appends to
the spool; a sender thread replays the spool from its acknowledged position, reconnecting
with exponential backoff, so an outage or a restart loses nothing (at-least-once; every
message carries the event's unique id for de-duplication).
"""

from __future__ import annotations

import fcntl
import logging
import queue
import socket
import ssl
import struct
import termios
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from podtrail.inbox import Inbox
from podtrail.metrics import REGISTRY
from podtrail.model.event import HOSTNAME, Event
from podtrail.outputs.spool import Chunk, Spool, frame

log = logging.getLogger(__name__)

SENT = Counter("podtrail_output_sent_total", "Messages delivered, per output.", ["output"], registry=REGISTRY)
FAILED = Counter("podtrail_output_failed_total", "Send attempts that failed, per output.", ["output"], registry=REGISTRY)
DROPPED = Counter("podtrail_output_dropped_total", "Messages dropped (queue full, spool limit), per output.", ["output", "reason"], registry=REGISTRY)
RETRIED = Counter("podtrail_output_retried_total", "Messages sent again after a failed attempt, per output.", ["output"], registry=REGISTRY)
SPOOLED = Counter("podtrail_output_spooled_total", "Messages written to the disk spool, per output.", ["output"], registry=REGISTRY)

_PRINTABLE = {c: "_" for c in (*range(0, 33), *range(127, 256))}


def header_field(text: str, limit: int) -> str:
    """RFC 5424 header fields: printable US-ASCII (33..126), bounded, '-' when empty."""
    out = text.encode("ascii", "replace").decode().translate(_PRINTABLE)[:limit]
    return out or "-"


_SECONDS: dict[int, str] = {}
_TAILS: dict[tuple[str, str, str, str], str] = {}


def _second(s: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of an epoch second (strftime once per second, not per event)."""
    text = _SECONDS.get(s)
    if text is None:
        if len(_SECONDS) > 64:
            _SECONDS.clear()
        text = _SECONDS[s] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
    return text


def _tail(host: str, app: str, procid: str, msgid: str) -> str:
    key = (host, app, procid, msgid)
    tail = _TAILS.get(key)
    if tail is None:
        tail = f"{header_field(host, 255)} {header_field(app, 48)} {header_field(procid, 128)} {header_field(msgid, 32)} -"
        if len(_TAILS) < 1024:
            _TAILS[key] = tail
    return tail


def rfc5424(msg: str, *, pri: int = 14, ts_ns: int | None = None, host: str = HOSTNAME, app: str = "podtrail",
            procid: str = "-", msgid: str = "-") -> bytes:
    t = time.time_ns() if ts_ns is None else ts_ns
    tail = _tail(host, app, procid, msgid)
    return f"<{pri}>1 {_second(t // 1_000_000_000)}.{(t // 1000) % 1_000_000:06d}Z {tail} {msg}".encode("utf-8", "replace")


def rfc5424_framed(evs: list[Event], msgs: list[str], *, pri: int = 14, host: str = HOSTNAME, app: str = "podtrail",
                   procid: str = "-") -> bytes:
    """``rfc5424`` for a batch (MSGID: the event type), framed as the spool and RFC 6587
    octet counting frame it, in one pass, one join and one encode: the header's text up to
    the microseconds and after them is made once per second and event type."""
    out: list[str] = []
    append = out.append
    by_sec: dict[int, dict[Any, tuple[str, str, int]]] = {}
    heads: dict[Any, tuple[str, str, int]] = {}
    last = now = None
    for ev, msg in zip(evs, msgs, strict=True):
        t = ev.get("time_ns")
        if type(t) is not int:
            t = now = now or time.time_ns()
        sec, us = divmod(t // 1000, 1_000_000)
        if sec != last:
            heads = by_sec.setdefault(sec, {})
            last = sec
        et = ev.get("event_type", "-")
        h = heads.get(et)
        if h is None:
            a, b = f"<{pri}>1 {_second(sec)}.", f"Z {_tail(host, app, procid, str(et))} "
            h = heads[et] = (a, b, len(a) + 6 + len(b))  # header fields are ASCII (header_field)
        n = h[2] + (len(msg) if msg.isascii() else len(msg.encode("utf-8", "replace")))
        append(f"{n} {h[0]}{us:06d}{h[1]}{msg}")
    return "".join(out).encode("utf-8", "replace")


def rfc3164_text(msg: str, *, pri: int = 14, ts_ns: int | None = None, host: str = HOSTNAME, tag: str = "podtrail") -> str:
    t = (time.time_ns() if ts_ns is None else ts_ns) // 1_000_000_000
    stamp = time.strftime("%b %e %H:%M:%S", time.gmtime(t))  # day space-padded, as RFC 3164 wants
    return f"<{pri}>{stamp} {header_field(host, 255)} {header_field(tag, 32)}: {msg}"


def rfc3164(msg: str, *, pri: int = 14, ts_ns: int | None = None, host: str = HOSTNAME, tag: str = "podtrail") -> bytes:
    return rfc3164_text(msg, pri=pri, ts_ns=ts_ns, host=host, tag=tag).encode("utf-8", "replace")


@dataclass
class SyslogConfig:
    type: str = "syslog"
    host: str = "127.0.0.1"
    port: int = 514
    protocol: str = "tcp"  # udp | tcp | tls
    framing: str = "octet-counting"  # octet-counting | lf
    header: str = "rfc5424"  # rfc5424 | rfc3164
    format: str = "cef"  # cef | leef | json
    ca_file: str = ""
    client_cert: str = ""
    client_key: str = ""
    verify: bool = True
    udp_max_bytes: int = 2048
    queue_size: int = 65536
    spool_max_bytes: int = 1 << 30
    event_types: list[str] = field(default_factory=list)  # empty: all
    min_severity: int = 0
    namespaces: list[str] = field(default_factory=list)  # empty: all
    name: str = ""


def _formatter(fmt: str) -> Callable[[Event], str]:
    if fmt == "cef":
        from podtrail.formatters.cef import format_cef

        return format_cef
    if fmt.startswith("leef"):
        from podtrail.formatters.leef import format_leef

        version = "1.0" if fmt == "leef1" else "2.0"
        return lambda ev: format_leef(ev, version)
    from podtrail.outputs.stdout import to_json_line

    return to_json_line


def _batch_formatter(fmt: str) -> Callable[[list[Event]], list[str]]:
    """The formatter that takes a batch (CEF's own; the others event by event)."""
    if fmt == "cef":
        from podtrail.formatters.cef import format_cef_many

        return format_cef_many
    one = _formatter(fmt)
    return lambda evs: [one(ev) for ev in evs]


class SpooledOutput:
    """What every network output shares: filters, a bounded queue of events, the disk spool,
    and a sender that replays the spool with exponential backoff.

    Work is done in batches, one wake-up each: ``submit`` (the pipeline's thread) only
    queues the event; the spool thread takes everything queued, formats it with one call
    (``texts``), frames it into one buffer, and appends that with one write and one fsync;
    the sender takes what is unacknowledged (from memory: the same buffer) and delivers it
    (``deliver``, raising OSError on failure). Subclasses say how a batch becomes texts and
    how a chunk of the spool is delivered. Events must not change after ``submit`` (none
    does: they are final when the pipeline hands them out)."""

    # A message sent is acknowledged in the spool once it was sent this long ago, the
    # receiving kernel took it, and the connection is still open: syslog over TCP has no
    # acknowledgement, and a receiver that stops discards what it has not read yet (it resets
    # the connection: everything unacknowledged is sent again). 0: at once (for a receiver
    # whose answer is the acknowledgement, or UDP, which has none).
    confirm_s = 0.0

    def __init__(self, name: str, spool_dir: str, queue_size: int, spool_max_bytes: int,
                 event_types: list[str], min_severity: int, namespaces: list[str]) -> None:
        self.name = name
        self.event_types, self.min_severity, self.namespaces = event_types, min_severity, namespaces
        self._filtered = bool(event_types or min_severity or namespaces)
        self._q: Inbox[Event] = Inbox(queue_size)
        self._queued = self._spooled = 0  # events queued / taken off the queue and spooled (or counted as lost)
        self.spool = Spool(Path(spool_dir) / name.replace("/", "_"), spool_max_bytes)
        self._stop = threading.Event()
        self.on_health: Callable[[Event], None] | None = None  # the agent feeds these into the pipeline
        # a batch is sent when it has ``batch_records`` messages or its oldest waited ``linger_s``
        self.batch_records, self.linger_s = 4096, 0.0  # one acknowledgement per batch
        # the spool thread takes at most this many events at a time: one buffer, one write and
        # one fsync each (larger buffers cost more in page faults than they save in calls)
        self.spool_records = 1024
        # failures are visible: a warning on stderr at the first one and every ``warn_every_s``
        self.warn_every_s = 60.0
        self._failing_since: float | None = None
        self._warned_at = 0.0
        self._closing = False
        self._writer = threading.Thread(target=self._write_loop, name=f"{name}-spool", daemon=True)
        self._sender = threading.Thread(target=self._send_loop, name=f"{name}-send", daemon=True)
        self._writer.start()
        self._sender.start()

    def texts(self, evs: list[Event]) -> list[str]:
        """The message of each event, in order."""
        raise NotImplementedError

    def framed(self, evs: list[Event]) -> bytes:
        """The batch's messages framed as the spool holds them (``frame``)."""
        return frame(self.texts(evs))

    def deliver(self, chunk: Chunk) -> None:
        raise NotImplementedError

    def disconnect(self) -> None:
        return None

    # -- pipeline side ------------------------------------------------------------------------
    def wants(self, ev: Event) -> bool:
        if self.event_types and ev.get("event_type") not in self.event_types:
            return False
        if (ev.get("severity") or 0) < self.min_severity:
            return False
        return not self.namespaces or ev.get("namespace") in self.namespaces

    def submit(self, ev: Event) -> None:
        if self._filtered and not self.wants(ev):
            return
        try:
            self._q.put_nowait(ev)
            self._queued += 1
        except queue.Full:
            DROPPED.labels(self.name, "queue_full").inc()

    # -- threads ------------------------------------------------------------------------------
    def _format(self, batch: list[Event]) -> tuple[bytes, int]:
        """The batch framed, and how many messages; an event that cannot be formatted is
        logged, counted and skipped."""
        try:
            return self.framed(batch), len(batch)
        except Exception:  # noqa: BLE001 - find the culprits one by one; the others go on
            parts: list[bytes] = []
            for ev in batch:
                try:
                    parts.append(self.framed([ev]))
                except Exception:  # noqa: BLE001
                    log.exception("output %s: event %s could not be formatted", self.name, ev.get("event_id"))
                    DROPPED.labels(self.name, "format_error").inc()
            return b"".join(parts), len(parts)

    def _write_loop(self) -> None:
        while True:
            batch, closed = self._q.take(self.spool_records, 0.5)
            if batch:
                data, n = self._format(batch)
                before = self.spool.dropped
                self.spool.append_framed(data, n)
                self._spooled += len(batch)
                SPOOLED.labels(self.name).inc(n)
                lost = self.spool.dropped - before
                if lost:
                    DROPPED.labels(self.name, "spool_full").inc(lost)
                    self._health(f"output {self.name}: spool limit reached, {lost} oldest messages dropped", lost)
            if closed:
                return

    def _health(self, message: str, dropped: int) -> None:
        if self.on_health is not None:
            from podtrail.model.event import new_event
            from podtrail.model.fields import Kind

            self.on_health(new_event(Kind.AGENT, "health", message=message, dropped_before=dropped, source="agent"))

    def failing_for(self) -> float:
        """Seconds since this output last delivered while it had messages to send (0: healthy)."""
        since = self._failing_since
        return 0.0 if since is None else time.monotonic() - since

    def _failed(self, e: Exception) -> None:
        now = time.monotonic()
        cause = str(e) or type(e).__name__
        if self._failing_since is None:
            self._failing_since = self._warned_at = now
            msg = f"output {self.name}: cannot deliver ({cause}); keeping messages in the spool {self.spool.dir} and retrying"
        elif now - self._warned_at >= self.warn_every_s:
            self._warned_at = now
            msg = (f"output {self.name}: still failing after {now - self._failing_since:.0f}s ({cause}); "
                   f"spool {self.spool.dir} holds {self.spool.size_bytes()} bytes")
        else:
            log.debug("%s: send failed: %s", self.name, cause)
            return
        log.warning("%s", msg)
        self._health(msg, 0)

    def _delivered(self) -> None:
        if self._failing_since is not None:
            log.warning("output %s: delivering again after %.0fs", self.name, time.monotonic() - self._failing_since)
            self._failing_since = None

    def _send_loop(self) -> None:
        """Send what the spool holds, in order; acknowledge it once it is confirmed (at once
        when ``confirm_s`` is 0); on a failure, send again everything not acknowledged."""
        backoff = 0.2
        first_seen: float | None = None
        # sent, not yet acknowledged: (position after, records, sent at, the connection's byte count after)
        unconfirmed: deque[tuple[tuple[int, int], int, float, int]] = deque()
        chunk: Chunk | None = None
        while not self._stop.is_set():
            try:
                if unconfirmed:
                    self._confirm(unconfirmed)
                chunk = self.spool.take(self.batch_records)
                if not chunk.count:
                    self.spool.wait(0.2 if not unconfirmed else max(0.01, min(0.2, self.confirm_s / 4)))
                    continue
                if chunk.count < self.batch_records and self.linger_s > 0:  # wait briefly for a fuller batch
                    first_seen = first_seen or time.monotonic()
                    left = first_seen + self.linger_s - time.monotonic()
                    if left > 0 and not self._closing:
                        self.spool.wait(min(left, 0.05))
                        continue
                first_seen = None
                self.deliver(chunk)
                self.spool.sent(chunk.pos)
                unconfirmed.append((chunk.pos, chunk.count, time.monotonic(), self.sent_bytes()))
                chunk = None
                if not self.confirm_s:
                    self._confirm(unconfirmed)
                backoff = 0.2
            except (OSError, ValueError) as e:  # ValueError: ssl's errors for a bad key or certificate file
                FAILED.labels(self.name).inc()
                RETRIED.labels(self.name).inc(sum(u[1] for u in unconfirmed) + (chunk.count if chunk is not None else 0))
                unconfirmed.clear()
                self.spool.rewind()
                self._failed(e)
                self.disconnect()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _confirm(self, unconfirmed: deque[tuple[tuple[int, int], int, float, int]]) -> None:
        """Acknowledge what was sent ``confirm_s`` ago or earlier and the receiving kernel took,
        if the connection is still open (a receiver that closes with unread data resets it)."""
        cut = time.monotonic() - self.confirm_s
        if unconfirmed[0][2] > cut:
            return
        taken = None
        if self.confirm_s:
            self.check_alive()
            taken = self.received_bytes()
        pos, n = None, 0
        while unconfirmed and unconfirmed[0][2] <= cut and (taken is None or unconfirmed[0][3] <= taken):
            p, k, _, _ = unconfirmed.popleft()
            pos, n = p, n + k
        if pos is not None:
            self._delivered()  # before the ack: whoever sees the spool empty sees us healthy
            self.spool.ack(pos)
            SENT.labels(self.name).inc(n)

    def sent_bytes(self) -> int:
        """Bytes written to the current connection (0: not counted)."""
        return 0

    def received_bytes(self) -> int | None:
        """Of ``sent_bytes``, how many the receiving kernel acknowledged (None: not known)."""
        return None

    def check_alive(self) -> None:
        """Raise OSError when the connection is known to be gone."""
        return None

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued is spooled, sent and acknowledged (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._spooled >= self._queued and not self.spool.unacknowledged():
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._closing = True
        self._q.close()
        self._writer.join(10)
        # a last send when the receiver is up; a failing one is not waited for: the spool keeps
        # everything for the next start (stopping stays prompt)
        self.flush(0.0 if self._failing_since is not None else 1.0 + self.confirm_s)
        self._stop.set()
        self._sender.join(5)
        self.disconnect()
        self.spool.close()


class SyslogSink(SpooledOutput):
    def __init__(self, cfg: SyslogConfig, spool_dir: str) -> None:
        self.cfg = cfg
        self._fmt = _formatter(cfg.format)
        self._fmt_many = _batch_formatter(cfg.format)
        self._sock: socket.socket | None = None
        self._sent_bytes = 0
        self.confirm_s = 0.0 if cfg.protocol == "udp" else 1.0
        super().__init__(cfg.name or f"syslog-{cfg.protocol}-{cfg.host}-{cfg.port}", spool_dir, cfg.queue_size,
                         cfg.spool_max_bytes, cfg.event_types, cfg.min_severity, cfg.namespaces)

    def message(self, ev: Event) -> bytes:
        """One event's message (the batch path, ``texts``, gives the same text)."""
        msg = self._fmt(ev)
        if self.cfg.header == "rfc3164":
            return rfc3164(msg, ts_ns=ev.get("time_ns"))
        return rfc5424(msg, ts_ns=ev.get("time_ns"), msgid=str(ev.get("event_type", "-")))

    def texts(self, evs: list[Event]) -> list[str]:
        msgs = self._fmt_many(evs)
        if self.cfg.header == "rfc3164":
            return [rfc3164_text(m, ts_ns=ev.get("time_ns")) for ev, m in zip(evs, msgs, strict=True)]
        return [rfc5424(m, ts_ns=ev.get("time_ns"), msgid=str(ev.get("event_type", "-"))).decode("utf-8", "replace")
                for ev, m in zip(evs, msgs, strict=True)]

    def framed(self, evs: list[Event]) -> bytes:
        if self.cfg.header == "rfc3164":
            return frame(self.texts(evs))
        return rfc5424_framed(evs, self._fmt_many(evs))

    def _connect(self) -> socket.socket:
        c = self.cfg
        if c.protocol == "udp":
            s = socket.socket(socket.AF_INET6 if ":" in c.host else socket.AF_INET, socket.SOCK_DGRAM)
            s.connect((c.host, c.port))
            return s
        s = socket.create_connection((c.host, c.port), timeout=10)
        self._sent_bytes = 0
        if c.protocol == "tls":
            ctx = ssl.create_default_context(cafile=c.ca_file or None)
            if not c.verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if c.client_cert:
                ctx.load_cert_chain(c.client_cert, c.client_key or None)
            s = ctx.wrap_socket(s, server_hostname=c.host)
        return s

    def deliver(self, chunk: Chunk) -> None:
        if self._sock is None:
            self._sock = self._connect()
        c = self.cfg
        if c.protocol == "udp":
            for r in chunk.records():
                self._sock.send(r[: c.udp_max_bytes])
            return
        if c.framing == "lf":
            data = b"".join([r.replace(b"\n", b" ") + b"\n" for r in chunk.records()])
            self._sock.sendall(data)
            self._sent_bytes += len(data)
        else:  # octet counting (RFC 6587) is the spool's own framing: its bytes go as they are
            for part in chunk.parts:
                self._sock.sendall(part)
                self._sent_bytes += len(part)
        self._check_alive()

    def sent_bytes(self) -> int:
        return self._sent_bytes

    def received_bytes(self) -> int | None:
        """Bytes written minus those still in the socket's send queue (Linux SIOCOUTQ; under
        TLS the queue holds records with their overhead: an underestimate, never more)."""
        if self._sock is None:
            raise ConnectionResetError("not connected")
        try:
            queued = struct.unpack("i", fcntl.ioctl(self._sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        except OSError:
            return None
        return self._sent_bytes - queued

    def check_alive(self) -> None:
        if self._sock is None:
            raise ConnectionResetError("not connected")
        self._check_alive()

    def _check_alive(self) -> None:
        """A TCP peer that closed is only noticed on a later write; look for EOF now, so
        the batch just written is re-sent rather than acknowledged into the void."""
        assert self._sock is not None
        self._sock.setblocking(False)
        try:
            # syslog receivers never write back, so reading is only a way to see EOF
            data = self._sock.recv(1) if isinstance(self._sock, ssl.SSLSocket) else self._sock.recv(1, socket.MSG_PEEK)
            if data == b"":
                raise ConnectionResetError("peer closed the connection")
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        finally:
            self._sock.setblocking(True)

    def disconnect(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None


def syslog_config(spec: dict[str, Any], where: str) -> SyslogConfig:
    """The checked config of one syslog output (no side effects: run checks before loading)."""
    from podtrail.config import ConfigError, from_dict

    cfg = from_dict(SyslogConfig, spec, where)
    if cfg.protocol not in ("udp", "tcp", "tls"):
        raise ConfigError(f"{where}.protocol: udp, tcp or tls, not {cfg.protocol!r}")
    if cfg.format not in ("cef", "leef", "leef1", "json"):
        raise ConfigError(f"{where}.format: cef, leef, leef1 or json, not {cfg.format!r}")
    return cfg


def build_syslog(spec: dict[str, Any], spool_dir: str, where: str) -> SyslogSink:
    return SyslogSink(syslog_config(spec, where), spool_dir)
