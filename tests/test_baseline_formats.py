"""Baselines from every training format users have: CSV, JSON Lines, JSON, Parquet (nested
structs too), a capture tree and a captureq export; features named as capture decoding names
them, so ``monitor`` lines them up with the live data."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from trees import T0, capture, write_captures
from typer.testing import CliRunner

import captureq
from captureq.cli import app
from captureq.errors import ConfigError
from captureq.monitor import baseline
from captureq.monitor.training import detect_format

JSON_T = "application/json"
JSONL_T = "application/jsonlines"


def _users(n: int = 200, seed: int = 3) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "user": {"age": int(rng.integers(18, 90)),
                     "geo": {"lat": round(float(rng.normal(45, 5)), 3), "lon": round(float(rng.normal(7, 2)), 3)}},
            "plan": str(rng.choice(["basic", "gold"])),
            "Score": round(float(rng.normal()), 4),
        }
        for _ in range(n)
    ]


NESTED_NAMES = {"user.age", "user.geo.lat", "user.geo.lon", "plan", "\\Score"}


def _types(result) -> dict[str, str]:
    return {f["name"]: f["inferred_type"] for f in result.statistics["features"]}


def _capture_tree(root, rows: list[dict]):
    write_captures(root, [capture(json.dumps(r), "0.5", input_type=JSON_T, event_id=f"e{i}", when=T0)
                          for i, r in enumerate(rows)], endpoint="ep", name="f.jsonl")
    return root


def test_json_lines_training_file(tmp_path):
    rows = _users()
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = baseline(str(path))
    assert result.statistics["dataset"]["item_count"] == len(rows)
    assert _types(result) == {"user.age": "Integral", "user.geo.lat": "Fractional",
                              "user.geo.lon": "Fractional", "plan": "String", "\\Score": "Fractional"}
    ages = [f for f in result.statistics["features"] if f["name"] == "user.age"][0]
    assert ages["numerical_statistics"]["sum"] == sum(r["user"]["age"] for r in rows)


def test_json_array_training_file_and_features_vectors(tmp_path):
    rows = _users(50)
    (tmp_path / "train.json").write_text(json.dumps(rows))
    assert set(_types(baseline(str(tmp_path / "train.json")))) == NESTED_NAMES
    # Clarify-style {"features": [...]} lines are the same _c0… a capture of them gives
    (tmp_path / "vec.jsonl").write_text("".join(json.dumps({"features": [i, i / 2]}) + "\n" for i in range(10)))
    assert _types(baseline(str(tmp_path / "vec.jsonl"))) == {"_c0": "Integral", "_c1": "Fractional"}


def test_nested_parquet_flattens_with_capture_names(tmp_path):
    rows = _users()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    result = baseline(str(tmp_path / "train.parquet"))
    types = _types(result)
    assert set(types) == NESTED_NAMES
    assert types["user.age"] == "Integral" and types["user.geo.lat"] == "Fractional"
    lat = [f for f in result.statistics["features"] if f["name"] == "user.geo.lat"][0]
    assert lat["numerical_statistics"]["mean"] == pytest.approx(np.mean([r["user"]["geo"]["lat"] for r in rows]))


def test_arrow_table_with_structs_is_flattened_like_parquet(tmp_path):
    table = pa.Table.from_pylist(_users(30))
    assert set(_types(baseline(table))) == NESTED_NAMES
    flat = pa.table({"Age": [1, 2], "capture_id": ["a", "b"]})
    assert set(_types(baseline(flat))) == {"Age"}  # flat tables keep their names


def test_baseline_from_nested_parquet_then_monitor_nested_json_has_no_missing_or_extra(tmp_path):
    pq.write_table(pa.Table.from_pylist(_users(300, seed=1)), tmp_path / "train.parquet")
    base = baseline(str(tmp_path / "train.parquet"), tmp_path / "base")
    tree = captureq.open(str(_capture_tree(tmp_path / "cap", _users(300, seed=2))))
    live = set(tree.inputs().column_names)
    assert {f["name"] for f in base.statistics["features"]} <= live
    result = tree.monitor(str(tmp_path / "base"), str(tmp_path / "mon"))
    kinds = {(v["feature_name"], v["constraint_check_type"])
             for v in result.constraint_violations["violations"]}
    assert not [k for k in kinds if k[1] in ("missing_column_check", "extra_column_check")], kinds


def test_export_folder_baselines_like_its_capture_tree(tmp_path):
    rows = _users(80)
    tree = captureq.open(str(_capture_tree(tmp_path / "cap", rows)))
    tree.export(str(tmp_path / "out"))
    from_tree = baseline(tree)
    from_export = baseline(str(tmp_path / "out"))
    assert from_export.statistics["dataset"] == from_tree.statistics["dataset"]
    assert _types(from_export) == _types(from_tree)
    assert set(_types(from_export)) == NESTED_NAMES


def test_export_with_two_endpoints_needs_one(tmp_path):
    _capture_tree(tmp_path / "cap", _users(5))
    write_captures(tmp_path / "cap", [capture("1,2", "0.5")], endpoint="other", name="g.jsonl")
    captureq.open(str(tmp_path / "cap")).export(str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="endpoint"):
        baseline(str(tmp_path / "out"))
    assert set(_types(baseline(str(tmp_path / "out"), endpoint="other"))) == {"_c0", "_c1"}


def test_export_blob_and_partition_columns_are_not_features(tmp_path):
    """An export part that holds raw bytes (``payload`` BLOB) and its partition columns, as
    earlier layouts wrote them: neither becomes a feature."""
    part = "inputs/endpoint=ep/variant=v/date=2024-05-01/hour=12/part-0.parquet"
    (tmp_path / "out" / part).parent.mkdir(parents=True)
    (tmp_path / "out" / "_captureq").mkdir()
    (tmp_path / "out" / "_captureq" / "manifest.json").write_text(json.dumps({"parts": {"inputs": [part]}}))
    pq.write_table(pa.table({"capture_id": ["a", "b"], "record_index": pa.array([0, 0], pa.int32()),
                             "date": ["2024-05-01"] * 2, "hour": ["12"] * 2,
                             "payload": pa.array([b"\x89PNG", b"\x00"], pa.binary()), "_c0": [1.5, 2.0]}),
                   tmp_path / "out" / part)
    assert _types(baseline(str(tmp_path / "out"))) == {"_c0": "Fractional"}


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("train.csv", "1,2\n", "csv"),
        ("train.csv.gz", None, "csv"),
        ("train.jsonl", '{"a": 1}\n', "jsonl"),
        ("train.ndjson", '{"a": 1}\n', "jsonl"),
        ("train.json", '[{"a": 1}]', "json"),
        ("train.json", '{"a": 1}\n{"a": 2}\n', "jsonl"),  # JSON Lines named .json
        ("train.parquet", None, "parquet"),
        ("train.pq", None, "parquet"),
    ],
)
def test_detect_format_by_name_and_first_bytes(tmp_path, name, text, expected):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    assert detect_format(str(path)) == expected


def test_detect_format_of_folders(tmp_path):
    _capture_tree(tmp_path / "cap", _users(3))
    assert detect_format(str(tmp_path / "cap")) == "capture"
    captureq.open(str(tmp_path / "cap")).export(str(tmp_path / "out"))
    assert detect_format(str(tmp_path / "out")) == "export"
    (tmp_path / "pq").mkdir()
    pq.write_table(pa.table({"a": [1.0]}), tmp_path / "pq" / "part-0.parquet")
    assert detect_format(str(tmp_path / "pq")) == "parquet"


def test_a_capture_file_given_as_training_data_is_refused_with_the_fix(tmp_path):
    path = _capture_tree(tmp_path / "cap", _users(3))
    [file] = path.rglob("*.jsonl")
    with pytest.raises(ConfigError, match="capture file"):
        baseline(str(file))


def test_explicit_format_overrides_the_name(tmp_path):
    (tmp_path / "data.txt").write_text('{"a": 1.5}\n{"a": 2}\n')
    assert _types(baseline(str(tmp_path / "data.txt"), data_format="jsonl")) == {"a": "Fractional"}
    with pytest.raises(ConfigError, match="csv, jsonl, json, parquet, capture, export"):
        baseline(str(tmp_path / "data.txt"), data_format="xml")


def test_no_records_is_an_error_not_an_empty_baseline(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no records"):
        baseline(str(tmp_path / "empty"))


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_baseline_of_a_json_lines_file(tmp_path):
    rows = _users(40)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = CliRunner().invoke(app, ["baseline", str(tmp_path / "train.jsonl"), str(tmp_path / "b"),
                                   "--format", "json"])
    assert res.exit_code == 0, res.output
    stats = json.loads((tmp_path / "b" / "statistics.json").read_text())
    assert stats["dataset"]["item_count"] == 40
    assert {f["name"] for f in stats["features"]} == NESTED_NAMES


def test_cli_input_format_and_its_errors(tmp_path):
    (tmp_path / "data.txt").write_text("1,2\n3,4\n")
    res = CliRunner().invoke(app, ["baseline", str(tmp_path / "data.txt"), str(tmp_path / "b"),
                                   "--input-format", "csv", "--format", "json"])
    assert res.exit_code == 0, res.output
    stats = json.loads((tmp_path / "b" / "statistics.json").read_text())
    assert stats["dataset"]["item_count"] == 2
    (tmp_path / "nothing").mkdir()
    res = CliRunner().invoke(app, ["baseline", str(tmp_path / "nothing"), str(tmp_path / "c")])
    assert res.exit_code == 2 and "no records" in res.output
