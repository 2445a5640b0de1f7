"""The Python API: open a capture tree, narrow it, ask for tables or SQL.

>>> import captureq
>>> cq = captureq.open("../shared/corpus/seed-churn")            # nothing is read yet
>>> cq.captures().num_rows                                       # doctest: +SKIP
3
>>> cq.sql("select count(*) as n from inputs").to_arrow()["n"][0].as_py()   # doctest: +SKIP
3
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from . import schema, views
from .decode import DecodeOptions
from .decode.common import concat_tables
from .errors import QueryError
from .pipeline import Counts, run_captures, run_labels, unify_types
from .read import DEFAULT_BATCH_BYTES
from .scan import CAPTURE, LABELS, ScanResult, Scanner
from .timeutil import to_utc

if TYPE_CHECKING:  # pragma: no cover
    import duckdb


class Result:
    """The answer to a query: convert it with ``to_arrow()``, ``to_polars()``, ``to_pandas()``."""

    def __init__(self, table: pa.Table):
        self._table = table

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


def _tuple(value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass
class Tables:
    """Everything read for one window, plus the counts that reconcile."""

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

    def as_dict(self) -> dict[str, pa.Table]:
        return {name: getattr(self, name) for name in (*schema.TABLES, "pairs")}


@dataclass
class CaptureTree:
    """A capture tree (and optionally its ground-truth tree), lazily read.

    Create one with :func:`captureq.open`. Filters (:meth:`where`) return a narrowed tree;
    nothing is listed or read until a table, a query or an export is asked for.
    """

    uri: str
    labels_uri: str | None = None
    storage_options: dict | None = None
    label_storage_options: dict | None = None
    options: DecodeOptions = field(default_factory=DecodeOptions)
    window: Window = field(default_factory=Window)
    batch_bytes: int = DEFAULT_BATCH_BYTES
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        w = self.window
        parts = [f"uri={self.uri!r}"]
        if self.labels_uri:
            parts.append(f"labels={self.labels_uri!r}")
        for name in ("start", "end", "endpoint", "variant"):
            value = getattr(w, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        return f"CaptureTree({', '.join(parts)})"

    # -- narrowing ------------------------------------------------------------------------
    def where(
        self,
        *,
        start: Any = None,
        end: Any = None,
        endpoint: str | Iterable[str] | None = None,
        variant: str | Iterable[str] | None = None,
    ) -> CaptureTree:
        """A tree narrowed to the rows with ``start ≤ inference_time < end`` (UTC, exact to the
        microsecond) and the given endpoints/variants (names or shell-style patterns).

        >>> captureq.open("capture").where(start="2026-01-01T06:30", end="2026-01-01T07")  # doctest: +SKIP
        CaptureTree(uri='capture', start=datetime.datetime(2026, 1, 1, 6, 30, ...), ...)
        """
        w = self.window
        new = Window(
            start=to_utc(start) if start is not None else w.start,
            end=to_utc(end) if end is not None else w.end,
            endpoint=_tuple(endpoint) if endpoint is not None else w.endpoint,
            variant=_tuple(variant) if variant is not None else w.variant,
        )
        return replace(self, window=new, _cache={})

    def _narrow(self, kw: dict) -> CaptureTree:
        return self.where(**kw) if any(v is not None for v in kw.values()) else self

    # -- listing ----------------------------------------------------------------------------
    def scanner(self) -> Scanner:
        return Scanner(self.uri, layout=CAPTURE, storage_options=self.storage_options)

    def scan(self) -> ScanResult:
        """List the capture files that can hold rows of this tree's window (cached).

        The hour folders overlapping ``[start, end)`` and the hour before ``start``, whose
        objects may hold records of ``start``'s hour; reading keeps exactly the rows with
        ``start ≤ inference_time < end`` (:mod:`captureq.window`).
        """
        if "scan" not in self._cache:
            s = self.scanner()
            w = self.window
            self._cache["scan"] = (
                s,
                s.scan(start=w.start, end=w.end, endpoint=w.endpoint, variant=w.variant,
                       spill=True),
            )
        return self._cache["scan"][1]

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
            self._cache["label_scan"] = (s, s.scan(start=self.window.start))
        return self._cache["label_scan"][1]

    # -- reading ----------------------------------------------------------------------------
    def load(self, progress: Callable[[Counts], None] | None = None) -> Tables:
        """Read and decode every file in the window into Arrow tables (cached).

        ``progress`` is called with each batch's :class:`~captureq.pipeline.Counts` (files,
        bytes, lines, records) as it is decoded: the CLI draws its progress bar from it.
        """
        if "tables" in self._cache:
            return self._cache["tables"]
        scan = self.scan()
        fs = self._cache["scan"][0].fs
        caps, ins, outs, pairs, qs, embedded = [], [], [], [], [], []
        counts = Counts()
        w = self.window
        results = list(run_captures(fs, scan.files, self.options, batch_bytes=self.batch_bytes,
                                    pairs=True, start=w.start, end=w.end))
        unify_types(results, pairs=True)  # one type per column per endpoint over the whole read
        for r in results:
            caps.append(r.captures)
            ins.append(r.inputs)
            outs.append(r.outputs)
            pairs.append(r.pairs)
            qs.append(r.quarantine)
            counts.add(r.counts)
            embedded.append(r.labels)
            if progress is not None:
                progress(r.counts)
        labels, label_counts, label_scan = embedded, Counts(), self.scan_labels()
        if label_scan is not None:
            lfs = self._cache["label_scan"][0].fs
            for r in run_labels(lfs, label_scan.files, batch_bytes=self.batch_bytes):
                labels.append(r.labels)
                qs.append(r.quarantine)
                label_counts.add(r.counts)
                if progress is not None:
                    progress(r.counts)
        tables = Tables(
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
        )
        self._cache["tables"] = tables
        return tables

    def captures(self, **window) -> pa.Table:
        """The ``captures`` table (one row per request) for the window, as Arrow."""
        return self._narrow(window).load().captures

    def inputs(self, **window) -> pa.Table:
        """The ``inputs`` table (one row per input record)."""
        return self._narrow(window).load().inputs

    def outputs(self, **window) -> pa.Table:
        """The ``outputs`` table (one row per output record)."""
        return self._narrow(window).load().outputs

    def labels(self) -> pa.Table:
        """The ``labels`` table (ground truth), empty when no labels URI was given."""
        return self.load().labels

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
        if not self.labels_uri and not self.load().labels.num_rows:
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
        tables = self.load().as_dict()
        import duckdb  # imported once the files are read: reading starts sooner

        con = duckdb.connect()
        views.register(con, tables)
        if not allow_external_access:
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        return con

    def _connection(self, allow_external_access: bool = False) -> duckdb.DuckDBPyConnection:
        key = "con_external" if allow_external_access else "con"
        con = self._cache.get(key)
        if con is None:
            con = self._cache[key] = self.connect(allow_external_access=allow_external_access)
            for name, table in self._cache.get("extra_views", {}).items():  # drift, metrics
                _register_view(con, name, table)
        return con

    def sql(self, query: str, params: list | dict | None = None, *,
            allow_external_access: bool = False) -> Result:
        """Run SQL over the views (captures, inputs, outputs, labels, quarantine, predictions).

        The SQL cannot read or write files unless ``allow_external_access=True`` (see
        :meth:`connect`).

        >>> cq.sql("select count(*) as n from captures").to_pylist()   # doctest: +SKIP
        [{'n': 3}]
        """
        con = self._connection(allow_external_access)
        import duckdb  # already loaded by the connection: costs nothing here

        try:
            if params is not None:
                return Result(_to_arrow(con.sql(query, params=params)))  # a relation: no copy
            return Result(_to_arrow(con.sql(query)))
        except (duckdb.PermissionException, duckdb.InvalidInputException) as exc:
            if allow_external_access or not _is_lockdown(exc):
                raise
            raise QueryError(
                f"{exc}. captureq runs SQL over in-memory tables without file, network or "
                "extension access; pass allow_external_access=True (CLI: --allow-external-access) "
                "for SQL that reads or writes files on purpose"
            ) from exc

    def export(self, out: str, *, out_storage_options: dict | None = None, **kwargs):
        """Write every table to hive-partitioned Parquet under ``out`` (incremental: new and
        changed source files only). ``out_storage_options`` are the destination's fsspec
        options (default: this tree's when both URIs use the same protocol); see
        :func:`captureq.export.export`."""
        from .export import export

        return export(self, out, out_storage_options=out_storage_options, **kwargs)

    # -- monitoring (captureq.monitor) ------------------------------------------------------
    def baseline(self, out: str | None = None, **kwargs):
        """Model Monitor statistics.json + constraints.json of this window's inputs (one endpoint)."""
        from .monitor import baseline

        return baseline(self, out, **kwargs)

    def monitor(self, baseline, out: str | None = None, **kwargs):
        """Check this window against a baseline; the drift table becomes the ``drift`` view."""
        from .monitor import monitor

        result = monitor(self, baseline, out, **kwargs)
        self._add_view("drift", result.drift)
        self._register_metrics(result.metrics)
        return result

    def model_quality(self, **kwargs):
        """Model-quality metrics per hour/day from the ``predictions`` view (needs ``labels=``).

        ``baseline_out=DIR`` also writes Model Monitor's model-quality statistics.json and
        constraints.json; ``constraints=DIR`` checks every window against them; ``out=DIR``
        writes the window's files, hourly violations and metrics.parquet. The Model Monitor
        metrics become the ``metrics`` view."""
        from .monitor import model_quality

        result = model_quality(self, **kwargs)
        self._register_metrics(result.cloudwatch_metrics)
        return result

    def _register_metrics(self, metrics: pa.Table) -> None:
        self._add_view("metrics", metrics)

    def _add_view(self, name: str, table: pa.Table) -> None:
        """Make ``table`` the ``name`` view (sql/<name>.sql) of every connection, now and later."""
        self._cache.setdefault("extra_views", {})[name] = table
        for key in ("con", "con_external"):
            if key in self._cache:
                _register_view(self._cache[key], name, table)
        self._connection()

    def estimate_quality(self, **kwargs):
        """Quality estimated without labels (CBPE / DLE, :mod:`captureq.monitor.estimate`);
        the result becomes the ``estimated_quality`` view."""
        from .monitor.estimate import estimate_quality

        return estimate_quality(self, **kwargs)

    # -- the report (captureq.report) -------------------------------------------------------
    def report(self, baseline, out: str | None = None, **kwargs) -> str:
        """The self-contained HTML monitoring report against ``baseline`` (written to ``out``
        too). ``captureq.report.build_report(cq, baseline)`` gives the figures as altair charts."""
        from .report import build_report

        rep = build_report(self, baseline, **kwargs)
        if out is not None:
            rep.write(out)
        return rep.to_html()


def _is_lockdown(exc: Exception) -> bool:
    text = str(exc)
    return "disabled by configuration" in text or "disabled through configuration" in text \
        or "configuration has been locked" in text


def _register_view(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    con.register(views.SOURCE_PREFIX + name, table)
    con.execute(views.view_sql(name))


def _to_arrow(rel) -> pa.Table:
    """Arrow result of a DuckDB relation/cursor across DuckDB versions (to_arrow_table is 1.4+)."""
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return fetch()


def _records(parts: list[pa.Table]) -> pa.Table:
    parts = [p for p in parts if p.num_rows or p.num_columns > len(schema.RECORD_KEY_NAMES)]
    if not parts:
        return schema.RECORD_KEYS.empty_table()
    return concat_tables(parts)


def open(
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
    batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> CaptureTree:
    """Open a capture tree (local path, ``s3://bucket/prefix`` or any fsspec URL).

    ``labels`` is the ground-truth tree; ``storage_options`` go to fsspec (e.g.
    ``{"anon": True}`` or ``{"client_kwargs": {"endpoint_url": ...}}`` for S3).
    """
    tree = CaptureTree(
        uri,
        labels_uri=labels,
        storage_options=storage_options,
        label_storage_options=label_storage_options,
        options=options or DecodeOptions(),
        batch_bytes=batch_bytes,
    )
    return tree._narrow({"start": start, "end": end, "endpoint": endpoint, "variant": variant})
