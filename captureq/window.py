"""The time window ``start ≤ inference_time < end``: which hour folders to list, which rows to keep.

A window is exact to the microsecond. Hour folders only narrow the listing: the scanner lists
every hour folder that can hold a row of the window, i.e. the hours from ``floor(start) - 1 h``
(SageMaker sometimes writes a record into the object of the hour before its own) up to ``end``;
:func:`filter_captures` then keeps exactly the rows inside the window. Every reader (Python API,
CLI, monitor, report, Spark) goes through :func:`filter_captures`, called by
:func:`captureq.pipeline.process_captures`.

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

from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from . import schema
from .timeutil import HOUR, floor_hour, to_utc

#: Records are sometimes written into the previous hour's object: list one hour before ``start``.
SPILL = HOUR


def bounds(start: Any, end: Any) -> tuple[datetime | None, datetime | None]:
    """``start``/``end`` as aware UTC datetimes (``None`` stays open)."""
    return to_utc(start), to_utc(end)


def listing_start(start: datetime | None) -> datetime | None:
    """The first hour folder that can hold a row at or after ``start``."""
    return None if start is None else floor_hour(start) - SPILL


def hour_in_window(hour: datetime | None, start: datetime | None, end: datetime | None) -> bool:
    """True when the hour folder's start time ``hour`` lies in ``[start, end)``: where a line
    without a parseable time counts, so that adjacent windows count it exactly once."""
    if hour is None:
        return True
    if start is not None and hour < start:
        return False
    return not (end is not None and hour >= end)


def window_mask(times: pa.Array | pa.ChunkedArray, start: Any, end: Any) -> pa.Array | None:
    """Boolean mask of ``start ≤ times < end`` (nulls are outside), or ``None`` for no window."""
    start, end = bounds(start, end)
    if start is None and end is None:
        return None
    mask = None
    if start is not None:
        mask = pc.greater_equal(times, pa.scalar(start, schema.TIMESTAMP))
    if end is not None:
        below = pc.less(times, pa.scalar(end, schema.TIMESTAMP))
        mask = below if mask is None else pc.and_(mask, below)
    return pc.fill_null(mask, False)


def filter_captures(
    table: pa.Table, start: Any, end: Any, column: str = "inference_time"
) -> tuple[pa.Table, int]:
    """Rows of ``table`` with ``start ≤ column < end``, and how many were left out."""
    mask = window_mask(table.column(column), start, end)
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
