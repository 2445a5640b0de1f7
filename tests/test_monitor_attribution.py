"""Feature-attribution drift: NDCG of a window's SHAP ranking against Clarify's baseline, read
from captured Clarify online-explainability responses (or a user's table), with Clarify's
constraint_violations.json and CloudWatch metric lines."""

from __future__ import annotations

import base64
import json
import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import ndcg_score
from typer.testing import CliRunner

import captureq
from captureq.cli import app
from captureq.monitor.attribution import (
    CHECK_TYPE,
    AttributionBaseline,
    attribution_baseline,
    attribution_monitor,
    capture_attributions,
    ndcg,
    ndcg_table,
)

REAL = Path(__file__).parent / "data" / "real" / "awsdocs"
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
FEATURES = ["age", "income", "tenure", "calls", "region"]
SCALES = [1.0, 0.6, 0.3, 0.15, 0.05]  # each feature's SHAP spread: the baseline ranking
EXPECTED = 0.3  # the model's output with no feature known
runner = CliRunner()


# -- NDCG ---------------------------------------------------------------------------------------


def test_ndcg_of_the_developer_guides_college_example():
    # SAT 0.70 / GPA 0.50 / class rank 0.05 in training, 0.10 / 0.20 / 0.70 live: the guide
    # gives 0.69. By hand: DCG = 0.05/1 + 0.50/log2 3 + 0.70/2 = 0.71547,
    # iDCG = 0.70/1 + 0.50/log2 3 + 0.05/2 = 1.04047, NDCG = 0.68764
    base = {"sat": 0.70, "gpa": 0.50, "rank": 0.05}
    live = {"sat": 0.10, "gpa": 0.20, "rank": 0.70}
    dcg = 0.05 + 0.50 / math.log2(3) + 0.70 / 2
    idcg = 0.70 + 0.50 / math.log2(3) + 0.05 / 2
    assert ndcg(base, live) == pytest.approx(dcg / idcg, abs=1e-12)
    assert round(ndcg(base, live), 2) == 0.69


def test_ndcg_ties_share_their_positions_discount():
    # a and b tie live: each gets the mean of the discounts of positions 1 and 2
    base = {"a": 2.0, "b": 1.0}
    mean = (1 + 1 / math.log2(3)) / 2
    assert ndcg(base, {"a": 5.0, "b": 5.0}) == pytest.approx(3 * mean / (2 + 1 / math.log2(3)))


def test_features_missing_on_either_side():
    # c is not in the window (value 0 there); d is not in the baseline (gain 0)
    base = {"a": 3.0, "b": 2.0, "c": 1.0}
    got = ndcg(base, {"a": 1.0, "b": 2.0, "d": 9.0})
    # live ranking d, b, a, c (c with 0)
    dcg = 0 + 2 / math.log2(3) + 3 / 2 + 1 / math.log2(5)
    idcg = 3 + 2 / math.log2(3) + 1 / 2
    assert got == pytest.approx(dcg / idcg)


values = st.lists(st.floats(0.001, 100, allow_nan=False), min_size=2, max_size=12)


def _scores(base: dict, windows: list[dict]) -> list[float]:
    """NDCG of several windows against one baseline, in one ndcg_table call."""
    ts = [START + timedelta(hours=i) for i in range(len(windows))]
    live = pa.table({
        "window_start": pa.array([t for t, w in zip(ts, windows) for _ in w],
                                 pa.timestamp("us", "UTC")),
        "label": ["label0"] * sum(map(len, windows)),
        "feature": [f for w in windows for f in w],
        "value": [float(v) for w in windows for v in w.values()],
    })
    b = pa.table({"label": ["label0"] * len(base), "feature": list(base),
                  "value": [float(v) for v in base.values()]})
    out = ndcg_table(live, b).to_pylist()
    return [next(r["ndcg"] for r in out if r["window_start"] == t) for t in ts]


@settings(max_examples=60, deadline=None)
@given(values, st.randoms(use_true_random=False))
def test_ndcg_properties(base_values, rnd):
    names = [f"f{i}" for i in range(len(base_values))]
    base = dict(zip(names, base_values))
    shuffled = base_values[:]
    rnd.shuffle(shuffled)
    order = sorted(names, key=lambda n: base[n])
    reversed_live = {n: float(i + 1) for i, n in enumerate(order[::-1])}  # smallest ranked first
    same, shuffled_score, reversed_score = _scores(
        base, [base, dict(zip(names, shuffled)), reversed_live])
    assert same == pytest.approx(1.0)
    assert 0.0 <= shuffled_score <= 1.0 + 1e-12
    assert shuffled_score == pytest.approx(ndcg_score([base_values], [shuffled]), abs=1e-9)
    # reversing the baseline's ranking scores lower than keeping it (by an amount that grows
    # with how different the attributions are: values equal to 1e-16 reverse to 1 - 1e-16)
    spread = max(base_values) - min(base_values)
    if spread > 1e-3 * max(abs(v) for v in base_values):
        assert reversed_score < 1.0 - 1e-9


