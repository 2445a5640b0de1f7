"""What `captureq query --format csv|json` prints (captureq/output.py), pinned.

The slow, readable version is kept here as the oracle (``reference_csv``, ``reference_json``:
Python's csv module and ``json.dumps`` over ``to_pylist()``, each value made plain first by
``plain``) and the vectorized writer must match it, cell for cell. JSON is strict (no ``NaN``),
CSV holds no Python repr (blobs in base64, intervals as ISO 8601 durations, nested values as JSON).
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import io
import json
import math
import os
import re
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


# -- the oracle: the same text, one value at a time -------------------------------------------
def iso_duration(months: int, days: int, nanos: int) -> str:
    """An interval as an ISO 8601 duration, each field with its own sign (PostgreSQL's
    ``iso_8601`` interval style): ``P1Y2M3DT4H5M6.5S``, ``P-1Y-2M``, ``PT0S``."""
    def trunc(a: int, b: int) -> tuple[int, int]:  # C division: toward zero
        q = abs(a) // b * (1 if a >= 0 else -1)
        return q, a - q * b

    years, months = trunc(months, 12)
    hours, rest = trunc(nanos, 3_600 * 10**9)
    minutes, rest = trunc(rest, 60 * 10**9)
    seconds, frac = trunc(rest, 10**9)
    sec = ("-" if rest < 0 else "") + str(abs(seconds))
    if frac:
        sec += "." + f"{abs(frac):09d}".rstrip("0")
    date = "".join(f"{v}{u}" for v, u in ((years, "Y"), (months, "M"), (days, "D")) if v)
    time = "".join(f"{v}{u}" for v, u in ((hours, "H"), (minutes, "M")) if v) + (sec + "S" if rest else "")
    return "P" + date + ("T" + time if time else "") if date or time else "PT0S"


def nanos_of(v: dt.timedelta) -> int:
    return (v.days * 86_400 + v.seconds) * 10**9 + v.microseconds * 1000


def plain(v, t: pa.DataType):
    """A value of Arrow type ``t`` as JSON holds it: no NaN or infinity (null), bytes in base64,
    intervals as ISO 8601 durations, decimals as text, times as ``isoformat``, a map as an
    object keyed by its keys' text."""
    if v is None:
        return None
    if pa.types.is_dictionary(t):
        return plain(v, t.value_type)
    if pa.types.is_map(t):
        return {(str(k) if isinstance(k, float) else str(plain(k, t.key_type))): plain(x, t.item_type)
                for k, x in v}
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return [plain(x, t.value_type) for x in v]
    if pa.types.is_struct(t):
        return {f.name: plain(v[f.name], f.type) for f in t}
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, dt.timedelta):
        return iso_duration(0, 0, nanos_of(v))
    if isinstance(v, pa.MonthDayNano):
        return iso_duration(v.months, v.days, v.nanoseconds)
    if isinstance(v, decimal.Decimal):
        return format(v, "f")
    if isinstance(v, dt.datetime):
        return str(v)
    if isinstance(v, (dt.date, dt.time)):
        return v.isoformat()
    return v


def csv_value(v, t: pa.DataType):
    """A CSV cell: timestamps by ``isoformat``, nested values as their JSON, else ``plain``."""
    if v is None:
        return ""
    if pa.types.is_nested(t):
        return json.dumps(plain(v, t), separators=(",", ":"), ensure_ascii=False)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, dt.datetime):
        return v.isoformat()
    return plain(v, t)


def reference_csv(table: pa.Table) -> str:
    """Python's csv module over ``to_pylist()`` (a ``\\r`` in a value is quoted too)."""
    def line(values) -> str:
        buf = io.StringIO()
        # "\r\n" as the terminator makes the csv module quote a value holding "\r" or "\n"
        csv.writer(buf, lineterminator="\r\n").writerow(values)
        return buf.getvalue()[:-2] + "\n"

    rows = [line(table.column_names)]
    types = dict(zip(table.column_names, table.schema.types))
    for row in table.to_pylist():
        rows.append(line([csv_value(v, types[k]) for k, v in row.items()]))
    return "".join(rows)


def reference_json(table: pa.Table):
    types = dict(zip(table.column_names, table.schema.types))
    return json.loads(json.dumps([{k: plain(v, types[k]) for k, v in row.items()}
                                  for row in table.to_pylist()], allow_nan=False))


