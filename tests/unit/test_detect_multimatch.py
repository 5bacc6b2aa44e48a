"""The native anchor mask (``podtrail.detect._multimatch``) equals its Python reference
(``podtrail.detect.codegen``'s ``_words``/``_fix``/``_memo``/``_mask`` and the generated per-field
blocks): the Aho–Corasick automaton against the trie regex, and the prefix/suffix tries against
the per-length probes, on words and text of every Unicode kind
(ASCII, Latin-1, BMP, astral, lone surrogates), ASCII folding as ``predicate.fold`` defines it
(``İ``, the Kelvin sign and ``ß`` keep their code points), overlapping and empty words and
very long text; each bucket's C prefilter against the Python blocks on the shipped, community
and 400-rule sets and on hostile values; and whole engines: C masks == Python masks
(``native=False``, as with ``PODTRAIL_NATIVE=0``) == the interpreted engine, verdicts and the
rules tried per event alike."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podtrail.detect import codegen
from podtrail.detect.engine import Engine, word_finder
from podtrail.detect.predicate import fold
from podtrail.detect.ruleset import RuleSet, load_paths, load_texts

mm = codegen.accelerator()
if mm is None and os.environ.get("CI"):
    raise RuntimeError("podtrail.detect._multimatch is not built (make setup)")
pytestmark = pytest.mark.skipif(mm is None, reason="podtrail.detect._multimatch not built")

ROOT = Path(__file__).resolve().parents[2]
PREFILTER = re.compile(r"^    h = K\d+\(ev\)$", re.M)  # the generated function's call of the C prefilter
CID = "c" * 64
# One alphabet over every PyUnicode kind: ASCII (both cases), Latin-1, BMP (with letters whose
# Unicode case mapping changes length or maps to ASCII, which ASCII folding must leave alone),
# astral, a lone surrogate; and the regex's special characters.
ALPHABET = "abcAB/ .-|*?\\$\n\x00\x7fé\xdfßÉİıK\u212a\u0130\u0131ǅ\u4e00\ufb00\udcff\U0001F600\U00010400"
WORD = st.text(alphabet=ALPHABET, min_size=0, max_size=6)
TEXT = st.text(alphabet=ALPHABET, max_size=200) | st.text(max_size=60)


def reference(words: dict[str, int], text: str) -> int:
    """What the generated Python computes for the substring words (``codegen._words``)."""
    rx, by_kept = word_finder({w: [i] for i, w in enumerate(words)})
    masks = {k: sum(1 << i for i in rules) for k, rules in by_kept.items()}
    s = fold(text)
    m = rx.search(s)
    return 0 if m is None else codegen._words(rx, masks, s, m)


def native(words: dict[str, int], text: str) -> int:
    """The same through the automaton, built as codegen builds it (from the kept words)."""
    _, by_kept = word_finder({w: [i] for i, w in enumerate(words)})
    masks = {k: sum(1 << i for i in rules) for k, rules in by_kept.items()}
    return mm.Automaton(masks).mask(text)  # type: ignore[union-attr]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(WORD.map(fold), min_size=1, max_size=12, unique=True), TEXT, st.data())
def test_automaton_equals_the_trie_regex(words: list[str], text: str, data: st.DataObject) -> None:
    ws = {w: 1 << i for i, w in enumerate(words)}
    if words and data.draw(st.booleans()):  # plant words (and their upper case) in the text
        for w in data.draw(st.lists(st.sampled_from(words), max_size=3)):
            at = data.draw(st.integers(0, len(text)))
            text = text[:at] + (w.upper() if data.draw(st.booleans()) else w) + text[at:]
    assert native(ws, text) == reference(ws, text), (words, text)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(WORD.map(fold), min_size=1, max_size=12, unique=True), TEXT, st.data())
def test_prefix_and_suffix_tries_equal_fix(words: list[str], text: str, data: st.DataObject) -> None:
    """Modes 1 and 2 against ``codegen._fix`` (the per-length probes of the folded text)."""
    ws = {w: 1 << i for i, w in enumerate(words)}
    if data.draw(st.booleans()):
        w = data.draw(st.sampled_from(words))
        text = (w.upper() + text) if data.draw(st.booleans()) else (text + w)
    s = fold(text)
    for prefix, mode in ((True, 1), (False, 2)):
        lens: dict[int, dict[str, int]] = {}
        for w, m in ws.items():
            lens.setdefault(len(w), {})[w] = m
        want = codegen._fix(s, prefix, sorted(lens.items()))
        assert mm.Automaton(ws, mode).mask(text) == want, (words, text, mode)  # type: ignore[union-attr]


def test_automaton_on_exact_words_and_edges() -> None:
    A = mm.Automaton  # type: ignore[union-attr]
    a = A({"abc": 1, "bc": 2, "c": 4, "xyz": 8, "İ": 16, "\u212a": 32, "\U0001F600x": 64})
    assert a.mask("zzABCz") == 7 and a.mask("ab") == 0 and a.mask("") == 0
    assert a.mask("i") == 0 and a.mask("I") == 0 and a.mask("İ") == 16  # no Unicode folding
    assert a.mask("k") == 0 and a.mask("K") == 0 and a.mask("\u212a") == 32
    assert a.mask("\U0001F600X") == 64 and a.mask("\ud800c") == 4  # 4-byte kind; a lone surrogate
    assert A({"": 5}).mask("") == 5 and A({"": 5}).mask("q") == 5  # the empty word occurs everywhere
    assert A({}).mask("abc") == 0
    big = 1 << 700
    assert A({"needle": big}).mask("x" * 1_000_000 + "NeeDLE") == big  # long text: linear, found at the end
    assert A({"aa": 1, "a": 2}).mask("a" * 100_000) == 3  # a match at every position, each word once
    pre, suf = A({"/usr/": 1, "/": 2, "": 4, "/usr/bin/x": 8}, 1), A({"/sh": 1, "h": 2, "İ": 4}, 2)
    assert pre.mask("/USR/bin/x") == 15 and pre.mask("usr") == 4 and suf.mask("/bin/SH") == 3 and suf.mask("aİ") == 4
    with pytest.raises(ValueError):
        A({}, 3)
    with pytest.raises(TypeError):
        A({"a": "1"})
    with pytest.raises(TypeError):
        a.mask(b"abc")
    with pytest.raises(ValueError, match="too many words"):  # 3,001 states x 3,001 classes: stays with `re`
        A({chr(0x4E00 + 2 * i) + chr(0x4E01 + 2 * i): 1 for i in range(1500)})


# ---- each bucket's prefilter: C against the generated Python blocks ------------------------------


def _community_texts(n_words: int = 0) -> list[tuple[str, str]]:
    """Rules in the generic taxonomy with the cases the automaton must get right."""
    det = {"a": {"CommandLine|contains": ["curl ", "wget", "İ", "\u212a", "ß", "/dev/tcp/", "\U0001F600", "aa", "a"]},
           "b": {"Image|endswith": ["/python3", "/SH", "/ẞ"], "Image|startswith": ["/TMP/", "/é"]},
           "c": {"CommandLine|contains|all": ["base64", " -d"]},
           "d": {"ParentCommandLine|contains": [chr(0x4E00 + 2 * i) + chr(0x4E01 + 2 * i) for i in range(n_words)]
                 or ["nohup"]},
           "condition": "a or b or c or d"}
    doc = {"title": "mm", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"podtrail-mm/{n_words}")), "status": "test",
           "level": "low", "logsource": {"product": "linux", "category": "process_creation"}, "detection": det}
    return [("mm.yml", yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))]


def _rule_sets() -> list[RuleSet]:
    from bench.detect_eval import variant_texts

    texts, outputs = variant_texts(400)
    return [load_paths([]), load_paths([ROOT / "tests" / "sigma" / "community"]), load_texts(_community_texts()),
            load_texts(texts, outputs=outputs)]


def _indexes(rules: RuleSet, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The frozen index of every bucket, as the engine builds them."""
    seen: list[Any] = []
    real = codegen.build_scan

    def spy(rs: Any, index: Any, **kw: Any) -> Any:
        seen.append(index)
        return real(rs, index, **kw)

    monkeypatch.setattr("podtrail.detect.engine.build_scan", spy)
    Engine(rules)
    monkeypatch.undo()
    return seen


