"""podtrail's tables as an osquery extension, over podtrail's own Thrift bindings.

Registers every table with its full column metadata (type and options: INDEX, HIDDEN, ...),
serves ``call`` with constraints pushed down, answers pings while a generate runs. An evented
table's rows go out as bytes written straight from the buffer records (``wire``: no row
dicts, context entities encoded once); other rows through thrift's C encoder, in chunks: a
``SELECT *`` never holds more than one chunk of rows.

The manager (osqueryd) is watched: when it goes away, or comes back as a new process that
does not know this extension's uuid, the extension either stops (``reregister=False``: the
osquery autoload convention, osqueryd restarts it) or drops its socket and registers again
as soon as a manager answers (``reregister=True``: ``podtrail run --osquery-socket`` and the
sidecar, which must keep serving across osqueryd restarts).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from thrift.protocol import TBinaryProtocol
from thrift.Thrift import TMessageType, TType

from podtrail import __version__
from podtrail.tables.constraints import Constraint, parse_context
from podtrail.tables.osquery_thrift import Extension, ExtensionManager
from podtrail.tables.osquery_thrift.ttypes import ExtensionResponse, ExtensionStatus, InternalExtensionInfo
from podtrail.tables.schema import TableSpec
from podtrail.tables.thrift_server import ThreadedUnixServer, client_protocol
from podtrail.tables.wire import WireRows, row_bytes

log = logging.getLogger(__name__)

Row = dict[str, str]
# (table, constraints) -> (row count, rows): the count goes on the wire before the rows.
Select = Callable[[str, list[Constraint]], tuple[int, Iterable[Row]]]
Generate = Callable[[str, list[Constraint]], list[Row]]
CHUNK = 512  # rows encoded (and their dicts alive) at a time

OK = ExtensionStatus(code=0, message="OK")
_RESPONSE_SPEC = [ExtensionResponse, ExtensionResponse.thrift_spec]  # type: ignore[attr-defined]  # set after the class
_HEAD = 8  # field header (type 1 + id 2) and list header (element type 1 + size 4)


class NoRows(list[Row]):
    """An empty answer that says why in the status message osquery gets (no agent running)."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


def select_from(generate: Generate) -> Select:
    """A ``Select`` over a ``generate`` that returns a list (the local API proxy)."""

    def select(table: str, constraints: list[Constraint]) -> tuple[int, Iterable[Row]]:
        rows = generate(table, constraints)
        return len(rows), rows

    return select


def routes(spec: TableSpec) -> list[Row]:
    """Column metadata as osqueryd reads it from a table plugin's ``columns`` action."""
    return [{"id": "column", "name": c.name, "type": c.type, "op": str(c.options)} for c in spec.columns]


def _failed(message: str) -> ExtensionResponse:
    return ExtensionResponse(status=ExtensionStatus(code=1, message=message), response=[])


class ExtensionHandler(Extension.Iface):
    def __init__(self, specs: dict[str, TableSpec], select: Select, on_shutdown: Callable[[], None]) -> None:
        self.specs = specs
        self.select = select
        self.on_shutdown = on_shutdown

    def ping(self) -> ExtensionStatus:
        return OK

    def answer(self, registry: str, item: str, request: dict[str, str]) -> tuple[ExtensionResponse, int, Iterable[Row]]:
        """(response without rows, row count, rows): a generate's rows are streamed by the caller."""
        spec = self.specs.get(item) if registry == "table" else None
        if spec is None:
            return _failed(f"unknown {registry} {item}"), 0, ()
        action = request.get("action")
        if action == "columns":
            cols = routes(spec)
            return ExtensionResponse(status=OK), len(cols), cols
        if action == "generate":
            try:
                n, rows = self.select(item, parse_context(request.get("context")))
            except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
                return _failed(f"bad request: {e}"), 0, ()
            msg = getattr(rows, "message", None)  # NoRows: why there are none
            return ExtensionResponse(status=ExtensionStatus(code=0, message=msg) if msg else OK), n, rows
        return _failed(f"unknown action {action!r}"), 0, ()

    def call(self, registry: str, item: str, request: dict[str, str]) -> ExtensionResponse:
        resp, _, rows = self.answer(registry, item, request)
        resp.response = list(rows)
        return resp

    def shutdown(self) -> None:
        self.on_shutdown()


def _chunks(rows: Iterable[Row]) -> Iterator[list[Row]]:
    it = iter(rows)
    while chunk := list(islice(it, CHUNK)):
        yield chunk