def strict_json(text: str):
    """``json.loads`` refusing ``NaN``, ``Infinity`` and ``-Infinity``."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def same_csv(text: str, table: pa.Table) -> bool:
    """``text`` is ``reference_csv(table)``, nested cells compared as the JSON they hold (DuckDB
    and ``json.dumps`` spell some doubles differently: ``1e16`` / ``10000000000000000.0``)."""
    nested = [pa.types.is_nested(f.type) for f in table.schema]
    got = list(csv.reader(io.StringIO(text, newline="")))
    want = list(csv.reader(io.StringIO(reference_csv(table), newline="")))
    if len(got) != len(want) or got[:1] != want[:1]:
        return False
    for g, w in zip(got[1:], want[1:]):
        if len(g) != len(w):
            return False
        for cell_g, cell_w, is_nested in zip(g, w, nested):
            if is_nested and cell_w:
                if not same_json(strict_json(cell_g), json.loads(cell_w)):
                    return False
            elif cell_g != cell_w:
                return False
    return True


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


def test_csv_prints_each_kind_of_value(capture):
    assert query(capture, EVERY_KIND, "csv") == (
        "s,comma,quote,newline,nothing,yes,no,maybe,n,neg,dec,whole,tenth,tiny,huge,nan,negzero,"
        "f32,unicode,t,t_frac,naive,d,l,st\n"
        'plain,"a,b","say ""hi""","two\nlines",,True,False,,42,-7,1.5,94.0,0.1,1e-05,1e+16,nan,'
        "-0.0,0.10000000149011612,héllo ✓ 日本,2026-01-01T03:10:27+00:00,"
        "2026-01-01T03:10:27.250000+00:00,2026-01-01T03:10:27,2026-01-02,"
        '"[1,2]","{""a"":1,""b"":""x""}"\n'
    )


def test_json_prints_each_kind_of_value(capture):
    text = query(capture, EVERY_KIND, "json")
    assert text.endswith("]\n") and text.count("\n") == 1
    doc = strict_json(text)
    assert same_json(doc, [{
        "s": "plain", "comma": "a,b", "quote": 'say "hi"', "newline": "two\nlines",
        "nothing": None, "yes": True, "no": False, "maybe": None, "n": 42, "neg": -7,
        "dec": "1.5", "whole": 94.0, "tenth": 0.1, "tiny": 1e-05, "huge": 1e16,
        "nan": None, "negzero": -0.0, "f32": 0.10000000149011612,
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
    assert same_json(strict_json(query(capture, sql, "json")), reference_json(table))


@pytest.mark.slow
def test_a_pipe_closed_early_is_not_an_error(capture):
    """`captureq query … --format csv | head -1`, and a reader gone before any output:
    exit 0, nothing on stderr."""
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(Path.cwd()))}
    exe = str(Path(sys.executable).parent / "captureq")
    texts = "select range as n, 'some text' as s from range(300000)"
    floats = "select range as n, range / 3 as x from range(1200000)"  # polars prints the CSV
    for format, sql in (("csv", texts), ("json", texts), ("csv", floats)):
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
        "interval": pa.array([pa.MonthDayNano([14, -3, 3_723_500_000_001]), None,
                              pa.MonthDayNano([0, 0, 0])], pa.month_day_nano_interval()),
        "dur_ns": pa.array([-1_500_000, None, 86_400 * 10**9 * 3], pa.duration("ns")),
        "dur_s": pa.array([3_725, None, -59], pa.duration("s")),
        "big_bin": pa.array([b"\xff" * 5, None, b"x"], pa.large_binary()),
        "fixed_bin": pa.array([b"\x00\x01", None, b"zz"], pa.binary(2)),
        "dec256": pa.array([decimal.Decimal("1.5"), None, decimal.Decimal("-2")], pa.decimal256(40, 2)),
        "nans": pa.array([[float("nan"), 1.0, float("inf")], None, [float("-inf")]]),
        "f32s": pa.array([[float("nan"), 0.5], None, []], pa.list_(pa.float32())),
        "deep": pa.array([{"b": [b"\x01", None], "d": [dt.timedelta(seconds=1.5)], "x": float("nan"),
                           "t": dt.datetime(2026, 1, 1, 3, 4, 5, 250000), "dec": decimal.Decimal("0.10"),
                           "tm": dt.time(1, 2, 3, 500000)},
                          None, {"b": [], "d": None, "x": 2.5, "t": None, "dec": None, "tm": None}],
                         pa.struct([("b", pa.list_(pa.binary())), ("d", pa.list_(pa.duration("us"))),
                                    ("x", pa.float64()), ("t", pa.timestamp("us")),
                                    ("dec", pa.decimal128(5, 2)), ("tm", pa.time64("us"))])),
        "nan_map": pa.array([[("a", float("nan")), ("b", 1.0)], None, []],
                            pa.map_(pa.string(), pa.float64())),
        "int_map": pa.array([[(1, b"\x00")], None, [(2, None)]], pa.map_(pa.int32(), pa.binary())),
        "fixed_list": pa.array([[float("nan"), 1.0], None, [2.0, float("inf")]],
                               pa.list_(pa.float64(), 2)),
    })