def _python_prefilter(always: int, plans: list[codegen.FieldPlan]) -> Any:
    fns = [(p.name, codegen._field_fn(p, {})) for p in plans]

    def h(ev: dict[str, Any]) -> int:
        out = always
        for name, fn in fns:
            r = ev.get(name)
            if r is not None:
                out |= fn(r)
        return out
    return h


HOSTILE: list[Any] = ["", " ", "0", "1", "true", "TRUE", 0, 1, 2**70, -1, True, False, 1.0, float("nan"), "İSTANBUL",
                      "\u212a", "\udcff", "a\nb\x00c", "/BIN/SH", "/bin/sh", "/TMP/X", "/tmp/x/python3", "/usr/bin/PYTHON3",
                      "CURL -s http://x | sh", "sh -c 'echo aGk= | base64 -d'", "x" * 5000 + " curl | sh ", "/", "//",
                      "\U0001F600", "ß/ẞ", [], {}, ["a", 1], {"path": "/usr/sbin/nginx"}, b"/bin/sh", "\u4e00\u4e01",
                      "tcp", "udp", "4444", 4444, "/dev/tcp/10.0.0.1/4444", "\x00" * 10]
HOSTILE_TEXT = st.one_of(st.sampled_from(HOSTILE), st.text(alphabet=ALPHABET, max_size=80), st.text(max_size=40),
                         st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False),
                         st.lists(st.text(max_size=4), max_size=3))


