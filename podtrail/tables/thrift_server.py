"""A threaded Thrift server on a UNIX socket: one thread per connection.

osqueryd keeps one connection for pings and opens others for calls; osquery-python's
single-threaded TSimpleServer answers none of them while a slow ``generate`` runs (its open
issue #47), so osqueryd's watchdog may declare the extension dead. Here a slow call never
holds up a ping, and ``stop()`` ends the accept loop promptly.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

log = logging.getLogger(__name__)


class ThreadedUnixServer:
    def __init__(self, processor: Any, path: str) -> None:
        self.processor = processor
        self.path = path
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.path)
        os.chmod(self.path, 0o600)
        s.listen(16)
        s.settimeout(0.2)
        self._sock = s
        self._thread = threading.Thread(target=self._accept_loop, name="podtrail-thrift", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            conn.settimeout(None)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        ts = TSocket.TSocket()
        ts.handle = conn
        trans = TTransport.TBufferedTransport(ts)
        proto = TBinaryProtocol.TBinaryProtocol(trans)
        try:
            while not self._stop.is_set():
                self.processor.process(proto, proto)
        except TTransport.TTransportException:
            pass
        except Exception:
            log.exception("thrift call failed")
        finally:
            trans.close()

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        if self._thread is not None:
            self._thread.join(2)
        try:
            os.unlink(self.path)
        except OSError:
            pass


def client_protocol(path: str, timeout_s: float = 5.0) -> tuple[Any, Any]:
    """(transport, protocol) connected to a Thrift server on a UNIX socket."""
    ts = TSocket.TSocket(unix_socket=path)
    ts.setTimeout(int(timeout_s * 1000))
    trans = TTransport.TBufferedTransport(ts)
    trans.open()
    return trans, TBinaryProtocol.TBinaryProtocol(trans)
