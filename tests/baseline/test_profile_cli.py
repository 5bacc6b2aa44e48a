"""``podtrail profile`` on a real state directory, and the Sigma export judged by the
project's Sigma evaluator (pySigma's SQLite backend over the same events)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from test_baseline_units import conn, exe

from podtrail.cli import main
from podtrail.config import BaselineConfig
from podtrail.detect.baseline.engine import Baselines
from podtrail.detect.baseline.model import WorkloadKey
from podtrail.detect.baseline.sigma import rules
from podtrail.detect.baseline.store import ProfileStore
from podtrail.model.event import finalize, new_event
from podtrail.model.fields import Kind
from podtrail.rules.catalog import RuleFile
from podtrail.rules.evaluate import evaluate

KEY = WorkloadKey("prod", "shop", "Deployment", "web")
ROUTINE = [exe("/usr/bin/python3", parent="/usr/bin/python3"), exe("/bin/sleep"), exe("/tmp/tmp.aB3xZ9qW/job"),
           conn("10.0.0.9", 443), conn("10.96.0.10", 53, remote_service="kube-dns", remote_namespace="kube-system"),
           new_event(Kind.SOCKET, "listen", local_port=8080, transport="tcp", direction="listening", **{k: v for k, v in exe("/x").items() if k in ("cluster_name", "namespace", "workload_kind", "workload_name", "pod_name", "container_id")}),
           new_event(Kind.FILE, "create", target_path="/var/cache/app/5f2e9a1c7d/x", **{k: v for k, v in exe("/x").items() if k in ("cluster_name", "namespace", "workload_kind", "workload_name", "pod_name", "container_id")})]


def _learned(state: Path) -> Path:
    b = Baselines(BaselineConfig(mode="learn", learn_seconds=60, min_events=1))
    for ev in ROUTINE:
        b.check(ev, 0.0)
    return ProfileStore(state).save(b.profiles[KEY])


def test_list_show_mode_export_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    _learned(state)
    assert main(["profile", "list", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert "prod/shop/Deployment/web" in out and "learn" in out
    assert main(["profile", "mode", "--state-dir", str(state), "shop/Deployment/web", "monitor"]) == 0
    assert "monitor (pinned)" in capsys.readouterr().out
    assert main(["profile", "show", "--state-dir", str(state), "prod/shop/Deployment/web"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert doc["mode"] == "monitor" and "/tmp/tmp.*/job" in doc["current"]["executables"]
    exported = tmp_path / "web.yaml"
    assert main(["profile", "export", "--state-dir", str(state), "shop/Deployment/web", "-o", str(exported)]) == 0
    fresh = tmp_path / "fresh"
    assert main(["profile", "import", "--state-dir", str(fresh), str(exported), "--workload", "eu/shop/Deployment/web"]) == 0
    sig = tmp_path / "web-sigma.yml"
    assert main(["profile", "export", "--state-dir", str(state), "shop/Deployment/web", "--sigma", "-o", str(sig)]) == 0
    from sigma.collection import SigmaCollection

    parsed = SigmaCollection.from_yaml(sig.read_text())
    assert len(parsed.rules) == 5 and not parsed.errors
    got = ProfileStore(fresh).load_all().loaded
    assert [p.key.text for p in got] == ["eu/shop/Deployment/web"] and got[0].current.items == ProfileStore(state).load_all().loaded[0].current.items


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    _learned(state)
    assert main(["profile", "show", "--state-dir", str(state), "shop/Deployment/nope"]) == 2
    assert main(["profile", "show", "--state-dir", str(state), "web"]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: 1\nkind: podtrail-profile\nworkload: {namespace: a, kind: B, name: c}\nmode: protect\n")
    assert main(["profile", "import", "--state-dir", str(state), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "no profile for" in err[0] and "expected [cluster/]namespace/Kind/name" in err[1] and "mode: expected" in err[2]


def test_sigma_export_flags_exactly_what_is_outside_the_profile(tmp_path: Path) -> None:
    path = _learned(tmp_path / "state")
    p = ProfileStore(path.parent).load_all().loaded[0]
    files = []
    for i, doc in enumerate(rules(p)):
        f = tmp_path / f"r{i}.yml"
        f.write_text(yaml.safe_dump(doc, sort_keys=False))
        files.append(RuleFile(f, doc["name"], "alert", doc))
    routine = [finalize(dict(e)) for e in ROUTINE]
    assert evaluate(routine, files=files) == {}
    ctx = {k: v for k, v in ROUTINE[0].items() if k in ("cluster_name", "namespace", "workload_kind", "workload_name", "pod_name", "container_id")}
    new: list[dict[str, Any]] = [
        exe("/usr/bin/nc"), exe("/bin/sleep", parent="/usr/bin/python3"), conn("192.0.2.7", 4444),
        conn("10.96.0.10", 53, remote_service="other", remote_namespace="kube-system"),
        new_event(Kind.SOCKET, "listen", local_port=4444, transport="tcp", direction="listening", **ctx),
        new_event(Kind.FILE, "create", target_path="/etc/cron.d/x", **ctx),
    ]
    hits = evaluate([finalize(dict(e)) for e in new], files=files)
    by_list = {name.removeprefix("podtrail_baseline_").rsplit("_", 1)[0]: len(h.rows) for name, h in hits.items()}
    # nc: new executable and pair; sleep under python3: a new pair only
    assert by_list == {"executables": 1, "process_pairs": 2, "destinations": 2, "listening_ports": 1, "write_prefixes": 1}
    other = [finalize(dict(e, workload_name="api")) for e in new]  # another workload: not this profile's business
    assert evaluate(other, files=files) == {}
