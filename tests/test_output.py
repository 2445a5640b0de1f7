"""What `captureq query --format csv|json` prints (captureq/output.py), pinned.

The text is the one the CLI printed with Python's csv module and ``json.dumps`` over
``to_pylist()``; that slow, readable version is kept here as the oracle (``reference_csv``,
``reference_json``) and the vectorized writer must match it, cell for cell.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from captureq.cli import app
from captureq.generate import generate_tree

runner = CliRunner()


@pytest.fixture(autouse=True, params=["duckdb", "polars"])
def printer(request, monkeypatch):
    """Every test twice: DuckDB prints the whole CSV, or polars prints its doubles (as it does
    from a million float cells on)."""
    from captureq import output

    if request.param == "polars":
        assert output._polars_prints_repr()
        monkeypatch.setattr(output, "POLARS_FROM_FLOAT_CELLS", 0)
    return request.param


# -- the oracle: what the CLI printed before the writer was vectorized -------------------------
def reference_csv(table: pa.Table) -> str:
    """Python's csv module over ``to_pylist()`` (a ``\\r`` in a value is quoted too)."""
    def line(values) -> str:
        buf = io.StringIO()
        # "\r\n" as the terminator makes the csv module quote a value holding "\r" or "\n"
        csv.writer(buf, lineterminator="\r\n").writerow(values)
        return buf.getvalue()[:-2] + "\n"

    rows = [line(table.column_names)]
    for row in table.to_pylist():
        rows.append(line(["" if v is None else (v.isoformat() if hasattr(v, "isoformat") else v)
                          for v in row.values()]))
    return "".join(rows)


def reference_json(table: pa.Table):
    return json.loads(json.dumps(table.to_pylist(), default=str, indent=None))


def csv_text(table: pa.Table) -> str:
    from captureq.output import write_csv

    out = io.BytesIO()
    write_csv(table, out)
    return out.getvalue().decode()


def json_text(table: pa.Table) -> str:
    from captureq.output import write_json

    out = io.BytesIO()
    write_json(table, out)
    return out.getvalue().decode()


def same_json(a, b) -> bool:
    """Equal JSON values (NaN equal to NaN, 1 and 1.0 told apart)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return a == b


# -- through the command ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("output")
    generate_tree(str(base / "capture"), labels_out=str(base / "labels"), hours=3,
                  requests_per_hour=20)
    first = sorted((base / "capture").rglob("*.jsonl"))[0]
    with first.open("a") as f:  # two bad lines: the quarantine view has rows
        f.write('{"captureData": \n{not json at all, "quoted"}\n')
    return base / "capture"


EVERY_KIND = """
select 'plain' as s, 'a,b' as comma, 'say "hi"' as quote, 'two' || chr(10) || 'lines' as newline,
       NULL::VARCHAR as nothing, true as yes, false as no, NULL::BOOLEAN as maybe,
       42 as n, -7::BIGINT as neg, 1.5 as dec, 94.0::DOUBLE as whole, 0.1::DOUBLE as tenth,
       1e-05::DOUBLE as tiny, 1e16::DOUBLE as huge, 'nan'::DOUBLE as nan, -0.0::DOUBLE as negzero,
       0.1::FLOAT as f32, 'héllo ✓ 日本' as unicode,
       TIMESTAMPTZ '2026-01-01 03:10:27+00' as t, TIMESTAMPTZ '2026-01-01 03:10:27.25+00' as t_frac,
       TIMESTAMP '2026-01-01 03:10:27' as naive, DATE '2026-01-02' as d,
       [1, 2] as l, {'a': 1, 'b': 'x'} as st
"""


def query(capture: Path, sql: str, format: str) -> str:
    result = runner.invoke(app, ["query", str(capture), sql, "--format", format])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_csv_prints_each_kind_of_value_as_it_always_has(capture):
    assert query(capture, EVERY_KIND, "csv") == (
        "s,comma,quote,newline,nothing,yes,no,maybe,n,neg,dec,whole,tenth,tiny,huge,nan,negzero,"
        "f32,unicode,t,t_frac,naive,d,l,st\n"
        'plain,"a,b","say ""hi""","two\nlines",,True,False,,42,-7,1.5,94.0,0.1,1e-05,1e+16,nan,'
        "-0.0,0.10000000149011612,héllo ✓ 日本,2026-01-01T03:10:27+00:00,"
        "2026-01-01T03:10:27.250000+00:00,2026-01-01T03:10:27,2026-01-02,"
        "\"[1, 2]\",\"{'a': 1, 'b': 'x'}\"\n"
    )


