"""A Sigma detection tree (pySigma's parsed condition) as a Python predicate over one event.

Semantics are those of the SIEM-side evaluation (``podtrail.rules.evaluate``: pySigma's SQLite
backend over a table typed by the field declaration), so the agent and the SIEM agree:
- an empty string is absent; a condition on an absent field is false (``not`` of it is true);
- strings compare case-insensitively (ASCII, as SQLite's NOCASE and LIKE), ``|cased`` exactly;
- wildcards ``*`` and ``?`` match any run / any one character, across line breaks;
- a text value compared with a number compares as text; a numeric field compared with a
  string compares as a number when the string is one (SQLite's column affinity);
- JSON fields (lists, objects) are matched as their compact JSON text.

Each leaf also yields an *anchor* (field, kind, folded literal) when it can; the engine indexes
rules by a set of anchors one of which must hold for the rule to match, so an event is tested
only against rules it could satisfy. Pure: no I/O; pySigma types in, closures out.
"""

from __future__ import annotations

import ipaddress
import json
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from podtrail.model.fields import FIELDS, FieldType

Pred = Callable[["View"], bool]
# A rule's condition as data: ("and"|"or", [nodes]), ("not", node), or a leaf (op, field, *params)
# whose params are exactly what its closure here tests; podtrail.detect.codegen turns it into
# Python source. Both are built from the same values, and tests hold their verdicts equal.
Node = tuple[Any, ...]
# (field, kind, key): kind "eq" (value == key), "pre" (starts with), "suf" (ends with), "sub" (contains),
# key ASCII-folded text; or "num" (a numeric field's value == key, a number). A rule's anchor set:
# at least one holds whenever the rule matches.
Anchor = tuple[str, str, Any]

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_NUMERIC_FIELD = frozenset({FieldType.INTEGER, FieldType.BIGINT, FieldType.BOOLEAN, FieldType.TIMESTAMP_NS,
                            FieldType.DOUBLE})
_NUMBER = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")


class Unsupported(Exception):
    """A rule construct the agent cannot evaluate; the message is the reason users see."""


def fold(s: str) -> str:
    """ASCII-only lower case, like SQLite's NOCASE and LIKE (non-ASCII letters keep their case)."""
    return s.lower() if s.isascii() else s.translate(_ASCII_LOWER)


def as_number(s: str) -> int | float | None:
    """The number a string converts to under SQLite numeric affinity, or None."""
    if not _NUMBER.fullmatch(s):
        return None
    f = float(s)
    return int(f) if f.is_integer() and abs(f) < 2**63 and "." not in s and "e" not in s.lower() else f


_NUMERIC_NAMES = frozenset(f.name for f in FIELDS.values() if f.type in _NUMERIC_FIELD)
_MISSING: Any = object()
COMPARE_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "LT": lambda a, b: a < b, "LTE": lambda a, b: a <= b, "GT": lambda a, b: a > b, "GTE": lambda a, b: a >= b,
    "NEQ": lambda a, b: a != b}


def normalize(name: str, v: Any) -> Any:
    """An event value as the SIEM table holds it: None, str, int or float."""
    t = type(v)
    if t is str:
        if not v:
            return None
        if name in _NUMERIC_NAMES:
            n = as_number(v)
            return v if n is None else n
        return v
    if v is None:
        return None
    if t is bool:
        v = int(v)
    elif t is list or t is dict:
        return json.dumps(v, separators=(",", ":"))
    if name in _NUMERIC_NAMES or name not in FIELDS:
        return v
    return str(v)


