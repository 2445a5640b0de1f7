"""Incremental, atomic export of every table to hive-partitioned Parquet, on any fsspec storage.

Layout under ``out``::

    captures/endpoint=E/variant=V/date=YYYY-MM-DD/hour=HH/part-<run>-<n>.parquet
    inputs/…  outputs/…                      (same partitions, by inference hour)
    labels/date=YYYY-MM-DD/hour=HH/part-…    (by label hour)
    quarantine/part-…
    _captureq/commits/<run>-<n>.json         the commit log: one record per committed batch
    _captureq/schemas/<table>/<endpoint>.json  inputs/outputs columns and types per endpoint
    _captureq/manifest.json                  a summary written at the end of each run
    _captureq/lease/<generation>.json        the writer lease (object stores only)
    _captureq/lock                           the flock file (local disks only)
    _captureq/tmp/<run>/…                    parts and staged commit records of a running export

``_captureq/`` is the export's metadata; readers of ``captures/**`` never see it. New kinds of
metadata go into their own file or folder under it (readers ignore names they do not know).
A commit record holds ``version``, ``run``, ``seq``, ``kind`` (``captures``/``labels``),
``sources`` (each file read: ``rel``, ``size``, ``version`` = ``etag:…``/``mtime:…``,
``url``, and ``window`` — a list of ``[start, end]`` ISO pairs, ``null`` open — when the file has
lines outside the time windows it was exported for), ``parts`` (``table``, ``path``, ``rows``, ``columns``; optionally ``sources``, the
files a rewritten part still holds), ``removes`` (part paths this commit supersedes) and
``unreadable`` (``rel``, ``url`` of files the batch could not read, whose ``file`` quarantine rows
its parts hold: removed by the commit that reads the file, or that fails on it again).
Folding the log in name order (run ids sort in time order) gives the live parts and, per source
file, the version last exported. A ``snapshot`` record (``kind``; written by :func:`compact`,
which the cache asks for once its log is long) holds that folded state whole and replaces every
record before it. The manifest lists the live parts (``parts``), their row
counts and columns. Files keep all their columns (endpoint and variant too), so each is readable
alone; the ``key=value`` folders let Spark, Trino and Athena prune partitions.

Exactly once: a batch's parts are written under ``_captureq/tmp/`` (invisible to readers of
``captures/**``), then its commit record is staged, the parts are renamed into place, the parts
it supersedes are deleted, and the record is moved into ``commits/``. A run that dies part-way
is rolled forward by the next run from the staged record (each step is skipped when already
done), so every source file is exported once, never twice. A second run skips source files
already committed (keyed by their path relative to the tree root, so a copy of the tree on S3
and on disk share one export) unless they changed: another size, or another ETag (object stores)
or mtime (disks). A changed file is read again whole, and the live parts holding its earlier
rows are rewritten without them in the same commit (:func:`_supersede`): the commit log switches
from old to new at once; a reader globbing ``**/*.parquet`` may see both for the moment between
the renames and the deletes of that one commit (or until the next run, if the export dies
right there) — ``manifest.json``'s ``parts`` is the list to read for an exact view.

Time windows (``start``/``end``, :mod:`captureq.window`): an export writes exactly its window's
rows. A file with lines outside the windows it was exported for keeps those windows ``E`` (merged)
in its source entry, the last entry of a file being its whole state. For a run over window ``W``
(:meth:`CommitLog.status`, :func:`capture_work`): a new file is read for ``W``; an unchanged file
exported whole, or for ``E`` holding ``W``, is done; an unchanged file exported for ``E`` not
holding ``W`` is ``partial``: read for its rows in ``W`` outside ``E``, entered with ``E ∪ W``;
a changed file drops its earlier rows (:func:`_supersede`, same commit) and is read for
``E ∪ W`` — whole when it was exported whole or ``W`` is unbounded. A file left with no line
outside its windows is entered without ``window`` (done for good). So every row lands exactly
once across any sequence of windowed and unwindowed runs.

One writer at a time: ``fcntl.flock`` on local disks; on object stores a lease object created
with a conditional put (``If-None-Match: *``, fsspec's ``pipe_file(mode="create")``). Leases are
numbered; a writer creates lease ``n+1`` only if lease ``n`` no longer holds
(:func:`lease_gone`: released, past its ``expires``, not renewed for the lease time the reader
has now, or its writer ran on this host and its process is gone) or it is told to break it
(``break_lease``), so two writers racing for it cannot both win. A lease holds ``token`` (the
writer's own random id), ``host``, ``pid`` (with ``pidns`` and ``started``, the process's pid
namespace and start time, where ``/proc`` has them: a pid another container or a new process
uses is not the writer), ``acquired``, ``renewed``, ``expires`` and, once given up,
``released``; a put whose answer was lost and whose retry is refused (412) reads the lease back
and holds it when the token is its own. The lease is released on every way out of a run:
success, an error, SIGTERM. A lease lasts ``CAPTUREQ_LEASE_SECONDS`` (600, read each time a
lease is judged) and is renewed at commits once half that time has passed; before each commit
the writer checks that its lease is still the newest, so a writer that stalled past its lease
time, or whose lease was broken, stops instead of committing. Lease age is judged by the
writers' clocks: keep them within a fraction of the lease time. The flock file ``lock`` holds
its writer's ``host``, ``pid`` and ``acquired``; breaking it replaces the file, and the writer
holding the old one stops before its next commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.utils import get_protocol

from . import schema, window
from .commitlog import SNAPSHOT, CommitLog, arrow_type, endpoint_of
from .errors import CaptureqError, ConfigError, ExportError, UnreadableError, UnreadableWarning
from .pipeline import Counts, run_captures, run_labels
from .registry import Registry, conform_batch
from .scan import CaptureFile
from .storage import filesystem, policy_of, warn_unused

if TYPE_CHECKING:
    from .plan import ScanPlan as CaptureTree

META = "_captureq"
# 3: parts under endpoint=/variant= folders do not hold those columns (2: they did; commits may
# remove parts, sources carry versions)
FORMAT_VERSION = 3
LEASES = "lease"  # _captureq/lease/<generation>.json: the writer lease on object stores
DEFAULT_LEASE_SECONDS = 600.0


@dataclass
class ExportSummary:
    """What one export run did."""

    out: str
    run_id: str
    files_exported: int = 0
    files_skipped: int = 0
    label_files_exported: int = 0
    files_changed: int = 0  # of files_exported: exported before, changed since, rows replaced
    rows: dict[str, int] = field(default_factory=dict)
    parts_written: int = 0
    counts: Counts = field(default_factory=Counts)
    recovered_commits: int = 0
    seconds: float = 0.0
    # endpoint → why its export stopped (an unexpected error: its files stay for the next run,
    # the other endpoints are committed); ``LABELS_FAILED`` for the label tree
    failed: dict[str, str] = field(default_factory=dict)
    # the lock or lease this run took over from a writer that had not released it: its
    # ``host``, ``pid``, ``acquired`` (epoch seconds) and ``why`` (its process is gone, it was
    # not renewed for the lease time, --break-lease)
    broken_lease: dict | None = None

    label_counts: Counts = field(default_factory=Counts)

    @property
    def unreadable(self) -> list:
        """The source objects this run could not read (not marked done: the next run tries
        them again); :class:`captureq.Unreadable` values."""
        return self.counts.unreadable + self.label_counts.unreadable


LABELS_FAILED = "(labels)"  # the key of a label tree's failure in ExportSummary.failed


def _by_endpoint(work: list[tuple[Spec, list[CaptureFile]]]) -> list[tuple[str | None, list]]:
    """``capture_work``'s groups split per endpoint (first seen first): one endpoint's failure
    must not stop the others, so batches never mix endpoints."""
    out: dict[str | None, dict[Spec, list[CaptureFile]]] = {}
    for spec, files in work:
        for f in files:
            out.setdefault(f.endpoint, {}).setdefault(spec, []).append(f)
    return [(endpoint, list(groups.items())) for endpoint, groups in out.items()]


def failure_reason(exc: BaseException) -> str:
    """One line for ``ExportSummary.failed``; the traceback on stderr with ``CAPTUREQ_DEBUG``."""
    if os.environ.get("CAPTUREQ_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# Columns whose values the partition folders hold (``endpoint=E/variant=V``). Parts do not
# repeat them: a key both in the path and in the file reads as two types (pyarrow and pandas
# infer a dictionary from the path; the file says string) and pq.read_table / pd.read_parquet
# refuse the folder. Readers take them from the path (DuckDB ``hive_partitioning``, Spark,
# polars ``hive_partitioning=True``, pyarrow datasets with ``partitioning="hive"``).
FOLDER_KEYS = ("endpoint", "variant")


def folder_keys(partition: str) -> list[str]:
    """The :data:`FOLDER_KEYS` a partition path names (``endpoint=a/variant=b/…`` → both)."""
    names = {segment.split("=", 1)[0] for segment in partition.split("/") if "=" in segment}
    return [k for k in FOLDER_KEYS if k in names]


def file_table(partition: str, rows: pa.Table) -> pa.Table:
    """``rows`` as a part under ``partition`` stores them: without the columns its folders name."""
    drop = [k for k in folder_keys(partition) if k in rows.column_names]
    return rows.drop_columns(drop) if drop else rows


def _partition_path(endpoint: str | None, variant: str | None, hour, by_hour: bool = True) -> str:
    parts = []
    if endpoint is not None:
        parts.append(f"endpoint={quote(endpoint, safe='')}")
        parts.append(f"variant={quote(variant or '', safe='')}")
    if not by_hour:
        return "/".join(parts)
    if hour is None:
        parts.append("date=unknown/hour=unknown")
    else:
        parts.append(f"date={hour:%Y-%m-%d}/hour={hour:%H}")
    return "/".join(parts)


def _split(table: pa.Table, time_col: str, by_endpoint: bool, by_hour: bool = True) -> list[tuple[str, pa.Table]]:
    """Split ``table`` into (partition path, rows) groups, vectorized. ``by_hour=False``: by
    endpoint and variant only (the query cache's layout: few big parts, quick to write and read)."""
    if table.num_rows == 0:
        return []
    cols = {}
    if by_hour:
        cols["h"] = pc.floor_temporal(table.column(time_col), unit="hour")
    if by_endpoint:
        cols["e"] = table.column("endpoint")
        cols["v"] = table.column("variant")
    if not cols:
        return [("", table)]
    if not by_hour and all(pc.count_distinct(c, mode="all").as_py() == 1 for c in cols.values()):
        e, v = table.column("endpoint")[0].as_py(), table.column("variant")[0].as_py()
        return [(_partition_path(e, v, None, by_hour=False), table)]  # one group: no sort, no copy
    keys = pa.table(cols)
    order = pc.sort_indices(keys, [(k, "ascending") for k in cols])  # stable
    keys = keys.take(order)
    table = table.take(order)
    # boundaries where any key changes
    change = np.zeros(table.num_rows, dtype=bool)
    change[0] = True
    for name in cols:
        col = keys.column(name).combine_chunks()
        prev, cur = col.slice(0, len(col) - 1), col.slice(1)
        neq = pc.fill_null(pc.not_equal(prev, cur), True)
        both_null = pc.and_(pc.is_null(prev), pc.is_null(cur))
        change[1:] |= pc.and_not(neq, both_null).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], table.num_rows)
    out = []
    for s, e in zip(starts, ends):
        h = keys.column("h")[int(s)].as_py() if by_hour else None
        endpoint = keys.column("e")[int(s)].as_py() if by_endpoint else None
        variant = keys.column("v")[int(s)].as_py() if by_endpoint else None
        out.append((_partition_path(endpoint, variant, h, by_hour), table.slice(int(s), int(e - s))))
    return out


