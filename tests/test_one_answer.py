"""One question, one answer: the same statement over the same files gives the same rows whether
it is answered in memory, from the cache or from an export, whatever order the hours arrived or
were first read in.

Column types follow one rule (README, "Types"): the narrowest type that holds every value the
read saw — NULL, BOOLEAN, BIGINT, DOUBLE, VARCHAR — so a value never changes meaning and is never
dropped because an earlier window decided its column's type.
"""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trees import T0, capture, write_captures

import captureq
from captureq import cache

HOUR0 = T0.replace(minute=0, second=0)


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("CAPTUREQ_CACHE", str(root))
    return root


def write_hour(root, hour: int, rows: list[str], endpoint: str = "t"):
    when = HOUR0 + timedelta(hours=hour)
    caps = [capture(r, "0.5", event_id=f"e{hour}-{i}", when=when + timedelta(seconds=i))
            for i, r in enumerate(rows)]
    write_captures(root, caps, endpoint=endpoint, when=when)


def window(hour: int):
    start = HOUR0 + timedelta(hours=hour)
    return {"start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()}


def ask(root, sql: str, *, use_cache: bool, **where):
    cq = captureq.open(str(root), cache=use_cache)
    if where:
        cq = cq.where(**where)
    return cq.sql(sql).to_arrow().to_pylist()


def test_a_column_empty_in_the_first_hour_keeps_the_text_of_the_next(tmp_path, cache_root):
    # hour 00: _c1 empty, _c2 0/1/2; hour 01 arrives later with words in both
    root = tmp_path / "cap"
    write_hour(root, 0, [f"{i},,{i % 3}" for i in range(50)])
    q = "select count(_c1) as a, count(_c2) as b from inputs"
    assert ask(root, q, use_cache=True, **window(0)) == [{"a": 0, "b": 50}]
    cache.wait()
    write_hour(root, 1, [f"{i},{'gold' if i % 2 else 'silver'},{'A' if i % 2 else 'B'}" for i in range(50)])
    cold = ask(root, q, use_cache=False, **window(1))
    assert cold == [{"a": 50, "b": 50}]
    assert ask(root, q, use_cache=True, **window(1)) == cold
    cache.wait()
    assert ask(root, q, use_cache=True, **window(1)) == cold  # now from the cache
    whole = "select _c1, _c2 from inputs order by capture_id"
    assert ask(root, whole, use_cache=True) == ask(root, whole, use_cache=False)
    cache.wait()
    assert ask(root, whole, use_cache=True) == ask(root, whole, use_cache=False)
    # no value was quarantined: every value fits its column
    cq = captureq.open(str(root), cache=False)
    assert cq.sql("select count(*) as n from quarantine where stage = 'value'").to_pylist() == [{"n": 0}]


def test_integer_columns_are_bigint_and_keep_every_digit(tmp_path, cache_root):
    root = tmp_path / "cap"
    write_hour(root, 0, ["9007199254740993,1.5", "1,2"])
    q = "select _c0, typeof(_c0) as t0, _c1, typeof(_c1) as t1 from inputs order by _c0"
    cold = ask(root, q, use_cache=False)
    assert cold == [{"_c0": 1, "t0": "BIGINT", "_c1": 2.0, "t1": "DOUBLE"},
                    {"_c0": 9007199254740993, "t0": "BIGINT", "_c1": 1.5, "t1": "DOUBLE"}]
    ask(root, q, use_cache=True)
    cache.wait()
    assert ask(root, q, use_cache=True) == cold


def two_endpoints(root):
    write_hour(root, 0, ["1,abc", "2,def"], endpoint="fraud-csv")
    write_hour(root, 0, ["3,4", "5,6"], endpoint="reco-json")


@pytest.mark.parametrize("use_cache", [False, True])
def test_each_endpoint_has_its_own_typed_views(tmp_path, cache_root, use_cache):
    root = tmp_path / "cap"
    two_endpoints(root)
    if use_cache:
        ask(root, "select count(*) from inputs", use_cache=True)
        cache.wait()
    q = 'select avg(_c1) as m, typeof(avg(_c1)) as t from "reco-json".inputs'
    assert ask(root, q, use_cache=use_cache) == [{"m": 5.0, "t": "DOUBLE"}]
    q = 'select _c1 from "fraud-csv".inputs order by 1'
    assert ask(root, q, use_cache=use_cache) == [{"_c1": "abc"}, {"_c1": "def"}]
    # the union view holds both endpoints; _c1 is text there (documented), values unchanged
    q = "select endpoint, _c1 from inputs order by 1, 2"
    assert ask(root, q, use_cache=use_cache) == [
        {"endpoint": "fraud-csv", "_c1": "abc"}, {"endpoint": "fraud-csv", "_c1": "def"},
        {"endpoint": "reco-json", "_c1": "4"}, {"endpoint": "reco-json", "_c1": "6"}]
    q = 'select count(*) as n from "reco-json".predictions'
    assert ask(root, q, use_cache=use_cache) == [{"n": 2}]


def test_the_cache_never_changes_a_results_shape(tmp_path, cache_root):
    root = tmp_path / "cap"
    write_hour(root, 0, ["1,2,3"], endpoint="xgb-a")
    write_hour(root, 0, ["1,2,3,4,5,6,7"], endpoint="xgb-b")
    q = "select * from inputs"
    cold = captureq.open(str(root), cache=False).where(endpoint="xgb-a").sql(q).to_arrow()
    captureq.open(str(root)).sql("select count(*) from inputs")
    cache.wait()
    warm = captureq.open(str(root)).where(endpoint="xgb-a").sql(q).to_arrow()
    assert warm.schema == cold.schema
    assert warm.to_pylist() == cold.to_pylist()


def test_declared_types_win_everywhere(tmp_path, cache_root):
    root = tmp_path / "cap"
    write_hour(root, 0, ["007,1", "123,abc"])
    opts = captureq.DecodeOptions(input_types={"_c0": "VARCHAR", "_c1": "BIGINT"})
    q = "select _c0, _c1 from inputs order by capture_id"
    cold = captureq.open(str(root), options=opts, cache=False).sql(q).to_pylist()
    assert cold == [{"_c0": "007", "_c1": 1}, {"_c0": "123", "_c1": None}]
    cq = captureq.open(str(root), options=opts, cache=False)
    [row] = cq.sql("select \"column\", raw from quarantine where stage = 'value'").to_pylist()
    assert row == {"column": "_c1", "raw": "abc"}
    captureq.open(str(root), options=opts).sql(q)
    cache.wait()
    assert captureq.open(str(root), options=opts).sql(q).to_pylist() == cold


KINDS = {
    "empty": lambda i: "",
    "integer": lambda i: str(i * 7 - 3),
    "fraction": lambda i: repr(i / 4 + 0.1),
    "boolean": lambda i: "true" if i % 2 else "false",
    "text": lambda i: f"w{i}",
    "mixed": lambda i: ["1", "x", "2.5", ""][i % 4],
}


@pytest.mark.slow
@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(sorted(KINDS)), min_size=2, max_size=3),
       order=st.permutations(range(3)), first=st.integers(0, 2))
