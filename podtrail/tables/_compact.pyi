"""Stub of the C accelerator ``_compact.c`` (reference: ``podtrail.tables.buffer``)."""

from collections import deque
from collections.abc import Callable
from typing import Any

class Layout:
    def __init__(self, names: tuple[str, ...], types: tuple[type, ...], shape: Any, put: Callable[[tuple[Any, ...]], None],
                 pyfast: Any, pid_at: int, rep_a: int, rep_b: int, pool_b: int, pool_d: int, others_at: int,
                 has_rep: bool, mode: int, how: tuple[int, ...], /) -> None: ...

def setup(event_dict: type, id_head: str, from_ns: str, argv: type, compact_id: Callable[[Any], Any],
          const_names: tuple[str, ...], /) -> None: ...
def compact(pending: deque[Any], cfast: dict[tuple[Any, ...], list[Layout]], pool: dict[Any, Any],
            combos: dict[tuple[Any, ...], tuple[Any, ...]], general: Callable[[Any], None], /) -> None: ...
def observe(seen: dict[str, set[Any]], ev: Any, repeat_max: int, /) -> None: ...
