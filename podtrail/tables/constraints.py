"""osquery query constraints: parse the context JSON osqueryd sends, and filter rows by it.

osqueryd serializes a table's QueryContext as
``{"constraints": [{"name": "pid", "list": [{"op": 2, "expr": "123"}], "affinity": "INTEGER"}]}``;
op codes are SQLite's (EQUALS 2, GT 4, LE 8, LT 16, GE 32; LIKE 65, GLOB 66). An ``IN (...)``
arrives as several EQUALS on the same column, which mean "any of". Filtering here is exact,
so osqueryd (or SQLite) re-checking the rows is harmless.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

EQUALS, GREATER_THAN, LESS_THAN_OR_EQUALS, LESS_THAN, GREATER_THAN_OR_EQUALS = 2, 4, 8, 16, 32


@dataclass(frozen=True, slots=True)
class Constraint:
    column: str
    op: int
    expr: str
    numeric: bool


def parse_context(context: str | dict[str, Any] | None) -> list[Constraint]:
    if not context:
        return []
    ctx = json.loads(context) if isinstance(context, str) else context
    out: list[Constraint] = []
    for c in ctx.get("constraints", []) or []:
        numeric = c.get("affinity") in ("INTEGER", "BIGINT", "DOUBLE")
        for item in c.get("list", []) or []:
            out.append(Constraint(c["name"], int(item["op"]), str(item.get("expr", "")), numeric))
    return out


def _num(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _cmp(value: Any, c: Constraint) -> bool:
    if c.numeric:
        a, b = _num(value), _num(c.expr)
        if a is None or b is None:
            return False
    else:
        a, b = ("" if value is None else str(value)), c.expr  # type: ignore[assignment]
    if c.op == EQUALS:
        return a == b
    if c.op == GREATER_THAN:
        return a > b  # type: ignore[operator]
    if c.op == GREATER_THAN_OR_EQUALS:
        return a >= b  # type: ignore[operator]
    if c.op == LESS_THAN:
        return a < b  # type: ignore[operator]
    if c.op == LESS_THAN_OR_EQUALS:
        return a <= b  # type: ignore[operator]
    return True  # LIKE, GLOB, ...: left to SQLite


def matcher(constraints: Iterable[Constraint], key_of: dict[str, str]) -> Any:
    """A predicate over event/state dicts: EQUALS on one column are OR-ed (IN), the rest AND-ed.

    ``key_of`` maps osquery column names to the dict keys rows are built from."""
    eq: dict[str, list[Constraint]] = {}
    other: list[Constraint] = []
    for c in constraints:
        if c.column not in key_of:
            continue
        (eq.setdefault(c.column, []) if c.op == EQUALS else other).append(c)  # type: ignore[attr-defined]
    checks = [(key_of[col], cs) for col, cs in eq.items()]
    rest = [(key_of[c.column], c) for c in other]

    def pred(d: dict[str, Any]) -> bool:
        for key, cs in checks:
            v = d.get(key)
            if not any(_cmp(v, c) for c in cs):
                return False
        return all(_cmp(d.get(key), c) for key, c in rest)

    return pred
