"""One agent per node: an exclusive ``flock`` on a lock file that holds the owner's pid.

The kernel drops the lock when its holder dies (even by ``kill -9``), so a stale file never
blocks a restart; a second agent learns the first one's pid from the file and says so.
"""

from __future__ import annotations

import fcntl
import os


class AgentRunning(RuntimeError):
    """Another agent holds the lock; the message names its pid and the lock file."""


class AgentLock:
    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        made_dir = not os.path.isdir(os.path.dirname(self.path) or ".")
        if made_dir:
            os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AgentRunning(f"another podtrail agent is running on this node (pid {holder}, lock {self.path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Remove the file while still holding the lock, so no one else's lock is removed."""
        if self._fd is None:
            return
        try:
            if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
