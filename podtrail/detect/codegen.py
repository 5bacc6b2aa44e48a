"""Each log source's rules as one generated Python function, compiled once at load.

The interpreted engine walks closures over a ``View`` (a dict lookup per value read, a call
per leaf); here the rules of one (event type, action) bucket become the source of a single
function, built from their condition trees (``podtrail.detect.predicate.Node``) with the
rule values bound as constants, and ``compile``d once, as a pySigma backend turns rules into
a query. The function:

1. reads each field it needs once into a local (normalized, and ASCII-folded where a rule
   compares case-insensitively), exactly as ``View`` does;
2. returns at once when a field every rule of the bucket needs is absent (every shipped rule
   needs ``container_id``: a host process costs one dict probe);
3. computes the candidates as a bit mask from the same anchors the interpreted index uses
   (dict probes, C-level prefix/suffix tests, one trie-regex search per substring field),
   remembered per text or integer value, so a recurring value costs one dict probe (with the
   native accelerator ``podtrail.detect._multimatch``, all of this is one C call per event:
   text values are folded and probed in C and the substring words are one Aho–Corasick
   automaton instead of the regex; other values go through the same Python code); a rule
   whose other conjuncts have exact/prefix/suffix anchors stays a candidate only if those
   hold too; returns when none is left: the common case, with no allocation;
4. else evaluates the candidate rules' conditions, inlined, in rule order, and returns the
   indexes of those that hold.

Leaf semantics are those of the closures in ``predicate`` (same parameters; tests hold the
generated and interpreted verdicts equal on every shipped and community rule and on hostile
values). A rule whose tree is too deep for one expression keeps its closure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from podtrail import native
from podtrail.detect.predicate import (
    _ASCII_LOWER,
    _NUMERIC_NAMES,
    COMPARE_OPS,
    Node,
    View,
    compare_value,
    fold,
    in_network,
    normalize,
)
from podtrail.model.fields import FIELDS

Scan = Callable[[dict[str, Any]], "list[int] | None"]
MAX_DEPTH = 40  # deeper trees keep their closure (the parser's nesting limit is 200 brackets)
GROUP = 16  # candidate bits tested per group (a bucket of 500 rules: 4 + 8 group tests, not 500)
OUTER = 8 * GROUP  # groups tested per outer test, in buckets of more rules than that
MEMO_SIZE = 4096  # remembered text values per field and bucket
MEMO_MAX_LEN = 1024  # longer values are searched each time (memory: at most ~4 MB of ASCII text per memo)


# ---- helpers the generated code calls (rarely: fallbacks and the hit path) ------------------------


_UNSET: Any = object()


def _text(g: Any) -> str | None:
    return g if g is None or type(g) is str else str(g)


def _words(rx: re.Pattern[str], masks: dict[str, int], s: str, m: re.Match[str] | None) -> int:
    """The rules whose word may occur in ``s`` (``podtrail.detect.engine.rules_in``, as a mask)."""
    out = 0
    while m is not None:
        out |= masks[m.group()]
        i = m.start() + 1
        m = rx.search(s, i) if i <= len(s) else None  # past the end (an empty word matched there): done
    return out


def _fix(s: str, prefix: bool, lens: Sequence[tuple[int, dict[str, int]]]) -> int:
    size = len(s)
    out = 0
    for n, table in lens:
        if n > size:
            break
        out |= table.get(s[:n] if prefix else s[size - n:], 0)
    return out


def accelerator() -> Any:
    """``podtrail.detect._multimatch``, or None (not built, or ``PODTRAIL_NATIVE=0``)."""
    return native.load("podtrail.detect._multimatch")


@dataclass(frozen=True)
class FieldPlan:
    """The anchors of one field in one bucket, as bit masks of the bucket's rule positions."""

    name: str
    eq: dict[str, int]
    num: dict[Any, int]
    base: dict[str, int]  # last path component
    pre: tuple[tuple[str, ...], tuple[tuple[int, dict[str, int]], ...]]  # every prefix; per length
    suf: tuple[tuple[str, ...], tuple[tuple[int, dict[str, int]], ...]]
    sub: tuple[re.Pattern[str], dict[str, int]] | None  # word finder (engine.word_finder) and its words


def _masks(table: dict[Any, list[int]]) -> dict[Any, int]:
    return {k: sum(1 << p for p in set(ps)) for k, ps in table.items()}


