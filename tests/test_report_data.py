"""The data behind each figure of the monitoring report, checked against independent counts.

One small generated tree (churn-xgb drifts in ``_c3`` from hour 5 of 8) is baselined on its
first 4 hours and monitored over all 8, as ``make demo`` does at a larger scale.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import shutil
from datetime import timedelta

import numpy as np
import polars as pl
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trees import write_captures
from typer.testing import CliRunner

import captureq
from captureq.cli import app
from captureq.errors import ConfigError
from captureq.generate import generate_tree
from captureq.monitor import Baseline, model_quality, monitor
from captureq.report import build_report, data
from captureq.report.html import unpack

pytest.importorskip("altair")
pytest.importorskip("vl_convert")

EP = "churn-xgb"
HOURS, DRIFT_HOUR = 8, 5


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    capture, labels = root / "capture", root / "groundtruth"
    summary = generate_tree(
        str(capture),
        labels_out=str(labels),
        hours=HOURS,
        requests_per_hour=40,
        drift_feature="_c3",
        drift_from_hour=DRIFT_HOUR,
        label_delay_hours=0,
    )
    cq = captureq.open(str(capture), labels=str(labels))
    base = cq.where(endpoint=EP, end=summary.start + timedelta(hours=4)).baseline(
        str(root / "baseline")
    )
    inputs = cq.inputs().filter(pc.equal(cq.inputs()["endpoint"], EP))
    result = monitor(inputs, base)
    return {
        "root": root,
        "capture": capture,
        "labels": labels,
        "summary": summary,
        "cq": cq,
        "base": base,
        "inputs": inputs,
        "result": result,
    }


def test_traffic_counts_every_request_of_every_endpoint_and_variant(demo):
    s, t = demo["summary"], pl.from_arrow(data.traffic(demo["cq"]))
    assert t.columns == ["hour", "endpoint", "variant", "requests", "records"]
    per_series = t.group_by("endpoint", "variant").agg(
        pl.col("requests").sum(), pl.len().alias("hours")
    )
    expected = {(e, v): n for e, es in s.endpoints.items() for v, n in es.variants.items()}
    assert {(r["endpoint"], r["variant"]): r["requests"] for r in per_series.to_dicts()} == expected
    assert set(per_series["hours"]) == {HOURS}
    records = t.group_by("endpoint").agg(pl.col("records").sum())
    assert dict(records.iter_rows()) == {e: es.input_records for e, es in s.endpoints.items()}


def test_prediction_distribution_matches_numpy_quantiles(demo):
    cq = demo["cq"]
    col = data.prediction_column(cq, EP)
    assert col == "output_c0"
    d = pl.from_arrow(data.prediction_distribution(cq, EP, col))
    preds = pl.from_arrow(cq.predictions()).filter(pl.col("endpoint") == EP)
    assert d["n"].sum() == preds.height == demo["summary"].endpoints[EP].output_records
    first = d.row(0, named=True)
    scores = preds.filter(
        (pl.col("variant") == first["variant"])
        & (pl.col("inference_time").dt.truncate("1h") == first["hour"])
    )["output_c0"].to_numpy()
    assert first["n"] == len(scores)
    assert [first[k] for k in ("p10", "p50", "p90")] == pytest.approx(
        np.quantile(scores, [0.1, 0.5, 0.9])
    )
    assert first["mean"] == pytest.approx(scores.mean())
    assert (
        (d["p10"] <= d["p25"]).all()
        and (d["p25"] <= d["p50"]).all()
        and (d["p75"] <= d["p90"]).all()
    )


def test_non_numeric_predictions_become_shares_per_value(demo):
    cq = demo["cq"]
    d = pl.from_arrow(
        data.prediction_distribution(cq, EP, "variant")
    )  # a text column as the "prediction"
    assert d.columns == ["hour", "variant", "prediction", "n", "share"]
    assert d.group_by("hour", "variant").agg(pl.col("share").sum())[
        "share"
    ].to_list() == pytest.approx([1.0] * (2 * HOURS))


def test_drift_heatmap_marks_exactly_the_planted_feature_and_hours(demo):
    s, result = demo["summary"], demo["result"]
    heat = pl.from_arrow(data.drift_heatmap(result))
    features = [f["name"] for f in demo["base"].statistics["features"]]
    assert heat.height == len(features) * HOURS
    assert heat.columns[:3] == ["feature", "hour", "hour_end"]
    drifted = heat.filter(pl.col("drift"))
    assert set(drifted["feature"]) == {"_c3"}
    assert drifted["hour"].min() == s.drift_start
    assert drifted.height == HOURS - DRIFT_HOUR
    # every drifted cell is marked as a violation, naming the check that failed
    assert drifted["violation"].all()
    assert all("baseline_drift_check" in c for c in drifted["failed_checks"])
    # the heat map's PSI is the monitor's, cell for cell
    hourly = pl.from_arrow(result.drift).filter(pl.col("granularity") == "hour")
    joined = heat.join(hourly, left_on=["feature", "hour"], right_on=["feature", "window_start"])
    assert joined.height == heat.height and (joined["psi"] == joined["psi_right"]).all()
    onset = data.drift_onset(result)
    assert [(o["feature"], o["first_drift_hour"]) for o in onset] == [("_c3", s.drift_start)]
    assert data.feature_order(result)[0] == "_c3"


def test_histograms_share_bins_and_show_the_shift(demo):
    base, inputs, result = demo["base"], demo["inputs"], demo["result"]
    worst = data.worst_features(result, 3)
    since = demo["summary"].drift_start
    h = pl.from_arrow(data.feature_histograms(base, inputs, worst, bins=20, since=since))
    label = f"since {since:%Y-%m-%d %H:%M}"
    assert set(h["series"]) == {"baseline", "window", label}
    sums = h.group_by("feature", "series").agg(pl.col("share").sum(), pl.len())
    assert sums["share"].to_list() == pytest.approx([1.0] * sums.height)
    assert set(sums["len"]) == {20}
    c3 = h.filter(pl.col("feature") == "_c3")
    # baseline shares equal numpy's histogram of the baseline hours on the same edges
    edges = np.r_[
        c3.filter(pl.col("series") == "baseline")["bin_start"].to_numpy(), c3["bin_end"].max()
    ]
    training = pl.from_arrow(inputs).filter(
        pl.col("inference_time") < demo["summary"].start + timedelta(hours=4)
    )
    counts, _ = np.histogram(training["_c3"].to_numpy(), bins=edges)
    assert c3.filter(pl.col("series") == "baseline")["share"].to_numpy() == pytest.approx(
        counts / counts.sum()
    )

    def mean_bin(series):
        part = c3.filter(pl.col("series") == series)
        return float((part["share"] * (part["bin_start"] + part["bin_end"]) / 2).sum())

    assert mean_bin(label) > mean_bin("window") > mean_bin("baseline")


def test_quality_over_time_is_the_hourly_model_quality(demo):
    cq = demo["cq"]
    preds = cq.predictions()
    preds = preds.filter(pc.equal(preds["endpoint"], EP))
    quality = model_quality(preds)
    q = pl.from_arrow(data.quality_over_time(quality))
    assert set(q["metric"]) == set(data.QUALITY_METRICS[quality.problem_type])
    hourly = pl.from_arrow(quality.metrics).filter(pl.col("granularity") == "hour")
    acc = q.filter(pl.col("metric") == "accuracy").join(
        hourly, left_on="hour", right_on="window_start"
    )
    assert acc.height == HOURS
    assert (acc["value"] == acc["accuracy"]).all()
    assert (acc["label_coverage"] == acc["labelled"] / acc["records"]).all()
    assert 0 < acc["label_coverage"].mean() < 1


def test_quarantine_summary_counts_planted_junk(demo, tmp_path):
    s = demo["summary"]

    capture = tmp_path / "capture"
    shutil.copytree(demo["capture"], capture)
    write_captures(
        capture,
        ["{not json", "neither is this", "{not json"],
        endpoint=EP,
        when=s.start + timedelta(hours=2),
        name="junk.jsonl",
    )
    q = pl.from_arrow(data.quarantine_summary(captureq.open(str(capture))))
    assert q.columns == ["stage", "reason", "entries", "files", "first_seen"]
    assert q["entries"].to_list() == [2, 1]  # most frequent reason first
    assert set(q["stage"]) == {"line"} and set(q["files"]) == {1}
    assert [f.rsplit("/", 1)[1] for f in q["first_seen"]] == ["junk.jsonl:1", "junk.jsonl:2"]


def test_reproduce_sql_runs_and_gives_the_figures_data(demo):
    """What the report prints under "reproduce" is the query that made the figure."""
    cq = demo["cq"]
    text = data.query_text("predictions_numeric", prediction="output_c0", endpoint=EP)
    assert "$endpoint" not in text and "'churn-xgb'" in text and '"output_c0"' in text
    assert cq.sql(text).to_arrow().equals(data.prediction_distribution(cq, EP, "output_c0"))


@pytest.fixture(scope="module")
def built(demo):
    return build_report(demo["cq"], demo["base"], endpoint=EP)


def test_report_is_one_self_contained_page_with_every_figure(demo, built):
    rep = built
    assert list(rep.charts()) == ["traffic", "predictions", "drift", "histograms", "quality"]
    assert rep.drift_found and "_c3" in rep.headline[0]
    assert f"{demo['summary'].drift_start:%Y-%m-%d %H:%M} UTC" in rep.headline[0]
    page = rep.to_html()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), (
        "nothing may load from the network"
    )
    for key in rep.charts():
        assert f'id="fig-{key}"' in page
    packed = re.search(r'id="captureq-specs">([^<]+)<', page).group(1)
    specs = json.loads(unpack(packed))
    assert set(specs) == {f"fig-{k}" for k in rep.charts()}
    assert all(
        spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
        for spec in specs.values()
    )
    assert page.count("reproduce this figure") == len(rep.figures)
    assert len(page.encode()) < 600_000


def test_report_without_labels_says_quality_needs_them(demo):
    rep = build_report(captureq.open(str(demo["capture"])), demo["base"], endpoint=EP)
    assert "quality" not in rep.charts()
    assert rep.figure("quality").note == "no labels URI given"


def test_report_needs_one_endpoint_when_the_window_has_several(demo):
    with pytest.raises(ConfigError, match="pass endpoint=... \\(--endpoint\\)"):
        build_report(demo["cq"], demo["base"])
    with pytest.raises(ConfigError, match="no endpoint matches nope"):
        build_report(demo["cq"], demo["base"], endpoint="nope")


def test_capture_tree_report_returns_and_writes_the_html(demo, tmp_path):
    out = tmp_path / "r.html"
    html = demo["cq"].report(demo["base"], out=str(out), endpoint="churn-*")
    assert html == out.read_text() and html.startswith("<!DOCTYPE html>")


def test_cli_writes_the_report_and_prints_where_drift_began(demo, tmp_path):
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        app,
        [
            "report",
            str(demo["capture"]),
            "--baseline",
            str(demo["root"] / "baseline"),
            "--labels",
            str(demo["labels"]),
            "--endpoint",
            EP,
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"Drift in _c3 from {demo['summary'].drift_start:%Y-%m-%d %H:%M} UTC" in result.output
    assert out.exists() and f"wrote {out}" in result.output
    assert "Model quality" in out.read_text()
    bad = CliRunner().invoke(
        app,
        [
            "report",
            str(demo["capture"]),
            "--baseline",
            str(demo["root"] / "missing"),
            "--endpoint",
            EP,
            "-o",
            str(out),
        ],
    )
    assert bad.exit_code == 2 and "captureq baseline" in bad.output


def test_baseline_loaded_from_disk_gives_the_same_report_data(demo):
    loaded = Baseline.load(demo["root"] / "baseline")
    again = monitor(demo["inputs"], loaded)
    assert data.drift_heatmap(again).equals(data.drift_heatmap(demo["result"]))


@pytest.mark.parametrize("key", ["traffic", "predictions", "quarantine"])
def test_the_printed_command_reproduces_the_figures_data(built, key):
    fig = built.figure(key)
    command = next(c for c in fig.reproduce.split("\n\n") if "captureq query" in c)
    args = shlex.split("\n".join(ln for ln in command.splitlines() if not ln.startswith("#")))
    assert args[:2] == ["captureq", "query"]
    result = CliRunner().invoke(app, args[1:])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == fig.data.num_rows
    if rows:
        first = fig.data.to_pylist()[0]
        assert {k: str(v) for k, v in first.items() if isinstance(v, (int, str))} == {
            k: rows[0][k] for k, v in first.items() if isinstance(v, (int, str))
        }


# -- a baseline made from a training CSV with a header (feature names, not _c0…) -------------
NAMES = [
    "tenure", "monthly_charges", "total_charges", "support_calls", "contract_months",
    "age", "usage_gb", "late_payments", "plan_changes", "devices", "region_code", "discount",
]  # fmt: skip


def header_training_csv(inputs, path, end):
    """The first hours of the endpoint's inputs as a training CSV with a header row."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    first = inputs.filter(pc.less(inputs["inference_time"], pa.scalar(end, inputs["inference_time"].type)))
    cols = [c for c in first.column_names if re.fullmatch(r"_c\d+", c)]
    table = first.select(cols).rename_columns(NAMES[: len(cols)])
    pcsv.write_csv(table, path)
    return path


