"""``captureq compare``: two variants' answers to the same requests, paired and compared.

Trees are written with captureq's own writer (``tests/trees.py``): a baseline variant and a
candidate (a variant of the same tree, or another tree, as ``captureq replay`` writes it) that
answer the same requests, with repeated event ids, missing answers and failed requests. Every
number is held against a plain-Python computation on the same pairs.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from trees import T0, capture, label, write_captures, write_labels
from typer.testing import CliRunner

import captureq
from captureq.cli import app
from captureq.compare import bootstrap_metrics, compare, parse_fail_if
from captureq.errors import ConfigError
from captureq.monitor.quality import binary_metrics, multiclass_metrics, regression_metrics

ERROR = object()  # the candidate's request failed: a capture with replayError and no output


def write_pair(root, rows, *, candidate_root=None, base="Prod", cand="Cand", in_type="text/csv"):
    """Write the baseline's and the candidate's captures of ``rows`` and their labels.

    Each row: ``event_id``, ``inference_id`` (or None), ``second`` (offset from T0), ``x`` (the
    input payload), ``b`` and ``c`` (the outputs; ``c`` None: no candidate capture, ERROR: a
    failed request), ``y`` (the label text or None), ``ms`` (candidate latency or None)."""
    base_lines, cand_lines, labels = [], [], []
    for r in rows:
        when = T0 + timedelta(seconds=r["second"])
        kw = dict(event_id=r["event_id"], inference_id=r.get("inference_id"), when=when,
                  input_type=in_type, output_type=in_type)
        base_lines.append(capture(r["x"], r["b"], **kw))
        if r["c"] is ERROR:
            rec = capture(r["x"], None, **kw)
            rec["eventMetadata"]["replayError"] = "HTTP 500: model error"
            cand_lines.append(rec)
        elif r["c"] is not None:
            rec = capture(r["x"], r["c"], **kw)
            if r.get("ms") is not None:
                rec["eventMetadata"]["replayLatencyMs"] = r["ms"]
            rec["eventMetadata"]["replayTime"] = "2026-02-01T00:00:00Z"
            cand_lines.append(rec)
        if r.get("y") is not None:
            labels.append(label(r.get("inference_id") or r["event_id"], r["y"]))
    write_captures(root / "capture", base_lines, variant=base, name="b.jsonl")
    write_captures((candidate_root or root) / "capture", cand_lines, variant=cand, name="c.jsonl")
    if labels:
        write_labels(root / "labels", labels, name="l.jsonl")
    return captureq.open(str(root / "capture"), labels=str(root / "labels") if labels else None)


def _rows_binary(n, seed=0, *, dup=True):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2))
    b = np.round(rng.random(n), 4)
    c = np.round(np.clip(b + rng.normal(0, 0.2, n), 0, 1), 4)
    y = (rng.random(n) < b).astype(int)
    rows = []
    for i in range(n):
        if dup and i % 3:  # labelled by event id, which both copies share: one label for both
            y[i] = y[i - i % 2]
        rows.append({
            "event_id": f"ev-{i // 2}" if dup else f"ev-{i}",  # every event id twice
            "inference_id": None if i % 3 else f"inf-{i}",
            "second": i,
            "x": f"{x[i, 0]:.4f},{x[i, 1]:.4f}\n",
            "b": repr(float(b[i])),
            "c": repr(float(c[i])),
            "y": str(int(y[i])),
            "ms": float(10 + i % 7),
        })
    return rows


# -- pairing ----------------------------------------------------------------------------------
def test_pairs_by_inference_id_event_id_and_time_never_event_id_alone(tmp_path):
    rows = [
        {"event_id": "same", "second": 0, "x": "0.1,1\n", "b": "0.9", "c": "0.8", "y": None},
        {"event_id": "same", "second": 1, "x": "0.2,1\n", "b": "0.1", "c": "0.7", "y": None},
        {"event_id": "same", "inference_id": "i-3", "second": 1, "x": "0.3,1\n", "b": "0.2",
         "c": "0.3", "y": None},
        {"event_id": "gone", "second": 2, "x": "0.4,1\n", "b": "0.6", "c": None, "y": None},
        {"event_id": "fail", "second": 3, "x": "0.5,1\n", "b": "0.6", "c": ERROR, "y": None},
    ]
    cq = write_pair(tmp_path, rows)
    r = compare(cq, baseline="Prod", candidate="Cand", bootstrap=0)
    s = r.summary
    assert s["requests_baseline"] == 5 and s["requests_candidate"] == 4
    assert s["paired_requests"] == 4 and s["missing_requests"] == 1
    assert s["error_rate_candidate"] == 0.25 and s["error_rate_baseline"] == 0.0
    assert s["records_compared"] == 3  # the failed request has no answer to compare
    # paired on event id alone, the three "same" rows would cross: 0.9↔0.7 etc.
    assert s["agreement"] == pytest.approx(2 / 3)
    flips = {(f["baseline"], f["candidate"]): f["count"] for f in r.flips.to_pylist()}
    assert flips == {("1", "1"): 1, ("0", "1"): 1, ("0", "0"): 1}
    assert s["score_diff_mean"] == pytest.approx(((0.8 - 0.9) + (0.7 - 0.1) + (0.3 - 0.2)) / 3)


def test_exactly_repeated_keys_are_left_out_and_counted(tmp_path):
    rows = [
        {"event_id": "e", "second": 0, "x": "1,1\n", "b": "0.9", "c": "0.1", "y": None},
        {"event_id": "e", "second": 0, "x": "2,2\n", "b": "0.2", "c": "0.3", "y": None},
        {"event_id": "f", "second": 0, "x": "3,3\n", "b": "0.2", "c": "0.3", "y": None},
    ]
    r = compare(write_pair(tmp_path, rows), baseline="Prod", candidate="Cand", bootstrap=0)
    assert r.summary["ambiguous_requests"] == 2
    assert r.summary["paired_requests"] == 1 and r.summary["agreement"] == 1.0


def test_candidate_in_another_tree_with_its_latency(tmp_path):
    rows = _rows_binary(40, dup=False)
    rows[5]["c"] = ERROR
    cq = write_pair(tmp_path, rows, candidate_root=tmp_path / "replay")
    other = captureq.open(str(tmp_path / "replay" / "capture"))
    r = compare(cq, baseline="Prod", candidate="Cand", candidate_tree=other, bootstrap=0)
    ms = np.array([row["ms"] for i, row in enumerate(rows) if i != 5])
    lat = {row["variant"]: row for row in r.latency.to_pylist()}
    assert lat["Cand"]["p50_ms"] == pytest.approx(np.quantile(ms, 0.5))
    assert lat["Cand"]["p99_ms"] == pytest.approx(np.quantile(ms, 0.99))
    assert lat["Cand"]["error_rate"] == pytest.approx(1 / 40)
    assert lat["Prod"]["p50_ms"] is None  # the original capture has no latency: omitted
    assert "latency_p50_baseline" not in r.summary or r.summary["latency_p50_baseline"] is None
    assert r.summary["paired_requests"] == 40


# -- numbers against a plain-Python oracle ----------------------------------------------------
def _oracle_binary(rows, threshold):
    """The pairs, their agreement, flips and score differences, one record at a time."""
    pairs = []
    for r in rows:
        if r["c"] is None or r["c"] is ERROR:
            continue
        pairs.append((float(r["b"]), float(r["c"]), r["y"]))
    agree = [(b >= threshold) == (c >= threshold) for b, c, _ in pairs]
    diffs = sorted(c - b for b, c, _ in pairs)
    labelled = [(int(y), b, c) for b, c, y in pairs if y is not None]
    acc_b = sum((b >= threshold) == bool(y) for y, b, _ in labelled) / len(labelled) if labelled else None
    acc_c = sum((c >= threshold) == bool(y) for y, _, c in labelled) / len(labelled) if labelled else None
    return {
        "n": len(pairs),
        "agreement": sum(agree) / len(agree),
        "flips_01": sum(b < threshold <= c for b, c, _ in pairs),
        "flips_10": sum(c < threshold <= b for b, c, _ in pairs),
        "mean": sum(diffs) / len(diffs),
        "median": float(np.quantile(diffs, 0.5)),
        "acc_b": acc_b,
        "acc_c": acc_c,
    }


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.reuse, Phase.generate])  # each example writes a tree
@given(
    n=st.integers(3, 30),
    seed=st.integers(0, 10_000),
    threshold=st.sampled_from([0.3, 0.5, 0.8]),
    missing=st.sets(st.integers(0, 29), max_size=4),
    failed=st.sets(st.integers(0, 29), max_size=3),
    unlabelled=st.sets(st.integers(0, 29), max_size=10),
)
def test_binary_numbers_equal_a_plain_computation(tmp_path_factory, n, seed, threshold, missing,
                                                  failed, unlabelled):
    rows = _rows_binary(n, seed)
    for i in missing:
        if i < n:
            rows[i]["c"] = None
    for i in failed:
        if i < n:
            rows[i]["c"] = ERROR
    for i in unlabelled:
        if i < n:
            for r in rows:  # a label by event id is every such capture's label
                if r is rows[i] or (r["inference_id"] is None is rows[i]["inference_id"]
                                    and r["event_id"] == rows[i]["event_id"]):
                    r["y"] = None
    if all(r["c"] is None or r["c"] is ERROR for r in rows):
        rows[0]["c"] = "0.5"
    root = tmp_path_factory.mktemp("bin")
    cq = write_pair(root, rows)
    r = compare(cq, baseline="Prod", candidate="Cand", threshold=threshold, bootstrap=50,
                problem_type="BinaryClassification")
    o = _oracle_binary(rows, threshold)
    s = r.summary
    assert s["records_compared"] == o["n"]
    assert s["agreement"] == pytest.approx(o["agreement"])
    flips = {(f["baseline"], f["candidate"]): f["count"] for f in r.flips.to_pylist()}
    assert flips.get(("0", "1"), 0) == o["flips_01"] and flips.get(("1", "0"), 0) == o["flips_10"]
    assert s["score_diff_mean"] == pytest.approx(o["mean"])
    assert s["score_diff_p50"] == pytest.approx(o["median"])
    if o["acc_b"] is None:
        assert s["accuracy_baseline"] is None
    else:
        assert s["accuracy_baseline"] == pytest.approx(o["acc_b"])
        assert s["accuracy_candidate"] == pytest.approx(o["acc_c"])
        assert s["accuracy_diff"] == pytest.approx(o["acc_c"] - o["acc_b"])
        if s["labelled_records"] >= 2:  # a bootstrap of one record is no interval
            assert s["accuracy_diff_lower"] <= s["accuracy_diff_upper"]


def test_multiclass_labels_flip_matrix_and_quality(tmp_path):
    rng = np.random.default_rng(3)
    classes = ["bird", "cat", "dog"]
    rows = []
    for i in range(60):
        b = classes[rng.integers(3)]
        c = b if rng.random() < 0.7 else classes[rng.integers(3)]
        y = b if rng.random() < 0.6 else classes[rng.integers(3)]
        rows.append({"event_id": f"e{i % 20}", "inference_id": f"r{i}", "second": i, "x": f"{rng.random():.3f},{i % 4}\n",
                     "b": b, "c": c if i != 7 else None, "y": y if i % 5 else None})
    r = compare(write_pair(tmp_path, rows), baseline="Prod", candidate="Cand", bootstrap=200)
    assert r.problem_type == "MulticlassClassification"
    kept = [row for row in rows if row["c"] is not None]
    expect: dict = {}
    for row in kept:
        expect[(row["b"], row["c"])] = expect.get((row["b"], row["c"]), 0) + 1
    flips = {(f["baseline"], f["candidate"]): f["count"] for f in r.flips.to_pylist()}
    assert flips == expect
    assert r.summary["agreement"] == pytest.approx(sum(x["b"] == x["c"] for x in kept) / len(kept))
    lab = [row for row in kept if row["y"] is not None]
    acc_b = sum(x["b"] == x["y"] for x in lab) / len(lab)
    acc_c = sum(x["c"] == x["y"] for x in lab) / len(lab)
    assert r.summary["accuracy_baseline"] == pytest.approx(acc_b)
    assert r.summary["accuracy_diff"] == pytest.approx(acc_c - acc_b)
    assert r.summary["accuracy_diff_lower"] <= acc_c - acc_b <= r.summary["accuracy_diff_upper"]
    assert "score_diff_mean" not in r.summary or r.summary["score_diff_mean"] is None


def test_regression_differences_tolerance_and_mae(tmp_path):
    rng = np.random.default_rng(5)
    rows = []
    for i in range(50):
        b = round(float(rng.normal(10, 3)), 3)
        c = round(b + float(rng.normal(0, 0.5)), 3)
        y = round(b + float(rng.normal(0, 1)), 3)
        rows.append({"event_id": f"e{i}", "second": i, "x": f"{rng.random():.3f}\n",
                     "b": str(b), "c": str(c), "y": str(y)})
    r = compare(write_pair(tmp_path, rows), baseline="Prod", candidate="Cand", tolerance=0.3,
                bootstrap=100, problem_type="Regression")
    d = np.array([float(x["c"]) - float(x["b"]) for x in rows])
    assert r.summary["agreement"] == pytest.approx(np.mean(np.abs(d) <= 0.3))
    assert r.summary["score_diff_mean"] == pytest.approx(d.mean())
    y = np.array([float(x["y"]) for x in rows])
    mae_b = np.mean(np.abs(np.array([float(x["b"]) for x in rows]) - y))
    mae_c = np.mean(np.abs(np.array([float(x["c"]) for x in rows]) - y))
    assert r.summary["mae_diff"] == pytest.approx(mae_c - mae_b)
    assert r.flips.num_rows == 0
    top = r.top.to_pylist()
    assert abs(top[0]["diff"]) == pytest.approx(np.abs(d).max())
    assert "_c0" in r.top.column_names  # the record's inputs


# -- where they disagree ----------------------------------------------------------------------
def test_slices_rank_the_feature_that_separates_disagreements(tmp_path):
    rng = np.random.default_rng(9)
    rows = []
    for i in range(300):
        x0, x1 = rng.random(), rng.random()
        region = ["eu", "us", "ap"][i % 3]
        b = rng.random()
        c = 1 - b if x1 > 0.8 else b  # the candidate disagrees where _c1 is high
        rows.append({"event_id": f"e{i}", "second": i, "x": f"{x0:.4f},{x1:.4f},{region}\n",
                     "b": f"{b:.4f}", "c": f"{c:.4f}", "y": None})
    r = compare(write_pair(tmp_path, rows), baseline="Prod", candidate="Cand", bootstrap=0)
    slices = r.slices.to_pylist()
    assert slices[0]["feature"] == "_c1" and slices[0]["test"] == "ks"
    assert slices[0]["p_value"] < 1e-6
    by = {s["feature"]: s for s in slices}
    assert by["_c2"]["test"] == "chi2" and by["_c2"]["p_value"] > 1e-3


# -- the paired bootstrap ---------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.floats(0, 1), st.floats(0, 1)), min_size=2,
                max_size=40))
def test_bootstrap_metrics_at_the_identity_resample_equal_the_quality_metrics(data):
    y = np.array([d[0] for d in data], float)
    s = np.array([d[1] for d in data])
    idx = np.arange(len(y))[None, :]
    got = bootstrap_metrics("BinaryClassification", y, s, idx, threshold=0.5)
    want = binary_metrics(y, s, 0.5)
    for k in ("accuracy", "precision", "recall", "f1"):
        assert got[k][0] == pytest.approx(want[k])
    if want["auc_roc"] is None:
        assert math.isnan(got["auc_roc"][0])
    else:
        assert got["auc_roc"][0] == pytest.approx(want["auc_roc"])
    reg = bootstrap_metrics("Regression", y, s, idx)
    want = regression_metrics(y, s)
    for k in ("mae", "rmse", "r2"):
        assert reg[k][0] == pytest.approx(want[k])
    yk, pk = (y * 2).astype(int), (s * 2.99).astype(int)
    mc = bootstrap_metrics("MulticlassClassification", yk.astype(float), pk.astype(float), idx)
    want, _ = multiclass_metrics(yk.astype(float), pk.astype(float))
    for k in ("accuracy", "weighted_f1"):
        assert mc[k][0] == pytest.approx(want[k])


def test_bootstrap_is_seeded(tmp_path):
    cq = write_pair(tmp_path, _rows_binary(60))
    a = compare(cq, baseline="Prod", candidate="Cand", bootstrap=300, seed=1).summary
    b = compare(cq, baseline="Prod", candidate="Cand", bootstrap=300, seed=1).summary
    c = compare(cq, baseline="Prod", candidate="Cand", bootstrap=300, seed=2).summary
    bounds = [k for k in a if k.endswith(("_diff_lower", "_diff_upper"))]
    assert len(bounds) == 10 and all(a[k] is not None for k in bounds)
    assert [a[k] for k in bounds] == [b[k] for k in bounds]
    assert [a[k] for k in bounds] != [c[k] for k in bounds]


def test_estimate_where_labels_do_not_exist(tmp_path):
    rows = _rows_binary(400, dup=False)
    for i, row in enumerate(rows):
        if i >= 200:
            row["y"] = None
    r = compare(write_pair(tmp_path, rows), baseline="Prod", candidate="Cand", bootstrap=0)
    est = {row["metric"]: row for row in r.estimate.to_pylist()}
    assert est["accuracy"]["records"] == 200
    assert 0 <= est["accuracy"]["baseline"] <= 1 and 0 <= est["accuracy"]["candidate"] <= 1
    assert r.summary["estimated_accuracy_diff"] == pytest.approx(
        est["accuracy"]["candidate"] - est["accuracy"]["baseline"])


# -- --fail-if and the command ----------------------------------------------------------------
def test_parse_fail_if():
    assert parse_fail_if("agreement<0.95") == ("agreement", "<", 0.95)
    assert parse_fail_if(" accuracy_diff <= -0.01 ") == ("accuracy_diff", "<=", -0.01)
    with pytest.raises(ConfigError, match="agreement<0.95"):
        parse_fail_if("agreement ~ 3")


def _invoke(*args):
    return CliRunner().invoke(app, ["compare", *map(str, args)])


def test_cli_fail_if_exit_codes(tmp_path):
    write_pair(tmp_path, _rows_binary(80))
    tree, labels = tmp_path / "capture", tmp_path / "labels"
    common = [tree, "--baseline", "Prod", "--candidate", "Cand", "--labels", labels,
              "--bootstrap", "100"]
    ok = _invoke(*common, "--fail-if", "agreement<0.01", "--format", "json")
    assert ok.exit_code == 0, ok.output
    metrics = {m["metric"]: m["value"] for m in json.loads(ok.stdout)}
    assert 0 < metrics["agreement"] < 1
    tripped = _invoke(*common, "--fail-if", "agreement<0.999", "--fail-if", "accuracy_diff<-5")
    assert tripped.exit_code == 3, tripped.output
    assert "agreement" in tripped.output and "0.999" in tripped.output
    unknown = _invoke(*common, "--fail-if", "agreemnt<0.9")
    assert unknown.exit_code == 2
    assert "agreemnt" in unknown.output and "agreement" in unknown.output
    table = _invoke(*common)
    assert table.exit_code == 0, table.output
    assert "agreement" in table.output and "flip" in table.output


def test_cli_writes_the_report_section(tmp_path):
    write_pair(tmp_path, _rows_binary(60))
    out = tmp_path / "compare.html"
    made = _invoke(tmp_path / "capture", "--baseline", "Prod", "--candidate", "Cand", "--labels",
                   tmp_path / "labels", "--html", out, "--bootstrap", "50")
    assert made.exit_code == 0, made.output
    text = out.read_text()
    assert 'id="compare-flips"' in text and 'id="compare-quality"' in text


def test_unknown_variant_is_a_clear_error(tmp_path):
    cq = write_pair(tmp_path, _rows_binary(10))
    with pytest.raises(ConfigError, match="Nope"):
        compare(cq, baseline="Prod", candidate="Nope")


# -- the report section in a real browser ------------------------------------------------------
def test_compare_page_renders_in_chromium(tmp_path):
    import shutil
    from pathlib import Path

    chromium = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if chromium is None:
        pytest.skip("Chromium is not installed: `make browser` installs Debian's chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    pytest.importorskip("vl_convert")
    from captureq.report.compare import compare_report

    rows = _rows_binary(200, dup=False)
    r = compare(write_pair(tmp_path, rows), baseline="Prod", candidate="Cand", bootstrap=100)
    out = compare_report(r).write(tmp_path / "compare.html")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        pg = browser.new_page(viewport={"width": 1100, "height": 900})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(out.as_uri())
        pg.wait_for_function(
            "document.body.dataset.rendered || document.body.dataset.renderError", timeout=60_000)
        figures = pg.evaluate("""[...document.querySelectorAll('div.figure')].map(d => ({
            id: d.id, marks: d.querySelectorAll('svg .mark-rect path, svg .mark-text text').length}))""")
        headings = pg.evaluate("[...document.querySelectorAll('h2')].map(h => h.id)")
        browser.close()
    assert errors == []
    assert [f["id"] for f in figures] == ["fig-compare-flips", "fig-compare-diffs", "fig-compare-slices"]
    assert all(f["marks"] >= 2 for f in figures), figures
    assert headings == ["compare-summary", "compare-flips", "compare-diffs", "compare-slices",
                        "compare-quality", "compare-latency", "compare-top"]
