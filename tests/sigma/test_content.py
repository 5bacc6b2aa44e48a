"""The shipped Sigma content: well-formed rules over declared fields, ATT&CK-mapped; every rule
converted by the real pySigma backends (Splunk, Elastic, and QRadar in its own venv) or listed
as unsupported with the backend's reason; the generated files current (CI fails when stale)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from podtrail.model.fields import FIELDS
from podtrail.rules.attack import known_ids
from podtrail.rules.build import build_outputs, stale
from podtrail.rules.catalog import rule_files
from podtrail.rules.targets import CATEGORIES, TARGETS

FILES = rule_files()
ALERTS = [f for f in FILES if f.kind == "alert"]
CORRS = [f for f in FILES if f.kind == "correlation"]
NAMES = {f.name for f in FILES}


def test_counts_and_correlation_types() -> None:
    assert len(ALERTS) >= 30
    assert len(CORRS) >= 5
    assert {"event_count", "value_count", "temporal"} <= {f.correlation_type for f in CORRS}
    assert len(NAMES) == len(FILES), "rule names must be unique"
    assert len({f.doc["id"] for f in FILES}) == len(FILES), "rule ids must be unique"


@pytest.mark.parametrize("rf", ALERTS + [f for f in FILES if f.kind == "base"], ids=lambda f: f.name)
def test_rule_metadata_and_fields(rf: Any) -> None:
    d = rf.doc
    for key in ("title", "id", "name", "description", "references", "tags", "falsepositives", "level", "logsource", "detection"):
        assert d.get(key), f"{rf.name}: missing {key}"
    assert d["logsource"]["product"] == "podtrail" and d["logsource"]["category"] in CATEGORIES
    kind = CATEGORIES[d["logsource"]["category"]][0]
    for name in rf.detection_fields:
        assert name in FIELDS, f"{rf.name}: {name!r} is not a declared podtrail field"
        assert kind in FIELDS[name].kinds, f"{rf.name}: {name!r} is not carried by {kind.value} events"
        for t in ("splunk", "elastic", "qradar"):
            TARGETS[t].field_name(name)  # raises when that SIEM cannot see it
    assert "event_type" not in rf.fields, "the log source selects the event type"
    techniques = [t for t in d["tags"] if re.fullmatch(r"attack\.t\d{4}(\.\d{3})?", t)]
    tactics = [t for t in d["tags"] if t.startswith("attack.") and t not in techniques]
    assert techniques and tactics, f"{rf.name}: needs an ATT&CK tactic and technique"
    missing = {t.split(".", 1)[1].upper() for t in techniques} - known_ids()
    assert not missing, f"{rf.name}: techniques not in siem_content/attack subset: {missing}"


@pytest.mark.parametrize("rf", CORRS, ids=lambda f: f.name)
def test_correlations_reference_shipped_rules(rf: Any) -> None:
    c = rf.doc["correlation"]
    assert set(c["rules"]) <= NAMES
    for g in c["group-by"]:
        assert g in FIELDS or g in (c.get("aliases") or {}), f"{rf.name}: group-by {g!r}"
    assert rf.doc["level"] and rf.doc["tags"]


@pytest.fixture(scope="module")
def outputs() -> dict[Any, str]:
    return build_outputs()


def test_generated_content_is_current(outputs: dict[Any, str]) -> None:
    """CI fails here when a rule changed and `podtrail rules build` was not run."""
    assert [str(p) for p in stale(outputs)] == []


def test_every_rule_converts_or_is_listed_unsupported(outputs: dict[Any, str]) -> None:
    by_name = {p.name: t for p, t in outputs.items()}
    spl, ndjson, aql, md = (by_name["savedsearches.conf"], by_name["podtrail-rules.ndjson"],
                            by_name["podtrail-rules.aql"], by_name["CONVERSION.md"])
    elastic = [json.loads(line) for line in ndjson.splitlines()]
    elastic_ids = {r["rule_id"] for r in elastic}
    for rf in ALERTS:  # every alert reaches every SIEM
        assert f"sigma_id = {rf.doc['id']}," in spl, rf.name
        assert rf.doc["id"] in elastic_ids, rf.name
        assert f"-- {rf.name}:" in aql, rf.name
    for rf in CORRS:
        row = next(line for line in md.splitlines() if line.startswith(f"| `{rf.name}`"))
        cells = [c.strip() for c in row.split("|")[5:8]]
        for siem, cell, present in zip(("splunk", "elastic", "qradar"), cells,
                                       (f"sigma_id = {rf.doc['id']}," in spl, rf.doc["id"] in elastic_ids, f"-- {rf.name}:" in aql),
                                       strict=True):
            assert (cell == "yes") == present, (rf.name, siem, cell)
            if cell != "yes":
                assert re.search(rf"- `{rf.name}` on {siem}: \S", md), f"{rf.name} on {siem}: no reason given"
    # Elastic rules carry the ATT&CK threat mapping from the offline subset
    assert all(r["threat"] for r in elastic if r["type"] == "query"), "threat mapping missing"
    assert {r["language"] for r in elastic} >= {"lucene", "esql"}


def test_rules_test_command_on_an_events_file(tmp_path: Any, capsys: Any) -> None:
    """`podtrail rules test` reads JSON lines as `podtrail run` prints them; bad lines are a one-line error."""
    from podtrail.cli import main

    cid = "a" * 64
    base = {"event_type": "process", "action": "exec", "container_id": cid, "pod_uid": "p1", "time": 1_800_000_000}
    evs = [{**base, "event_id": "e1", "path": "/tmp/x", "cmdline": "/tmp/x --url stratum+tcp://pool:3333"},
           {**base, "event_id": "e2", "path": "/tmp/x", "cmdline": "/tmp/x", "container_id": ""}]
    f = tmp_path / "events.jsonl"
    f.write_text("".join(json.dumps(e) + "\n" for e in evs))
    assert main(["rules", "test", "--events", str(f)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    out = {x["rule"]: x for x in lines[:-1]}
    assert set(out) == {"podtrail_stratum_url", "podtrail_exec_from_tmp_or_shm"}
    assert out["podtrail_stratum_url"]["event_ids"] == ["e1"] and out["podtrail_stratum_url"]["level"] == "critical"
    assert lines[-1]["summary"]["events"] == 2 and lines[-1]["summary"]["rules_fired"] == 2
    f.write_text("{not json\n")
    assert main(["rules", "test", "--events", str(f)]) == 2
    assert "not a JSON event" in capsys.readouterr().err
