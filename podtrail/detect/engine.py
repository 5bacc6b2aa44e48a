"""Evaluate a compiled RuleSet on each event: signatures through an index, then correlations.

Rules are grouped by log source (event type, and action for process_creation; an event is
looked up once by its type and action, so events no rule can match cost one dict lookup),
and within a group indexed by their anchors (podtrail.detect.predicate): exact values and numbers, last path components
(``|endswith: /nc``), other prefixes and suffixes by length, and substrings through one
trie-shaped regular expression per field that names the words found. An event is
tested only against the rules one of whose anchors it satisfies, plus the few rules with no
anchor, so the cost per event follows what the event could match, not how many rules exist.

Each group runs as one generated function (podtrail.detect.codegen): the same anchors as bit
masks, remembered per text value, a gate on fields every rule of the group needs, and the
candidates' conditions inlined. The index and closures here stay as the reference it is
tested against and as its fallback. Correlations are fed only by matching signatures, so an
event that matches none costs no correlation bookkeeping.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from podtrail.detect.alert import new_alert
from podtrail.detect.codegen import Scan, accelerator, build_scan
from podtrail.detect.correlate import Correlator
from podtrail.detect.predicate import Anchor, View
from podtrail.detect.ruleset import RuleSet, Signature
from podtrail.model.event import Event

log = logging.getLogger(__name__)
MAX_TRIGGER_IDS = 100
MAX_REQUIREMENTS = 2  # anchor sets of other conjuncts a generated prefilter also demands, per rule


def _trie(words: list[str]) -> tuple[str, list[str]]:
    """A regular expression matching, at a position, the shortest of ``words`` that starts
    there; and those shortest words (a word another one starts with stands for both)."""
    trie: dict[str, Any] = {}
    kept: list[str] = []
    for w in sorted(set(words)):
        node = trie
        for ch in w:
            if "" in node:
                break
            node = node.setdefault(ch, {})
        else:
            node.clear()
            node[""] = {}
            kept.append(w)

    def emit(node: dict[str, Any]) -> str:
        if "" in node:
            return ""
        alts = [re.escape(ch) + emit(sub) for ch, sub in sorted(node.items())]
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return emit(trie), kept


def trie_regex(words: list[str]) -> re.Pattern[str]:
    """One pattern that finds whether any of ``words`` occurs."""
    return re.compile(_trie(words)[0], re.DOTALL)


def word_finder(words: dict[str, list[int]]) -> tuple[re.Pattern[str], dict[str, list[int]]]:
    """A pattern and a map. The pattern's match at a position is the shortest word starting
    there; through the map it names every rule whose word may occur there: the rules of the
    matched word and of every longer word it begins. ``rules_in`` walks them."""
    pattern, kept = _trie(list(words))
    by_kept = {k: sorted({i for w, rules in words.items() if w.startswith(k) for i in rules}) for k in kept}
    return re.compile(pattern, re.DOTALL), by_kept


def rules_in(any_word: re.Pattern[str], by_word: dict[str, list[int]], s: str) -> set[int]:
    """The rules whose word may occur in ``s``: a superset of those whose word occurs, never
    missing one. One search per occurrence, each resuming after the previous one's start (a
    single scan: a search costs about 5 ns per character, and the common case finds none)."""
    out: set[int] = set()
    m = any_word.search(s)
    while m is not None:
        out.update(by_word[m.group()])
        i = m.start() + 1
        m = any_word.search(s, i) if i <= len(s) else None  # an empty word matches at the end, once
    return out


@dataclass
class Index:
    """The rules of one log source, by anchor."""

    always: list[int] = field(default_factory=list)
    eq: dict[str, dict[str, list[int]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    pre: dict[str, dict[int, dict[str, list[int]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))
    suf: dict[str, dict[int, dict[str, list[int]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))
    base: dict[str, dict[str, list[int]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    num: dict[str, dict[Any, list[int]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    sub_words: dict[str, dict[str, list[int]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    sub: list[tuple[str, re.Pattern[str], dict[str, list[int]]]] = field(default_factory=list)
    # frozen lookup plans, built by ``freeze``
    eq_plan: list[tuple[str, dict[str, list[int]]]] = field(default_factory=list)
    base_plan: list[tuple[str, dict[str, list[int]]]] = field(default_factory=list)
    num_plan: list[tuple[str, dict[Any, list[int]]]] = field(default_factory=list)
    # (field, is prefix, every literal (for one C-level startswith/endswith test), per length)
    fix_plan: list[tuple[str, bool, tuple[str, ...], list[tuple[int, dict[str, list[int]]]]]] = field(
        default_factory=list)

    def add(self, i: int, anchors: list[Anchor] | None) -> None:
        """Rule (or requirement) ``i``, a candidate when one of ``anchors`` holds; always when None."""
        if not anchors:
            self.always.append(i)
            return
        for name, kind, key in anchors:
            if kind == "eq":
                self.eq[name][key].append(i)
            elif kind == "num":
                self.num[name][key].append(i)
            elif kind == "pre":
                self.pre[name][len(key)][key].append(i)
            elif kind == "suf" and key.startswith("/") and "/" not in key[1:]:
                self.base[name][key[1:]].append(i)  # ends with "/x" <=> the last component is "x"
            elif kind == "suf":
                self.suf[name][len(key)][key].append(i)
            else:
                self.sub_words[name][key].append(i)

    def freeze(self) -> None:
        self.eq_plan = [(f, dict(t)) for f, t in self.eq.items()]
        self.base_plan = [(f, dict(t)) for f, t in self.base.items()]
        self.num_plan = [(f, dict(t)) for f, t in self.num.items()]
        for prefix, fixes in ((True, self.pre), (False, self.suf)):
            self.fix_plan += [(f, prefix, tuple(sorted({k for t in lens.values() for k in t})),
                               [(n, dict(t)) for n, t in sorted(lens.items())]) for f, lens in fixes.items()]
        self.sub = [(f, *word_finder(dict(words))) for f, words in self.sub_words.items()]

    def candidates(self, v: View) -> set[int]:
        out = set(self.always)
        for f, table in self.eq_plan:
            s = v.low(f)
            if s is not None:
                hit = table.get(s)
                if hit:
                    out.update(hit)
        for f, numbers in self.num_plan:
            x = v.get(f)
            if x is not None and type(x) is not str:
                hit = numbers.get(x)
                if hit:
                    out.update(hit)
        for f, table in self.base_plan:
            s = v.low(f)
            if s is not None:
                i = s.rfind("/")
                if i >= 0:
                    hit = table.get(s[i + 1:])
                    if hit:
                        out.update(hit)
        for f, prefix, fixes, lens in self.fix_plan:
            s = v.low(f)
            if s is None or not (s.startswith(fixes) if prefix else s.endswith(fixes)):
                continue  # the common case: none of the literals, found in C
            size = len(s)
            for n, table in lens:
                if n > size:
                    break
                hit = table.get(s[:n] if prefix else s[size - n:])
                if hit:
                    out.update(hit)
        for f, any_word, by_word in self.sub:
            s = v.low(f)
            if s is not None:
                out |= rules_in(any_word, by_word, s)
        return out


@dataclass
class RuleStats:
    evaluated: int = 0
    matched: int = 0
    alerts: int = 0


class Engine:
    """Signatures and correlations over a stream of events; ``process`` returns the alerts an
    event raises (signature alerts first, in rule order, then correlation alerts).

    Each (event type, action) bucket's rules run as one generated function
    (``podtrail.detect.codegen``); ``compiled=False`` keeps the interpreted index and closures
    (the reference the generated code is tested against, and the fallback should generation
    fail); ``native=False`` computes the generated functions' anchor masks in Python instead of
    ``podtrail.detect._multimatch`` (as when it is not built or ``PODTRAIL_NATIVE=0``)."""

    def __init__(self, rules: RuleSet, *, max_groups: int = 10000, max_events: int = 10000,
                 compiled: bool = True, native: bool = True) -> None:
        self.rules = rules
        self.sigs = rules.signatures
        self.compiled = compiled
        self.accel = accelerator() if compiled and native else None  # the mask in C (codegen)
        self.correlators = [Correlator(c.spec, max_groups, max_events) for c in rules.correlations]
        self.sig_stats = [RuleStats() for _ in self.sigs]
        self.corr_stats = [RuleStats() for _ in rules.correlations]
        self.sources: dict[tuple[str, str | None], str] = {}  # generated source per bucket, for review
        by_source: dict[tuple[str, str | None], list[int]] = defaultdict(list)
        for i, sig in enumerate(self.sigs):
            for src in sig.sources:
                by_source[src].append(i)
        # An event of (type, action) is tried against the rules of that log source and of its
        # type with any action: one bucket of both, so an event costs one lookup of its
        # (type, action) and events no rule can match (exits, forks) stop there.
        self._scan: dict[tuple[Any, Any], Scan | None] = {}
        for et, action in by_source:
            if action is not None:
                self._scan[(et, action)] = self._build((et, action),
                                                       by_source[(et, action)] + by_source.get((et, None), []))
        self._by_type: dict[Any, Scan] = {et: self._build((et, None), rules)
                                          for (et, action), rules in by_source.items() if action is None}

    def _build(self, key: tuple[str, str | None], rules: list[int]) -> Scan:
        order = sorted(set(rules))
        if self.compiled:
            # Bits 0..n-1: each rule's cheapest anchor set. Beyond: up to MAX_REQUIREMENTS more
            # conjuncts' anchor sets of the same rule (a shell's path and a terminal as stdin):
            # all must hold. In Python only exact, prefix and suffix anchors: a substring one
            # would make the regex word search longer for every event, which costs more than it
            # saves; the native automaton's cost does not grow with its words, so there substring
            # ones count too (a `curl ` needs its `| sh` before the rule runs).
            ix, more, n = Index(), [], len(order)
            for pos, i in enumerate(order):
                sig = self.sigs[i]
                ix.add(pos, sig.anchors)
                bits = []
                extra = [r for r in sig.requirements if r != sig.anchors
                         and (self.accel is not None or all(k != "sub" for _, k, _ in r))]
                for req in extra[:MAX_REQUIREMENTS] if sig.anchors else []:
                    bits.append(n)
                    ix.add(n, req)
                    n += 1
                more.append(bits)
            ix.freeze()
            try:
                scan, self.sources[key] = build_scan(
                    [(i, self.sigs[i].tree, self.sigs[i].pred, self.sig_stats[i], more[p]) for p, i in enumerate(order)],
                    ix, accel=self.accel)
                return scan
            except (SyntaxError, RecursionError, MemoryError, ValueError, OverflowError):  # noqa: PERF203
                log.warning("rules of %s could not be compiled to one function; interpreting them", key,
                            exc_info=True)
        return self._interpreted(order)

    def _interpreted(self, order: list[int]) -> Scan:
        ix = Index()
        for i in order:
            ix.add(i, self.sigs[i].anchors)
        ix.freeze()
        sigs, stats = self.sigs, self.sig_stats

        def scan(ev: Event) -> list[int] | None:
            v = View(ev)
            cands = ix.candidates(v)
            if not cands:
                return None
            out = []
            for i in sorted(cands):
                stats[i].evaluated += 1
                if sigs[i].pred(v):
                    out.append(i)
            return out
        return scan

    def scan_for(self, ev: Event) -> Scan | None:
        """The rules an event of its (type, action) can match, as one function; None when none can."""
        key = (ev.get("event_type"), ev.get("action"))
        try:
            return self._scan[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable value in a hostile event: no rule names it
            return None
        scan = self._by_type.get(key[0])
        if len(self._scan) < 4096:  # (type, action) pairs are few; never grow without bound
            self._scan[key] = scan
        return scan

    def matches(self, ev: Event) -> list[int]:
        """Indexes of the signatures (alerting or not) that match ``ev``, in rule order."""
        scan = self.scan_for(ev)
        hits = scan(ev) if scan is not None else None
        if not hits:
            return []
        for i in hits:
            self.sig_stats[i].matched += 1
        return hits

    def process(self, ev: Event) -> list[Event]:
        try:
            scan = self._scan[(ev.get("event_type"), ev.get("action"))]
        except (KeyError, TypeError):
            scan = self.scan_for(ev)
        if scan is None:  # no rule for this (type, action): alerts, agent health, most exits
            return []
        hits = scan(ev)
        if not hits:
            return []
        return self._alerts(ev, hits)

    def _alerts(self, ev: Event, hits: list[int]) -> list[Event]:
        alerts: list[Event] = []
        fed: list[tuple[int, int]] = []
        for i in hits:
            sig, st = self.sigs[i], self.sig_stats[i]
            st.matched += 1
            if sig.output:
                st.alerts += 1
                alerts.append(self._signature_alert(sig, ev))
            fed += sig.feeds
        if not fed:
            return alerts
        v = View(ev)
        for ci, slot in fed:
            fired = self.correlators[ci].add(slot, v)
            if fired is None:
                continue
            corr, st = self.rules.correlations[ci], self.corr_stats[ci]
            st.matched += 1
            st.alerts += 1
            ids = fired.trigger_ids
            if len(ids) > MAX_TRIGGER_IDS:
                fired.findings["trigger_ids_total"] = len(ids)
                ids = ids[-MAX_TRIGGER_IDS:]
            m = corr.meta
            fired.findings["correlation"] = corr.spec.type
            alerts.append(new_alert(ev, rule_id=m.id, title=m.title, level=m.level, kind="correlation",
                                    tactics=m.tactics, techniques=m.techniques, trigger_ids=ids, status=m.status,
                                    findings=fired.findings))
        return alerts

    @staticmethod
    def _signature_alert(sig: Signature, ev: Event) -> Event:
        m = sig.meta
        matched = {f: ev[f] for f in sorted(sig.fields) if ev.get(f) not in (None, "")}
        return new_alert(ev, rule_id=m.id, title=m.title, level=m.level, kind="signature", tactics=m.tactics,
                         techniques=m.techniques, trigger_ids=[str(ev.get("event_id", ""))], status=m.status,
                         findings={"rule": m.name, "matched": matched})

    def expire(self) -> None:
        for c in self.correlators:
            c.expire()

    def stats(self) -> list[tuple[str, str, str, RuleStats]]:
        """(rule id, name, kind, stats) for every usable rule."""
        out = [(s.meta.id, s.meta.name, "signature", st) for s, st in zip(self.sigs, self.sig_stats, strict=True)]
        out += [(c.meta.id, c.meta.name, "correlation", st)
                for c, st in zip(self.rules.correlations, self.corr_stats, strict=True)]
        return out
