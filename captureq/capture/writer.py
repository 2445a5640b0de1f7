"""The capture writer: SageMaker-format capture objects written off the request path.

``capture(...)`` does only what must happen on the request path — a sampling draw, a disk
check (usually one attribute read), a timestamp and a queue put — and returns. Two background
threads do the rest:

* the **spool thread** turns queued requests into records with :mod:`captureq.records`, groups
  them per UTC hour into future objects named ``{mm}-{ss}-{mmm}-{uuid}.jsonl`` after their first
  record (as SageMaker names them) and appends them to the local :mod:`~captureq.capture.spool`
  every ``spool_flush_interval`` seconds. An object is complete when its hour ends (a record for
  a later hour arrives), when it reaches ``max_file_bytes``, when it is ``max_file_age`` seconds
  old, on :meth:`CaptureWriter.flush` and on :meth:`CaptureWriter.close`;
* the **upload thread** writes each complete object to
  ``{destination}/{endpoint}/{variant}/yyyy/mm/dd/hh/`` in one piece (a local file under a temp
  name, then renamed; an object store PUT of the whole body), deletes its spool file, and retries
  with back-off while the destination fails. At start it uploads what writers that are gone
  left in the spool.

So a crash, ``kill -9`` or an outage at shutdown loses at most the last flush interval: the
rest is in the spool and the next writer for the destination uploads it. Every record accepted
ends up written, kept in the spool, or counted in ``stats.lost`` and logged.

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
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from fsspec.core import url_to_fs

from .. import records as rec
from .config import CaptureConfig
from .diskguard import DiskGuard, disk_usage_percent
from .spool import Orphan, Segment, Spool, default_spool_dir, read_segment

__all__ = ["CaptureStats", "CaptureWriter"]

log = logging.getLogger("captureq.capture")
UTC = timezone.utc
_STOP = object()
_LIVE: weakref.WeakSet[CaptureWriter] = weakref.WeakSet()
_MAX_BACKOFF = 30.0  # seconds between upload attempts while the destination keeps failing
_CLOSE_ATTEMPTS = 3  # upload attempts per object at close before it is left in the spool
_LOG_EVERY = 30.0  # seconds between repeated warnings about the same failure


def _close_all() -> None:  # spool and upload whatever is buffered when the process exits
    for writer in list(_LIVE):
        writer.close()


def _register_exit_hook() -> None:
    """Close the writers when the main thread ends, while thread pools still take work.

    s3fs/aiobotocore resolve hosts in the event loop's thread pool, which refuses new work once
    ``concurrent.futures`` runs its own exit hook; ``atexit`` hooks run after that one. Hooks
    given to ``threading._register_atexit`` run in reverse order of registration, so importing
    ``concurrent.futures.thread`` first puts this hook ahead of it. Plain ``atexit`` where that
    hook does not exist.
    """
    import concurrent.futures.thread  # noqa: F401 - registers its exit hook before ours

    register = getattr(threading, "_register_atexit", None)
    if register is None:
        atexit.register(_close_all)
    else:
        register(_close_all)


_register_exit_hook()


@dataclass

class CaptureStats:
    """Counters of a writer.

    ``requests == sampled + not_sampled``; a sampled request is skipped (``skipped_disk``,
    ``skipped_spool``, ``dropped_backlog``), a bad request, or ``queued``. A queued record is
    ``spooled`` (on local disk) and then ``written`` to the destination; at close, what could
    not be written yet is ``kept`` in the spool (the next writer to start uploads it) and only
    what never reached the spool is ``lost``.
    """

    requests: int = 0  # capture() calls while enabled
    sampled: int = 0  # ... chosen by the sampling draw
    not_sampled: int = 0
    skipped_disk: int = 0  # sampled, but dropped because the disk guard had paused capture
    skipped_spool: int = 0  # sampled, but dropped because the spool was at spool_max_bytes
    dropped_backlog: int = 0  # sampled, but dropped because the writer fell max_pending behind
    queued: int = 0  # handed to the background threads
    spooled: int = 0  # records appended to the local spool
    written: int = 0  # records in objects written
    recovered: int = 0  # records written from the spool of an earlier writer that had stopped
    files: int = 0  # objects written (own and recovered)
    bytes: int = 0
    bad_requests: int = 0  # payloads that could not be turned into a record (not str/bytes)
    retried: int = 0  # failed object writes (the object stays in the spool and is retried)
    spool_errors: int = 0  # failed appends to the spool (the records stay in memory, retried)
    kept: int = 0  # records left in the spool at close, for the next writer to upload
    lost: int = 0  # records accepted but neither written nor kept in the spool
    paths: list[str] = field(default_factory=list, repr=False)

    @property
    def write_errors(self) -> int:
        """Failed object writes (same as ``retried``)."""
        return self.retried

    @property
    def skipped(self) -> int:
        """Sampled requests not captured: disk guard, full spool and backlog together."""
        return self.skipped_disk + self.skipped_spool + self.dropped_backlog


@dataclass
class _Open:
    """An object being filled: its first record's time, when it was opened, its spool file."""

    first: datetime
    opened: float
    segment: Segment


