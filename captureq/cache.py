"""The warm path: decoded tables kept as an incremental Parquet export, reused by later queries.

A tree's cache is the export ``captureq sql`` builds (:mod:`captureq.export`) in
``$CAPTUREQ_CACHE/<key>`` (default ``~/.cache/captureq``), keyed by the tree and labels URIs. A
query whose window's files are all committed there, each with the size (and mtime/ETag, when the
listing gives one) it has now, reads the Parquet parts of those commits instead of the JSON
Lines; otherwise it runs in memory as without a cache, and the cache is refreshed off the
critical path (a background thread, after the result is handed back).

* Per-file invalidation: a file whose size or mtime/ETag changed is not a hit; the refresh
  re-exports it and its commit replaces the file's earlier rows (the export's own rule).
* Two processes at once: a reader only opens parts named by committed records (renamed into
  place before their commit record), and the export's lock keeps writers one at a time; a
  refresh that finds the lock held leaves the work to the process holding it.
* Bounded: after a refresh, whole tree caches are evicted least recently used first until the
  cache root holds at most ``max_bytes`` (``CAPTUREQ_CACHE_MAX_BYTES``, default 2 GiB); a
  cache whose lock is held is not evicted.

>>> import captureq
>>> cq = captureq.open("tests/data/corpus")                     # doctest: +SKIP
>>> cq.sql("select count(*) from inputs")                        # doctest: +SKIP
>>> captureq.open("tests/data/corpus").sql("select count(*) from inputs")  # warm  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from . import schema, views
from .errors import CaptureqError

if TYPE_CHECKING:
    import duckdb

    from .plan import ScanPlan

DEFAULT_MAX_BYTES = 2 << 30
META = "_captureq"
_USED = "last_used"


def cache_root() -> Path:
    """Where tree caches live: ``$CAPTUREQ_CACHE`` or ``~/.cache/captureq``."""
    return Path(os.environ.get("CAPTUREQ_CACHE", Path.home() / ".cache" / "captureq"))


def _layout() -> str:
    """What the cached tables look like: a cache written with other schemas is another cache."""
    text = "\0".join(str(s) for s in (schema.CAPTURES, schema.RECORD_KEYS, schema.LABELS, schema.QUARANTINE))
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def cache_dir(uri: str, labels: str | None) -> Path:
    """The cache folder of one tree (and labels tree), for this version of the tables' schemas."""
    key = hashlib.sha1(f"{uri}\0{labels or ''}".encode()).hexdigest()[:16]
    return cache_root() / f"{key}-{_layout()}"


def default_enabled() -> bool:
    """Whether queries use the cache unless told (``CAPTUREQ_NO_CACHE=1`` turns it off)."""
    return os.environ.get("CAPTUREQ_NO_CACHE", "").lower() not in ("1", "true", "yes")


def max_bytes_default() -> int:
    env = os.environ.get("CAPTUREQ_CACHE_MAX_BYTES")
    return int(env) if env else DEFAULT_MAX_BYTES


def _commits(root: Path) -> list[dict]:
    folder = root / META / "commits"
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        with contextlib.suppress(OSError, ValueError):
            out.append(json.loads(path.read_text()))
    return out


@dataclass
class Hit:
    """The committed parts that hold a window's rows, and whether rows of other files ride along."""

    root: Path
    parts: dict[str, list[str]]
    columns: dict[str, dict[str, str]]
    file_keys: list[str] | None  # capture_id / label_id prefixes to keep (None: every row belongs)
    file_urls: list[str] | None = None  # source files to keep (quarantine rows without an id)


def lookup(plan: ScanPlan) -> Hit | None:
    """The cache hit for ``plan``'s window, or None (missing, partial or stale).

    The commit log is folded as the export folds it (:class:`captureq.export._State`): live
    parts only (a re-exported file's earlier parts are removed by the commit that replaced
    them), and a file is fresh when its size and ETag/mtime are those it was exported from.
    """
    from .export import _State
    from .parse import file_key

    root = cache_dir(plan.uri, plan.labels_uri)
    commits = _commits(root)
    if not commits:
        return None
    state = _State(commits)
    wanted = {("captures", f.rel): f for f in plan.scan().files}
    label_scan = plan.scan_labels()
    if label_scan is not None:
        wanted.update({("labels", f.rel): f for f in label_scan.files})
    span = (plan.window.start, plan.window.end)
    for key, f in wanted.items():  # fresh, and exported for (at least) this window
        if state.status(key[0], f, span if key[0] == "captures" else (None, None)) != "done":
            return None
    parts: dict[str, list[str]] = {name: [] for name in schema.TABLES}
    columns: dict[str, dict[str, str]] = {name: {} for name in schema.TABLES}
    extra = False
    for path, p in sorted(state.parts.items()):
        sources = state.part_sources.get(path, set())
        if not sources & wanted.keys():
            continue
        extra |= not sources <= wanted.keys()
        parts[p["table"]].append(str(root / path))
        for name, typ in p.get("columns", {}).items():
            columns[p["table"]].setdefault(name, typ)
    if not extra:
        return Hit(root, parts, columns, None)
    return Hit(root, parts, columns, [file_key(f.rel) for f in wanted.values()],
               [f.url for f in wanted.values()])


