"""The warm path: decoded tables kept as an incremental Parquet export, reused by later queries.

A tree's cache is the export ``captureq sql`` builds (:mod:`captureq.export`) in
``$CAPTUREQ_CACHE/<key>`` (default ``~/.cache/captureq``), keyed by the tree and labels URIs. A
query whose window's files are all committed there, each with the size (and mtime/ETag, when the
listing gives one) it has now, reads the Parquet parts of those commits instead of the JSON
Lines; otherwise it runs in memory as without a cache, and the cache is refreshed off the
critical path: by a detached process (:func:`refresh_later`), which neither the caller nor a CLI
about to exit waits for. The parts are one per table, endpoint and batch (not one per hour
partition as ``captureq export`` writes): a 200 k-record tree is tens of files, quick to write
and to open.

* Per-file invalidation: a file whose size or mtime/ETag changed is not a hit; the refresh
  re-exports it and its commit replaces the file's earlier rows (the export's own rule).
* Two processes at once: a reader only opens parts named by committed records (renamed into
  place before their commit record), and the export's lock keeps writers one at a time; a
  fill that finds the lock held waits for its turn, then exports what is still missing.
* A log that does not grow forever: a fill that leaves more than ``COMPACT_AFTER`` commit
  records folds them into one snapshot record (:func:`captureq.export.compact`).
* Bounded: after a refresh, whole tree caches are evicted least recently used first until the
  cache root holds at most ``max_bytes`` (``CAPTUREQ_CACHE_MAX_BYTES``, default 2 GiB); a
  cache whose lock is held is not evicted.

>>> import captureq
>>> cq = captureq.open("tests/data/corpus")
>>> cq.sql("select count(*) from inputs")                        # doctest: +ELLIPSIS
<captureq.Result 1 rows × 1 columns>...
>>> captureq.open("tests/data/corpus").sql("select count(*) from inputs")  # warm  # doctest: +ELLIPSIS
<captureq.Result 1 rows × 1 columns>...
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from . import views
from .errors import ExportError
from .options import DecodeOptions

if TYPE_CHECKING:  # numpy/pyarrow are imported where used: a first query looks the cache up
    import duckdb  # and starts reading before they are loaded
    import pyarrow as pa

    from .plan import ScanPlan

DEFAULT_MAX_BYTES = 2 << 30
META = "_captureq"  # export.META: named here too, so a warm lookup imports no export code
_USED = "last_used"


def cache_root() -> Path:
    """Where tree caches live: ``$CAPTUREQ_CACHE`` or ``~/.cache/captureq``."""
    return Path(os.environ.get("CAPTUREQ_CACHE", Path.home() / ".cache" / "captureq"))


@functools.cache
def _layout() -> str:
    """What the cached tables look like: a cache written with other schemas is another cache.
    The schemas are defined in ``schema.py``, so its text stands for them (hashed without
    importing it: pyarrow is not needed to find a tree's cache folder)."""
    from importlib import resources

    text = resources.files(__package__).joinpath("schema.py").read_bytes()
    return hashlib.sha1(text).hexdigest()[:8]


def cache_dir(uri: str, labels: str | None, options: DecodeOptions | None = None) -> Path:
    """The cache folder of one tree (and labels tree) read with ``options`` (other column names
    or record paths decode other tables), for this version of the tables' schemas."""
    text = f"{uri}\0{labels or ''}"
    if options is not None and options != DecodeOptions():
        text += "\0" + json.dumps(asdict(options), sort_keys=True, default=str)
    key = hashlib.sha1(text.encode()).hexdigest()[:16]
    return cache_root() / f"{key}-{_layout()}"


def default_enabled() -> bool:
    """Whether queries use the cache unless told (``CAPTUREQ_NO_CACHE=1`` turns it off)."""
    return os.environ.get("CAPTUREQ_NO_CACHE", "").lower() not in ("1", "true", "yes")


def max_bytes_default() -> int:
    env = os.environ.get("CAPTUREQ_CACHE_MAX_BYTES")
    return int(env) if env else DEFAULT_MAX_BYTES


def _commits(root: Path) -> list[dict]:
    """The commit log, or [] when it cannot be read whole (a record listed and then gone: a
    fill compacted the log meanwhile — a log missing a record could fold to a wrong state)."""
    folder = root / META / "commits"
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            out.append(json.loads(path.read_text()))
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            continue
    return out


@dataclass
class Hit:
    """The committed parts that hold a window's rows, and whether rows of other files ride along."""

    root: Path
    parts: dict[str, list[str]]
    columns: dict[str, dict[str, str]]
    file_keys: list[str] | None  # capture_id / label_id prefixes to keep (None: every row belongs)
    file_urls: list[str] | None = None  # source files to keep (quarantine rows without an id)
    uniform: set[str] = field(default_factory=set)  # tables whose parts all have every column
    #: the parts' own types per endpoint, joined: ``{"input"|"output": {endpoint: {column: type}}}``
    decisions: dict = field(default_factory=dict)
    stored: dict = field(default_factory=dict)  # part path → column → the type it is stored as


def lookup(plan: ScanPlan) -> Hit | None:
    """The cache hit for ``plan``'s window, or None (missing, partial or stale).

    The commit log is folded as the export folds it (:class:`captureq.commitlog.CommitLog`): live
    parts only (a re-exported file's earlier parts are removed by the commit that replaced
    them), and a file is fresh when its size and ETag/mtime are those it was exported from.
    """
    root = cache_dir(plan.uri, plan.labels_uri, plan.options)
    commits = _commits(root)
    if not commits:
        return None
    from . import schema
    from .commitlog import CommitLog
    from .parse import file_key

    state = CommitLog(commits)
    wanted = {("captures", f.rel): f for f in plan.scan().files}
    label_scan = plan.scan_labels()
    if label_scan is not None:
        wanted.update({("labels", f.rel): f for f in label_scan.files})
    span = (plan.window.start, plan.window.end)
    for key, f in wanted.items():  # fresh, and exported for (at least) this window
        if state.status(key[0], f, span if key[0] == "captures" else (None, None)) != "done":
            return None
    from .commitlog import arrow_type, endpoint_of
    from .decode.unify import union_type

    parts: dict[str, list[str]] = {name: [] for name in schema.TABLES}
    columns: dict[str, dict[str, str]] = {name: {} for name in schema.TABLES}
    own: dict[str, dict] = {"inputs": {}, "outputs": {}}  # table → endpoint → column → type
    stored: dict[str, dict[str, str]] = {}
    common: dict[str, set[str]] = {}
    extra = False
    for path, p in sorted(state.parts.items()):
        sources = state.part_sources.get(path, set())
        if not sources & wanted.keys():
            continue
        extra |= not sources <= wanted.keys()
        full = root / path
        if not _intact(full, p):
            discard(root)
            return None
        parts[p["table"]].append(str(full))
        cols = p.get("columns", {})
        stored[str(full)] = cols
        if p["table"] in ("inputs", "outputs"):
            endpoint = endpoint_of(path)
            mine = own[p["table"]].setdefault(endpoint, {})
            for name, typ in (p.get("types") or cols).items():  # the parts' own types, joined
                t = arrow_type(typ)
                mine[name] = union_type([mine[name], t]) if name in mine else t
            for name in cols:
                columns[p["table"]].setdefault(name, None)
        else:
            for name, typ in cols.items():
                columns[p["table"]].setdefault(name, typ)
        common[p["table"]] = common.get(p["table"], set(cols)) & set(cols)
    for table in ("inputs", "outputs"):  # the union view's type: the join over endpoints
        for name in columns[table]:
            ts = [cols[name] for cols in own[table].values() if name in cols]
            columns[table][name] = str(union_type(ts)) if ts else "null"
    decisions = {"input": own["inputs"], "output": own["outputs"]}
    uniform = {t for t in parts if parts[t] and common.get(t, set()) == set(columns[t])}
    if not extra:
        return Hit(root, parts, columns, None, uniform=uniform, decisions=decisions, stored=stored)
    return Hit(root, parts, columns, [file_key(f.rel) for f in wanted.values()],
               [f.url for f in wanted.values()], uniform=uniform, decisions=decisions, stored=stored)



def _intact(path: Path, part: dict) -> bool:
    """Whether a committed part is still there, with the size it was committed with (a part
    the warm views may open was overwritten, e.g. by a ``COPY … TO`` that named it)."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return False
    return part.get("bytes") is None or size == part["bytes"]


def discard(root: Path) -> None:
    """Drop a tree cache that can no longer be trusted (a part is missing or altered); the next
    fill builds it again. A cache being written (lock held) is left to its writer."""
    if _locked(root):
        return
    trash = root.with_name(f"{root.name}.discarded-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(OSError):
        root.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)


_databases: dict[frozenset, duckdb.DuckDBPyConnection] = {}
_databases_lock = threading.Lock()
_KEEP_DATABASES = 4
_GLOB_CHARS = set("*?[]{}\\")


def _connection(locked: bool, parts: frozenset = frozenset()) -> duckdb.DuckDBPyConnection:
    """A new connection. Locked: a cursor of a locked-down in-memory database that may open
    exactly the files ``parts`` and nothing else (DuckDB's ``allowed_paths``), one per set of
    parts and kept for the next query on them (a new DuckDB database costs 20–30 ms, a cursor
    nothing; each cursor has its own registrations and temporary views). Else a database of its
    own."""
    import duckdb

    from .plan import lock_down

    if not locked:
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        return con
    with _databases_lock:
        db = _databases.pop(parts, None)
        if db is None:
            db = duckdb.connect()
            db.execute("SET GLOBAL TimeZone = 'UTC'")
            if parts:
                db.execute("SET allowed_paths = $paths", {"paths": sorted(parts)})
                db.execute("SET GLOBAL parquet_metadata_cache = true")  # footers read once
            lock_down(db)  # for good: no cursor can turn file access back on
        _databases[parts] = db  # most recently used last
        while len(_databases) > _KEEP_DATABASES:
            _databases.pop(next(iter(_databases)))
        return db.cursor()


def _parquet_source(files: list[str], fields: list[pa.Field], uniform: bool,
                    stored: dict | None = None) -> str | None:
    """A ``read_parquet`` select of ``files`` with ``fields`` (endpoint and variant from the
    parts' ``endpoint=E/variant=V`` folders; each cast to its declared type;
    ``uniform``: every file has every field, else missing ones read as null), or None when a
    type has no DuckDB name (the parts are then read as an Arrow dataset).

    Parts stored with different types (a column widened after they were written) are read in
    groups of one stored schema each, a number that becomes text written as its canonical text
    (:func:`captureq.decode.unify.text_sql`), as the in-memory path writes it."""
    import pyarrow as pa

    from . import schema
    from .commitlog import arrow_type
    from .decode.unify import text_sql

    if any(set(f) & _GLOB_CHARS for f in files):  # DuckDB would read such a path as a pattern
        return None
    groups: dict[tuple, list[str]] = {}
    for f in files:
        key = tuple(sorted((stored or {}).get(f, {}).items()))
        groups.setdefault(key, []).append(f)
    selects = []
    try:
        for key, group in groups.items():
            have = dict(key)
            cols = []
            for fld in fields:
                name = views.quote_ident(fld.name)
                typ = have.get(fld.name)
                if stored and fld.name not in have and fld.name not in ("endpoint", "variant"):
                    cols.append(f"CAST(NULL AS {schema.duckdb_type(fld.type)}) AS {name}")
                elif typ is not None and pa.types.is_string(fld.type) and typ not in ("string", "large_string"):
                    cols.append(f"{text_sql(name, arrow_type(typ))} AS {name}")
                elif pa.types.is_null(fld.type):
                    cols.append(f"NULL AS {name}")
                else:
                    cols.append(f"CAST({name} AS {schema.duckdb_type(fld.type)}) AS {name}")
            paths = ", ".join(views.quote_literal(f) for f in group)
            union = "" if uniform and len(groups) == 1 else ", union_by_name = true"
            selects.append(f"SELECT {', '.join(cols)} FROM read_parquet([{paths}], {views.HIVE_OPTIONS}{union})")
    except TypeError:
        return None
    return " UNION ALL ".join(selects)


def temp(sql: str) -> str:
    """View definitions as connection-local (``TEMP``) views: cursors of the shared database
    must not see each other's."""
    return sql.replace("CREATE OR REPLACE VIEW", "CREATE OR REPLACE TEMP VIEW")


def connect(hit: Hit, plan: ScanPlan | None = None, *, locked: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection whose views read the hit's Parquet parts (only those), for ``plan``'s window.

    The parts are registered as Arrow datasets, so the SQL needs no file access of DuckDB's own.
    ``locked``: a cursor of a shared database locked down as :func:`captureq.plan.lock_down`
    does (every view is a ``TEMP`` view, its own); else a database of its own, which the
    caller may lock down. With a time window, exactly the rows with
    ``start ≤ inference_time < end`` are served, as a cold read keeps them
    (:mod:`captureq.window`): quarantine rows and embedded labels follow their capture, and
    ``line`` quarantine rows count in their file's hour.
    """
    import pyarrow as pa

    from . import schema, window
    from .commitlog import arrow_type

    con = _connection(locked, frozenset(p for ps in hit.parts.values() for p in ps))
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
                pa.field(c, arrow_type(t)) for c, t in hit.columns[name].items()
                if c not in schema.RECORD_KEY_NAMES
            ]
            value_cols[name] = [f.name for f in fields if f.name not in schema.RECORD_KEY_NAMES]
        src = (raw if windowed else views.SOURCE_PREFIX) + name
        cols = ", ".join(views.quote_ident(f.name) for f in fields)
        if hit.parts[name]:
            native = _parquet_source(hit.parts[name], fields, name in hit.uniform,
                                     hit.stored if name in ("inputs", "outputs") else None)
            if native is not None:  # DuckDB's own reader: about twice an Arrow dataset's speed
                con.execute(f"CREATE OR REPLACE TEMP VIEW {raw}{name}_parts AS {native}")
            else:  # parts DuckDB's reader cannot read as one (pyarrow.dataset costs 0.2 s to import)
                import pyarrow.dataset as ds

                dataset = ds.dataset(hit.parts[name], schema=pa.schema(fields), format="parquet",
                                     partitioning="hive", partition_base_dir=str(hit.root / name))
                con.register(raw + name + "_parts", dataset)
            where = ""
            if hit.file_keys is not None:  # some parts also hold rows of files outside the window
                key = {"labels": "label_id", "quarantine": "coalesce(capture_id, '')"}.get(name, "capture_id")
                where = f" WHERE split_part({key}, ':', 1) IN (SELECT k FROM captureq_cache_keys)"
                if name == "quarantine":
                    where += " OR source_file IN (SELECT u FROM captureq_cache_urls)"
            con.execute(f"CREATE OR REPLACE TEMP VIEW {src} AS SELECT {cols} FROM {raw}{name}_parts{where}")
        else:
            nulls = ", ".join(f"CAST(NULL AS {schema.duckdb_type(f.type)}) AS {views.quote_ident(f.name)}"
                              for f in fields)
            con.execute(f"CREATE OR REPLACE TEMP VIEW {src} AS SELECT {nulls} WHERE false")
    if windowed:
        _window_views(con, raw, plan, start, end, window, hit.decisions)
    con.execute(temp(views.render_views(value_cols["outputs"], value_cols["inputs"])))
    if hit.decisions:  # each endpoint's own typed views, over this connection's TEMP views
        pair_cols = set(schema.RECORD_KEY_NAMES) | set(value_cols["inputs"]) | set(
            views.output_aliases_for(value_cols["outputs"], value_cols["inputs"]))
        con.execute(views.endpoint_views_sql(hit.decisions, source="temp.main", columns={
            "inputs": set(value_cols["inputs"]), "outputs": set(value_cols["outputs"]), "pairs": pair_cols}))
    touch(hit.root)
    return con


def _window_types(con, source: str, inside: str, decisions: dict, side: str) -> str:
    """The select list of a windowed ``inputs``/``outputs`` view: each value column cast to the
    narrowest type of the window's own values (parts that also hold rows outside the window
    may be stored wider), as a cold read of the window decides it. Updates ``decisions``."""
    import pyarrow as pa

    from . import schema
    from .decode.unify import arrow_type, kind_of_flags, kind_sql, union_type

    by_name = {"VARCHAR": pa.string(), "DOUBLE": pa.float64(), "BIGINT": pa.int64(),
               "BOOLEAN": pa.bool_(), "INTEGER": pa.int32()}
    stored = {row[0]: by_name.get(row[1]) for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
              if row[0] not in schema.RECORD_KEY_NAMES}
    typed = [c for c, t in stored.items() if t is not None]
    if not typed:
        return "*"
    aggs = [a for c in typed for a in kind_sql(views.quote_ident(c), stored[c])]
    own: dict = {}
    big: set[str] = set()  # columns holding an integer beyond ±2**53: beside a DOUBLE, text
    for endpoint, *flags in con.execute(f"SELECT endpoint, {', '.join(aggs)} FROM {source} "
                                        f"WHERE {inside} GROUP BY endpoint").fetchall():
        known = decisions.get(side, {}).get(endpoint, {})
        own[endpoint] = {}
        for i, c in enumerate(typed):
            kind, beyond = kind_of_flags(flags[i * 5: i * 5 + 5], stored[c])
            if c in known:
                own[endpoint][c] = arrow_type(kind)
                if beyond:
                    big.add(c)
        decisions.setdefault(side, {}).setdefault(endpoint, {}).update(own[endpoint])
    out = [", ".join(views.quote_ident(k) for k in schema.RECORD_KEY_NAMES)]
    for c in stored:
        q = views.quote_ident(c)
        ts = [cols[c] for cols in own.values() if c in cols]
        t = union_type(ts) if ts else stored[c]
        if t is not None and pa.types.is_floating(t) and c in big:
            t = pa.string()
        if t is None or t == stored[c]:
            out.append(q)
        elif pa.types.is_null(t):
            out.append(f"NULL AS {q}")
        else:
            out.append(f"CAST({q} AS {schema.duckdb_type(t)}) AS {q}")
    return ", ".join(out)


def _window_views(con, raw: str, plan: ScanPlan, start, end, window, decisions: dict) -> None:
    """The source views of a windowed hit: the raw views' rows of ``[start, end)`` (and the
    window's own column types, into ``decisions``)."""
    import pyarrow as pa

    conds = []
    if start is not None:
        conds.append(f"inference_time >= TIMESTAMPTZ {views.quote_literal(start.isoformat())}")
    if end is not None:
        conds.append(f"inference_time < TIMESTAMPTZ {views.quote_literal(end.isoformat())}")
    inside = " AND ".join(conds)
    con.execute(f"CREATE OR REPLACE TEMP VIEW {views.SOURCE_PREFIX}captures AS "
                f"SELECT * FROM {raw}captures WHERE {inside}")
    for name, side in (("inputs", "input"), ("outputs", "output")):
        cols = _window_types(con, f"{raw}{name}", inside, decisions, side)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {views.SOURCE_PREFIX}{name} AS "
                    f"SELECT {cols} FROM {raw}{name} WHERE {inside}")
    # the margin: files whose hour starts outside the window (their 'line' rows are not its own)
    margin = [f.url for f in plan.scan().files if not window.hour_in_window(f.hour, start, end)]
    con.register("captureq_cache_margin", pa.table({"u": pa.array(margin, pa.string())}))
    # captures outside the window: what is keyed by their id leaves with them (the label
    # tree's rows and quarantine are keyed by label ids, which no capture has)
    con.execute(f"CREATE OR REPLACE TEMP VIEW captureq_cache_outside AS SELECT capture_id FROM "
                f"{raw}captures WHERE NOT ({inside})")
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {views.SOURCE_PREFIX}quarantine AS SELECT * FROM {raw}quarantine "
        f"AS q WHERE NOT EXISTS (SELECT 1 FROM captureq_cache_outside AS o "
        f"WHERE o.capture_id = q.capture_id) AND NOT (stage = 'line' AND coalesce(source_file IN "
        f"(SELECT u FROM captureq_cache_margin), false))"
    )
    con.execute(  # labels embedded in captures outside the window leave with them
        f"CREATE OR REPLACE TEMP VIEW {views.SOURCE_PREFIX}labels AS SELECT * FROM {raw}labels AS l "
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

    root = cache_dir(plan.uri, plan.labels_uri, plan.options)
    # the export re-reads new and changed files (size, ETag/mtime) and replaces their old rows
    source = ScanPlan(plan.uri, plan.labels_uri, plan.storage_options, plan.label_storage_options,
                      plan.options, plan.window, plan.batch_bytes)
    source._cache.update({k: plan._cache[k] for k in ("scan", "label_scan") if k in plan._cache})
    try:
        summary = export(source, str(root), by_hour=False, compression=CODEC, compact_after=COMPACT_AFTER)
    except ExportError as exc:
        if "another captureq export is writing" in str(exc):
            return None  # another process is writing this cache
        raise
    if summary.failed:  # the other endpoints are cached; queries on these read the tree
        raise ExportError("; ".join(f"endpoint {e}: {r}" for e, r in summary.failed.items()))
    touch(root)
    evict(max_bytes if max_bytes is not None else max_bytes_default(), keep=root)
    return root


# -- filling off the critical path ----------------------------------------------------------------
# A cold query hands the fill to a detached process (as git's auto gc does): the query's caller —
# a CLI about to exit, a notebook — never waits for it. The process holds an flock on its marker
# ``<cache root>/_fills/<id>.lock`` (taken by the parent before it starts, inherited, released by
# the kernel when the process ends however it ends), so :func:`pending` and :func:`wait` see every
# fill under a cache root, whichever process started it. A fill whose tree cache is being written
# by another process waits for its turn (up to ``FILL_WAIT_SECONDS``) instead of being dropped.
FILLS = "_fills"
CODEC = "lz4"  # the parts' Parquet codec: quick to decompress (a warm read is mostly that)
COMPACT_AFTER = 64  # commit records a fill leaves before folding them into one (export.compact)
FILL_WAIT_SECONDS = 600.0

_pending: list[threading.Thread] = []
_children: list[subprocess.Popen] = []


def _spec(plan: ScanPlan, max_bytes: int | None) -> dict | None:
    """What a fill process needs to rebuild ``plan`` (None when it cannot be sent as JSON)."""
    w = plan.window
    spec = {
        "uri": plan.uri, "labels": plan.labels_uri, "storage_options": plan.storage_options,
        "label_storage_options": plan.label_storage_options, "options": asdict(plan.options),
        "start": w.start.isoformat() if w.start is not None else None,
        "end": w.end.isoformat() if w.end is not None else None,
        "endpoint": w.endpoint, "variant": w.variant, "batch_bytes": plan.batch_bytes,
        "lateness": w.lateness.total_seconds() if w.lateness is not None else None,
        "max_bytes": max_bytes, "cache_root": str(cache_root()),
    }
    try:
        json.dumps(spec)
    except (TypeError, ValueError):
        return None
    return spec


def _plan_of(spec: dict) -> ScanPlan:
    from .plan import open_plan

    return open_plan(spec["uri"], labels=spec["labels"], storage_options=spec["storage_options"],
                     label_storage_options=spec["label_storage_options"],
                     options=DecodeOptions(**spec["options"]), start=spec["start"], end=spec["end"],
                     endpoint=spec["endpoint"], variant=spec["variant"], batch_bytes=spec["batch_bytes"],
                     lateness=(None if spec.get("lateness") is None
                               else timedelta(seconds=spec["lateness"])))


_deferred: list[dict] = []


def refresh_later(plan: ScanPlan, max_bytes: int | None = None, *, at_exit: bool = False
                  ) -> subprocess.Popen | threading.Thread | None:
    """:func:`refresh` off the critical path: in a detached process (see above), or — when the
    plan cannot be handed to one (storage options that are not JSON) — on a thread the
    interpreter waits for at exit. ``at_exit``: the process starts when this interpreter exits
    (or at :func:`wait`), so that a CLI writes its answer without a fill competing for the CPU."""
    _children[:] = [p for p in _children if p.poll() is None]  # reap the fills that ended
    warn_failed_fill(plan)
    spec = _spec(plan, max_bytes)
    if spec is not None and sys.executable:
        if at_exit:
            if not _deferred:
                import atexit

                atexit.register(start_deferred)
            _deferred.append(spec)
            return None
        with contextlib.suppress(OSError):
            return _spawn(spec)

    def run():
        try:
            refresh(plan, max_bytes)
        except Exception as exc:  # a cache that cannot be written is only a slower query
            _failed(plan.uri, cache_dir(plan.uri, plan.labels_uri, plan.options), cache_root(), exc)
            warn_failed_fill(plan)
        else:
            _cleared(cache_dir(plan.uri, plan.labels_uri, plan.options), cache_root())

    t = threading.Thread(target=run, name="captureq-cache", daemon=False)
    t.start()
    _pending.append(t)
    return t


def start_deferred() -> None:
    """Start the fills deferred to exit (see :func:`refresh_later`)."""
    while _deferred:
        with contextlib.suppress(OSError):
            _spawn(_deferred.pop(0))


def _spawn(spec: dict) -> subprocess.Popen:
    import fcntl

    folder = Path(spec["cache_root"]) / FILLS
    folder.mkdir(parents=True, exist_ok=True)
    name = uuid.uuid4().hex
    marker = folder / f"{name}.lock"
    fd = os.open(folder / f".{name}.tmp", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held from now until the fill process ends
        os.rename(folder / f".{name}.tmp", marker)  # seen by pending() only once locked
        spec = {**spec, "marker": str(marker), "fd": fd}
        # this captureq, not another: ``-c`` puts the working folder first on sys.path
        package = str(Path(__file__).resolve().parent.parent)
        code = f"import sys; sys.path.insert(0, {package!r}); from captureq.cache import _fill_main; _fill_main()"
        debug = bool(os.environ.get("CAPTUREQ_DEBUG"))
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=None if debug else subprocess.DEVNULL, pass_fds=(fd,),
            start_new_session=True,  # a Ctrl-C of the caller does not stop it half-way (harmless anyway)
        )
    except BaseException:
        with contextlib.suppress(OSError):
            marker.unlink()
        raise
    finally:
        os.close(fd)  # the child's copy keeps the lock
    proc.stdin.write(json.dumps(spec).encode())
    proc.stdin.close()
    _children.append(proc)
    return proc


def _fill_main() -> None:
    """The fill process: rebuild the plan, wait for the cache's writer lock, refresh, exit."""
    try:
        spec = json.loads(sys.stdin.read())
    except ValueError:  # the caller died before handing the plan over: its marker is stale
        return
    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)  # the caller's next work goes first
    try:
        _fill(spec)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(spec["marker"])


