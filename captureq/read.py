"""Fetch the bytes of capture files in bounded batches.

Files are grouped into batches of about ``batch_bytes`` so that memory stays bounded however
large the tree is; each batch is fetched with one ``fs.cat_ranges`` call (concurrent on object stores;
local files are read with plain ``open``).
A file that cannot be read (deleted between LIST and GET, a corrupt gzip member, a storage
error or a timeout that outlived the retry policy of :mod:`captureq.storage`) is reported as an
:class:`Unreadable`, never silently dropped.

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
    from .storage import RetryPolicy

# Bytes of capture files per batch (about 10-20x that in memory while it is decoded).
DEFAULT_BATCH_BYTES = int(os.environ.get("CAPTUREQ_BATCH_BYTES", 16 * 1024 * 1024))
DEFAULT_BATCH_FILES = 512


@dataclass
class FileBatch:
    """Bytes of a group of files, plus the files that could not be read and why."""

    files: list[CaptureFile] = field(default_factory=list)
    blobs: list[bytes] = field(default_factory=list)
    failed: list[tuple[CaptureFile, str]] = field(default_factory=list)
    retries: int = 0  # requests made again after a transient error

    @property
    def unreadable(self) -> list[Unreadable]:
        return [Unreadable(f.url, reason) for f, reason in self.failed]

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


@dataclass(frozen=True)
class Unreadable:
    """An object a read could not use, and why (a storage error that outlived the retries, a
    timeout, an object deleted or changing while read, a corrupt gzip). Reads list them in
    ``Result.unreadable`` and ``Counts.unreadable``; they are also ``file`` quarantine rows."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def unreadable_summary(unreadable: list[Unreadable], *, strict: bool = False, limit: int = 5,
                       left: str = "left out of the answer") -> str:
    """One message for what a read could not read: the count, the first ``limit`` objects with
    their reasons, and what to do."""
    n = len(unreadable)
    head = f"{n} object{'s' if n != 1 else ''} could not be read"
    shown = "; ".join(str(u) for u in unreadable[:limit])
    more = f"; and {n - limit} more" if n > limit else ""
    if strict:
        return (f"{head} (strict: nothing is left out silently): {shown}{more}. Try again later, or "
                "give the storage more time (--storage-option retries=N / deadline=SECONDS)")
    return (f"{head} and {'is' if n == 1 else 'are'} {left}: {shown}{more}. The quarantine view "
            "lists them (stage 'file'); --strict (strict=True) makes this an error")


def _plain_local(fs: fsspec.AbstractFileSystem | None) -> bool:
    """Whether ``fs`` is fsspec's local filesystem itself (not a subclass that reads otherwise),
    whose files captureq reads with plain ``open``; None stands for it (fsspec not imported)."""
    if fs is None:
        return True
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem) and type(fs).cat_ranges is LocalFileSystem.cat_ranges \
        and type(fs).cat_file is LocalFileSystem.cat_file


@dataclass
class _Failed:
    """Why reading one object failed in the end: the last error, after how many attempts."""

    error: BaseException
    attempts: int = 1
    seconds: float = 0.0
    timed_out: bool = False


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
    # cat_ranges, not cat: cat expands its paths as glob patterns, so an object named
    # ``f[0].jsonl`` (or under ``br[a]ck/``) would be "not found". Paths here are literal.
    return fs.cat_ranges(paths, none, none, on_error="return")


