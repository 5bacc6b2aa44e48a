"""podtrail/bpf/_process.c: ProcessDecoder.decode in C (podtrail/bpf/process.py is the reference)."""

from collections.abc import Iterator
from typing import Any

class Decoder:
    def __init__(self, event_dict: type, clock: Any, seq: Iterator[int], run_prefix: str, event_type: str,
                 hostname: str, fd_kinds: tuple[str, ...], drift_reasons: dict[int, str], max_args: int,
                 arg_size: int) -> None: ...
    def decode(self, raw: bytes) -> Any:
        """The event, or ``raw`` itself when the Python decoder is to take it."""
    @property
    def sample_fn(self) -> object:
        """The C decode function (a capsule), for podtrail.bpf._ring.Batch."""

def layout() -> dict[str, int]: ...
def normpath(path: bytes) -> bytes: ...