@pytest.mark.parametrize("rows", [slice(0, 3), slice(1, 3), slice(2, 3)])
def test_every_arrow_type_matches_the_reference(rows):
    """The whole table and slices of it (Arrow arrays with an offset into their buffers)."""
    table = every_type().slice(rows.start, rows.stop - rows.start)
    assert same_csv(csv_text(table), table)
    assert same_json(strict_json(json_text(table)), reference_json(table))


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


@pytest.mark.slow
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
    assert same_json(strict_json(json_text(table)), reference_json(table))
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
    assert same_json(strict_json(json_text(table)), reference_json(table))


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


# -- strict formats: every DuckDB type a statement can return ------------------------------------
STRICT = r"""
select 1.50::DECIMAL(12,2) as dec, 170141183460469231731687303715884105727::HUGEINT as huge,
       '6c3d5961-00c9-4a30-bc57-7048dd1afbe1'::UUID as id, DATE '2026-01-02' as d,
       TIME '01:02:03.5' as t, TIMESTAMP '2026-01-01 03:04:05' as naive, '\x00ab"'::BLOB as b,
       INTERVAL '1 day 2 hours 3 minutes 4.5 seconds' as iv, INTERVAL '-14 months' as back,
       INTERVAL '0 seconds' as zero, INTERVAL '-1 day 30 hours -0.25 seconds' as mixed,
       'nan'::DOUBLE as x_nan, 'inf'::DOUBLE as x_inf, '-inf'::DOUBLE as x_ninf, 'nan'::FLOAT as x_nan32,
       [1.5, 'nan'::DOUBLE, 'inf'::DOUBLE, NULL] as l,
       {'x': 'nan'::DOUBLE, 'b': '\xAA'::BLOB, 'iv': INTERVAL '90 seconds', 'dec': 2.25::DECIMAL(5,2)} as st,
       MAP {'k': 'nan'::DOUBLE, 'j': 2.0} as m, [[TIMESTAMP '2026-01-01 03:04:05.25']] as nested_t,
       ['\x01'::BLOB] as blobs, [INTERVAL '1 month'] as ivs, [1, 2]::INTEGER[2] as arr
"""

STRICT_JSON = {
    "dec": "1.50", "huge": "170141183460469231731687303715884105727",
    "id": "6c3d5961-00c9-4a30-bc57-7048dd1afbe1", "d": "2026-01-02", "t": "01:02:03.500000",
    "naive": "2026-01-01 03:04:05", "b": "AGFiIg==", "iv": "P1DT2H3M4.5S", "back": "P-1Y-2M",
    "zero": "PT0S", "mixed": "P-1DT29H59M59.75S", "x_nan": None, "x_inf": None, "x_ninf": None,
    "x_nan32": None, "l": [1.5, None, None, None],
    "st": {"x": None, "b": "qg==", "iv": "PT1M30S", "dec": "2.25"},
    "m": {"k": None, "j": 2.0}, "nested_t": [["2026-01-01 03:04:05.250000"]], "blobs": ["AQ=="],
    "ivs": ["P1M"], "arr": [1, 2],
}

PYTHON_REPRS = re.compile(r"(?<![\w\"])b['\"]|datetime\.|Decimal\(|MonthDayNano|timedelta|\bnan\b|NaN|Infinity")


def test_json_is_strict_json_for_every_duckdb_type(capture):
    """No ``NaN`` / ``Infinity`` anywhere (top level, lists, structs, maps): null instead."""
    text = query(capture, STRICT, "json")
    assert PYTHON_REPRS.search(text) is None, text
    assert strict_json(text) == [STRICT_JSON]


