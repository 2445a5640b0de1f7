"""Model quality estimated without labels (CBPE, DLE), on capture trees with a known truth.

Every tree is written with captureq's own writer (``generate_tree`` or ``tests/trees.py``) and
read back through the real pipeline; the truth is known because the simulation draws the labels.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from trees import capture, label, write_captures, write_labels
from typer.testing import CliRunner

import captureq
from captureq.cli import app
from captureq.errors import ConfigError
from captureq.generate import EndpointSpec, generate_tree
from captureq.monitor.estimate import (
    cbpe_metrics,
    dle_metrics,
    expected_calibration_error,
    fit_calibration,
    reliability_curve,
    weighted_auc,
)

skm = pytest.importorskip("sklearn.metrics")
from sklearn.calibration import calibration_curve  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
REF = {"reference_start": "2026-01-01T00", "reference_end": "2026-01-02T00"}  # first 24 hours


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def write_binary_tree(root, hours, per_hour, make, seed=0, endpoint="clf"):
    """One capture file and one label file per hour; ``make(hour, rng, n) -> (x, score, y)``."""
    rng = np.random.default_rng(seed)
    for h in range(hours):
        when = START + timedelta(hours=h)
        x, s, y = make(h, rng, per_hour)
        lines, labels = [], []
        for i in range(per_hour):  # the test's writer, not the code under test
            iid = f"{endpoint}-{h}-{i}"
            lines.append(
                capture(f"{x[i]:.5f}\n", repr(float(s[i])), event_id=f"e-{h}-{i}",
                        inference_id=iid, when=when + timedelta(seconds=i))
            )
            labels.append(label(iid, str(int(y[i]))))
        write_captures(root / "capture", lines, endpoint=endpoint, when=when, name=f"c{h}.jsonl")
        write_labels(root / "labels", labels, when=when + timedelta(hours=2), name=f"l{h}.jsonl")
    return captureq.open(str(root / "capture"), labels=str(root / "labels"))


def coverage(rows):
    return float(np.mean([r["lower"] <= r["realized"] <= r["upper"] for r in rows]))


def mean_gap(rows):
    return float(np.mean([r["estimated"] - r["realized"] for r in rows]))


# ---------------------------------------------------------------------------------------------
# The metric code against scikit-learn
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_with_certain_probabilities_the_estimate_is_sklearns_realized_metric(threshold):
    rng = np.random.default_rng(3)
    n = 2000
    y = (rng.random(n) < 0.4).astype(int)
    score = np.round(np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1), 2)  # ties on purpose
    groups = rng.integers(0, 7, n)
    est = cbpe_metrics(y.astype(float), score, threshold, groups, 7)
    for g in range(7):
        yy, ss = y[groups == g], score[groups == g]
        yp = (ss >= threshold).astype(int)
        expected = {
            "accuracy": skm.accuracy_score(yy, yp),
            "precision": skm.precision_score(yy, yp, zero_division=0),
            "recall": skm.recall_score(yy, yp, zero_division=0),
            "f1": skm.f1_score(yy, yp, zero_division=0),
            "auc_roc": skm.roc_auc_score(yy, ss),
        }
        for name, value in expected.items():
            assert est[name][0][g] == pytest.approx(value), name
            assert est[name][1][g] == pytest.approx(0.0), name  # nothing left to chance


def test_weighted_auc_is_sklearns_with_sample_weights():
    rng = np.random.default_rng(5)
    n = 1500
    score = np.round(rng.random(n), 2)
    p = np.clip(score + rng.normal(0, 0.2, n), 0, 1)
    groups = rng.integers(0, 4, n)
    got = weighted_auc(score, p, 1 - p, groups, 4)
    for g in range(4):
        s, w = score[groups == g], p[groups == g]
        want = skm.roc_auc_score(
            np.r_[np.ones(len(s)), np.zeros(len(s))], np.r_[s, s], sample_weight=np.r_[w, 1 - w]
        )
        assert got[g] == pytest.approx(want)
    assert np.isnan(weighted_auc(score[:3], np.ones(3), np.zeros(3)))[0]  # one class: undefined


def test_dle_with_exact_errors_is_sklearns_mae_and_rmse():
    rng = np.random.default_rng(9)
    y, pred = rng.normal(0, 1, 900), rng.normal(0, 1, 900)
    groups = rng.integers(0, 3, 900)
    err = pred - y
    got = dle_metrics(np.abs(err), err**2, groups, 3)
    for g in range(3):
        sel = groups == g
        assert got["mae"][0][g] == pytest.approx(skm.mean_absolute_error(y[sel], pred[sel]))
        assert got["rmse"][0][g] == pytest.approx(
            np.sqrt(skm.mean_squared_error(y[sel], pred[sel]))
        )


def test_reliability_curve_and_ece_match_sklearn_calibration_curve():
    rng = np.random.default_rng(7)
    prob = rng.random(3000)
    y = (rng.random(3000) < prob**2).astype(int)
    frac, mean, count = reliability_curve(y, prob, n_bins=10)
    want_frac, want_mean = calibration_curve(y, prob, n_bins=10, strategy="uniform")
    np.testing.assert_allclose(frac, want_frac)
    np.testing.assert_allclose(mean, want_mean)
    assert count.sum() == 3000
    assert expected_calibration_error(y, prob) == pytest.approx(
        np.sum(count * np.abs(want_frac - want_mean)) / 3000
    )


def test_calibration_choice():
    rng = np.random.default_rng(11)
    p = rng.random(5000)
    y = (rng.random(5000) < p).astype(int)
    calibrated = fit_calibration(y, p)
    assert calibrated.method == "identity"  # within what chance gives a calibrated score
    assert calibrated.ece_raw <= calibrated.ece_chance
    over = _sigmoid(3 * np.log(p / (1 - p)))  # overconfident
    fixed = fit_calibration(y, over)
    assert fixed.method == "isotonic" and fixed.ece_raw > fixed.ece_chance
    assert fixed.ece_isotonic < fixed.ece_raw / 2
    margin = fit_calibration(y, 4 * np.log(p / (1 - p)))  # not a probability at all
    assert margin.method == "isotonic" and margin.ece_raw is None
    with pytest.raises(ConfigError, match="not a probability"):
        fit_calibration(y, 4 * np.log(p / (1 - p)), method="identity")


# ---------------------------------------------------------------------------------------------
# Simulations with a known truth, through the capture tree
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """generate_tree's binary model is calibrated: labels are Bernoulli(score)."""
    root = tmp_path_factory.mktemp("calibrated")
    generate_tree(
        str(root / "c"), labels_out=str(root / "l"), hours=150, requests_per_hour=100,
        label_fraction=1.0, seed=1,
        endpoints=[EndpointSpec("clf", n_features=3, intercept=0.3, scale=2.0)],
    )
    return captureq.open(str(root / "c"), labels=str(root / "l"))


