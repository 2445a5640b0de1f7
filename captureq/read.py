"""Fetch the bytes of capture files in bounded batches.

Files are grouped into batches of about ``batch_bytes`` so that memory stays bounded however
large the tree is; each batch is fetched with one ``fs.cat_ranges`` call (concurrent on object stores;
local files are read with plain ``open``).
A file that cannot be read (deleted between LIST and GET, a corrupt gzip member, a storage
error that outlived the retries) is reported, never silently dropped.

Nothing here imports numpy, pyarrow or fsspec: on a local disk, :class:`Prefetch` reads a read's
first batch on a thread of its own while the caller imports what parsing needs.
"""

from __future__ import annotations

import gzip
import os
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import fsspec

    from .scan import CaptureFile

# Bytes of capture files per batch (about 10-20x that in memory while it is decoded).
DEFAULT_BATCH_BYTES = int(os.environ.get("CAPTUREQ_BATCH_BYTES", 16 * 1024 * 1024))
DEFAULT_BATCH_FILES = 512


@dataclass
class FileBatch:
    """Bytes of a group of files, plus the files that could not be read and why."""

    files: list[CaptureFile] = field(default_factory=list)
    blobs: list[bytes] = field(default_factory=list)
    failed: list[tuple[CaptureFile, str]] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(len(b) for b in self.blobs)


def plan_batches(files: list[CaptureFile], batch_bytes: int = DEFAULT_BATCH_BYTES,
                 batch_files: int = DEFAULT_BATCH_FILES) -> list[list[CaptureFile]]:
    """Group files (in order) into batches of at most ``batch_bytes`` / ``batch_files``."""
    batches: list[list[CaptureFile]] = []
    current: list[CaptureFile] = []
    size = 0
    for f in files:
        fsize = f.size or 0
        if current and (size + fsize > batch_bytes or len(current) >= batch_files):
            batches.append(current)
            current, size = [], 0
        current.append(f)
        size += fsize
    if current:
        batches.append(current)
    return batches


def _decompress(raw: bytes) -> bytes:
    # gzip files may hold several members (one per flush); gzip.decompress reads them all.
    return gzip.decompress(raw)


_TRANSIENT = (ConnectionError, TimeoutError, OSError)


