"""A root-only UNIX socket that hands each connection to a handler thread, and stops promptly."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable


class UnixAcceptor:
    def __init__(self, path: str, handle: Callable[[socket.socket], None], name: str) -> None:
        self.path = path
        self.handle = handle
        self.name = name
        self.stopped = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        if os.path.exists(self.path):
            os.unlink(self.path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.path)
        os.chmod(self.path, 0o600)
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
        try:
            os.unlink(self.path)
        except OSError:
            pass