def test_any_arrival_order_gives_the_cold_answer(tmp_path_factory, kinds, order, first):
    base = tmp_path_factory.mktemp("order")
    root = base / "cap"
    import os

    os.environ["CAPTUREQ_CACHE"] = str(base / "cache")
    try:
        hours = list(range(len(kinds)))
        arrived = []
        for h in [h for h in order if h < len(kinds)]:
            write_hour(root, h, [f"{KINDS[kinds[h]](i)},{i}" for i in range(6)])
            arrived.append(h)
            w = window(arrived[first % len(arrived)])
            ask(root, "select count(*) from inputs", use_cache=True, **w)  # fills the cache
            cache.wait()
        qs = ["select _c0, _c1 from inputs order by capture_id",
              "select count(_c0) as n, count(distinct _c0) as d from inputs"]
        for q in qs:
            for where in [{}] + [window(h) for h in hours]:
                cold = ask(root, q, use_cache=False, **where)
                assert ask(root, q, use_cache=True, **where) == cold, (q, where)
                cache.wait()
                assert ask(root, q, use_cache=True, **where) == cold, (q, where)
        # every value is there: nothing was quarantined as not fitting its column
        cq = captureq.open(str(root), cache=False)
        assert cq.sql("select count(*) as n from quarantine").to_pylist() == [{"n": 0}]
    finally:
        os.environ.pop("CAPTUREQ_CACHE", None)