class _Output:
    """The export folder: where parts, commits and the writer lock live.

    Nothing here assumes folders exist: object stores have none until an object is written
    below them, so every listing of a folder that may be empty tolerates FileNotFoundError.
    """

    def __init__(self, out: str, storage_options: dict | None, what: str = "export"):
        """``what`` names the writer in the message a second writer gets (``export``,
        ``schedule run``)."""
        self.what = what
        self.fs, path = filesystem(out, storage_options, side="destination")
        self.policy = policy_of(self.fs)
        self.root = path.rstrip("/")
        self.local = _is_local(self.fs)
        self.meta = f"{self.root}/{META}"
        self._lock_file = None
        self._lease: str | None = None  # the lease object this writer holds (object stores)
        self._lease_body: dict = {}
        self.broken: dict | None = None  # whose lock or lease lock() took over, and why

    def call(self, op: str, path: str, fn, *args, **kwargs):
        """A storage request under the destination's retry policy (:mod:`captureq.storage`); a
        failure that outlives it is a StorageError naming ``op`` and the object."""
        return self.policy.call(op, self.url(path), fn, *args, **kwargs)

    def url(self, path: str) -> str:
        return path if self.local else _redact(self.fs.unstrip_protocol(path))

    # -- one writer at a time ---------------------------------------------------------------
    def lock(self, break_lease: bool = False) -> None:
        """Become the only writer: ``flock`` on local disks, a lease object elsewhere.
        ``break_lease`` takes the lock or lease from a writer that still holds it (that writer
        stops before its next commit); :attr:`broken` then says whose it was."""
        self.broken: dict | None = None
        if not self.local:
            self._acquire_lease(break_lease)
            return
        import fcntl

        self.fs.makedirs(self.meta, exist_ok=True)
        path = f"{self.meta}/lock"
        self._lock_file = open(path, "a+")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(self._lock_file)
            self._lock_file.close()
            self._lock_file = None
            if not break_lease:
                raise ExportError(self._busy(holder)) from None
            # the holder keeps its flock on the old file; a new file is the lock from now on,
            # and the holder's check_lease sees that its file is no longer the lock
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            self._lock_file = open(path, "a+")  # noqa: SIM115 - held for the run
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another export broke it first
                self._lock_file.close()
                self._lock_file = None
                raise ExportError(self._busy(_lock_holder(path))) from None
            self.broken = {**holder, "why": "broken with --break-lease"}
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(json.dumps({**_me(), "acquired": time.time()}))
        self._lock_file.flush()

    def unlock(self) -> None:
        """Give the lock up; a lease is marked released (tried under the retry policy: a
        storage that keeps failing leaves it to expire)."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        if self._lease is not None:
            with contextlib.suppress(OSError, CaptureqError):
                self._write_lease({**self._lease_body, "released": time.time()})
            self._lease = None

    def _leases(self) -> list[str]:
        folder = f"{self.meta}/{LEASES}"
        self.fs.invalidate_cache(folder)
        try:
            names = self.call("LIST", folder, self.fs.ls, folder, detail=False)
        except FileNotFoundError:
            return []
        return sorted(p for p in names if re.fullmatch(r"\d{12}\.json", posixpath.basename(p)))

    def _read_lease(self, path: str) -> dict | None:
        """A lease's body, or None when it is gone (deleted by the writer that took over)."""
        try:
            return self.call("GET", path, self.read_json, path)
        except FileNotFoundError:
            return None

    def _acquire_lease(self, break_lease: bool = False) -> None:
        """Create lease ``n+1`` with a conditional put (``If-None-Match: *``), if lease ``n``
        (the newest) no longer holds (:func:`lease_gone`) or ``break_lease``; see the module
        docstring. The lease carries a token of this writer's own: when the put's answer is
        lost and its retry is refused (412, the object exists), the lease is read back and is
        ours if the token is."""
        leases = self._leases()
        taken = None
        if leases:
            newest = self._read_lease(leases[-1])
            if newest is not None and not newest.get("released"):
                why = lease_gone(newest)
                if why is None and not break_lease:
                    raise ExportError(self._busy(newest))
                taken = {k: newest.get(k) for k in ("host", "pid", "acquired")}
                taken["why"] = why or "broken with --break-lease"
            gen = int(posixpath.basename(leases[-1])[:12]) + 1
        else:
            gen = 1
        path = f"{self.meta}/{LEASES}/{gen:012d}.json"
        now = time.time()
        self._lease_body = {"token": uuid.uuid4().hex, **_me(), "acquired": now, "renewed": now,
                            "expires": now + lease_seconds()}
        try:
            self.call("PUT", path, self.fs.pipe_file, path, json.dumps(self._lease_body).encode(),
                      mode="create")
        except FileExistsError:
            theirs = self._read_lease(path)
            if theirs is None or theirs.get("token") != self._lease_body["token"]:
                raise ExportError(self._busy(theirs or {})) from None
        self._lease = path
        self.broken = taken
        for old in leases[:-1]:  # keep the previous one: it shows who wrote last
            with contextlib.suppress(FileNotFoundError):
                self.call("DELETE", old, self.fs.rm_file, old)

    def _busy(self, holder: dict) -> str:
        """Who holds the lock or lease, since when, and what takes it over."""
        who = f"{holder.get('host') or 'an unknown host'} pid {holder.get('pid') or '?'}"
        since = ""
        if isinstance(holder.get("acquired"), (int, float)):
            since = f" since {_iso(holder['acquired'])}"
        if self.local:
            how = ("the lock is released when that process ends; if it hangs, rerun with "
                   "--break-lease (break_lease=True) to take the lock over")
        else:
            renewed = holder.get("renewed", holder.get("acquired"))
            if isinstance(renewed, (int, float)):
                since += f", renewed {max(0.0, time.time() - renewed):.0f}s ago"
            how = (f"a lease not renewed for CAPTUREQ_LEASE_SECONDS ({lease_seconds():g}s) is taken "
                   "over, at once when its process on this host is gone; if that export is gone, "
                   "rerun with --break-lease (break_lease=True) or a shorter CAPTUREQ_LEASE_SECONDS")
        return (f"another captureq {self.what} is writing to {self.root} (its "
                f"{'lock' if self.local else 'lease'} is held by {who}{since}); wait for it to finish — "
                f"{how} (two {self.what}s into one output at once would duplicate rows)")

    def _write_lease(self, body: dict) -> None:
        self.call("PUT", self._lease, self.fs.pipe_file, self._lease, json.dumps(body).encode())

    def check_lease(self) -> None:
        """Before a commit: this writer still holds the lock — its lease is still the newest one
        (nobody took over after it went stale or broke it), renewed when half the lease time
        (:func:`lease_seconds`) since its last renewal is gone; on a local disk, its lock file is
        still the lock (nobody broke it)."""
        if self._lock_file is not None:
            try:
                same = os.stat(f"{self.meta}/lock").st_ino == os.fstat(self._lock_file.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                raise ExportError(f"this export's lock on {self.root} was broken by another export "
                                  "(--break-lease); stopping without committing more")
            return
        if self._lease is None:
            return
        leases = self._leases()
        if not leases or leases[-1] != self._lease:
            raise ExportError(f"this export's lease on {self.root} went stale or was broken, and "
                              "another export took over; stopping without committing more (run the "
                              "export again)")
        now = time.time()
        if now - self._lease_body["renewed"] >= lease_seconds() / 2 or \
                self._lease_body["expires"] - now < lease_seconds() / 2:
            self._lease_body["renewed"] = now
            self._lease_body["expires"] = now + lease_seconds()
            self._write_lease(self._lease_body)

    # -- files --------------------------------------------------------------------------------
    def write_json(self, path: str, obj) -> None:
        """Write ``path`` whole or not at all: a PUT on object stores, write + rename on disk."""
        data = json.dumps(obj, indent=1, default=str).encode()
        if not self.local:
            self.call("PUT", path, self.fs.pipe_file, path, data)
            return
        self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, path)

    def write_parquet(self, path: str, table: pa.Table, compression: str = "zstd") -> int:
        """Write ``table`` as one Parquet object at ``path`` (retried whole); returns its bytes."""
        def put() -> int:
            with self.fs.open(path, "wb") as f:
                pq.write_table(table, f, compression=compression)
                return f.tell()

        return self.call("PUT", path, put)

    def read_json(self, path: str):
        with self.fs.open(path, "r") as f:
            return json.load(f)

    def commits(self) -> list[dict]:
        """Every published commit record, in commit order (their names sort in run order)."""
        folder = f"{self.meta}/commits"
        self.fs.invalidate_cache(folder)
        try:
            names = self.call("LIST", folder, self.fs.ls, folder, detail=False)
        except FileNotFoundError:
            return []
        paths = sorted(p for p in names if p.endswith(".json"))
        if not paths:
            return []
        blobs = self.call("GET", folder, self.fs.cat, paths)  # concurrent GETs on object stores
        blobs = blobs if isinstance(blobs, dict) else {paths[0]: blobs}
        return [json.loads(blobs[p]) for p in paths]

    def rename(self, src: str, dst: str) -> None:
        """Move ``src`` to ``dst``: an atomic rename on disk; on object stores (no rename, no
        folders) a server-side copy then a delete — the reader sees ``dst`` whole or not at all.
        FileNotFoundError when ``src`` is gone (an earlier, interrupted roll-forward moved it)."""
        if self.local:
            self.fs.makedirs(posixpath.dirname(dst), exist_ok=True)
            self.fs.mv(src, dst)
        else:
            self.call("COPY", dst, self.fs.cp_file, src, dst)
            self.call("DELETE", src, self.fs.rm_file, src)

    def remove(self, path: str) -> None:
        """Delete a superseded part (already gone: fine, a rolled-forward commit did it)."""
        with contextlib.suppress(FileNotFoundError):
            self.call("DELETE", path, self.fs.rm_file, path)

    def recover(self) -> int:
        """Roll forward commits staged by a run that died; drop its unstaged temp files."""
        recovered = 0
        tmp_root = f"{self.meta}/tmp"
        self.fs.invalidate_cache(tmp_root)
        try:
            run_dirs = self.call("LIST", tmp_root, self.fs.ls, tmp_root, detail=False)
        except FileNotFoundError:
            return 0
        for run_dir in run_dirs:
            try:
                names = self.fs.ls(run_dir, detail=False)
            except FileNotFoundError:
                continue
            for path in sorted(p for p in names if p.endswith(".commit.json")):
                commit = self.read_json(path)
                name = posixpath.basename(path)[: -len(".commit.json")]
                _roll_forward(self, run_dir, name, commit, staged=path)
                recovered += 1
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(run_dir, recursive=True)
        return recovered


