"""Payload decoders: CSV, JSON, JSON Lines, base64 and labels, one shape at a time.

Most tests write a tiny capture tree with the project's own writer (``tests/trees.py``) and read
it back with ``captureq.open``, exactly as a user would.
"""

from __future__ import annotations

import base64
import json

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trees import T0, capture, label, payload, write_captures, write_labels, write_tree

import captureq
from captureq import DecodeOptions, schema
from captureq.decode import decode_csv, decode_json, decode_json_lines

JSON_T = "application/json"
JSONL_T = "application/jsonlines"


def load(tmp_path, records, *, labels=None, options=None, endpoint="ep"):
    write_captures(tmp_path / "capture", records, endpoint=endpoint, name="f.jsonl")
    labels_uri = None
    if labels is not None:
        write_labels(tmp_path / "labels", labels, name="l.jsonl")
        labels_uri = str(tmp_path / "labels")
    return captureq.open(str(tmp_path / "capture"), labels=labels_uri, options=options)


def values(table, *, keep_index=False):
    """Rows of a records table without the key columns (record_index kept on request)."""
    drop = set(schema.RECORD_KEY_NAMES) - ({"record_index"} if keep_index else set())
    return [{k: v for k, v in row.items() if k not in drop} for row in table.to_pylist()]


def only(tables):
    assert tables.quarantine.num_rows == 0, tables.quarantine.to_pylist()
    return tables


def reasons(tables, stage):
    return [r["reason"] for r in tables.quarantine.to_pylist() if r["stage"] == stage]


# -- CSV ---------------------------------------------------------------------------------------


def test_csv_single_row():
    d = decode_csv(pa.array(["1,2.5,-3e-05"]))
    assert d.failures == []
    assert d.table.to_pylist() == [
        {"_row": 0, "record_index": 0, "_c0": 1.0, "_c1": 2.5, "_c2": -3e-05}
    ]


@pytest.mark.parametrize(
    "text",
    [
        "1,2\n3,4\n",  # trailing newline (SageMaker's sample)
        "1,2\n3,4",  # none
        "1,2\r\n3,4\r\n",  # CRLF
        "1,2\n\n3,4\n\n",  # blank lines
        "\n1,2\r\n\r\n3,4",  # leading blank line, mixed endings
    ],
    ids=["trailing-newline", "no-trailing-newline", "crlf", "blank-lines", "leading-blank"],
)
def test_csv_multi_row_line_endings(text):
    d = decode_csv(pa.array([text, "5,6"]))
    assert d.failures == []
    rows = [(r["_row"], r["record_index"], r["_c0"], r["_c1"]) for r in d.table.to_pylist()]
    assert rows == [(0, 0, 1.0, 2.0), (0, 1, 3.0, 4.0), (1, 0, 5.0, 6.0)]


def test_csv_quoted_fields():
    d = decode_csv(pa.array(['1,"a,b",3\n', '2,"say ""hi""",4']))
    assert d.failures == []
    assert [(r["_c0"], r["_c1"], r["_c2"]) for r in d.table.to_pylist()] == [
        (1.0, "a,b", 3.0),
        (2.0, 'say "hi"', 4.0),
    ]


def test_csv_empty_field_is_null():
    d = decode_csv(pa.array(["1,,3"]))
    assert d.table.to_pylist()[0]["_c1"] is None


def test_csv_ragged_payload_fails_alone_and_neighbours_keep_their_rows():
    d = decode_csv(pa.array(["1,2\n3,4", "5,6\n7", "8,9"]))
    assert [row for row, _ in d.failures] == [1]
    assert "Expected 2 columns, got 1" in d.failures[0][1]
    assert [(r["_row"], r["record_index"], r["_c0"]) for r in d.table.to_pylist()] == [
        (0, 0, 1.0),
        (0, 1, 3.0),
        (2, 0, 8.0),
    ]


def test_csv_quoted_newline_is_a_failure_not_a_shift():
    d = decode_csv(pa.array(['1,"a\nb"', "2,c"]))
    assert [row for row, _ in d.failures] == [0]
    assert [(r["_row"], r["_c0"], r["_c1"]) for r in d.table.to_pylist()] == [(1, 2.0, "c")]