def test_prefilter_equals_the_python_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.detect_eval import make_events
    from tests.unit.test_detect_codegen import _events

    events = make_events(1500) + _events()[:3000]
    checked = nonzero = 0
    for rules in _rule_sets():
        for index in _indexes(rules, monkeypatch):
            plans = codegen.field_plans(index)
            always = sum(1 << p for p in set(index.always))
            c, py = codegen.prefilter(mm, always, plans), _python_prefilter(always, plans)
            names = [p.name for p in plans]
            for i, ev in enumerate(events):
                ev = dict(ev)
                for j, name in enumerate(names):  # every anchored field gets hostile values now and then
                    if (i + j) % 7 == 0:
                        ev[name] = HOSTILE[(i * 31 + j) % len(HOSTILE)]
                for _ in range(2):  # the second time from the memos
                    try:
                        want: Any = py(ev)
                    except Exception as e:  # noqa: BLE001 - both must fail alike
                        want = type(e)
                    try:
                        got: Any = c(ev)
                    except Exception as e:  # noqa: BLE001
                        got = type(e)
                    assert got == want, (names, ev)
                    checked += 1
                    nonzero += bool(want) and not isinstance(want, type)
    assert checked > 10000 and nonzero > 1000


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["cmdline", "CommandLine", "path", "comm", "parent_cmdline", "stdin", "uid",
                                        "remote_port", "dst_address", "target_path", "drift", "container_id"]),
                       HOSTILE_TEXT, max_size=6),
       st.sampled_from([("process", "exec"), ("socket", "connect"), ("file", "write"), ("file", "open")]))
def test_engines_agree_on_hostile_events(ev: dict[str, Any], kind: tuple[str, str]) -> None:
    engines = _ENGINES
    ev = {"event_type": kind[0], "action": kind[1], "container_id": CID, **ev}
    if "CommandLine" in ev:
        ev["cmdline"] = ev.pop("CommandLine")
    for rules, (c, py, interp) in engines.items():
        got = [_verdict(e, ev) for e in (c, py, interp)]
        assert got[0] == got[1] == got[2], (rules, ev, got)


def _verdict(engine: Engine, ev: dict[str, Any]) -> Any:
    try:
        return engine.matches(dict(ev))
    except Exception as e:  # noqa: BLE001 - all engines must fail alike on a value no sensor sends
        return type(e).__name__


_ENGINES: dict[str, tuple[Engine, Engine, Engine]] = {}


@pytest.fixture(autouse=True, scope="module")
def _engines() -> None:
    for name, rules in (("shipped", load_paths([])), ("community", load_paths([ROOT / "tests" / "sigma" / "community"])),
                        ("unicode", load_texts(_community_texts()))):
        _ENGINES[name] = (Engine(rules), Engine(rules, native=False), Engine(rules, compiled=False))


