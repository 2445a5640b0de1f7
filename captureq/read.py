"""Fetch the bytes of capture files in bounded batches.

Files are grouped into batches of about ``batch_bytes`` so that memory stays bounded however
large the tree is; each batch is fetched with one ``fs.cat_ranges`` call (concurrent on object stores;
local files are read with plain ``open``).
A file that cannot be read (deleted between LIST and GET, a corrupt gzip member, a storage
error or a timeout that outlived the retry policy of :mod:`captureq.storage`) is reported as an
:class:`Unreadable`, never silently dropped.

Nothing here imports numpy, pyarrow or fsspec: on a local disk, :class:`Prefetch` reads a read's
first batch on a thread of its own while the caller imports what parsing needs. On an object
store, :class:`ReadAhead` keeps fetching the next batches while earlier ones are decoded, within
a byte bound (the ``read_ahead`` storage option) and at most :data:`READ_AHEAD_BATCHES` batches;
the GETs of every batch share one gate as wide as the ``concurrency`` storage option.
"""

from __future__ import annotations

import gzip
import os
import threading
import time
import weakref
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
# Batches an object-store read fetches ahead of its decoders (fetching or fetched, not yet taken).
READ_AHEAD_BATCHES = 4


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
        gate = _gate(fs, policy)
        return await asyncio.gather(*(one(p, gate) for p in paths))

    return list(sync(fs.loop, every)), retries


def _gate(fs, policy: RetryPolicy):
    """The semaphore every GET of ``fs`` passes (one per filesystem, on its event loop, so
    batches fetched at once share it): ``policy.concurrency`` wide, or the client's connection
    pool when that is smaller (a request waiting for a connection would spend its timeout
    waiting)."""
    import asyncio

    config = getattr(fs, "config_kwargs", None)
    width = policy.concurrency
    if isinstance(config, dict) and config.get("max_pool_connections"):
        width = min(width, int(config["max_pool_connections"]))
    have = getattr(fs, "_captureq_gate", None)
    if have is None or have[0] != width:
        have = (width, asyncio.Semaphore(max(1, width)))
        fs._captureq_gate = have
    return have[1]


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
              batch_bytes: int = DEFAULT_BATCH_BYTES) -> Prefetch | ReadAhead | None:
        """Start reading the first batch of ``files`` when ``fs`` is a local disk (None: the
        local disk, without importing fsspec). On an object store, a :class:`ReadAhead` over
        every batch instead (None when its ``read_ahead`` storage option is 0): there the
        batches wait on the network, and fetching the next ones while the first are decoded
        is what saves time."""
        if not files:
            return None
        if not _plain_local(fs):
            from .storage import policy_of

            limit = policy_of(fs).read_ahead
            return ReadAhead(fs, plan_batches(files, batch_bytes), max_bytes=limit) if limit > 0 else None
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


class ReadAhead:
    """The batches of a read (``groups``, in order) fetched ahead of their decoders, for object
    stores where each batch waits on the network: while the first batches are decoded, the next
    ones are already in flight. Bounded: the batches fetching or fetched and not yet taken hold
    at most ``max_bytes`` (their listed sizes; one batch is always allowed) and are at most
    ``max_batches``. Each batch is the one :func:`fetch` gives (its retries, deadlines and
    unreadable files included), and the GETs of all of them share the filesystem's
    ``concurrency`` gate. ``peak_batches`` and ``peak_bytes`` say the most it ever held.

    :meth:`take` hands a batch to its decoder (once) and lets the next one start; a group it
    has not started (taken out of order, or not one of ``groups``) gives None: the caller
    fetches that one itself, and it is never fetched twice.

    >>> ahead = ReadAhead(fs, plan_batches(scan.files), max_bytes=256 << 20)   # doctest: +SKIP
    >>> [ahead.take(g).files == g for g in plan_batches(scan.files)]          # doctest: +SKIP
    [True, True, True]
    """

    def __init__(self, fs: fsspec.AbstractFileSystem | None, groups: list[list[CaptureFile]], *,
                 max_bytes: int, max_batches: int = READ_AHEAD_BATCHES):
        from concurrent.futures import ThreadPoolExecutor

        self.fs = fs
        self.groups = [list(g) for g in groups]
        self.max_bytes = max_bytes
        self.max_batches = max(1, max_batches)
        self.peak_batches = 0
        self.peak_bytes = 0
        self._sizes = [sum(f.size or 0 for f in g) for g in self.groups]
        self._index = {tuple(g): i for i, g in enumerate(self.groups)}
        self._lock = threading.Lock()
        self._futures: dict = {}
        self._held: dict[int, int] = {}  # batch index → listed bytes, from start until taken
        self._skipped: set[int] = set()
        self._next = 0
        self._pool = ThreadPoolExecutor(max_workers=self.max_batches, thread_name_prefix="captureq-ahead")
        weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
        with self._lock:
            self._fill()

    def _fill(self) -> None:
        """Start the next batches while the bound allows (called holding the lock)."""
        while self._next < len(self.groups):
            i = self._next
            if i in self._skipped:
                self._next += 1
                continue
            held = sum(self._held.values())
            if self._held and (len(self._held) >= self.max_batches or held + self._sizes[i] > self.max_bytes):
                return
            self._held[i] = self._sizes[i]
            self._futures[i] = self._pool.submit(fetch, self.fs, self.groups[i])
            self._next += 1
            self.peak_batches = max(self.peak_batches, len(self._held))
            self.peak_bytes = max(self.peak_bytes, held + self._sizes[i])

    def take(self, group: list[CaptureFile]) -> FileBatch | None:
        """The batch of ``group``, waiting for it to be fetched; None when the read-ahead has
        not started it (the caller fetches it)."""
        i = self._index.get(tuple(group))
        if i is None:
            return None
        with self._lock:
            future = self._futures.pop(i, None)
            if future is None:
                if i >= self._next:
                    self._skipped.add(i)
                return None
        try:
            return future.result()
        finally:
            with self._lock:
                self._held.pop(i, None)
                self._fill()

    def close(self) -> None:
        """Start nothing more; batches not started are dropped (a reader that stops early)."""
        with self._lock:
            self._next = len(self.groups)
        self._pool.shutdown(wait=False, cancel_futures=True)