def field_plans(index: Any) -> list[FieldPlan]:
    """Per anchored field, its tables from a frozen ``engine.Index`` over bucket positions."""
    names = sorted({*index.eq, *index.num, *index.base, *index.pre, *index.suf, *index.sub_words})
    subs = {f: (rx, _masks(by_word)) for f, rx, by_word in index.sub}

    def fixes(lens: dict[int, dict[str, list[int]]] | None) -> Any:
        if not lens:
            return (), ()
        return (tuple(sorted({k for t in lens.values() for k in t})),
                tuple((n, _masks(t)) for n, t in sorted(lens.items())))

    return [FieldPlan(f, _masks(index.eq.get(f, {})), _masks(index.num.get(f, {})), _masks(index.base.get(f, {})),
                      fixes(index.pre.get(f)), fixes(index.suf.get(f)), subs.get(f)) for f in names]


def _mask(plan: FieldPlan, r: Any) -> int:
    """The rules one of whose anchors on ``plan.name`` the raw value ``r`` satisfies (the same
    tests as ``engine.Index.candidates``, on ``View``'s normalized and folded value)."""
    g = normalize(plan.name, r)
    h = 0
    if plan.num and g is not None and type(g) is not str:
        h |= plan.num.get(g, 0)
    t = _text(g)
    if t is None:
        return h
    s = fold(t)
    if plan.eq:
        h |= plan.eq.get(s, 0)
    if plan.base:
        i = s.rfind("/")
        if i >= 0:
            h |= plan.base.get(s[i + 1:], 0)
    if plan.pre[0] and s.startswith(plan.pre[0]):
        h |= _fix(s, True, plan.pre[1])
    if plan.suf[0] and s.endswith(plan.suf[0]):
        h |= _fix(s, False, plan.suf[1])
    if plan.sub is not None:
        rx, masks = plan.sub
        m = rx.search(s)
        if m is not None:
            h |= _words(rx, masks, s, m)
    return h


def _memo(plan: FieldPlan, memo: dict[str | int, int], r: str | int) -> int:
    """``_mask`` of a text or integer value, remembered: paths, names, ports and most command
    lines recur, and a remembered value costs one dict probe instead of folding and searching it
    again (only exact str and int keys: True == 1 and 1.0 == 1 would share an entry). Bounded:
    long values are not kept, and a full memo starts over."""
    h = _mask(plan, r)
    if type(r) is int or len(r) <= MEMO_MAX_LEN:  # type: ignore[arg-type]
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        memo[r] = h
    return h


def _field_fn(plan: FieldPlan, memo: dict[str | int, int]) -> Callable[[Any], int]:
    """The mask of one field's value (not None), as the generated Python block computes it."""
    def mask(r: Any) -> int:
        if type(r) is str or type(r) is int:
            m = memo.get(r)
            return _memo(plan, memo, r) if m is None else m
        return _mask(plan, r)
    return mask


def prefilter(mm: Any, always: int, plans: list[FieldPlan]) -> Callable[[dict[str, Any]], int]:
    """The native twin of the generated per-field blocks: ``always`` | each present field's mask.
    Prefixes, suffixes and last path components become tries. A field whose words are too many
    for the automaton's table keeps its Python block."""
    fields = []
    for plan in plans:
        memo: dict[str | int, int] = {}
        fn: Any = _field_fn(plan, memo)
        pre = {k: m for _, table in plan.pre[1] for k, m in table.items()}
        suf = {k: m for _, table in plan.suf[1] for k, m in table.items()}
        for k, m in plan.base.items():  # the last path component is k <=> ends with "/k" (k has no "/")
            suf["/" + k] = suf.get("/" + k, 0) | m
        try:
            words = mm.Automaton(plan.sub[1]) if plan.sub is not None else None
            fn = mm.FieldMask(plan.name not in _NUMERIC_NAMES, plan.eq, mm.Automaton(pre, 1) if pre else None,
                              mm.Automaton(suf, 2) if suf else None, words, memo, MEMO_SIZE, MEMO_MAX_LEN, fn)
        except ValueError:
            pass
        fields.append((plan.name, fn))
    return mm.Prefilter(always, tuple(fields))  # type: ignore[no-any-return]


_HELPERS: dict[str, Any] = {"_mask": _mask, "_memo": _memo, "_norm": normalize, "_fold": fold, "_text": _text, "_cidr": in_network, "_compare": compare_value,
                            "_words": _words, "_fix": _fix, "_TR": _ASCII_LOWER, "View": View, "_U": _UNSET}


