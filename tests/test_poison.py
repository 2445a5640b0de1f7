"""A value Parquet cannot hold as it is never stops an export, a query or the cache.

An empty JSON object (``{"context": {}}``) decodes to a struct with no fields, which Parquet
cannot store; a list that mixes types (``[1, "a"]``) has no Arrow type at all. Both are kept as
JSON text. An unexpected error on one endpoint fails that endpoint only: the others are
committed and the summary (and the CLI, exit 1) says which endpoint failed and why. A cache fill
that fails is written to a log and reported by the next query on stderr.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trees import T0, capture, write_captures
from typer.testing import CliRunner

import captureq
from captureq import cache
from captureq.cli import app

POISON = {
    "e0": '{"amount": 1.5, "context": {}}',
    "e1": '{"amount": 2.5, "tags": [1, "a"]}',
    "e2": '{"amount": 3.5, "nested": {"e": {}}}',
    "e3": '{"amount": 4.5, "tags": [2, 3], "context": {}}',
}
# what each record's poison column reads as (JSON text; null where the payload lacks it)
EXPECTED = {
    "e0": {"amount": 1.5, "context": "{}", "tags": None, "nested.e": None},
    "e1": {"amount": 2.5, "context": None, "tags": '[1,"a"]', "nested.e": None},
    "e2": {"amount": 3.5, "context": None, "tags": None, "nested.e": "{}"},
    # a list of numbers beside a mixed one: the column is text, each value its JSON
    "e3": {"amount": 4.5, "context": "{}", "tags": "[2.0,3.0]", "nested.e": None},
}


def json_capture(doc: str, event_id: str, when=T0) -> dict:
    return capture(doc, '{"score": 0.5}', input_type="application/json",
                   output_type="application/json", event_id=event_id, when=when)


def poison_tree(root: Path, endpoints: tuple[str, ...] = ("js",)) -> Path:
    for ep in endpoints:
        write_captures(root, [json_capture(d, e) for e, d in POISON.items()], endpoint=ep)
        write_captures(root, [json_capture('{"amount": 9.0}', "ok", when=T0 + timedelta(hours=1))],
                       endpoint=ep, when=T0 + timedelta(hours=1))
    return root


def poison_values(rows: list[dict]) -> dict[str, dict]:
    keep = ("amount", "context", "tags", "nested.e")
    return {r["event_id"]: {k: r.get(k) for k in keep} for r in rows if r["event_id"] in EXPECTED}


@pytest.fixture
def no_cache(monkeypatch):
    monkeypatch.setenv("CAPTUREQ_NO_CACHE", "1")


def test_empty_object_and_mixed_list_are_json_text_in_memory(tmp_path, no_cache):
    cq = captureq.open(str(poison_tree(tmp_path / "cap")))
    inputs = cq.inputs()
    for col in ("context", "tags", "nested.e"):
        assert inputs.schema.field(col).type == pa.string()
    assert poison_values(inputs.to_pylist()) == EXPECTED
    # every record is kept: none of these payloads is quarantined
    assert cq.quarantine().num_rows == 0
    got = cq.sql('select "context", count(*) as n from inputs group by 1 order by 1').to_pylist()
    assert got == [{"context": "{}", "n": 2}, {"context": None, "n": 3}]


def test_poison_payload_exports_and_reads_back(tmp_path, no_cache):
    cq = captureq.open(str(poison_tree(tmp_path / "cap")))
    summary = cq.export(str(tmp_path / "out"))
    assert summary.failed == {}
    back = pq.read_table(tmp_path / "out" / "inputs").to_pylist()
    assert poison_values(back) == EXPECTED
    assert summary.rows["inputs"] == len(back) == 5


def test_cache_warm_path_holds_poison_payload(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPTUREQ_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CAPTUREQ_NO_CACHE", raising=False)
    cap = str(poison_tree(tmp_path / "cap"))
    query = 'select event_id, amount, "context", tags, "nested.e" from inputs order by event_id'
    cold = captureq.open(cap)
    expected = cold.sql(query).to_pylist()
    cache.refresh(cold)
    warm = captureq.open(cap)
    assert warm.sql(query).to_pylist() == expected
    assert warm._cache["warm"] is not None  # answered from the cache
    assert poison_values(expected) == EXPECTED


# JSON values as a payload's fields: empty objects, empty lists, lists that mix types
scalars = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000),
                    st.floats(allow_nan=False, allow_infinity=False, width=32), st.text(max_size=3))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from("abc"), inner, max_size=2)), max_leaves=6)
objects = st.dictionaries(st.sampled_from(["x", "y", "context"]), values, min_size=1, max_size=3)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(docs=st.lists(objects, min_size=1, max_size=4))
def test_any_json_objects_export_as_they_read_in_memory(tmp_path_factory, docs):
    """Round trip: whatever objects the payloads hold, the export writes every table and its
    inputs equal the in-memory inputs (nothing fails, no record is lost)."""
    import os

    os.environ["CAPTUREQ_NO_CACHE"] = "1"
    base = tmp_path_factory.mktemp("h")
    write_captures(base / "cap", [json_capture(json.dumps(d), f"e{i}") for i, d in enumerate(docs)])
    cq = captureq.open(str(base / "cap"))
    summary = cq.export(str(base / "out"))
    assert summary.failed == {}
    memory = cq.inputs()
    exported = pq.read_table(base / "out" / "inputs")
    assert exported.num_rows + cq.quarantine().filter(
        pa.compute.equal(cq.quarantine()["stage"], "input")).num_rows >= len(docs)
    key = ["capture_id", "record_index"]
    cols = [c for c in memory.column_names if c not in ("endpoint", "variant")]
    assert exported.select(cols).sort_by([(k, "ascending") for k in key]).to_pylist() == \
        memory.select(cols).sort_by([(k, "ascending") for k in key]).to_pylist()


def _fail_for(endpoint: str, monkeypatch):
    """Make the decoding of one endpoint's batches raise an unexpected error."""
    from captureq import export as ex

    real = ex.conform_batch

    def conform(registry, result, split, run_id):
        if endpoint in set(result.captures.column("endpoint").to_pylist()):
            raise RuntimeError("disk on fire")
        return real(registry, result, split, run_id)

    monkeypatch.setattr(ex, "conform_batch", conform)