def test_calibrated_scores_estimate_within_band_of_realized(calibrated):
    r99 = calibrated.estimate_quality(**REF, confidence=0.99)
    assert r99.calibration.method == "identity"
    hours = r99.metric("accuracy", "hour")
    assert len(hours) == 150 and all(h["records"] == 100 == h["labelled"] for h in hours)
    assert coverage(hours) >= 0.95  # the 99 % band holds the realized accuracy in ≥ 95 % of hours
    r95 = calibrated.estimate_quality(**REF)  # and the 95 % band is not wider than it should be
    for name in ("accuracy", "precision", "recall", "f1", "auc_roc"):
        assert 0.90 <= coverage(r95.metric(name, "hour")) <= 0.99, name
        assert abs(mean_gap(r95.metric(name, "hour"))) < 0.01, name  # no bias
    whole = r95.metric("accuracy", "window")[0]
    assert whole["records"] == 15000 and whole["lower"] <= whole["realized"] <= whole["upper"]
    assert whole["upper"] - whole["lower"] < 0.02
    days = calibrated.estimate_quality(**REF, by="day").metric("accuracy", "day")
    assert [d["records"] for d in days] == [2400] * 6 + [600]


def test_miscalibrated_model_is_fixed_by_the_calibration_step(tmp_path):
    def make(h, rng, n):
        x = rng.normal(0, 1, n)
        p = _sigmoid(1.5 * x)  # the truth
        return x, _sigmoid(4.0 * x), (rng.random(n) < p).astype(int)  # an overconfident score

    cq = write_binary_tree(tmp_path, 72, 120, make, seed=2)
    raw = cq.estimate_quality(**REF, calibration="identity")
    fixed = cq.estimate_quality(**REF)
    assert fixed.calibration.method == "isotonic"
    assert fixed.calibration.ece_isotonic < fixed.calibration.ece_raw / 2
    later = {"accuracy": 0.0}
    for result, name in ((raw, "raw"), (fixed, "fixed")):
        rows = [r for r in result.metric("accuracy", "hour") if r["window_start"].day > 1]
        later[name] = (mean_gap(rows), coverage(rows))
    assert later["raw"][0] > 0.04  # the raw score overstates accuracy by ~6 points …
    assert later["raw"][1] < 0.6
    assert abs(later["fixed"][0]) < 0.015  # … the calibrated estimate does not
    assert later["fixed"][1] >= 0.88


