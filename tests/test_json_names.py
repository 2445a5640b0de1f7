"""JSON records: which column each key path lands in, and column-wise (TF-Serving) documents.

A column's name is a function of its key path alone (:func:`captureq.decode.column_name`), so
the same key lands in the same column whatever else a batch, an hour or an endpoint holds.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trees import T0, capture, write_captures

import captureq
from captureq import schema
from captureq.decode import column_name, decode_json, key_path

JSON_T = "application/json"
KEYS = set(schema.RECORD_KEY_NAMES) | {"_row"}


def records(decoded):
    """Each record's non-null value columns, in order."""
    return [
        {k: v for k, v in row.items() if k not in KEYS and v is not None}
        for row in decoded.table.to_pylist()
    ]


def ascii_lower(text: str) -> str:
    """How DuckDB folds identifiers: ASCII letters only."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


# -- the mapping ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, name",
    [
        (("age",), "age"),
        (("user", "age"), "user.age"),
        (("user.age",), "user\\.age"),
        (("a\\b",), "a\\\\b"),
        (("",), "\\_"),
        (("user", ""), "user.\\_"),
        (("UPPER",), "\\{UPPER}"),
        (("userID", "Ab"), "user\\{ID}.\\Ab"),
        (("ÄÖx",), "\\{ÄÖ}x"),
        (("\u212a",), "\\#212a;"),
        (("predictedLabel",), "predicted\\Label"),
        (("event_id",), "\\_event_id"),
        (("_c0",), "\\__c0"),
        (("meta", "event_id"), "meta.event_id"),
        (("a\x00",), "a\\#0;"),
        (("city", "Zürich"), "city.\\Zürich"),
    ],
)
def test_column_name_examples(path, name):
    assert column_name(path) == name
    assert key_path(name) == path


@pytest.mark.parametrize("name", ["_c0", "event_id", "record_index", "\\_abc", "a\\", "\\q", "\\A\\B", "\\{A}", "\\#41;", "a.", ""])
def test_names_no_key_path_gives_have_no_key_path(name):
    assert key_path(name) is None


paths = st.lists(st.text(max_size=5), min_size=1, max_size=3).map(tuple)


@settings(max_examples=400, deadline=None)
@given(paths)
def test_key_path_inverts_column_name(path):
    assert key_path(column_name(path)) == path


@settings(max_examples=400, deadline=None)
@given(paths, paths)
def test_different_paths_never_share_a_name_in_any_case(a, b):
    if a != b:
        x, y = column_name(a), column_name(b)
        assert ascii_lower(x) != ascii_lower(y)  # DuckDB
        assert x.lower() != y.lower()  # Spark, Python
    assert column_name(a) not in KEYS


# -- decoding ------------------------------------------------------------------------------------


def test_a_literal_dotted_key_never_shares_the_nested_column():
    # hour 10 holds only the literal key, hour 11 both: each keeps its own column
    hour10 = decode_json(pa.array(['{"user.age": 999}']))
    hour11 = decode_json(pa.array(['{"user": {"age": 20}, "user.age": 999}']))
    assert records(hour10) == [{"user\\.age": 999.0}]
    assert records(hour11) == [{"user.age": 20.0, "user\\.age": 999.0}]


def test_an_empty_key_has_its_own_documented_name():
    d = decode_json(pa.array(['{"": 1, "_1": 2}']))
    assert records(d) == [{"\\_": 1.0, "_1": 2.0}]


def test_keys_that_differ_only_by_case_keep_their_values_in_sql(tmp_path):
    lines = [
        capture(json.dumps({"upper": 2}), None, input_type=JSON_T),
        capture(json.dumps({"UPPER": 10, "upper": 4}), None, input_type=JSON_T),
    ]
    write_captures(tmp_path, lines[:1], endpoint="ep", when=T0, name="a.jsonl")
    write_captures(tmp_path, lines[1:], endpoint="ep", when=T0 + timedelta(hours=1), name="b.jsonl")
    cq = captureq.open(str(tmp_path))
    got = cq.sql('select avg("upper") as lower_, avg("\\{UPPER}") as upper_ from inputs')
    assert got.to_pylist() == [{"lower_": 3.0, "upper_": 10.0}]


def docs_strategy():
    key = st.sampled_from(["a", "A", "b", "a.b", "", "B.", "x\\", "event_id", "_c0", "Zé"])
    leaf = st.integers(-5, 5)  # one type per path: a batch never turns a column into text
    obj = st.recursive(
        leaf,
        lambda inner: st.dictionaries(key, inner, min_size=1, max_size=3),
        max_leaves=6,
    )
    return st.lists(st.dictionaries(key, obj, min_size=1, max_size=4), min_size=1, max_size=8)


def leaves(doc, path=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from leaves(v, (*path, k))
    else:
        yield path, doc


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs_strategy(), st.data())
def test_any_split_into_batches_gives_the_same_columns(docs, data):
    texts = [json.dumps(d) for d in docs]
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(texts) - 1)), max_size=3)))
    batches = [texts[i:j] for i, j in zip([0, *cuts], [*cuts, len(texts)]) if texts[i:j]]
    got = []
    for batch in batches:
        d = decode_json(pa.array(batch))
        assert d.failures == []
        names = [c for c in d.table.column_names if c not in KEYS]
        assert len({ascii_lower(n) for n in names}) == len(names)
        got += records(d)
    assert got == [{column_name(p): float(v) for p, v in leaves(doc)} for doc in docs]


# -- column-wise documents (TF-Serving's columnar format) ---------------------------------------


@pytest.mark.parametrize("key", ["inputs", "instances"])
def test_column_wise_document_is_one_record_per_row(key):
    doc = {key: {"age": [5, 6], "city": ["z", "w"]}}
    d = decode_json(pa.array([json.dumps(doc), json.dumps({key: {"age": [7]}})]))
    assert d.failures == []
    assert [(r["_row"], r["record_index"]) for r in d.table.to_pylist()] == [(0, 0), (0, 1), (1, 0)]
    assert records(d) == [{"age": 5.0, "city": "z"}, {"age": 6.0, "city": "w"}, {"age": 7.0}]


def test_column_wise_values_may_be_lists_and_objects():
    doc = {"inputs": {"image": [[1, 2], [3, 4]], "meta": [{"id": "p"}, {"id": "q"}]}}
    d = decode_json(pa.array([json.dumps(doc)]))
    assert records(d) == [
        {"image": [1.0, 2.0], "meta.id": "p"},
        {"image": [3.0, 4.0], "meta.id": "q"},
    ]


def test_column_wise_lists_of_unequal_length_are_quarantined():
    good = json.dumps({"inputs": {"age": [1], "city": ["a"]}})
    bad = json.dumps({"inputs": {"age": [5, 6], "city": ["z"]}})
    d = decode_json(pa.array([good, bad, good]))
    assert [r["_row"] for r in d.table.to_pylist()] == [0, 2]
    [(row, reason)] = d.failures
    assert row == 1
    assert "column-wise" in reason and "age" in reason and "2" in reason and "1" in reason


def test_a_dict_whose_values_are_not_all_lists_stays_one_record():
    d = decode_json(pa.array([json.dumps({"inputs": {"age": [5, 6], "city": "z"}})]))
    assert records(d) == [{"inputs.age": [5.0, 6.0], "inputs.city": "z"}]


def test_column_wise_inputs_align_with_their_predictions(tmp_path):
    write_captures(
        tmp_path,
        [
            capture(
                json.dumps({"inputs": {"age": [5, 6], "city": ["z", "w"]}}),
                json.dumps({"predictions": [0.1, 0.9]}),
                input_type=JSON_T,
                output_type=JSON_T,
            )
        ],
    )
    t = captureq.open(str(tmp_path)).load()
    assert t.quarantine.num_rows == 0, t.quarantine.to_pylist()
    rows = captureq.open(str(tmp_path)).sql(
        "select age, city, output_c0 from predictions order by record_index"
    ).to_pylist()
    assert rows == [
        {"age": 5.0, "city": "z", "output_c0": 0.1},
        {"age": 6.0, "city": "w", "output_c0": 0.9},
    ]


def test_a_null_list_in_a_column_wise_document_is_an_absent_name_alone_or_in_a_batch():
    odd = json.dumps({"inputs": {"age": [5, 6], "city": None}})
    other = json.dumps({"inputs": {"age": [7], "city": ["w"]}})
    alone = records(decode_json(pa.array([odd])))
    assert alone == [{"age": 5.0}, {"age": 6.0}]
    assert records(decode_json(pa.array([odd, other]))) == [*alone, {"age": 7.0, "city": "w"}]


def test_a_json_label_in_a_camel_case_field_is_found_by_its_key(tmp_path):
    from trees import label, write_labels

    write_captures(tmp_path / "capture", [capture("1", "0.5", event_id="e1")])
    write_labels(tmp_path / "labels", [label("e1", '{"aaa": "x", "groundTruth": 1}', "JSON")])
    t = captureq.open(str(tmp_path / "capture"), labels=str(tmp_path / "labels")).load()
    assert [r["ground_truth"] for r in t.labels.to_pylist()] == ["1"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.dictionaries(st.sampled_from(["age", "City", "a.b", ""]), st.just(0), max_size=4),
        ),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(["inputs", "instances"]),
)
def test_column_wise_gives_the_records_of_the_row_wise_document(shapes, key):
    """{"inputs": {name: [v0, v1]}} decodes as {"instances": [{name: v0}, {name: v1}]} does."""
    column_docs, row_docs = [], []
    for p, (rows, names) in enumerate(shapes):
        cols = {n: [p * 100 + r * 10 + j for r in range(rows)] for j, n in enumerate(names)}
        if not cols:
            continue
        column_docs.append(json.dumps({key: cols}))
        rows_ = [{n: v[r] for n, v in cols.items()} for r in range(rows)]
        row_docs.append(json.dumps({"instances": rows_}))
    if not column_docs:
        return
    got, want = decode_json(pa.array(column_docs)), decode_json(pa.array(row_docs))
    assert got.failures == want.failures == []
    assert got.table.column("_row").to_pylist() == want.table.column("_row").to_pylist()
    assert records(got) == records(want)


def test_keys_named_like_the_exports_folder_keys_open_with_every_reader(tmp_path):
    """``date`` and ``hour`` name the export's partition folders (``date=…/hour=…``): a JSON key
    of that name gets ``\\_`` in front, in memory as in the export, so readers of the export see
    one column of each name."""
    import pandas as pd
    import pyarrow.parquet as pq

    doc = json.dumps({"date": "Jan 1", "hour": 5, "x": 1.5})
    write_captures(tmp_path / "cap", [capture(doc, "1", input_type=JSON_T, when=T0)], endpoint="js", when=T0)
    cq = captureq.open(str(tmp_path / "cap"), cache=False)
    mem = cq.sql('select "\\_date" as d, "\\_hour" as h from inputs').to_pylist()
    assert mem == [{"d": "Jan 1", "h": 5}]
    cq.export(str(tmp_path / "out"))
    frame = pd.read_parquet(tmp_path / "out" / "inputs")
    assert frame["\\_date"].tolist() == ["Jan 1"] and frame["\\_hour"].tolist() == [5]
    table = pq.read_table(tmp_path / "out" / "inputs")
    assert table.column("hour").to_pylist() == [T0.hour]  # the folder key, as the reader types it