def test_csv_ragged_payload_is_quarantined_with_its_line(tmp_path):
    t = load(
        tmp_path, [capture("1,2\n", "0.5"), capture("1,2\n3\n", "0.1\n0.2"), capture("5,6", "0.7")]
    ).load()
    q = [r for r in t.quarantine.to_pylist() if r["stage"] == "input"]
    assert len(q) == 1 and q[0]["line_number"] == 2
    assert (
        q[0]["reason"].startswith("CSV payload does not parse")
        and "Expected 2 columns, got 1" in q[0]["reason"]
    )
    assert q[0]["raw"] == "1,2\n3\n"
    assert [r["_c0"] for r in values(t.inputs)] == [1.0, 5.0]
    assert t.counts.payloads_quarantined == 1


def test_csv_feature_names_from_the_user(tmp_path):
    opts = DecodeOptions(input_names=["age", "income"], output_names={"ep": ["churn"]})
    t = only(load(tmp_path, [capture("31,5.5,7", "0.9")], options=opts).load())
    assert values(t.inputs) == [{"age": 31.0, "income": 5.5, "_c2": 7.0}]
    assert values(t.outputs) == [{"churn": 0.9}]


def test_csv_names_per_endpoint_leave_other_endpoints_alone(tmp_path):
    write_captures(tmp_path, [capture("1,2", "0.1")], endpoint="a")
    write_captures(tmp_path, [capture("3,4", "0.2")], endpoint="b")
    t = only(
        captureq.open(str(tmp_path), options=DecodeOptions(input_names={"a": ["x", "y"]})).load()
    )
    assert values(t.inputs) == [
        {"x": 1.0, "y": 2.0, "_c0": None, "_c1": None},
        {"x": None, "y": None, "_c0": 3.0, "_c1": 4.0},
    ]


def test_csv_widths_differ_across_endpoints_unioned_by_name(tmp_path):
    write_tree(
        tmp_path,
        {
            ("narrow", "AllTraffic", T0, "a.jsonl"): [capture("1,2", "0.5")],
            ("wide", "AllTraffic", T0, "b.jsonl"): [capture("1,2,3,4\n5,6,7,8", "0.5\n0.6")],
        },
    )
    t = only(captureq.open(str(tmp_path)).load())
    assert t.counts.files == 2
    assert [c for c in t.inputs.column_names if c.startswith("_c")] == ["_c0", "_c1", "_c2", "_c3"]
    assert values(t.inputs) == [
        {"_c0": 1.0, "_c1": 2.0, "_c2": None, "_c3": None},
        {"_c0": 1.0, "_c1": 2.0, "_c2": 3.0, "_c3": 4.0},
        {"_c0": 5.0, "_c1": 6.0, "_c2": 7.0, "_c3": 8.0},
    ]


def test_csv_text_and_numbers_in_one_column_become_text(tmp_path):
    t = only(load(tmp_path, [capture("1,a", "0.5"), capture("x,2", "0.5")]).load())
    assert values(t.inputs) == [{"_c0": "1", "_c1": "a"}, {"_c0": "x", "_c1": "2"}]


# -- JSON --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc, expected",
    [
        ({"instances": [[1, 2.5], [3, 4]]}, [{"_c0": 1.0, "_c1": 2.5}, {"_c0": 3.0, "_c1": 4.0}]),
        (
            {"instances": [{"age": 31, "city": "Oslo"}, {"age": 40, "city": "Rome"}]},
            [{"age": 31.0, "city": "Oslo"}, {"age": 40.0, "city": "Rome"}],
        ),
        ({"features": [1, 2, 3]}, [{"_c0": 1.0, "_c1": 2.0, "_c2": 3.0}]),
        (
            [[1, 2], [3, 4], [5, 6]],
            [{"_c0": 1.0, "_c1": 2.0}, {"_c0": 3.0, "_c1": 4.0}, {"_c0": 5.0, "_c1": 6.0}],
        ),
        ([0.5, 1.5], [{"_c0": 0.5, "_c1": 1.5}]),
        (
            {"age": 31, "address": {"zip": 1234, "geo": {"lat": 59.9}}},
            [{"age": 31.0, "address.zip": 1234.0, "address.geo.lat": 59.9}],
        ),
        ({"inputs": [[7, 8]]}, [{"_c0": 7.0, "_c1": 8.0}]),
        ({"inputs": [{"x": 1}, {"x": 2}]}, [{"x": 1.0}, {"x": 2.0}]),
        (42, [{"_c0": 42.0}]),
        ("hello", [{"_c0": "hello"}]),
    ],
    ids=[
        "instances-lists",
        "instances-objects",
        "features",
        "list-of-lists",
        "list-of-scalars",
        "named-nested",
        "inputs-lists",
        "inputs-objects",
        "scalar-number",
        "scalar-string",
    ],
)
def test_json_input_shapes(tmp_path, doc, expected):
    t = only(load(tmp_path, [capture(json.dumps(doc), None, input_type=JSON_T)]).load())
    assert values(t.inputs) == expected
    assert t.inputs["record_index"].to_pylist() == list(range(len(expected)))


