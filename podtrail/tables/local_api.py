"""The daemon's local table API: one JSON request per connection on a root-only UNIX socket.

It lets `podtrail extension` (started by osqueryd), `podtrail query` and `podtrail shell`
read the running daemon's tables without loading a second set of BPF programs on the node.
Request: ``{"table": NAME, "constraints": [[column, op, expr, numeric], ...]}``;
response: ``{"rows": [...]}`` or ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable

from podtrail.tables.constraints import Constraint

Generate = Callable[[str, list[Constraint]], list[dict[str, str]]]
MAX_REQUEST = 1 << 20


class LocalAPIServer:
    def __init__(self, path: str, generate: Generate) -> None:
        self.path = path
        self.generate = generate
        self._stop = threading.Event()
        self._sock: socket.socket | None = None

    def start(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        if os.path.exists(self.path):
            os.unlink(self.path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.path)
        os.chmod(self.path, 0o600)
        s.listen(16)
        s.settimeout(0.2)
        self._sock = s
        threading.Thread(target=self._loop, name="podtrail-local-api", daemon=True).start()

    def _loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

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
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


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