def _fill(spec: dict) -> None:
    """Refresh the cache ``spec`` describes; a failure is logged (:func:`_failed`), not raised."""
    os.environ["CAPTUREQ_CACHE"] = spec["cache_root"]
    root = cache_dir(spec["uri"], spec["labels"], DecodeOptions(**spec["options"]))
    try:
        plan = _plan_of(spec)
        deadline = time.monotonic() + FILL_WAIT_SECONDS
        while refresh(plan, spec["max_bytes"]) is None and time.monotonic() < deadline:
            time.sleep(0.1)  # another process is writing this tree's cache: our turn comes next
    except Exception as exc:  # a cache that cannot be written is only a slower query
        _failed(spec["uri"], root, Path(spec["cache_root"]), exc)
    else:
        _cleared(root, Path(spec["cache_root"]))


# -- fills that failed ---------------------------------------------------------------------------
# A fill runs where nobody sees its stderr, so a failure is appended to ``<cache root>/fill-errors.log``
# and kept as ``<cache root>/_fills/<tree cache>.failed.json`` until a fill of that tree succeeds;
# the next query of the tree (the one that would start another fill) says so on stderr.
FILL_LOG = "fill-errors.log"
_warned: set[str] = set()


def _failure_path(root: Path, base: Path) -> Path:
    return base / FILLS / f"{root.name}.failed.json"