def connect(hit: Hit, plan: ScanPlan | None = None) -> duckdb.DuckDBPyConnection:
    """A connection whose views read the hit's Parquet parts (only those), for ``plan``'s window.

    The parts are registered as Arrow datasets, so the SQL needs no file access of DuckDB's own
    (the caller can lock the connection down). With a time window, exactly the rows with
    ``start ≤ inference_time < end`` are served, as a cold read keeps them
    (:mod:`captureq.window`): quarantine rows and embedded labels follow their capture, and
    ``line`` quarantine rows count in their file's hour.
    """
    import duckdb
    import pyarrow.dataset as ds

    from . import window
    from .export import _arrow_type

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    base = {"captures": schema.CAPTURES, "labels": schema.LABELS, "quarantine": schema.QUARANTINE}
    value_cols: dict[str, list[str]] = {}
    if hit.file_keys is not None:
        con.register("captureq_cache_keys", pa.table({"k": pa.array(hit.file_keys, pa.string())}))
        con.register("captureq_cache_urls", pa.table({"u": pa.array(hit.file_urls, pa.string())}))
    start, end = (plan.window.start, plan.window.end) if plan is not None else (None, None)
    windowed = start is not None or end is not None
    raw = "captureq_cache_raw_"
    for name in schema.TABLES:
        if name in base:
            fields = list(base[name])
        else:
            fields = list(schema.RECORD_KEYS) + [
                pa.field(c, _arrow_type(t)) for c, t in hit.columns[name].items()
                if c not in schema.RECORD_KEY_NAMES
            ]
            value_cols[name] = [f.name for f in fields if f.name not in schema.RECORD_KEY_NAMES]
        src = (raw if windowed else views.SOURCE_PREFIX) + name
        cols = ", ".join(views.quote_ident(f.name) for f in fields)
        if hit.parts[name]:
            dataset = ds.dataset(hit.parts[name], schema=pa.schema(fields), format="parquet")
            con.register(raw + name + "_parts", dataset)
            where = ""
            if hit.file_keys is not None:  # some parts also hold rows of files outside the window
                key = {"labels": "label_id", "quarantine": "coalesce(capture_id, '')"}.get(name, "capture_id")
                where = f" WHERE split_part({key}, ':', 1) IN (SELECT k FROM captureq_cache_keys)"
                if name == "quarantine":
                    where += " OR source_file IN (SELECT u FROM captureq_cache_urls)"
            con.execute(f"CREATE OR REPLACE VIEW {src} AS SELECT {cols} FROM {raw}{name}_parts{where}")
        else:
            nulls = ", ".join(f"CAST(NULL AS {schema.duckdb_type(f.type)}) AS {views.quote_ident(f.name)}"
                              for f in fields)
            con.execute(f"CREATE OR REPLACE VIEW {src} AS SELECT {nulls} WHERE false")
    if windowed:
        _window_views(con, raw, plan, start, end, window)
    con.execute(views.render_views(value_cols["outputs"], value_cols["inputs"]))
    touch(hit.root)
    return con