def lease_seconds() -> float:
    """How long a writer's lease on an object store lasts without renewal (renewed at each
    commit; ``CAPTUREQ_LEASE_SECONDS``, default 600). Read each time a lease is taken, judged or
    renewed: a lease not renewed for this long is stale, whatever time its writer had."""
    text = os.environ.get("CAPTUREQ_LEASE_SECONDS", "")
    try:
        seconds = float(text) if text.strip() else DEFAULT_LEASE_SECONDS
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"CAPTUREQ_LEASE_SECONDS must be a number of seconds > 0, got {text!r}")
    return seconds


def _host() -> str:
    import socket

    return socket.gethostname()


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """A process's state letter and start time (clock ticks since boot), from
    ``/proc/<pid>/stat``; None where there is no ``/proc`` or no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _me() -> dict:
    """This writer as a lock or lease names it: host, pid, and where ``/proc`` tells them, the
    pid namespace and the process's start time (so a reused pid is not taken for the writer)."""
    pid = os.getpid()
    me = {"host": _host(), "pid": pid}
    stat, ns = _proc_stat(pid), _pid_namespace()
    if ns:
        me["pidns"] = ns
    if stat:
        me["started"] = stat[1]
    return me


def _process_gone(holder: dict) -> bool:
    """Whether ``holder`` (a lease's host/pid) ran on this host, in this pid namespace, and its
    process is gone: no such pid, a zombie, or another process under its pid."""
    pid = holder.get("pid")
    if holder.get("host") != _host() or not isinstance(pid, int) or pid <= 0:
        return False
    if holder.get("pidns") and holder["pidns"] != _pid_namespace():
        return False  # another container on this host: its pids are not ours to see
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        pass
    stat = _proc_stat(pid)
    if stat is None:
        return False
    state, started = stat
    return state in ("Z", "X") or (isinstance(holder.get("started"), int) and holder["started"] != started)


