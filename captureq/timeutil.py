"""Parsing of user-supplied times: everything becomes an aware UTC ``datetime``."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from .errors import ConfigError

UTC = timezone.utc
HOUR = timedelta(hours=1)
#: Records are sometimes written into the previous hour's object: list one hour before ``start``
#: (see :mod:`captureq.window`).
SPILL = HOUR


def to_utc(value: datetime | date | str | None) -> datetime | None:
    """Turn a datetime, date or ISO 8601 string into an aware UTC datetime.

    Naive values are taken to be UTC, as capture hours are.

    >>> to_utc("2022-02-14T17")
    datetime.datetime(2022, 2, 14, 17, 0, tzinfo=datetime.timezone.utc)
    >>> to_utc("2022-02-14T19:30:00+02:00").hour
    17
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        if len(text) == 13 and text[10] in "T ":  # 2022-02-14T17
            text += ":00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError(
                f"cannot read {value!r} as a time; use ISO 8601 in UTC, e.g. 2022-02-14T17:00Z"
            ) from None
    else:
        raise ConfigError(f"expected a datetime, date or ISO 8601 string, got {type(value).__name__}")
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def floor_hour(dt: datetime) -> datetime:
    return dt.replace(minute=0, second=0, microsecond=0)


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """Every hour ``h`` with ``floor(start) <= h < end``."""
    out = []
    h = floor_hour(start)
    while h < end:
        out.append(h)
        h += HOUR
    return out


def listing_start(start: datetime | None) -> datetime | None:
    """The first hour folder that can hold a row at or after ``start`` (the hour before its own:
    see :data:`SPILL`).

    >>> listing_start(to_utc("2026-01-01T06:30")).isoformat()
    '2026-01-01T05:00:00+00:00'
    """
    return None if start is None else floor_hour(start) - SPILL
