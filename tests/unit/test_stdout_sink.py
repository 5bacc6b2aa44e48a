"""The stdout output writes from the pipeline thread without ever waiting: a reader of the
pipe that stops reading for a while gets every line later, in order (the writer thread
takes what would wait); a file is written directly; a reader that goes away is reported."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path

import pytest

from podtrail.model.event import Event, finalize, new_event
from podtrail.model.fields import Kind
from podtrail.outputs import stdout
from podtrail.outputs.stdout import StdoutSink, to_json_line


@pytest.fixture(autouse=True, params=["native", "python"])
def buffer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every behaviour with the C lines buffer (_jsonline.c) and with its pure-Python twin."""
    if request.param == "python":
        monkeypatch.setattr(stdout, "_native", None)
    elif stdout._native is None:
        pytest.skip("_jsonline not built (test_jsonline_native fails under CI)")
    return str(request.param)


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


def test_lines_linger_until_the_time_or_size_bound_and_close_writes_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with open(path, "w") as f:
        sink = StdoutSink(f, linger_s=3600.0, linger_bytes=4096)
        _feed(sink, _events(3), batch=1)  # ~1.5 kB: under the size bound, far under the time bound
        assert sink.writes == 0 and path.read_text() == ""
        _feed(sink, _events(10), batch=1)  # past the size bound: written at the end of that batch
        assert sink.writes >= 1 and path.read_text()
        sink.close()
    assert len(path.read_text().splitlines()) == 13


def test_a_line_lingers_no_longer_than_the_time_bound_when_batches_keep_ending(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with open(path, "w") as f:
        sink = StdoutSink(f, linger_s=0.05)
        _feed(sink, _events(1))
        assert path.read_text() == ""
        deadline = time.monotonic() + 30  # a guard against a hang, not a timing measure
        while not path.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
            sink.end_batch()  # what the pipeline does at least once per tick
        assert _numbers(path.read_text()) == [0]
        sink.close()


def _with_ancestry(anc: list[dict[str, object]], **own: object) -> Event:
    ev = new_event(Kind.PROCESS, "exec", pid=7, cmdline="/bin/true", ancestors=anc, **own)
    finalize(ev)
    return ev


def test_the_ancestry_text_is_kept_per_list_and_a_new_list_is_rendered_again() -> None:
    a1 = [{"pid": 1, "path": "/bin/sh", "cmdline": "sh -c x"}]
    a2 = [{"pid": 1, "path": "/usr/bin/python3", "cmdline": "python3 app.py"}]  # the ancestor exec'd: a new list
    lines = [json.loads(to_json_line(_with_ancestry(a))) for a in (a1, a1, a2, a1)]
    assert [x["ancestors"] for x in lines] == [a1, a1, a2, a1]


def test_hostile_ancestry_and_own_fields_never_break_or_forge_a_line() -> None:
    evil = "x\n{\"event_type\":\"forged\"}\r\u2028\u2029\x00\x1b…\U0001f600 \udcff"
    anc = [{"pid": 2, "path": evil, "cmdline": evil + "…"}]
    for own in ({}, {"comm": evil}, {"exit_code": 2**70}):  # a value orjson refuses: the stdlib path
        ev = _with_ancestry(anc, **own)
        line = to_json_line(ev)
        assert line.isascii() and "\n" not in line and "\r" not in line
        back = json.loads(line)
        assert back["ancestors"] == json.loads(json.dumps(anc)) and back["event_type"] == "process"
        assert back == json.loads(json.dumps(dict(ev), default=str))


def test_a_pipe_on_stdout_is_grown_so_a_lingered_batch_fits_in_one_write() -> None:
    import fcntl

    r, w = os.pipe()
    try:
        assert fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) < stdout.PIPE_BYTES
        stream = os.fdopen(w, "w", closefd=False)
        StdoutSink(stream)
        allowed = os.geteuid() == 0 or int(Path("/proc/sys/fs/pipe-max-size").read_text()) >= stdout.PIPE_BYTES
        assert fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) == stdout.PIPE_BYTES or not allowed
    finally:
        os.close(r)
        os.close(w)
