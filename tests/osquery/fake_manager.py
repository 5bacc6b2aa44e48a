"""A protocol-faithful stand-in for osqueryd's extension manager (no osqueryd exists here).

It is built from the `osquery` package's own Thrift definitions (ExtensionManager service,
binary protocol, buffered transport, UNIX socket), registers extensions as osqueryd does
(returns a uuid; the extension then serves at ``<socket>.<uuid>``), and calls an extension's
plugins exactly as osqueryd does: ``call("table", name, {"action": "generate", "context": json})``.
Being the `osquery` package's code (plain binary protocol), it also checks that podtrail's own
bindings and accelerated protocol put the same bytes on the wire. Each instance hands out
uuids from ``first_uuid`` on, so a restarted manager gives new ones, as osqueryd does.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from osquery.extensions import Extension, ExtensionManager
from osquery.extensions.ttypes import ExtensionStatus

from podtrail.tables.thrift_server import ThreadedUnixServer, client_protocol


class ManagerHandler(ExtensionManager.Iface):
    def __init__(self, first_uuid: int = 1000) -> None:
        self.registered: dict[int, tuple[Any, dict[str, Any]]] = {}
        self._ids = itertools.count(first_uuid)
        self.fail_next_extensions = False

    def ping(self) -> ExtensionStatus:
        return ExtensionStatus(code=0, message="OK")

    def extensions(self) -> dict[int, Any]:
        if self.fail_next_extensions:  # a call osqueryd did not answer in time, under load
            self.fail_next_extensions = False
            raise RuntimeError("busy")
        return {u: info for u, (info, _) in self.registered.items()}

    def options(self) -> dict[str, Any]:
        return {}

    def registerExtension(self, info: Any, registry: dict[str, Any]) -> ExtensionStatus:  # noqa: N802
        if any(i.name == info.name for i, _ in self.registered.values()):  # as osqueryd refuses it
            return ExtensionStatus(code=1, message="Duplicate extension registered")
        uid = next(self._ids)
        self.registered[uid] = (info, registry)
        return ExtensionStatus(code=0, message="OK", uuid=uid)

    def deregisterExtension(self, uuid: int) -> ExtensionStatus:  # noqa: N802
        self.registered.pop(uuid, None)
        return ExtensionStatus(code=0, message="OK")


class FakeOsqueryd:
    def __init__(self, socket_path: str, first_uuid: int = 1000) -> None:
        self.path = socket_path
        self.handler = ManagerHandler(first_uuid)
        self.server = ThreadedUnixServer(ExtensionManager.Processor(self.handler), socket_path, accelerated=False)
        self.server.start()

    def call(self, uuid: int, table: str, request: dict[str, str]) -> Any:
        trans, proto = client_protocol(f"{self.path}.{uuid}", timeout_s=60, accelerated=False)
        try:
            return Extension.Client(proto).call("table", table, request)
        finally:
            trans.close()

    def generate(self, uuid: int, table: str, constraints: list[dict[str, Any]] | None = None) -> Any:
        ctx = {"constraints": constraints or [], "colsUsed": [], "colsUsedBitset": 0}
        return self.call(uuid, table, {"action": "generate", "context": json.dumps(ctx)})

    def ping_extension(self, uuid: int) -> Any:
        trans, proto = client_protocol(f"{self.path}.{uuid}", accelerated=False)
        try:
            return Extension.Client(proto).ping()
        finally:
            trans.close()

    def stop(self) -> None:
        self.server.stop()
