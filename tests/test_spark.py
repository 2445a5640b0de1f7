"""Spark: same tree, same answer — the Spark tables equal the local tables, and Spark exports
continue local ones (and the other way round)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trees import T0, capture, write_captures
from typer.testing import CliRunner

import captureq
from captureq.cli import app
from captureq.export import plan as export_plan
from captureq.export import read_manifest
from captureq.generate import INPUT_KINDS, OUTPUT_KINDS, EndpointSpec, generate_tree

pytest.importorskip("pyspark")
cqs = pytest.importorskip("captureq.spark")

pytestmark = pytest.mark.spark

KEYS = 7  # the key columns every table starts with (captures: its fixed schema)
TINY_TASKS = 4096  # bytes per Spark task: several tasks even on small trees


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers run this Python
    session = (
        SparkSession.builder.master("local[2]")
        .appName("captureq-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _sorted(table: pa.Table) -> pa.Table:
    keys = [
        c
        for c in (
            "capture_id",
            "record_index",
            "label_id",
            "source_file",
            "line_number",
            "stage",
            "reason",
        )
        if c in table.column_names
    ]
    return table.take(pc.sort_indices(table, [(k, "ascending") for k in keys]))


def assert_same(df, local: pa.Table) -> None:
    """A Spark DataFrame holds exactly the local table: same columns, types and rows."""
    got = df.toArrow()
    # The same columns with the same types. Payload columns come in order of first appearance,
    # which depends on how files are grouped (into local batches or Spark tasks), so the order
    # of those is not compared.
    assert got.column_names[:KEYS] == local.column_names[:KEYS]
    assert sorted(got.column_names) == sorted(local.column_names)
    got = got.select(local.column_names)
    assert got.schema.equals(local.schema), (got.schema, local.schema)
    assert got.num_rows == local.num_rows
    assert _sorted(got).equals(_sorted(local))


def assert_tables_equal(spark, root: str, **window) -> cqs.SparkTables:
    local = captureq.open(root, **window).load()
    tables = cqs.read_tables(spark, root, task_bytes=TINY_TASKS, **window)
    try:
        for name in ("captures", "inputs", "outputs", "quarantine"):
            assert_same(getattr(tables, name), getattr(local, name))
    finally:
        tables.unpersist()
    return tables


def every_encoding() -> list[EndpointSpec]:
    """One endpoint per input encoding, the output encodings in turn."""
    return [
        EndpointSpec(
            f"ep-{kind}",
            input_kind=kind,
            output_kind=OUTPUT_KINDS[i % len(OUTPUT_KINDS)],
            n_features=3,
            records_per_request=(1, 3),
            multi_record_fraction=0.3,
        )
        for i, kind in enumerate(INPUT_KINDS)
    ]


def test_every_encoding_gives_the_local_tables(spark, tmp_path):
    root = str(tmp_path / "capture")
    generate_tree(
        root,
        endpoints=every_encoding(),
        hours=3,
        requests_per_hour=8,
        compress=True,
        labels_out=str(tmp_path / "labels"),
    )
    tables = assert_tables_equal(spark, root)
    assert tables.tasks > 1  # the work really was split
    local_labels = captureq.open(root, labels=str(tmp_path / "labels")).labels()
    assert local_labels.num_rows > 0
    assert_same(
        cqs.read_labels(spark, str(tmp_path / "labels"), task_bytes=TINY_TASKS), local_labels
    )


def test_real_corpus_gives_the_local_tables_and_the_documented_values(spark, corpus):
    root = str(corpus / "**" / "*.jsonl")
    assert_tables_equal(spark, root)
    inputs = cqs.read_inputs(spark, root).where("endpoint = 'xgb-churn-prediction-model'").toArrow()
    assert sorted(inputs.column("_c0").to_pylist()) == [50, 69, 94]


def test_a_time_window_reads_only_its_hours(spark, tmp_path):
    root = str(tmp_path / "capture")
    s = generate_tree(root, hours=6, requests_per_hour=5, endpoints=every_encoding()[:1])
    start, end = s.start + timedelta(hours=2), s.start + timedelta(hours=4)
    local = captureq.open(root, start=start, end=end).captures()
    assert 0 < local.num_rows < s.captures
    assert_same(cqs.read_captures(spark, root, start=start, end=end, task_bytes=TINY_TASKS), local)


# -- hypothesis: random trees, junk lines included ----------------------------------------------
number = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda x: round(x, 3))
csv_row = st.lists(number, min_size=1, max_size=4).map(lambda xs: ",".join(map(str, xs)))
json_row = st.dictionaries(st.sampled_from(["a", "b", "c"]), number, min_size=1)
line = st.one_of(
    st.tuples(csv_row, number).map(lambda t: capture(t[0] + "\n", str(t[1]))),
    st.tuples(json_row, number).map(
        lambda t: capture(
            json.dumps(t[0]),
            json.dumps({"score": t[1]}),
            input_type="application/json",
            output_type="application/json",
        )
    ),
    st.just("{not json"),
    st.just(""),
)
capture_file = st.tuples(
    st.sampled_from(["ep-a", "ep-b"]), st.integers(0, 3), st.lists(line, min_size=1, max_size=6)
)


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(files=st.lists(capture_file, min_size=1, max_size=6))
def test_generated_trees_give_the_local_tables(spark, files):
    with tempfile.TemporaryDirectory() as root:
        for i, (endpoint, hour, lines) in enumerate(files):
            write_captures(
                root, lines, endpoint=endpoint, when=T0 + timedelta(hours=hour), name=f"f{i}.jsonl"
            )
        assert_tables_equal(spark, root)


# -- export ---------------------------------------------------------------------------------------
def parquet(out: Path, table: str) -> pa.Table:
    # a private connection: DuckDB's shared default one refuses a query while another is open
    with duckdb.connect() as con:
        rel = con.sql(
            f"select * exclude (filename) from read_parquet('{out}/{table}/**/*.parquet', "
            "hive_partitioning=false, union_by_name=true, filename=true)"
        )
        return _sorted(rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow())


def test_spark_export_continues_a_local_export_with_only_new_files(spark, tmp_path):
    root, labels = str(tmp_path / "capture"), str(tmp_path / "labels")
    s = generate_tree(root, labels_out=labels, hours=4, requests_per_hour=10)
    half = s.start + timedelta(hours=2)
    mixed, local_only = tmp_path / "mixed", tmp_path / "local"

    first = captureq.open(root, labels=labels, end=half).export(str(mixed))
    # the window's listing reaches into the next hour's folder (lateness): those files were
    # exported for the window only, and the rest of their rows is still to export
    partial = len(export_plan(captureq.open(root, labels=labels), str(mixed)).partial)
    assert partial > 0
    second = cqs.export_parquet(spark, root, str(mixed), labels, task_bytes=TINY_TASKS)
    assert first.files_exported > 0 and second.files_exported > 0
    assert second.files_skipped == first.files_exported - partial  # nothing else read twice
    assert first.files_exported + second.files_exported == s.files_written + partial
    assert second.label_files_exported == 0  # the local run already took every label file

    # a later local run finds nothing new, so the two engines share one incremental export
    third = captureq.open(root, labels=labels).export(str(mixed))
    assert third.files_exported == 0 and third.files_skipped == s.files_written

    # and the result is the one a local-only export gives, row for row
    captureq.open(root, labels=labels).export(str(local_only))
    for table in ("captures", "inputs", "outputs", "labels"):
        assert parquet(mixed, table).equals(parquet(local_only, table)), table
    m, lm = read_manifest(str(mixed)), read_manifest(str(local_only))
    assert {t: v["rows"] for t, v in m["tables"].items()} == {
        t: v["rows"] for t, v in lm["tables"].items()
    }
    assert m["columns"] == lm["columns"]
    assert m["source_files"] == s.files_written
    rels = [src["rel"] for c in _commits(mixed) for src in c["sources"]]
    # every source file committed once, and the files the first run read only for its window
    # once more, for the rest of their rows
    assert len(rels) == len(set(rels)) + partial
    assert not list((mixed / "_captureq" / "tmp").iterdir())  # no attempt folders left behind


def _commits(out: Path) -> list[dict]:
    return [
        json.loads(p.read_text()) for p in sorted((out / "_captureq" / "commits").glob("*.json"))
    ]


def test_cli_exports_with_spark(spark, tmp_path):
    root = str(tmp_path / "capture")
    s = generate_tree(root, hours=2, requests_per_hour=5, endpoints=every_encoding()[:2])
    result = CliRunner().invoke(
        app, ["export", root, str(tmp_path / "out"), "--engine", "spark", "--master", "local[2]"]
    )
    assert result.exit_code == 0, result.output
    assert f"exported {s.files_written} new files" in result.output
    assert read_manifest(str(tmp_path / "out"))["tables"]["captures"]["rows"] == s.captures


def test_spark_windows_keep_exact_times_like_the_local_engine(spark, tmp_path):
    """[06:30, 07): a record in the 05 object (written into the previous hour's) and one in the
    07 object (flushed after the hour turned) are in; the 06:00–06:29 records of the 06 object
    are out, on the executors as locally."""
    from datetime import datetime, timezone

    def at(h, m, s=0):
        return datetime(2026, 1, 1, h, m, s, tzinfo=timezone.utc)

    root = tmp_path / "capture"
    write_captures(root, [capture("1\n", "0", event_id="a", when=at(5, 59)),
                          capture("1\n", "0", event_id="spill", when=at(6, 30))],
                   when=at(5, 0), name="f.jsonl")
    write_captures(root, [capture("1\n", "0", event_id=e, when=w) for e, w in
                          [("b", at(6, 0, 4)), ("c", at(6, 30)), ("d", at(6, 59, 59))]]
                   + ['{"not": "a capture"}'], when=at(6, 0), name="f.jsonl")
    write_captures(root, [capture("1\n", "0", event_id="e", when=at(7, 0)),
                          capture("1\n", "0", event_id="late", when=at(6, 59, 58))],
                   when=at(7, 0), name="f.jsonl")
    window = {"start": "2026-01-01T06:30", "end": "2026-01-01T07"}
    assert_tables_equal(spark, str(root), **window)
    got = cqs.read_captures(spark, str(root), **window).select("event_id").collect()
    assert sorted(r.event_id for r in got) == ["c", "d", "late", "spill"]
    got = cqs.read_captures(spark, str(root), lateness=0, **window).select("event_id").collect()
    assert sorted(r.event_id for r in got) == ["c", "d"]  # the 06 folder only
    # a windowed Spark export writes exactly the window; a later local run adds the rest once
    out = tmp_path / "out"
    cqs.export_parquet(spark, str(root), str(out), task_bytes=TINY_TASKS, **window)

    def exported():
        with duckdb.connect() as con:  # own connection: the default one is shared by tests
            return sorted(r[0] for r in con.sql(
                f"select event_id from read_parquet('{out}/captures/**/*.parquet')").fetchall())

    assert exported() == ["c", "d", "late", "spill"]
    # the 06 object changes: a Spark run over [06:00, 06:10) replaces its rows for both windows
    write_captures(root, [capture("1\n", "0", event_id=e, when=w) for e, w in
                          [("b", at(6, 0, 4)), ("b2", at(6, 5)), ("c", at(6, 30)),
                           ("c2", at(6, 40)), ("d", at(6, 59, 59)), ("x", at(6, 20))]],
                   when=at(6, 0), name="f.jsonl")
    s = cqs.export_parquet(spark, str(root), str(out), task_bytes=TINY_TASKS,
                           start="2026-01-01T06", end="2026-01-01T06:10")
    assert s.files_changed == 1
    assert exported() == ["b", "b2", "c", "c2", "d", "late", "spill"]
    captureq.open(str(root)).export(str(out))
    assert exported() == ["a", "b", "b2", "c", "c2", "d", "e", "late", "spill", "x"]


def test_spark_export_of_merged_records_writes_their_labels(spark, tmp_path):
    """Model Monitor's merged records and batch-transform capture (tests/data/aws-shapes):
    the embedded ground truth lands in labels/ with either engine, row for row."""
    import shutil

    shapes = Path(__file__).parent / "data" / "aws-shapes"
    root = tmp_path / "capture"
    for name in ("merged", "batch"):
        shutil.copytree(shapes / name, root, dirs_exist_ok=True)
    cqs.export_parquet(spark, str(root), str(tmp_path / "spark"), task_bytes=TINY_TASKS)
    captureq.open(str(root)).export(str(tmp_path / "local"))
    spark_labels, local_labels = parquet(tmp_path / "spark", "labels"), parquet(tmp_path / "local", "labels")
    assert spark_labels.num_rows == 6
    assert spark_labels.equals(local_labels)


def test_a_stray_text_value_types_a_column_as_the_local_engine_does(spark, tmp_path):
    """One endpoint's ``_c0`` holds numbers in every file but one value ``abc``: locally the
    column is text for the whole read, each number its canonical text, and nothing is
    quarantined (one rule per endpoint over the read, :mod:`captureq.decode.unify`), whichever
    task decoded it. Spark gives the same tables, though each task decodes its files alone."""
    cap = tmp_path / "capture"
    for h in range(4):
        rows = [capture(f"{h * 50 + i},{i % 7}", "0.5", event_id=f"e{h}-{i}",
                        when=T0 + timedelta(hours=h, seconds=i)) for i in range(50)]
        if h == 2:
            rows[7] = capture("abc,1", "0.5", event_id="stray", when=T0 + timedelta(hours=h, seconds=7))
        write_captures(cap, rows, when=T0 + timedelta(hours=h))
    local = captureq.open(str(cap), cache=False).load()
    assert local.inputs.schema.field("_c0").type == pa.string()
    assert local.inputs.schema.field("_c1").type == pa.int64()
    assert [r for r in local.quarantine.to_pylist() if r["stage"] == "value"] == []
    tables = assert_tables_equal(spark, str(cap))
    assert tables.tasks > 1
