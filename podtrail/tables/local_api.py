"""The daemon's local table API: one JSON request per connection on a UNIX socket.

It lets `podtrail extension` (started by osqueryd), `podtrail query` and `podtrail shell`
read the running daemon's tables without loading a second set of BPF programs on the node.
Request: ``{"table": NAME, "constraints": [[column, op, expr, numeric], ...]}``;
response: ``{"rows": [...]}`` or ``{"error": "..."}``.

Who may connect: root, and the members of ``osquery.api_socket_group`` (default ``podtrail``,
mode 0660), so the osquery sidecar and ``podtrail query`` need no uid 0. podtrail creates no
group: a missing default group leaves the socket root-only, with a warning.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable

from podtrail.tables.constraints import Constraint
from podtrail.tables.unix_server import UnixAcceptor

log = logging.getLogger(__name__)
Generate = Callable[[str, list[Constraint]], list[dict[str, str]]]
MAX_REQUEST = 1 << 20


def socket_access(group: str | int, mode: int) -> tuple[int | None, int]:
    """(gid, mode) for the socket; owner-only when the group is "" or missing here."""
    from podtrail.config import group_id

    gid = group_id(group)
    if gid is None:
        if group:
            log.warning("no group %r on this host: the local API socket is root-only "
                        "(groupadd --system %s, or set osquery.api_socket_group)", group, group)
        return None, mode & 0o700
    return gid, mode


class LocalAPIServer:
    def __init__(self, path: str, generate: Generate, group: str | int = "", mode: int = 0o600) -> None:
        self.path = path
        self.generate = generate
        gid, mode = socket_access(group, mode)
        self._acceptor = UnixAcceptor(path, self._handle, "podtrail-local-api", mode, gid)

    def start(self) -> None:
        self._acceptor.start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                f = conn.makefile("rb")
                line = f.readline(MAX_REQUEST)
                req = json.loads(line)
                cs = [Constraint(str(c[0]), int(c[1]), str(c[2]), bool(c[3])) for c in req.get("constraints", [])]
                body: dict[str, object] = {"rows": self.generate(str(req["table"]), cs)}
            except (ValueError, KeyError, TypeError, IndexError) as e:
                body = {"error": f"{type(e).__name__}: {e}"}
            except OSError:
                return
            try:
                conn.sendall(json.dumps(body, separators=(",", ":")).encode() + b"\n")
            except OSError:
                pass

    def stop(self) -> None:
        self._acceptor.stop()


class DaemonUnavailable(RuntimeError):
    pass


def remote_generate(path: str, timeout_s: float = 30.0) -> Generate:
    """A ``generate`` that asks the running daemon."""

    def generate(table: str, constraints: list[Constraint]) -> list[dict[str, str]]:
        req = {"table": table, "constraints": [[c.column, c.op, c.expr, c.numeric] for c in constraints]}
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout_s)
                s.connect(path)
                s.sendall(json.dumps(req).encode() + b"\n")
                data = s.makefile("rb").readline()
        except OSError as e:
            raise DaemonUnavailable(f"no podtrail daemon at {path} ({e.strerror or e}); start `podtrail run`") from None
        body = json.loads(data)
        if "error" in body:
            raise KeyError(body["error"])
        return list(body["rows"])

    return generate