def _own_retries(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether ``fs`` retries failed requests itself (s3fs, gcsfs: a ``retries`` attribute).

    Retrying on top of such a filesystem multiplies the attempts (s3fs × botocore × ours: 100
    GETs and three minutes for one throttled object), so captureq then leaves retries to it.
    """
    return isinstance(getattr(fs, "retries", None), int)


def _plain_local(fs: fsspec.AbstractFileSystem | None) -> bool:
    """Whether ``fs`` is fsspec's local filesystem itself (not a subclass that reads otherwise),
    whose files captureq reads with plain ``open``; None stands for it (fsspec not imported)."""
    if fs is None:
        return True
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem) and type(fs).cat_ranges is LocalFileSystem.cat_ranges \
        and type(fs).cat_file is LocalFileSystem.cat_file


def _cat(fs: fsspec.AbstractFileSystem, paths: list[str]) -> list[bytes | BaseException]:
    """Every file's bytes, or the exception that reading it raised (``cat_ranges`` with
    ``on_error="return"``). Local files are read with plain ``open``: fsspec's per-call path
    handling costs more than the read itself for small files."""
    if _plain_local(fs):
        out: list[bytes | BaseException] = []
        for path in paths:
            try:
                with open(path, "rb") as f:
                    out.append(f.read())
            except (OSError, ValueError) as exc:
                out.append(exc)
        return out
    none = [None] * len(paths)
    return fs.cat_ranges(paths, none, none, on_error="return")


def fetch(fs: fsspec.AbstractFileSystem, files: list[CaptureFile], *, retries: int | None = None,
          backoff: float = 0.2) -> FileBatch:
    """Read ``files`` into a FileBatch. Transient errors are retried with exponential backoff.

    ``retries`` defaults to 3, or 0 when the filesystem retries by itself (see
    :func:`_own_retries`). A file whose size is not the size it was listed with changed while
    being read (still being written, or replaced): it is reported as failed, never read half.
    """
    if retries is None:
        retries = 0 if _own_retries(fs) else 3
    batch = FileBatch()
    pending = list(files)
    results: dict[str, bytes | BaseException] = {}
    for attempt in range(retries + 1):
        if not pending:
            break
        # cat_ranges, not cat: cat expands its paths as glob patterns, so an object named
        # ``f[0].jsonl`` (or under ``br[a]ck/``) would be "not found". Paths here are literal.
        paths = [f.path for f in pending]
        got = dict(zip(paths, _cat(fs, paths)))
        retry = []
        for f in pending:
            value = got.get(f.path, FileNotFoundError(f.path))
            results[f.path] = value
            if isinstance(value, BaseException) and not isinstance(value, FileNotFoundError) \
                    and isinstance(value, _TRANSIENT) and attempt < retries:
                retry.append(f)
        pending = retry
        if pending:
            time.sleep(backoff * (2**attempt))
    for f in files:
        value = results[f.path]
        if isinstance(value, BaseException):
            if isinstance(value, FileNotFoundError):
                reason = "file disappeared between listing and reading"
            else:
                reason = f"could not read file: {type(value).__name__}: {value}"
            batch.failed.append((f, reason))
            continue
        if f.size is not None and len(value) != f.size:
            word = "short read" if len(value) < f.size else "file grew"
            reason = (f"{word}: got {len(value)} of {f.size} bytes listed; the file changed while being "
                      "read (still being written?), read it again later")
            batch.failed.append((f, reason))
            continue
        if f.compressed:
            try:
                value = _decompress(value)
            except (OSError, EOFError, zlib.error) as exc:
                batch.failed.append((f, f"not a readable gzip file: {exc}"))
                continue
        batch.files.append(f)
        batch.blobs.append(value)
    return batch


def iter_batches(fs: fsspec.AbstractFileSystem, files: list[CaptureFile], *,
                 batch_bytes: int = DEFAULT_BATCH_BYTES) -> Iterator[FileBatch]:
    """Yield FileBatches over ``files``, one batch in memory at a time."""
    for group in plan_batches(files, batch_bytes):
        yield fetch(fs, group)


class Prefetch:
    """The first batch of a read (:func:`plan_batches` of ``files``), fetched on a thread of its
    own from the moment this is created, so that a cold start reads while it imports numpy,
    pyarrow and the decoders (~0.2 s) instead of before. Made only for local disks (see
    :meth:`start`); the stream that reads the batches takes it (:meth:`take`) for its first one.

    The constructor returns once the batch's first file is in: what follows, imports included,
    happens while the rest is read. The batch is the one :func:`fetch` gives (the first file is
    fetched on its own, then the others, and the two joined in file order).

    >>> first = Prefetch.start(fs, scan.files, DEFAULT_BATCH_BYTES)       # doctest: +SKIP
    >>> first.take(plan_batches(scan.files)[0]).files == scan.files[:len(first.group)]  # doctest: +SKIP
    True
    """

    def __init__(self, fs: fsspec.AbstractFileSystem | None, group: list[CaptureFile]):
        self.fs = fs
        self.group: list[CaptureFile] | None = list(group)
        self._batch: FileBatch | None = None
        self._error: BaseException | None = None
        self._head_in = threading.Event()
        self._thread = threading.Thread(target=self._run, name="captureq-prefetch", daemon=True)
        self._thread.start()
        self._head_in.wait()

    @classmethod
    def start(cls, fs: fsspec.AbstractFileSystem | None, files: list[CaptureFile],
              batch_bytes: int = DEFAULT_BATCH_BYTES) -> Prefetch | None:
        """Start reading the first batch of ``files`` when ``fs`` is a local disk (None: the
        local disk, without importing fsspec); else None (on an object store the first bytes
        wait on the network anyway, and splitting the batch's request in two would cost a
        round trip)."""
        if not files or not _plain_local(fs):
            return None
        return cls(fs, plan_batches(files, batch_bytes)[0])

    def _run(self) -> None:
        try:
            head = fetch(self.fs, self.group[:1])
            self._head_in.set()
            rest = fetch(self.fs, self.group[1:])
            self._batch = FileBatch(head.files + rest.files, head.blobs + rest.blobs,
                                    head.failed + rest.failed)
        except BaseException as exc:  # noqa: BLE001 - raised again by take(), in the reader
            self._error = exc
        finally:
            self._head_in.set()

    def take(self, group: list[CaptureFile]) -> FileBatch | None:
        """The prefetched batch when ``group`` is its group (once); else None: fetch it."""
        if self.group is None or group != self.group:
            return None
        self.group = None
        self._thread.join()
        if self._error is not None:
            raise self._error
        batch, self._batch = self._batch, None
        return batch