def test_engines_agree_and_try_the_same_rules() -> None:
    """Verdicts with the C masks == with the Python masks == the interpreted engine's, and no
    rule runs more often with the C masks; the C prefilter is in the generated source."""
    from bench.detect_eval import make_events
    from tests.unit.test_detect_codegen import _events

    events = make_events(2000) + _events()
    matched = 0
    for name, (c, py, interp) in _ENGINES.items():
        assert all(src.startswith("def scan(ev):") for src in c.sources.values())
        assert all(PREFILTER.search(src) for src in c.sources.values())
        assert not any(PREFILTER.search(src) for src in py.sources.values())
        for ev in events:
            want = _verdict(interp, ev)
            assert _verdict(c, ev) == want == _verdict(py, ev), (name, ev)
            matched += bool(want) and not isinstance(want, str)
        # the C engine also demands its substring conjuncts' words: never more rules run
        assert all(a.evaluated <= b.evaluated for a, b in zip(c.sig_stats, py.sig_stats, strict=True)), name
    assert matched > 300


def test_a_word_set_too_big_for_the_table_keeps_python(monkeypatch: pytest.MonkeyPatch) -> None:
    rules = load_texts(_community_texts(n_words=1500))
    assert not rules.problems
    c, py, interp = Engine(rules), Engine(rules, native=False), Engine(rules, compiled=False)
    pf = next(f for f in c._scan[("process", "exec")].__globals__.values() if isinstance(f, mm.Prefilter))  # type: ignore[union-attr]
    kinds = {name: type(fn) for name, fn in pf.fields}
    assert kinds["parent_cmdline"] is not mm.FieldMask and kinds["cmdline"] is mm.FieldMask  # type: ignore[union-attr]
    for ev in [{"event_type": "process", "action": "exec", "container_id": CID, "parent_cmdline": "x\u4e10\u4e11y"},
               {"event_type": "process", "action": "exec", "container_id": CID, "parent_cmdline": "\u4e11\u4e12"},
               {"event_type": "process", "action": "exec", "container_id": CID, "cmdline": "WGET x", "path": "/é"}]:
        assert _verdict(c, ev) == _verdict(py, ev) == _verdict(interp, ev)
    assert _verdict(c, {"event_type": "process", "action": "exec", "container_id": CID,
                        "parent_cmdline": "x\u4e10\u4e11y"}) != []


def test_native_off_by_environment() -> None:
    """PODTRAIL_NATIVE=0: the engine computes its masks in Python (no prefilter object)."""
    code = ("from podtrail.detect.engine import Engine; from podtrail.detect.ruleset import load_paths; "
            "e = Engine(load_paths([])); print(e.accel is None, any('h = K' in s for s in e.sources.values()))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PODTRAIL_NATIVE": "0"}, cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False"]


def test_bad_arguments_are_type_errors() -> None:
    with pytest.raises(TypeError):
        mm.Prefilter(0, (("cmdline", 5),))  # type: ignore[union-attr]
    with pytest.raises(TypeError):
        mm.Prefilter(0, ())(["not", "a", "dict"])  # type: ignore[union-attr]
    with pytest.raises(TypeError):  # a contains automaton where a prefix trie belongs
        mm.FieldMask(True, None, mm.Automaton({"ab": 1}), None, None, {}, 1, 1, len)  # type: ignore[union-attr]
    with pytest.raises(TypeError):
        mm.FieldMask(True, [], None, None, None, {}, 1, 1, len)  # type: ignore[union-attr]
    fm = mm.FieldMask(True, {"x": 2}, None, None, None, {}, 1, 1, lambda r: 1 / 0)  # type: ignore[union-attr]
    assert fm("X") == 2 and fm(None) == 0 and fm("") == 0
    with pytest.raises(ZeroDivisionError):
        fm(5)


def test_the_detect_stage_asks_for_the_accelerator_before_its_rules_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent names missing accelerators at start; the rules compile in the background, so
    the stage asks for this one when it is built: with PODTRAIL_NATIVE=0 it is named at once."""
    from podtrail import native as nat
    from podtrail.config import DetectionConfig
    from podtrail.detect.stage import build_detect_stage

    monkeypatch.setenv("PODTRAIL_NATIVE", "0")
    monkeypatch.setattr(nat, "_missing", {})
    assert build_detect_stage(DetectionConfig()) is not None
    assert "podtrail.detect._multimatch" in nat.missing()