def test_the_export_answers_as_memory_does(tmp_path, cache_root):
    root = tmp_path / "cap"
    write_hour(root, 0, [f"{i},,{i % 3}" for i in range(5)])
    out = tmp_path / "out"
    end = (HOUR0 + timedelta(hours=1)).isoformat()
    captureq.open(str(root)).where(end=end).export(str(out))
    write_hour(root, 1, ["5,gold,A", "6,silver,B"])
    captureq.open(str(root)).export(str(out))
    con = duckdb.connect()
    got = con.sql(f"select count(_c1) as a, count(_c2) as b from read_parquet('{out}/inputs/**/*.parquet', "
                  "union_by_name = true)").fetchall()
    mem = captureq.open(str(root), cache=False).sql(
        "select count(_c1) as a, count(_c2) as b from inputs").to_pylist()
    assert got == [(mem[0]["a"], mem[0]["b"])] == [(2, 7)]



def _readers(folder):
    """Each reader's rows of an export's ``inputs`` folder, opened with its defaults, as sorted
    (event_id, _c0, _c1, _c2) tuples with values in canonical text."""
    import pandas as pd
    import polars as pl
    import pyarrow.parquet as pq

    def rows(table):
        cols = [table[c] for c in ("event_id", "_c0", "_c1", "_c2")]
        return sorted(tuple(None if v is None or v != v else _text(v) for v in r) for r in zip(*cols))

    frame = pd.read_parquet(folder)
    yield "pandas", rows({c: frame[c].astype(object).where(frame[c].notna(), None).tolist() for c in frame})
    yield "pyarrow", rows(pq.read_table(folder).to_pydict())
    yield "polars", rows(pl.scan_parquet(f"{folder}/**/*.parquet", hive_partitioning=True).collect().to_dict(as_series=False))
    yield "duckdb", rows(duckdb.connect().sql(
        f"select * from read_parquet('{folder}/**/*.parquet', hive_partitioning = true)").to_arrow_table().to_pydict())


def _text(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


@pytest.mark.parametrize("engine", ["local", pytest.param("spark", marks=pytest.mark.spark)])
def test_every_engine_and_reader_gives_the_memory_answer(tmp_path, cache_root, engine, request):
    """Hour 0 arrives (integers, an empty column, small integers), is exported; hour 1 brings
    fractions and words; a second export. Each reader of the export finds memory's values."""
    root = tmp_path / "cap"
    write_hour(root, 0, [f"{i},,{i % 3}" for i in range(4)])
    out = tmp_path / "out"
    end = (HOUR0 + timedelta(hours=1)).isoformat()

    def export(**window):
        if engine == "spark":
            from captureq import spark as cqs

            cqs.export_parquet(request.getfixturevalue("spark"), str(root), str(out), **window)
        else:
            captureq.open(str(root), **window).export(str(out))

    export(end=end)
    write_hour(root, 1, ["2.5,gold,A", "9007199254740993,silver,B"])
    export()
    mem = captureq.open(str(root), cache=False).sql("select event_id, _c0, _c1, _c2 from inputs").to_arrow()
    expected = sorted(tuple(None if v is None else _text(v) for v in r.values()) for r in mem.to_pylist())
    assert len(expected) == 6
    for reader, got in _readers(out / "inputs"):
        assert got == expected, reader