def _encode_chunk(encode: Any, chunk: list[Row]) -> bytes:
    """The elements of an encoded list field, without its headers (thrift's C encoder);
    text it refuses (lone surrogates) goes through ``wire.row_bytes``, escaped."""
    try:
        return encode(ExtensionResponse(response=chunk), _RESPONSE_SPEC)[_HEAD:-1]  # type: ignore[no-any-return]
    except UnicodeEncodeError:
        return b"".join([row_bytes(r) for r in chunk])


def _send_while_rendering(trans: Any, pieces: Iterable[tuple[int, bytes]], count: int) -> int:
    """Write the chunks from a sender thread while this one renders the next: sending blocks
    (the socket holds little; osqueryd decodes as it reads) without the interpreter lock, so
    rendering, sending and osqueryd's decoding overlap instead of taking turns. Only the
    sender touches ``trans`` until it is joined. Returns the rows written."""
    q: queue.Queue[bytes | None] = queue.Queue(maxsize=2)
    failed: list[BaseException] = []

    def send() -> None:
        try:
            while (b := q.get()) is not None:
                trans.write(b)
                trans.flush()
        except BaseException as e:  # noqa: BLE001 - handed to the rendering thread, which raises it
            failed.append(e)
            while q.get() is not None:  # never leave the renderer blocked on a full queue
                pass

    sender = threading.Thread(target=send, name="podtrail-osquery-send", daemon=True)
    sender.start()
    written = 0
    try:
        for n, b in pieces:
            if failed:
                break
            written += n
            if written > count:
                raise RuntimeError(f"more rows than announced ({count})")
            q.put(b)
    finally:
        q.put(None)
        sender.join()
    if failed:
        raise failed[0]
    return written


def write_rows(oprot: Any, count: int, rows: Iterable[Row]) -> None:
    """The ``list<map<string,string>>`` of rows, chunk by chunk, flushed as it goes: rows
    the tables wrote as bytes already (``WireRows``) as they are, row dicts encoded."""
    oprot.writeListBegin(TType.MAP, count)
    binary = isinstance(oprot, TBinaryProtocol.TBinaryProtocol)
    encode = oprot._fast_encode if binary else None
    written = 0
    pieces: Iterable[tuple[int, bytes]] | None = None
    if isinstance(rows, WireRows) and binary:
        pieces = rows.chunks()
    elif binary:
        pieces = ((len(c), _encode_chunk(encode, c) if encode is not None else b"".join([row_bytes(r) for r in c]))
                  for c in _chunks(rows))
    if pieces is not None and count > CHUNK:
        written = _send_while_rendering(oprot.trans, pieces, count)
    elif pieces is not None:
        for n, b in pieces:
            written += n
            if written > count:
                raise RuntimeError(f"more rows than announced ({count})")
            oprot.trans.write(b)
            oprot.trans.flush()
    else:
        for row in rows:
            written += 1
            if written > count:
                raise RuntimeError(f"more rows than announced ({count})")
            oprot.writeMapBegin(TType.STRING, TType.STRING, len(row))
            for k, v in row.items():
                oprot.writeString(k)
                oprot.writeString(v)
            oprot.writeMapEnd()
    if written != count:
        raise RuntimeError(f"{written} rows, {count} announced")
    oprot.writeListEnd()


class StreamingProcessor(Extension.Processor):
    """``call`` writes its reply as the rows are rendered; the rest is the generated code."""

    def __init__(self, handler: ExtensionHandler) -> None:
        super().__init__(handler)
        self._processMap["call"] = StreamingProcessor.process_call
        self.handler = handler

    def process_call(self, seqid: int, iprot: Any, oprot: Any) -> None:
        args = Extension.call_args()
        args.read(iprot)
        iprot.readMessageEnd()
        try:
            resp, count, rows = self.handler.answer(args.registry, args.item, args.request or {})
        except Exception:
            log.exception("osquery call %s/%s failed", args.registry, args.item)
            resp, count, rows = _failed("internal error"), 0, ()
        # call_result { 0: ExtensionResponse success { 1: status, 2: response } }
        oprot.writeMessageBegin("call", TMessageType.REPLY, seqid)
        oprot.writeStructBegin("call_result")
        oprot.writeFieldBegin("success", TType.STRUCT, 0)
        oprot.writeStructBegin("ExtensionResponse")
        oprot.writeFieldBegin("status", TType.STRUCT, 1)
        resp.status.write(oprot)
        oprot.writeFieldEnd()
        oprot.writeFieldBegin("response", TType.LIST, 2)
        # A failure past this point cannot be reported in the reply: the connection is
        # closed (ThreadedUnixServer) and osqueryd sees the call fail.
        write_rows(oprot, count, rows)
        oprot.writeFieldEnd()
        oprot.writeFieldStop()
        oprot.writeStructEnd()
        oprot.writeFieldEnd()
        oprot.writeFieldStop()
        oprot.writeStructEnd()
        oprot.writeMessageEnd()
        oprot.trans.flush()