def test_header_named_baseline_draws_the_worst_features(demo):
    path = header_training_csv(
        demo["inputs"], demo["root"] / "train.csv", demo["summary"].start + timedelta(hours=4)
    )
    base = captureq.monitor.baseline(str(path))
    assert [f["name"] for f in base.statistics["features"]][:2] == ["tenure", "monthly_charges"]
    rep = build_report(demo["cq"], base, endpoint=EP)
    hist = rep.figure("histograms")
    assert hist.chart is not None and hist.data.num_rows > 0
    assert "support_calls" in set(hist.data["feature"].to_pylist())  # _c3, the drifted one
    assert "support_calls" in rep.headline[0]
    for f in rep.figures:  # every section draws its figure (the page draws its table) or says why not
        assert f.chart is not None or f.note or f.html, f.key


def test_a_section_without_a_figure_says_why(demo):
    import pyarrow as pa

    from captureq.report.build import Figure, Report

    other = captureq.monitor.baseline(pa.table({"x": [1.0, 2.0, 3.0]}))
    why = data.why_no_histograms(other, pa.table({"y": [1.0]}), [])
    assert "share no name" in why and "x" in why and "y" in why
    assert "no input records" in data.why_no_histograms(other, pa.table({"x": pa.array([], pa.float64())}), [])
    bare = Report("t", "s", [], False, [Figure("k", "K", "d", pa.table({}))])
    assert "nothing to draw" in bare.to_html()