def lease_gone(lease: dict) -> str | None:
    """Why ``lease`` no longer holds — released, expired, not renewed for the current lease time
    (:func:`lease_seconds`), or its writer ran on this host and its process is gone — or None
    while it holds."""
    now = time.time()
    if lease.get("released"):
        return "released"
    if lease.get("expires", 0) <= now:
        return f"it expired {now - lease.get('expires', 0):.0f}s ago"
    renewed = lease.get("renewed", lease.get("acquired"))
    if not isinstance(renewed, (int, float)) or now - renewed >= lease_seconds():
        age = f"{now - renewed:.0f}s" if isinstance(renewed, (int, float)) else "an unknown time"
        return f"it was last renewed {age} ago, older than CAPTUREQ_LEASE_SECONDS ({lease_seconds():g}s)"
    if _process_gone(lease):
        return "its process is gone"
    return None


def _lock_holder(lock) -> dict:
    """Who holds a local lock file, as its holder wrote it (a file object or a path)."""
    try:
        if isinstance(lock, str):
            with open(lock) as f:
                text = f.read()
        else:
            lock.seek(0)
            text = lock.read()
        holder = json.loads(text)
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def released_on_sigterm():
    """Inside, SIGTERM ends the process through ``SystemExit`` (exit status 143), so the
    ``finally`` blocks that release the writer's lock run; only in the main thread."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _roll_forward(out: _Output, run_dir: str, name: str, record: dict, staged: str) -> None:
    """Make a staged commit true: parts into place, superseded parts deleted, record published.
    Every step may already be done (a crash mid-way): each is skipped then, so this can run any
    number of times and ends in the same state."""
    for part in record["parts"]:
        with contextlib.suppress(FileNotFoundError):  # already in place
            out.rename(f"{run_dir}/{part['tmp']}", f"{out.root}/{part['path']}")
    for path in record.get("removes", []):
        out.remove(f"{out.root}/{path}")
    out.rename(staged, f"{out.meta}/commits/{name}.json")


def _write_parts(out: _Output, run_id: str, seq: int, tables: dict[str, list[tuple[str, pa.Table]]],
                compression: str = "zstd") -> list[dict]:
    run_dir = f"{out.meta}/tmp/{run_id}"
    out.fs.makedirs(run_dir, exist_ok=True)
    parts = []
    n = 0
    for table_name, groups in tables.items():
        for partition, rows in groups:
            name = f"part-{run_id}-{seq:05d}-{n:03d}.parquet"
            n += 1
            rel = f"{table_name}/{partition}/{name}" if partition else f"{table_name}/{name}"
            tmp = f"{table_name}-{name}"
            rows = file_table(partition, rows)
            nbytes = out.write_parquet(f"{run_dir}/{tmp}", rows, compression)
            part = {"table": table_name, "path": rel, "tmp": tmp, "rows": rows.num_rows,
                    "bytes": nbytes, "columns": {f.name: str(f.type) for f in rows.schema}}
            narrow = (rows.schema.metadata or {}).get(b"captureq.types")
            if narrow is not None:
                part["types"] = json.loads(narrow)
            parts.append(part)
    return parts


def _commit(out: _Output, run_id: str, seq: int, parts: list[dict], sources: list[dict], kind: str,
            removes: list[str] = (), unreadable: list[dict] = ()) -> dict:
    """Stage the commit record, then roll it forward; returns the record."""
    out.check_lease()
    run_dir = f"{out.meta}/tmp/{run_id}"
    record = {"version": FORMAT_VERSION, "run": run_id, "seq": seq, "kind": kind, "time": time.time(),
              "sources": sources, "parts": parts, "removes": list(removes)}
    if unreadable:
        record["unreadable"] = list(unreadable)
    name = f"{run_id}-{seq:05d}"
    staged = f"{run_dir}/{name}.commit.json"
    out.write_json(staged, record)
    _roll_forward(out, run_dir, name, record, staged)
    return record


# -- what is exported: the commit log folded into live parts and source fingerprints -----------
def live_parts(commits: list[dict]) -> dict[str, dict]:
    """Part path → its part entry, for the parts no later commit removed (what readers see)."""
    return CommitLog(commits).parts


def _file_key(rel: str) -> str:
    """The ``capture_id`` prefix of a file's rows (see ``parse._row_ids``)."""
    return hashlib.sha1(rel.encode()).hexdigest()[:16]


