"""The time window ``start ≤ inference_time < end``: which hour folders to list, which rows to keep.

A window is exact to the microsecond. Hour folders only narrow the listing: an object's folder
and its records' times may differ either way (a buffer flushed after the hour turned lands in
the next hour's folder; an object named for its first record holds later records), by at most
the *lateness* (default one hour, :func:`captureq.timeutil.to_lateness`). So the scanner lists
the hour folders ``[start - lateness, end + lateness)``
(:func:`captureq.timeutil.listing_bounds`), and :func:`filter_captures` keeps exactly the rows
inside the window. Every reader (Python API, CLI, cache, export, monitor, report, Spark) lists
through :meth:`captureq.plan.ScanPlan.scan` or the same bounds, and goes through
:func:`filter_captures`, called by :func:`captureq.pipeline.process_captures`.

What follows a capture that falls outside the window:

* its input/output records and payload quarantine rows are never produced (decoding happens
  after the filter);
* a ``line`` quarantine row (no parseable time) stays with the hour file it came from: it
  counts at the start of that hour (``yyyy/mm/dd/hh`` → ``hh:00:00``), so it is kept when that
  time is in the window and counted in ``outside_window`` otherwise; adjacent windows count it
  exactly once;
* ``file`` quarantine rows (an unreadable object) are always kept: the object may hold rows of
  the window;
* labels are not filtered by time (they join captures by id).

>>> import pyarrow as pa
>>> from datetime import datetime, timezone
>>> t = pa.table({"inference_time": pa.array(
...     [datetime(2026, 1, 1, 6, 29, 59), datetime(2026, 1, 1, 6, 30), datetime(2026, 1, 1, 7)],
...     pa.timestamp("us", tz="UTC"))})
>>> kept, outside = filter_captures(t, "2026-01-01T06:30", "2026-01-01T07")
>>> kept.num_rows, outside
(1, 2)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from . import schema

# the listing half of the window (LATENESS, listing_bounds) lives in timeutil: the scanner uses
# it and imports no pyarrow; both are re-exported here
from .timeutil import LATENESS, listing_bounds, to_lateness, to_utc  # noqa: F401


def bounds(start: Any, end: Any) -> tuple[datetime | None, datetime | None]:
    """``start``/``end`` as aware UTC datetimes (``None`` stays open)."""
    return to_utc(start), to_utc(end)


Interval = tuple[datetime | None, datetime | None]


def hour_in_window(hour: datetime | None, start: datetime | None, end: datetime | None,
                   exclude: tuple[Interval, ...] = ()) -> bool:
    """True when the hour folder's start time ``hour`` lies in ``[start, end)`` (and in none of
    the ``exclude`` intervals): where a line without a parseable time counts, so that adjacent
    windows count it exactly once."""
    if hour is None:
        return True
    if any(_inside(hour, s, e) for s, e in exclude):
        return False
    return _inside(hour, start, end)


def _inside(t: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or t >= start) and (end is None or t < end)


def covers(intervals: Iterable[Interval], start: datetime | None, end: datetime | None) -> bool:
    """True when one of ``intervals`` holds all of ``[start, end)`` (``None`` is unbounded)."""
    for s, e in intervals:
        if (s is None or (start is not None and s <= start)) and (
            e is None or (end is not None and e >= end)
        ):
            return True
    return False


def union(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    """``intervals`` merged into disjoint, sorted intervals (touching ones joined; ``None`` is
    unbounded), so that :func:`covers` sees ``[a, b) ∪ [b, c)`` as ``[a, c)``.

    >>> from datetime import datetime as d
    >>> union([(d(2026, 1, 1, 7), d(2026, 1, 1, 8)), (d(2026, 1, 1, 6), d(2026, 1, 1, 7))])
    ((datetime.datetime(2026, 1, 1, 6, 0), datetime.datetime(2026, 1, 1, 8, 0)),)
    """
    lo = datetime.min.replace(tzinfo=None)
    ordered = sorted(intervals, key=lambda i: (i[0] is not None, _naive(i[0]) if i[0] else lo))
    out: list[list] = []
    for s, e in ordered:
        if out and (out[-1][1] is None or (s is not None and _naive(s) <= _naive(out[-1][1]))
                    or s is None):
            last = out[-1]
            if last[1] is not None and (e is None or _naive(e) > _naive(last[1])):
                last[1] = e
        else:
            out.append([s, e])
    return tuple((s, e) for s, e in out)


def _naive(t: datetime) -> datetime:
    return t.replace(tzinfo=None) - (t.utcoffset() or (t - t))


def complement(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    """The times in none of ``intervals`` (as disjoint intervals); ``()`` when they cover all."""
    out, prev = [], None
    merged = union(intervals)
    if not merged:
        return ((None, None),)
    for i, (s, e) in enumerate(merged):
        if i == 0:
            if s is not None:
                out.append((None, s))
        else:
            out.append((prev, s))
        prev = e
    if prev is not None:
        out.append((prev, None))
    return tuple(out)


def _range_mask(times, start: datetime | None, end: datetime | None):
    mask = None
    if start is not None:
        mask = pc.greater_equal(times, pa.scalar(start, schema.TIMESTAMP))
    if end is not None:
        below = pc.less(times, pa.scalar(end, schema.TIMESTAMP))
        mask = below if mask is None else pc.and_(mask, below)
    if mask is None:
        return pc.is_valid(times)
    return pc.fill_null(mask, False)


def window_mask(times: pa.Array | pa.ChunkedArray, start: Any, end: Any,
                exclude: tuple[Interval, ...] = ()) -> pa.Array | None:
    """Boolean mask of ``start ≤ times < end`` and outside every ``exclude`` interval (nulls are
    outside), or ``None`` when nothing is filtered."""
    start, end = bounds(start, end)
    if start is None and end is None and not exclude:
        return None
    mask = _range_mask(times, start, end)
    for s, e in exclude:
        mask = pc.and_not(mask, _range_mask(times, s, e))
    return mask


def filter_captures(
    table: pa.Table, start: Any, end: Any, column: str = "inference_time",
    exclude: tuple[Interval, ...] = (),
) -> tuple[pa.Table, int]:
    """Rows of ``table`` with ``start ≤ column < end`` (and in no ``exclude`` interval: rows an
    earlier windowed export already wrote), and how many were left out."""
    mask = window_mask(table.column(column), start, end, exclude)
    if mask is None:
        return table, 0
    kept = table.filter(mask)
    return kept, table.num_rows - kept.num_rows


def filter_line_quarantine(
    quarantine: pa.Table, margin_urls: list[str]
) -> tuple[pa.Table, int]:
    """Drop the ``line`` quarantine rows of the files in ``margin_urls`` (whose hour starts
    outside the window, see :func:`hour_in_window`); count them."""
    if not margin_urls or not quarantine.num_rows:
        return quarantine, 0
    drop = pc.and_(
        pc.equal(quarantine.column("stage"), "line"),
        pc.is_in(quarantine.column("source_file"), value_set=pa.array(margin_urls, pa.string())),
    )
    drop = pc.fill_null(drop, False)
    kept = quarantine.filter(pc.invert(drop))
    return kept, quarantine.num_rows - kept.num_rows


def partial_files(captures: pa.Table, line_quarantine: pa.Table, files, start, end,
                  exclude: tuple[Interval, ...] = (),
                  covered: tuple[Interval, ...] | None = None) -> set[str]:
    """URLs of ``files`` holding a line in none of the ``covered`` intervals (default: neither
    ``[start, end)`` nor an ``exclude`` interval): the files a windowed export has read only in
    part (vectorized over the rows)."""
    covered = ((start, end), *exclude) if covered is None else tuple(covered)
    left = window_mask(captures.column("inference_time"), None, None, covered)
    out = set(pc.unique(captures.column("source_file").filter(left)).to_pylist())
    hours_out = [f.url for f in files if not any(hour_in_window(f.hour, s, e) for s, e in covered)]
    if hours_out and line_quarantine.num_rows:
        q = line_quarantine.filter(pc.fill_null(pc.and_(
            pc.equal(line_quarantine.column("stage"), "line"),
            pc.is_in(line_quarantine.column("source_file"),
                     value_set=pa.array(hours_out, pa.string())),
        ), False))
        out |= set(pc.unique(q.column("source_file")).to_pylist())
    return out


def follow_captures(all_captures: pa.Table, kept: pa.Table, rejected: dict, embedded,
                    quarantine: pa.Table) -> tuple[dict, pa.Table | None, pa.Table]:
    """What belongs to the captures outside the window leaves with them: payload failures
    (``rejected``, ``(row, reason)`` re-numbered to the rows of ``kept``), embedded label rows
    and quarantine rows keyed by their ``capture_id``."""
    keep = pc.is_in(all_captures.column("capture_id"), value_set=kept.column("capture_id"))
    keep_np = keep.to_numpy(zero_copy_only=False)
    new_row = keep_np.cumsum() - 1
    rejected = {side: [(int(new_row[r]), why) for r, why in rows if keep_np[r]]
                for side, rows in rejected.items()}  # a few failures: the error path
    kept_ids = kept.column("capture_id")
    if embedded is not None and embedded.num_rows:
        embedded = embedded.filter(pc.is_in(embedded.column("label_id"), value_set=kept_ids))
    if quarantine.num_rows:
        ids = quarantine.column("capture_id")
        gone = pc.and_(pc.is_valid(ids), pc.invert(pc.is_in(ids, value_set=kept_ids)))
        quarantine = quarantine.filter(pc.invert(pc.fill_null(gone, False)))
    return rejected, embedded, quarantine


def to_json(start: datetime | None, end: datetime | None) -> list[str | None]:
    """``[start, end]`` as ISO strings (``None`` open), as export commit records store it."""
    return [None if t is None else t.isoformat() for t in (start, end)]


def from_json(pair: list[str | None]) -> Interval:
    s, e = pair
    return to_utc(s), to_utc(e)
