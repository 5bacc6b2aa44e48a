"""The disk spool: what the sender takes from memory (records this process appended) is
exactly what a reader of the files gets, at the same positions, across segment boundaries,
a restart, and a torn write at the end."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import podtrail.outputs.spool as spool_mod
from podtrail.outputs.spool import Spool


def _drain(sp: Spool, step: int) -> list[tuple[list[bytes], tuple[int, int]]]:
    out = []
    while True:
        recs, pos = sp.pending(step)
        if not recs:
            return out
        out.append((recs, pos))
        sp.ack(pos)


def test_memory_and_disk_give_the_same_records_and_positions(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(spool_mod, "SEGMENT_BYTES", 4096)
    recs = [(b"record %d " % i) * (1 + i % 7) for i in range(900)]
    writer = Spool(tmp_path / "a")
    for i in range(0, len(recs), 64):
        writer.append(recs[i:i + 64])
    assert writer._recent_records == len(recs)  # the memory path is what the next read uses
    # a copy of the files read by a new spool: from disk only (as after a restart)
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    reader = Spool(tmp_path / "copy")
    assert not reader._recent
    mem, disk = _drain(writer, 50), _drain(reader, 50)
    assert [r for b, _ in mem for r in b] == recs == [r for b, _ in disk for r in b]
    assert [p for _, p in mem] == [p for _, p in disk]
    assert not writer._recent and writer._recent_bytes == 0 == writer._recent_records


def test_bounded_read_and_torn_tail(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "b")
    sp.append([b"x" * 100] * 5000)
    sp.close()
    with open(next((tmp_path / "b").glob("*.oc")), "ab") as f:
        f.write(b"4096 partial")  # a crash in the middle of an append
    again = Spool(tmp_path / "b")
    recs, pos = again.pending(10)
    assert recs == [b"x" * 100] * 10 and pos == (0, 10 * 104)
    assert sum(len(b) for b, _ in _drain(again, 999)) == 5000  # the torn record is ignored