def test_json_shapes_in_one_batch_do_not_mix(tmp_path):
    docs = [{"instances": [[1, 2]]}, [[3, 4], [5, 6]], {"features": [7, 8]}, {"a": 9}]
    t = only(load(tmp_path, [capture(json.dumps(d), None, input_type=JSON_T) for d in docs]).load())
    rows = [(r["_c0"], r["_c1"], r["a"]) for r in values(t.inputs)]
    assert rows == [
        (1.0, 2.0, None),
        (3.0, 4.0, None),
        (5.0, 6.0, None),
        (7.0, 8.0, None),
        (None, None, 9.0),
    ]
    caps = t.captures["capture_id"].to_pylist()
    assert t.inputs["capture_id"].to_pylist() == [caps[0], caps[1], caps[1], caps[2], caps[3]]


def test_json_user_input_path(tmp_path):
    doc = {"meta": {"v": 1}, "payload": {"rows": [[1, 2], [3, 4]]}}
    opts = DecodeOptions(input_path="payload.rows", input_names=["a", "b"])
    t = only(
        load(
            tmp_path, [capture(json.dumps(doc), "0.1\n0.2", input_type=JSON_T)], options=opts
        ).load()
    )
    assert values(t.inputs) == [{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}]


def test_json_path_that_is_missing_is_a_failure(tmp_path):
    opts = DecodeOptions(input_path="payload.rows")
    t = load(tmp_path, [capture('{"other": 1}', None, input_type=JSON_T)], options=opts).load()
    assert reasons(t, "input") == [
        "JSON payload does not parse: no field 'payload' on the path 'payload.rows'"
    ]


def test_json_that_is_not_json_is_a_failure(tmp_path):
    t = load(
        tmp_path,
        [capture("[1, 2", None, input_type=JSON_T), capture("[3]", None, input_type=JSON_T)],
    ).load()
    [reason] = reasons(t, "input")
    assert reason.startswith("JSON payload does not parse")
    assert values(t.inputs) == [{"_c0": 3.0}]


def test_json_lines_content_type(tmp_path):
    lines = '{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}\n\n{"a": 3, "b": "z"}\n'
    t = only(load(tmp_path, [capture(lines, None, input_type=JSONL_T)]).load())
    assert t.captures["input_encoding"].to_pylist() == ["JSON"]
    assert values(t.inputs, keep_index=True) == [
        {"record_index": 0, "a": 1.0, "b": "x"},
        {"record_index": 1, "a": 2.0, "b": "y"},
        {"record_index": 2, "a": 3.0, "b": "z"},
    ]


def test_json_lines_direct():
    d = decode_json_lines(pa.array(["[1,2]\r\n[3,4]", '{"a": 5}']))
    assert d.failures == []
    assert [(r["_row"], r["record_index"], r["_c0"], r["a"]) for r in d.table.to_pylist()] == [
        (0, 0, 1.0, None),
        (0, 1, 3.0, None),
        (1, 0, None, 5.0),
    ]


def test_json_direct_ints_and_floats_share_a_column():
    d = decode_json(pa.array(['{"instances": [[1, 2]]}', '{"instances": [[1.5, 2]]}']))
    assert d.table.column("_c0").to_pylist() == [1.0, 1.5]
    assert d.table.schema.field("_c0").type == pa.float64()


