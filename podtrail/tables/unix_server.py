"""A UNIX socket that hands each connection to a handler thread, and stops promptly.

Owner-only (0600) unless given a group and mode: connecting needs write permission on the
socket, so its group and mode decide who besides the owner may connect.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


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
    def __init__(self, path: str, handle: Callable[[socket.socket], None], name: str,
                 mode: int = 0o600, gid: int | None = None) -> None:
        self.path = path
        self.handle = handle
        self.name = name
        self.mode = mode
        self.gid = gid
        self.stopped = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._ino: int | None = None

    def start(self) -> None:
        # The folder must be searchable by whoever may connect; the socket's mode guards it.
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o755, exist_ok=True)
        if os.path.lexists(self.path):
            if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
                raise OSError(errno.EEXIST, f"{self.path} exists and is not a socket")
            if socket_alive(self.path):
                raise OSError(errno.EADDRINUSE, f"{self.path} is in use by another process")
            os.unlink(self.path)  # a stale socket: its server is gone
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.path)
        mode = self.mode
        if self.gid is not None:
            try:
                os.chown(self.path, -1, self.gid)
            except PermissionError:
                # Giving a file to a group needs membership of it or CAP_CHOWN.
                log.error("cannot give %s to gid %d (this process is not in that group and has no CAP_CHOWN); "
                          "it stays owner-only", self.path, self.gid)
                mode &= 0o700
        elif mode & 0o077:
            mode &= 0o700  # no group given: nobody but the owner
        os.chmod(self.path, mode)
        self._ino = os.stat(self.path).st_ino
        s.listen(16)
        s.settimeout(1.0)  # stop() shuts the socket down, which ends accept at once; this is the backstop
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
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept (Linux)
            except OSError:
                pass
            self._sock.close()
        if self._thread is not None:
            self._thread.join(2)
        try:  # only our own socket: another server may have bound the path since
            if self._ino is not None and os.stat(self.path).st_ino == self._ino:
                os.unlink(self.path)
        except OSError:
            pass
