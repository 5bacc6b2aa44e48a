"""The daemon's local table API: one JSON request per connection on a root-only UNIX socket.

It lets `podtrail extension` (started by osqueryd), `podtrail query` and `podtrail shell`
read the running daemon's tables without loading a second set of BPF programs on the node.
Request: ``{"table": NAME, "constraints": [[column, op, expr, numeric], ...]}``;
response: ``{"rows": [...]}`` or ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

from podtrail.tables.constraints import Constraint
from podtrail.tables.unix_server import UnixAcceptor

Generate = Callable[[str, list[Constraint]], list[dict[str, str]]]
MAX_REQUEST = 1 << 20


class LocalAPIServer:
    def __init__(self, path: str, generate: Generate) -> None:
        self.path = path
        self.generate = generate
        self._acceptor = UnixAcceptor(path, self._handle, "podtrail-local-api")

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