# ---- analysis of a tree ----------------------------------------------------------------------------


def required(node: Node) -> frozenset[str]:
    """Fields that must be present (normalized value not None) for ``node`` to hold."""
    op = node[0]
    if op == "and":
        return frozenset().union(*(required(k) for k in node[1]))
    if op == "or":
        kids = [required(k) for k in node[1]]
        return frozenset.intersection(*kids) if kids else frozenset()
    if op in ("not", "absent"):
        return frozenset()
    if op == "exists":
        return frozenset({node[1]}) if node[2] else frozenset()
    if op == "fieldref":
        return frozenset({node[1], node[2]})
    return frozenset({node[1]})


def depth(node: Node) -> int:
    if node[0] in ("and", "or"):
        return 1 + max((depth(k) for k in node[1]), default=0)
    if node[0] == "not":
        return 1 + depth(node[1])
    return 1


# ---- source generation -----------------------------------------------------------------------------


class _Source:
    """The generated function's text, its bound constants and its field locals."""

    def __init__(self) -> None:
        self.ns: dict[str, Any] = dict(_HELPERS)
        self.slot: dict[str, int] = {}
        self.loaded: set[tuple[str, str]] = set()  # (field, g|t|l) computed on the straight path
        self.lines: list[str] = []
        self.ind = "    "
        self.lazy = False  # in a rule's block: compute a local only if still unset
        self.unset: set[str] = set()  # locals a block may compute: set to _U when the hit path starts
        self.seen: set[str] = set()  # locals the current block computed already

    def const(self, value: Any) -> str:
        """A name for ``value`` in the function's globals (str and int as literals)."""
        if type(value) is str or (type(value) is int and abs(value) < 2**62):
            return repr(value)
        name = f"K{len(self.ns)}"
        self.ns[name] = value
        return name

    def _n(self, name: str) -> int:
        return self.slot.setdefault(name, len(self.slot))

    def _emit(self, var: str, code: list[str]) -> None:
        """Lines computing ``var``: at once on the straight path, or in a rule's block only if
        no earlier block computed it (``var is _U``: the hit path starts with every local unset)."""
        if not self.lazy:
            self.lines += [self.ind + c for c in code]
            return
        if var in self.seen:
            return
        self.seen.add(var)
        self.unset.add(var)
        self.lines.append(f"{self.ind}if {var} is _U:")
        self.lines += [self.ind + "    " + c for c in code]

    def _once(self, name: str, rep: str, var: str, code: list[str]) -> str:
        if (name, rep) not in self.loaded:
            self._emit(var, code)
            if not self.lazy:
                self.loaded.add((name, rep))
        return var

    def g(self, name: str) -> str:
        """The local holding ``View.get(name)``, loading it first if needed."""
        var, f = f"g{self._n(name)}", repr(name)
        if name in FIELDS and name not in _NUMERIC_NAMES:  # str or None after normalize
            load = f"{var} = (r or None) if type(r) is str else None if r is None else _norm({f}, r)"
        else:
            load = f"{var} = None if r is None else _norm({f}, r)"
        return self._once(name, "g", var, [f"r = get({f})", load])

    def t(self, name: str) -> str:
        """``View.text(name)``: for a declared text field the normalized value itself."""
        g = self.g(name)
        if name in FIELDS and name not in _NUMERIC_NAMES:
            return g
        var = f"t{self._n(name)}"
        return self._once(name, "t", var, [f"{var} = _text({g})"])

    def low(self, name: str) -> str:
        """``View.low(name)``: the text, ASCII-folded."""
        t = self.t(name)
        var = f"l{self._n(name)}"
        return self._once(name, "l", var,
                          [f"{var} = None if {t} is None else {t}.lower() if {t}.isascii() else {t}.translate(_TR)"])

    def fields_of(self, node: Node) -> None:
        """Load every local ``expr`` reads for ``node`` (before the expression is emitted)."""
        op = node[0]
        if op in ("and", "or"):
            for k in node[1]:
                self.fields_of(k)
        elif op == "not":
            self.fields_of(node[1])
        elif op == "fieldref":
            self.low(node[1])
            self.low(node[2])
        elif op in ("eq", "pre", "suf", "sub", "like"):
            (self.t if node[2] else self.low)(node[1])
        elif op in ("regex", "cidr"):
            self.t(node[1])
        else:
            self.g(node[1])

    def expr(self, node: Node) -> str:
        """A Python expression with the truth value of the closure ``predicate`` builds for ``node``
        (locals loaded by ``fields_of``)."""
        op = node[0]
        if op == "and":
            return "(" + " and ".join(self.expr(k) for k in node[1]) + ")" if node[1] else "True"
        if op == "or":
            return self._or(node[1])
        if op == "not":
            return f"(not {self.expr(node[1])})"
        name = node[1]
        if op == "eq":
            _, _, cased, low = node
            return f"({self._s(name, cased)} == {self.const(low)})"
        if op in ("pre", "suf", "sub"):
            _, _, cased, lit = node
            s, k = self._s(name, cased), self.const(lit)
            test = f"{s}.startswith({k})" if op == "pre" else f"{s}.endswith({k})" if op == "suf" else f"{k} in {s}"
            return f"({s} is not None and {test})"
        if op == "like":
            s = self._s(name, node[2])
            return f"({s} is not None and {self.const(node[3])}.fullmatch({s}) is not None)"
        g = f"g{self.slot[name]}"
        if op == "present":
            return f"({g} is not None)"
        if op == "absent":
            return f"({g} is None)"
        if op == "exists":
            return f"({g} is not None)" if node[2] else f"({g} is None)"
        if op == "eq_num_field":
            _, _, cased, low, num = node
            as_str = f"{g} == {self.const(low)}" if cased else f"_fold({g}) == {self.const(low)}"
            as_num = "False" if num is None else f"{g} == {self.const(num)}"
            return f"({g} is not None and (({as_str}) if type({g}) is str else ({as_num})))"
        if op == "eq_number":
            _, _, numeric, n, as_text = node
            as_str = "False" if numeric else f"_fold({g}) == {self.const(as_text)}"
            return f"({g} is not None and (({as_str}) if type({g}) is str else ({g} == {self.const(n)})))"
        if op == "eq_bool":
            _, _, numeric, b, word = node
            as_str = f"{g} == {self.const(word)}" if numeric else f"_fold({g}) in {self.const((word, str(int(b))))}"
            return f"({g} is not None and (({as_str}) if type({g}) is str else ({g} == {int(b)})))"
        if op == "regex":
            t = self._t(name)
            return f"({t} is not None and {self.const(node[2])}.search({t}) is not None)"
        if op == "cidr":
            return f"_cidr({self._t(name)}, {self.const(node[2])})"
        if op == "compare":
            _, _, numeric, opname, n = node
            return f"_compare({g}, {self.const(COMPARE_OPS[opname])}, {self.const(n)}, {numeric})"
        if op == "fieldref":
            _, a, b, sw, ew = node
            la, lb = f"l{self.slot[a]}", f"l{self.slot[b]}"
            test = f"{lb} in {la}" if sw and ew else f"{la}.startswith({lb})" if sw else \
                f"{la}.endswith({lb})" if ew else f"{la} == {lb}"
            return f"({la} is not None and {lb} is not None and {test})"
        raise ValueError(f"no code for condition element {op!r}")

    def _t(self, name: str) -> str:
        j = self.slot[name]
        return f"g{j}" if name in FIELDS and name not in _NUMERIC_NAMES else f"t{j}"

    def _s(self, name: str, cased: bool) -> str:
        return self._t(name) if cased else f"l{self.slot[name]}"

    def _or(self, kids: list[Node]) -> str:
        """Alternatives; those comparing one field the same way become one C-level test
        (``in`` a frozenset, ``startswith``/``endswith`` of a tuple)."""
        groups: dict[tuple[str, str, bool], list[str]] = {}
        rest: list[Node] = []
        for k in kids:
            if k[0] in ("eq", "pre", "suf", "sub"):
                groups.setdefault((k[0], k[1], k[2]), []).append(k[3])
            else:
                rest.append(k)
        parts = []
        for (op, name, cased), lits in groups.items():
            if len(lits) == 1:
                parts.append(self.expr((op, name, cased, lits[0])))
                continue
            s = self._s(name, cased)
            if op == "eq":
                parts.append(f"({s} in {self.const(frozenset(lits))})")
            elif op == "sub":
                parts.append(f"({s} is not None and ({' or '.join(f'{self.const(w)} in {s}' for w in lits)}))")
            else:
                fn = "startswith" if op == "pre" else "endswith"
                parts.append(f"({s} is not None and {s}.{fn}({self.const(tuple(lits))}))")
        parts += [self.expr(k) for k in rest]
        return "(" + " or ".join(parts) + ")" if parts else "False"


