"""The capture writer: SageMaker-format capture objects written off the request path.

``capture(...)`` does only what must happen on the request path — a sampling draw, a disk
check (usually one attribute read), a timestamp and a queue put — and returns. A background
thread turns queued requests into records with :mod:`captureq.records`, buffers them per UTC
hour and writes whole objects to ``{destination}/{endpoint}/{variant}/yyyy/mm/dd/hh/``, named
``{mm}-{ss}-{mmm}-{uuid}.jsonl`` after their first record as SageMaker names them. An object is
written when its hour ends (a record for a later hour arrives), when it reaches
``max_file_bytes``, when it is ``max_file_age`` seconds old, on :meth:`CaptureWriter.flush`
and on :meth:`CaptureWriter.close` (also called at interpreter exit).

>>> import tempfile, captureq
>>> out = tempfile.mkdtemp()
>>> with CaptureWriter(CaptureConfig(out, sampling_percentage=100, endpoint="churn")) as w:
...     w.capture("1,2,3\\n", "text/csv", "0.91", "text/csv", inference_id="req-1")
True
>>> captureq.open(out).captures().column("inference_id").to_pylist()
['req-1']
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import random
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from fsspec.core import url_to_fs

from .. import records as rec
from .config import CaptureConfig
from .diskguard import DiskGuard, disk_usage_percent

__all__ = ["CaptureStats", "CaptureWriter"]

log = logging.getLogger("captureq.capture")
UTC = timezone.utc
_STOP = object()
_LIVE: weakref.WeakSet[CaptureWriter] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:  # flush whatever is buffered when the process exits
    for writer in list(_LIVE):
        writer.close()


@dataclass
class CaptureStats:
    """Counters of a writer (``requests == sampled + not_sampled``)."""

    requests: int = 0  # capture() calls while enabled
    sampled: int = 0  # ... chosen by the sampling draw
    not_sampled: int = 0
    skipped_disk: int = 0  # sampled, but dropped because the disk guard had paused capture
    dropped_backlog: int = 0  # sampled, but dropped because the writer fell max_pending behind
    queued: int = 0  # handed to the background thread
    written: int = 0  # records in objects written
    files: int = 0  # objects written
    bytes: int = 0
    bad_requests: int = 0  # payloads that could not be turned into a record (not str/bytes)
    write_errors: int = 0  # failed object writes (retried)
    lost: int = 0  # records whose object could still not be written at close
    paths: list[str] = field(default_factory=list, repr=False)


@dataclass
class _Buffer:
    first: datetime
    opened: float
    lines: list[bytes] = field(default_factory=list)
    size: int = 0


def _epoch(value: float | datetime) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _existing_parent(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


class CaptureWriter:
    """Capture requests and responses into a SageMaker-style capture tree.

    ``config`` is a :class:`CaptureConfig`, a boto-style ``DataCaptureConfig`` dict or a
    destination URI. For tests: ``clock`` (returns epoch seconds or an aware datetime; default
    :func:`time.time`), ``rng`` (a :class:`random.Random` for the sampling draw), ``usage``
    (``path -> percent used`` for the disk guard) or a whole ``guard``.
    """

    def __init__(
        self,
        config: CaptureConfig | dict | str,
        *,
        clock: Callable[[], float | datetime] = time.time,
        rng: random.Random | None = None,
        usage: Callable[[str], float] | None = None,
        guard: DiskGuard | None = None,
        tick: float = 0.25,
        max_pending: int = 100_000,
    ):
        self.config = cfg = CaptureConfig.coerce(config)
        self.fs, root = url_to_fs(cfg.destination, **(cfg.storage_options or {}))
        self.root = root.rstrip("/")
        self.clock = clock
        self._random = (rng or random.Random(cfg.sampling_seed)).random
        self._percent = cfg.sampling_percentage
        self._enabled = cfg.enabled
        if guard is None:
            local = "file" in (
                self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
            )
            path = cfg.buffer_path or (
                _existing_parent(self.root) if local else tempfile.gettempdir()
            )
            guard = DiskGuard(path, threshold=cfg.disk_threshold, usage=usage or disk_usage_percent)
        self.guard = guard
        self.stats = CaptureStats()
        self.max_pending = max_pending
        self._tick = tick
        self._csv, self._json = cfg.csv_content_types, cfg.json_content_types
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._open: dict[int, _Buffer] = {}  # by epoch hour
        self._retry: list[tuple[str, bytes, int]] = []
        self._dirs: set[str] = set()
        self._processed = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="captureq-writer", daemon=True)
        self._thread.start()
        _LIVE.add(self)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"CaptureWriter({c.destination!r}, endpoint={c.endpoint!r}, variant={c.variant!r}, "
            f"sampling={c.sampling_percentage:g}%, {self.stats.written} records written)"
        )

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- request path ------------------------------------------------------------------------
    def capture(
        self,
        input: bytes | str | None,
        input_type: str | None,
        output: bytes | str | None,
        output_type: str | None,
        *,
        inference_id: str | None = None,
        event_id: str | None = None,
        when: float | datetime | None = None,
    ) -> bool:
        """Queue one request/response for capture; True when it was sampled and queued.

        Never raises for capture reasons and never blocks: the record is built and written by
        the background thread. ``inference_id`` is the caller's id (SageMaker's
        ``InferenceId``), the key ground truth is joined on.
        """
        if not self._enabled or self._closed:
            return False
        stats = self.stats
        stats.requests += 1
        if self._random() * 100.0 >= self._percent:
            stats.not_sampled += 1
            return False
        stats.sampled += 1
        if not self.guard.allow():
            stats.skipped_disk += 1
            return False
        if stats.queued - self._processed >= self.max_pending:
            stats.dropped_backlog += 1
            return False
        stats.queued += 1
        self._queue.put(
            (
                self.clock() if when is None else when,
                input,
                input_type,
                output,
                output_type,
                inference_id,
                event_id,
            )
        )
        return True

    # -- lifecycle -----------------------------------------------------------------------------
    def flush(self, timeout: float | None = 30.0) -> bool:
        """Write every buffered record now; True when the writer caught up within ``timeout``."""
        if not self._thread.is_alive():
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float | None = 30.0) -> CaptureStats:
        """Stop accepting captures, write everything buffered and stop the thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        _LIVE.discard(self)
        return self.stats

    @property
    def closed(self) -> bool:
        return self._closed

    # -- background thread ---------------------------------------------------------------------
    def _run(self) -> None:
        q = self._queue
        while True:
            try:
                items = [q.get(timeout=self._tick)]
            except queue.Empty:
                items = []
            while True:
                try:
                    items.append(q.get_nowait())
                except queue.Empty:
                    break
            stop = False
            for item in items:
                if item is _STOP:
                    stop = True
                elif isinstance(item, threading.Event):
                    self._write_all()
                    item.set()
                else:
                    self._add(item)
            try:
                self._roll_by_age()
            except Exception:  # a broken clock must not kill the writer
                log.exception("captureq: age roll-over failed")
            if stop:
                self._write_all(final=True)
                return

    def _add(self, item: tuple) -> None:
        when, inp, itype, out, otype, inference_id, event_id = item
        cfg = self.config
        try:
            epoch = _epoch(when)
            when_dt = datetime.fromtimestamp(epoch, UTC)
            record = rec.capture_record(
                input=rec.encode_payload(
                    inp,
                    itype or "application/octet-stream",
                    csv_types=self._csv,
                    json_types=self._json,
                    mode="INPUT",
                )
                if cfg.capture_input and inp is not None
                else None,
                output=rec.encode_payload(
                    out,
                    otype or "application/octet-stream",
                    csv_types=self._csv,
                    json_types=self._json,
                    mode="OUTPUT",
                )
                if cfg.capture_output and out is not None
                else None,
                event_id=event_id or str(uuid.uuid4()),
                inference_id=inference_id,
                inference_time=when_dt,
            )
            line = (rec.dumps(record) + "\n").encode("utf-8")
        except Exception as exc:  # noqa: BLE001 - capture never fails the caller
            self.stats.bad_requests += 1
            log.warning("captureq: could not capture a request: %s", exc)
            return
        finally:
            self._processed += 1
        hour = int(epoch // 3600)
        buf = self._open.get(hour)
        if buf is None:
            # A record for a later hour closes the earlier hours' objects (hourly roll-over).
            for h in [h for h in self._open if h < hour]:
                self._write(self._open.pop(h))
            buf = self._open[hour] = _Buffer(first=when_dt, opened=_epoch(self.clock()))
        buf.lines.append(line)
        buf.size += len(line)
        if buf.size >= cfg.max_file_bytes:
            self._write(self._open.pop(hour))

    def _roll_by_age(self) -> None:
        if not self._open and not self._retry:
            return
        now = _epoch(self.clock())
        for h in [h for h, b in self._open.items() if now - b.opened >= self.config.max_file_age]:
            self._write(self._open.pop(h))
        self._retry_failed()

    def _write_all(self, final: bool = False) -> None:
        for h in list(self._open):
            self._write(self._open.pop(h))
        self._retry_failed()
        if final and self._retry:
            lost = sum(n for _, _, n in self._retry)
            self.stats.lost += lost
            log.error(
                "captureq: %d captured records could not be written: %s",
                lost,
                [p for p, _, _ in self._retry],
            )
            self._retry.clear()

    def _write(self, buf: _Buffer) -> None:
        c = self.config
        path = rec.capture_path(self.root, c.endpoint, c.variant, buf.first)
        self._put(path, b"".join(buf.lines), len(buf.lines))

    def _retry_failed(self) -> None:
        failed, self._retry = self._retry, []
        for path, data, n in failed:
            self._put(path, data, n)

    def _put(self, path: str, data: bytes, n: int) -> None:
        try:
            parent = path.rsplit("/", 1)[0]
            if parent not in self._dirs:
                self.fs.makedirs(parent, exist_ok=True)
                self._dirs.add(parent)
            self.fs.pipe_file(path, data)
        except Exception as exc:  # noqa: BLE001 - keep the data, try again next tick
            self.stats.write_errors += 1
            log.warning("captureq: writing %s failed (%s); will retry", path, exc)
            self._retry.append((path, data, n))
            return
        s = self.stats
        s.written += n
        s.files += 1
        s.bytes += len(data)
        s.paths.append(path)
