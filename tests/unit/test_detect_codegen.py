"""The generated rule functions (podtrail.detect.codegen) give the verdicts of the interpreted
engine (the closures of podtrail.detect.predicate, which the pySigma differential tests hold to
the SIEM-side semantics) on every shipped and community rule, on rules using every condition
element, and on hostile values: wrong types, empty and huge strings, non-ASCII case, JSON fields,
values that look like code. Also: a rule's values never become code, the gate and the memo of
text values change no verdict, and a tree too deep for one expression keeps its closure."""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from podtrail.detect import codegen
from podtrail.detect.engine import Engine
from podtrail.detect.predicate import View
from podtrail.detect.ruleset import RuleSet, load_paths, load_texts
from podtrail.rules.catalog import SIGMA_DIR

ROOT = Path(__file__).resolve().parents[2]
CID = "c" * 64
HOSTILE = "'); __import__('os').system('touch /tmp/podtrail-pwned') #\\\"\n"

# Every condition element the predicates know, in podtrail's and the generic taxonomy.
DETECTIONS: dict[str, tuple[str, str | None, dict[str, Any]]] = {
    "eq": ("podtrail", "process_creation", {"s": {"comm": ["Bash", "sh", ""]}, "condition": "s"}),
    "eq_num_field_text": ("podtrail", "process_creation", {"s": {"uid": ["0", "junk", "1e3"]}, "condition": "s"}),
    "eq_num_field_cased": ("podtrail", "process_creation", {"s": {"uid|cased": "0"}, "condition": "s"}),
    "eq_number": ("podtrail", "process_creation", {"s": {"uid": [0, 33]}, "t": {"comm": 5}, "condition": "s or t"}),
    "eq_bool": ("podtrail", "process_creation", {"s": {"drift": True}, "t": {"comm": False}, "condition": "s or t"}),
    "present": ("podtrail", "process_creation", {"s": {"user": "*"}, "condition": "s"}),
    "fixes": ("linux", "process_creation", {"a": {"Image|startswith": ["/usr/", "/TMP/"]},
                                            "b": {"Image|endswith": ["/python3", "/sh"]},
                                            "c": {"CommandLine|contains": ["curl ", "wget", "İ", "\u212a"]},
                                            "condition": "(a and b) or c"}),
    "cased": ("podtrail", "process_creation", {"s": {"cmdline|cased|contains": "XMRig", "path|cased|startswith": "/tmp",
                                                      "comm|cased|endswith": "rig"}, "condition": "s"}),
    "wildcards": ("podtrail", "process_creation", {"s": {"cmdline": ["curl *|?sh*", "*x*y", "a?c", "*"]},
                                                   "t": {"path|cased": "/tmp/*"}, "condition": "s or t"}),
    "expansions": ("linux", "process_creation", {"s": {"CommandLine|windash|contains": " -enc "},
                                                 "t": {"CommandLine|base64offset|contains": "/bin/sh"},
                                                 "condition": "s or t"}),
    "null_exists": ("podtrail", "process_creation", {"s": {"comm": "sh", "user": None}, "t": {"stdin|exists": True},
                                                     "u": {"cwd|exists": False}, "condition": "s or (t and u)"}),
    "regex": ("linux", "process_creation", {"s": {"CommandLine|re|i": r"BASE64\s+-d"}, "t": {"Image|re": "^/tmp/[a-z]+$"},
                                            "condition": "s or t"}),
    "cidr": ("linux", "network_connection", {"s": {"DestinationIp|cidr": ["10.0.0.0/8", "fd00::/8"]}, "condition": "s"}),
    "compare": ("podtrail", "network_connection", {"s": {"uid|lt": 1000, "remote_port|gte": 1024}, "t": {"comm|gt": 5},
                                                   "u": {"remote_port|lte": 22}, "v": {"uid|gt": 5},
                                                   "condition": "s or t or (u and v)"}),
    "fieldref": ("podtrail", "process_creation", {"s": {"cmdline|fieldref": "path"}, "t": {"cmdline|fieldref|startswith": "comm"},
                                                  "u": {"path|fieldref|endswith": "comm"}, "v": {"cmdline|fieldref|contains": "cwd"},
                                                  "condition": "1 of them"}),
    "not_and_or": ("podtrail", "process_creation", {"a": {"comm": "sh"}, "b": {"parent_path": "/usr/sbin/cron"},
                                                    "c": {"stdin": ["pipe", "socket"]}, "d": {"path|endswith": "/bash"},
                                                    "condition": "(a and not b) or (c and not (d or b))"}),
    "json_field": ("podtrail", "process_creation", {"s": {"ancestors|contains": '"path":"/usr/sbin/nginx"'},
                                                    "t": {"pod_labels|contains": '"app"'}, "condition": "s or t"}),
    "all_of": ("podtrail", "process_creation", {"sel_a": {"comm|startswith": "n"}, "sel_b": {"comm|endswith": "c"},
                                                "condition": "all of sel_*"}),
    "any_type": ("podtrail", None, {"s": {"comm": "nc"}, "condition": "s"}),
    "hostile_value": ("podtrail", "process_creation", {"s": {"cmdline|contains": HOSTILE}, "t": {"comm": HOSTILE},
                                                       "condition": "s or t"}),
    "file_event": ("podtrail", "file_event", {"s": {"target_path|startswith": "/etc/", "action": "write"},
                                              "t": {"file_name": ["passwd", "SHADOW"]}, "condition": "s or t"}),
}