class View:
    """One event as the predicates read it: normalized and folded values, computed once each."""

    __slots__ = ("ev", "_raw", "_low", "_keys")

    def __init__(self, ev: dict[str, Any]) -> None:
        self.ev = ev
        self._raw: dict[str, Any] = {}
        self._low: dict[str, str | None] = {}
        self._keys: dict[tuple[str, ...], tuple[Any, ...] | None] | None = None

    def get(self, name: str) -> Any:
        v = self._raw.get(name, _MISSING)
        if v is _MISSING:
            v = self._raw[name] = normalize(name, self.ev.get(name))
        return v

    def text(self, name: str) -> str | None:
        v = self.get(name)
        return v if v is None or type(v) is str else str(v)

    def key(self, name: str) -> Any:
        """The value as correlations group and count it: folded text, else the normalized value."""
        v = self.get(name)
        return self.low(name) if type(v) is str else v

    def keys(self, names: tuple[str, ...]) -> tuple[Any, ...] | None:
        """``key`` of each name, or None when one is absent (remembered: correlations share group-bys)."""
        memo = self._keys
        if memo is None:
            memo = self._keys = {}
        else:
            k = memo.get(names, _MISSING)
            if k is not _MISSING:
                return k  # type: ignore[no-any-return]
        get = self.ev.get
        out = []
        for n in names:
            raw = get(n)
            if type(raw) is str and raw and n not in _NUMERIC_NAMES:  # key's answer, without the caches
                out.append(raw.lower() if raw.isascii() else raw.translate(_ASCII_LOWER))
                continue
            v = self.key(n)
            if v is None:
                memo[names] = None
                return None
            out.append(v)
        k = memo[names] = tuple(out)
        return k

    def low(self, name: str) -> str | None:
        v = self._low.get(name, _MISSING)
        if v is _MISSING:
            raw = self.ev.get(name)
            if type(raw) is str and raw and name not in _NUMERIC_NAMES:  # normalize's answer: itself
                self._raw[name] = raw
                v = self._low[name] = raw.lower() if raw.isascii() else raw.translate(_ASCII_LOWER)
            else:
                t = self.text(name)
                v = self._low[name] = None if t is None else fold(t)
        return v  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Compiled:
    pred: Pred
    anchors: list[Anchor] | None  # None: no anchor set (the rule is tried on every event of its log source)
    fields: frozenset[str]
    tree: Node
    requirements: list[list[Anchor]]  # anchor sets that must each hold (``anchors`` is the cheapest)


def in_network(s: str | None, net: Any) -> bool:
    """``|cidr``: the text is an address inside ``net``."""
    if s is None:
        return False
    try:
        return ipaddress.ip_address(s) in net
    except ValueError:
        return False


def compare_value(x: Any, op: Callable[[Any, Any], bool], n: Any, numeric: bool) -> bool:
    """``|lt`` and the like on a normalized value: a text column compares as text."""
    if x is None:
        return False
    if type(x) is str:
        return not numeric and bool(op(fold(x), fold(str(n))))
    return bool(op(x, n))


def _numeric(name: str) -> bool:
    f = FIELDS.get(name)
    return f is not None and f.type in _NUMERIC_FIELD


# ---- leaves ----------------------------------------------------------------------------------------


def _string_leaf(name: str, value: Any, cased: bool) -> tuple[Pred, list[Anchor] | None, Node]:
    from sigma.types import Placeholder, SpecialChars

    parts = list(value.s)
    if any(isinstance(p, Placeholder) for p in parts):
        raise Unsupported(f"a value of field {name!r} uses a placeholder (|expand): the agent has no placeholder values to expand")
    specials = [p for p in parts if isinstance(p, SpecialChars)]
    conv = (lambda s: s) if cased else fold
    get: Callable[[View, str], str | None] = View.text if cased else View.low
    if not specials:
        lit = "".join(parts)
        low = conv(lit)
        if _numeric(name):
            num = as_number(lit)

            def eq_num_field(v: View) -> bool:
                x = v.get(name)
                if x is None:
                    return False
                if type(x) is str:
                    return (x if cased else fold(x)) == low
                return num is not None and x == num
            # a string may equal junk text in a numeric field: no numeric anchor
            return eq_num_field, None, ("eq_num_field", name, cased, low, num)

        def eq(v: View) -> bool:
            return get(v, name) == low
        return eq, ([(name, "eq", low)] if not cased and low else None), ("eq", name, cased, low)
    multi = SpecialChars.WILDCARD_MULTI
    lits = [conv(p) for p in parts if isinstance(p, str)]
    only_multi = all(p is multi for p in specials)
    if only_multi and len(parts) == 1:  # "*": any value

        def present(v: View) -> bool:
            return v.get(name) is not None
        return present, None, ("present", name)
    if only_multi and len(parts) == 2 and isinstance(parts[0], str):
        lit = conv(parts[0])

        def pre(v: View) -> bool:
            s = get(v, name)
            return s is not None and s.startswith(lit)
        return pre, ([(name, "pre", lit)] if not cased else None), ("pre", name, cased, lit)
    if only_multi and len(parts) == 2 and isinstance(parts[1], str):
        lit = conv(parts[1])

        def suf(v: View) -> bool:
            s = get(v, name)
            return s is not None and s.endswith(lit)
        return suf, ([(name, "suf", lit)] if not cased else None), ("suf", name, cased, lit)
    if only_multi and len(parts) == 3 and parts[0] is multi and parts[2] is multi and isinstance(parts[1], str):
        lit = conv(parts[1])

        def sub(v: View) -> bool:
            s = get(v, name)
            return s is not None and lit in s
        return sub, ([(name, "sub", lit)] if not cased else None), ("sub", name, cased, lit)
    rx = re.compile("".join(
        ".*" if p is multi else "." if isinstance(p, SpecialChars) else re.escape(conv(p)) for p in parts), re.DOTALL)
    anchor: list[Anchor] | None = None
    if not cased and lits:
        if isinstance(parts[0], str):
            anchor = [(name, "pre", conv(parts[0]))]
        elif isinstance(parts[-1], str):
            anchor = [(name, "suf", conv(parts[-1]))]
        else:
            anchor = [(name, "sub", max(lits, key=len))]

    def like(v: View) -> bool:
        s = get(v, name)
        return s is not None and rx.fullmatch(s) is not None
    return like, anchor, ("like", name, cased, rx)