# -- outputs -----------------------------------------------------------------------------------


def test_output_single_score(tmp_path):
    t = only(load(tmp_path, [capture("1,2", "0.25")]).load())
    assert values(t.outputs) == [{"_c0": 0.25}]


def test_output_newline_separated(tmp_path):
    t = only(load(tmp_path, [capture("1\n2\n3\n", "0.1\n0.2\n0.3\n")]).load())
    assert values(t.outputs, keep_index=True) == [
        {"record_index": 0, "_c0": 0.1},
        {"record_index": 1, "_c0": 0.2},
        {"record_index": 2, "_c0": 0.3},
    ]


def test_output_comma_separated_aligned_with_input_rows(tmp_path):
    t = only(load(tmp_path, [capture("1\n2\n3\n", "0.1,0.2,0.3"), capture("4", "0.4,0.6")]).load())
    assert values(t.outputs, keep_index=True) == [
        {"record_index": 0, "_c0": 0.1, "_c1": None},
        {"record_index": 1, "_c0": 0.2, "_c1": None},
        {"record_index": 2, "_c0": 0.3, "_c1": None},
        # one input row: "0.4,0.6" is that row's probability vector
        {"record_index": 0, "_c0": 0.4, "_c1": 0.6},
    ]


@pytest.mark.parametrize(
    "inp, out, expected",
    [
        ("1\n2", {"predictions": [0.1, 0.9]}, [{"_c0": 0.1}, {"_c0": 0.9}]),
        (
            "1\n2",
            {"predictions": [[0.3, 0.7], [0.6, 0.4]]},
            [{"_c0": 0.3, "_c1": 0.7}, {"_c0": 0.6, "_c1": 0.4}],
        ),
        ("1\n2", [[0.3, 0.7], [0.6, 0.4]], [{"_c0": 0.3, "_c1": 0.7}, {"_c0": 0.6, "_c1": 0.4}]),
        ("1\n2", [0.3, 0.7], [{"_c0": 0.3}, {"_c0": 0.7}]),
        ("1", [0.3, 0.7], [{"_c0": 0.3, "_c1": 0.7}]),
        ("1", {"probabilities": [0.2, 0.3, 0.5]}, [{"_c0": 0.2, "_c1": 0.3, "_c2": 0.5}]),
        ("1", {"predictions": [0.9]}, [{"_c0": 0.9}]),
        ("1", {"label": "churn", "score": 0.93}, [{"label": "churn", "score": 0.93}]),
        (
            "1\n2",
            {"predictions": [{"label": 1, "score": 0.8}, {"label": 0, "score": 0.4}]},
            [{"label": 1.0, "score": 0.8}, {"label": 0.0, "score": 0.4}],
        ),
    ],
    ids=[
        "predictions-scalars",
        "predictions-probabilities",
        "bare-probabilities",
        "bare-scalars-per-row",
        "bare-probabilities-one-row",
        "probabilities-one-row",
        "predictions-one",
        "label-score",
        "predictions-objects",
    ],
)
def test_output_json_shapes(tmp_path, inp, out, expected):
    t = only(load(tmp_path, [capture(inp, json.dumps(out), output_type=JSON_T)]).load())
    assert values(t.outputs) == expected
    assert t.outputs["record_index"].to_pylist() == list(range(len(expected)))


def test_output_only_capture(tmp_path):
    t = only(load(tmp_path, [capture(None, "0.1\n0.2")]).load())
    assert t.inputs.num_rows == 0
    assert values(t.outputs) == [{"_c0": 0.1}, {"_c0": 0.2}]
    assert t.captures["input_data"].to_pylist() == [None]


def test_count_mismatch_is_quarantined_and_never_shifts(tmp_path):
    records = [capture("1\n2\n3", "0.1\n0.2", event_id="a"), capture("4", "0.4", event_id="b")]
    cq = load(tmp_path, records)
    t = cq.load()
    [row] = t.quarantine.to_pylist()
    assert row["stage"] == "align" and row["line_number"] == 1
    assert row["reason"] == "3 input records but 2 output records; predictions are not aligned"
    assert row["capture_id"] == t.captures["capture_id"][0].as_py()
    # the second capture's output still answers the second capture's input
    rows = cq.sql(
        "select event_id, _c0, output_c0 from predictions where event_id = 'b'"
    ).to_pylist()
    assert rows == [{"event_id": "b", "_c0": 4.0, "output_c0": 0.4}]
    outs = t.outputs.to_pylist()
    assert [(o["event_id"], o["record_index"], o["_c0"]) for o in outs] == [
        ("a", 0, 0.1),
        ("a", 1, 0.2),
        ("b", 0, 0.4),
    ]