def _rows_of(table: pa.Table, rels: list[str], urls: list[str]) -> pa.Array:
    """Mask of the rows of ``table`` that came from the files ``rels`` (vectorized): by the
    ``capture_id`` / ``label_id`` prefix, else by ``source_file``."""
    mask = pa.array(np.zeros(table.num_rows, dtype=bool))
    keys = pa.array([_file_key(r) for r in rels], pa.string())
    for col in ("capture_id", "label_id"):
        if col in table.column_names:
            prefix = pc.utf8_slice_codeunits(table.column(col), 0, 16)
            mask = pc.or_(mask, pc.fill_null(pc.is_in(prefix, value_set=keys), False))
    if "source_file" in table.column_names and urls:
        hit = pc.is_in(table.column("source_file"), value_set=pa.array(urls, pa.string()))
        mask = pc.or_(mask, pc.fill_null(hit, False))
    return mask


def _supersede(out: _Output, state: CommitLog, run_id: str, seq: int, kind: str,
               files: list[CaptureFile], failed: list[CaptureFile] = ()) -> tuple[list[dict], list[str]]:
    """For source files exported before and now exported again: the live parts holding their
    earlier rows are rewritten without them (into this run's temp folder) and listed as
    removed, so the commit that adds the new rows also swaps out the old ones. Files with a
    loss record (``file`` quarantine rows of an earlier failed read) that are now read, or
    failed again (``failed``), lose those rows the same way: a loss record lasts as long as
    the loss, and there is one per file."""
    keys = {(kind, f.rel) for f in files if state.status(kind, f) == "changed"}
    healed = {(kind, f.rel) for f in [*files, *failed] if (kind, f.rel) in state.lost}
    if not keys and not healed:
        return [], []
    rels = [rel for _, rel in keys]
    urls = sorted({state.sources[k].get("url") for k in keys} - {None}
                  | {f.url for f in files if (kind, f.rel) in keys})
    lost_urls = sorted({state.lost[k] for k in healed}
                       | {f.url for f in [*files, *failed] if (kind, f.rel) in healed})
    keys |= healed
    replacements, removes = [], []
    for i, path in enumerate(sorted(state.holding(keys))):
        entry = state.parts[path]
        table = pq.read_table(f"{out.root}/{path}", filesystem=out.fs)
        drop = _rows_of(table, rels, urls) if rels else pa.array(np.zeros(table.num_rows, dtype=bool))
        if lost_urls and entry["table"] == "quarantine":
            file_rows = pc.and_(pc.equal(table.column("stage"), "file"),
                                pc.is_in(table.column("source_file"), value_set=pa.array(lost_urls, pa.string())))
            drop = pc.or_(drop, pc.fill_null(file_rows, False))
        dropped = pc.sum(drop).as_py() or 0
        remaining = state.part_sources[path] - keys
        if not dropped:
            continue  # the part never held rows of these files (its source list is per commit)
        removes.append(path)
        if dropped == table.num_rows:
            continue
        folder, base = posixpath.split(path)
        kept = file_table(posixpath.relpath(folder, entry["table"]), table.filter(pc.invert(drop)))
        name = f"part-{run_id}-{seq:05d}-r{i:03d}.parquet"
        tmp = f"{entry['table']}-{name}"
        nbytes = out.write_parquet(f"{out.meta}/tmp/{run_id}/{tmp}", kept)
        replacements.append({"table": entry["table"], "path": f"{folder}/{name}", "tmp": tmp,
                             "rows": kept.num_rows, "bytes": nbytes, "columns": {c.name: str(c.type) for c in kept.schema},
                             "sources": sorted(rel for _, rel in remaining), "replaces": path})
    return replacements, removes


def widen_parts(out: _Output, state: CommitLog, run_id: str, seq: int, registry: Registry,
                endpoints: set) -> dict | None:
    """Rewrite the live ``inputs``/``outputs`` parts of ``endpoints`` whose columns are stored
    with a narrower type than their schema record now has (a later batch widened it), in one
    commit of their own: every part of an endpoint then has the record's types, so a reader of
    the folder needs no options, and no value changes meaning (a number that becomes text is
    its canonical text). Each part keeps its own narrowest types (``types``). Checked against
    the log, not remembered: a run that stopped between widening a record and rewriting its
    parts is completed by the next one. Returns the commit record, or None when none is stale."""
    from .decode.unify import widen
    from .registry import entry_types

    replacements, removes = [], []
    tmp_dir = f"{out.meta}/tmp/{run_id}"
    for i, (path, entry) in enumerate(sorted(state.parts.items())):
        endpoint = endpoint_of(path)
        record = registry.entries.get((entry["table"], endpoint)) if endpoint in endpoints else None
        if record is None:
            continue
        types = entry_types(record)
        stale = [c for c, t in entry.get("columns", {}).items() if c in types and str(types[c]) != t]
        if not stale:
            continue
        table = pq.read_table(f"{out.root}/{path}", filesystem=out.fs)
        if not replacements:
            out.fs.makedirs(tmp_dir, exist_ok=True)
        for c in stale:
            table = table.set_column(table.column_names.index(c), c, widen(table.column(c), types[c]))
        folder = posixpath.dirname(path)
        name = f"part-{run_id}-{seq:05d}-w{i:03d}.parquet"
        tmp = f"{entry['table']}-{name}"
        nbytes = out.write_parquet(f"{tmp_dir}/{tmp}", table)
        part = {"table": entry["table"], "path": f"{folder}/{name}", "tmp": tmp, "rows": table.num_rows,
                "bytes": nbytes, "columns": {f.name: str(f.type) for f in table.schema},
                "sources": sorted(rel for _, rel in state.part_sources.get(path, ())), "replaces": path}
        if "types" in entry:
            part["types"] = entry["types"]
        replacements.append(part)
        removes.append(path)
    if not replacements:
        return None
    with state.lock:
        record = _commit(out, run_id, seq, replacements, [], "captures", removes)
        state.apply(record)
    return record


