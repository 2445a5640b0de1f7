"""The scan plan: which files, which window, which tables and columns — read only when asked.

Opening a tree and narrowing it builds a :class:`ScanPlan`; nothing is listed or decoded until a
result is asked for, and then only what the question needs:

* ``plan.sql(query)`` finds the views the statement names (from its words: a superset, and no
  SQL engine loaded before the first byte is read), follows the views'
  definitions in ``sql/*.sql`` down to the source tables (``predictions`` → ``captureq_pairs`` +
  ``labels`` → inputs, outputs and labels), and decodes only those sides. ``select count(*) from
  captures`` parses the capture lines and decodes no payload at all.
* When a statement names its columns (no ``*``), the raw payload text (``input_data``,
  ``output_data``) is not kept unless it is named.

The plan is the one seam every consumer reads through: the Python API (:mod:`captureq.api`
subclasses it), the CLI, export, monitor, report and Spark. Data flows one way — plan → read →
parse → decode → tables → consumers — and nothing below the API imports :mod:`captureq.api`.

>>> from captureq.plan import query_needs
>>> sorted(query_needs("select count(*) from captures").parts)
['captures']
>>> sorted(query_needs("select * from predictions").parts)
['inputs', 'labels', 'outputs', 'pairs']
>>> query_needs("select count(*) from captures").payload_text
False
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from . import views
from .errors import QueryError, ScanError
from .options import DecodeOptions
from .read import DEFAULT_BATCH_BYTES, Prefetch, Unreadable, unreadable_summary
from .scan import CAPTURE, LABELS, Scanner, ScanResult
from .timeutil import to_lateness, to_utc
from .views import PAYLOAD_TEXT

# numpy, pyarrow and what parses and decodes (captureq.pipeline, schema) are imported once a read
# has started (see ScanPlan._read): opening, narrowing and listing a tree need none of them.
if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from .pipeline import Counts

# What can be produced: the captures table, each decoded side, the pairs table, the labels, and
# the quarantine (which holds every stage, so it needs everything).
PARTS = ("captures", "inputs", "outputs", "pairs", "labels", "quarantine")
ALL_PARTS = frozenset(PARTS)
# Source relation (captureq_<name>) → the parts that must be produced to fill it.
_SOURCE_PARTS = {
    "captures": {"captures"},
    "inputs": {"inputs"},
    "outputs": {"inputs", "outputs"},  # outputs align to the inputs' record counts
    "pairs": {"inputs", "outputs", "pairs"},
    "labels": {"labels"},
    "quarantine": set(PARTS),
}
# Raw payload text (PAYLOAD_TEXT) is kept in ``captures`` only when a statement names it (or
# selects ``*``); otherwise the payloads are not even read when no side is decoded.


@dataclass(frozen=True)
class Needs:
    """What a statement needs: ``parts`` to produce, and whether ``captures`` keeps payload text."""

    parts: frozenset[str] = ALL_PARTS
    payload_text: bool = True

    def __or__(self, other: Needs) -> Needs:
        return Needs(self.parts | other.parts, self.payload_text or other.payload_text)

    def covers(self, other: Needs) -> bool:
        return other.parts <= self.parts and (self.payload_text or not other.payload_text)


EVERYTHING = Needs()


def closure(parts: Iterable[str]) -> frozenset[str]:
    """Every part needed to produce ``parts`` (``outputs`` needs ``inputs``, …)."""
    out: set[str] = set()
    for p in parts:
        out |= _SOURCE_PARTS[p]
    return frozenset(out)


@cache
def view_sources(name: str) -> frozenset[str]:
    """The source tables (``captures``, ``pairs``, …) a view reads, through other views.

    Read from the view's own definition in ``sql/<name>.sql``, so a view that starts reading
    another table is followed without a second list to keep in step.
    """
    if name not in views.VIEWS and name != "pairs":
        return frozenset()
    text = views.view_sql(name)
    body = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    body = re.sub(r"create\s+or\s+replace\s+view\s+\w+\s+as", " ", body, flags=re.I)
    words = {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", body)}
    out: set[str] = set()
    for w in words:
        if w.startswith(views.SOURCE_PREFIX):
            src = w[len(views.SOURCE_PREFIX):]
            if src in _SOURCE_PARTS:
                out.add(src)
        elif w in views.VIEWS and w != name:
            out |= view_sources(w)
    return frozenset(out)


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STAR = re.compile(r"(?<!\()\s*\*(?!\s*\))|\.\*")  # select *, t.*; not count(*)


def query_needs(query: str) -> Needs:
    """The parts (and payload text) a SQL statement over captureq's views needs.

    Read from the statement's words, without parsing it (so no SQL engine is loaded before the
    first byte is read): every view or source name it mentions counts, which can only read more
    than needed, never less. Payload text is kept when ``input_data``/``output_data`` or a ``*``
    other than ``count(*)`` appears.
    """
    words = {w.lower() for w in _WORD.findall(query)}
    sources: set[str] = set()
    for w in words:
        if w.startswith(views.SOURCE_PREFIX) and w[len(views.SOURCE_PREFIX):] in _SOURCE_PARTS:
            sources.add(w[len(views.SOURCE_PREFIX):])
        elif w in views.VIEWS:
            sources |= view_sources(w)
    first = _WORD.search(re.sub(r"--[^\n]*|/\*.*?\*/", " ", query, flags=re.S))
    plain = first is not None and first.group(0).lower() in ("select", "with", "from", "values")
    payload_text = not plain or bool(_STAR.search(query)) or any(c in words for c in PAYLOAD_TEXT)
    return Needs(closure(sources), payload_text)


class Result:
    """The answer to a query: convert it with ``to_arrow()``, ``to_polars()``, ``to_pandas()``.

    ``unreadable`` lists the objects the answer leaves out because they could not be read
    (:class:`captureq.Unreadable`: path and reason); empty when every object was read.
    """

    def __init__(self, table: pa.Table, unreadable: list[Unreadable] | None = None):
        self._table = table
        self.unreadable: list[Unreadable] = list(unreadable or [])

    def to_arrow(self) -> pa.Table:
        return self._table

    def to_polars(self):
        import polars as pl

        return pl.from_arrow(self._table)

    def to_pandas(self):
        return self._table.to_pandas()

    def to_pylist(self) -> list[dict[str, Any]]:
        return self._table.to_pylist()

    @property
    def num_rows(self) -> int:
        return self._table.num_rows

    @property
    def columns(self) -> list[str]:
        return self._table.column_names

    def __len__(self) -> int:
        return self._table.num_rows

    def __repr__(self) -> str:
        return (
            f"<captureq.Result {self._table.num_rows} rows × {self._table.num_columns} columns>\n"
            + str(self.to_polars())
        )


@dataclass(frozen=True)
class Window:
    start: Any = None
    end: Any = None
    endpoint: tuple[str, ...] | None = None
    variant: tuple[str, ...] | None = None
    #: how far an object's hour folder may lie from its records' hours (None: the default,
    #: :func:`captureq.timeutil.to_lateness`)
    lateness: timedelta | None = None


def _tuple(value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass
class Tables:
    """What was read for one window, plus the counts that reconcile.

    ``needs`` says what was produced; a table outside it is empty (with its schema), and its
    counts (e.g. ``input_records`` when no side was decoded) are zero.
    """

    captures: pa.Table
    inputs: pa.Table
    outputs: pa.Table
    pairs: pa.Table  # inputs beside the outputs that answer them: the source of ``predictions``
    labels: pa.Table
    quarantine: pa.Table
    counts: Counts
    label_counts: Counts
    scan: ScanResult
    label_scan: ScanResult | None
    needs: Needs = EVERYTHING
    #: the type decided for each endpoint's columns: ``{"input"|"output": {endpoint: {column: type}}}``
    decisions: dict = field(default_factory=dict)

    @property
    def unreadable(self) -> list[Unreadable]:
        """The capture and ground-truth objects this read could not read (left out)."""
        return self.counts.unreadable + self.label_counts.unreadable

    def as_dict(self) -> dict[str, pa.Table]:
        from . import schema

        return {name: getattr(self, name) for name in (*schema.TABLES, "pairs")}


@dataclass
class ScanPlan:
    """A capture tree (and optionally its ground-truth tree) to be read: files, window, tables.

    Filters (:meth:`where`) return a narrowed plan; nothing is listed or read until a table, a
    query or an export is asked for, and then only the tables and sides the question needs.
    :class:`captureq.CaptureTree` (what :func:`captureq.open` returns) is a plan with the
    monitoring, report and export methods added.
    """

    uri: str
    labels_uri: str | None = None
    storage_options: dict | None = None
    label_storage_options: dict | None = None
    options: DecodeOptions = field(default_factory=DecodeOptions)
    window: Window = field(default_factory=Window)
    batch_bytes: int = DEFAULT_BATCH_BYTES
    _cache: dict = field(default_factory=dict, repr=False, compare=False)
    # The warm path (captureq.cache): None follows CAPTUREQ_NO_CACHE; max bytes of all caches.
    cache: bool | None = None
    cache_max_bytes: int | None = None
    cache_fill_at_exit: bool = False  # start a cold query's cache fill when the process exits (CLI)
    # called with each batch's Counts of every read that is not given a callback of its own (the
    # CLI's progress display around ``sql``: it follows what the statement reads, and no more)
    progress: Callable | None = field(default=None, repr=False, compare=False)
    # an object that cannot be read fails the read (UnreadableError) instead of being left out
    strict: bool = False

    def __repr__(self) -> str:
        w = self.window
        parts = [f"uri={self.uri!r}"]
        if self.labels_uri:
            parts.append(f"labels={self.labels_uri!r}")
        for name in ("start", "end", "endpoint", "variant", "lateness"):
            value = getattr(w, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        loaded = self._cache.get("tables")
        if loaded is not None:
            parts.append(f"read={sorted(loaded.needs.parts)}")
        return f"{type(self).__name__}({', '.join(parts)})"

    # -- narrowing ------------------------------------------------------------------------
    def where(
        self,
        *,
        start: Any = None,
        end: Any = None,
        endpoint: str | Iterable[str] | None = None,
        variant: str | Iterable[str] | None = None,
        lateness: timedelta | float | str | None = None,
    ):
        """A plan narrowed to the rows with ``start ≤ inference_time < end`` (UTC, exact to the
        microsecond) and the given endpoints/variants (names or shell-style patterns).

        ``lateness`` bounds how far an object's hour folder may lie from its records' hours
        (a ``timedelta``, hours, or ``"90m"``; default one hour or ``CAPTUREQ_LATENESS``): the
        listing covers the folders ``[start - lateness, end + lateness)``.

        >>> captureq.open("capture").where(start="2026-01-01T06:30", end="2026-01-01T07")  # doctest: +SKIP
        CaptureTree(uri='capture', start=datetime.datetime(2026, 1, 1, 6, 30, ...), ...)
        """
        w = self.window
        new = Window(
            start=to_utc(start) if start is not None else w.start,
            end=to_utc(end) if end is not None else w.end,
            endpoint=_tuple(endpoint) if endpoint is not None else w.endpoint,
            variant=_tuple(variant) if variant is not None else w.variant,
            lateness=to_lateness(lateness) if lateness is not None else w.lateness,
        )
        return replace(self, window=new, _cache={})

    def _narrow(self, kw: dict):
        return self.where(**kw) if any(v is not None for v in kw.values()) else self

    # -- listing ----------------------------------------------------------------------------
    def scanner(self) -> Scanner:
        return Scanner(self.uri, layout=CAPTURE, storage_options=self.storage_options)

    def scan(self) -> ScanResult:
        """List the capture files that can hold rows of this plan's window (one listing per plan).

        The hour folders ``[start - lateness, end + lateness)`` (:attr:`lateness`): objects
        may lie in a neighbouring hour's folder either way; reading keeps exactly the rows with
        ``start ≤ inference_time < end`` (:mod:`captureq.window`).
        """
        if "scan" not in self._cache:
            s = self.scanner()
            w = self.window
            self._cache["scan"] = (
                s,
                s.scan(start=w.start, end=w.end, endpoint=w.endpoint, variant=w.variant,
                       lateness=self.lateness),
            )
        return self._cache["scan"][1]

    @property
    def lateness(self) -> timedelta:
        """How far the listing reaches beyond the window on each side (``where(lateness=)``,
        else ``CAPTUREQ_LATENESS``, else one hour)."""
        w = self.window
        return w.lateness if w.lateness is not None else to_lateness(None)

    @property
    def fs(self):
        """The fsspec filesystem of the capture tree."""
        self.scan()
        return self._cache["scan"][0].fs

    def label_scanner(self) -> Scanner | None:
        if not self.labels_uri:
            return None
        return Scanner(
            self.labels_uri,
            layout=LABELS,
            storage_options=self.label_storage_options or self.storage_options,
        )

    def scan_labels(self) -> ScanResult | None:
        """List the ground-truth files (labels arrive late, so no time window is applied)."""
        if not self.labels_uri:
            return None
        if "label_scan" not in self._cache:
            s = self.label_scanner()
            try:
                result = s.scan(start=self.window.start)
            except ScanError as exc:
                raise ScanError(f"the ground-truth tree (--labels, labels= in Python): {exc}") from None
            self._cache["label_scan"] = (s, result)
        return self._cache["label_scan"][1]

    @property
    def label_fs(self):
        """The fsspec filesystem of the ground-truth tree (None without one)."""
        if self.scan_labels() is None:
            return None
        return self._cache["label_scan"][0].fs

    # -- reading ----------------------------------------------------------------------------
    def load(self, needs: Needs = EVERYTHING, progress=None) -> Tables:
        """Read and decode what ``needs`` asks for (default: everything) into Arrow tables.

        Kept on the plan: a later call that needs no more reuses it; one that needs more reads
        again for the union (what was read before is not kept twice).
        """
        have = self._cache.get("tables")
        if have is not None and have.needs.covers(needs):
            return have
        if have is not None:
            needs = needs | have.needs
        tables = self._read(needs, progress if progress is not None else self.progress)
        self._cache["tables"] = tables
        self._report(tables.unreadable)
        return tables

    def _report(self, unreadable: list[Unreadable]) -> None:
        """A read that left objects out says so: an :class:`~captureq.errors.UnreadableWarning`,
        or with ``strict`` an :class:`~captureq.errors.UnreadableError`."""
        if not unreadable:
            return
        from .errors import UnreadableError, UnreadableWarning

        if self.strict:
            raise UnreadableError(unreadable_summary(unreadable, strict=True), unreadable)
        import warnings

        warnings.warn(unreadable_summary(unreadable), UnreadableWarning, stacklevel=4)

    def _read(self, needs: Needs, progress=None) -> Tables:
        parts = needs.parts
        scan = self.scan()
        # every part reads the capture files: labels too (ground truth embedded in merged records).
        # The first batch is read (on a local disk) while what parses it is imported.
        local = self._cache["scan"][0].local  # read with plain open: fsspec not needed yet
        first = (Prefetch.start(None if local else self.fs, scan.files, self.batch_bytes)
                 if parts else None)
        import pyarrow as pa

        from . import schema
        from .pipeline import Counts, run_captures, run_labels, unify_types

        caps, ins, outs, pairs, qs, embedded = [], [], [], [], [], []
        decisions: dict = {}
        counts = Counts()
        if parts:
            sides = ("input", "output") if "outputs" in parts else ("input",) if "inputs" in parts else ()
            drop = () if "captures" in parts and needs.payload_text else PAYLOAD_TEXT
            w = self.window
            results = run_captures(self.fs, scan.files, self.options, batch_bytes=self.batch_bytes,
                                   pairs="pairs" in parts, sides=sides, drop=drop,
                                   start=w.start, end=w.end, first=first)
            if sides:  # one type per column per endpoint over the whole read
                results = list(results)
                decisions = unify_types(results, pairs="pairs" in parts, options=self.options)
            for r in results:
                if "captures" in parts:
                    caps.append(r.captures)
                if "inputs" in parts:
                    ins.append(r.inputs)
                if "outputs" in parts:
                    outs.append(r.outputs)
                if "pairs" in parts:
                    pairs.append(r.pairs)
                qs.append(r.quarantine)
                counts.add(r.counts)
                embedded.append(r.labels)
                if progress is not None:  # each batch's Counts, as decoded (the CLI's bar)
                    progress(r.counts)
        labels, label_counts, label_scan = embedded, Counts(), None
        if "labels" in parts:
            label_scan = self.scan_labels()
            if label_scan is not None:
                for r in run_labels(self.label_fs, label_scan.files, batch_bytes=self.batch_bytes):
                    labels.append(r.labels)
                    qs.append(r.quarantine)
                    label_counts.add(r.counts)
                    if progress is not None:
                        progress(r.counts)
        return Tables(
            captures=pa.concat_tables(caps) if caps else schema.empty(schema.CAPTURES),
            inputs=_records(ins),
            outputs=_records(outs),
            pairs=_records(pairs),
            labels=pa.concat_tables([x for x in labels if x.num_rows] or [schema.empty(schema.LABELS)]),
            quarantine=pa.concat_tables(qs) if qs else schema.empty(schema.QUARANTINE),
            counts=counts,
            label_counts=label_counts,
            scan=scan,
            label_scan=label_scan,
            needs=needs,
            decisions=decisions,
        )

    def captures(self, **window) -> pa.Table:
        """The ``captures`` table (one row per request) for the window, as Arrow."""
        return self._narrow(window).load(Needs(frozenset({"captures"}))).captures

    def inputs(self, **window) -> pa.Table:
        """The ``inputs`` table (one row per input record)."""
        return self._narrow(window).load(Needs(closure(["inputs"]), False)).inputs

    def outputs(self, **window) -> pa.Table:
        """The ``outputs`` table (one row per output record)."""
        return self._narrow(window).load(Needs(closure(["outputs"]), False)).outputs

    def labels(self) -> pa.Table:
        """The ``labels`` table (ground truth), empty when no labels URI was given."""
        return self.load(Needs(frozenset({"labels"}), False)).labels

    def quarantine(self, **window) -> pa.Table:
        """Every line or payload that could not be used, with file, line and reason."""
        return self._narrow(window).load().quarantine

    def predictions(self, **window) -> pa.Table:
        """Inputs joined with their outputs and ground truth, one row per record."""
        return (
            self._narrow(window)
            .sql("select * from predictions order by capture_id, record_index")
            .to_arrow()
        )

    def unmatched_labels(self) -> int:
        """Label rows whose id matches no capture in this window (on the capture's
        ``inference_id``, else its ``event_id``, as ``predictions`` joins them). Labels arrive
        late and for other windows too, so a count above zero is not an error by itself; a count
        near the number of labels usually means the ids were uploaded with the wrong key.
        """
        if not self.labels_uri and not self.labels().num_rows:
            return 0
        r = self.sql(
            "select count(*) as n from labels as l where not exists (select 1 from captures as c "
            "where coalesce(c.inference_id, c.event_id) = l.event_id)"
        )
        return int(r.to_arrow()["n"][0].as_py())

    def connect(self, *, allow_external_access: bool = False) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with every view registered over this window's tables.

        The views read in-memory Arrow tables, so by default the connection cannot touch files,
        the network or extensions (``enable_external_access = false``, then
        ``lock_configuration = true``): user SQL such as ``COPY … TO '/any/file'`` or
        ``read_text('/etc/passwd')`` fails with a ``duckdb.PermissionException``. Pass
        ``allow_external_access=True`` for SQL that reads or writes files on purpose.

        >>> cq.connect().sql("select count(*) from captures").fetchall()   # doctest: +SKIP
        [(3,)]
        """
        tables = self.load()
        import duckdb  # imported once the files are read: reading starts sooner

        con = duckdb.connect()
        views.register(con, tables.as_dict(), tables.decisions)
        if not allow_external_access:
            lock_down(con)
        return con

    def _connection(self, needs: Needs = Needs(frozenset(), False),
                    allow_external_access: bool = False) -> duckdb.DuckDBPyConnection:
        """The plan's DuckDB connection, with sources registered for at least ``needs`` (one
        locked down, one with file access when asked for it)."""
        key = "con_external" if allow_external_access else "con"
        con = self._cache.get(key)
        registered = self._cache.get(key + "_needs")
        if con is not None and registered is not None and registered.covers(needs):
            return con
        tables = self.load(needs)
        import duckdb  # once the files are read: reading starts sooner

        if con is None:
            con = duckdb.connect()
            views.register(con, tables.as_dict(), tables.decisions)
            if not allow_external_access:
                lock_down(con)
            for name, table in self._cache.get("extra_views", {}).items():  # drift, metrics
                register_view(con, name, table)
        else:
            for name, table in tables.as_dict().items():
                con.register(views.SOURCE_PREFIX + name, views.case_unique(table))
            if tables.decisions:
                con.execute(views.endpoint_views_sql(tables.decisions, columns=views.union_columns(tables.as_dict())))
        self._cache[key] = con
        self._cache[key + "_needs"] = tables.needs
        return con

    def _add_view(self, name: str, table: pa.Table) -> None:
        """Make ``table`` the ``name`` view (sql/<name>.sql) of every connection, now and later."""
        self._cache.setdefault("extra_views", {})[name] = table
        for key in ("con", "con_external", "warm", "warm_external"):
            if self._cache.get(key) is not None:
                register_view(self._cache[key], name, table, temp=key.startswith("warm"))
        self._connection()

    def _use_cache(self) -> bool:
        if self.cache is not None:  # told: captureq.cache (pyarrow) is not even imported
            return self.cache
        from .cache import default_enabled

        return default_enabled()

    def _warm_connection(self, needs: Needs, allow_external_access: bool = False
                         ) -> duckdb.DuckDBPyConnection | None:
        """A connection over the Parquet cache when it holds this window, fresh; else None.

        Tables already in memory that cover ``needs`` win (no I/O at all). The connection is
        locked down as the in-memory one (the Parquet parts are registered as Arrow datasets
        before the lock), unless ``allow_external_access``."""
        suffix = "_external" if allow_external_access else ""
        have = self._cache.get("con" + suffix + "_needs")
        if have is not None and have.covers(needs):
            return None
        key = "warm" + suffix
        if key not in self._cache:
            from . import cache

            try:
                hit = cache.lookup(self)
                con = None
                if hit is not None:  # locked: a cursor of a locked-down database, TEMP views
                    con = cache.connect(hit, self, locked=not allow_external_access)
                    for name, table in self._cache.get("extra_views", {}).items():
                        register_view(con, name, table, temp=True)
                self._cache[key] = con
            except Exception:  # noqa: BLE001 - OSError, bad JSON, a duckdb.Error: all the same
                self._cache[key] = None  # an unreadable cache is only a slower query
        return self._cache[key]

    def sql(self, query: str, params: list | dict | None = None, *,
            allow_external_access: bool = False) -> Result:
        """Run SQL over the views (captures, inputs, outputs, labels, quarantine, predictions).

        Only the tables the statement references are read (see :func:`query_needs`). With the
        cache on (the default; ``cache=False`` or ``CAPTUREQ_NO_CACHE=1`` turn it off), a window
        whose files are all in the tree's Parquet cache is answered from it, and any other
        window is answered in memory and then written to the cache in the background.

        The SQL cannot read or write files, the network or extensions unless
        ``allow_external_access=True`` (see :meth:`connect`).

        >>> cq.sql("select count(*) as n from captures").to_pylist()   # doctest: +SKIP
        [{'n': 3}]
        """
        needs = query_needs(query)
        con = (self._warm_connection(needs, allow_external_access) if self._use_cache()
               else None)
        cold = con is None
        if cold:
            con = self._connection(needs, allow_external_access)
        import duckdb  # already loaded by the connection: costs nothing here

        have = self._cache.get("tables")
        lost = have.unreadable if cold and have is not None else []
        try:
            if params is not None:
                result = Result(to_arrow(con.sql(query, params=params)), lost)  # a relation: no copy
            else:
                result = Result(to_arrow(con.sql(query)), lost)
        except (duckdb.PermissionException, duckdb.InvalidInputException) as exc:
            if allow_external_access or not _is_lockdown(exc):
                raise
            raise QueryError(
                f"{exc}. captureq runs SQL over in-memory tables without file, network or "
                "extension access; pass allow_external_access=True (CLI: --allow-external-access) "
                "for SQL that reads or writes files on purpose"
            ) from exc
        if cold and self._use_cache() and "refresh" not in self._cache:
            from . import cache

            self._cache["refresh"] = cache.refresh_later(self, self.cache_max_bytes,
                                                         at_exit=self.cache_fill_at_exit)
        return result


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """No file, network or extension access for the SQL run on ``con`` from now on."""
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _is_lockdown(exc: Exception) -> bool:
    text = str(exc)
    return "disabled by configuration" in text or "disabled through configuration" in text \
        or "configuration has been locked" in text