@dataclass
class _Upload:
    """A complete spool file waiting to be written to the destination."""

    path: str
    rel: str
    records: int
    orphan: Orphan | None = None  # set for files left by a writer that had stopped
    attempts: int = 0


class _Default:
    def __repr__(self) -> str:
        return "close_timeout"


DEFAULT = _Default()


class _Flush:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.ok = False


def _epoch(value: float | datetime) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _drain(q: queue.Queue, timeout: float) -> tuple[list, list, bool]:
    """What ``q`` holds (waiting up to ``timeout`` for the first item), split into work items,
    flush markers, and whether the stop marker came."""
    try:
        got = [q.get(timeout=timeout)]
    except queue.Empty:
        got = []
    while True:
        try:
            got.append(q.get_nowait())
        except queue.Empty:
            break
    flushes = [item for item in got if isinstance(item, _Flush)]
    items = [item for item in got if item is not _STOP and not isinstance(item, _Flush)]
    return items, flushes, any(item is _STOP for item in got)


class CaptureWriter:
    """Capture requests and responses into a SageMaker-style capture tree.

    ``config`` is a :class:`CaptureConfig`, a boto-style ``DataCaptureConfig`` dict or a
    destination URI. For tests: ``clock`` (returns epoch seconds or an aware datetime; default
    :func:`time.time`), ``rng`` (a :class:`random.Random` for the sampling draw), ``usage``
    (``path -> percent used`` for the disk guard) or a whole ``guard``.

    ``on_written(path, data)`` is called on the upload thread after each object is written
    (objects of an earlier writer's spool included) with its full path and bytes: what a caller
    that keeps its own record of what is written (a replay's ledger) needs. An exception it
    raises is logged; the object stays written.
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
        on_written: Callable[[str, bytes], None] | None = None,
    ):
        self.config = cfg = CaptureConfig.coerce(config)
        self.fs, root = url_to_fs(cfg.destination, **(cfg.storage_options or {}))
        self.root = root.rstrip("/")
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        # A local file is written under a temp name and renamed; an object PUT is already whole.
        self._rename = "file" in protocols or "local" in protocols
        self.spool = Spool(cfg.spool_dir or default_spool_dir(cfg.destination))
        self.clock = clock
        self._random = (rng or random.Random(cfg.sampling_seed)).random
        self._percent = cfg.sampling_percentage
        self._enabled = cfg.enabled
        if guard is None:
            guard = DiskGuard(
                cfg.buffer_path or self.spool.root,
                threshold=cfg.disk_threshold,
                usage=usage or disk_usage_percent,
            )
        self.guard = guard
        self.stats = CaptureStats()
        self.max_pending = max_pending
        self.on_written = on_written
        self._tick = min(tick, cfg.spool_flush_interval)
        self._csv, self._json = cfg.csv_content_types, cfg.json_content_types
        self._queue: queue.SimpleQueue = queue.SimpleQueue()  # requests, for the spool thread
        self._uploads: queue.SimpleQueue = queue.SimpleQueue()  # spool files, for the uploader
        self._open: dict[int, _Open] = {}  # by epoch hour
        self._sealed: list[Segment] = []  # complete, some lines not yet in the spool
        self._waiting: deque[_Upload] = deque()
        self._waiting_lock = threading.Lock()
        self._dirs: set[str] = set()
        self._settled = 0  # records spooled, refused as bad or lost: no longer held in memory
        self._spool_full = False
        self._spool_failing = False
        self._skipped_spool_at = 0
        self._failing_since: float | None = None
        self._failing_logged = 0.0
        self._deadline: float | None = None
        self._reported = False
        self._closed = False
        self._spooler = threading.Thread(target=self._spool_run, name="captureq-spool", daemon=True)
        self._uploader = threading.Thread(
            target=self._upload_run, name="captureq-upload", daemon=True
        )
        self._spooler.start()
        self._uploader.start()
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
        metadata: dict | None = None,
    ) -> bool:
        """Queue one request/response for capture; True when it was sampled and queued.

        Never raises for capture reasons and never blocks: the record is built, spooled and
        written by the background threads. ``inference_id`` is the caller's id (SageMaker's
        ``InferenceId``), the key ground truth is joined on. ``metadata`` adds keys of its own
        to the record's ``eventMetadata``.
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
        if self._spool_full:
            stats.skipped_spool += 1
            return False
        if stats.queued - self._settled >= self.max_pending:
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
                metadata,
            )
        )
        return True

    # -- lifecycle -----------------------------------------------------------------------------
    def flush(self, timeout: float | None = 30.0) -> bool:
        """Complete the open objects and write them now; True when nothing is left to write.

        False when ``timeout`` passed or a write failed (the objects stay in the spool and are
        retried).
        """
        if not self._spooler.is_alive() or not self._uploader.is_alive():
            return not self._waiting
        marker = _Flush()
        self._queue.put(marker)
        return marker.event.wait(timeout) and marker.ok

    def close(self, timeout: float | None | _Default = DEFAULT) -> CaptureStats:
        """Stop accepting captures, spool everything, write what can be written in ``timeout``
        seconds (default: the config's ``close_timeout``; None: no limit).

        What is not written by then stays in the spool (``stats.kept``) and is uploaded by the
        next writer to start for this destination; the summary is logged.
        """
        if isinstance(timeout, _Default):
            timeout = self.config.close_timeout
        start = time.monotonic()
        if not self._closed:
            self._closed = True
            self._deadline = None if timeout is None else start + timeout
            self._queue.put(_STOP)
        current = threading.current_thread()
        for thread in (self._spooler, self._uploader):
            if thread is not current:
                left = None if timeout is None else max(0.0, start + timeout - time.monotonic())
                thread.join(left)
        _LIVE.discard(self)
        if not self._reported and not self._spooler.is_alive():
            self._report()
        return self.stats

    @property
    def closed(self) -> bool:
        return self._closed

    def _report(self) -> None:
        self._reported = True
        s = self.stats
        with self._waiting_lock:
            kept = sum(u.records for u in self._waiting)
            files = len(self._waiting)
        s.kept = kept
        level = logging.ERROR if s.lost else logging.WARNING if kept else logging.INFO
        log.log(
            level,
            "captureq: writer for %s closed: %d queued, %d spooled, %d written, %d recovered, "
            "%d retried, %d skipped (disk guard %d, spool full %d, backlog %d), "
            "%d kept in %d spool file(s) under %s for the next writer to upload, %d lost",
            self.config.destination,
            s.queued,
            s.spooled,
            s.written,
            s.recovered,
            s.retried,
            s.skipped,
            s.skipped_disk,
            s.skipped_spool,
            s.dropped_backlog,
            kept,
            files,
            self.spool.root,
            s.lost,
        )

    # -- spool thread --------------------------------------------------------------------------
    def _spool_run(self) -> None:
        q = self._queue
        interval = self.config.spool_flush_interval
        last = time.monotonic()
        while True:
            items, flushes, stop = _drain(q, self._tick)
            for item in items:
                self._add(item)
            try:
                self._roll_by_age()
            except Exception:  # a broken clock must not kill the writer
                log.exception("captureq: age roll-over failed")
            now = time.monotonic()
            if stop or flushes:
                for h in list(self._open):
                    self._seal(h)
            if stop or flushes or self._sealed or now - last >= interval:
                self._flush_spool(final=stop)
                last = now
            self._watch_spool_size()
            for marker in flushes:
                self._uploads.put(marker)
            if stop:
                self._uploads.put(_STOP)
                return

    def _add(self, item: tuple) -> None:
        when, inp, itype, out, otype, inference_id, event_id, metadata = item
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
                metadata=metadata,
            )
            line = (rec.dumps(record) + "\n").encode("utf-8")
        except Exception as exc:  # noqa: BLE001 - capture never fails the caller
            self.stats.bad_requests += 1
            self._settled += 1
            log.warning("captureq: could not capture a request: %s", exc)
            return
        hour = int(epoch // 3600)
        obj = self._open.get(hour)
        if obj is None:
            # A record for a later hour completes the earlier hours' objects (hourly roll-over).
            for h in [h for h in self._open if h < hour]:
                self._seal(h)
            rel = rec.capture_path("", cfg.endpoint, cfg.variant, when_dt).lstrip("/")
            obj = self._open[hour] = _Open(when_dt, _epoch(self.clock()), self.spool.segment(rel))
        obj.segment.add(line)
        if obj.segment.size >= cfg.max_file_bytes:
            self._seal(hour)

    def _seal(self, hour: int) -> None:
        self._sealed.append(self._open.pop(hour).segment)

    def _roll_by_age(self) -> None:
        if not self._open:
            return
        now = _epoch(self.clock())
        for h in [h for h, o in self._open.items() if now - o.opened >= self.config.max_file_age]:
            self._seal(h)

    def _flush_spool(self, final: bool) -> None:
        """Append every pending line to the spool; hand complete files to the uploader."""
        s = self.stats
        failed: OSError | None = None
        for seg in [o.segment for o in self._open.values()] + self._sealed:
            if not seg.pending:
                continue
            n = seg.flush()
            s.spooled += n
            self._settled += n
            if seg.error is None:
                continue
            failed = seg.error
            s.spool_errors += 1
            if final:
                lost = len(seg.pending)
                seg.pending.clear()
                s.lost += lost
                self._settled += lost
                log.error(
                    "captureq: %d captured records lost: the spool file %s cannot be "
                    "written (%s); free space there or set spool_dir",
                    lost,
                    seg.path,
                    failed,
                )
        if failed is not None and not self._spool_failing and not final:
            held = s.queued - self._settled
            log.warning(
                "captureq: cannot append to the spool under %s (%s); %d records held in memory "
                "and retried every %g s (capture stops taking new ones at max_pending=%d)",
                self.spool.root,
                failed,
                held,
                self.config.spool_flush_interval,
                self.max_pending,
            )
        elif failed is None and self._spool_failing:
            log.warning("captureq: the spool under %s is writable again", self.spool.root)
        self._spool_failing = failed is not None
        keep = []
        for seg in self._sealed:
            if seg.pending:
                keep.append(seg)
                continue
            seg.close()
            if seg.records:
                self._uploads.put(_Upload(seg.path, seg.rel, seg.records))
        self._sealed = keep

    def _watch_spool_size(self) -> None:
        """Refuse captures while the spool holds ``spool_max_bytes``; log when that starts/ends."""
        limit = self.config.spool_max_bytes
        full = self.spool.bytes >= limit
        if full == self._spool_full:
            return
        self._spool_full = full
        if full:
            self._skipped_spool_at = self.stats.skipped_spool
            log.warning(
                "captureq: the spool under %s holds %d bytes (spool_max_bytes=%d): skipping "
                "captures until uploads catch up",
                self.spool.root,
                self.spool.bytes,
                limit,
            )
        else:
            log.warning(
                "captureq: the spool is below spool_max_bytes again: capturing; %d requests "
                "were skipped while it was full",
                self.stats.skipped_spool - self._skipped_spool_at,
            )

    # -- upload thread -------------------------------------------------------------------------
    def _upload_run(self) -> None:
        try:
            self._adopt()
            backoff, next_try = 0.0, 0.0
            while True:
                wait = self._tick
                if self._waiting and next_try > time.monotonic():
                    wait = min(wait, next_try - time.monotonic())
                items, flushes, stop = _drain(self._uploads, max(wait, 0.001))
                if items:
                    with self._waiting_lock:
                        self._waiting.extend(items)
                if stop:
                    self._upload_at_close()
                    return
                if self._waiting and (flushes or time.monotonic() >= next_try):
                    if self._upload_waiting():
                        backoff = 0.0
                    else:
                        backoff = min(_MAX_BACKOFF, max(0.5, backoff * 2))
                        next_try = time.monotonic() + backoff
                for marker in flushes:
                    marker.ok = not self._waiting
                    marker.event.set()
        except Exception:  # noqa: BLE001 - the spool keeps the data; say why uploads stopped
            log.exception("captureq: the upload thread stopped; the spool keeps what it holds")
        finally:
            self.spool.release()

    def _upload_at_close(self) -> None:
        """A few quick attempts per object before the deadline; the rest stays in the spool."""
        pause = 0.1
        while self._waiting:
            if self._deadline is not None and time.monotonic() >= self._deadline:
                return
            if self._upload_waiting(deadline=self._deadline):
                return
            if min(u.attempts for u in self._waiting) >= _CLOSE_ATTEMPTS:
                return
            time.sleep(pause)
            pause *= 4

    def _adopt(self) -> None:
        """Queue the files of spools whose writer is gone (the first thing the uploader does)."""
        for orphan in self.spool.orphans():
            files, records = orphan.files(), 0
            for path in files:
                try:
                    size = os.path.getsize(path)
                    _, n = read_segment(path)
                except OSError:
                    continue
                self.spool.grow(size)
                records += n
                orphan.left += 1
                with self._waiting_lock:
                    self._waiting.append(_Upload(path, orphan.rel(path), n, orphan))
            if not orphan.left:
                orphan.remove()
                continue
            log.warning(
                "captureq: found %d records in %d file(s) left in the spool %s by a writer that "
                "stopped; writing them to %s",
                records,
                orphan.left,
                orphan.path,
                self.config.destination,
            )

    def _upload_waiting(self, deadline: float | None = None) -> bool:
        """Write each waiting file once, in order; True when none is left.

        A file that fails goes to the back (one bad object does not hold up the rest); two
        failures in a row end the pass (the destination is down: back off).
        """
        s = self.stats
        failures = 0
        for _ in range(len(self._waiting)):
            if not self._waiting:
                break
            if deadline is not None and time.monotonic() >= deadline:
                return False
            up = self._waiting[0]
            try:
                size = os.path.getsize(up.path)
                data, n = read_segment(up.path)
            except FileNotFoundError:  # another writer adopted and wrote it
                self._done(up)
                continue
            final = f"{self.root}/{up.rel}"
            up.attempts += 1
            try:
                if n:
                    self._put(final, data)
            except Exception as exc:  # noqa: BLE001 - the file stays in the spool
                s.retried += 1
                self._log_failure(final, exc)
                with self._waiting_lock:
                    self._waiting.rotate(-1)
                failures += 1
                if failures == 2:
                    return False
                continue
            failures = 0
            self.spool.remove_file(up.path, size)
            self._done(up)
            if n:
                if up.orphan is None:
                    s.written += n
                else:
                    s.recovered += n
                s.files += 1
                s.bytes += len(data)
                s.paths.append(final)
                if self.on_written is not None:
                    try:
                        self.on_written(final, data)
                    except Exception:  # noqa: BLE001 - the object is written either way
                        log.exception("captureq: on_written failed for %s", final)
            if self._failing_since is not None:
                log.warning(
                    "captureq: writing to %s works again after %.0f s (%d failed attempts so far)",
                    self.config.destination,
                    time.monotonic() - self._failing_since,
                    s.retried,
                )
                self._failing_since = None
        return not self._waiting

    def _done(self, up: _Upload) -> None:
        with self._waiting_lock:
            if self._waiting and self._waiting[0] is up:
                self._waiting.popleft()
        if up.orphan is not None:
            up.orphan.left -= 1
            if up.orphan.left <= 0:
                up.orphan.remove()

    def _log_failure(self, path: str, exc: Exception) -> None:
        now = time.monotonic()
        first = self._failing_since is None
        if first:
            self._failing_since = now
        if first or now - self._failing_logged >= _LOG_EVERY:
            self._failing_logged = now
            with self._waiting_lock:
                records = sum(u.records for u in self._waiting)
                files = len(self._waiting)
            log.warning(
                "captureq: writing %s failed (%s); %d records in %d file(s) wait in the spool "
                "under %s and are retried (%d failed attempts so far)",
                path,
                exc,
                records,
                files,
                self.spool.root,
                self.stats.retried,
            )

    def _put(self, path: str, data: bytes) -> None:
        parent = path.rsplit("/", 1)[0]
        if parent not in self._dirs:
            self.fs.makedirs(parent, exist_ok=True)
            self._dirs.add(parent)
        if not self._rename:
            self.fs.pipe_file(path, data)
            return
        tmp = f"{parent}/.{path.rsplit('/', 1)[1]}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, path)
        except BaseException:
            try:
                self.fs.rm_file(tmp)
            except Exception:  # noqa: BLE001 - the temp file may not exist
                pass
            raise