def test_csv_has_no_python_repr_for_any_duckdb_type(capture):
    """Blobs in base64, intervals as ISO 8601 durations, nested values as their (strict) JSON."""
    text = query(capture, STRICT, "csv")
    header, row = list(csv.reader(io.StringIO(text, newline="")))
    cells = dict(zip(header, row, strict=True))
    assert PYTHON_REPRS.search(re.sub(r"(?<=,)-?(nan|inf)(?=,)", "", text)) is None, text
    assert base64.b64decode(cells.pop("b")) == b'\x00ab"'
    assert cells.pop("x_nan") == "nan" and cells.pop("x_inf") == "inf" and cells.pop("x_ninf") == "-inf"
    assert cells.pop("x_nan32") == "nan" and cells.pop("naive") == "2026-01-01T03:04:05"
    nested = {k: strict_json(cells.pop(k)) for k in ("l", "st", "m", "nested_t", "blobs", "ivs", "arr")}
    assert nested == {k: STRICT_JSON[k] for k in nested}
    assert cells == {k: STRICT_JSON[k] for k in cells}


def test_the_library_writes_the_same_strict_text():
    import duckdb

    from captureq.output import write_csv, write_json

    table = duckdb.connect().sql(STRICT).to_arrow_table()
    out = io.BytesIO()
    write_json(table, out)
    assert strict_json(out.getvalue().decode()) == [STRICT_JSON]
    out = io.BytesIO()
    write_csv(table, out)
    assert PYTHON_REPRS.search(re.sub(r"(?<=,)-?(nan|inf)(?=,)", "", out.getvalue().decode())) is None


ISO = re.compile(r"P(?:(-?\d+)Y)?(?:(-?\d+)M)?(?:(-?\d+)D)?"
                 r"(?:T(?:(-?\d+)H)?(?:(-?\d+)M)?(?:(-?)(\d+)(?:\.(\d{1,9}))?S)?)?")


def parse_iso_duration(text: str) -> tuple[int, int, int]:
    """(months, days, nanoseconds) of an ISO 8601 duration with signed fields."""
    m = ISO.fullmatch(text)
    assert m and text not in ("P", "PT") and not text.endswith("T"), text
    y, mo, d, h, mi, sign, s, frac = m.groups()
    seconds = int(s or 0) * 10**9 + int((frac or "").ljust(9, "0"))
    return (int(y or 0) * 12 + int(mo or 0), int(d or 0),
            int(h or 0) * 3_600 * 10**9 + int(mi or 0) * 60 * 10**9 + (-seconds if sign else seconds))


INT32 = st.integers(-(2**31), 2**31 - 1)


@pytest.mark.slow
@settings(max_examples=80, deadline=None)
@given(values=st.lists(st.none() | st.tuples(INT32, INT32, st.integers(-(2**63), 2**63 - 1)),
                       min_size=1, max_size=20),
       micros=st.lists(st.none() | st.integers(-(10**17), 10**17), min_size=1, max_size=20))
