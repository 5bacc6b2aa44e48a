"""The stdout output writes from the pipeline thread without ever waiting: a reader of the
pipe that stops reading for a while gets every line later, in order (the writer thread
takes what would wait); a file is written directly; a reader that goes away is reported."""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

from podtrail.model.event import Event, finalize, new_event
from podtrail.model.fields import Kind
from podtrail.outputs.stdout import StdoutSink


def _events(n: int) -> list[Event]:
    out = []
    for i in range(n):
        ev = new_event(Kind.PROCESS, "exec", pid=1000 + i, cmdline=f"/bin/true stdout-sink-{i} " + "x" * 400)
        finalize(ev)
        out.append(ev)
    return out


def _feed(sink: StdoutSink, events: list[Event], batch: int = 100) -> None:
    """As the pipeline does: submit a batch, then end it."""
    for i, ev in enumerate(events, 1):
        sink.submit(ev)
        if i % batch == 0:
            sink.end_batch()
    sink.end_batch()


def _numbers(text: str) -> list[int]:
    return [int(json.loads(line)["cmdline"].split()[1].rsplit("-", 1)[1]) for line in text.splitlines()]


def test_a_pipe_nobody_reads_for_a_while_never_stalls_the_pipeline_and_loses_nothing() -> None:
    r, w = os.pipe()
    stream = os.fdopen(w, "w")
    sink = StdoutSink(stream)
    events = _events(3000)  # ~1.4 MB: far more than the pipe holds (64 KiB)
    feeder = threading.Thread(target=_feed, args=(sink, events))
    feeder.start()
    feeder.join(60)  # a guard against a hang, not a timing measure
    assert not feeder.is_alive(), "the pipeline thread waited for the reader of stdout"
    assert sink.handed_over > 0  # what did not fit went to the writer thread
    chunks: list[bytes] = []

    def read_all() -> None:
        while True:
            b = os.read(r, 1 << 16)
            if not b:
                return
            chunks.append(b)

    reader = threading.Thread(target=read_all)
    reader.start()
    sink.close()  # waits for the writer thread to write the rest
    stream.close()
    reader.join(30)
    assert _numbers(b"".join(chunks).decode()) == list(range(3000))
    # caught up: the next batch goes directly again
    assert not sink._behind


def test_a_regular_file_is_written_directly_in_order(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with open(path, "w") as f:
        f.write("before\n")
        sink = StdoutSink(f)
        _feed(sink, _events(500), batch=7)
        sink.close()
        assert sink.handed_over == 0 and sink._t is None  # no writer thread at all
    lines = path.read_text().split("\n", 1)
    assert lines[0] == "before" and _numbers(lines[1]) == list(range(500))


def test_a_stream_without_a_descriptor_goes_through_the_writer_thread() -> None:
    buf = io.StringIO()
    sink = StdoutSink(buf)
    _feed(sink, _events(300), batch=50)
    sink.close()
    assert sink.handed_over > 0 and _numbers(buf.getvalue()) == list(range(300))


def test_a_reader_that_goes_away_is_reported_once_and_later_lines_are_dropped() -> None:
    r, w = os.pipe()
    stream = os.fdopen(w, "w")
    sink = StdoutSink(stream)
    closed: list[str] = []
    sink.on_closed = closed.append
    os.close(r)
    _feed(sink, _events(10), batch=5)
    sink.close()
    stream.close()
    assert sink.closed and closed == ["stdout"]


def test_a_formatting_bug_loses_that_line_only() -> None:
    buf = io.StringIO()

    def fmt(ev: Event) -> str:
        if ev["pid"] == 1001:
            raise ValueError("a formatter bug")
        return json.dumps({"cmdline": ev["cmdline"]})

    sink = StdoutSink(buf, formatter=fmt)
    _feed(sink, _events(3))
    sink.close()
    assert _numbers(buf.getvalue()) == [0, 2]
