"""Loopback TCP listeners for attack scenarios (a "pool", an "API server", a reverse-shell
handler), each served by a daemon thread and stopped so the port is free for the next test."""

from __future__ import annotations

import socket
import threading
import time


def free_port() -> int:
    """A loopback port nothing listens on (closed again at once: what a down receiver looks like)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listen(port: int, send: bytes = b"", hold: float = 0.0) -> socket.socket:
    """Accept on 127.0.0.1:``port``; to each peer send ``send``, keep it ``hold`` seconds, close."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(8)

    def serve() -> None:
        while True:
            try:
                c = s.accept()[0]
            except OSError:
                return
            try:
                if send:
                    c.sendall(send)
                time.sleep(hold)
            except OSError:
                pass
            finally:
                c.close()

    threading.Thread(target=serve, daemon=True).start()
    return s


def stop(s: socket.socket) -> None:
    """shutdown() wakes the thread blocked in accept(); close() alone would leave it listening."""
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()
