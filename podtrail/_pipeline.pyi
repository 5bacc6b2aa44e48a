"""podtrail._pipeline (_pipeline.c): the pipeline thread's per-event glue in C; references:
pipeline._link and pipeline._finalize_count."""

from collections.abc import Callable
from typing import Any

class Link:
    def __init__(self, process: Callable[[dict[str, Any], Callable[[dict[str, Any]], None]], None],
                 out: Callable[[dict[str, Any]], None]) -> None: ...
    def __call__(self, ev: dict[str, Any]) -> None: ...

def configure(severity: dict[Any, int], counts: dict[Any, int], finalize: Callable[[dict[str, Any]], Any],
              event_out: Callable[[dict[str, Any]], None], event_type: type) -> None: ...
def finalize_count(ev: dict[str, Any]) -> None: ...