def test_json_prints_each_kind_of_value_as_it_always_has(capture):
    text = query(capture, EVERY_KIND, "json")
    assert text.endswith("]\n") and text.count("\n") == 1
    doc = json.loads(text)
    assert same_json(doc, [{
        "s": "plain", "comma": "a,b", "quote": 'say "hi"', "newline": "two\nlines",
        "nothing": None, "yes": True, "no": False, "maybe": None, "n": 42, "neg": -7,
        "dec": "1.5", "whole": 94.0, "tenth": 0.1, "tiny": 1e-05, "huge": 1e16,
        "nan": float("nan"), "negzero": -0.0, "f32": 0.10000000149011612,
        "unicode": "héllo ✓ 日本", "t": "2026-01-01 03:10:27+00:00",
        "t_frac": "2026-01-01 03:10:27.250000+00:00", "naive": "2026-01-01 03:10:27",
        "d": "2026-01-02", "l": [1, 2], "st": {"a": 1, "b": "x"},
    }])


def test_an_empty_result_has_its_header(capture):
    sql = "select endpoint, count(*) as n from captures where false group by 1"
    assert query(capture, sql, "csv") == "endpoint,n\n"
    assert query(capture, sql, "json") == "[]\n"


def test_nulls_are_empty_cells_and_a_lone_empty_cell_is_quoted(capture):
    sql = "select * from (values (1, 'a'), (NULL, NULL), (3, '')) t(n, s)"
    assert query(capture, sql, "csv") == 'n,s\n1,a\n,\n3,\n'
    assert json.loads(query(capture, sql, "json")) == [
        {"n": 1, "s": "a"}, {"n": None, "s": None}, {"n": 3, "s": ""}]
    one = "select s from (values ('x'), (''), (NULL)) t(s)"
    assert query(capture, one, "csv") == 's\nx\n""\n""\n'


def test_a_carriage_return_is_quoted(capture):
    """Changed on purpose: the csv module left a value holding a lone ``\\r`` unquoted, which
    CSV readers take for a line end."""
    text = query(capture, "select 'a' || chr(13) || 'b' as s, 1 as n", "csv")
    assert text == 's,n\n"a\rb",1\n'
    assert list(csv.reader(io.StringIO(text, newline=""))) == [["s", "n"], ["a\rb", "1"]]


@pytest.mark.parametrize("view", ["captures", "inputs", "outputs", "predictions", "quarantine"])
def test_every_view_prints_as_the_reference_writer_does(capture, view):
    import captureq

    table = captureq.open(str(capture), cache=False).sql(
        f"select * from {view} order by all").to_arrow()
    assert table.num_rows > 0
    sql = f"select * from {view} order by all"
    assert query(capture, sql, "csv") == reference_csv(table)
    assert same_json(json.loads(query(capture, sql, "json")), reference_json(table))