# -- a capture tree whose outputs carry kernel_shap ---------------------------------------------


def _clarify_response(phis: np.ndarray, label_headers=None) -> dict:
    """The JSON a Clarify online-explainability endpoint returns for ``phis`` (records × features)."""
    preds = EXPECTED + phis.sum(axis=1)
    doc = {
        "version": "1.0",
        "predictions": {"content_type": "text/csv",
                        "data": "".join(f"{float(p)!r}\n" for p in preds)},
        "explanations": {"kernel_shap": [
            [{"feature_header": f, "attributions": [{"attribution": [float(v)]}]}
             for f, v in zip(FEATURES, row)]
            for row in phis
        ]},
    }
    if label_headers:
        doc["label_headers"] = label_headers
    return doc


def write_tree(root: Path, hours: int, per_hour: int, seed: int, shift_from: int | None = None,
               encoding: str = "JSON", endpoint: str = "churn") -> Path:
    """Requests of 1–2 records; from hour ``shift_from`` the last feature's SHAP spread jumps
    from 0.05 to 1.5 (the model starts leaning on ``region``)."""
    rng = np.random.default_rng(seed)
    for h in range(hours):
        t0 = START + timedelta(hours=h)
        scales = np.array(SCALES)
        if shift_from is not None and h >= shift_from:
            scales[-1] = 1.5
        lines = []
        for i in range(per_hour):
            n = 1 + (i % 2)
            phis = rng.normal(0, 1, (n, len(FEATURES))) * scales
            body = json.dumps(_clarify_response(phis, ["churn"]))
            data = base64.b64encode(body.encode()).decode() if encoding == "BASE64" else body
            when = t0 + timedelta(seconds=int(rng.integers(0, 3600)))
            lines.append(json.dumps({
                "captureData": {
                    "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                                      "data": "\n".join(["1,2,3,4,5"] * n), "encoding": "CSV"},
                    "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                                       "data": data, "encoding": encoding},
                },
                "eventMetadata": {"eventId": f"e-{h}-{i}", "inferenceId": f"i-{h}-{i}",
                                  "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")},
                "eventVersion": "0",
            }))
        d = root / endpoint / "AllTraffic" / t0.strftime("%Y/%m/%d/%H")
        d.mkdir(parents=True, exist_ok=True)
        (d / "00-00-000-x.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_attributions_are_read_from_captured_responses(tmp_path):
    tree = captureq.open(str(write_tree(tmp_path / "cap", 1, 10, seed=1, encoding="BASE64")))
    caps = tree.captures()
    rec = capture_attributions(caps)
    # 10 requests of 1 or 2 records, 5 features each
    assert rec.num_rows == 15 * len(FEATURES)
    assert set(rec["label"].to_pylist()) == {"churn"}
    assert set(rec["feature"].to_pylist()) == set(FEATURES)
    # the values are the ones in the payload, record by record
    doc = json.loads(base64.b64decode(caps["output_data"][0].as_py()))
    eid = caps["event_id"][0].as_py()
    got = {(r["record_index"], r["feature"]): r["value"] for r in rec.to_pylist()
           if r["event_id"] == eid}
    for i, features in enumerate(doc["explanations"]["kernel_shap"]):
        for f in features:
            assert got[(i, f["feature_header"])] == f["attributions"][0]["attribution"][0]


def test_baseline_writes_clarifys_analysis_json(tmp_path):
    tree = captureq.open(str(write_tree(tmp_path / "cap", 4, 60, seed=2)))
    doc = attribution_baseline(tree, tmp_path / "base")
    on_disk = json.loads((tmp_path / "base" / "analysis.json").read_text())
    assert on_disk == doc
    churn = doc["explanations"]["kernel_shap"]["churn"]
    g = churn["global_shap_values"]
    assert sorted(g, key=g.get, reverse=True) == FEATURES
    # mean |N(0, s)| = s·sqrt(2/π)
    assert g["age"] == pytest.approx(math.sqrt(2 / math.pi), rel=0.1)
    # prediction − Σφ per record recovers the expected value
    assert churn["expected_value"] == pytest.approx(EXPECTED, abs=1e-9)
    base = AttributionBaseline.load(tmp_path / "base")
    assert set(base.labels) == {"churn"}
    sq = attribution_baseline(tree, agg_method="mean_sq")["explanations"]["kernel_shap"]["churn"]
    assert sq["global_shap_values"]["age"] == pytest.approx(1.0, rel=0.2)  # E φ² = s²


def _baseline(tmp_path) -> Path:
    ref = captureq.open(str(write_tree(tmp_path / "ref", 6, 200, seed=3)))
    attribution_baseline(ref, tmp_path / "base")
    return tmp_path / "base" / "analysis.json"


def test_a_planted_attribution_shift_is_detected_from_its_hour(tmp_path):
    base = _baseline(tmp_path)
    tree = captureq.open(str(write_tree(tmp_path / "live", 24, 40, seed=4, shift_from=15)))
    result = attribution_monitor(tree, base, tmp_path / "out", every="hour")
    hourly = [r for r in result.scores.to_pylist() if r["granularity"] == "hour"]
    assert len(hourly) == 24
    flagged = [r["window_start"].hour for r in hourly if r["violation"]]
    assert flagged == list(range(15, 24))
    assert all(r["top_features"].startswith("region") for r in hourly if r["violation"])
    assert max(r["ndcg"] for r in hourly if r["violation"]) < 0.85
    assert min(r["ndcg"] for r in hourly if not r["violation"]) > 0.95
    # the files: per hour and for the whole range
    out = tmp_path / "out"
    quiet = json.loads((out / "hour" / "2026-01-01T03" / "constraint_violations.json").read_text())
    loud = json.loads((out / "hour" / "2026-01-01T15" / "constraint_violations.json").read_text())
    assert quiet == {"version": "1.0", "violations": []}
    assert [v["constraint_check_type"] for v in loud["violations"]] == [CHECK_TYPE]
    hour15 = json.loads((out / "hour" / "2026-01-01T15" / "analysis.json").read_text())
    g = hour15["explanations"]["kernel_shap"]["churn"]["global_shap_values"]
    assert max(g, key=g.get) == "region"
    assert pq.read_table(out / "scores.parquet").num_rows == 25  # 24 hours + the whole range


def test_a_stationary_stream_raises_nothing(tmp_path):
    base = _baseline(tmp_path)
    tree = captureq.open(str(write_tree(tmp_path / "live", 48, 40, seed=5)))
    result = attribution_monitor(tree, base, every="hour")
    hourly = [r for r in result.scores.to_pylist() if r["granularity"] == "hour"]
    assert len(hourly) == 48 and not any(r["violation"] for r in hourly)
    assert not result.violated
    assert result.constraint_violations == {"version": "1.0", "violations": []}
    day = attribution_monitor(tree, base, every="day")
    assert [r["records"] for r in day.scores.to_pylist() if r["granularity"] == "day"] == [
        24 * 60, 24 * 60]  # 40 requests an hour, alternately 1 and 2 records


# -- the files, against Clarify's own ----------------------------------------------------------


def _real_violations() -> dict:
    text = (REAL / "clarify-model-monitor-model-attribution-drift-violations.md").read_text()
    blocks = re.findall(r"```\n(.*?)\n```", text, re.S)
    return json.loads(blocks[-1])  # the example with values


def test_constraint_violations_match_clarifys_example(tmp_path):
    real = _real_violations()
    base = _baseline(tmp_path)
    tree = captureq.open(str(write_tree(tmp_path / "live", 3, 40, seed=6, shift_from=0)))
    result = attribution_monitor(tree, base, tmp_path / "out")
    ours = json.loads((tmp_path / "out" / "constraint_violations.json").read_text())
    assert ours["version"] == real["version"]
    assert ours["violations"]
    for v in ours["violations"]:
        assert set(v) == set(real["violations"][0])
        assert v["metric_name"] == real["violations"][0]["metric_name"]
        assert v["constraint_check_type"] == real["violations"][0]["constraint_check_type"]
    example = real["violations"][0]["description"]
    ours_text = ours["violations"][0]["description"]
    assert re.sub(r"[0-9.]+", "N", ours_text) == re.sub(r"[0-9.]+", "N", example)
    score = float(ours_text.split()[3])
    assert score == pytest.approx(result.scores["ndcg"][0].as_py())


def test_cloudwatch_lines_in_putmetricdata_shape(tmp_path):
    base = _baseline(tmp_path)
    tree = captureq.open(str(write_tree(tmp_path / "live", 2, 30, seed=7)))
    attribution_monitor(tree, base, cloudwatch_dir=tmp_path / "cw", schedule="sched-1")
    lines = [json.loads(x) for x in
             (tmp_path / "cw" / "feature-attribution-drift.jsonl").read_text().splitlines()]
    names = {x["MetricName"] for x in lines}
    assert names == {f"feature_{f}" for f in FEATURES} | {"ExpectedValue"}
    assert len(lines) == 2 * (len(FEATURES) + 1)
    for x in lines:
        assert set(x) == {"MetricName", "Timestamp", "Dimensions", "Value", "Unit"}
        dims = {d["Name"]: d["Value"] for d in x["Dimensions"]}
        assert [d["Name"] for d in x["Dimensions"]][:2] == ["Endpoint", "MonitoringSchedule"]
        assert dims["Endpoint"] == "churn" and dims["MonitoringSchedule"] == "sched-1"
        assert dims["Label"] == "churn"
        assert re.fullmatch(r"2026-01-01T0[01]:00:00Z", x["Timestamp"])
        assert isinstance(x["Value"], float)
    ev = [x["Value"] for x in lines if x["MetricName"] == "ExpectedValue"]
    assert ev == pytest.approx([EXPECTED, EXPECTED])


def test_a_users_attribution_file(tmp_path):
    tree = captureq.open(str(write_tree(tmp_path / "cap", 2, 20, seed=8)))
    caps = tree.captures()
    rng = np.random.default_rng(0)
    ids = caps["inference_id"].to_pylist()
    hour = [int(x.split("-")[1]) for x in ids]
    # hour 0 ranks a > b > c, hour 1 reverses it
    cols = {n: [float(abs(rng.normal(0, s if h == 0 else 1.1 - s))) for h in hour]
            for n, s in (("a", 1.0), ("b", 0.5), ("c", 0.1))}
    pq.write_table(pa.table({"inference_id": ids, **cols}), tmp_path / "shap.parquet")
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "analysis.json").write_text(json.dumps({"version": "1.0", "explanations": {
        "kernel_shap": {"label0": {"global_shap_values": {"a": 0.8, "b": 0.4, "c": 0.08},
                                   "expected_value": 0.5}}}}))
    r = attribution_monitor(tree, tmp_path / "base", attributions=str(tmp_path / "shap.parquet"))
    hourly = {x["window_start"].hour: x for x in r.scores.to_pylist() if x["granularity"] == "hour"}
    assert not hourly[0]["violation"] and hourly[1]["violation"]
    assert hourly[0]["records"] == 20