def _leaf(name: str, value: Any) -> tuple[Pred, list[Anchor] | None, Node]:
    from sigma.types import (
        SigmaBool,
        SigmaCasedString,
        SigmaCIDRExpression,
        SigmaCompareExpression,
        SigmaExists,
        SigmaExpansion,
        SigmaFieldReference,
        SigmaNull,
        SigmaNumber,
        SigmaRegularExpression,
        SigmaString,
    )

    numeric = _numeric(name)
    if isinstance(value, SigmaExpansion):  # windash, base64offset: any of the variants
        leaves = [_leaf(name, x) for x in value.values]
        preds = [p for p, _, _ in leaves]
        anchors = [a for _, al, _ in leaves for a in (al or [])] if all(al for _, al, _ in leaves) else None

        def any_of(v: View) -> bool:
            return any(p(v) for p in preds)
        return any_of, anchors, ("or", [t for _, _, t in leaves])
    if isinstance(value, SigmaString):
        return _string_leaf(name, value, isinstance(value, SigmaCasedString))
    if isinstance(value, SigmaNumber) and not isinstance(value, SigmaBool):
        if type(value).__name__ != "SigmaNumber":
            raise Unsupported(f"field {name!r}: time-part modifiers are not supported")
        n = value.number
        as_text = fold(str(n))

        def eq_number(v: View) -> bool:
            x = v.get(name)
            if x is None:
                return False
            if type(x) is str:  # a text column compares the number as text; junk in a numeric one never equals
                return not numeric and fold(x) == as_text
            return bool(x == n)
        return eq_number, [(name, "num", n)] if numeric else [(name, "eq", as_text)], \
            ("eq_number", name, numeric, n, as_text)
    if isinstance(value, SigmaBool):
        b = value.boolean
        word = "true" if b else "false"

        def eq_bool(v: View) -> bool:
            x = v.get(name)
            if x is None:
                return False
            if type(x) is str:  # the SIEM side tests field='true' OR field=1
                return fold(x) in (word, str(int(b))) if not numeric else x == word
            return bool(x == int(b))
        # Anchors covering every way it can hold: the number (a boolean or numeric value), the
        # word (text in either kind of field, folded: a superset), the digit (text fields).
        either: list[Anchor] = [(name, "num", int(b)), (name, "eq", word)] if numeric else \
            [(name, "eq", word), (name, "eq", str(int(b)))]
        return eq_bool, either, ("eq_bool", name, numeric, b, word)
    if isinstance(value, SigmaNull):

        def absent(v: View) -> bool:
            return v.get(name) is None
        return absent, None, ("absent", name)
    if isinstance(value, SigmaExists):
        want = value.exists

        def exists(v: View) -> bool:
            return (v.get(name) is not None) is want
        return exists, None, ("exists", name, want)
    if isinstance(value, SigmaRegularExpression):
        flags = "".join(sorted(value.sigma_to_re_flag[f] for f in value.flags))
        text = str(value.regexp)
        try:
            rx = re.compile((f"(?{flags})" if flags else "") + text)
        except re.error as e:
            raise Unsupported(f"field {name!r}: invalid regular expression: {e}") from None

        def regex(v: View) -> bool:
            s = v.text(name)
            return s is not None and rx.search(s) is not None
        return regex, None, ("regex", name, rx)
    if isinstance(value, SigmaCIDRExpression):
        net = value.network

        def cidr(v: View) -> bool:
            return in_network(v.text(name), net)
        return cidr, None, ("cidr", name, net)
    if isinstance(value, SigmaCompareExpression):
        op = COMPARE_OPS[value.op.name]
        n = value.number.number

        def compare(v: View) -> bool:
            return compare_value(v.get(name), op, n, numeric)
        return compare, None, ("compare", name, numeric, value.op.name, n)
    if isinstance(value, SigmaFieldReference):
        other = value.field
        if other not in FIELDS:
            raise Unsupported(f"field reference to {other!r}, which podtrail does not have")
        sw, ew = value.starts_with, value.ends_with

        def fieldref(v: View) -> bool:
            a, b = v.low(name), v.low(other)
            if a is None or b is None:
                return False
            if sw and ew:
                return b in a
            if sw:
                return a.startswith(b)
            if ew:
                return a.endswith(b)
            return a == b
        return fieldref, None, ("fieldref", name, other, sw, ew)
    raise Unsupported(f"field {name!r}: value type {type(value).__name__} is not supported")