def commit_files(target: _Output, state: CommitLog, run_id: str, seq: int, parts: list[dict],
                 files: list[CaptureFile], kind: str, windows: dict[str, tuple] | None = None,
                 failed: list[CaptureFile] = ()) -> dict:
    """Commit the parts written for ``files`` (the ones read); for files changed since they were
    exported, the earlier rows are replaced in the same commit. ``windows``: ``rel`` → the
    windows a file read only in part is now exported for (its source entry's ``window``).
    ``failed``: the files of the batch that could not be read; the commit records them
    (``unreadable``) with its parts, which hold their ``file`` quarantine rows, so that those
    rows are removed once the file is read (:func:`_supersede`). Returns the commit record."""
    sources = [_source_entry(f, (windows or {}).get(f.rel)) for f in files]
    lost = [{"rel": f.rel, "url": f.url} for f in failed]
    if any(state.status(kind, f) == "changed" for f in files) \
            or any((kind, f.rel) in state.lost for f in [*files, *failed]):
        with state.lock:  # rewrites of one part must not interleave
            extra, removes = _supersede(target, state, run_id, seq, kind, files, failed)
            record = _commit(target, run_id, seq, parts + extra, sources, kind, removes, lost)
            state.apply(record)
        return record
    record = _commit(target, run_id, seq, parts, sources, kind, unreadable=lost)
    with state.lock:
        state.apply(record)
    return record


def _source_entry(f: CaptureFile, windows: tuple | None = None) -> dict:
    entry = {"rel": f.rel, "size": f.size, "version": f.version, "url": _redact(f.url),
             "hour": f.hour.isoformat() if f.hour else None}
    if windows:  # exported for these windows only: lines outside them are still to export
        entry["window"] = [window.to_json(s, e) for s, e in windows]
    return entry


def start_run(target: _Output, out: str) -> tuple[ExportSummary, CommitLog]:
    """Begin a run on a locked output: a new run id (sorting after every earlier commit),
    commits a dead run staged rolled forward, and the folded commit log."""
    summary = ExportSummary(out=out, run_id="", rows=dict.fromkeys(schema.TABLES, 0))
    summary.broken_lease = target.broken
    summary.recovered_commits = target.recover()
    commits = target.commits()
    summary.run_id = _new_run_id(commits)
    return summary, CommitLog(commits)


def _new_run_id(commits: list[dict]) -> str:
    now = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)
    if commits:  # a clock that went back (or another machine's) must not reorder the commit log
        with contextlib.suppress(ValueError):
            last = datetime.strptime(str(commits[-1]["run"])[:15], "%Y%m%dT%H%M%S")
            now = max(now, last + timedelta(seconds=1))
    return f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


Spec = tuple  # (start, end, exclude, covered): the arguments of run_captures for a file group


def capture_work(tree: CaptureTree, state: CommitLog, files) -> list[tuple[Spec, list[CaptureFile]]]:
    """The capture files an export of ``tree``'s window ``W`` still has to read, grouped by how
    to read them (``start``, ``end``, ``exclude``, ``covered`` for
    :func:`captureq.pipeline.run_captures`), per :meth:`CommitLog.status`:

    * ``new``: the rows in ``W``;
    * ``partial`` (unchanged, exported for windows ``E`` not holding ``W``): the rows in ``W``
      outside ``E`` (those are in the export already);
    * ``changed``: its earlier rows are replaced, so it is read for ``E ∪ W`` — whole when it
      was exported whole before or ``W`` is unbounded;
    * ``done``: skipped.
    """
    w = tree.window
    span = (w.start, w.end)
    groups: dict[Spec, list] = {}
    for f in files:
        status = state.status("captures", f, span)
        if status == "done":
            continue
        earlier = state.windows("captures", f)
        if status == "new":
            spec = (*span, (), None)
        elif status == "partial":
            spec = (*span, earlier, None)
        elif earlier is None or span == (None, None):  # changed, exported whole before
            spec = (None, None, (), None)
        else:  # changed, exported for windows: read again for all of them and W
            cover = window.union((*earlier, span))
            spec = (None, None, window.complement(cover), cover)
        groups.setdefault(spec, []).append(f)
    return list(groups.items())


def coverage(spec: Spec) -> tuple:
    """The windows a file read by ``spec`` is exported for once committed (its earlier windows,
    ``exclude``, and this read's)."""
    start, end, exclude, covered = spec
    return window.union(((start, end), *exclude)) if covered is None else tuple(covered)


def _typed_records(registry: Registry, result, run_id: str) -> tuple[dict, pa.Table]:
    """The batch's ``inputs``/``outputs`` parts with each endpoint's recorded schema
    (:mod:`captureq.registry`), and its quarantine with the values that did not fit."""
    return conform_batch(registry, result, lambda t: _split(t, "inference_time", True), run_id)


def _unpartitioned(table: pa.Table) -> list[tuple[str, pa.Table]]:
    return [("", table)] if table.num_rows else []


def _commit_batch(target: _Output, state: CommitLog, summary: ExportSummary, seq: int,
                  groups: dict[str, list[tuple[str, pa.Table]]], result, kind: str,
                  spec: Spec | None = None, compression: str = "zstd") -> None:
    """Write one batch's parts and commit them with the source files they came from."""
    parts = _write_parts(target, summary.run_id, seq, groups, compression)
    files = _read_whole(result.files, result.failed_files)
    summary.files_changed += sum(state.status(kind, f) == "changed" for f in files)
    windows = _partial_windows(files, getattr(result, "partial", ()), spec)
    record = commit_files(target, state, summary.run_id, seq, parts, files, kind, windows,
                          result.failed_files)
    for p in record["parts"]:
        if "replaces" not in p:
            summary.rows[p["table"]] += p["rows"]
    summary.parts_written += len(record["parts"])


def _read_whole(files, failed) -> list[CaptureFile]:
    """The files of a batch that were read (not failed): whole, or for the batch's windows."""
    bad = {f.rel for f in failed}
    return [f for f in files if f.rel not in bad]


def _partial_windows(files, partial_urls, spec: Spec | None) -> dict[str, tuple]:
    """``rel`` → the windows it is exported for, for the files with lines left outside them."""
    if spec is None or not partial_urls:
        return {}
    cover = coverage(spec)
    return {f.rel: cover for f in files if f.url in partial_urls}


@dataclass
class ExportPlan:
    """What an export of a tree into ``out`` would do (``captureq export --dry-run``)."""

    new: list[str]
    changed: list[str]
    done: int
    label_new: list[str] = field(default_factory=list)
    label_changed: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)  # exported for other windows: rows left


def plan(tree: CaptureTree, out: str, *, out_storage_options: dict | None = None) -> ExportPlan:
    """The source files an export would read: new ones, ones changed since they were exported
    (another size, ETag or mtime), and ones exported only for time windows that do not hold
    the tree's window (``partial``). Reads the commit log only; writes nothing.

    >>> import captureq, captureq.export as ex                 # doctest: +SKIP
    >>> ex.plan(captureq.open("capture"), "parquet").changed   # doctest: +SKIP
    ['ep/AllTraffic/2026/01/01/00/a.jsonl']
    """
    so = destination_options(tree, out, out_storage_options)
    state = CommitLog(_Output(out, so).commits())
    result = ExportPlan([], [], 0)
    for kind, scan in (("captures", tree.scan()), ("labels", tree.scan_labels())):
        for f in scan.files if scan is not None else []:
            status = state.status(kind, f, (tree.window.start, tree.window.end))
            if status == "done":
                result.done += 1
            elif status == "partial":
                result.partial.append(f.rel)
            elif kind == "captures":
                (result.new if status == "new" else result.changed).append(f.rel)
            else:
                (result.label_new if status == "new" else result.label_changed).append(f.rel)
    return result


