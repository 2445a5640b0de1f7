"""Fetch the bytes of capture files in bounded batches.

Files are grouped into batches of about ``batch_bytes`` so that memory stays bounded however
large the tree is; each batch is fetched with one ``fs.cat`` call (concurrent on object stores).
A file that cannot be read (deleted between LIST and GET, a corrupt gzip member, a storage
error that outlived the retries) is reported, never silently dropped.
"""

from __future__ import annotations

import gzip
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import fsspec

from .scan import CaptureFile

DEFAULT_BATCH_BYTES = 64 * 1024 * 1024
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


def fetch(fs: fsspec.AbstractFileSystem, files: list[CaptureFile], *, retries: int = 3,
          backoff: float = 0.2) -> FileBatch:
    """Read ``files`` into a FileBatch. Transient errors are retried with exponential backoff."""
    batch = FileBatch()
    pending = list(files)
    results: dict[str, bytes | BaseException] = {}
    for attempt in range(retries + 1):
        if not pending:
            break
        got = fs.cat([f.path for f in pending], on_error="return")
        if not isinstance(got, dict):  # a single path returns bytes
            got = {pending[0].path: got}
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
        if f.size is not None and len(value) < f.size and not f.compressed:
            batch.failed.append((f, f"short read: got {len(value)} of {f.size} bytes listed"))
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