def test_covariate_shift_that_lowers_accuracy_lowers_the_estimate(tmp_path):
    def make(h, rng, n):
        spread = 1.5 if h < 36 else 0.4  # from hour 36 the inputs crowd near the boundary
        x = rng.normal(0, spread, n)
        p = _sigmoid(3.0 * x)
        return x, p, (rng.random(n) < p).astype(int)

    cq = write_binary_tree(tmp_path, 72, 120, make, seed=4)
    result = cq.estimate_quality(**REF)
    rows = result.metric("accuracy", "hour")
    before = [r for r in rows if r["window_start"] < START + timedelta(hours=36)]
    after = [r for r in rows if r["window_start"] >= START + timedelta(hours=36)]
    est_drop = np.mean([r["estimated"] for r in before]) - np.mean([r["estimated"] for r in after])
    real_drop = np.mean([r["realized"] for r in before]) - np.mean([r["realized"] for r in after])
    assert real_drop > 0.15  # accuracy really fell (≈ 0.87 → 0.68)
    assert est_drop == pytest.approx(real_drop, abs=0.02)  # the estimate fell with it
    assert abs(mean_gap(after)) < 0.02 and coverage(after) >= 0.9
    # and the drop raised alerts against the reference's accuracy, in Model Monitor's form
    v = result.violations.to_pylist()
    hourly = [x for x in v if x["granularity"] == "hour" and x["metric_name"] == "accuracy"]
    assert len(hourly) >= 30
    assert all(x["window_start"] >= START + timedelta(hours=36) for x in hourly)
    entry = result.constraint_violations["violations"][0]
    assert set(entry) == {"metric_name", "constraint_check_type", "description"}
    assert entry["constraint_check_type"] == "LessThanThreshold"
    assert re.fullmatch(
        rf"Metric {entry['metric_name']} with [0-9.]+ was LessThanThreshold [0-9.]+",
        entry["description"],
    )
    c = result.constraints["binary_classification_constraints"]["accuracy"]
    assert c["comparison_operator"] == "LessThanThreshold"
    assert c["threshold"] == pytest.approx(result.reference["accuracy"])


