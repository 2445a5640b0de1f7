"""NaN and ±Infinity: numbers in the tables, missing for monitoring, counted on their own."""

from __future__ import annotations

import json
import math
import random
from datetime import timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trees import T0, capture, write_captures

import captureq
from captureq.decode import unify
from captureq.monitor import baseline, monitor
from captureq.monitor.baseline import column, feature_statistics

NON_FINITE = ["NaN", "nan", "Infinity", "-Infinity", "inf", "-inf", "INF"]


def _inputs(root):
    cq = captureq.open(str(root))
    keys = "capture_id, endpoint, variant, event_id, inference_id, inference_time, record_index"
    return cq.sql(f"select * exclude ({keys}) from inputs order by event_id").to_arrow()


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_a_column_of_numbers_and_nan_spellings_is_double(tmp_path, fmt):
    if fmt == "json":
        rows = ['{"a": 1.5, "b": NaN, "c": "NaN", "d": Infinity, "e": "-Infinity"}',
                '{"a": 2.5, "b": 2.0, "c": 3.5, "d": -Infinity, "e": 2}']
        ctype = "application/json"
    else:
        rows = ["1.5,NaN,nan,Infinity,-Infinity", "2.5,2,3.5,-inf,2"]
        ctype = "text/csv"
    write_captures(tmp_path, [capture(r, "0.5", input_type=ctype, event_id=f"e{i}")
                              for i, r in enumerate(rows)])
    t = _inputs(tmp_path)
    assert all(pa.types.is_float64(f.type) for f in t.schema), t.schema
    first, second = t.to_pylist()
    assert math.isnan(list(first.values())[1]) and math.isnan(list(first.values())[2])
    assert list(first.values())[3:] == [math.inf, -math.inf]
    assert list(second.values()) == [2.5, 2.0, 3.5, -math.inf, 2.0]


_spelled = st.one_of(
    st.sampled_from(NON_FINITE),
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(
        lambda x: unify.canonical_text(pa.array([x])).to_pylist()[0]),
    st.sampled_from(["abc", "true", "007", None]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_spelled, min_size=1, max_size=8))
def test_the_warm_path_types_text_as_memory_does(values):
    """kind_sql (the cache's and export's SQL) agrees with column_kind on NaN spellings."""
    arr = pa.array(values, pa.string())
    con = duckdb.connect()
    con.register("t", pa.table({"x": arr}))
    flags = con.execute(f"select {', '.join(unify.kind_sql('x', pa.string()))} from t").fetchone()
    assert unify.kind_of_flags(flags, pa.string()) == unify.column_kind(arr)


def test_num_present_is_the_count_the_mean_is_over():
    values = pa.array([1.0, 2.0, float("nan"), None, float("inf"), 4.0, float("-inf")])
    f = feature_statistics(column("y", values))
    ns = f["numerical_statistics"]
    finite = np.array([1.0, 2.0, 4.0])
    assert ns["common"] == {"num_present": 3, "num_missing": 4, "num_nan": 3}
    assert ns["mean"] == pytest.approx(finite.mean())
    assert ns["sum"] == pytest.approx(finite.sum())
    assert ns["completeness"] == pytest.approx(3 / 7)
    assert sum(b["count"] for b in ns["distribution"]["kll"]["buckets"]) == 3
    text = feature_statistics(column("z", pa.array(["1.5", "NaN", "2.5", "-Infinity", ""])))
    assert text["inferred_type"] == "Fractional"
    assert text["numerical_statistics"]["common"] == {"num_present": 2, "num_missing": 3, "num_nan": 2}
    assert text["numerical_statistics"]["mean"] == pytest.approx(2.0)


def _flood_tree(root, seed=1):
    rng = random.Random(seed)
    for h in range(12):
        lines = []
        for i in range(200):
            doc = {"x": rng.gauss(0, 1), "y": rng.gauss(5, 1), "z": rng.gauss(2, 1)}
            if h >= 6 and rng.random() < 0.6:
                doc["y"] = float("nan")  # json.dumps writes a bare NaN
            if h >= 6 and rng.random() < 0.6:
                doc["z"] = "NaN"
            lines.append(capture(json.dumps(doc), "0.5", input_type="application/json",
                                 event_id=f"e{h}-{i}", when=T0 + timedelta(hours=h, minutes=i % 50)))
        write_captures(root, lines, when=T0 + timedelta(hours=h), name=f"f{h}.jsonl")


def test_a_nan_flood_raises_completeness_violations(tmp_path):
    _flood_tree(tmp_path / "tree")
    cq = captureq.open(str(tmp_path / "tree"))
    t0 = T0.replace(minute=0, second=0)
    base = baseline(cq, end=t0 + timedelta(hours=6))
    by_name = {f["name"]: f for f in base.constraints["features"]}
    assert by_name["y"]["inferred_type"] == by_name["z"]["inferred_type"] == "Fractional"
    assert by_name["y"]["completeness"] == 1.0
    result = monitor(cq, base, start=t0 + timedelta(hours=6), hourly=False)
    kinds = {(v["feature_name"], v["constraint_check_type"]) for v in result.constraint_violations["violations"]}
    assert {("y", "completeness_check"), ("z", "completeness_check")} <= kinds
    assert ("x", "completeness_check") not in kinds
    stats = {f["name"]: f["numerical_statistics"] for f in result.statistics["features"]}
    inputs = cq._narrow({"start": t0 + timedelta(hours=6)}).inputs()
    y = np.asarray(inputs["y"].to_numpy(zero_copy_only=False), dtype=float)
    finite = y[np.isfinite(y)]
    assert stats["y"]["common"]["num_present"] == len(finite)
    assert stats["y"]["common"]["num_nan"] == len(y) - len(finite)
    assert stats["y"]["mean"] == pytest.approx(finite.mean())
    m = {(r["metric_name"], r["statistic"]): r["value"] for r in result.metrics.to_pylist()}
    assert m[("feature_non_null_y", "Value")] == pytest.approx(len(finite) / len(y))
    assert m[("feature_nan_y", "Value")] == pytest.approx(1 - len(finite) / len(y))
    assert m[("feature_data_y", "SampleCount")] == len(finite)
    assert 0.5 < m[("feature_nan_z", "Value")] < 0.7
    assert m[("feature_nan_x", "Value")] == 0.0


def test_numbers_and_nan_strings_are_read_in_bulk(monkeypatch):
    """A payload batch whose column mixes numbers and "NaN" strings is read in one pass of the
    JSON reader (as numbers), not one payload at a time."""
    from captureq.decode import json as dj

    calls = []
    real = dj._read_v
    monkeypatch.setattr(dj, "_read_v", lambda texts: calls.append(len(texts)) or real(texts))
    docs = [json.dumps({"z": "NaN" if i % 3 == 0 else i / 2, "y": float("nan") if i % 2 else i})
            for i in range(300)]
    d = dj.decode_json(pa.array(docs))
    assert len(calls) <= 2 and not d.failures
    z = d.table.column("z").to_pylist()
    assert pa.types.is_floating(d.table.schema.field("z").type)
    assert sum(v != v for v in z) == 100 and z[1] == 0.5