def _texts() -> list[tuple[str, str]]:
    out = []
    for name, (product, category, det) in DETECTIONS.items():
        ls = {"product": product, **({"category": category} if category else {})}
        doc = {"title": name, "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"podtrail-codegen/{name}")), "name": f"g_{name}",
               "status": "test", "level": "low", "logsource": ls, "detection": det}
        out.append((f"{name}.yml", yaml.safe_dump(doc, sort_keys=False)))
    return out


def _rule_sets() -> list[RuleSet]:
    made = load_texts(_texts())
    assert not made.problems, made.problems
    return [load_paths([]), load_paths([ROOT / "tests" / "sigma" / "community"]), made]


# Values chosen for the edges of normalization and folding: types, emptiness, numbers as text,
# non-ASCII letters whose case ASCII folding keeps (and Unicode's would not), JSON, huge text.
ODD: list[Any] = [None, "", " ", "0", "1", "12", "1e3", "true", "TRUE", "False", 0, 1, 33, True, False, 1.0, 0.5, -1,
                  2**70, float("nan"), "İSTANBUL", "\u212a", "\udcff", "a\nb\x00c", "/BIN/SH", "/bin/sh", "/tmp/xmrig",
                  "curl -s http://x |bsh -s", "sh -c Base64  -d x", " 4755", "nc", "NC", "10.1.2.3", "fd00::1",
                  "not an ip", [], {}, ["a", 1], {"path": "/usr/sbin/nginx"}, [{"path": "/usr/sbin/nginx"}],
                  b"/bin/sh", HOSTILE, "x" * 5000 + " curl | sh ", "/usr/bin/python3"]


def _events() -> list[dict[str, Any]]:
    cases = yaml.safe_load((SIGMA_DIR / "tests" / "cases.yml").read_text())
    base: list[dict[str, Any]] = []
    for c in cases.values():
        for expect in ("match", "nomatch"):
            for case in c.get(expect) or []:
                for ev in case if isinstance(case, list) else [case]:
                    base.append(dict(ev))
    fields = sorted({k for e in base for k in e} | {"comm", "path", "cmdline", "uid", "drift", "user", "stdin", "cwd",
                                                    "ancestors", "pod_labels", "remote_port", "dst_address",
                                                    "parent_path", "target_path", "file_name", "container_id"})
    kinds = [("process", "exec"), ("socket", "connect"), ("file", "write"), ("file", "open"), ("process", "exit")]
    rnd = random.Random(14)
    out = []
    for _ in range(6000):
        e = dict(rnd.choice(base))
        e["event_type"], e["action"] = rnd.choice(kinds)
        e.setdefault("container_id", CID)
        for k in rnd.sample(fields, rnd.randint(1, 5)):
            e[k] = rnd.choice(ODD) if rnd.random() < 0.7 else rnd.choice(base).get(k)
        out.append(e)
    return out


def _verdicts(engine: Engine, ev: dict[str, Any]) -> Any:
    try:
        return engine.matches(dict(ev))
    except Exception as e:  # noqa: BLE001 - both engines must fail alike on a value no sensor sends
        return type(e).__name__


def test_generated_verdicts_equal_interpreted() -> None:
    events = _events()
    seen = 0
    for rules in _rule_sets():
        gen, py, interp = Engine(rules), Engine(rules, native=False), Engine(rules, compiled=False)
        assert gen.sources, "no bucket was compiled"
        for ev in events:
            want = _verdicts(interp, ev)
            assert _verdicts(gen, ev) == want == _verdicts(py, ev), ev
            assert _verdicts(gen, ev) == want == _verdicts(py, ev), ev  # again: the text values now come from the memo
            seen += bool(want) and not isinstance(want, str)
    assert seen > 300  # many matches compared, not only misses


def test_every_condition_element_is_generated_not_delegated() -> None:
    """Every rule here compiles to inline code: no closure call in the generated source."""
    engine = Engine(load_texts(_texts()))
    for key, src in engine.sources.items():
        assert "(View(ev))" not in src, key