def test_one_endpoint_failing_does_not_stop_the_others(tmp_path, monkeypatch, no_cache):
    cap = poison_tree(tmp_path / "cap", endpoints=("a", "b", "c"))
    _fail_for("b", monkeypatch)
    summary = captureq.open(str(cap), batch_bytes=1).export(str(tmp_path / "out"))
    assert set(summary.failed) == {"b"}
    assert "RuntimeError: disk on fire" in summary.failed["b"]
    got = duckdb.connect().sql(f"select endpoint, count(*) from read_parquet('{tmp_path}/out/inputs/**/*.parquet', "
                     "hive_partitioning=true) group by 1 order by 1").fetchall()
    assert got == [("a", 5), ("c", 5)]
    monkeypatch.undo()
    monkeypatch.setenv("CAPTUREQ_NO_CACHE", "1")
    again = captureq.open(str(cap)).export(str(tmp_path / "out"))
    assert again.failed == {} and again.files_exported == 2 and again.files_skipped == 4


def test_cli_export_names_the_failed_endpoint_and_exits_1(tmp_path, monkeypatch, no_cache):
    cap = poison_tree(tmp_path / "cap", endpoints=("a", "b"))
    _fail_for("a", monkeypatch)
    res = CliRunner().invoke(app, ["export", str(cap), str(tmp_path / "out"), "--quiet"])
    assert res.exit_code == 1, res.output
    assert "endpoint a failed" in res.output and "disk on fire" in res.output
    assert (tmp_path / "out" / "inputs" / "endpoint=b").is_dir()


