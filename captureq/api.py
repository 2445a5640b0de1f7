"""The Python API: open a capture tree, narrow it, ask for tables or SQL.

>>> import captureq
>>> cq = captureq.open("tests/data/corpus/seed-churn")          # nothing is read yet
>>> cq.captures().num_rows
3
>>> cq.sql("select count(*) as n from inputs").to_arrow()["n"][0].as_py()   # doctest: +SKIP
3
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from .options import DecodeOptions
from .plan import Result, ScanPlan, Tables, Window, open_plan
from .read import DEFAULT_BATCH_BYTES

__all__ = ["CaptureTree", "Result", "Tables", "Window", "open"]


class CaptureTree(ScanPlan):
    """A capture tree (and optionally its ground-truth tree), lazily read.

    Create one with :func:`captureq.open`. It is a :class:`~captureq.plan.ScanPlan` (filters with
    :meth:`where`, tables, :meth:`sql`; nothing is read until asked, and then only what is
    needed) plus export, monitoring and the report.
    """

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

    def _register_metrics(self, metrics) -> None:
        self._add_view("metrics", metrics)

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
    lateness: timedelta | float | str | None = None,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    cache: bool | None = None,
    cache_max_bytes: int | None = None,
    strict: bool = False,
) -> CaptureTree:
    """Open a capture tree (local path, ``s3://bucket/prefix`` or any fsspec URL).

    ``labels`` is the ground-truth tree; ``storage_options`` go to fsspec (e.g.
    ``{"anon": True}`` or ``{"client_kwargs": {"endpoint_url": ...}}`` for S3). ``cache``:
    answer :meth:`~captureq.plan.ScanPlan.sql` from the tree's Parquet cache when it is fresh,
    and fill it in the background otherwise (default on, ``CAPTUREQ_NO_CACHE=1`` turns it off);
    ``cache_max_bytes`` bounds all caches together (least recently used out).

    An object that cannot be read (a storage error or a timeout that outlived the retry policy
    of :mod:`captureq.storage`, an object deleted or changing while read) is left out, with an
    :class:`~captureq.errors.UnreadableWarning` and in ``Result.unreadable``; ``strict=True``
    raises :class:`~captureq.errors.UnreadableError` instead (and an export, once it has
    committed what it could read).
    ``start``/``end`` keep the rows with ``start ≤ inference_time < end``; ``lateness`` (a
    ``timedelta``, hours, or ``"90m"``; default one hour, or ``CAPTUREQ_LATENESS``) is how far an
    object's hour folder may lie from its records' hours, so the listing covers the folders
    ``[start - lateness, end + lateness)``. Storage options given for a local path (other than
    captureq's ``retries``/``timeout``/``deadline``) are ignored, with a ``StorageOptionWarning``.
    """
    from .storage import warn_unused

    warn_unused(uri, storage_options)
    warn_unused(labels, label_storage_options)
    return open_plan(
        uri,
        labels=labels,
        storage_options=storage_options,
        label_storage_options=label_storage_options,
        options=options,
        start=start,
        end=end,
        endpoint=endpoint,
        variant=variant,
        lateness=lateness,
        batch_bytes=batch_bytes,
        cache=cache,
        cache_max_bytes=cache_max_bytes,
        strict=strict,
        cls=CaptureTree,
    )
