"""Categorical drift is quiet on noise: the hour's category counts must differ significantly
from the baseline's (a chi-square test at the configured level) as well as by the distance."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from captureq.monitor import baseline, monitor
from captureq.monitor.drift import chi2_homogeneity, chi2_sf

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
HOURS = 24 * 30
PER_HOUR = 64


def _baseline(probs: list[float], n: int = 5000, seed: int = 7, **distribution):
    rng = np.random.default_rng(seed)
    cats = [f"c{i}" for i in range(len(probs))]
    table = pa.table({"plan": pa.array(rng.choice(cats, n, p=probs))})
    config = {"distribution_constraints": distribution} if distribution else None
    return baseline(table, monitoring_config=config)


def _stream(probs: list[float], seed: int, hours: int = HOURS) -> pa.Table:
    """About PER_HOUR records an hour (Poisson), each drawn from ``probs``."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(PER_HOUR, hours)
    hour = np.repeat(np.arange(hours), counts)
    seconds = hour * 3600 + rng.integers(0, 3600, len(hour))
    times = np.datetime64(START.replace(tzinfo=None), "us") + seconds.astype("m8[s]")
    cats = [f"c{i}" for i in range(len(probs))]
    return pa.table(
        {
            "inference_time": pa.array(times, pa.timestamp("us", "UTC")),
            "plan": pa.array(rng.choice(cats, len(hour), p=probs)),
        }
    )


def _hourly_drift_rate(result) -> float:
    drift = result.drift.to_pydict()
    hourly = [d for d, g in zip(drift["drift"], drift["granularity"]) if g == "hour"]
    assert len(hourly) == HOURS
    return sum(hourly) / len(hourly)


@pytest.mark.parametrize("probs", [[0.6, 0.4], [0.4, 0.3, 0.2, 0.1]])
def test_a_stationary_categorical_stream_rarely_drifts(probs):
    base = _baseline(probs)
    rate = _hourly_drift_rate(monitor(_stream(probs, seed=11), base))
    assert rate <= 0.001 + 0.005  # the default level, 0.001, plus a few hours of 720 at most


@pytest.mark.parametrize("level", [0.01, 0.05])
def test_the_false_alarm_rate_is_the_level_without_a_distance_threshold(level):
    """With the distance threshold at 0 the chi-square test alone decides: its false-alarm
    rate on a stationary stream is the level."""
    probs = [0.4, 0.3, 0.2, 0.1]
    base = _baseline(probs, categorical_comparison_threshold=0.0)
    rate = _hourly_drift_rate(monitor(_stream(probs, seed=12), base, robust_alpha=level))
    assert rate <= level + 0.02


def test_a_real_shift_of_the_category_mix_is_caught_in_most_hours():
    base = _baseline([0.6, 0.4])
    result = monitor(_stream([0.3, 0.7], seed=13), base)
    assert _hourly_drift_rate(result) >= 0.9
    window = [r for r in result.constraint_violations["violations"]
              if r["constraint_check_type"] == "baseline_drift_check"]
    assert window and window[0]["description"].startswith("Categorical distance: ")


def test_simple_comparison_keeps_the_distance_alone():
    probs = [0.4, 0.3, 0.2, 0.1]
    base = _baseline(probs, comparison_method="Simple")
    assert _hourly_drift_rate(monitor(_stream(probs, seed=11), base)) > 0.02


def test_the_drift_rows_carry_the_chi_square_p_value():
    base = _baseline([0.6, 0.4])
    d = monitor(_stream([0.6, 0.4], seed=3, hours=2), base).drift.to_pylist()
    assert all(r["chi2_pvalue"] is not None and 0.0 <= r["chi2_pvalue"] <= 1.0 for r in d)
    assert all(r["ks_pvalue"] is None for r in d)


@settings(max_examples=60, deadline=None)
@given(x=st.floats(0.0, 400.0), df=st.integers(1, 150))
def test_chi2_sf_matches_scipy(x, df):
    stats = pytest.importorskip("scipy.stats")
    assert chi2_sf(x, df) == pytest.approx(stats.chi2.sf(x, df), rel=1e-7, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    table=st.integers(2, 8).flatmap(
        lambda k: st.tuples(
            st.lists(st.integers(0, 500), min_size=k, max_size=k),
            st.lists(st.integers(0, 80), min_size=k, max_size=k),
        )
    )
)
def test_chi2_homogeneity_matches_scipy(table):
    stats = pytest.importorskip("scipy.stats")
    base, cur = (np.array(t, dtype="float64") for t in table)
    keep = (base + cur) > 0
    stat, p = chi2_homogeneity(base, cur)
    if base.sum() == 0 or cur.sum() == 0 or keep.sum() < 2:
        assert p == 1.0
        return
    want = stats.chi2_contingency(np.vstack([base[keep], cur[keep]]), correction=False)
    assert stat == pytest.approx(want[0], rel=1e-9, abs=1e-9)
    assert p == pytest.approx(want[1], rel=1e-6, abs=1e-12)


def test_chi2_sf_of_the_smallest_positive_statistic_is_one():
    assert chi2_sf(5e-324, 1) == 1.0 and chi2_sf(0.0, 3) == 1.0
