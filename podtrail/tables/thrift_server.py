"""A threaded Thrift server on a UNIX socket: one thread per connection.

osqueryd keeps one connection for pings and opens others for calls; osquery-python's
single-threaded TSimpleServer answers none of them while a slow ``generate`` runs (its open
issue #47), so osqueryd's watchdog may declare the extension dead. Here a slow call never
holds up a ping, and ``stop()`` ends the accept loop promptly.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

from podtrail.tables.unix_server import UnixAcceptor

log = logging.getLogger(__name__)


class ThreadedUnixServer:
    def __init__(self, processor: Any, path: str) -> None:
        self.processor = processor
        self.path = path
        self._acceptor = UnixAcceptor(path, self._serve, "podtrail-thrift")

    def start(self) -> None:
        self._acceptor.start()

    def _serve(self, conn: socket.socket) -> None:
        ts = TSocket.TSocket()
        ts.handle = conn
        trans = TTransport.TBufferedTransport(ts)
        proto = TBinaryProtocol.TBinaryProtocol(trans)
        try:
            while not self._acceptor.stopped.is_set():
                self.processor.process(proto, proto)
        except TTransport.TTransportException:
            pass
        except Exception:
            log.exception("thrift call failed")
        finally:
            trans.close()

    def stop(self) -> None:
        self._acceptor.stop()


def client_protocol(path: str, timeout_s: float = 5.0) -> tuple[Any, Any]:
    """(transport, protocol) connected to a Thrift server on a UNIX socket."""
    ts = TSocket.TSocket(unix_socket=path)
    ts.setTimeout(int(timeout_s * 1000))
    trans = TTransport.TBufferedTransport(ts)
    trans.open()
    return trans, TBinaryProtocol.TBinaryProtocol(trans)
