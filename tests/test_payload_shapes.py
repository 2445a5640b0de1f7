"""Labels chosen by write time, label text as stored, non-string payloads,
unmatched labels, and the record/payload shapes AWS documents (Clarify, merge job, batch transform)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from trees import T0, capture, dumps, label, label_path, write_captures, write_labels

import captureq
from captureq import schema

SHAPES = Path(__file__).parent / "data" / "aws-shapes"


def reasons(tables, stage):
    return [r["reason"] for r in tables.quarantine.to_pylist() if r["stage"] == stage]


# -- 11.6: which label is the latest --------------------------------------------------------


def test_latest_label_is_chosen_by_write_time_not_file_name(tmp_path):
    write_captures(tmp_path / "c", [capture("1,2", "0.5", event_id="e1")], name="f.jsonl")
    newer = write_labels(tmp_path / "l", [label("e1", "1")], name="aaa.jsonl")
    older = write_labels(tmp_path / "l", [label("e1", "0")], name="zzz.jsonl")
    os.utime(older, (1_700_000_000, 1_700_000_000))
    os.utime(newer, (1_700_000_100, 1_700_000_100))
    cq = captureq.open(str(tmp_path / "c"), labels=str(tmp_path / "l"))
    [row] = cq.predictions().to_pylist()
    assert row["ground_truth"] == "1"
    times = {r["source_file"].rsplit("/", 1)[1]: r["source_modified"] for r in cq.labels().to_pylist()}
    assert times["aaa.jsonl"] > times["zzz.jsonl"]


def test_latest_label_within_one_file_is_the_last_line(tmp_path):
    write_captures(tmp_path / "c", [capture("1,2", "0.5", event_id="e1")], name="f.jsonl")
    write_labels(tmp_path / "l", [label("e1", "0"), label("e1", "1")], name="l.jsonl")
    cq = captureq.open(str(tmp_path / "c"), labels=str(tmp_path / "l"))
    assert cq.predictions()["ground_truth"].to_pylist() == ["1"]


def test_ground_truth_is_the_label_text_as_stored(tmp_path):
    write_captures(tmp_path / "c", [capture("1,2", "0.5", event_id=f"e{i}") for i in range(3)])
    write_labels(
        tmp_path / "l",
        [label("e0", " 2.5e0 "), label("e1", "1.0"), label("e2", "yes")],
        name="l.jsonl",
    )
    cq = captureq.open(str(tmp_path / "c"), labels=str(tmp_path / "l"))
    rows = {r["event_id"]: r for r in cq.labels().to_pylist()}
    assert rows["e0"]["ground_truth"] == " 2.5e0 "
    assert rows["e0"]["ground_truth_value"] == 2.5
    assert rows["e1"]["ground_truth"] == "1.0"
    assert rows["e1"]["ground_truth_value"] == 1.0
    assert rows["e2"]["ground_truth"] == "yes"
    assert rows["e2"]["ground_truth_value"] is None


def test_multi_line_csv_label_keeps_each_line_text(tmp_path):
    write_captures(tmp_path / "c", [capture("1,2\n3,4\n", "0.1\n0.9\n", event_id="e1")])
    write_labels(tmp_path / "l", [label("e1", "0\n 1.50\n")], name="l.jsonl")
    cq = captureq.open(str(tmp_path / "c"), labels=str(tmp_path / "l"))
    rows = sorted(cq.labels().to_pylist(), key=lambda r: r["record_index"])
    assert [r["ground_truth"] for r in rows] == ["0", " 1.50"]
    assert [r["ground_truth_value"] for r in rows] == [0.0, 1.5]


# -- 11.6: a payload whose data is not a string ---------------------------------------------


def test_non_string_data_keeps_the_capture_and_quarantines_the_payload(tmp_path):
    good = capture("1,2", "0.5", event_id="ok")
    number = capture("1,2", "0.5", event_id="num")
    number["captureData"]["endpointOutput"]["data"] = 0.93
    obj = capture("1,2", "0.5", event_id="obj", input_type="application/json")
    obj["captureData"]["endpointInput"]["data"] = {"instances": [[1, 2]]}
    obj["captureData"]["endpointInput"]["encoding"] = "JSON"
    write_captures(tmp_path / "c", [good, number, obj], name="f.jsonl")
    t = captureq.open(str(tmp_path / "c")).load()
    assert t.captures["event_id"].to_pylist() == ["ok", "num", "obj"]
    assert t.counts.lines_read == 3 and t.counts.quarantined_lines == 0
    q = {(r["stage"], r["line_number"]): r for r in t.quarantine.to_pylist()}
    assert set(q) == {("output", 2), ("input", 3)}
    assert "a JSON number, not a string" in q[("output", 2)]["reason"]
    assert "a JSON object, not a string" in q[("input", 3)]["reason"]
    assert q[("input", 3)]["raw"] == '{"instances": [[1, 2]]}'
    caps = {r["event_id"]: r for r in t.captures.to_pylist()}
    assert caps["num"]["output_data"] == "0.93"
    assert caps["num"]["input_data"] == "1,2"
    # the good sides still decode; the bad ones give no records and no align row
    ins = {r["event_id"] for r in t.inputs.to_pylist()}
    outs = {r["event_id"] for r in t.outputs.to_pylist()}
    assert ins == {"ok", "num"} and outs == {"ok", "obj"}


def test_many_non_string_payloads_in_one_batch(tmp_path):
    recs = []
    for i in range(500):
        r = capture("1,2", "0.5", event_id=f"e{i}")
        if i % 3 == 0:
            r["captureData"]["endpointOutput"]["data"] = i / 1000
        recs.append(r)
    write_captures(tmp_path / "c", recs, name="f.jsonl")
    t = captureq.open(str(tmp_path / "c")).load()
    assert t.captures.num_rows == 500
    assert len(reasons(t, "output")) == 167
    assert t.counts.reconciles


# -- 11.6: labels that match no capture ------------------------------------------------------


def test_unmatched_labels_are_counted_and_shown_by_scan(tmp_path):
    from typer.testing import CliRunner

    from captureq.cli import app

    write_captures(tmp_path / "c", [capture("1,2", "0.5", event_id="e1", inference_id="i1")])
    write_labels(
        tmp_path / "l", [label("i1", "1"), label("nobody", "0"), label("e1", "1")], name="l.jsonl"
    )
    cq = captureq.open(str(tmp_path / "c"), labels=str(tmp_path / "l"))
    assert cq.unmatched_labels() == 2  # "e1" is not the id: the capture has an inference id
    res = CliRunner().invoke(app, ["scan", str(tmp_path / "c"), "--labels", str(tmp_path / "l")])
    assert res.exit_code == 0, res.output
    assert "2 match no capture" in res.output


# -- 12.5: Clarify's JSON and JSON Lines ------------------------------------------------------


def test_clarify_instances_of_features_become_c_columns():
    cq = captureq.open(str(SHAPES / "clarify"))
    t = cq.load()
    assert t.quarantine.num_rows == 0, t.quarantine.to_pylist()
    ins = sorted(t.inputs.to_pylist(), key=lambda r: (r["capture_id"], r["record_index"]))
    assert "features" not in t.inputs.column_names
    assert [r["_c0"] for r in ins] == [39.0, 50.0, 38.0, 53.0]
    assert [r["_c5"] for r in ins] == [40.0, 13.0, 40.0, 40.0]
    outs = sorted(t.outputs.to_pylist(), key=lambda r: (r["capture_id"], r["record_index"]))
    assert [o["score"] for o in outs] == [0.0836, 0.6522, 0.0417, 0.1132]
    assert [o["predicted_label"] for o in outs] == [0.0, 1.0, 0.0, 0.0]
    # input record i pairs with output record i
    p = cq.sql("select _c0, output_score from predictions order by capture_id, record_index")
    assert p.to_arrow().to_pylist() == [
        {"_c0": 39.0, "output_score": 0.0836},
        {"_c0": 50.0, "output_score": 0.6522},
        {"_c0": 38.0, "output_score": 0.0417},
        {"_c0": 53.0, "output_score": 0.1132},
    ]


def test_features_object_and_instances_of_features_give_the_same_columns(tmp_path):
    docs = [json.dumps({"features": [1, 2, 3]}), json.dumps({"instances": [{"features": [4, 5, 6]}]})]
    write_captures(
        tmp_path / "c",
        [capture(d, "0.5", input_type="application/json", event_id=f"e{i}") for i, d in enumerate(docs)],
    )
    t = captureq.open(str(tmp_path / "c")).load()
    assert t.quarantine.num_rows == 0, t.quarantine.to_pylist()
    assert [c for c in t.inputs.column_names if c not in schema.RECORD_KEY_NAMES] == ["_c0", "_c1", "_c2"]
    assert t.inputs["_c2"].to_pylist() == [3.0, 6.0]


def test_clarify_baseline_sees_numeric_features(tmp_path):
    pytest.importorskip("captureq.monitor")
    cq = captureq.open(str(SHAPES / "clarify"))
    stats = cq.baseline(str(tmp_path / "b")).statistics
    names = [f["name"] for f in stats["features"]]
    assert names[:2] == ["_c0", "_c1"]
    assert stats["features"][0]["inferred_type"] in ("Integral", "Fractional")


# -- 12.5: merge-job records and batch transform ----------------------------------------------


def test_merged_records_read_with_their_ground_truth():
    cq = captureq.open(str(SHAPES / "merged"))
    t = cq.load()
    assert t.quarantine.num_rows == 0, t.quarantine.to_pylist()
    assert t.captures.num_rows == 3
    assert t.captures["inference_time_from_path"].to_pylist() == [False] * 3
    labels = t.labels.to_pylist()
    assert [r["event_id"] for r in labels] == [
        "inf-000481",
        "inf-000482",
        "5f2d8c41-7b3e-4a9d-b6e2-0a1c3f5e7d92",
    ]
    assert [r["ground_truth"] for r in labels] == ["0", "1", "0"]
    p = cq.sql("select output_c0, ground_truth from predictions order by capture_id").to_arrow()
    assert p["ground_truth"].to_pylist() == ["0", "1", "0"]


def test_batch_transform_records_take_their_hour_from_the_path():
    cq = captureq.open(str(SHAPES / "batch"))
    t = cq.load()
    assert t.quarantine.num_rows == 0, t.quarantine.to_pylist()
    assert t.captures.num_rows == 3
    caps = t.captures.to_pylist()
    assert all(c["inference_time_from_path"] for c in caps)
    assert {c["inference_time"].isoformat() for c in caps} == {"2026-01-06T03:00:00+00:00"}
    assert [c["output_data"] for c in caps] == ["0.1726", "0.9384", "0.4410"]
    assert all(c["input_data"] is None for c in caps)
    assert t.outputs["_c0"].to_pylist() == [0.1726, 0.9384, 0.4410]
    assert [r["ground_truth"] for r in t.labels.to_pylist()] == ["0", "1", "0"]
    assert cq.sql("select count(ground_truth) as n from predictions").to_arrow()["n"][0].as_py() == 3


def test_merged_records_in_a_window_and_export(tmp_path):
    shutil.copytree(SHAPES / "batch", tmp_path / "batch")
    cq = captureq.open(str(tmp_path / "batch"), start="2026-01-06T03", end="2026-01-06T04")
    assert cq.captures().num_rows == 3
    summary = cq.export(str(tmp_path / "out"))
    import duckdb

    with duckdb.connect() as con:  # a private connection: the shared default may be busy
        n = con.execute(
            f"select count(*) from read_parquet('{tmp_path}/out/labels/**/*.parquet')"
        ).fetchall()[0][0]
    assert n == 3 and summary.rows["labels"] == 3


def test_a_capture_without_time_or_path_hour_is_still_quarantined(tmp_path):
    rec = capture("1,2", "0.5")
    del rec["eventMetadata"]["inferenceTime"]
    p = write_captures(tmp_path / "c", [rec], name="f.jsonl")
    t = captureq.open(str(p)).load()  # a single file still has its hour in the path
    assert t.captures["inference_time_from_path"].to_pylist() == [True]
    assert t.captures["inference_time"][0].as_py() == T0.replace(minute=0, second=0, microsecond=0)


def test_json_lines_scores_align_with_json_lines_features(tmp_path):
    inp = '{"features": [1, 2]}\n{"features": [3, 4]}\n'
    out = '{"score": 0.2, "predicted_label": 0}\n{"score": 0.7, "predicted_label": 1}\n'
    write_captures(
        tmp_path / "c",
        [capture(inp, out, input_type="application/jsonlines", output_type="application/jsonlines")],
    )
    cq = captureq.open(str(tmp_path / "c"))
    t = cq.load()
    assert t.quarantine.num_rows == 0
    assert t.inputs["_c1"].to_pylist() == [2.0, 4.0]
    rows = cq.sql("select _c0, output_score, output_predicted_label from predictions order by record_index")
    assert rows.to_arrow().to_pylist() == [
        {"_c0": 1.0, "output_score": 0.2, "output_predicted_label": 0.0},
        {"_c0": 3.0, "output_score": 0.7, "output_predicted_label": 1.0},
    ]


def test_latest_label_on_s3_is_chosen_by_last_modified(tmp_path, s3_fs, s3_bucket, s3_options):
    import time

    from s3util import upload_tree

    write_captures(tmp_path / "c", [capture("1,2", "0.5", event_id="e1")], name="f.jsonl")
    upload_tree(s3_fs, tmp_path / "c", f"s3://{s3_bucket}/c")
    for name, value in (("zzz.jsonl", "0"), ("aaa.jsonl", "1")):  # zzz first, aaa later
        key = label_path(f"{s3_bucket}/l", T0, name)
        s3_fs.pipe(key, (dumps(label("e1", value)) + "\n").encode())
        time.sleep(1.1)  # LastModified has one-second resolution
    s3_fs.invalidate_cache()
    cq = captureq.open(f"s3://{s3_bucket}/c", labels=f"s3://{s3_bucket}/l", storage_options=s3_options)
    [row] = cq.predictions().to_pylist()
    assert row["ground_truth"] == "1"


def test_other_data_keys_and_string_data_that_looks_like_json_are_untouched(tmp_path):
    a = capture('{"data": 5}', "0.5", input_type="application/json", event_id="a")
    a["captureData"]["endpointInput"]["encoding"] = "JSON"
    b = capture("1,2", "0.5", event_id="b")
    b["extra"] = {"data": 5, "more": [{"data": True}]}  # an unknown field: ignored as before
    c = capture("1,2", "0.5", event_id="c")
    c["captureData"]["endpointInput"]["data"] = [1, 2]
    c["eventMetadata"]["inferenceTime"] = "not a time"  # a bad line stays one bad line
    write_captures(tmp_path / "c", [a, b, c], name="f.jsonl")
    t = captureq.open(str(tmp_path / "c")).load()
    assert t.captures["event_id"].to_pylist() == ["a", "b"]
    assert t.captures["input_data"].to_pylist() == ['{"data": 5}', "1,2"]
    [q] = t.quarantine.to_pylist()
    assert (q["stage"], q["line_number"]) == ("line", 3)
    assert q["reason"] == "eventMetadata.inferenceTime is not an ISO 8601 time"
    assert t.counts.reconciles


def test_label_file_with_non_string_data_keeps_the_row_and_quarantines_the_label(tmp_path):
    write_captures(tmp_path / "c", [capture("1,2", "0.5", event_id=f"e{i}") for i in range(2)])
    bad = label("e1", "1", encoding="JSON")
    bad["groundTruthData"]["data"] = {"label": 1}
    write_labels(tmp_path / "l", [label("e0", "0"), bad], name="l.jsonl")
    t = captureq.open(str(tmp_path / "c"), labels=str(tmp_path / "l")).load()
    assert t.label_counts.lines_read == 2 and t.label_counts.quarantined_lines == 0
    assert t.label_counts.rows == 2
    assert t.labels["event_id"].to_pylist() == ["e0"]
    [q] = t.quarantine.to_pylist()
    assert q["stage"] == "label" and q["line_number"] == 2
    assert "groundTruthData.data is a JSON object, not a string" in q["reason"]
    assert q["raw"] == '{"label": 1}'


def test_scan_shows_embedded_labels():
    from typer.testing import CliRunner

    from captureq.cli import app

    res = CliRunner().invoke(app, ["scan", str(SHAPES / "batch")])
    assert res.exit_code == 0, res.output
    assert "embedded labels" in res.output and "3 (groundTruthData" in res.output
