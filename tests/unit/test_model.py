"""The field declaration is the single source: docs are generated from it, names are unique."""

from __future__ import annotations

from pathlib import Path

from podtrail.model.docs import render_fields_md
from podtrail.model.event import finalize, new_event, validate
from podtrail.model.fields import FIELDS_LIST, Kind

ROOT = Path(__file__).resolve().parents[2]


def test_docs_fields_md_is_current() -> None:
    current = (ROOT / "docs/fields.md").read_text()
    assert current == render_fields_md(), "docs/fields.md is stale: run `make docs`"


def test_names_unique_in_every_consumer() -> None:
    for attr in ("name", "osquery", "cef", "leef", "ecs"):
        names = [getattr(f, attr) for f in FIELDS_LIST if getattr(f, attr)]
        dupes = {n for n in names if names.count(n) > 1}
        assert not dupes, f"duplicate {attr} names: {dupes}"


def test_cef_labelled_slots() -> None:
    slots = {f.cef: f.cef_label for f in FIELDS_LIST if f.cef and f.cef.startswith("cs")}
    assert sorted(slots) == [f"cs{i}" for i in range(1, 7)]
    assert all(slots.values())


def test_finalize_orients_sockets_and_validates() -> None:
    out = finalize(new_event(Kind.SOCKET, "connect", local_address="10.0.0.1", local_port=40000,
                             remote_address="10.0.0.2", remote_port=443, direction="outbound", result=0))
    assert (out["src_address"], out["dst_port"], out["outcome"]) == ("10.0.0.1", 443, "success")
    inbound = finalize(new_event(Kind.SOCKET, "accept", local_address="10.0.0.1", local_port=80,
                                 remote_address="10.0.0.9", remote_port=5555, direction="inbound"))
    assert (inbound["src_address"], inbound["src_port"], inbound["dst_port"]) == ("10.0.0.9", 5555, 80)
    assert validate(out) == [] and validate(inbound) == []


def test_validate_catches_mistakes() -> None:
    ev = new_event(Kind.PROCESS, "exec", pid="12", bogus=1, remote_port=3)
    problems = " ".join(validate(ev))
    assert "pid" in problems and "bogus" in problems and "remote_port" in problems


def test_event_ids_unique() -> None:
    ids = {new_event(Kind.PROCESS, "exec")["event_id"] for _ in range(10000)}
    assert len(ids) == 10000
