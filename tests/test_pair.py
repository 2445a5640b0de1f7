"""captureq.pair builds the inputs ⟗ outputs table in Python; sql/pairs.sql is the oracle."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest
from trees import capture, write_captures

import captureq
from captureq import views
from captureq.pair import pair_records, value_columns

CASES = {
    "aligned": [capture("1,2\n3,4\n", "0.1\n0.2\n"), capture("5,6", "0.3")],
    "output has fewer records": [capture("1,2\n3,4\n5,6\n", "0.1\n0.2\n"), capture("7,8", "0.9")],
    "input only and output only": [capture("1,2", None), capture(None, "0.5"), capture("3,4", "0.7")],
    "json outputs with names": [
        capture('{"instances": [[1, 2], [3, 4]]}', '{"predictions": [{"score": 0.1}, {"score": 0.9}]}',
                input_type="application/json", output_type="application/json"),
        capture("5,6", "0.4"),
    ],
}


def sql_pairs(tables) -> pa.Table:
    with duckdb.connect() as con:
        con.register("inputs", views.case_unique(tables.inputs))
        con.register("outputs", views.case_unique(tables.outputs))
        con.execute(views.render_pairs(value_columns(tables.outputs), value_columns(tables.inputs)))
        rel = con.sql("select * from captureq_pairs order by capture_id, record_index")
        return rel.to_arrow_table()


@pytest.mark.parametrize("name", CASES)
def test_pair_records_equals_the_sql_join(tmp_path, name):
    write_captures(tmp_path, CASES[name])
    tables = captureq.open(str(tmp_path)).load()
    got = pair_records(tables.inputs, tables.outputs)
    expected = sql_pairs(tables)
    assert sorted(got.column_names) == sorted(expected.column_names)
    order = [("capture_id", "ascending"), ("record_index", "ascending")]
    got = got.select(expected.column_names).sort_by(order)
    assert got.to_pylist() == expected.to_pylist()
    # and it is exactly what the predictions view is built on
    assert tables.pairs.num_rows == expected.num_rows


def test_aligned_pairs_are_zero_copy(tmp_path):
    write_captures(tmp_path, CASES["aligned"])
    tables = captureq.open(str(tmp_path)).load()
    pairs = pair_records(tables.inputs, tables.outputs)
    assert pairs.column("_c0").chunks[0].buffers()[1].address == tables.inputs.column("_c0").chunks[0].buffers()[1].address
    assert pairs.column("output_c0").to_pylist() == [0.1, 0.2, 0.3]


def test_output_names_never_collide_with_each_other_or_the_inputs():
    from captureq.pair import output_aliases

    aliases = output_aliases(["_1", "1", "c0", "_c0"], taken=["output_c0"])
    assert len({a.lower() for a in aliases.values()} | {"output_c0"}) == 5
    assert aliases["_1"] == "output_1" and aliases["1"] == "output_1_1"