# -- wide and skewed data: traffic per endpoint, categorical top-k, bins for skewed data -------
def test_traffic_is_filtered_to_the_reports_endpoint(demo, built):
    others = set(demo["summary"].endpoints) - {EP}
    assert others, "the demo tree must hold other endpoints for this test to mean anything"
    t = pl.from_arrow(data.traffic(demo["cq"], endpoint=EP))
    assert set(t["endpoint"]) == {EP}
    expected = demo["summary"].endpoints[EP].variants
    assert dict(t.group_by("variant").agg(pl.col("requests").sum()).iter_rows()) == expected
    assert set(built.figure("traffic").data["endpoint"].to_pylist()) == {EP}
    assert "'churn-xgb'" in built.figure("traffic").reproduce


def _wide_inputs(rng, n=4000):
    import pyarrow as pa

    return pa.table(
        {
            "city": [f"city-{int(i)}" for i in rng.zipf(1.3, n) % 500],
            "amount": rng.lognormal(3.0, 1.5, n),
            "normal": rng.normal(10.0, 2.0, n),
            "delta": np.concatenate([-rng.lognormal(0.0, 2.0, n // 2), rng.lognormal(0.0, 2.0, n - n // 2)]) * np.where(rng.random(n) < 0.9, 0.01, 1.0),
        }
    )


def test_categorical_histogram_keeps_the_top_values_and_other():
    rng = np.random.default_rng(7)
    train, window = _wide_inputs(rng), _wide_inputs(rng)
    base = captureq.monitor.baseline(train)
    h = pl.from_arrow(data.feature_histograms(base, window, ["city"], categories=8))
    for series, part in h.group_by("series"):
        assert part.height == 9, series  # 8 values + other
        assert part["share"].sum() == pytest.approx(1.0)
    bins = h.filter(pl.col("series") == "window")
    top = bins.filter(pl.col("bin") != "other")
    counts = pl.from_arrow(window).group_by("city").len()
    total = counts["len"].sum()
    # the other bin holds exactly what the top values do not, counted independently
    kept = counts.filter(pl.col("city").is_in(top["bin"].to_list()))["len"].sum()
    assert bins.filter(pl.col("bin") == "other")["share"][0] == pytest.approx(1 - kept / total)
    assert "city-1" in set(top["bin"])  # the most frequent value of a Zipf law is kept


@pytest.mark.parametrize(
    "feature, binning", [("amount", "log"), ("delta", "quantile"), ("normal", "linear")]
)
def test_skewed_features_get_bins_that_spread_their_values(feature, binning):
    rng = np.random.default_rng(11)
    train, window = _wide_inputs(rng), _wide_inputs(rng)
    base = captureq.monitor.baseline(train)
    h = pl.from_arrow(data.feature_histograms(base, window, [feature], bins=20))
    assert set(h["binning"]) == {binning}
    win = h.filter(pl.col("series") == "window")
    assert win["share"].sum() == pytest.approx(1.0)
    # shares are numpy's own histogram of the window on the figure's edges
    edges = np.r_[win["bin_start"].to_numpy(), win["bin_end"][-1]]
    values = window[feature].to_numpy()
    counts, _ = np.histogram(values, bins=edges)
    assert win["share"].to_numpy() == pytest.approx(counts / len(values))
    if binning != "linear":
        # equal-width bins would put almost everything in one bin; these do not
        equal, _ = np.histogram(values, bins=20)
        assert equal.max() / len(values) > 0.8
        assert win["share"].max() < 0.35
        assert (win["share"] > 0).sum() >= 10


def test_feature_table_ranks_every_feature(demo, built):
    t = pl.from_arrow(data.feature_table(demo["result"]))
    features = [f["name"] for f in demo["base"].statistics["features"]]
    assert sorted(t["feature"]) == sorted(features)
    assert t["rank"].to_list() == list(range(1, len(features) + 1))
    assert t["feature"][0] == "_c3" and t["drifted_hours"][0] == HOURS - DRIFT_HOUR
    assert t.filter(pl.col("feature") != "_c3")["drifted_hours"].max() == 0
    assert built.figure("features").data.num_rows == len(features)


def test_a_section_that_fails_to_draw_says_so_and_the_headline_too(demo, monkeypatch):
    from captureq.report import charts

    def broken(*args, **kwargs):
        raise ValueError("planted failure")

    monkeypatch.setattr(charts, "drift_chart", broken)
    quiet = captureq.open(str(demo["capture"]), end=demo["summary"].start + timedelta(hours=4))
    rep = build_report(quiet, demo["base"], endpoint=EP)
    fig = rep.figure("drift")
    assert fig.chart is None and "planted failure" in fig.note and fig.failed
    text = " ".join(rep.headline_text())
    assert "failed to draw" in text and "Drift per feature" in text
    assert "No feature drifted" not in text
    assert not rep.drift_found or "headline ok" not in rep.to_html()
    assert 'class="headline ok"' not in rep.to_html()


def test_typing_a_column_costs_the_same_at_any_width():
    """Each feature's column is found without listing every column of the table: the time per
    feature at 3,000 columns stays near the time at 300 (listing them made it grow tenfold)."""
    import time

    import pyarrow as pa

    from captureq.monitor.baseline import column_of

    def per_feature(width: int) -> float:
        table = pa.table({f"_c{i}": np.arange(50, dtype="float64") for i in range(width)})
        t = time.process_time()
        for name in table.column_names:
            column_of(table, name)
        return (time.process_time() - t) / width

    per_feature(300)  # warm up
    narrow = min(per_feature(300) for _ in range(3))
    wide = min(per_feature(3000) for _ in range(2))
    assert wide < 3 * narrow, (narrow, wide)


def test_top_features_sets_how_many_features_are_drawn(demo, tmp_path):
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        app,
        ["report", str(demo["capture"]), "--baseline", str(demo["root"] / "baseline"),
         "--endpoint", EP, "--top-features", "3", "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "Worst 3 features" in page and "the 3 worst of 12 features" in page
    packed = re.search(r'id="captureq-specs">([^<]+)<', page).group(1)
    drift = json.loads(unpack(packed))["fig-drift"]
    rows = drift["data"]["values"]
    assert len({r["feature"] for r in rows}) == 3
    features = json.loads(unpack(re.search(r'id="captureq-features">([^<]+)<', page).group(1)))
    assert len(features["rows"]) == 12 and set(features["hist"]) == {f"_c{i}" for i in range(12)}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=300,
    ),
    st.integers(min_value=2, max_value=40),
)
def test_numeric_edges_always_cover_every_value(values, bins):
    v = np.asarray(values)
    edges, binning = data.numeric_edges(v, np.ones(len(v)), bins)
    assert binning in ("linear", "log", "quantile")
    assert np.all(np.diff(edges) > 0) and len(edges) <= bins + 1
    assert edges[0] <= v.min() and edges[-1] >= v.max()
    counts, _ = np.histogram(v, bins=edges)
    assert counts.sum() == len(v)  # no value falls outside the bins


# -- Clarify's monitors: the bias and feature-attribution sections ----------------------------
@pytest.fixture(scope="module")
def clarify(tmp_path_factory):
    """A tree for both of Clarify's monitors, its three baselines (data quality, bias,
    attributions: the first 6 hours) and the library's results over all 12 hours."""
    from clarify_trees import BIAS_CONFIG, START, write_clarify_tree

    from captureq.monitor.attribution import attribution_baseline, attribution_monitor
    from captureq.monitor.bias import bias

    root = tmp_path_factory.mktemp("clarify")
    capture, labels = write_clarify_tree(root, hours=12, per_hour=80, shift_at=8)
    cq = captureq.open(str(capture), labels=str(labels))
    early = cq.where(end=START + timedelta(hours=6))
    base = early.baseline(str(root / "baseline"))
    (root / "bias_config.json").write_text(json.dumps(BIAS_CONFIG))
    bias_base = bias(early, BIAS_CONFIG).analysis
    (root / "bias_analysis.json").write_text(json.dumps(bias_base))
    attribution_baseline(early, root / "shap")
    return {
        "root": root, "cq": cq, "base": base,
        "bias_config": root / "bias_config.json",
        "bias_baseline": root / "bias_analysis.json",
        "attribution_baseline": root / "shap" / "analysis.json",
        "bias": bias(cq, BIAS_CONFIG, baseline=bias_base, every="hour"),
        "attribution": attribution_monitor(cq, root / "shap" / "analysis.json"),
    }


@pytest.fixture(scope="module")
def clarify_report(clarify):
    return build_report(clarify["cq"], clarify["base"], bias_config=clarify["bias_config"],
                        bias_baseline=clarify["bias_baseline"],
                        attribution_baseline=clarify["attribution_baseline"])


def test_bias_section_holds_the_librarys_hourly_values_and_violations(clarify, clarify_report):
    fig = clarify_report.figure("bias")
    assert not fig.failed and fig.chart is not None
    m = pl.from_arrow(clarify["bias"].metrics).filter(
        (pl.col("granularity") == "hour") & (pl.col("stage") == "post_training"))
    violating = set(m.filter(pl.col("violation"))["metric_name"])
    assert {"DPPL", "DI"} <= violating  # the planted shift
    shown = pl.from_arrow(fig.data)
    assert set(shown["metric_name"]) == {"DPPL", "DI"} | violating
    want = m.filter(pl.col("metric_name").is_in(list(set(shown["metric_name"]))))
    key = ["hour", "facet", "facet_value", "metric_name"]
    got = shown.sort(key)
    want = want.rename({"window_start": "hour"}).select(got.columns).sort(key)
    assert got.height == want.height == 12 * len(set(shown["metric_name"]))
    assert got["value"].to_list() == want["value"].to_list()
    assert got["baseline"].to_list() == want["baseline"].to_list()
    assert got["violation"].to_list() == want["violation"].to_list()
    # the table: every violation the library found, each hour's and the whole window's
    table = pl.from_arrow(fig.table)
    lib = clarify["bias"].violations
    assert table.height == len(lib) > 0
    assert sorted(zip(table["window"], table["metric_name"], table["description"])) == sorted(
        (v["window"], v["metric_name"], v["description"]) for v in lib)
    assert any("bias" in line.lower() and "violation" in line.lower()
               for line in clarify_report.headline_text())


def test_attribution_section_holds_the_librarys_values_and_scores(clarify, clarify_report):
    fig = clarify_report.figure("attribution")
    assert not fig.failed and fig.chart is not None
    lib = clarify["attribution"]
    # NDCG over time: the library's hourly scores, with the threshold
    scores = pl.from_arrow(lib.scores).filter(pl.col("granularity") == "hour").sort("window_start")
    nd = pl.from_arrow(fig.data).sort("hour")
    # (DuckDB sums in parallel: the last bits of a float vary from run to run)
    assert nd["ndcg"].to_list() == pytest.approx(scores["ndcg"].to_list(), rel=1e-12)
    assert nd["violation"].to_list() == scores["violation"].to_list()
    assert set(nd["threshold"]) == {0.9}
    assert [h.hour for h, v in zip(nd["hour"], nd["violation"]) if v] == list(range(8, 12))
    # global attributions, baseline vs the whole window: the library's values, top features
    table = pl.from_arrow(fig.table)
    ranks = pl.from_arrow(lib.ranks).filter(pl.col("granularity") == "window")
    assert table.height == ranks.height == 5  # five features: all are in the top 10
    for r in ranks.iter_rows(named=True):
        (got,) = table.filter((pl.col("feature") == r["feature"]) & (pl.col("label") == r["label"])
                              ).iter_rows(named=True)
        assert (got["baseline"], got["window"]) == pytest.approx(
            (r["baseline_value"], r["value"]), rel=1e-12)
        assert (got["baseline_rank"], got["rank"]) == (r["baseline_rank"], r["rank"])
    assert any("attribution" in line.lower() for line in clarify_report.headline_text())


def test_clarify_sections_appear_only_when_asked(clarify):
    rep = build_report(clarify["cq"], clarify["base"])
    assert not {"bias", "attribution"} & {f.key for f in rep.figures}
    rep = build_report(clarify["cq"], clarify["base"], bias_config=clarify["bias_config"])
    assert "bias" in {f.key for f in rep.figures} and "attribution" not in {
        f.key for f in rep.figures}
    assert not rep.figure("bias").failed  # without a baseline: the values, no violations
    assert pl.from_arrow(rep.figure("bias").data)["baseline"].is_nan().all()


def test_a_clarify_section_that_fails_says_so_in_the_headline(clarify, tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"label": "approved", "label_values_or_threshold": [1],
                               "facet": [{"name_or_index": "nope"}]}))
    rep = build_report(clarify["cq"], clarify["base"], bias_config=bad,
                       attribution_baseline=tmp_path / "missing.json")
    assert rep.failed == ["bias", "attribution"]
    text = " ".join(rep.headline_text())
    assert "Bias drift" in text and "Feature-attribution drift" in text and "failed" in text
    assert "nope" in rep.figure("bias").note


def test_cli_report_takes_the_clarify_options(clarify, tmp_path):
    out = tmp_path / "r.html"
    made = CliRunner().invoke(app, [
        "report", str(clarify["root"] / "capture"), "--labels", str(clarify["root"] / "labels"),
        "--baseline", str(clarify["root"] / "baseline"),
        "--bias-config", str(clarify["bias_config"]),
        "--bias-baseline", str(clarify["bias_baseline"]),
        "--attribution-baseline", str(clarify["attribution_baseline"]), "-o", str(out)])
    assert made.exit_code == 0, made.output
    html_text = out.read_text()
    assert 'id="fig-bias"' in html_text and 'id="fig-attribution"' in html_text
