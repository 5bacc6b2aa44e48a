"""podtrail's tables as an osquery extension, over osquery's own Thrift definitions.

Registers every table with its full column metadata (type and options: INDEX, HIDDEN, ...),
serves ``call`` with constraints pushed down, answers pings while a generate runs, and exits
when osqueryd (the extension manager) stops answering.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from osquery.extensions import Extension, ExtensionManager
from osquery.extensions.ttypes import ExtensionResponse, ExtensionStatus, InternalExtensionInfo

from podtrail import __version__
from podtrail.tables.constraints import parse_context
from podtrail.tables.schema import TableSpec
from podtrail.tables.thrift_server import ThreadedUnixServer, client_protocol

log = logging.getLogger(__name__)

Generate = Callable[[str, Any], list[dict[str, str]]]  # (table, parsed constraints) -> rows


class NoRows(list[dict[str, str]]):
    """An empty answer that says why in the status message osquery gets (no agent running)."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


def routes(spec: TableSpec) -> list[dict[str, str]]:
    """Column metadata as osqueryd reads it from a table plugin's ``columns`` action."""
    return [{"id": "column", "name": c.name, "type": c.type, "op": str(c.options)} for c in spec.columns]


class ExtensionHandler(Extension.Iface):
    def __init__(self, specs: dict[str, TableSpec], generate: Generate, on_shutdown: Callable[[], None]) -> None:
        self.specs = specs
        self.generate = generate
        self.on_shutdown = on_shutdown

    def ping(self) -> ExtensionStatus:
        return ExtensionStatus(code=0, message="OK")

    def call(self, registry: str, item: str, request: dict[str, str]) -> ExtensionResponse:
        spec = self.specs.get(item) if registry == "table" else None
        if spec is None:
            return ExtensionResponse(status=ExtensionStatus(code=1, message=f"unknown {registry} {item}"), response=[])
        action = request.get("action")
        if action == "columns":
            return ExtensionResponse(status=ExtensionStatus(code=0, message="OK"), response=routes(spec))
        if action == "generate":
            try:
                rows = self.generate(item, parse_context(request.get("context")))
            except (ValueError, KeyError, json.JSONDecodeError) as e:
                return ExtensionResponse(status=ExtensionStatus(code=1, message=f"bad request: {e}"), response=[])
            return ExtensionResponse(status=ExtensionStatus(code=0, message=getattr(rows, "message", "OK")), response=rows)
        return ExtensionResponse(status=ExtensionStatus(code=1, message=f"unknown action {action!r}"), response=[])

    def shutdown(self) -> None:
        self.on_shutdown()


class OsqueryExtension:
    """Register with the manager at ``socket_path``, serve at ``<socket_path>.<uuid>``."""

    def __init__(self, socket_path: str, specs: dict[str, TableSpec], generate: Generate,
                 interval_s: float = 3.0, timeout_s: float = 5.0, name: str = "podtrail") -> None:
        self.socket_path = socket_path
        self.specs = specs
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.name = name
        self.stopped = threading.Event()
        self.uuid: int | None = None
        self._server: ThreadedUnixServer | None = None
        self._handler = ExtensionHandler(specs, generate, self.stop)

    def _manager(self) -> tuple[Any, Any]:
        trans, proto = client_protocol(self.socket_path, self.timeout_s)
        return trans, ExtensionManager.Client(proto)

    def start(self) -> None:
        trans, mgr = self._manager()
        try:
            registry = {"table": {name: routes(spec) for name, spec in self.specs.items()}}
            status = mgr.registerExtension(
                InternalExtensionInfo(name=self.name, version=__version__, sdk_version="5.0.0", min_sdk_version="3.0.0"),
                registry)
        finally:
            trans.close()
        if status.code != 0:
            raise RuntimeError(f"osquery refused the extension: {status.message}")
        self.uuid = status.uuid
        self._server = ThreadedUnixServer(Extension.Processor(self._handler), f"{self.socket_path}.{status.uuid}")
        self._server.start()
        threading.Thread(target=self._watch_manager, name="podtrail-osquery-watch", daemon=True).start()

    def _watch_manager(self) -> None:
        """Exit cleanly when osqueryd goes away (as osquery's own extensions do)."""
        while not self.stopped.wait(self.interval_s):
            try:
                trans, mgr = self._manager()
                try:
                    ok = mgr.ping().code == 0
                finally:
                    trans.close()
            except Exception:  # noqa: BLE001 - socket gone, refused, timed out
                ok = False
            if not ok:
                log.warning("osquery extension manager at %s is gone; stopping the extension", self.socket_path)
                self.stop()

    def stop(self) -> None:
        if self.stopped.is_set():
            return
        self.stopped.set()
        if self._server is not None:
            self._server.stop()