# ---- the tree --------------------------------------------------------------------------------------


def compile_tree(node: Any, check_field: Callable[[str], None]) -> Compiled:
    """A predicate for a postprocessed pySigma condition tree; ``check_field`` raises Unsupported
    for a field the event kind cannot have."""
    from sigma.conditions import (
        ConditionAND,
        ConditionFieldEqualsValueExpression,
        ConditionNOT,
        ConditionOR,
        ConditionValueExpression,
    )

    fields: set[str] = set()

    def walk(n: Any) -> tuple[Pred, list[Anchor] | None, Node, list[list[Anchor]]]:
        """(closure, anchor set, tree, requirements): anchor sets each of which must hold,
        one per conjunct that has one (nested ``and`` flattened)."""
        if isinstance(n, ConditionFieldEqualsValueExpression):
            check_field(n.field)
            fields.add(n.field)
            p, a, t = _leaf(n.field, n.value)
            return p, a, t, [a] if a else []
        if isinstance(n, ConditionValueExpression):
            raise Unsupported("keyword search (a value with no field) is not supported: podtrail events have no raw message")
        if isinstance(n, ConditionNOT):
            p, _, t, _ = walk(n.args[0])

            def neg(v: View) -> bool:
                return not p(v)
            return neg, None, ("not", t), []
        if isinstance(n, ConditionAND | ConditionOR):
            kids = [walk(a) for a in n.args]
            preds = tuple(k[0] for k in kids)
            trees = [k[2] for k in kids]
            if isinstance(n, ConditionAND):

                def all_of(v: View) -> bool:
                    for p in preds:
                        if not p(v):
                            return False
                    return True
                usable = [k[1] for k in kids if k[1]]
                best = min(usable, key=_anchor_cost) if usable else None
                return all_of, best, ("and", trees), [r for k in kids for r in k[3]]

            def any_of(v: View) -> bool:
                for p in preds:
                    if p(v):
                        return True
                return False
            anchors = [a for k in kids for a in k[1] or []] if all(k[1] for k in kids) else None
            return any_of, anchors, ("or", trees), [anchors] if anchors else []
        if n is None:
            raise Unsupported("the detection is empty")
        raise Unsupported(f"condition element {type(n).__name__} is not supported")

    pred, anchors, tree, reqs = walk(node)
    return Compiled(pred, anchors, frozenset(fields), tree, sorted(reqs, key=_anchor_cost))


_KIND_COST = {"eq": 1, "num": 1, "suf": 2, "pre": 2, "sub": 8}
# Fields with a handful of common values (most socket events are outbound, most file events a
# write): an anchor there lets nearly every event through, so any other anchor is preferred.
_COARSE = frozenset({"action", "direction", "outcome", "transport", "event_type", "source", "family", "protocol"})


def _anchor_cost(anchors: list[Anchor]) -> float:
    """Prefer anchor sets that are cheap to look up and selective: few, exact, long."""
    return sum(_KIND_COST[k] + 4.0 / (1 + len(str(key))) + (50 if f in _COARSE else 0) for f, k, key in anchors)