class OsqueryExtension:
    """Register with the manager at ``socket_path``, serve at ``<socket_path>.<uuid>``."""

    def __init__(self, socket_path: str, specs: dict[str, TableSpec], select: Select,
                 interval_s: float = 3.0, timeout_s: float = 5.0, name: str = "podtrail",
                 reregister: bool = False) -> None:
        self.socket_path = socket_path
        self.specs = specs
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.name = name
        self.reregister = reregister
        self.stopped = threading.Event()
        self.registered = threading.Event()
        self.registrations = 0  # how many times a manager accepted us (1 + re-registrations)
        self.uuid: int | None = None
        self._server: ThreadedUnixServer | None = None
        self._lock = threading.Lock()
        self._handler = ExtensionHandler(specs, select, self._on_shutdown)
        self._watcher: threading.Thread | None = None

    def _manager(self) -> tuple[Any, Any]:
        trans, proto = client_protocol(self.socket_path, self.timeout_s)
        return trans, ExtensionManager.Client(proto)

    def register(self) -> None:
        """Register once and serve; raises when no manager accepts us."""
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
        server = ThreadedUnixServer(StreamingProcessor(self._handler), f"{self.socket_path}.{status.uuid}")
        server.start()
        with self._lock:
            self.uuid, self._server = status.uuid, server
            self.registrations += 1
        self.registered.set()
        log.info("registered with osquery at %s as extension %s", self.socket_path, status.uuid)

    def start(self) -> None:
        """Register now (raising when that fails), then watch the manager."""
        self.register()
        self._watch()

    def start_when_ready(self) -> None:
        """Watch from now on: register as soon as a manager answers (it may start after us)."""
        self._watch()

    def _watch(self) -> None:
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch_manager, name="podtrail-osquery-watch", daemon=True)
            self._watcher.start()

    def _known_to_manager(self) -> bool:
        """Does the manager answer, and list our uuid? (A restarted osqueryd answers pings
        but has never heard of us.)"""
        try:
            trans, mgr = self._manager()
            try:
                return self.uuid in mgr.extensions()
            finally:
                trans.close()
        except Exception:  # noqa: BLE001 - socket gone, refused, timed out
            return False

    def _watch_manager(self) -> None:
        while not self.stopped.is_set():
            if self.registered.is_set():
                if not self._known_to_manager():
                    if not self.reregister:
                        log.warning("osquery extension manager at %s is gone; stopping the extension", self.socket_path)
                        self.stop()
                        return
                    log.warning("osquery at %s restarted or went away; registering again when it answers", self.socket_path)
                    self._drop()
                    continue
            else:
                try:
                    self.register()
                    continue
                except Exception as e:  # noqa: BLE001
                    log.debug("osquery extension not registered (%s); retrying", e)
            self.stopped.wait(self.interval_s)

    def _drop(self) -> None:
        """Stop serving the old registration's socket, and tell the manager if it still
        answers (osqueryd refuses a second extension of the same name while the first is
        registered, so a manager that only missed one check accepts us again at once)."""
        with self._lock:
            server, self._server, uuid, self.uuid = self._server, None, self.uuid, None
        self.registered.clear()
        if server is not None:
            server.stop()
        if uuid is not None:
            try:
                trans, proto = client_protocol(self.socket_path, min(self.timeout_s, 1.0))
                mgr = ExtensionManager.Client(proto)
                try:
                    mgr.deregisterExtension(uuid)
                finally:
                    trans.close()
            except Exception:  # noqa: BLE001 - the manager is gone: nothing to tell
                pass

    def _on_shutdown(self) -> None:
        """osqueryd asked us to shut down (it is stopping)."""
        if self.reregister:
            threading.Thread(target=self._drop, daemon=True).start()  # not from the serving thread's stack
        else:
            self.stop()

    def stop(self) -> None:
        if self.stopped.is_set():
            return
        self.stopped.set()
        self._drop()