# -- BASE64 ------------------------------------------------------------------------------------


def test_base64_csv_is_decoded_twice(tmp_path):
    t = only(load(tmp_path, [capture("1,2.5\n3,4\n", "0.1\n0.2", base64=True)]).load())
    assert t.captures["input_encoding"].to_pylist() == ["BASE64"]
    assert t.captures["input_data"][0].as_py() == base64.b64encode(b"1,2.5\n3,4\n").decode()
    assert values(t.inputs) == [{"_c0": 1.0, "_c1": 2.5}, {"_c0": 3.0, "_c1": 4.0}]
    assert values(t.outputs) == [{"_c0": 0.1}, {"_c0": 0.2}]


def test_base64_json_and_json_lines(tmp_path):
    records = [
        capture(
            '{"instances": [[1, 2]]}',
            '{"predictions": [0.5]}',
            input_type=JSON_T,
            output_type="application/json; charset=utf-8",
            base64=True,
        ),
        capture('{"a": 1}\n{"a": 2}', "0.1\n0.2", input_type=JSONL_T, base64=True),
    ]
    t = only(load(tmp_path, records).load())
    assert values(t.inputs) == [
        {"_c0": 1.0, "_c1": 2.0, "a": None},
        {"_c0": None, "_c1": None, "a": 1.0},
        {"_c0": None, "_c1": None, "a": 2.0},
    ]
    assert values(t.outputs) == [{"_c0": 0.5}, {"_c0": 0.1}, {"_c0": 0.2}]


def test_binary_payload_is_one_record_its_bytes_in_captures(tmp_path):
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"
    t = only(
        load(
            tmp_path,
            [
                capture(
                    png,
                    '{"label": "cat", "score": 0.8}',
                    input_type="image/png",
                    output_type=JSON_T,
                )
            ],
        ).load()
    )
    # one record (its output lines up with it); the bytes stay once, in captures.input_data
    assert values(t.inputs) == [{}]
    assert base64.b64decode(t.captures["input_data"][0].as_py()) == png
    assert values(t.outputs) == [{"label": "cat", "score": 0.8}]


def raw_payload(data, encoding, content_type="text/csv", mode="INPUT"):
    return {"observedContentType": content_type, "mode": mode, "data": data, "encoding": encoding}


@pytest.mark.parametrize(
    "bad, reason",
    [
        (raw_payload("not base64!", "BASE64"), "invalid base64 data"),
        (
            raw_payload(base64.b64encode(b"1,\xff\xfe").decode(), "BASE64"),
            "base64 payload declared 'text/csv' is not UTF-8 text",
        ),
        (raw_payload("1,2", "XML"), "unknown encoding 'XML'; expected CSV, JSON or BASE64"),
    ],
    ids=["invalid-base64", "not-utf8-text", "unknown-encoding"],
)
def test_bad_payloads_are_quarantined(tmp_path, bad, reason):
    good = capture("1,2", "0.5")
    t = load(tmp_path, [good, capture(bad, "0.7"), good]).load()
    [row] = t.quarantine.to_pylist()
    assert (row["stage"], row["line_number"], row["reason"]) == ("input", 2, reason)
    assert row["raw"] == bad["data"]
    assert row["capture_id"] == t.captures["capture_id"][1].as_py()
    assert t.captures.num_rows == 3  # the capture row stays; its other side still decodes
    assert values(t.outputs) == [{"_c0": 0.5}, {"_c0": 0.7}, {"_c0": 0.5}]
    assert t.inputs["capture_id"].to_pylist() == t.captures["capture_id"].take([0, 2]).to_pylist()
    assert t.counts.payloads_quarantined == 1 and t.counts.reconciles