def register_view(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table, temp: bool = False) -> None:
    """``table`` as the ``name`` view of ``con`` (sql/<name>.sql over captureq_<name>);
    ``temp``: a connection-local view (a cursor of the warm path's shared database)."""
    con.register(views.SOURCE_PREFIX + name, table)
    sql = views.view_sql(name)
    con.execute(sql.replace("CREATE OR REPLACE VIEW", "CREATE OR REPLACE TEMP VIEW") if temp else sql)


def to_arrow(rel) -> pa.Table:
    """Arrow result of a DuckDB relation/cursor across DuckDB versions (to_arrow_table is 1.4+);
    an empty table for ``None``, which DuckDB 1.x's ``con.sql`` returns for CREATE, SET, COPY."""
    if rel is None:
        import pyarrow as pa

        return pa.table({})
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return fetch()


def _records(parts: list[pa.Table]) -> pa.Table:
    from . import schema
    from .decode.common import concat_tables

    parts = [p for p in parts if p.num_rows or p.num_columns > len(schema.RECORD_KEY_NAMES)]
    if not parts:
        return schema.RECORD_KEYS.empty_table()
    return concat_tables(parts)


def open_plan(
    uri: str,
    *,
    labels: str | None = None,
    storage_options: dict | None = None,
    label_storage_options: dict | None = None,
    options: DecodeOptions | None = None,
    start: Any = None,
    end: Any = None,
    endpoint: str | Iterable[str] | None = None,
    variant: str | Iterable[str] | None = None,
    lateness: timedelta | float | str | None = None,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    cache: bool | None = None,
    cache_max_bytes: int | None = None,
    strict: bool = False,
    cls: type[ScanPlan] = ScanPlan,
) -> ScanPlan:
    """A plan over a capture tree (see :func:`captureq.open`, which returns a CaptureTree)."""
    plan = cls(
        uri,
        labels_uri=labels,
        storage_options=storage_options,
        label_storage_options=label_storage_options,
        options=options or DecodeOptions(),
        batch_bytes=batch_bytes,
        cache=cache,
        cache_max_bytes=cache_max_bytes,
        strict=strict,
    )
    return plan._narrow({"start": start, "end": end, "endpoint": endpoint, "variant": variant,
                         "lateness": lateness})