def _failed(uri: str, root: Path, base: Path, exc: BaseException) -> None:
    import traceback

    from .export import _redact

    reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with contextlib.suppress(OSError):
        (base / FILLS).mkdir(parents=True, exist_ok=True)
        _failure_path(root, base).write_text(json.dumps(
            {"uri": _redact(uri), "cache": str(root), "time": when, "reason": reason}))
        with open(base / FILL_LOG, "a") as log:
            log.write(f"{when} fill of {_redact(uri)} into {root} failed: {reason}\n")
            if os.environ.get("CAPTUREQ_DEBUG"):
                log.write("".join(traceback.format_exception(exc)))
    if os.environ.get("CAPTUREQ_DEBUG"):
        traceback.print_exception(exc)


def _cleared(root: Path, base: Path) -> None:
    with contextlib.suppress(OSError):
        _failure_path(root, base).unlink()


def fill_failure(plan: ScanPlan) -> dict | None:
    """The last failed fill of ``plan``'s tree cache (``uri``, ``time``, ``reason``), or None
    when its last fill succeeded (or none ran)."""
    path = _failure_path(cache_dir(plan.uri, plan.labels_uri, plan.options), cache_root())
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def warn_failed_fill(plan: ScanPlan) -> None:
    """Say on stderr (once per process and tree) that the tree's last cache fill failed."""
    failure = fill_failure(plan)
    if failure is None or failure["cache"] in _warned:
        return
    _warned.add(failure["cache"])
    sys.stderr.write(
        f"captureq: warning: could not fill the query cache of {failure['uri']} "
        f"({failure['time']}): {failure['reason']}; queries of it read the capture files "
        f"(slower). Details: {cache_root() / FILL_LOG}\n")