def test_concept_drift_is_what_cbpe_cannot_see(tmp_path):
    """Labels change, inputs do not: realized accuracy falls, the estimate stays put."""

    def make(h, rng, n):
        x = rng.normal(0, 1.5, n)
        p = _sigmoid(3.0 * x)
        truth = p if h < 36 else _sigmoid(-1.0 * x)  # the world changed, the model did not
        return x, p, (rng.random(n) < truth).astype(int)

    cq = write_binary_tree(tmp_path, 72, 120, make, seed=6)
    rows = cq.estimate_quality(**REF).metric("accuracy", "hour")
    before = [r for r in rows if r["window_start"] < START + timedelta(hours=36)]
    after = [r for r in rows if r["window_start"] >= START + timedelta(hours=36)]
    real_drop = np.mean([r["realized"] for r in before]) - np.mean([r["realized"] for r in after])
    est_drop = np.mean([r["estimated"] for r in before]) - np.mean([r["estimated"] for r in after])
    assert real_drop > 0.4  # the model is now mostly wrong …
    assert abs(est_drop) < 0.02  # … and CBPE does not move: it only sees the scores
    assert coverage(after) < 0.05


def test_estimated_quality_view_and_partial_labels(tmp_path):
    generate_tree(
        str(tmp_path / "c"), labels_out=str(tmp_path / "l"), hours=36, requests_per_hour=80,
        label_fraction=0.5, seed=3,
        endpoints=[EndpointSpec("clf", n_features=3, intercept=0.3, scale=2.0)],
    )
    # labels that have arrived so far: only for the first 30 inference hours (2 h delay)
    for path in sorted((tmp_path / "l").rglob("*.jsonl")):
        hour = datetime.strptime("/".join(path.parts[-5:-1]), "%Y/%m/%d/%H")
        if hour >= datetime(2026, 1, 2, 8):
            path.unlink()
    cq = captureq.open(str(tmp_path / "c"), labels=str(tmp_path / "l"))
    result = cq.estimate_quality(**REF)
    rows = cq.sql(
        "select window_start, estimated, realized, labelled, records from estimated_quality "
        "where metric = 'accuracy' and granularity = 'hour' order by window_start"
    ).to_pylist()
    assert len(rows) == 36
    assert all(r["realized"] is not None and 0 < r["labelled"] < r["records"] for r in rows[:30])
    assert all(r["realized"] is None and r["labelled"] == 0 for r in rows[30:])
    assert all(0 < r["estimated"] < 1 for r in rows)
    assert result.metrics.num_rows == 5 * 37  # five metrics × (36 hours + the window)


def test_dle_regression_tracks_mae_under_covariate_shift(tmp_path):
    """DLE: the error grows with |x|; the inputs move out, the estimated MAE follows."""
    rng = np.random.default_rng(8)
    for h in range(48):
        when = START + timedelta(hours=h)
        n = 100
        x = rng.normal(0 if h < 24 else 2.0, 1, n)
        pred = 2 * x + 1
        y = pred + rng.normal(0, 0.2 + 0.5 * np.abs(x), n)
        iids = [f"r-{h}-{i}" for i in range(n)]
        write_captures(
            tmp_path / "capture",
            [capture(f"{x[i]:.5f},{rng.random():.3f}\n", repr(float(pred[i])), event_id=iids[i],
                     inference_id=iids[i], when=when) for i in range(n)],
            endpoint="reg", when=when, name=f"c{h}.jsonl",
        )
        write_labels(tmp_path / "labels", [label(iids[i], repr(float(y[i]))) for i in range(n)],
                     when=when, name=f"l{h}.jsonl")
    cq = captureq.open(str(tmp_path / "capture"), labels=str(tmp_path / "labels"))
    result = cq.estimate_quality(**REF)
    assert result.problem_type == "Regression" and result.loss_model is not None
    rows = result.metric("mae", "hour")
    before, after = rows[:24], rows[24:]
    rise_real = np.mean([r["realized"] for r in after]) - np.mean([r["realized"] for r in before])
    rise_est = np.mean([r["estimated"] for r in after]) - np.mean([r["estimated"] for r in before])
    assert rise_real > 0.3
    assert rise_est == pytest.approx(rise_real, rel=0.25)
    assert coverage(after) >= 0.8
    whole = {name: result.metric(name, "window")[0]["estimated"] for name in ("mae", "rmse")}
    assert whole["rmse"] > whole["mae"]
    assert any(v["constraint_check_type"] == "GreaterThanThreshold"
               for v in result.constraint_violations["violations"])


