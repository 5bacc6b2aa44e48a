"""The field declaration is the single source: docs are generated from it, names are unique."""

from __future__ import annotations

from pathlib import Path

from podtrail.model.docs import SIEM_DOC, render_fields_md, render_siem_tables, update_siem_doc
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


def test_docs_siem_integration_tables_are_current() -> None:
    current = (ROOT / SIEM_DOC).read_text()
    assert current == update_siem_doc(current), f"{SIEM_DOC} is stale: run `python -m podtrail.model.docs`"
    tables = render_siem_tables()
    assert all(tables[s] in current for s in ("splunk", "elastic", "qradar"))
    for f in FIELDS_LIST:  # every field in every table, under its name in that SIEM
        assert f"| `{f.name}` |" in tables["splunk"] and (not f.cef or f"`{f.cef}`" in tables["splunk"])
        assert not f.ecs or f"`{f.ecs}`" in tables["elastic"]
        assert not f.leef or f"`{f.leef}`" in tables["qradar"]