def test_every_payload_base64_with_bad_and_binary_ones_among_them(tmp_path):
    """A batch whose payloads are all base64 (no copy of them is made to decode them): bad ones
    are still quarantined at their own line, and the others keep their rows and order."""
    png = b"\x89PNG\r\n\x1a\n\x00"
    good = lambda v: capture(raw_payload(base64.b64encode(v.encode()).decode(), "BASE64"), "0.5")  # noqa: E731
    records = [
        good("1,2"),
        capture(raw_payload("not base64!", "BASE64"), "0.6"),
        good("3,4"),
        capture(raw_payload(base64.b64encode(b"1,\xff\xfe").decode(), "BASE64"), "0.7"),
        good("5,6"),
    ]
    t = load(tmp_path, records).load()
    assert [(r["line_number"], r["reason"]) for r in t.quarantine.to_pylist()] == [
        (2, "invalid base64 data"), (4, "base64 payload declared 'text/csv' is not UTF-8 text")]
    assert values(t.inputs) == [{"_c0": 1, "_c1": 2}, {"_c0": 3, "_c1": 4}, {"_c0": 5, "_c1": 6}]
    assert t.inputs["capture_id"].to_pylist() == t.captures["capture_id"].take([0, 2, 4]).to_pylist()
    assert t.counts.reconciles
    # a binary payload among text ones, every one base64
    mixed = [good("1,2"), capture(raw_payload(base64.b64encode(png).decode(), "BASE64", "image/png"), "0.6"),
             good("3,4")]
    t = only(load(tmp_path / "mixed", mixed).load())
    assert t.inputs["capture_id"].to_pylist() == t.captures["capture_id"].to_pylist()
    assert "payload" not in t.inputs.column_names
    assert [r.get("_c0") for r in values(t.inputs)] == [1, None, 3]


def test_payload_encoding_and_content_type_are_case_insensitive(tmp_path):
    rec = capture(raw_payload("MSwy", "base64", "Text/CSV; charset=UTF-8"), "0.5")
    t = only(load(tmp_path, [rec]).load())
    assert values(t.inputs) == [{"_c0": 1.0, "_c1": 2.0}]


def test_payload_writer_stores_unlisted_types_as_base64():
    assert payload("1,2", "text/csv", csv_types=())["encoding"] == "BASE64"
    assert payload('{"a": 1}', JSON_T)["encoding"] == "JSON"


# -- labels and the predictions view -----------------------------------------------------------


def test_labels_csv_json_base64(tmp_path):
    labels = [
        label("e1", "1"),
        label("e2", '{"label": 0}', "JSON"),
        label("e3", base64.b64encode(b"1").decode(), "BASE64"),
        label("e4", "cat"),
        label("e5", "1\n0\n"),
        label("e6", "[1, 0, 1]", "JSON"),
        label("e7", "0.25"),
    ]
    t = load(tmp_path, [capture("1", "0.5")], labels=labels).load()
    assert [r for r in t.quarantine.to_pylist()] == []
    got = [
        (r["event_id"], r["record_index"], r["ground_truth"], r["ground_truth_value"])
        for r in t.labels.to_pylist()
    ]
    assert got == [
        ("e1", 0, "1", 1.0),
        ("e2", 0, "0", 0.0),
        ("e3", 0, "1", 1.0),
        ("e4", 0, "cat", None),
        ("e5", 0, "1", 1.0),
        ("e5", 1, "0", 0.0),
        ("e6", 0, "1", 1.0),
        ("e6", 1, "0", 0.0),
        ("e6", 2, "1", 1.0),
        ("e7", 0, "0.25", 0.25),
    ]
    assert t.labels.schema == schema.LABELS
    assert t.labels["line_number"].to_pylist() == [1, 2, 3, 4, 5, 5, 6, 6, 6, 7]
    assert set(t.labels["label_hour"].to_pylist()) == {T0.replace(minute=0, second=0)}


def test_bad_label_payload_is_quarantined(tmp_path):
    t = load(
        tmp_path, [capture("1", "0.5")], labels=[label("e1", "%%%", "BASE64"), label("e2", "1")]
    ).load()
    [row] = t.quarantine.to_pylist()
    assert (row["stage"], row["line_number"], row["reason"]) == ("label", 1, "invalid base64 data")
    assert t.labels["event_id"].to_pylist() == ["e2"]


