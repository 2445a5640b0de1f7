"""Parsing of user-supplied times: everything becomes an aware UTC ``datetime``; and which hour
folders a time window lists."""

from __future__ import annotations

import os
import re
from datetime import date, datetime, timedelta, timezone

from .errors import ConfigError

UTC = timezone.utc
HOUR = timedelta(hours=1)
#: How far an object's hour folder may lie from its records' own hours, either way (a buffer
#: flushed after the hour turned; an object named for its first record): the window
#: ``[start, end)`` lists the folders ``[start - lateness, end + lateness)``
#: (see :mod:`captureq.window`). ``CAPTUREQ_LATENESS`` overrides it.
LATENESS = HOUR
LATENESS_ENV = "CAPTUREQ_LATENESS"
MAX_LATENESS = timedelta(days=365)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)", re.I)


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


def to_lateness(value: timedelta | float | int | str | None) -> timedelta:
    """How late an object may be written, as a ``timedelta``: a ``timedelta``, a number of hours,
    or text such as ``"90m"``, ``"2h"``, ``"1d"``, ``"30s"`` or ``"1.5"`` (hours). ``None`` is
    ``CAPTUREQ_LATENESS`` when set, else :data:`LATENESS` (one hour).

    >>> to_lateness("90m"), to_lateness(2), to_lateness("0")
    (datetime.timedelta(seconds=5400), datetime.timedelta(seconds=7200), datetime.timedelta(0))
    """
    source = "lateness"
    if value is None:
        value = os.environ.get(LATENESS_ENV, "").strip() or LATENESS
        source = LATENESS_ENV
    if isinstance(value, timedelta):
        out = value
    else:
        seconds = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value) * 3600
        elif isinstance(value, str) and (m := _DURATION.fullmatch(value.strip())):
            seconds = float(m.group(1)) * _UNITS[(m.group(2) or "h").lower()]
        if seconds is None or seconds != seconds:  # not a duration, or NaN
            raise ConfigError(
                f"{source} {value!r} is not a duration; give hours (2, 1.5) or a number with a "
                "unit (90m, 2h, 1d, 30s), e.g. --lateness 2h"
            )
        # clamped first: a timedelta of a huge number overflows
        out = timedelta(seconds=max(-1.0, min(seconds, MAX_LATENESS.total_seconds() + 1)))
    if out < timedelta(0):
        raise ConfigError(f"{source} {value!r} is negative; give 0 or more (e.g. 1h)")
    if out > MAX_LATENESS:
        raise ConfigError(f"{source} {value!r} is more than a year; give at most 365d, or "
                          "no --start/--end to read the whole tree")
    return out


def listing_bounds(start: datetime | None, end: datetime | None, lateness: timedelta
                   ) -> tuple[datetime | None, datetime | None]:
    """The hour folders ``h`` with ``first <= h < stop`` that can hold a row of ``[start, end)``
    when objects lie up to ``lateness`` from their records' hours, either way: ``first`` is the
    hour of ``start - lateness``, ``stop`` is ``end + lateness`` (``None`` stays open).

    >>> a, b = listing_bounds(to_utc("2026-01-01T04"), to_utc("2026-01-01T05"), HOUR)
    >>> a.hour, b.hour
    (3, 6)
    """
    first = None if start is None else floor_hour(start - lateness)
    stop = None if end is None else end + lateness
    return first, stop


_ISO_DURATION = re.compile(
    r"([+-])?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?",
    re.I,
)


def to_iso_duration(text: str) -> timedelta:
    """An ISO 8601 duration such as Model Monitor's ``StartTimeOffset`` (``-P1D``, ``-PT1H``,
    ``P1DT2H30M``) as a ``timedelta``. Weeks, days, hours, minutes and seconds; years and
    months have no fixed length and are refused.

    >>> to_iso_duration("-P1D"), to_iso_duration("PT1H30M")
    (datetime.timedelta(days=-1), datetime.timedelta(seconds=5400))
    """
    m = _ISO_DURATION.fullmatch(str(text).strip())
    if m is None or not any(m.group(i) for i in range(2, 7)):
        raise ConfigError(
            f"cannot read {text!r} as an ISO 8601 duration; write e.g. -P1D (one day back), "
            "-PT0H, PT1H30M, P1W (weeks, days, hours, minutes, seconds; no years or months)"
        )
    sign, weeks, days, hours, minutes, seconds = m.groups()
    whole, _, fraction = (seconds or "0").partition(".")
    d = timedelta(
        weeks=int(weeks or 0), days=int(days or 0), hours=int(hours or 0),
        minutes=int(minutes or 0), seconds=int(whole), microseconds=int((fraction + "000000")[:6]),
    )
    return -d if sign == "-" else d


def format_iso_duration(d: timedelta) -> str:
    """``d`` as ISO 8601 text that :func:`to_iso_duration` reads back exactly.

    >>> format_iso_duration(-timedelta(days=1)), format_iso_duration(timedelta(0))
    ('-P1D', 'PT0S')
    """
    sign = "-" if d < timedelta(0) else ""
    d = abs(d)
    days, rest = d.days, d.seconds
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    time = "".join(
        f"{v}{u}" for v, u in ((hours, "H"), (minutes, "M")) if v
    )
    if seconds or d.microseconds:
        time += f"{seconds}.{d.microseconds:06d}S" if d.microseconds else f"{seconds}S"
    text = f"{sign}P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")
    return text if text not in ("P", "-P") else "PT0S"