def test_errors_say_what_to_do(tmp_path, calibrated):
    with pytest.raises(ConfigError, match="labels="):
        captureq.open(calibrated.uri).estimate_quality(**REF)
    with pytest.raises(ConfigError, match="no predictions"):
        calibrated.estimate_quality(reference_start="2027-01-01", reference_end="2027-01-02")


@pytest.mark.slow
def test_cli_estimate(calibrated, tmp_path):
    runner = CliRunner()
    args = ["estimate", calibrated.uri, "--labels", calibrated.labels_uri,
            "--reference-start", "2026-01-01T00", "--reference-end", "2026-01-02T00",
            "--start", "2026-01-05T00", "--end", "2026-01-05T06"]
    res = runner.invoke(app, [*args, "--format", "json", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    hours = [r for r in rows if r["granularity"] == "hour" and r["metric"] == "accuracy"]
    assert len(hours) == 6 and all(r["realized"] is not None for r in hours)
    assert json.loads((tmp_path / "o" / "constraint_violations.json").read_text()).keys() == {
        "violations"
    }
    res = runner.invoke(app, [*args, "--threshold", "0.4"])
    assert res.exit_code == 0, res.output
    assert "calibration: identity" in res.output, res.output
    assert "accuracy: estimated vs realized" in res.output
    res = runner.invoke(app, [*args, "--format", "csv", "--metric", "f1"])
    assert res.exit_code == 0 and res.stdout.splitlines()[0].startswith("endpoint,window_start")
    assert {line.split(",")[3] for line in res.stdout.splitlines()[1:]} == {"f1"}
    res = runner.invoke(app, ["estimate", calibrated.uri, "--reference-start", "2026-01-01",
                              "--reference-end", "2026-01-02"])
    assert res.exit_code == 2 and "labels" in res.output


@pytest.mark.slow
def test_report_section_shows_the_band_and_the_realized_line(calibrated, tmp_path):
    from captureq.report import build_report

    calibrated.where(end="2026-01-02T00").baseline(str(tmp_path / "baseline"))
    window = calibrated.where(end="2026-01-03T00")
    rep = build_report(window, str(tmp_path / "baseline"),
                       estimate_reference=("2026-01-01T00", "2026-01-02T00"))
    fig = rep.figure("estimate")
    assert fig.data.num_rows == 48 and set(fig.data["metric"].to_pylist()) == {"accuracy"}
    assert fig.data["realized"].null_count == 0
    layers = fig.chart.to_dict()["layer"]
    marks = [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"]
             for layer in layers]
    assert marks[:3] == ["area", "line", "line"] and "rule" in marks
    assert "captureq estimate" in fig.reproduce and 'id="estimate"' in rep.to_html()


@pytest.mark.slow
def test_report_cli_adds_the_estimate_section_for_a_reference_window(calibrated, tmp_path):
    """`captureq report … --reference-start/--reference-end`: the CLI's way to the same section
    (both or neither: one alone is a mistake, exit 2)."""
    from typer.testing import CliRunner

    from captureq.cli import app

    runner = CliRunner()
    calibrated.where(end="2026-01-02T00").baseline(str(tmp_path / "baseline"))
    args = ["report", calibrated.uri, "--labels", calibrated.labels_uri, "--baseline",
            str(tmp_path / "baseline"), "--end", "2026-01-03T00", "-o", str(tmp_path / "r.html")]
    res = runner.invoke(app, [*args, "--reference-start", "2026-01-01T00",
                              "--reference-end", "2026-01-02T00"])
    assert res.exit_code == 0, res.output
    assert 'id="estimate"' in (tmp_path / "r.html").read_text()
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert 'id="estimate"' not in (tmp_path / "r.html").read_text()
    res = runner.invoke(app, [*args, "--reference-start", "2026-01-01T00"])
    assert res.exit_code == 2 and "--reference-end" in res.output