def test_predictions_join_labels_by_inference_id_else_event_id(tmp_path):
    records = [
        capture("1", "0.9", event_id="ev-1"),
        capture("2", "0.1", event_id="ev-2", inference_id="req-2"),
        capture("3\n4", "0.3\n0.4", event_id="ev-3", inference_id="req-3"),
        capture("5", "0.5", event_id="ev-4"),
    ]
    labels = [
        label("ev-1", "1"),
        label(
            "ev-2", "1"
        ),  # keyed by the event id although the request had an inference id: no match
        label("req-2", "0"),
        label("req-3", "1\n0"),
    ]
    cq = load(tmp_path, records, labels=labels)
    rows = cq.predictions().to_pylist()
    got = [
        (
            r["event_id"],
            r["inference_id"],
            r["record_index"],
            r["_c0"],
            r["output_c0"],
            r["ground_truth"],
            r["ground_truth_value"],
        )
        for r in rows
    ]
    assert got == [
        ("ev-1", None, 0, 1.0, 0.9, "1", 1.0),
        ("ev-2", "req-2", 0, 2.0, 0.1, "0", 0.0),
        ("ev-3", "req-3", 0, 3.0, 0.3, "1", 1.0),
        ("ev-3", "req-3", 1, 4.0, 0.4, "0", 0.0),
        ("ev-4", None, 0, 5.0, 0.5, None, None),
    ]


def test_predictions_use_the_latest_label(tmp_path):
    write_captures(tmp_path / "capture", [capture("1", "0.9", event_id="ev-1")])
    write_labels(tmp_path / "labels", [label("ev-1", "0")], when=T0.replace(hour=13))
    write_labels(tmp_path / "labels", [label("ev-1", "1")], when=T0.replace(hour=15))
    cq = captureq.open(str(tmp_path / "capture"), labels=str(tmp_path / "labels"))
    assert cq.load().labels.num_rows == 2
    assert [r["ground_truth"] for r in cq.predictions().to_pylist()] == ["1"]


# -- names and values that once broke the decoders ---------------------------------------------


def test_payload_fields_named_like_key_columns_never_move_a_record(tmp_path):
    # a "_row" field used to overwrite the decoder's own row index and attach the record to
    # another capture (or crash); a key named like a key column gets \_ in front instead
    doc = {"_row": 1, "record_index": 7, "capture_id": "x", "event_id": "y", "": 3}
    records = [
        capture(json.dumps(doc), "0.1", input_type=JSON_T, event_id="first"),
        capture('{"a": 2}', "0.2", input_type=JSON_T, event_id="second"),
    ]
    cq = load(tmp_path, records)
    t = only(cq.load())
    assert values(t.inputs, keep_index=True) == [
        {
            "record_index": 0,
            "\\__row": 1.0,
            "\\_record_index": 7.0,
            "\\_capture_id": "x",
            "\\_event_id": "y",
            "\\_": 3.0,
            "a": None,
        },
        {
            "record_index": 0,
            "\\__row": None,
            "\\_record_index": None,
            "\\_capture_id": None,
            "\\_event_id": None,
            "\\_": None,
            "a": 2.0,
        },
    ]
    assert t.inputs["event_id"].to_pylist() == ["first", "second"]
    assert [r["\\_event_id"] for r in cq.predictions().to_pylist()] == ["y", None]


def test_csv_names_from_the_user_that_clash_are_made_unique(tmp_path):
    opts = DecodeOptions(input_names=["event_id", "a", "a"])
    t = only(load(tmp_path, [capture("1,2,3", "0.5")], options=opts).load())
    assert values(t.inputs) == [{"event_id_1": 1.0, "a": 2.0, "a_1": 3.0}]


def test_nested_name_that_equals_a_dotted_key_is_kept(tmp_path):
    t = only(load(tmp_path, [capture('{"a.b": 1, "a": {"b": 2}}', None, input_type=JSON_T)]).load())
    assert values(t.inputs) == [{"a\\.b": 1.0, "a.b": 2.0}]


