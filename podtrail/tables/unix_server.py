"""A root-only UNIX socket that hands each connection to a handler thread, and stops promptly."""

from __future__ import annotations

import errno
import os
import socket
import stat
import threading
from collections.abc import Callable


def socket_alive(path: str) -> bool:
    """Whether a server accepts connections at ``path`` (a live socket is never unlinked)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(1.0)
        try:
            c.connect(path)
            return True
        except OSError:
            return False


class UnixAcceptor:
    def __init__(self, path: str, handle: Callable[[socket.socket], None], name: str) -> None:
        self.path = path
        self.handle = handle
        self.name = name
        self.stopped = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._ino: int | None = None

    def start(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        if os.path.lexists(self.path):
            if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
                raise OSError(errno.EEXIST, f"{self.path} exists and is not a socket")
            if socket_alive(self.path):
                raise OSError(errno.EADDRINUSE, f"{self.path} is in use by another process")
            os.unlink(self.path)  # a stale socket: its server is gone
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.path)
        os.chmod(self.path, 0o600)
        self._ino = os.stat(self.path).st_ino
        s.listen(16)
        s.settimeout(0.2)  # so stop() is noticed without a connection
        self._sock = s
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        assert self._sock is not None
        while not self.stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            conn.settimeout(None)
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()
        if self._sock is not None:
            self._sock.close()
        if self._thread is not None:
            self._thread.join(2)
        try:  # only our own socket: another server may have bound the path since
            if self._ino is not None and os.stat(self.path).st_ino == self._ino:
                os.unlink(self.path)
        except OSError:
            pass