def test_rule_values_are_constants_never_code(tmp_path: Path) -> None:
    canary = Path("/tmp/podtrail-pwned")
    canary.unlink(missing_ok=True)
    engine = Engine(load_texts(_texts()))
    ev = {"event_type": "process", "action": "exec", "container_id": CID, "cmdline": "x" + HOSTILE.upper() + "y",
          "comm": HOSTILE}

    def hits(e: dict[str, Any]) -> list[str]:
        return [engine.sigs[i].meta.name for i in engine.matches(e)]

    assert "g_hostile_value" in hits(ev) and not canary.exists()
    assert "g_hostile_value" not in hits(dict(ev, cmdline="x" + HOSTILE[:-2], comm=HOSTILE[1:]))
    assert not canary.exists()


def test_absent_required_field_skips_every_rule() -> None:
    """Every shipped rule needs container_id: a host process is rejected before any rule runs."""
    engine = Engine(load_paths([]))
    ev = {"event_type": "process", "action": "exec", "path": "/usr/bin/nsenter", "cmdline": "nsenter -t 1 -m sh",
          "comm": "nsenter", "stdin": "tty"}
    assert engine.matches(ev) == [] and sum(st.evaluated for st in engine.sig_stats) == 0
    assert engine.matches(dict(ev, container_id=CID)) != []
    assert "if g0 is None:\n        return None" in engine.sources[("process", "exec")]


def test_too_deep_trees_and_a_small_memo_keep_the_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codegen, "MAX_DEPTH", 0)  # every rule keeps its closure inside the generated function
    monkeypatch.setattr(codegen, "MEMO_SIZE", 3)  # the memo starts over all the time
    monkeypatch.setattr(codegen, "MEMO_MAX_LEN", 20)
    rules = _rule_sets()[2]
    gen, py, interp = Engine(rules), Engine(rules, native=False), Engine(rules, compiled=False)
    assert all("(View(ev))" in src for src in gen.sources.values())
    for ev in _events()[:2000]:
        assert _verdicts(gen, ev) == _verdicts(interp, ev) == _verdicts(py, ev), ev


def test_uncompilable_bucket_falls_back_to_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*a: Any, **k: Any) -> Any:
        raise SyntaxError("too many statically nested blocks")

    monkeypatch.setattr("podtrail.detect.engine.build_scan", broken)
    rules = load_paths([])
    engine = Engine(rules)
    assert engine.sources == {}
    ev = {"event_type": "process", "action": "exec", "path": "/usr/bin/nsenter", "cmdline": "nsenter -t 1 -m sh",
          "container_id": CID}
    v = View(ev)
    assert engine.matches(ev) == [i for i, s in enumerate(rules.signatures) if ("process", "exec") in s.sources
                                  and s.pred(v)] != []


def test_every_conjunct_anchor_must_hold_before_a_rule_runs() -> None:
    """A terminal as stdin is one conjunct of the terminal-shell rule, a shell's path another:
    curl on a terminal runs no rule; sh on a terminal runs it and matches."""
    engine = Engine(load_paths([]))
    pos = next(i for i, s in enumerate(engine.sigs) if s.meta.name == "podtrail_terminal_shell_in_container")
    ev = {"event_type": "process", "action": "exec", "container_id": CID, "path": "/usr/bin/curl", "comm": "curl",
          "cmdline": "curl -s https://example.test/", "stdin": "tty"}
    assert engine.matches(ev) == [] and engine.sig_stats[pos].evaluated == 0
    assert engine.matches(dict(ev, path="/bin/sh", comm="sh", cmdline="sh")) == [pos]
    assert engine.sig_stats[pos].evaluated == 1


@pytest.mark.parametrize("size", [400, 500])
def test_large_rule_sets_keep_the_verdicts(size: int) -> None:
    """Hundreds of rules in a bucket: candidates tested 16 at a time under 128-rule tests."""
    from bench.detect_eval import make_events, variant_texts

    texts, outputs = variant_texts(size)
    rules = load_texts(texts, outputs=outputs)
    assert not rules.problems
    gen, py, interp = Engine(rules), Engine(rules, native=False), Engine(rules, compiled=False)
    n_exec = sum(1 for s in gen.sigs if ("process", "exec") in s.sources)
    outer = [x for x in gen.sources[("process", "exec")].splitlines() if x.startswith("    if h & ")]
    assert n_exec > codegen.OUTER and len(outer) == -(-n_exec // codegen.OUTER)  # the two-level layout ran
    events = make_events(3000) + _events()[:3000]
    matched = 0
    for ev in events:
        want = _verdicts(interp, ev)
        assert _verdicts(gen, ev) == want == _verdicts(py, ev), ev
        matched += bool(want) and not isinstance(want, str)
    assert matched > 30