def pending(root: Path | str | None = None) -> list[Path]:
    """The fills still running under the cache root ``root`` (default :func:`cache_root`),
    started by any process; the markers of fills that ended without removing them are removed."""
    import fcntl

    folder = Path(root if root is not None else cache_root()) / FILLS
    running = []
    for marker in sorted(folder.glob("*.lock")) if folder.is_dir() else ():
        try:
            fd = os.open(marker, os.O_RDWR)
        except OSError:
            continue  # ended just now
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            running.append(marker)
        else:
            with contextlib.suppress(OSError):
                marker.unlink()
        finally:
            os.close(fd)
    return running


def wait(root: Path | str | None = None, timeout: float | None = None) -> bool:
    """Wait for the fills started by this process, then for every fill still running under the
    cache root ``root`` (default :func:`cache_root`; a CLI's fills outlive it). Returns False
    when ``timeout`` seconds passed first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    start_deferred()
    while _pending:
        _pending.pop().join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    for proc in list(_children):
        try:
            proc.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
        _children.remove(proc)
    while pending(root):
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# At exit, finish thread refreshes before concurrent.futures stops taking work (its exit hook,
# registered when captureq.pipeline imported it, runs after this one: threading runs them in
# reverse order). Fill processes are detached: the interpreter does not wait for them.
import concurrent.futures.thread  # noqa: F401


def _join_threads() -> None:
    while _pending:
        _pending.pop().join()


if hasattr(threading, "_register_atexit"):
    threading._register_atexit(_join_threads)