def test_a_pipe_closed_early_is_not_an_error(capture):
    """`captureq query … --format csv | head -1`, and a reader gone before any output:
    exit 0, nothing on stderr."""
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(Path.cwd()))}
    exe = str(Path(sys.executable).parent / "captureq")
    sql = "select range as n, 'some text' as s from range(300000)"
    floats = "select range as n, range / 3 as x from range(1200000)"  # polars prints the CSV
    for format, sql in (("csv", sql), ("json", sql), ("csv", floats)):
        for read_first_line in (True, False):
            proc = subprocess.Popen([exe, "query", str(capture), sql, "--format", format],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            if read_first_line:
                assert proc.stdout.read(2) in (b"n,", b'[{')
            proc.stdout.close()  # what `head` does once it has what it wants
            stderr = proc.stderr.read().decode()
            assert proc.wait(timeout=120) == 0, stderr
            assert stderr == ""


# -- the library writer, on every Arrow type a result can have ---------------------------------
def every_type() -> pa.Table:
    stamps = [dt.datetime(2026, 3, 29, 0, 59, 59, 123000), None, dt.datetime(1969, 12, 31, 23, 59, 59, 500)]
    return pa.table({
        "s": pa.array(["x", None, 'q"uote,d\n']),
        "big": pa.array(["é", "", None], pa.large_string()),
        "cat": pa.array(["a", "b", "a"]).dictionary_encode(),
        "i8": pa.array([-1, None, 127], pa.int8()),
        "u64": pa.array([0, 2**64 - 1, None], pa.uint64()),
        "f32": pa.array([1.1, None, float("inf")], pa.float32()),
        "f64": pa.array([1e15, 1.2345678901234567e-300, float("-inf")]),
        "b": pa.array([True, None, False]),
        "d32": pa.array([dt.date(2026, 1, 1), None, dt.date(1, 1, 1)]),
        "d64": pa.array([dt.date(2026, 1, 1), None, dt.date(9999, 12, 31)], pa.date64()),
        "ts_s": pa.array(stamps, pa.timestamp("s", "UTC")),
        "ts_ms": pa.array(stamps, pa.timestamp("ms", "UTC")),
        "ts_us": pa.array(stamps, pa.timestamp("us", "UTC")),
        "ts_ny": pa.array(stamps, pa.timestamp("us", "America/New_York")),
        "ts_paris": pa.array(stamps, pa.timestamp("us", "Europe/Paris")),
        "ts_fixed": pa.array(stamps, pa.timestamp("ms", "+05:30")),
        "ts_naive": pa.array(stamps, pa.timestamp("us")),
        "time": pa.array([dt.time(1, 2, 3), None, dt.time(0, 0, 0, 5)]),
        "dec": pa.array([decimal.Decimal("1.50"), None, decimal.Decimal("-0.0000001")],
                        pa.decimal128(12, 7)),
        "dec0": pa.array([decimal.Decimal("12345678901234567890"), None, decimal.Decimal("-1")],
                         pa.decimal128(38, 0)),
        "bin": pa.array([b"\x00ab", None, b""]),
        "dur": pa.array([dt.timedelta(seconds=90), None, dt.timedelta(0)]),
        "lst": pa.array([[1.5, None], None, []]),
        "struct": pa.array([{"a": 1, "b": "x,y"}, None, {"a": None, "b": None}]),
        "map": pa.array([[("k", 1)], None, []], pa.map_(pa.string(), pa.int64())),
        "nul": pa.nulls(3),
    })


def test_every_arrow_type_matches_the_reference():
    table = every_type()
    assert csv_text(table) == reference_csv(table)
    assert same_json(json.loads(json_text(table)), reference_json(table))


def test_duplicate_column_names_keep_every_cell():
    table = pa.table([pa.array([1]), pa.array([2])], names=["a", "a"])
    assert csv_text(table) == "a,a\n1,2\n"  # to_pylist kept one of them
    assert json.loads(json_text(table)) == [{"a": 2}]


def test_long_results_are_written_in_batches_in_order():
    n = 200_003
    table = pa.table({"n": pa.array(range(n)), "s": pa.array([f"r{i}" for i in range(n)])})
    lines = csv_text(table).splitlines()
    assert lines[0] == "n,s" and len(lines) == n + 1
    assert lines[1:] == [f"{i},r{i}" for i in range(n)]
    doc = json.loads(json_text(table))
    assert [r["n"] for r in doc] == list(range(n))


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.none() | st.text(), min_size=1, max_size=30),
    floats=st.lists(st.none() | st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=30),
    stamps=st.lists(st.none() | st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 30)),
                    min_size=1, max_size=30),
)
def test_random_values_match_the_reference(texts, floats, stamps):
    n = min(len(texts), len(floats), len(stamps))
    table = pa.table({
        "text": pa.array(texts[:n], pa.string()),
        "x": pa.array(floats[:n], pa.float64()),
        "t": pa.array(stamps[:n], pa.timestamp("us", "UTC")),
        # -03:30 / -02:30 (past 2037 Python's zone data stops following the DST rule)
        "local": pa.array([s if s is None or s.year < 2038 else s.replace(year=2037)
                           for s in stamps[:n]], pa.timestamp("us", "America/St_Johns")),
        "naive": pa.array(stamps[:n], pa.timestamp("us")),
    })
    assert csv_text(table) == reference_csv(table)
    assert same_json(json.loads(json_text(table)), reference_json(table))
    one = table.select(["text"])
    assert csv_text(one) == reference_csv(one)


def test_doubles_print_as_python_repr():
    """Digit for digit, over magnitudes from subnormal to huge (DuckDB's shortest round trip)."""
    import random

    rng = random.Random(0)
    values = [rng.uniform(-1, 1) * 10.0 ** rng.randint(-320, 308) for _ in range(20_000)]
    values += [float(i) for i in range(-50, 50)] + [5e-324, 2.0**53, 1e16, 1e-4, 9.999999999999999e15]
    values += [float("nan"), -float("nan"), float("inf"), -float("inf")]
    table = pa.table({"x": values})
    assert csv_text(table).splitlines()[1:] == [repr(v) for v in values]
    assert same_json(json.loads(json_text(table)), reference_json(table))


def test_doubles_between_1e_4_and_1e16_print_as_python_repr(printer):
    """The range where polars prints them itself (outside it DuckDB does)."""
    import random

    rng = random.Random(1)
    values = [rng.uniform(-1, 1) * 10.0 ** rng.randint(-4, 15) for _ in range(50_000)]
    values += [round(rng.uniform(0, 500), rng.randint(0, 3)) for _ in range(50_000)]
    values += [0.0, -0.0, 1e-4, 9.999999999999998e15, 2.0**52 + 0.5, 0.1 + 0.2]
    values = [v for v in values if v == 0 or 1e-4 <= abs(v) < 1e16]
    table = pa.table({"x": values, "y": list(reversed(values))})
    lines = csv_text(table).splitlines()[1:]
    assert lines == [f"{x!r},{y!r}" for x, y in zip(values, reversed(values))]


def test_a_real_file_gets_the_same_bytes_in_order(tmp_path):
    """Written to an OS file (as the CLI's stdout is), batch after batch after the header: the
    same bytes as to memory, whichever library prints the lines."""
    n = 150_001
    table = pa.table({"x": pa.array([i / 7 for i in range(n)]), "y": pa.array([float(i) for i in range(n)]),
                      "s": pa.array([f"r{i}" for i in range(n)])})
    from captureq.output import write_csv

    path = tmp_path / "out.csv"
    with open(path, "wb") as f:
        write_csv(table, f)
        f.write(b"after\n")
    assert path.read_bytes() == csv_text(table).encode() + b"after\n"