def test_intervals_and_durations_round_trip_through_iso_8601(values, micros):
    intervals = pa.array([None if v is None else pa.MonthDayNano(list(v)) for v in values],
                         pa.month_day_nano_interval())
    durations = pa.array(micros, pa.duration("us"))
    table = pa.table({"iv": intervals, "lst": pa.array([None if v is None else [v] for v in values],
                                                     pa.list_(pa.month_day_nano_interval()))})
    rows = list(csv.reader(io.StringIO(csv_text(table), newline="")))[1:]
    doc = strict_json(json_text(table))
    for v, (cell, _), obj in zip(values, rows, doc):
        assert (cell == "" if v is None else parse_iso_duration(cell) == v)
        assert obj["iv"] == (None if v is None else iso_duration(*v))
        if v is not None:  # nested, DuckDB keeps microseconds
            assert parse_iso_duration(obj["lst"][0]) == (v[0], v[1], (abs(v[2]) // 1000 * 1000) * (1 if v[2] >= 0 else -1))
    one = pa.table({"dur": durations})
    cells = [r[0] for r in csv.reader(io.StringIO(csv_text(one), newline=""))][1:]
    assert cells == ["" if v is None else iso_duration(0, 0, v * 1000) for v in micros]
    assert [parse_iso_duration(c)[2] // 1000 for c in cells if c] == [v for v in micros if v is not None]
    nanos = pa.table({"dur": pa.array([-1_500, 1, -(2**63)], pa.duration("ns"))})
    assert csv_text(nanos) == "dur\nPT-0.0000015S\nPT0.000000001S\nPT-2562047H-47M-16.854775808S\n"


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(blobs=st.lists(st.none() | st.binary(max_size=40), min_size=1, max_size=20),
       floats=st.lists(st.none() | st.lists(st.none() | st.floats(), max_size=5), min_size=1, max_size=20))
def test_blobs_and_nested_floats_round_trip(blobs, floats):
    n = min(len(blobs), len(floats))
    table = pa.table({"b": pa.array(blobs[:n], pa.binary()),
                      "xs": pa.array(floats[:n], pa.list_(pa.float64()))})
    rows = list(csv.reader(io.StringIO(csv_text(table), newline="")))[1:]
    # an empty blob is an empty cell, as a null is (and as an empty string is)
    assert [base64.b64decode(b, validate=True) for b, _ in rows] == [b or b"" for b in blobs[:n]]
    assert same_csv(csv_text(table), table)
    assert same_json(strict_json(json_text(table)), reference_json(table))


def test_nanosecond_timestamps_keep_their_nanoseconds():
    """``TIMESTAMP_NS`` as pandas' ``isoformat`` prints it: nine decimals when the nanoseconds
    are not zero, six when only the microseconds are not."""
    ns = [1_700_000_000_123_456_789, 1_700_000_000_123_456_000, 1_700_000_000_000_000_000,
          -1, None]
    table = pa.table({"utc": pa.array(ns, pa.timestamp("ns", "UTC")),
                      "naive": pa.array(ns, pa.timestamp("ns")),
                      "paris": pa.array(ns, pa.timestamp("ns", "Europe/Paris"))})
    assert csv_text(table) == (
        "utc,naive,paris\n"
        "2023-11-14T22:13:20.123456789+00:00,2023-11-14T22:13:20.123456789,"
        "2023-11-14T23:13:20.123456789+01:00\n"
        "2023-11-14T22:13:20.123456+00:00,2023-11-14T22:13:20.123456,2023-11-14T23:13:20.123456+01:00\n"
        "2023-11-14T22:13:20+00:00,2023-11-14T22:13:20,2023-11-14T23:13:20+01:00\n"
        "1969-12-31T23:59:59.999999999+00:00,1969-12-31T23:59:59.999999999,"
        "1970-01-01T00:59:59.999999999+01:00\n"
        ",,\n")
    doc = strict_json(json_text(table))
    assert [r["utc"] for r in doc] == ["2023-11-14 22:13:20.123456789+00:00",
                                       "2023-11-14 22:13:20.123456+00:00", "2023-11-14 22:13:20+00:00",
                                       "1969-12-31 23:59:59.999999999+00:00", None]


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_a_union_is_an_object_of_its_member(mode):
    """As DuckDB's ``to_json`` writes a UNION, its doubles made strict too."""
    types = pa.array([0, 1, 0, 0], pa.int8())
    if mode == "sparse":
        union = pa.UnionArray.from_sparse(
            types, [pa.array([float("nan"), 0.0, 2.5, None]), pa.array(["x", "a,b", "y", "z"])],
            ["x", "s"])
    else:
        union = pa.UnionArray.from_dense(
            types, pa.array([0, 0, 1, 2], pa.int32()),
            [pa.array([float("inf"), 2.5, None]), pa.array(["a,b"])], ["x", "s"])
    table = pa.table({"u": union, "in_list": pa.array([[1.0], None, [float("nan")], []])})
    doc = strict_json(json_text(table))
    # a null member: a null union (DuckDB's UNION)
    assert [r["u"] for r in doc] == [{"x": None}, {"s": "a,b"}, {"x": 2.5}, None]
    rows = list(csv.reader(io.StringIO(csv_text(table), newline="")))
    assert [strict_json(r[0]) if r[0] else None for r in rows[1:]] == [r["u"] for r in doc]


def test_infinite_dates_and_timestamps_are_named(capture):
    sql = ("select 'infinity'::TIMESTAMP as ts, '-infinity'::TIMESTAMPTZ as tz, "
           "'infinity'::DATE as d, [TIMESTAMP 'infinity'] as l")
    assert query(capture, sql, "csv") == 'ts,tz,d,l\ninfinity,-infinity,infinity,"[""infinity""]"\n'
    assert strict_json(query(capture, sql, "json")) == [
        {"ts": "infinity", "tz": "-infinity", "d": "infinity", "l": ["infinity"]}]
