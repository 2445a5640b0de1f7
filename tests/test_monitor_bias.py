"""Bias metrics and bias drift: captureq's values held against AWS's smclarify, the files held
against Clarify's and Model Monitor's shapes, and drift found on capture trees with a planted
shift (and none on a stationary stream)."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trees import capture, label, write_captures, write_labels
from typer.testing import CliRunner

import captureq
from captureq.cli import app
from captureq.errors import ConfigError
from captureq.monitor.bias import (
    CLOUDWATCH_INFINITY,
    METRICS,
    BiasConfig,
    bias,
    metrics_of,
)

DATA = Path(__file__).parent / "data"
REFERENCE = json.loads((DATA / "clarify" / "reference.json").read_text())
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _value(v):
    if v is None:
        return math.nan
    if isinstance(v, str):
        return float(v.replace("Infinity", "inf"))
    return float(v)


def _same(got: float, want: float) -> bool:
    if math.isnan(want):
        return math.isnan(got)
    if math.isinf(want):
        return got == want
    return got == pytest.approx(want, rel=1e-9, abs=1e-12)


def _table(ds: dict) -> pa.Table:
    n = len(ds["label"])
    return pa.table({
        "endpoint": ["ep"] * n,
        "inference_time": pa.array([START + timedelta(seconds=i) for i in range(n)],
                                   pa.timestamp("us", tz="UTC")),
        "facet": ds["facet"],
        "grp": ds["group"],
        "output_label": pa.array(ds["pred"], pa.float64()),
        "ground_truth_value": pa.array(ds["label"], pa.float64()),
    })


def _config(ds: dict, facet_values=...) -> dict:
    values = ds["facet_values"] if facet_values is ... else facet_values
    facet = {"name_or_index": "facet"}
    if values is not None:
        facet["value_or_threshold"] = values
    return {"label": "label", "label_values_or_threshold": [1], "facet": [facet],
            "group_variable": "grp"}


CASES = [(ds["name"], stage) for ds in REFERENCE["datasets"]
         for stage in ("pre_training", "post_training")]


@pytest.mark.parametrize("name,stage", CASES)
def test_every_metric_matches_smclarify(name, stage):
    ds = next(d for d in REFERENCE["datasets"] if d["name"] == name)
    result = bias(_table(ds), _config(ds), prediction="output_label")
    section = result.analysis[f"{stage}_bias_metrics"]
    got = {e["value_or_threshold"]: e for e in section["facets"]["facet"]}
    want = ds["reference"][stage]
    assert sorted(got) == sorted(str(e["value_or_threshold"]) for e in want)
    checked = 0
    for entry in want:
        mine = {m["name"]: m for m in got[str(entry["value_or_threshold"])]["metrics"]}
        assert [m["name"] for m in entry["metrics"]] == list(mine)  # Clarify's order: by name
        for m in entry["metrics"]:
            ours = mine[m["name"]]
            assert ours["description"] == m["description"]
            assert _same(_value(ours["value"]), _value(m["value"])), (
                entry["value_or_threshold"], m["name"], ours["value"], m["value"])
            assert ("error" in ours) == (m["value"] is None)
            checked += 1
    assert checked >= 8


def test_reference_covers_infinities_and_refusals():
    values = [m["value"] for ds in REFERENCE["datasets"] for st_ in ds["reference"].values()
              for f in st_ for m in f["metrics"]]
    assert "Infinity" in values and "-Infinity" in values and None in values


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(0, 1),
                          st.integers(0, 1)), min_size=1, max_size=40))
def test_metrics_match_the_slow_definitions(rows):
    """Counting once per split equals the record-by-record definitions (the oracle)."""
    arr = np.array(rows)
    facet, y, p, g = arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]
    got = metrics_of(facet, [1], y, p, g)
    want = _slow(facet == 1, y.astype(bool), p.astype(bool), g)
    for name, v in want.items():
        assert _same(got[name], v), (name, got[name], v)


def _slow(d, y, p, g):
    def div(a, b):
        if b == 0:
            return 0.0 if a == 0 else math.copysign(math.inf, a)
        return a / b

    def diff(x, z):
        return 0.0 if x == z == math.inf else x - z

    out = {}
    a = ~d
    na, nd = int(a.sum()), int(d.sum())
    nan = math.nan
    empty = na == 0 or nd == 0

    def cnt(mask):
        return int(mask.sum())

    qa = cnt(a & y) / na if na else nan
    qd = cnt(d & y) / nd if nd else nan
    out["CI"] = nan if empty else (na - nd) / (na + nd)
    out["DPL"] = nan if empty else qa - qd
    pa_, pd_ = [1 - qa, qa], [1 - qd, qd]
    keep = [i for i in range(2) if not empty and pa_[i] > 0 and pd_[i] > 0]
    if keep:
        out["KL"] = sum(pa_[i] * math.log(pa_[i] / pd_[i]) for i in keep)
        m = {i: (pa_[i] + pd_[i]) / 2 for i in keep}
        out["JS"] = 0.5 * sum(pa_[i] * math.log(pa_[i] / m[i]) + pd_[i] * math.log(pd_[i] / m[i])
                              for i in keep)
        out["LP"] = math.sqrt(sum((pa_[i] - pd_[i]) ** 2 for i in keep))
        out["TVD"] = 0.5 * sum(abs(pa_[i] - pd_[i]) for i in keep)
        out["KS"] = max(abs(pa_[i] - pd_[i]) for i in keep)
    else:
        for k in ("KL", "JS", "LP", "TVD", "KS"):
            out[k] = nan
    qah = cnt(a & p) / na if na else nan
    qdh = cnt(d & p) / nd if nd else nan
    out["DPPL"] = nan if empty else qah - qdh
    out["DI"] = nan if empty else div(qdh, qah)

    def q(f):
        tp, fp = cnt(f & y & p), cnt(f & ~y & p)
        fn, tn = cnt(f & y & ~p), cnt(f & ~y & ~p)
        return tp, fp, fn, tn

    tpa, fpa, fna, tna = q(a)
    tpd, fpd, fnd, tnd = q(d)
    post = {
        "DCA": diff(div(tpa + fna, tpa + fpa), div(tpd + fnd, tpd + fpd)),
        "DCR": diff(div(tnd + fpd, tnd + fnd), div(tna + fpa, tna + fna)),
        "RD": diff(div(tpa, tpa + fna), div(tpd, tpd + fnd)),
        "SD": diff(div(tnd, tnd + fpd), div(tna, tna + fpa)),
        "DAR": diff(div(tpa, tpa + fpa), div(tpd, tpd + fpd)),
        "DRR": diff(div(tnd, tnd + fnd), div(tna, tna + fna)),
        "AD": diff(div(tpa + tna, na), div(tpd + tnd, nd)),
        "TE": diff(div(fnd, fpd), div(fna, fpa)),
    }
    out.update({k: nan if empty else v for k, v in post.items()})
    benefit = p.astype(int) - y.astype(int) + 1
    mb = benefit.mean()
    out["GE"] = nan if mb == 0 else float(((benefit / mb) ** 2 - 1).sum() / (len(y) * 2))

    def cdd(outcome):
        if outcome.all() or (~outcome).all():
            return nan
        total, acc = 0, 0.0
        for grp in np.unique(g):
            in_g = g == grp
            A = div(cnt(outcome & d & in_g), cnt(outcome & in_g))
            D = div(cnt(~outcome & d & in_g), cnt(~outcome & in_g))
            acc += cnt(in_g) * (D - A)
            total += cnt(in_g)
        return div(acc, total)

    out["CDDL"], out["CDDPL"] = cdd(y), cdd(p)
    assert set(out) == set(METRICS)
    return out


# ---------------------------------------------------------------------------------------------
# Capture trees: a planted shift is found where it starts, a stationary stream raises nothing
# ---------------------------------------------------------------------------------------------
CONFIG = {
    "label": "approved",
    "headers": ["approved", "sex", "income", "region"],
    "label_values_or_threshold": [1],
    "facet": [{"name_or_index": "sex", "value_or_threshold": [1]},
              {"name_or_index": "income", "value_or_threshold": [60]}],
    "group_variable": "region",
    "probability_threshold": 0.5,
}
BASE_HOURS, HOURS, PER_HOUR, SHIFT_AT = 12, 24, 240, 18


def write_tree(root: Path, seed: int, shift_at: int | None) -> captureq.CaptureTree:
    """CSV inputs ``sex, income, region``, a score, and labels drawn from the score; from hour
    ``shift_at`` the model's scores for sex=1 fall, so that group's positive rate falls."""
    rng = np.random.default_rng(seed)
    for h in range(HOURS):
        when = START + timedelta(hours=h)
        n = PER_HOUR
        sex = rng.integers(0, 2, n)
        income = np.round(rng.normal(60, 15, n), 1)
        region = rng.integers(1, 4, n)
        score = 1 / (1 + np.exp(-(0.04 * (income - 60) + 0.3 * (region - 2))))
        y = (rng.random(n) < score).astype(int)
        if shift_at is not None and h >= shift_at:
            score = np.where(sex == 1, score * 0.6, score)
        lines, labels = [], []
        for i in range(n):  # the test's writer, not the code under test
            iid = f"{h}-{i}"
            lines.append(capture(f"{sex[i]},{income[i]},{region[i]}\n", f"{score[i]:.5f}",
                                 event_id=iid, inference_id=iid,
                                 when=when + timedelta(seconds=10 * i)))
            labels.append(label(iid, str(y[i])))
        write_captures(root / "capture", lines, endpoint="loans", when=when, name=f"c{h}.jsonl")
        write_labels(root / "labels", labels, when=when + timedelta(hours=1), name=f"l{h}.jsonl")
    return captureq.open(str(root / "capture"), labels=str(root / "labels"))


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    root = tmp_path_factory.mktemp("bias-shift")
    return root, write_tree(root, seed=1, shift_at=SHIFT_AT)


def _baseline(tree):
    return bias(tree, CONFIG, end=START + timedelta(hours=BASE_HOURS)).analysis


def test_a_planted_shift_is_found_from_the_hour_it_starts(shifted):
    _, tree = shifted
    result = bias(tree, CONFIG, baseline=_baseline(tree), every="hour",
                  start=START + timedelta(hours=BASE_HOURS))
    hours = {w for w, doc in result.hourly.items() if doc["violations"]}
    expected = {(START + timedelta(hours=h)).strftime("%Y-%m-%dT%H")
                for h in range(SHIFT_AT, HOURS)}
    assert hours == expected
    for w in expected:
        found = result.hourly[w]["violations"]
        names = {(v["facet"], v["facet_value"], v["metric_name"]) for v in found}
        assert ("sex", "1", "DPPL") in names and ("sex", "1", "DI") in names
        assert all(v["constraint_check_type"] == "bias_drift_check" for v in found)
        # income's split keeps its positive-prediction rates (ratios such as DCA may move,
        # since fewer predictions are positive overall)
        assert not names & {("income", v, m) for v in {x[1] for x in names} for m in ("DPPL",
                                                                                    "DI")}
    assert result.constraint_violations["violations"]  # the whole window drifted too


@pytest.mark.parametrize("seed", [2, 3])
def test_a_stationary_stream_raises_no_violation(tmp_path, seed):
    tree = write_tree(tmp_path, seed=seed, shift_at=None)
    result = bias(tree, CONFIG, baseline=_baseline(tree), every="hour",
                  start=START + timedelta(hours=BASE_HOURS))
    assert len(result.hourly) == HOURS - BASE_HOURS
    assert result.violations == []


def test_small_groups_get_no_verdict(shifted):
    _, tree = shifted
    result = bias(tree, CONFIG, baseline=_baseline(tree), every="hour", min_group=10_000,
                  start=START + timedelta(hours=BASE_HOURS))
    assert result.violations == []
    m = result.metrics.to_pylist()
    assert all(r["group_size"] < 10_000 for r in m)


def test_headers_name_capture_columns_and_a_continuous_facet_has_its_interval(shifted):
    _, tree = shifted
    doc = _baseline(tree)
    post = doc["post_training_bias_metrics"]
    assert post["label"] == "approved" and post["label_value_or_threshold"] == "1"
    (income,) = post["facets"]["income"]
    assert income["value_or_threshold"].startswith("(60.0, ")
    assert [e["value_or_threshold"] for e in post["facets"]["sex"]] == ["1"]
    names = [m["name"] for m in post["facets"]["sex"][0]["metrics"]]
    assert names == sorted(n for n, (s, _) in METRICS.items() if s == "post_training")


def test_cli_baseline_then_monitor_writes_clarify_and_model_monitor_files(shifted, tmp_path):
    root, _ = shifted
    cfg = tmp_path / "analysis_config.json"
    cfg.write_text(json.dumps(CONFIG))
    runner = CliRunner()
    common = [str(root / "capture"), "--labels", str(root / "labels"), "--config", str(cfg)]
    r = runner.invoke(app, ["bias", "baseline", *common, "--end", "2026-01-01T12",
                            str(tmp_path / "base")])
    assert r.exit_code == 0, r.output
    analysis = json.loads((tmp_path / "base" / "analysis.json").read_text())
    assert set(analysis) >= {"pre_training_bias_metrics", "post_training_bias_metrics"}
    args = ["bias", "monitor", *common, "--baseline", str(tmp_path / "base" / "analysis.json"),
            "--out", str(tmp_path / "mon"), "--start", "2026-01-01T12", "--every", "hour",
            "--metrics-dir", str(tmp_path / "cw"), "--schedule", "loans-bias"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "DPPL" in r.output
    r = runner.invoke(app, [*args, "--fail-on-violations"])
    assert r.exit_code == 3, r.output
    cv = json.loads((tmp_path / "mon" / "hourly" / "2026-01-01T18" /
                     "constraint_violations.json").read_text())
    v = cv["violations"][0]
    assert set(v) == {"facet", "facet_value", "metric_name", "constraint_check_type",
                      "description"}
    assert v["description"].startswith("Value ")
    quiet = json.loads((tmp_path / "mon" / "hourly" / "2026-01-01T13" /
                        "constraint_violations.json").read_text())
    assert quiet["violations"] == []
    lines = (tmp_path / "cw" / "cloudwatch_metrics.jsonl").read_text().splitlines()
    assert len(lines) == HOURS - BASE_HOURS
    req = json.loads(lines[0])
    datum = req["MetricData"][0]
    assert datum["MetricName"].startswith("bias_metric_")
    assert [d["Name"] for d in datum["Dimensions"]] == [
        "Endpoint", "MonitoringSchedule", "BiasStage", "Label", "LabelValue", "Facet",
        "FacetValue"]
    dims = {d["Name"]: d["Value"] for d in datum["Dimensions"]}
    assert dims["Endpoint"] == "loans" and dims["MonitoringSchedule"] == "loans-bias"


def test_cloudwatch_publishes_infinity_as_clarify_does():
    ds = next(d for d in REFERENCE["datasets"] if d["name"] == "infinite_ratios")
    result = bias(_table(ds), _config(ds), prediction="output_label")
    values = [m["Value"] for req in result.cloudwatch for m in req["MetricData"]]
    assert CLOUDWATCH_INFINITY in values and -CLOUDWATCH_INFINITY in values
    assert not any(isinstance(v, float) and (math.isinf(v) or math.isnan(v)) for v in values)


def test_config_errors_say_what_to_do(tmp_path, shifted):
    _, tree = shifted
    with pytest.raises(ConfigError, match="facet"):
        BiasConfig.load({"label": "y", "label_values_or_threshold": [1]})
    with pytest.raises(ConfigError, match="label_values_or_threshold"):
        BiasConfig.load({"facet": [{"name_or_index": "sex"}]})
    with pytest.raises(ConfigError, match="not a captured input"):
        bias(tree, {**CONFIG, "facet": [{"name_or_index": "age"}]})
    with pytest.raises(ConfigError, match="analysis.json"):
        bias(tree, CONFIG, baseline=tmp_path / "missing")


# ---------------------------------------------------------------------------------------------
# Against Clarify's and Model Monitor's own examples (tests/data/real/SOURCES.md)
# ---------------------------------------------------------------------------------------------
REAL = DATA / "real" / "awsdocs"


def _shape(x):
    """Keys at every level (lists by their first item), values by JSON type."""
    if isinstance(x, dict):
        return {k: _shape(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_shape(x[0])] if x else []
    return "number" if isinstance(x, (int, float)) and not isinstance(x, bool) else type(x).__name__


def _real_analysis() -> dict:
    text = (REAL / "clarify-analysis-post-training.txt").read_text()
    text = text.replace("}\n                        { . . . }", "}")
    return json.loads(text)


def test_our_analysis_json_has_clarifys_shape(shifted):
    _, tree = shifted
    ours = _baseline(tree)
    theirs = _real_analysis()["post_training_bias_metrics"]
    mine = ours["post_training_bias_metrics"]
    assert set(theirs) <= set(mine)
    (their_facet,) = theirs["facets"].values()
    my_entry = mine["facets"]["sex"][0]
    assert set(their_facet[0]) <= set(my_entry)
    their_metric = _shape(their_facet[0]["metrics"][0])
    assert _shape(my_entry["metrics"][0]) == their_metric
    assert {m["name"] for m in their_facet[0]["metrics"]} <= set(METRICS) | {"DCR"}
    assert isinstance(mine["label_value_or_threshold"], str)


def test_a_real_analysis_json_is_read_as_a_baseline():
    from captureq.monitor.bias import _baseline_values

    values = _baseline_values(_real_analysis())
    assert values[("feature_2", "1", "DI")] == pytest.approx(0.711340206185567)
    assert values[("feature_2", "1", "DCR")] == pytest.approx(-0.34782608695652184)


def test_our_violations_have_model_monitors_shape(shifted):
    _, tree = shifted
    theirs = json.loads((REAL / "clarify-bias-drift-violations.json").read_text())
    result = bias(tree, CONFIG, baseline=_baseline(tree), every="hour",
                  start=START + timedelta(hours=SHIFT_AT))
    ours = result.constraint_violations
    assert _shape(ours) == _shape(theirs)
    assert {v["constraint_check_type"] for v in ours["violations"]} == {"bias_drift_check"}
    for v in theirs["violations"] + ours["violations"]:
        assert v["description"].startswith("Value ")
        assert v["description"].split()[1].lstrip("-").replace(".", "").replace("e", "").isdigit()


def test_the_developer_guides_analysis_config_loads():
    cfg = BiasConfig.load(REAL / "clarify-analysis-config.json")
    assert cfg.label == "target" and cfg.label_values_or_threshold == (1,)
    assert [f.name for f in cfg.facets] == ["feature_1", "feature_2"]
    assert cfg.facets[1].value_or_threshold == (0.7,)
    assert cfg.group_variable == "feature_3" and cfg.probability_threshold == 0.7
    # its headers end with the label: feature_1 is the second captured input column
    n = 50
    rng = np.random.default_rng(0)
    table = pa.table({
        "endpoint": ["ep"] * n,
        "inference_time": pa.array([START] * n, pa.timestamp("us", tz="UTC")),
        "_c0": rng.random(n), "_c1": rng.integers(0, 2, n).astype(float),
        "_c2": rng.random(n), "_c3": rng.integers(0, 3, n),
        "output_c0": rng.random(n), "ground_truth_value": rng.integers(0, 2, n).astype(float),
    })
    doc = bias(table, cfg).analysis
    facets = doc["pre_training_bias_metrics"]["facets"]
    assert list(facets) == ["feature_1", "feature_2"]
    assert facets["feature_1"][0]["value_or_threshold"] == "1"
    assert facets["feature_2"][0]["value_or_threshold"].startswith("(0.7, ")
    d = table["_c1"].to_numpy() == 1
    ci = next(m for m in facets["feature_1"][0]["metrics"] if m["name"] == "CI")
    assert ci["value"] == pytest.approx(((~d).sum() - d.sum()) / n)
