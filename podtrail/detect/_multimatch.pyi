"""Types of the native accelerator ``_multimatch.c`` (reference: ``podtrail.detect.codegen._memo``)."""

from collections.abc import Callable
from typing import Any

MAX_TABLE: int

class Automaton:
    """Aho–Corasick over folded words, each with its mask."""

    def __init__(self, words: dict[str, int], mode: int = 0) -> None: ...
    @property
    def states(self) -> int: ...
    def mask(self, s: str, /) -> int: ...

class FieldMask:
    """``fm(value)``: one field's anchor mask of a value (``codegen._memo``/``_mask``)."""

    def __init__(self, text: bool, eq: dict[str, int] | None, pre: Automaton | None, suf: Automaton | None,
                 words: Automaton | None, memo: dict[Any, int], memo_size: int, memo_max_len: int,
                 fallback: Callable[[Any], int]) -> None: ...
    def __call__(self, value: Any, /) -> int: ...

class Prefilter:
    """``p(ev)``: ``always`` | the mask of each named field's value that is not None."""

    fields: tuple[tuple[str, Callable[[Any], int]], ...]
    def __init__(self, always: int, fields: tuple[tuple[str, Callable[[Any], int]], ...]) -> None: ...
    def __call__(self, ev: dict[str, Any], /) -> int: ...
