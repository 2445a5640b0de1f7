"""ISO 8601 durations (Model Monitor's StartTimeOffset/EndTimeOffset, ``-P1D``) and the
schedule's ``--delay``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from captureq.errors import ConfigError
from captureq.timeutil import format_iso_duration, to_iso_duration


@pytest.mark.parametrize(
    "text, expected",
    [
        ("-P1D", -timedelta(days=1)),
        ("-PT0H", timedelta(0)),
        ("-P8D", -timedelta(days=8)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("-P1W", -timedelta(weeks=1)),
        ("PT0.5S", timedelta(seconds=0.5)),
        (" -pt2h ", -timedelta(hours=2)),
    ],
)
def test_model_monitor_offsets_read_as_timedeltas(text, expected):
    assert to_iso_duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "-P", "1D", "P1H", "PT1D", "P1M", "P1Y", "P1DT", "x"])
def test_malformed_durations_say_what_is_accepted(text):
    with pytest.raises(ConfigError, match="ISO 8601 duration"):
        to_iso_duration(text)


@given(
    st.integers(min_value=-10_000, max_value=10_000),
    st.integers(min_value=0, max_value=86_399),
    st.integers(min_value=0, max_value=999_999),
)
def test_a_duration_round_trips_through_its_text(days, seconds, micros):
    d = timedelta(days=days, seconds=seconds, microseconds=micros)
    assert to_iso_duration(format_iso_duration(d)) == d


@given(st.text(max_size=20))
def test_junk_raises_only_config_errors(text):
    try:
        to_iso_duration(text)
    except ConfigError:
        pass