def test_lists_starting_with_null(tmp_path):
    # pyarrow's JSON reader builds invalid arrays for these (apache/arrow#51305)
    records = [
        capture('{"instances": [[null, 1], [2, 3]]}', "0.1\n0.2", input_type=JSON_T),
        capture("[1, 2]", '{"predictions": [null, 0.5]}', input_type=JSON_T, output_type=JSON_T),
    ]
    t = only(load(tmp_path, records).load())
    assert values(t.inputs) == [
        {"_c0": None, "_c1": 1.0},
        {"_c0": 2.0, "_c1": 3.0},
        {"_c0": 1.0, "_c1": 2.0},
    ]
    assert values(t.outputs) == [
        {"_c0": 0.1, "_c1": None},
        {"_c0": 0.2, "_c1": None},
        {"_c0": None, "_c1": 0.5},
    ]


@pytest.mark.parametrize("content_type", ["text/csv", JSON_T])
def test_integers_beyond_float_precision_keep_every_digit(tmp_path, content_type):
    big = 2**53 + 1
    text = f"{big},{-(2**63)}" if content_type == "text/csv" else json.dumps([[big, -(2**63)]])
    cq = load(tmp_path, [capture(text, None, input_type=content_type)])
    t = only(cq.load())
    assert values(t.inputs) == [{"_c0": big, "_c1": -(2**63)}]
    assert t.inputs.schema.field("_c0").type == pa.int64()
    assert cq.sql("select _c0 from inputs").to_arrow().column(0).to_pylist() == [9007199254740993]


def test_names_that_differ_only_by_case_keep_their_values_in_sql(tmp_path):
    # DuckDB matches identifiers case-insensitively; "B" must not read column "b"
    cq = load(
        tmp_path,
        [capture('{"a": 1, "A": 2}', '{"b": 3, "B": 4}', input_type=JSON_T, output_type=JSON_T)],
    )
    assert values(only(cq.load()).outputs) == [{"b": 3.0, "\\B": 4.0}]
    [row] = cq.predictions().to_pylist()
    assert (row["a"], row["\\A"], row["output_b"], row["output_\\B"]) == (1.0, 2.0, 3.0, 4.0)
    assert cq.sql('select "A" + "\\A" as s from inputs').to_pylist() == [{"s": 3.0}]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key_sets=st.lists(
        st.lists(st.text(max_size=6), min_size=1, max_size=4, unique=True), min_size=1, max_size=3
    )
)
def test_any_json_keys_reach_the_views(tmp_path_factory, key_sets):
    """Whatever the keys, every value lands in its own column, in the tables and in SQL."""
    docs = [{k: 100 * d + j for j, k in enumerate(keys)} for d, keys in enumerate(key_sets)]
    root = tmp_path_factory.mktemp("keys")
    write_captures(
        root,
        [
            capture(json.dumps(d), json.dumps(d), input_type=JSON_T, output_type=JSON_T)
            for d in docs
        ],
    )
    cq = captureq.open(str(root))
    t = only(cq.load())
    names = [c for c in t.inputs.column_names if c not in schema.RECORD_KEY_NAMES]
    assert len(set(names)) == len(names) and all(names)
    for table in (t.inputs, t.outputs):
        got = [sorted(v for v in row.values() if v is not None) for row in values(table)]
        assert got == [sorted(float(v) for v in d.values()) for d in docs]
    extra = {"ground_truth", "ground_truth_value", "label_hour", *schema.RECORD_KEY_NAMES}
    rows = cq.predictions().to_pylist()
    got = [sorted(v for k, v in row.items() if k not in extra and v is not None) for row in rows]
    assert got == [sorted(2 * [float(v) for v in d.values()]) for d in docs]


def test_float64_read_refuses_what_inference_reads_otherwise():
    # a column of integers reads "-0" as 0 (then 0.0); a column holding a fraction keeps -0.0;
    # 2**53 + 1 rounds as float(int) does. The float64-only read must not change any of them.
    t = decode_csv(pa.array(["-0,1.5\n2,3", "4,-0.0", "9007199254740993,0"])).table
    assert t.column("_c0").to_pylist() == [0, 2, 4, 2**53 + 1]
    assert [repr(v) for v in t.column("_c1").to_pylist()] == ["1.5", "3.0", "-0.0", "0.0"]