def destination_options(tree: CaptureTree, out: str, out_storage_options: dict | None) -> dict | None:
    """The destination's storage options: its own, else the source's when both URIs use the
    same protocol (an S3 → S3 export needs the credentials once), else none."""
    if out_storage_options is not None:
        return out_storage_options
    if get_protocol(out) == get_protocol(tree.uri):
        return tree.storage_options
    return None


def refuse_inside_source(tree: CaptureTree, target: _Output) -> None:
    """captureq never writes into a tree it reads: a destination inside (or equal to) the
    capture or labels tree, on the same filesystem, is a ConfigError."""
    out = _normalized(target.fs, target.root)
    for uri, so in ((tree.uri, tree.storage_options),
                    (tree.labels_uri, tree.label_storage_options or tree.storage_options)):
        if not uri or get_protocol(uri) not in _protocols(target.fs):
            continue  # another filesystem
        try:
            fs, path = filesystem(uri, so)
        except (ValueError, ImportError):
            continue
        if type(fs) is not type(target.fs):
            continue
        src = _normalized(fs, re.split(r"[*?\[]", path, maxsplit=1)[0] if re.search(r"[*?\[]", path) else path)
        if out == src or out.startswith(src.rstrip("/") + "/"):
            raise ConfigError(
                f"the export destination {_redact(target.fs.unstrip_protocol(target.root))} is inside the "
                f"source tree {_redact(uri)}; captureq never writes into a tree it reads — choose a "
                "folder outside it")


def _protocols(fs) -> tuple[str, ...]:
    return fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)


def _is_local(fs) -> bool:
    return "file" in _protocols(fs)


def _normalized(fs, path: str) -> str:
    if _is_local(fs):
        return os.path.realpath(path)
    return posixpath.normpath("/" + path)


def export(tree: CaptureTree, out: str, *, out_storage_options: dict | None = None,
           storage_options: dict | None = None, progress=None, by_hour: bool = True,
           compression: str = "zstd", compact_after: int | None = None,
           break_lease: bool = False) -> ExportSummary:
    """Export ``tree`` (its window) to Parquet under ``out``; only new and changed source files
    are read.

    ``out_storage_options`` are the destination's fsspec options; by default the source's when
    both URIs use the same protocol (``storage_options`` is an older name for them).
    ``progress`` is called with each committed batch's file count (for progress bars).
    ``by_hour=False`` writes one part per table, endpoint and batch instead of one per hour
    partition (:mod:`captureq.cache`'s layout: far fewer files to write and to open);
    ``compression`` is the parts' Parquet codec. Files that could not be read are not marked done, so the next run tries them again.
    ``compact_after``: once the commit log holds more records than this, the run ends by folding
    them into one ``snapshot`` record (:func:`compact`; the cache's log would otherwise only grow).
    ``break_lease`` takes the output's lock or lease from a writer that still holds it (a hung
    or lost export; that writer stops before its next commit): ``summary.broken_lease`` says
    whose it was, as it does when a dead or stale writer's lease is taken over.
    Batches hold one endpoint each: an unexpected error on one endpoint (a bug, a value no
    writer can store) stops that endpoint only — its files are not marked done, the others are
    committed — and is returned in ``summary.failed`` (endpoint → ``"Type: message"``).

    >>> import captureq                                                       # doctest: +SKIP
    >>> so = {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}     # doctest: +SKIP
    >>> captureq.open("s3://bucket/capture", storage_options=so).export("s3://bucket/export")
    ... # doctest: +SKIP
    """
    started = time.monotonic()
    given = out_storage_options if out_storage_options is not None else storage_options
    warn_unused(out, given, "destination")
    so = destination_options(tree, out, given)
    target = _Output(out, so)
    refuse_inside_source(tree, target)
    tree.scan_labels()  # a wrong ground-truth tree fails before any capture is committed
    with released_on_sigterm():
        return _export(tree, target, out, started, progress, by_hour, compression, compact_after,
                       break_lease)


def _export(tree: CaptureTree, target: _Output, out: str, started: float, progress, by_hour: bool,
            compression: str, compact_after: int | None, break_lease: bool) -> ExportSummary:
    target.lock(break_lease)
    try:
        summary, state = start_run(target, out)
        seq = 0

        scan = tree.scan()
        fs = tree.fs
        work = capture_work(tree, state, scan.files)
        summary.files_skipped = len(scan.files) - sum(len(files) for _, files in work)
        from .decode.unify import declared_types

        registry = Registry(target, declared={side: declared_types(tree.options, side)
                                              for side in ("input", "output")})
        for endpoint, endpoint_work in _by_endpoint(work):
            try:
                for spec, todo in endpoint_work:
                    start, end, exclude, covered = spec
                    for result in run_captures(fs, todo, tree.options, batch_bytes=tree.batch_bytes,
                                               start=start, end=end, exclude=exclude, covered=covered):
                        records, quarantine = conform_batch(
                            registry, result, lambda t: _split(t, "inference_time", True, by_hour),
                            summary.run_id)
                        if widen_parts(target, state, summary.run_id, seq, registry,
                                       {endpoint}) is not None:
                            seq += 1
                        groups = {
                            "captures": _split(result.captures, "inference_time", True, by_hour),
                            **records,
                            "quarantine": _unpartitioned(quarantine),
                        }
                        if result.labels.num_rows:  # ground truth inside merged capture records
                            groups["labels"] = _split(result.labels, "label_hour", False, by_hour)
                        _commit_batch(target, state, summary, seq, groups, result, "captures", spec,
                                      compression)
                        seq += 1
                        summary.files_exported += len(result.files)  # failed files are not here
                        summary.counts.add(result.counts)
                        if progress:
                            progress(len(result.files) + len(result.failed_files))
            except (CaptureqError, OSError):
                raise  # the lock or lease is lost, or the storage fails: no endpoint may commit
            except Exception as exc:  # noqa: BLE001 - this endpoint's files wait for the next run
                summary.failed[endpoint or ""] = failure_reason(exc)

        label_scan = tree.scan_labels()
        if label_scan is not None:
            lfs = tree.label_fs
            todo = [f for f in label_scan.files if state.status("labels", f) != "done"]
            try:
                for result in run_labels(lfs, todo, batch_bytes=tree.batch_bytes):
                    groups = {
                        "labels": _split(result.labels, "label_hour", False, by_hour),
                        "quarantine": _unpartitioned(result.quarantine),
                    }
                    _commit_batch(target, state, summary, seq, groups, result, "labels",
                                  compression=compression)
                    seq += 1
                    summary.label_files_exported += len(result.files)
                    summary.label_counts.add(result.counts)
            except (CaptureqError, OSError):
                raise
            except Exception as exc:  # noqa: BLE001
                summary.failed[LABELS_FAILED] = failure_reason(exc)

        summary.seconds = time.monotonic() - started
        commits = _write_manifest(target, tree, summary)
        if compact_after is not None and commits > compact_after:
            compact(target, summary.run_id, seq)
        with contextlib.suppress(FileNotFoundError):
            target.fs.rm(f"{target.meta}/tmp/{summary.run_id}", recursive=True)
        if summary.unreadable:
            from .read import unreadable_summary

            if getattr(tree, "strict", False):
                raise UnreadableError(unreadable_summary(summary.unreadable, strict=True) +
                                      " (what could be read is exported; the next run tries the rest)",
                                      summary.unreadable)
            import warnings

            warnings.warn(unreadable_summary(summary.unreadable,
                                             left="not exported (the next run tries again)"),
                          UnreadableWarning, stacklevel=3)
        return summary
    finally:
        target.unlock()


