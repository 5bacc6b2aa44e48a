"""The detection engine's own guarantees: the index never hides a match (the indexed engine finds
exactly what trying every rule finds), correlation state stays within its bounds and expires, a
failing detector loses no event, and per-rule metrics are exported."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from podtrail.detect.correlate import CorrelationSpec, Correlator
from podtrail.detect.engine import Engine, trie_regex
from podtrail.detect.predicate import View
from podtrail.detect.ruleset import load_paths
from podtrail.detect.stage import DetectStage, SigmaDetector
from podtrail.rules.catalog import SIGMA_DIR

ROOT = Path(__file__).resolve().parents[2]
KIND_OF = {"process_creation": "process", "network_connection": "socket", "file_event": "file"}


def _case_events() -> list[dict[str, Any]]:
    """Every event of the rule-case suite, plus variants with values swapped between events."""
    cases = yaml.safe_load((SIGMA_DIR / "tests" / "cases.yml").read_text())
    rules = {p.stem: yaml.safe_load(p.read_text()) for p in SIGMA_DIR.glob("rules/*/*.yml")}
    out: list[dict[str, Any]] = []
    for name, c in cases.items():
        kind = KIND_OF.get(rules.get(name, {}).get("logsource", {}).get("category", ""), "")
        for expect in ("match", "nomatch"):
            for case in c.get(expect) or []:
                for ev in case if isinstance(case, list) else [case]:
                    e = dict(ev)
                    e.setdefault("event_type", kind or "process")
                    e.setdefault("action", {"process": "exec", "socket": "connect"}.get(e["event_type"], "open"))
                    e.setdefault("container_id", "c" * 64)
                    out.append(e)
    rnd = random.Random(15)
    keys = sorted({k for e in out for k in e})
    for _ in range(3000):  # recombined events: values from one event in another's shape
        a, b = rnd.choice(out), rnd.choice(out)
        e = dict(a)
        for k in rnd.sample(keys, 4):
            if k in b:
                e[k] = b[k]
        out.append(e)
    return out


def test_index_finds_exactly_what_trying_every_rule_finds() -> None:
    rules = load_paths([ROOT / "tests" / "sigma" / "community"])
    engine = Engine(rules)
    checked = 0
    for ev in _case_events():
        v = View(ev)
        src = {(ev.get("event_type"), ev.get("action")), (ev.get("event_type"), None)}
        brute = [i for i, s in enumerate(rules.signatures) if src & set(s.sources) and s.pred(v)]
        assert engine.matches(ev) == brute, ev
        checked += bool(brute)
    assert checked > 200  # the comparison saw many matches, not only misses


def test_index_tries_few_rules_per_event() -> None:
    engine = Engine(load_paths([]))
    benign = {"event_type": "process", "action": "exec", "path": "/usr/bin/python3", "comm": "python3",
              "cmdline": "python3 manage.py runserver", "container_id": "c" * 64, "stdin": "null"}
    engine.matches(benign)
    tried = sum(st.evaluated for st in engine.sig_stats)
    n_exec = sum(1 for s in engine.sigs if ("process", "exec") in s.sources)
    assert tried <= 3 < n_exec, (tried, n_exec)


@pytest.mark.parametrize(("words", "text", "hit"), [
    (["nc -e", "nc", "ncat"], "xxncyy", True),
    (["stratum+tcp://", "xmrig"], "run XMRIG".lower(), True),
    (["stratum+tcp://", "xmrig"], "stratum+ssl://", False),
    (["a.b", "(x)"], "a-b x", False),
    (["a.b", "(x)"], "q(x)", True),
    ([""], "anything", True),
])
def test_trie_regex(words: list[str], text: str, hit: bool) -> None:
    assert (trie_regex(words).search(text) is not None) is hit


def _spec(**kw: Any) -> CorrelationSpec:
    base: dict[str, Any] = dict(type="event_count", span_us=60_000_000, op="gte", count=3, group_by=["container_id"],
                                group_fields=[["container_id"]], value_fields=[None], n_slots=1)
    base.update(kw)
    return CorrelationSpec(**base)


def _view(i: int, t: int, cid: str = "a", **kw: Any) -> View:
    return View({"event_id": f"e{i}", "time": t, "container_id": cid, **kw})


def test_correlation_groups_are_bounded_and_evictions_counted() -> None:
    c = Correlator(_spec(), max_groups=10)
    for i in range(50):
        assert c.add(0, _view(i, 1_790_000_000, cid=f"c{i}")) is None
    assert len(c.groups) == 10 and c.evicted == 40


def test_correlation_matches_per_group_are_bounded() -> None:
    c = Correlator(_spec(count=1000, span_us=10**12), max_events=5)
    assert c.max_events == 1001  # never below what the condition needs
    c2 = Correlator(_spec(count=2, span_us=10**12), max_events=3)
    for i in range(10):
        c2.add(0, _view(i, 1_790_000_000 + i, cid=f"x{i % 2}", pid=i))
    assert all(len(g.entries) <= 3 for g in c2.groups.values())


def test_correlation_window_expiry_and_reset_after_alert() -> None:
    c = Correlator(_spec(count=3, span_us=60_000_000))
    t = 1_790_000_000
    assert c.add(0, _view(1, t)) is None
    assert c.add(0, _view(2, t + 30)) is None
    assert c.add(0, _view(3, t + 100)) is None  # the first fell out of the minute
    assert c.add(0, _view(4, t + 120)) is None  # [t+60, t+120] holds two
    fired = c.add(0, _view(5, t + 125))
    assert fired is not None and fired.trigger_ids == ["e3", "e4", "e5"]
    c2 = Correlator(_spec(count=3, span_us=60_000_000))
    for i, dt in enumerate((0, 10, 20)):
        f = c2.add(0, _view(i, t + dt))
    assert f is not None and f.trigger_ids == ["e0", "e1", "e2"] and f.findings == {"count": 3, "group": {"container_id": "a"}}
    assert c2.groups == {}  # one burst, one alert: the group starts over
    assert c2.add(0, _view(9, t + 21)) is None
    c2.watermark = (t + 1000) * 1_000_000  # microseconds, as event times are kept
    c2.expire()
    assert c2.groups == {}


def test_temporal_ordered_needs_the_order() -> None:
    spec = _spec(type="temporal_ordered", count=2, group_fields=[["container_id"], ["container_id"]],
                 value_fields=[None, None], n_slots=2)
    t = 1_790_000_000
    c = Correlator(spec)
    assert c.add(1, _view(1, t)) is None  # second rule first
    assert c.add(0, _view(2, t + 5)) is None  # then the first: no order yet
    fired = c.add(1, _view(3, t + 9))  # the second again, after the first: in order
    assert fired is not None and fired.trigger_ids == ["e2", "e3"]


def test_a_failing_detector_loses_no_event() -> None:
    class Broken:
        def process(self, ev: dict[str, Any]) -> list[dict[str, Any]]:
            raise RuntimeError("bug")

        def tick(self, now: float) -> list[dict[str, Any]]:
            raise RuntimeError("bug")

    engine = Engine(load_paths([]))
    stage = DetectStage([Broken(), SigmaDetector(engine)])
    out: list[dict[str, Any]] = []
    ev = {"event_id": "x1", "event_type": "process", "action": "exec", "path": "/usr/bin/nsenter",
          "cmdline": "nsenter -t 1 -m sh", "container_id": "c" * 64, "time": 1_790_000_000}
    stage.process(ev, out.append)
    stage.tick(0.0, out.append)
    assert out[0] is ev and [a["rule_title"] for a in out[1:]] == ["nsenter, unshare or chroot to the host from a container"]


def test_rule_metrics_exported() -> None:
    from prometheus_client import generate_latest

    from podtrail import metrics
    from podtrail.config import DetectionConfig
    from podtrail.detect.stage import build_detect_stage

    stage = build_detect_stage(DetectionConfig(rule_paths=[str(ROOT / "tests" / "sigma" / "community")]))
    assert stage is not None
    ev = {"event_id": "m1", "event_type": "process", "action": "exec", "path": "/usr/bin/nsenter",
          "cmdline": "nsenter -t 1 -m sh", "container_id": "c" * 64, "time": 1_790_000_000}
    stage.process(ev, lambda e: None)
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'podtrail_rule_alerts_total{kind="signature",rule="podtrail_namespace_escape_tool"' in text
    assert 'podtrail_rules{state="unusable"}' in text and "podtrail_correlation_state_entries" in text


def test_word_finder_never_misses_a_word() -> None:
    """Every rule whose word occurs in the text is named (words that begin other words included)."""
    from podtrail.detect.engine import rules_in, word_finder

    rnd = random.Random(7)
    alphabet = "ab c/-"
    for _ in range(300):
        words = {"".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 4))): [i] for i in range(8)}
        any_word, by_word = word_finder(words)
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 30)))
        found = rules_in(any_word, by_word, text)
        occurring = {i for w, rules in words.items() if w in text for i in rules}
        assert occurring <= found, (words, text)


def test_boolean_values_are_indexed_without_hiding_a_match() -> None:
    """``field: true/false`` is anchored (number, word, digit): the index still finds every
    event the rule matches, whatever type or text the event's value has."""
    from podtrail.detect.ruleset import load_texts

    def rule(name: str, field: str, value: bool) -> tuple[str, str]:
        doc = {"title": name, "id": f"00000000-0000-4000-8000-{len(name):012d}", "name": name, "status": "test",
               "logsource": {"category": "process_creation", "product": "linux"}, "level": "low",
               "detection": {"sel": {field: value}, "condition": "sel"}}
        return f"{name}.yml", yaml.safe_dump(doc)

    rules = load_texts([rule("drift_yes", "drift", True), rule("drift_no_", "drift", False),
                        rule("comm_yes__", "comm", True), rule("comm_no____", "comm", False)])
    assert not rules.problems
    engine = Engine(rules)
    values = [True, False, 1, 0, 1.0, 0.0, 2, "true", "TRUE", "True", "false", "1", "0", " 1", "yes", "", None]
    for field in ("drift", "comm"):
        for value in values:
            ev = {"event_type": "process", "action": "exec", field: value}
            v = View(ev)
            brute = [i for i, s in enumerate(rules.signatures) if s.pred(v)]
            assert engine.matches(ev) == brute, (field, value)