def test_a_failed_cache_fill_is_logged_and_reported_by_the_next_query(tmp_path, monkeypatch, capsys):
    root = tmp_path / "cache"
    monkeypatch.setenv("CAPTUREQ_CACHE", str(root))
    monkeypatch.delenv("CAPTUREQ_NO_CACHE", raising=False)
    cap = str(poison_tree(tmp_path / "cap"))
    from captureq import export as ex

    def broken(*a, **k):
        raise RuntimeError("cannot write here")

    monkeypatch.setattr(ex, "export", broken)
    cq = captureq.open(cap)
    cache._fill(cache._spec(cq, None))  # what the detached fill process runs
    log = root / cache.FILL_LOG
    assert "RuntimeError: cannot write here" in log.read_text() and cap in log.read_text()
    capsys.readouterr()
    captureq.open(cap).sql("select count(*) from inputs")
    err = capsys.readouterr().err
    assert "could not fill the query cache" in err and "cannot write here" in err and str(log) in err
    monkeypatch.undo()
    cache.wait(root)


@pytest.mark.spark
def test_spark_reads_and_exports_poison_payloads(tmp_path, no_cache):
    pytest.importorskip("pyspark")
    import os
    import sys

    from pyspark.sql import SparkSession

    import captureq.spark as cqs

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (SparkSession.builder.master("local[1]").appName("captureq-tests")
             .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC")
             .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
             .getOrCreate())
    cap = str(poison_tree(tmp_path / "cap"))
    tables = cqs.read_tables(spark, cap)
    assert poison_values([r.asDict() for r in tables.inputs.collect()]) == EXPECTED
    summary = cqs.export_parquet(spark, cap, str(tmp_path / "out"))
    assert summary.rows["inputs"] == 5
    assert poison_values(pq.read_table(tmp_path / "out" / "inputs").to_pylist()) == EXPECTED


class ExplodingOptions(captureq.DecodeOptions):
    """Decode options whose use for one endpoint raises: an unexpected error inside a Spark task
    (the options travel to the executors with the task)."""

    def get(self, what, side, endpoint):
        if endpoint == "b":
            raise RuntimeError("disk on fire")
        return super().get(what, side, endpoint)


@pytest.mark.slow
def test_spark_export_commits_the_endpoints_that_did_not_fail(tmp_path, no_cache):
    pytest.importorskip("pyspark")
    import os
    import sys

    from pyspark import cloudpickle
    from pyspark.sql import SparkSession

    import captureq.spark as cqs

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the executors lack tests/
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (SparkSession.builder.master("local[1]").appName("captureq-tests")
             .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC")
             .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
             .getOrCreate())
    cap = str(poison_tree(tmp_path / "cap", endpoints=("a", "b", "c")))
    out = str(tmp_path / "out")

    def rows():
        return duckdb.connect().sql(f"select endpoint, count(*) from read_parquet('{out}/inputs/**/*.parquet', "
                                    "hive_partitioning=true) group by 1 order by 1").fetchall()

    # a new endpoint failing on the driver (its types are decided there)
    summary = cqs.export_parquet(spark, cap, out, options=ExplodingOptions(), task_files=1,
                                 end=(T0 + timedelta(hours=1)).isoformat())
    assert set(summary.failed) == {"b"} and "RuntimeError: disk on fire" in summary.failed["b"]
    assert rows() == [("a", 4), ("c", 4)]
    again = cqs.export_parquet(spark, cap, out, task_files=1, end=(T0 + timedelta(hours=1)).isoformat())
    assert again.failed == {} and rows() == [("a", 4), ("b", 4), ("c", 4)]
    # a known endpoint failing inside a task: the other tasks commit
    summary = cqs.export_parquet(spark, cap, out, options=ExplodingOptions(), task_files=1)
    assert set(summary.failed) == {"b"} and "RuntimeError: disk on fire" in summary.failed["b"]
    assert rows() == [("a", 5), ("b", 4), ("c", 5)]
    last = cqs.export_parquet(spark, cap, out, task_files=1)
    assert last.failed == {} and last.files_exported == 1 and rows() == [("a", 5), ("b", 5), ("c", 5)]