def _write_manifest(target: _Output, tree: CaptureTree, summary: ExportSummary) -> None:
    target.check_lease()
    commits = target.commits()
    state = CommitLog(commits)  # the log as published (every commit of this run is in it)
    tables: dict[str, dict] = {}
    parts: dict[str, list[str]] = {}
    for path, p in state.parts.items():
        t = tables.setdefault(p["table"], {"rows": 0, "parts": 0})
        t["rows"] += p["rows"]
        t["parts"] += 1
        parts.setdefault(p["table"], []).append(path)
    schemas = {name: _dataset_schema(list(state.parts.values()), name) for name in tables}
    manifest = {
        "format": "captureq-export",
        "version": FORMAT_VERSION,
        "source": _redact(tree.uri),
        "labels_source": _redact(tree.labels_uri) if tree.labels_uri else None,
        "source_files": sum(k == "captures" for k, _ in state.sources),
        "label_files": sum(k == "labels" for k, _ in state.sources),
        "commits": len(commits),
        "tables": tables,
        "columns": schemas,
        "parts": {name: sorted(paths) for name, paths in parts.items()},
        "last_run": {**{k: _redact(v) if k == "out" else v for k, v in asdict(summary).items()
                        if k not in ("counts", "label_counts")},
                     "unreadable": [{"path": _redact(u.path), "reason": u.reason} for u in summary.unreadable]},
    }
    target.write_json(f"{target.meta}/manifest.json", manifest)
    return len(commits)


def compact(target: _Output, run_id: str, seq: int) -> str:
    """Fold the commit log into one ``snapshot`` record, then delete the records it folds.

    The snapshot holds the live parts (each with its ``sources``, ``[kind, rel]`` pairs) and every
    source's last entry (with its ``kind``); folding a log, a snapshot replaces whatever came
    before it. It is published (atomically) before the older records are deleted, and its name
    sorts after theirs: a reader that lists the log at any moment folds to the same state, or —
    when a record it listed is gone by the time it reads it — sees an incomplete log, which
    readers must treat as unreadable (the cache then reads the tree). Call it holding the
    writer's lock. Returns the snapshot's path.
    """
    target.check_lease()
    folder = f"{target.meta}/commits"
    target.fs.invalidate_cache(folder)
    paths = sorted(p for p in target.fs.ls(folder, detail=False) if p.endswith(".json"))
    state = CommitLog(target.commits())
    name = f"{run_id}-{seq:05d}"
    last = posixpath.basename(paths[-1])[: -len(".json")] if paths else ""
    if last >= name:  # sort after every record folded, whatever their names
        name = f"{last}-{SNAPSHOT}"
    record = {
        "version": FORMAT_VERSION, "run": run_id, "seq": seq, "kind": SNAPSHOT, "time": time.time(),
        "parts": [{**p, "sources": sorted([k, r] for k, r in state.part_sources.get(path, ()))}
                  for path, p in sorted(state.parts.items())],
        "sources": [{"kind": k, **entry} for (k, _), entry in sorted(state.sources.items())],
        "unreadable": [{"kind": k, "rel": r, "url": u} for (k, r), u in sorted(state.lost.items())],
        "removes": [],
    }
    snapshot = f"{folder}/{name}.json"
    target.write_json(snapshot, record)
    for path in paths:
        if posixpath.basename(path) < posixpath.basename(snapshot):
            target.remove(path)
    return snapshot


def _dataset_schema(parts: list[dict], table: str) -> dict[str, str]:
    """Column → Arrow type of the exported ``table`` (union over its parts, first type wins)."""
    cols: dict[str, str] = {}
    for p in parts:
        if p["table"] == table:
            for name, typ in p.get("columns", {}).items():
                cols.setdefault(name, typ)
    return cols


def _redact(uri: str | None) -> str | None:
    """Drop any ``user:password@`` part of a URI before it is written anywhere.

    A password may hold ``/`` (AWS secrets do), so any ``…:…@`` right after the scheme goes.
    """
    if uri is None:
        return None
    m = re.match(r"^([a-zA-Z][\w+.-]*://)([^@]*)@", uri)
    if m and ("/" not in m.group(2) or ":" in m.group(2)):
        return m.group(1) + uri[m.end():]
    return uri


def read_manifest(out: str, storage_options: dict | None = None) -> dict:
    """The manifest of an export folder."""
    fs, path = filesystem(out, storage_options)
    with fs.open(f"{path.rstrip('/')}/{META}/manifest.json") as f:
        return json.load(f)


def shell_sql(out: str, storage_options: dict | None = None) -> str:
    """SQL that defines every view over the export at ``out`` (for the ``duckdb`` shell).

    A local export is read by its absolute path; any other URL is named as it is (DuckDB reads
    ``s3://`` with its httpfs extension and the credentials configured in the shell)."""
    from . import views

    manifest = read_manifest(out, storage_options)
    fs, path = filesystem(out, storage_options)
    root = os.path.abspath(path) if _is_local(fs) else fs.unstrip_protocol(path.rstrip("/"))
    present = {name: name in manifest["tables"] for name in schema.TABLES}
    schemas = {
        "captures": schema.CAPTURES,
        "labels": schema.LABELS,
        "quarantine": schema.QUARANTINE,
    }
    for name in ("inputs", "outputs"):
        cols = manifest["columns"].get(name) or {}
        fields = list(schema.RECORD_KEYS)
        for col, typ in cols.items():
            if col not in schema.RECORD_KEY_NAMES:
                fields.append(pa.field(col, arrow_type(typ)))
        schemas[name] = pa.schema(fields)
    output_cols = [c for c in schemas["outputs"].names if c not in schema.RECORD_KEY_NAMES]
    input_cols = [c for c in schemas["inputs"].names if c not in schema.RECORD_KEY_NAMES]
    from .registry import Registry

    registry = Registry(_Output(out, storage_options))
    decisions = {"input": registry.decision("inputs"), "output": registry.decision("outputs")}
    return (views.parquet_sources_sql(root, schemas, present) + views.render_views(output_cols, input_cols)
            + views.endpoint_views_sql(decisions, columns={"inputs": input_cols, "outputs": output_cols}))