# -- the commands -------------------------------------------------------------------------------


def test_cli_baseline_monitor_and_exit_codes(tmp_path):
    write_tree(tmp_path / "cap", 8, 40, seed=9, shift_from=6)
    cap = str(tmp_path / "cap")
    r = runner.invoke(app, ["attribution", "baseline", cap, str(tmp_path / "base"),
                            "--end", "2026-01-01T06"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "base" / "analysis.json").exists()
    args = ["attribution", "monitor", cap, "--baseline", str(tmp_path / "base")]
    r = runner.invoke(app, [*args, "--format", "json", "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    hours = [x for x in rows if x["granularity"] == "hour"]
    assert [x["violation"] for x in hours] == [False] * 6 + [True] * 2
    r = runner.invoke(app, [*args, "--fail-on-violations"])
    assert r.exit_code == 3, r.output
    assert "2 hour(s) below 0.9" in r.output
    r = runner.invoke(app, [*args, "--fail-on-violations", "--end", "2026-01-01T06"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*args, "--format", "csv", "--every", "day", "--threshold", "0.5"])
    assert r.exit_code == 0 and r.stdout.splitlines()[0].startswith("window_start,granularity")


def test_cli_wrong_inputs_exit_2(tmp_path):
    write_tree(tmp_path / "cap", 1, 5, seed=10)
    cap = str(tmp_path / "cap")
    (tmp_path / "x.json").write_text('{"version": "1.0"}')
    r = runner.invoke(app, ["attribution", "monitor", cap, "--baseline", str(tmp_path / "x.json")])
    assert r.exit_code == 2 and "global_shap_values" in r.output
    r = runner.invoke(app, ["attribution", "baseline", cap, str(tmp_path / "b"),
                            "--agg-method", "max"])
    assert r.exit_code == 2 and "mean_abs, median, mean_sq" in r.output
    # a tree without explanations says what to pass instead
    plain = tmp_path / "plain" / "ep" / "AllTraffic" / "2026" / "01" / "01" / "00"
    plain.mkdir(parents=True)
    (plain / "a.jsonl").write_text(json.dumps({"captureData": {
        "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": "1,2",
                          "encoding": "CSV"},
        "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT", "data": "0.4",
                           "encoding": "CSV"}},
        "eventMetadata": {"eventId": "e", "inferenceTime": "2026-01-01T00:01:00Z"},
        "eventVersion": "0"}) + "\n")
    r = runner.invoke(app, ["attribution", "baseline", str(tmp_path / "plain"), str(tmp_path / "b")])
    assert r.exit_code == 2 and "--attributions" in r.output
