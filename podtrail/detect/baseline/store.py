"""Profiles on disk: one JSON file per workload in the state directory.

Writes are atomic (temporary file, fsync, rename), so a crash leaves the old or the new file,
never half of one. A file that cannot be read is reported, renamed to ``*.corrupt`` and
skipped: a broken profile costs its workload a new learning period, never the agent. Files
changed by someone else (``podtrail profile import|mode`` while the agent runs) are noticed
by their inode and modification time and loaded again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from podtrail.detect.baseline.codec import ProfileFormatError, from_doc, to_doc
from podtrail.detect.baseline.model import Profile, WorkloadKey

log = logging.getLogger(__name__)

SUFFIX = ".json"
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


@dataclass
class LoadReport:
    loaded: list[Profile] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line per file set aside or skipped


def file_name(key: WorkloadKey) -> str:
    """Readable and unique: ``<namespace>_<kind>_<name>-<hash of the full key>.json``."""
    h = hashlib.sha256(key.text.encode()).hexdigest()[:12]
    slug = "_".join(_UNSAFE.sub("-", x)[:60] for x in (key.namespace, key.kind, key.name))
    return f"{slug}-{h}{SUFFIX}"


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _ident(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def read_profile(path: Path) -> Profile:
    """One profile file; ProfileFormatError (with the reason) when it cannot be used."""
    try:
        doc = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProfileFormatError(f"not valid JSON ({e})") from None
    return from_doc(doc)


class ProfileStore:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        # file name -> (inode, mtime_ns) as last read or written here; every write is a new
        # inode (rename), so a change is seen even within the clock's granularity
        self._seen: dict[str, tuple[int, int]] = {}

    def ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path(self, key: WorkloadKey) -> Path:
        return self.dir / file_name(key)

    @staticmethod
    def encode(p: Profile) -> bytes:
        return json.dumps(to_doc(p), separators=(",", ":")).encode()

    def write(self, key: WorkloadKey, data: bytes) -> Path:
        self.ensure()
        path = self.path(key)
        write_atomic(path, data)
        self._seen[path.name] = _ident(path)
        return path

    def save(self, p: Profile) -> Path:
        return self.write(p.key, self.encode(p))

    def _set_aside(self, path: Path, why: str, report: LoadReport) -> None:
        dest = path.with_name(f"{path.name}.{int(time.time())}.corrupt")
        try:
            os.replace(path, dest)
            msg = f"profile {path} unreadable ({why}); set aside as {dest.name}, its workload learns anew"
        except OSError as e:
            msg = f"profile {path} unreadable ({why}) and could not be set aside: {e.strerror}"
        log.warning("%s", msg)
        report.problems.append(msg)

    def _read(self, path: Path, report: LoadReport) -> None:
        try:
            ident = _ident(path)
            p = read_profile(path)
        except FileNotFoundError:
            return
        except OSError as e:
            report.problems.append(f"profile {path} unreadable: {e.strerror}")
            return
        except ProfileFormatError as e:
            if "newer than" in str(e):  # written by a later podtrail: keep it for that one
                msg = f"profile {path} skipped: {e}"
                log.warning("%s", msg)
                report.problems.append(msg)
                self._seen[path.name] = ident
                return
            self._set_aside(path, str(e), report)
            return
        if path.name != file_name(p.key):  # copied in by hand under another name: adopt it
            os.replace(path, self.path(p.key))
            ident = _ident(self.path(p.key))
        self._seen[file_name(p.key)] = ident
        report.loaded.append(p)

    def load_all(self) -> LoadReport:
        report = LoadReport()
        for path in self._files():
            self._read(path, report)
        return report

    def changed(self, busy: Collection[str] = ()) -> LoadReport:
        """Profiles whose files appeared or changed since this store last read or wrote them
        (``busy``: file names with a write of ours in flight, not someone else's change)."""
        report = LoadReport()
        for path in self._files():
            if path.name in busy:
                continue
            try:
                ident = _ident(path)
            except OSError:
                continue
            if self._seen.get(path.name) != ident:
                self._read(path, report)
        return report

    def _files(self) -> list[Path]:
        try:
            return sorted(p for p in self.dir.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith("."))
        except FileNotFoundError:
            return []

    def load(self, key: WorkloadKey) -> Profile | None:
        path = self.path(key)
        return read_profile(path) if path.exists() else None


class BackgroundWriter:
    """Writes encoded profiles in its own thread, so a slow disk (fsync) never stalls the
    pipeline. ``busy`` names the files with a write in flight; ``errors`` collects failures."""

    def __init__(self, store: ProfileStore) -> None:
        self.store = store
        self._q: queue.Queue[tuple[WorkloadKey, bytes] | None] = queue.Queue()
        self.busy: Counter[str] = Counter()
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="podtrail-profiles", daemon=True)
        self._thread.start()

    def submit(self, key: WorkloadKey, data: bytes) -> None:
        self.busy[file_name(key)] += 1
        self._q.put((key, data))

    def _run(self) -> None:
        while True:
            item = self._q.get()
            try:
                if item is None:
                    return
                key, data = item
                try:
                    self.store.write(key, data)
                except OSError as e:
                    self.errors.append(f"profile {key.text} not saved: {e.strerror}")
                finally:
                    name = file_name(key)
                    self.busy[name] -= 1
                    if self.busy[name] <= 0:
                        del self.busy[name]
            finally:
                self._q.task_done()

    def flush(self) -> None:
        """Wait until everything submitted is on disk."""
        self._q.join()

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(30)
