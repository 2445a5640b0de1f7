"""The benchmark harness runs end to end on a tiny tree, and its contenders agree with captureq."""

from __future__ import annotations

import polars as pl
import pytest

from benchmarks import harness
from benchmarks.common import COLUMNS, checksums, compare

pytestmark = pytest.mark.slow  # runs the benchmark harness end to end


def test_every_contender_returns_captureq_s_table(tmp_path):
    args = harness.parse_args(["--records", "2000", "--repeats", "1", "--hours", "4", "--files-per-hour", "2",
                               "--no-extras", "--in-process", "--data", str(tmp_path), "--no-write"])
    results, _ = harness.run(args)
    agreement = harness.agreement(results)
    assert set(agreement) == {"CSV", "JSON", "BASE64"}
    for encoding, rows in agreement.items():
        assert rows == {
            "captureq": True,
            "DuckDB SQL alone": True,
            "Polars alone": True,
            "json.loads per line + split": True,
            "floor: read bytes only": None,  # does not produce the table, so it is not checked
            "floor: pyarrow.json parse, no decode": True,  # row count only
        }, encoding
    text = harness.render(args, results, None, 1.0)
    assert "| captureq | " in text and "## Targets" in text


def test_a_contender_with_one_wrong_value_does_not_agree():
    df = pl.DataFrame({name: [1.0, 2.0] for name in COLUMNS[4:]}).with_columns(
        endpoint=pl.lit("e"), variant=pl.lit("v"), event_id=pl.Series(["a", "b"]),
        inference_time=pl.Series([0, 1]).cast(pl.Datetime("us", "UTC")),
    ).select(COLUMNS)
    good = checksums(df)
    assert compare(good, checksums(df.reverse())) == []  # order does not matter
    wrong = df.with_columns(f3=pl.Series([1.0, 2.5]))
    assert compare(good, checksums(wrong)) == ["f3: sum 3.0 expected, got 3.5"]
    renamed = df.with_columns(event_id=pl.Series(["a", "c"]))
    assert any(p.startswith("event_id") for p in compare(good, checksums(renamed)))


def test_engine_extras_run_and_agree(tmp_path):
    """count(*) before/after the plan, the warm path and the whole-process CLI contenders."""
    args = harness.parse_args(["--records", "1000", "--repeats", "1", "--hours", "2", "--files-per-hour", "2",
                               "--encodings", "CSV", "--contenders", "duckdb,pyarrow-parser", "--engine-only", "--in-process",
                               "--data", str(tmp_path), "--no-write"])
    results, extras = harness.run(args)
    assert all(r.agrees for r in extras["count"].values())
    assert all(r.agrees for r in extras["warm"].values() if r.agrees is not None)
    assert {n: r.agrees for n, r in extras["cli"].items()} == dict.fromkeys(extras["cli"], True)
    assert {r.name: r.agrees for r in results[0]["rows"]}[harness.PYARROW_PARSER] is True  # the old outer parser
    assert f"captureq query --no-cache, {harness.PYARROW_PARSER}" in extras["cli"]
    text = harness.render(args, results, extras, 1.0)
    assert "whole process" in text and "count(*)" in text and "warm" in text
    # scratch (caches, CSV output) goes to a temporary folder, not into --data
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("csv-")) == []
