"""podtrail/bpf/_ring.c: libbpf's ring-buffer sample callback in C, collecting a batch per consume
(podtrail/bpf/libbpf.py RingBuffer's ctypes callback is the reference)."""

from typing import Any

CALLBACK: int
STOPPED: int

class Batch:
    def __init__(self, decoder: Any = None, cap: int = 4096) -> None: ...
    def take(self) -> tuple[list[Any], int, int]: ...

def feed(batch: Batch, raw: bytes) -> int: ...