def _cat_async(fs, paths: list[str], policy: RetryPolicy) -> tuple[list, int]:
    """Each object of an async filesystem (s3fs, gcsfs, http) read on its own: every attempt
    bounded by ``policy.timeout``, retried on transient errors, all within ``policy.deadline``
    from its first attempt. Returns bytes or a :class:`_Failed` per path, and the retries made."""
    import asyncio

    from fsspec.asyn import sync

    from .storage import is_transient

    retries = 0
    config = getattr(fs, "config_kwargs", None) or {}
    width = int(config.get("max_pool_connections", 10)) if isinstance(config, dict) else 10

    async def one(path: str, gate: asyncio.Semaphore):
        nonlocal retries
        async with gate:
            started = time.monotonic()
            attempt = 0
            while True:
                left = policy.deadline - (time.monotonic() - started)
                timed_out = False
                try:
                    return await asyncio.wait_for(fs._cat_file(path), timeout=min(policy.timeout, left))
                except asyncio.TimeoutError as exc:
                    error, timed_out = exc, True
                except Exception as exc:  # noqa: BLE001 - returned, judged by the caller
                    error = exc
                attempt += 1
                elapsed = time.monotonic() - started
                pause = policy.pause(attempt - 1)
                if not (timed_out or is_transient(error)) or attempt >= policy.attempts \
                        or elapsed + pause >= policy.deadline:
                    return _Failed(error, attempt, elapsed, timed_out)
                retries += 1
                await asyncio.sleep(pause)

    async def every():
        gate = asyncio.Semaphore(max(1, width))
        return await asyncio.gather(*(one(p, gate) for p in paths))

    return list(sync(fs.loop, every)), retries


def _cat_retrying(fs, paths: list[str], policy: RetryPolicy) -> tuple[list, int]:
    """:func:`_cat` with the policy's retries of transient errors (whole rounds, pausing between
    them), within its deadline. Returns bytes or a :class:`_Failed` per path, and the retries."""
    from .storage import is_transient

    started = time.monotonic()
    results: dict[str, bytes | _Failed] = {}
    pending = list(paths)
    retries = 0
    for attempt in range(policy.attempts):
        got = dict(zip(pending, _cat(fs, pending)))
        elapsed = time.monotonic() - started
        last = attempt + 1 >= policy.attempts or elapsed + policy.pause(attempt) >= policy.deadline
        retry = []
        for path in pending:
            value = got.get(path, FileNotFoundError(path))
            if isinstance(value, BaseException):
                if not last and is_transient(value):
                    retry.append(path)
                results[path] = _Failed(value, attempt + 1, elapsed)
            else:
                results[path] = value
        pending = retry
        if not pending:
            break
        retries += len(pending)
        time.sleep(policy.pause(attempt))
    return [results[p] for p in paths], retries


def _reason(failed: _Failed, policy: RetryPolicy) -> str:
    from .storage import describe

    if isinstance(failed.error, FileNotFoundError):
        return "file disappeared between listing and reading"
    tries = f"{failed.attempts} attempt{'s' if failed.attempts != 1 else ''}"
    if failed.timed_out:
        return (f"unreadable: timed out after {failed.seconds:.1f}s ({tries}, each at most "
                f"{policy.timeout:g}s, deadline {policy.deadline:g}s per object)")
    return f"could not read file ({tries}): {type(failed.error).__name__}: {describe(failed.error)}"


def fetch(fs: fsspec.AbstractFileSystem, files: list[CaptureFile], *, retries: int | None = None,
          backoff: float | None = None, policy: RetryPolicy | None = None) -> FileBatch:
    """Read ``files`` into a FileBatch, following the filesystem's retry policy
    (:func:`captureq.storage.policy_of`; ``retries``/``backoff`` override it): transient errors
    are retried, each object within the policy's deadline. A file whose size is not the size
    it was listed with changed while being read (still being written, or replaced): it is
    reported as failed, never read half.
    """
    from dataclasses import replace

    from .storage import RetryPolicy, policy_of

    policy = policy or (policy_of(fs) if fs is not None else RetryPolicy())
    if retries is not None:
        policy = replace(policy, retries=retries)
    if backoff is not None:
        policy = replace(policy, backoff=backoff)
    batch = FileBatch()
    if not files:
        return batch
    paths = [f.path for f in files]
    if fs is not None and getattr(fs, "async_impl", False) and hasattr(fs, "_cat_file"):
        values, batch.retries = _cat_async(fs, paths, policy)
    else:
        values, batch.retries = _cat_retrying(fs, paths, policy)
    for f, value in zip(files, values):
        if isinstance(value, _Failed):
            batch.failed.append((f, _reason(value, policy)))
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
                                    head.failed + rest.failed, head.retries + rest.retries)
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
