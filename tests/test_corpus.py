"""Real capture files (``tests/data/corpus``, copied from the shared corpus) parse exactly as the corpus README says."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

import captureq
from captureq import schema

SEED = "seed-churn"
BOOK = "book-housing"
FEATURES = [f"_c{i}" for i in range(69)]


def load(corpus, tree):
    tables = captureq.open(str(corpus / tree)).load()
    assert tables.quarantine.num_rows == 0, tables.quarantine.to_pylist()
    assert tables.counts.reconciles
    return tables


def value_columns(table):
    return [c for c in table.column_names if c not in schema.RECORD_KEY_NAMES]


def test_every_corpus_file_is_read(corpus):
    files = sorted(p for p in corpus.rglob("*.jsonl"))
    assert len(files) == 2
    scanned = captureq.open(str(corpus)).scan()
    assert sorted(f.path for f in scanned.files) == sorted(str(p) for p in files)
    assert scanned.skipped == [(f"file://{corpus / 'SOURCES.md'}", "not a capture file: not .jsonl, .json or .jsonl.gz")]


def test_seed_churn_counts(corpus):
    t = load(corpus, SEED)
    assert t.captures.num_rows == 3
    assert t.inputs.num_rows == 3
    assert t.outputs.num_rows == 3
    assert value_columns(t.inputs) == FEATURES
    assert value_columns(t.outputs) == ["_c0"]
    c = t.counts
    assert (
        c.files,
        c.lines_read,
        c.rows,
        c.quarantined_lines,
        c.input_records,
        c.output_records,
    ) == (1, 3, 3, 0, 3, 3)


def test_seed_churn_values(corpus):
    t = load(corpus, SEED)
    assert t.inputs.column("_c0").to_pylist() == [69.0, 94.0, 50.0]
    assert t.inputs.column("_c2").to_pylist() == [153.7, 197.1, 188.9]
    assert t.inputs.column("_c68").to_pylist() == [0.0, 1.0, 0.0]
    assert t.outputs.column("_c0").to_pylist() == [
        0.0254181120544672,
        0.07675473392009735,
        0.023190177977085114,
    ]
    # every feature is numeric: BIGINT when all its values are whole numbers, else DOUBLE
    for c in FEATURES:
        whole = all(float(v).is_integer() for v in t.inputs.column(c).to_pylist() if v is not None)
        assert str(t.inputs.schema.field(c).type) == ("int64" if whole else "double"), c


def test_seed_churn_keys(corpus):
    t = load(corpus, SEED)
    caps = t.captures
    assert set(caps.column("event_id").to_pylist()) == {"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}
    ids = caps.column("capture_id").to_pylist()
    assert len(set(ids)) == 3  # event ids are not unique keys; capture ids are
    assert t.inputs.column("capture_id").to_pylist() == ids
    assert t.outputs.column("capture_id").to_pylist() == ids
    assert caps.column("line_number").to_pylist() == [1, 2, 3]
    assert caps.column("inference_id").null_count == 3
    utc = timezone.utc
    assert caps.column("inference_time").to_pylist() == [
        datetime(2022, 2, 14, 17, 25, 49, tzinfo=utc),
        datetime(2022, 2, 14, 17, 25, 49, tzinfo=utc),
        datetime(2022, 2, 14, 17, 25, 6, tzinfo=utc),
    ]
    assert set(caps.column("endpoint").to_pylist()) == {"xgb-churn-prediction-model"}
    assert set(caps.column("variant").to_pylist()) == {"AllTraffic"}


def test_seed_churn_odd_content_type_is_csv(corpus):
    t = load(corpus, SEED)
    types = t.captures.column("output_observed_content_type").to_pylist()
    assert types[2] == "text/csv; charset=character-encoding"
    assert t.outputs.column("_c0")[2].as_py() == 0.023190177977085114
    assert t.captures.column("input_data")[0].as_py().endswith("\n")


def test_book_housing(corpus):
    t = load(corpus, BOOK)
    assert (t.captures.num_rows, t.inputs.num_rows, t.outputs.num_rows) == (1, 1, 1)
    assert value_columns(t.inputs) == [f"_c{i}" for i in range(12)]
    row = t.inputs.to_pylist()[0]
    assert row["_c0"] == 0.00632
    assert row["_c11"] == 4.98
    assert row["_c1"] == 18.0
    assert t.outputs.column("_c0").to_pylist() == [30.4133586884]
    assert not t.captures.column("input_data")[0].as_py().endswith("\n")
    assert t.captures.column("inference_time")[0].as_py() == datetime(
        2020, 7, 30, 13, 36, 30, tzinfo=timezone.utc
    )


@pytest.mark.parametrize("tree, captures", [(SEED, 3), (BOOK, 1)])
def test_predictions_pair_each_input_with_its_score(corpus, tree, captures):
    cq = captureq.open(str(corpus / tree))
    rows = cq.sql(
        "select _c0, output_c0, ground_truth from predictions order by capture_id"
    ).to_pylist()
    assert len(rows) == captures
    assert all(r["output_c0"] is not None and r["ground_truth"] is None for r in rows)


def test_whole_corpus_at_once(corpus):
    t = captureq.open(str(corpus)).load()
    assert (t.captures.num_rows, t.inputs.num_rows, t.outputs.num_rows, t.quarantine.num_rows) == (
        4,
        4,
        4,
        0,
    )
    # different widths across endpoints are unioned by name: the housing rows have no _c12..
    by_endpoint = {r["endpoint"]: r for r in t.inputs.to_pylist()}
    assert by_endpoint["ll-housing"]["_c12"] is None
    assert by_endpoint["xgb-churn-prediction-model"]["_c12"] == 0.0
