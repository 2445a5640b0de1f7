"""The demo's loan-approval endpoint (captureq.generate.generate_loans): both of Clarify's
monitors find the shift planted at hour 12 in exactly the hours from then on."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl

import captureq
from captureq.generate import LOANS_BIAS_CONFIG, generate_loans
from captureq.monitor.attribution import attribution_baseline, attribution_monitor
from captureq.monitor.bias import bias

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_the_planted_shift_is_found_from_its_hour_and_not_before(tmp_path):
    capture, labels = generate_loans(str(tmp_path / "c"), str(tmp_path / "l"), hours=8,
                                     requests_per_hour=200, shift_from_hour=4, start=START)
    cq = captureq.open(capture, labels=labels, cache=False)
    first = cq.where(end=START + timedelta(hours=4))
    bias(first, LOANS_BIAS_CONFIG).write(tmp_path / "bb")
    drift = bias(cq, LOANS_BIAS_CONFIG, baseline=tmp_path / "bb" / "analysis.json", every="hour")
    hours = {v["window"] for v in drift.violations if v["window"] != "window"}
    assert hours and min(hours) == "2026-01-01T04"
    dppl = {v["window"] for v in drift.violations if v["metric_name"] == "DPPL" and v["window"] != "window"}
    assert dppl == {f"2026-01-01T{h:02d}" for h in range(4, 8)}
    attribution_baseline(first, tmp_path / "ab")
    scores = pl.from_arrow(attribution_monitor(cq, tmp_path / "ab" / "analysis.json").scores)
    low = scores.filter((pl.col("granularity") == "hour") & pl.col("violation"))
    assert sorted(t.hour for t in low["window_start"]) == [4, 5, 6, 7]
