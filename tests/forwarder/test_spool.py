"""The disk spool: what the sender takes from memory (records this process appended) is
exactly what a reader of the files gets, at the same positions, across segment boundaries,
a restart, and a torn write at the end."""

from __future__ import annotations

import shutil
import struct
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


def test_sent_then_rewound_is_taken_again(tmp_path: Path) -> None:
    """The sender takes after what it sent; a failure sends again from the acknowledged position."""
    sp = Spool(tmp_path / "c")
    sp.append([b"a%d" % i for i in range(10)])
    first = sp.take(4)
    sp.sent(first.pos)
    second = sp.take(4)
    assert first.records() == [b"a0", b"a1", b"a2", b"a3"] and second.records() == [b"a4", b"a5", b"a6", b"a7"]
    sp.ack(first.pos)
    sp.sent(second.pos)
    sp.rewind()  # the connection reset: the second chunk was never confirmed
    assert sp.take(100).records() == [b"a%d" % i for i in range(4, 10)]
    assert sp.pending(100)[0] == [b"a%d" % i for i in range(4, 10)]


def test_octet_counting_framing_is_the_wire_format() -> None:
    """What the spool holds for a batch is RFC 6587 octet counting, byte for byte (lengths in
    bytes, also for non-ASCII text and lone surrogates, which become '?')."""
    texts = ["<14>1 x - - - - plain", "<14>1 x - - - - caf\u00e9 \u2603", "bad \udcff byte", ""]
    data = spool_mod.frame(texts)
    encoded = [t.encode("utf-8", "replace") for t in texts]
    assert data == b"".join(b"%d %s" % (len(e), e) for e in encoded)
    assert spool_mod.split(data) == encoded
    assert spool_mod.scan(data + b"12 torn", 0, 99) == (4, len(data))


def test_older_format_is_converted_without_loss(tmp_path: Path) -> None:
    """A spool left by the previous version (4-byte lengths, ``*.seg``, position in ``ack``)
    is sent from its acknowledged position after an upgrade, and its files are removed."""
    d = tmp_path / "old"
    d.mkdir()
    recs = [b"old record %d" % i for i in range(30)]
    seg0 = b"".join(struct.pack(">I", len(r)) + r for r in recs[:20])
    (d / "000000000000.seg").write_bytes(seg0)
    (d / "000000000001.seg").write_bytes(b"".join(struct.pack(">I", len(r)) + r for r in recs[20:]) + b"\x00\x00\x01")
    first_five = sum(4 + len(r) for r in recs[:5])
    (d / "ack").write_text(f"0 {first_five}")
    sp = Spool(d)
    assert [r for b, _ in _drain(sp, 7) for r in b] == recs[5:]
    assert not list(d.glob("*.seg")) and not (d / "ack").exists()
    sp.close()
    assert Spool(d).pending(100)[0] == []  # converted once: the next start has nothing left


def test_syslog_batch_framing_equals_message_by_message() -> None:
    """The batch path (header + framing in one pass) gives exactly the bytes of framing each
    event's ``rfc5424`` message, across seconds, event types, non-ASCII and a missing time."""
    from podtrail.formatters.cef import format_cef, format_cef_many
    from podtrail.model.event import finalize, new_event
    from podtrail.model.fields import Kind
    from podtrail.outputs.syslog import rfc5424, rfc5424_framed

    evs = [finalize(new_event(Kind.PROCESS, "exec", time_ns=1_700_000_000_000_000_000 + i * 300_000_123, pid=i,
                              comm="caf\u00e9" if i % 3 else "sh", cmdline=f"x \udcff {i}", source="ebpf")) for i in range(12)]
    evs += [finalize(new_event(Kind.SOCKET, "connect", pid=1, remote_port=443, source="ebpf"))]
    evs[-1]["time_ns"] = None  # no time: the send time is used (the same for the whole batch)
    data = rfc5424_framed(evs, format_cef_many(evs))
    got = spool_mod.split(data)
    assert spool_mod.frame([m.decode() for m in got]) == data
    for ev, rec in zip(evs[:-1], got, strict=False):
        assert rec == rfc5424(format_cef(ev), ts_ns=ev["time_ns"], msgid=ev["event_type"])
    assert got[-1].startswith(b"<14>1 ") and b" socket - CEF:0|" in got[-1]
