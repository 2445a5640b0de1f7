"""The capture writer's local spool: an append-only disk buffer that outlives the process.

Every record the writer accepts is appended to a spool file before anything is uploaded, the way
Fluent Bit and Vector buffer on disk. A spool file holds exactly the JSON Lines of one future
capture object, at the object's own relative path::

    {spool_dir}/{writer_id}/{endpoint}/{variant}/yyyy/mm/dd/hh/{mm}-{ss}-{mmm}-{uuid}.jsonl
    {spool_dir}/{writer_id}/.lock        # held (flock) while that writer lives

so uploading a spool file needs no other state: its path says where it goes, its bytes are the
object. A file is deleted once its object is written. A writer that starts finds the folders of
writers that are gone (their lock is free: the kernel releases it when a process dies, even on
``kill -9``) and uploads what they still hold; uploading the same file twice writes the same
object to the same key, so a record never appears twice.

>>> import tempfile
>>> spool = Spool(tempfile.mkdtemp())
>>> seg = spool.segment("ep/AllTraffic/2026/03/01/10/00-00-000-x.jsonl")
>>> seg.add(b'{"a":1}\\n'); seg.flush(), seg.records, spool.bytes
(1, 1, 8)
>>> seg.close(); read_segment(seg.path)
(b'{"a":1}\\n', 1)
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locks, so no adoption of other spools
    fcntl = None

__all__ = ["Orphan", "Segment", "Spool", "default_spool_dir", "read_segment"]

LOCK = ".lock"


def default_spool_dir(destination: str) -> str:
    """The spool folder for ``destination``: under the user's cache (``$XDG_CACHE_HOME`` or
    ``~/.cache``), else the temp folder, in ``captureq/spool/{name}-{hash}``.

    >>> default_spool_dir("s3://bucket/capture").endswith(("-" + hashlib.sha256(b"s3://bucket/capture").hexdigest()[:12]))
    True
    """
    key = destination.rstrip("/")
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", key.rsplit("/", 1)[-1] or "root")[:40]
    name = f"{tail}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for base in (cache, tempfile.gettempdir()):
        path = os.path.join(base, "captureq", "spool", name)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            return path
    return os.path.join(tempfile.gettempdir(), "captureq", "spool", name)


def read_segment(path: str) -> tuple[bytes, int]:
    """A spool file's complete lines and how many there are (a line cut by a crash is dropped)."""
    with open(path, "rb") as f:
        data = f.read()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
    return data, data.count(b"\n")


def _lock(path: str, create: bool) -> int | None:
    """An fd holding an exclusive flock on ``path``; None when another process holds it."""
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:
        return None
    if fcntl is None:
        return fd if create else (os.close(fd) or None)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


@dataclass
class Segment:
    """One spool file: the lines of one future object, appended in batches.

    ``add`` keeps a line in memory; ``flush`` appends what was added with one write. A failed
    write (a full disk) is cut back to the last complete batch, so the file only ever holds
    whole lines, and the lines stay in memory for the next flush.
    """

    spool: Spool
    rel: str  # the object's path under the destination
    path: str
    pending: list[bytes] = field(default_factory=list)
    size: int = 0  # bytes added (on disk and pending)
    flushed: int = 0  # bytes on disk
    records: int = 0  # records on disk
    error: OSError | None = None  # why the last flush stopped short
    _fd: int | None = None
    _cut: bool = False

    def add(self, line: bytes) -> None:
        self.pending.append(line)
        self.size += len(line)

    def flush(self) -> int:
        """Append the pending lines to the file; the number appended.

        When the write fails (``error`` says why), the whole lines that made it to disk stay,
        the cut one is removed, and the rest stays pending.
        """
        self.error = None
        if not self.pending:
            return 0
        if self._cut:
            self.error = OSError(f"{self.path} ends in a cut line that could not be removed")
            return 0
        data = b"".join(self.pending)
        done = 0
        try:
            if self._fd is None:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            view = memoryview(data)
            while done < len(data):
                done += os.write(self._fd, view[done:])
        except OSError as exc:
            self.error = exc
            keep = data.rfind(b"\n", 0, done) + 1
            if keep < done:
                try:
                    os.ftruncate(self._fd, self.flushed + keep)
                except OSError:
                    # Shrinking needs no space, so this is rare: the cut line stays last, where
                    # read_segment drops it, and nothing more is appended after it.
                    self._cut = True
            if not keep:
                return 0
            n = data.count(b"\n", 0, keep)
            del self.pending[:n]
        else:
            keep, n = len(data), len(self.pending)
            self.pending.clear()
        self.flushed += keep
        self.records += n
        self.spool.grow(keep)
        return n

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class Orphan:
    """The spool folder of a writer that is gone, locked by the writer that adopts it."""

    path: str
    fd: int | None
    left: int = 0  # its files not written yet

    def files(self) -> list[str]:
        out = []
        for base, _dirs, names in os.walk(self.path):
            out.extend(os.path.join(base, n) for n in names if n != LOCK)
        return sorted(out)

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.path).replace(os.sep, "/")

    def remove(self) -> None:
        """Delete the folder once its files are uploaded, then let the lock go."""
        if not self.files():
            shutil.rmtree(self.path, ignore_errors=True)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Spool:
    """A writer's folder in the spool ``root`` (created, and locked while the writer lives).

    ``bytes`` is what the spool holds on disk, this writer's files and the adopted ones.
    """

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.id = f"w-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path = os.path.join(self.root, self.id)
        # The folder appears under its name already locked, so no writer can take it for an orphan.
        new = os.path.join(self.root, f".new-{self.id}")
        os.makedirs(new, exist_ok=True)
        self._fd = _lock(os.path.join(new, LOCK), create=True)
        os.rename(new, self.path)
        self._bytes_lock = threading.Lock()
        self.bytes = 0

    def __repr__(self) -> str:
        return f"Spool({self.path!r}, {self.bytes} bytes)"

    def grow(self, n: int) -> None:
        with self._bytes_lock:
            self.bytes += n

    def segment(self, rel: str) -> Segment:
        return Segment(self, rel, os.path.join(self.path, *rel.split("/")))

    def remove_file(self, path: str, size: int) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.grow(-size)

    def orphans(self) -> Iterator[Orphan]:
        """Folders of writers that are gone, each locked for this writer as it is yielded."""
        try:
            names = sorted(os.listdir(self.root))
        except OSError:
            return
        for name in names:
            path = os.path.join(self.root, name)
            if name == self.id or not os.path.isdir(path):
                continue
            if name.startswith(".new-"):  # a writer that died while creating its folder
                fd = _lock(os.path.join(path, LOCK), create=False)
                if fd is not None:
                    shutil.rmtree(path, ignore_errors=True)
                    os.close(fd)
                continue
            fd = _lock(os.path.join(path, LOCK), create=False)
            if fd is None:
                if os.path.exists(os.path.join(path, LOCK)):
                    continue  # a live writer's folder
                fd_new = _lock(os.path.join(path, LOCK), create=True)  # a folder left lockless
                if fd_new is None:
                    continue
                fd = fd_new
            yield Orphan(path, fd)

    def release(self) -> None:
        """Remove this writer's folder if it is empty and let its lock go."""
        if not Orphan(self.path, None).files():
            shutil.rmtree(self.path, ignore_errors=True)
            try:
                os.rmdir(self.root)  # only when no other writer's folder is left
            except OSError:
                pass
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