def build_scan(rules: Sequence[tuple[int, Any, Any, Any, list[int]]], index: Any, *,
               accel: Any = None) -> tuple[Scan, str]:
    """The generated function for one bucket, and its source.

    ``rules``: (signature index, condition tree or None, closure, stats, requirement bits) in
    signature order; ``index``: a ``podtrail.detect.engine.Index`` whose positions 0..n-1 are
    those rules (their cheapest anchor sets) and whose further positions are the requirement
    bits (other conjuncts' anchor sets, each of which must hold too); its anchor tables become
    bit masks here. ``accel``: the native module (``accelerator()``) computing the mask, or None."""
    src = _Source()
    L = src.lines
    L.append("def scan(ev):")
    L.append("    get = ev.get")
    trees = [r[1] for r in rules]
    gate = frozenset.intersection(*[required(t) if t is not None else frozenset() for t in trees]) if trees \
        else frozenset()
    for name in sorted(gate):  # a field every rule needs: absent, no rule can hold
        L.append(f"    if {src.g(name)} is None:")
        L.append("        return None")

    always = sum(1 << p for p in set(index.always))
    plans = field_plans(index)
    if accel is not None:
        L.append(f"    h = {src.const(prefilter(accel, always, plans))}(ev)")
        plans = []
    else:
        L.append(f"    h = {always}")
    for plan in plans:
        memo, fp = src.const({}), src.const(plan)
        L.append(f"    r = get({plan.name!r})")
        L.append("    if r is not None:")
        L.append("        if type(r) is str or type(r) is int:")
        L.append(f"            m = {memo}.get(r)")
        L.append(f"            h |= _memo({fp}, {memo}, r) if m is None else m")
        L.append("        else:")
        L.append(f"            h |= _mask({fp}, r)")
    L.append("    if not h:")
    L.append("        return None")
    n = len(rules)
    multi = [(p, sum(1 << b for b in r[4])) for p, r in enumerate(rules) if r[4]]
    if multi:  # a rule stays a candidate only if its other conjuncts' anchors hold too
        need = src.const({1 << p: bits for p, bits in multi})
        L.append(f"    c = h & {(1 << n) - 1}")
        L.append(f"    m = c & {sum(1 << p for p, _ in multi)}")
        L.append("    while m:  # only the candidates that have such conjuncts")
        L.append("        b = m & -m")
        L.append("        m ^= b")
        L.append(f"        r = {need}[b]")
        L.append("        if h & r != r:")
        L.append("            c ^= b")
        L.append("    if not c:")
        L.append("        return None")
        L.append("    h = c")
    blocks: list[list[str]] = []
    src.lazy, src.ind = True, "            "
    for p, (sig_i, tree, pred, stats, _) in enumerate(rules):
        src.lines = block = [f"        if h & {1 << p}:", f"            {src.const(stats)}.evaluated += 1"]
        src.seen = set()
        test = f"{src.const(pred)}(View(ev))"  # a tree too deep for one expression keeps its closure
        if tree is not None and depth(tree) <= MAX_DEPTH:
            try:
                src.fields_of(tree)
                test = src.expr(tree)
            except ValueError:  # a condition element with no code here: the closure decides
                pass
        block += [f"            if {test}:", f"                out.append({sig_i})"]
        blocks.append(block)
    L.append("    out = []")
    if src.unset:
        L.append(f"    {' = '.join(sorted(src.unset))} = _U")
    span = OUTER if len(rules) > OUTER else len(rules)
    for top in range(0, len(rules), span):  # many rules: one test per OUTER, then per GROUP
        pad = "    " if span < len(rules) else ""
        if pad:
            L.append(f"    if h & {sum(1 << p for p in range(top, min(top + span, len(rules))))}:")
        for start in range(top, min(top + span, len(rules)), GROUP):
            group = range(start, min(start + GROUP, len(rules)))
            L.append(f"{pad}    if h & {sum(1 << p for p in group)}:")
            for p in group:
                L += [pad + line for line in blocks[p]]
    L.append("    return out")
    text = "\n".join(L) + "\n"
    code = compile(text, "<podtrail rules>", "exec")
    exec(code, src.ns)  # noqa: S102 - our own source, every rule value bound as a constant, never spliced
    return src.ns["scan"], text
