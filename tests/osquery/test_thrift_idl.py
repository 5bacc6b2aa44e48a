"""podtrail's own osquery Thrift bindings: not stale, the same wire as the `osquery` package's,
and the streamed ``call`` reply decodes, with osquery-python's own client, to exactly the rows."""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import osquery.extensions.Extension as PyExtension
import osquery.extensions.ExtensionManager as PyExtensionManager
import osquery.extensions.ttypes as pytypes
import pytest
from conftest import require
from thrift.protocol.TBinaryProtocol import TBinaryProtocol, TBinaryProtocolAccelerated
from thrift.transport.TTransport import TMemoryBuffer

from podtrail.tables import osquery_ext
from podtrail.tables.osquery_ext import ExtensionHandler, StreamingProcessor
from podtrail.tables.osquery_thrift import Extension, ExtensionManager
from podtrail.tables.osquery_thrift import ttypes as ours
from podtrail.tables.schema import TABLES

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "podtrail/tables/osquery_thrift"


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    """Regenerating from the IDL with Debian's thrift-compiler gives the committed files."""
    require(shutil.which("thrift") is not None, "thrift-compiler (Debian package thrift-compiler)")
    subprocess.run([str(ROOT / "scripts/thrift-gen.sh"), str(tmp_path / "gen")], check=True)
    fresh = sorted(p.name for p in (tmp_path / "gen").iterdir())
    assert fresh == sorted(p.name for p in GENERATED.glob("*.py")), "run `make thrift` and commit"
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "gen", GENERATED, fresh, shallow=False)
    assert not mismatch and not errors, f"stale generated Thrift code: {mismatch + errors}; run `make thrift`"


def _wire(spec: Any) -> Any:
    """A thrift_spec with only what travels: field ids, type codes, nested specs (no class
    objects; field names kept too since the generated reader matches on ids, not names)."""
    if spec is None:
        return None
    if isinstance(spec, tuple | list):
        if len(spec) == 2 and isinstance(spec[0], type):  # (struct class, its spec)
            return _wire(spec[1])
        return tuple(_wire(s) for s in spec)
    return spec


@pytest.mark.parametrize("name", ["InternalOptionInfo", "InternalExtensionInfo", "ExtensionStatus", "ExtensionResponse"])
def test_structs_match_the_osquery_package_on_the_wire(name: str) -> None:
    assert _wire(getattr(ours, name).thrift_spec) == _wire(getattr(pytypes, name).thrift_spec)


def _methods(module: Any) -> dict[str, Any]:
    out = {}
    for attr in dir(module):
        if attr.endswith(("_args", "_result")):
            out[attr] = _wire(getattr(module, attr).thrift_spec)
    return out


@pytest.mark.parametrize(("mine", "theirs"), [(Extension, PyExtension), (ExtensionManager, PyExtensionManager)])
def test_services_match_the_osquery_package_on_the_wire(mine: Any, theirs: Any) -> None:
    assert _methods(mine) == _methods(theirs)
    assert set(mine.Processor(None)._processMap) == set(theirs.Processor(None)._processMap)


def _call_reply(processor: Any, proto: Any, request: dict[str, str], item: str = "container_process_events") -> bytes:
    req = TMemoryBuffer()
    Extension.Client(TBinaryProtocol(req)).send_call("table", item, request)
    out = TMemoryBuffer()
    processor.process(proto(TMemoryBuffer(req.getvalue())), proto(out))
    return out.getvalue()


def _decode_with_osquery_python(reply: bytes) -> Any:
    client = PyExtension.Client(TBinaryProtocol(TMemoryBuffer(reply)))
    return client.recv_call()


ROWS = [{"pid": str(i), "cmdline": f"sh -c 'échο {i}'\n\x00", "empty": ""} for i in range(osquery_ext.CHUNK * 2 + 3)] + [{}]


def _select(table: str, constraints: Any) -> tuple[int, Any]:
    return len(ROWS), iter(ROWS)


def test_streamed_reply_decodes_to_the_rows_with_osquery_pythons_client() -> None:
    """Chunk boundaries, non-ASCII, NUL and an empty row survive; the accelerated and the
    pure-Python writers put the same bytes on the wire."""
    processor = StreamingProcessor(ExtensionHandler(TABLES, _select, lambda: None))
    gen = {"action": "generate", "context": json.dumps({"constraints": []})}
    fast = _call_reply(processor, TBinaryProtocolAccelerated, gen)
    slow = _call_reply(processor, TBinaryProtocol, gen)
    assert fast == slow
    resp = _decode_with_osquery_python(fast)
    assert resp.status.code == 0 and resp.response == ROWS
    # columns and errors take the same path
    cols = _decode_with_osquery_python(_call_reply(processor, TBinaryProtocolAccelerated, {"action": "columns"}))
    assert [c["name"] for c in cols.response] == [c.name for c in TABLES["container_process_events"].columns]
    bad = _decode_with_osquery_python(_call_reply(processor, TBinaryProtocolAccelerated, gen, item="nope"))
    assert bad.status.code == 1 and bad.response == []


def test_a_row_count_that_does_not_match_fails_the_call_rather_than_corrupting_it() -> None:
    processor = StreamingProcessor(ExtensionHandler(TABLES, lambda t, c: (len(ROWS) + 1, iter(ROWS)), lambda: None))
    with pytest.raises(RuntimeError, match="announced"):
        _call_reply(processor, TBinaryProtocolAccelerated, {"action": "generate"})