def _window_views(con, raw: str, plan: ScanPlan, start, end, window) -> None:
    """The source views of a windowed hit: the raw views' rows of ``[start, end)``."""
    conds = []
    if start is not None:
        conds.append(f"inference_time >= TIMESTAMPTZ {views.quote_literal(start.isoformat())}")
    if end is not None:
        conds.append(f"inference_time < TIMESTAMPTZ {views.quote_literal(end.isoformat())}")
    inside = " AND ".join(conds)
    for name in ("captures", "inputs", "outputs"):
        con.execute(f"CREATE OR REPLACE VIEW {views.SOURCE_PREFIX}{name} AS "
                    f"SELECT * FROM {raw}{name} WHERE {inside}")
    # the margin: files whose hour starts outside the window (their 'line' rows are not its own)
    margin = [f.url for f in plan.scan().files if not window.hour_in_window(f.hour, start, end)]
    con.register("captureq_cache_margin", pa.table({"u": pa.array(margin, pa.string())}))
    # captures outside the window: what is keyed by their id leaves with them (the label
    # tree's rows and quarantine are keyed by label ids, which no capture has)
    con.execute(f"CREATE OR REPLACE VIEW captureq_cache_outside AS SELECT capture_id FROM "
                f"{raw}captures WHERE NOT ({inside})")
    con.execute(
        f"CREATE OR REPLACE VIEW {views.SOURCE_PREFIX}quarantine AS SELECT * FROM {raw}quarantine "
        f"AS q WHERE NOT EXISTS (SELECT 1 FROM captureq_cache_outside AS o "
        f"WHERE o.capture_id = q.capture_id) AND NOT (stage = 'line' AND coalesce(source_file IN "
        f"(SELECT u FROM captureq_cache_margin), false))"
    )
    con.execute(  # labels embedded in captures outside the window leave with them
        f"CREATE OR REPLACE VIEW {views.SOURCE_PREFIX}labels AS SELECT * FROM {raw}labels AS l "
        f"WHERE NOT EXISTS (SELECT 1 FROM captureq_cache_outside AS o "
        f"WHERE o.capture_id = l.label_id)"
    )


def touch(root: Path) -> None:
    """Mark a tree cache as used now (for least-recently-used eviction)."""
    with contextlib.suppress(OSError):
        (root / META).mkdir(parents=True, exist_ok=True)
        (root / META / _USED).write_text(str(time.time()))


def _last_used(root: Path) -> float:
    try:
        return (root / META / _USED).stat().st_mtime
    except OSError:
        try:
            return root.stat().st_mtime
        except OSError:
            return 0.0


def _size(root: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(root):
        for n in names:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(dirpath, n))
    return total


def _locked(root: Path) -> bool:
    import fcntl

    lock = root / META / "lock"
    if not lock.exists():
        return False
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def evict(max_bytes: int, keep: Path | None = None) -> list[Path]:
    """Delete whole tree caches, least recently used first, until the root holds ≤ ``max_bytes``.

    ``keep`` (the cache just used) goes last; a cache being written (lock held) is skipped.
    """
    root = cache_root()
    if not root.is_dir():
        return []
    dirs = [d for d in root.iterdir() if d.is_dir()]
    sizes = {d: _size(d) for d in dirs}
    total = sum(sizes.values())
    removed = []
    for d in sorted(dirs, key=lambda d: (d == keep, _last_used(d))):
        if total <= max_bytes:
            break
        if _locked(d):
            continue
        shutil.rmtree(d, ignore_errors=True)
        total -= sizes[d]
        removed.append(d)
    return removed


def refresh(plan: ScanPlan, max_bytes: int | None = None) -> Path | None:
    """Bring ``plan``'s tree cache up to date for its window, then evict down to ``max_bytes``.

    Returns the cache folder, or None when another process holds it (it is refreshing it).
    """
    from .export import export
    from .plan import ScanPlan

    root = cache_dir(plan.uri, plan.labels_uri)
    # the export re-reads new and changed files (size, ETag/mtime) and replaces their old rows
    source = ScanPlan(plan.uri, plan.labels_uri, plan.storage_options, plan.label_storage_options,
                      plan.options, plan.window, plan.batch_bytes)
    source._cache.update({k: plan._cache[k] for k in ("scan", "label_scan") if k in plan._cache})
    try:
        export(source, str(root))
    except CaptureqError:
        return None  # another process is writing this cache
    touch(root)
    evict(max_bytes if max_bytes is not None else max_bytes_default(), keep=root)
    return root


_pending: list[threading.Thread] = []


def refresh_later(plan: ScanPlan, max_bytes: int | None = None) -> threading.Thread:
    """:func:`refresh` on a background thread (the interpreter waits for it at exit)."""

    def run():
        try:
            refresh(plan, max_bytes)
        except Exception as exc:  # a cache that cannot be written is only a slower query
            if os.environ.get("CAPTUREQ_DEBUG"):
                import traceback

                traceback.print_exception(exc)

    t = threading.Thread(target=run, name="captureq-cache", daemon=False)
    t.start()
    _pending.append(t)
    return t


def wait() -> None:
    """Wait for background cache refreshes started by this process."""
    while _pending:
        _pending.pop().join()


# At exit, finish refreshes before concurrent.futures stops taking work (its exit hook, registered
# when captureq.pipeline imported it, runs after this one: threading runs them in reverse order).
import concurrent.futures.thread  # noqa: E402,F401

if hasattr(threading, "_register_atexit"):
    threading._register_atexit(wait)
