"""A column's type holds every value, and an export's parts of one endpoint share one schema.

Hostile values (``abc`` in a numeric column, an hour where a numeric column holds only text,
blanks, spaces, ``NaN``, ``1e400``) are spread over hours that are decoded in separate batches and
exported in separate runs. In memory a column is the narrowest type holding the window's values
(README, "Types"), and no value is quarantined for its type. In an export the column widens as
later runs bring wider values, and the parts written before are rewritten at the wider type, so
every Parquet part of an endpoint has the same schema and Polars ``scan_parquet``, DuckDB
``read_parquet`` (no ``union_by_name``) and Spark read the whole export.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from trees import T0, capture, label, write_captures, write_labels

import captureq
from captureq.decode import DecodeOptions
from captureq.export import read_manifest

H = [T0 + timedelta(hours=i) for i in range(4)]  # the records' times (xx:30:15)
HOUR = [T0.replace(minute=0, second=0) + timedelta(hours=i) for i in range(5)]  # hour bounds
ROWS = 150 + 153 + 3 + 151  # records of endpoint ep


def _csv(n: int, start: int = 0) -> list[str]:
    return [f"{i},{i}.5,red" for i in range(start, start + n)]


def hostile_tree(root: Path) -> dict:
    """Endpoint ``ep`` (CSV, 3 columns) with hostile values in hours 1–3, endpoint ``js`` (JSON
    objects) whose ``a`` starts as integers and later meets a fraction and a word."""
    rows = {
        0: _csv(150),
        1: _csv(150, 1000) + ["abc,1.5,red", " 7 ,NaN,blue", ",2,green"],
        2: ["x,1,red", "y,2,red", "z,3,red"],  # alone, this hour's _c0 is all text
        3: _csv(150, 2000) + ["5,1e400,1"],
    }
    for h, lines in rows.items():
        junk = ["{junk"] if h == 0 else []  # a line that is no capture: the quarantine table
        write_captures(root, [capture(line, "0.5", event_id=f"ep-{h}-{i}", when=H[h])
                              for i, line in enumerate(lines)] + junk, when=H[h], name=f"ep-{h}.jsonl")
    docs = {0: ['{"a": 1, "b": "u"}', '{"a": 2, "b": "v"}'], 1: ['{"a": 1.5, "b": "w"}'],
            2: ['{"a": "oops", "b": "x"}'] + [f'{{"a": {i}, "b": "y"}}' for i in range(10)]}
    for h, lines in docs.items():
        write_captures(root, [capture(d, '{"score": 0.5}', input_type="application/json",
                                      output_type="application/json", event_id=f"js-{h}-{i}", when=H[h])
                              for i, d in enumerate(lines)], endpoint="js", when=H[h], name=f"js-{h}.jsonl")
    return rows


def sql(query: str) -> list[tuple]:
    """Rows of a DuckDB query on a connection of its own."""
    with duckdb.connect() as con:
        return con.execute(query).fetchall()


def value_rows(quarantine: pa.Table) -> list[dict]:
    return [r for r in quarantine.to_pylist() if r["stage"] == "value"]


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "capture"
    hostile_tree(root)
    return root


def test_a_column_holds_every_value_of_its_window_and_none_is_quarantined(tree):
    full = captureq.open(str(tree), batch_bytes=1, endpoint="ep")  # one batch per file
    # hour 1 has one "abc" among 150 numbers, hour 2 only words: the windows holding them are
    # text; hours 0 and 3 alone are whole numbers
    for window, c0 in [({}, pa.string()), ({"start": HOUR[1], "end": HOUR[2]}, pa.string()),
                       ({"start": HOUR[3]}, pa.int64()), ({"end": HOUR[1]}, pa.int64())]:
        cq = full.where(**window)
        assert cq.inputs().schema.field("_c0").type == c0, window
        assert cq.inputs().schema.field("_c2").type == pa.string(), window  # red/blue/green: text
        assert cq.sql("select avg(_c1) as m from inputs").to_pylist()[0]["m"] is not None
    assert value_rows(full.quarantine()) == []
    t = full.inputs()
    assert t.num_rows == ROWS
    by_event = {r["event_id"]: r for r in t.to_pylist()}
    assert by_event["ep-1-150"]["_c0"] == "abc" and by_event["ep-2-0"]["_c0"] == "x"
    assert by_event["ep-0-5"]["_c0"] == "5"  # a whole number beside words: its canonical text
    seven = by_event["ep-1-151"]
    assert seven["_c0"] == "7" and seven["_c1"] != seven["_c1"]  # " 7 " is 7; NaN is a number
    assert by_event["ep-1-152"]["_c0"] is None  # empty: null
    assert full.load().counts.values_quarantined == 0


def test_the_batch_decision_does_not_depend_on_batching(tree):
    one = captureq.open(str(tree), endpoint="ep").inputs()
    many = captureq.open(str(tree), endpoint="ep", batch_bytes=1).inputs()
    from polars.testing import assert_frame_equal

    assert one.schema == many.schema
    assert_frame_equal(pl.from_arrow(one.sort_by("event_id")), pl.from_arrow(many.sort_by("event_id")))


def _export_in_windows(tree: Path, out: Path, **kw):
    cq = captureq.open(str(tree), batch_bytes=1, **kw)
    cq.where(end=HOUR[1]).export(str(out))                  # hour 0: clean numbers
    cq.where(start=HOUR[2], end=HOUR[3]).export(str(out))   # hour 2 alone: _c0 all text
    cq.export(str(out))                                  # the rest
    return cq


def _part_schemas(out: Path, table: str, endpoint: str | None = None) -> set:
    glob = f"{table}/endpoint={endpoint}/**/*.parquet" if endpoint else f"{table}/**/*.parquet"
    files = sorted(out.glob(glob))
    assert files
    return {pq.read_schema(f).remove_metadata() for f in files}


def test_an_export_in_windows_has_one_schema_per_endpoint(tree, tmp_path):
    out = tmp_path / "out"
    _export_in_windows(tree, out)  # hour 0 first: _c0 is written BIGINT, then widened to text
    for endpoint in ("ep", "js"):
        for table in ("inputs", "outputs"):
            schemas = _part_schemas(out, table, endpoint)
            assert len(schemas) == 1, (endpoint, table, schemas)
    ep = _part_schemas(out, "inputs", "ep").pop()
    assert ep.field("_c0").type == pa.string() and ep.field("_c1").type == pa.float64()
    js = _part_schemas(out, "inputs", "js").pop()
    assert js.field("a").type == pa.string() and js.field("b").type == pa.string()
    assert "_c0" not in js.names  # an endpoint's parts hold its own columns only
    record = json.loads((out / "_captureq/schemas/inputs/ep.json").read_text())
    assert [(c["name"], c["type"]) for c in record["columns"]] == [("_c0", "string"), ("_c1", "double"), ("_c2", "string")]
    widened = [(h["column"], h["from"], h["to"]) for h in record["history"] if h["change"] == "widened"]
    assert widened == [("_c0", "int64", "string")]
    assert all("at" in h for h in record["history"])
    # the hour-0 rows written as BIGINT read back as the canonical text of the same numbers
    glob = f"{out}/inputs/endpoint=ep/**/*.parquet"
    assert sql(f"select _c0 from read_parquet('{glob}') where event_id = 'ep-0-5'") == [("5",)]
    assert sql(f"select count(*) from read_parquet('{out}/quarantine/*.parquet') where stage = 'value'") == [(0,)]
    assert sql(f"select count(*) from read_parquet('{glob}')")[0][0] == ROWS  # every record once
    # Across endpoints the columns differ: DuckDB reads them together by name
    both = sql(f"select endpoint, count(*) n from read_parquet('{out}/inputs/**/*.parquet', "
               "union_by_name=true) group by 1 order by 1")
    assert both == [("ep", ROWS), ("js", 14)]


def test_the_whole_export_reads_with_polars_duckdb_and_no_options(tree, tmp_path):
    out = tmp_path / "out"
    _export_in_windows(tree, out, endpoint="ep")
    for table in ("inputs", "outputs", "captures", "quarantine"):
        glob = f"{out}/{table}/**/*.parquet"
        df = pl.scan_parquet(glob).collect()
        assert df.height > 0
        assert len(sql(f"select * from read_parquet('{glob}')")) == df.height
    df = pl.scan_parquet(f"{out}/inputs/**/*.parquet").collect()
    assert df.schema["_c0"] == pl.String and df.schema["_c1"] == pl.Float64 and df.schema["_c2"] == pl.String
    assert df.height == ROWS
    avg = sql(f"select avg(_c1) from read_parquet('{out}/inputs/**/*.parquet')")[0][0]
    assert avg is not None


def _export_with_labels(tree: Path, out: Path, **kw) -> Path:
    labels = tree.parent / "labels"
    write_labels(labels, [label("ep-0-0", "1"), label("ep-1-2", "0")], when=H[1])
    captureq.open(str(tree), labels=str(labels), batch_bytes=1, **kw).export(str(out))
    return labels


TABLE_FOLDERS = ("captures", "inputs", "outputs", "labels", "quarantine")


def test_every_reader_opens_each_table_folder_with_its_defaults(tree, tmp_path):
    """Partition keys live in the folder names only, so pandas, pyarrow, polars and DuckDB open
    each table folder with their defaults and read endpoint/variant back from the path."""
    import pandas as pd

    out = tmp_path / "out"
    _export_with_labels(tree, out, endpoint="ep")
    rows = read_manifest(str(out))["tables"]
    for table in TABLE_FOLDERS:
        folder = out / table
        arrow = pq.read_table(folder)
        frame = pd.read_parquet(folder)
        polars = pl.scan_parquet(folder, hive_partitioning=True).collect()
        duck = sql(f"select * from read_parquet('{folder}/**/*.parquet')")
        n = rows[table]["rows"]
        assert arrow.num_rows == len(frame) == polars.height == len(duck) == n > 0, table
        if table in ("captures", "inputs", "outputs"):
            assert set(arrow.column("endpoint").to_pylist()) == {"ep"}
            assert set(frame["endpoint"].astype(str)) == {"ep"} == set(polars["endpoint"])
            assert set(polars["variant"]) == {"AllTraffic"}
            for part in folder.glob("**/*.parquet"):  # the keys are in the path, not the file
                assert not {"endpoint", "variant", "date", "hour"} & set(pq.read_schema(part).names)
    # across endpoints (different columns) pandas and pyarrow open the folders too
    both = tmp_path / "both"
    captureq.open(str(tree)).export(str(both))
    for table in ("captures", "inputs", "outputs"):
        assert set(pq.read_table(both / table).column("endpoint").to_pylist()) == {"ep", "js"}
        assert set(pd.read_parquet(both / table)["endpoint"].astype(str)) == {"ep", "js"}


def test_the_shell_views_over_an_export_keep_their_columns_and_types(tree, tmp_path):
    """``captureq sql``'s views read endpoint/variant from the folders, as VARCHAR, and expose no
    date/hour columns: the same columns and types as the views over the tables in memory."""
    from captureq.export import shell_sql

    out = tmp_path / "out"
    labels = _export_with_labels(tree, out)
    cq = captureq.open(str(tree), labels=str(labels))
    with duckdb.connect() as con:
        con.execute(shell_sql(str(out)))
        for view in ("captures", "inputs", "outputs", "labels", "quarantine", "predictions"):
            shell = con.execute(f"describe select * from {view}").fetchall()
            memory = cq.sql(f"describe select * from {view}").to_pylist()
            assert [(r[0], r[1]) for r in shell] == [(r["column_name"], r["column_type"]) for r in memory], view
        got = con.execute("select endpoint, variant, count(*) from inputs group by all order by all").fetchall()
    memory = cq.sql("select endpoint, variant, count(*) as n from inputs group by all order by all")
    assert got == [tuple(r.values()) for r in memory.to_pylist()]


@pytest.mark.parametrize("reader", ["duckdb", "arrow"])
def test_the_warm_cache_reads_endpoint_and_variant_from_its_folders(tree, tmp_path, monkeypatch, reader):
    from captureq import cache

    if reader == "arrow":  # the parts read as an Arrow dataset (DuckDB cannot name a type)
        monkeypatch.setattr(cache, "_parquet_source", lambda *a: None)
    monkeypatch.setenv("CAPTUREQ_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CAPTUREQ_NO_CACHE", raising=False)
    query = "select endpoint, variant, typeof(endpoint) t, count(*) n from {} group by all order by all"
    cold = captureq.open(str(tree), cache=False)  # no fill of its own racing the one below
    expected = {t: cold.sql(query.format(t)).to_pylist() for t in ("captures", "inputs", "outputs")}
    cache.refresh(captureq.open(str(tree)))
    warm = captureq.open(str(tree))
    for t, rows in expected.items():
        assert warm.sql(query.format(t)).to_pylist() == rows
    assert warm._cache["warm"] is not None
    assert rows[0]["t"] == "VARCHAR" and {r["endpoint"] for r in rows} == {"ep", "js"}


def test_a_widened_column_and_a_new_column_are_recorded(tree, tmp_path):
    out = tmp_path / "out"
    captureq.open(str(tree), batch_bytes=1, endpoint="ep").where(start=HOUR[3]).export(str(out))
    write_captures(tree, [capture("1,2,red,9", "0.5", event_id="wide", when=H[3]),
                          capture("q,2,red,8", "0.5", event_id="wide2", when=H[3])],
                   when=H[3], name="ep-3b.jsonl")
    captureq.open(str(tree), endpoint="ep").where(start=HOUR[3]).export(str(out))
    record = json.loads((out / "_captureq/schemas/inputs/ep.json").read_text())
    assert [c["name"] for c in record["columns"]] == ["_c0", "_c1", "_c2", "_c3"]
    changes = [(h["change"], h.get("column")) for h in record["history"][1:]]
    assert changes == [("widened", "_c0"), ("added", "_c3")]
    for part in out.glob("inputs/**/*.parquet"):  # the earlier parts were rewritten as text
        assert pq.read_schema(part).field("_c0").type == pa.string()
    newest = max(out.glob("inputs/**/*.parquet"), key=lambda p: p.stat().st_mtime)
    assert pq.read_schema(newest).field("_c3").type == pa.int64()
    assert sql(f"select count(*) from read_parquet('{out}/inputs/**/*.parquet') where _c0 = 'q'") == [(1,)]
    rows = sql(f"select count(*), count(_c3) from read_parquet('{out}/inputs/**/*.parquet', "
               "union_by_name=true)")[0]
    assert rows == (151 + 2, 2)


def test_json_integers_then_fractions_then_words_are_text(tree):
    t = captureq.open(str(tree), endpoint="js", batch_bytes=1).load()
    assert t.inputs.schema.field("a").type == pa.string()
    assert sorted(set(t.inputs.column("a").to_pylist())) == sorted({"1", "2", "1.5", "oops", *map(str, range(10))})
    assert value_rows(t.quarantine) == []
    early = captureq.open(str(tree), endpoint="js").where(end=HOUR[1]).inputs()
    assert early.schema.field("a").type == pa.int64()  # the first hour alone: whole numbers


def test_decode_options_do_not_change_the_rule(tree):
    t = captureq.open(str(tree), endpoint="ep", options=DecodeOptions(input_names=["x", "y", "z"])).inputs()
    assert t.schema.field("x").type == pa.string() and t.schema.field("y").type == pa.float64()
    assert t.schema.field("z").type == pa.string()



@pytest.mark.spark
def test_spark_reads_the_whole_export(tree, tmp_path, spark):
    out = tmp_path / "out"
    _export_in_windows(tree, out, endpoint="ep")
    df = spark.read.parquet(str(out / "inputs"))
    types = dict(df.dtypes)
    assert types["_c0"] == "string" and types["_c1"] == "double" and types["_c2"] == "string"
    assert df.count() == ROWS
    assert df.selectExpr("avg(_c1) as m").collect()[0]["m"] is not None


@pytest.mark.spark
def test_spark_opens_each_table_folder_with_its_defaults(tree, tmp_path, spark):
    out = tmp_path / "out"
    _export_with_labels(tree, out)
    rows = read_manifest(str(out))["tables"]
    for table in TABLE_FOLDERS:
        df = spark.read.parquet(str(out / table))
        assert df.count() == rows[table]["rows"], table
        if table in ("captures", "inputs", "outputs"):
            types = dict(df.dtypes)
            assert types["endpoint"] == "string" and types["variant"] == "string"
            assert {r[0] for r in df.select("endpoint").distinct().collect()} == {"ep", "js"}


@pytest.mark.spark
def test_spark_export_continues_a_local_one_with_the_same_schemas(tree, tmp_path, spark):
    import captureq.spark as cqs

    out = tmp_path / "out"
    captureq.open(str(tree), batch_bytes=1).where(end=HOUR[1]).export(str(out))  # local: hour 0
    cqs.export_parquet(spark, str(tree), str(out), start=HOUR[2], end=HOUR[3], task_bytes=1)
    cqs.export_parquet(spark, str(tree), str(out), task_bytes=1)
    for endpoint in ("ep", "js"):
        assert len(_part_schemas(out, "inputs", endpoint)) == 1, endpoint
    raws = sql(f"select raw from read_parquet('{out}/quarantine/*.parquet') where stage='value'")
    assert raws == []
    df = pl.scan_parquet(f"{out}/inputs/endpoint=ep/**/*.parquet").collect()
    assert df.height == ROWS and df.schema["_c0"] == pl.String


@pytest.mark.spark
def test_a_spark_export_of_new_endpoints_decides_once_per_endpoint(tree, tmp_path, spark):
    import captureq.spark as cqs

    out = tmp_path / "out"
    cqs.export_parquet(spark, str(tree), str(out), task_bytes=1)  # every file its own task
    for endpoint in ("ep", "js"):
        assert len(_part_schemas(out, "inputs", endpoint)) == 1, endpoint
    assert json.loads((out / "_captureq/schemas/inputs/ep.json").read_text())["columns"][0]["type"] == "string"


def test_a_recorded_column_widens_along_the_lattice_and_the_change_is_kept():
    from captureq.registry import entry_types, merge_types, new_entry

    entry = new_entry("inputs", "ep", {"n": pa.int64(), "s": pa.string(), "e": pa.null()}, "run-1")
    assert not merge_types(entry, {"n": pa.int64(), "s": pa.float64()}, "run-2")  # nothing to record
    assert merge_types(entry, {"n": pa.float64(), "t": pa.float64(), "e": pa.bool_()}, "run-3")
    assert entry_types(entry) == {"n": pa.float64(), "s": pa.string(), "e": pa.bool_(), "t": pa.float64()}
    assert [{k: v for k, v in h.items() if k != "at"} for h in entry["history"][1:]] == [
        {"run": "run-3", "change": "widened", "column": "n", "from": "int64", "to": "double"},
        {"run": "run-3", "change": "added", "column": "t", "type": "double"},
        {"run": "run-3", "change": "widened", "column": "e", "from": "null", "to": "bool"},
    ]
    assert all(h["at"].endswith("+00:00") for h in entry["history"])
    assert merge_types(entry, {"n": pa.string()}, "run-4")  # words after numbers: text
    assert entry_types(entry)["n"] == pa.string()
