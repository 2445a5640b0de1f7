"""The captureq command, through typer's runner, and the real duckdb shell."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from captureq.cli import app, duckdb_cli
from captureq.generate import generate_tree

runner = CliRunner()


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("cli")
    summary = generate_tree(str(base / "capture"), labels_out=str(base / "labels"), hours=4, requests_per_hour=15)
    return base / "capture", base / "labels", summary


def test_scan_reports_counts_that_reconcile(tree):
    capture, labels, summary = tree
    result = runner.invoke(app, ["scan", str(capture), "--labels", str(labels)])
    assert result.exit_code == 0, result.output
    assert f"{summary.captures:,} read = {summary.captures:,} captures + 0 quarantined" in result.output
    assert "churn-xgb" in result.output and "Canary" in result.output


def test_query_csv_has_a_header_and_the_right_numbers(tree):
    capture, _, summary = tree
    result = runner.invoke(app, ["query", str(capture), "select endpoint, count(*) as n from captures "
                                 "group by 1 order by 1", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["endpoint"]: int(r["n"]) for r in rows} == {e: s.captures for e, s in summary.endpoints.items()}


def test_query_time_window_is_utc_and_end_exclusive(tree):
    capture, _, summary = tree
    result = runner.invoke(app, ["query", str(capture), "select count(*) as n from captures", "--format", "json",
                                 "--start", "2026-01-01T01:00Z", "--end", "2026-01-01T03:00Z"])
    assert result.exit_code == 0, result.output
    hours = [h for h in summary.captures_per_hour if h.hour in (1, 2) and h.day == 1]
    assert json.loads(result.stdout)[0]["n"] == sum(summary.captures_per_hour[h] for h in hours)


def test_query_endpoint_filter(tree):
    capture, _, summary = tree
    result = runner.invoke(app, ["query", str(capture), "select count(*) as n from captures", "-f", "json",
                                 "--endpoint", "fraud-*"])
    assert json.loads(result.stdout)[0]["n"] == summary.endpoints["fraud-json"].captures


def test_bad_sql_is_an_error_message_not_a_traceback(tree):
    capture, _, _ = tree
    result = runner.invoke(app, ["query", str(capture), "select nope from captures"])
    assert result.exit_code == 2
    assert "nope" in result.output and "Traceback" not in result.output


def test_missing_tree_says_what_is_wrong(tmp_path):
    result = runner.invoke(app, ["scan", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_export_then_rerun(tree, tmp_path):
    capture, labels, summary = tree
    first = runner.invoke(app, ["export", str(capture), str(tmp_path / "pq"), "--labels", str(labels)])
    assert first.exit_code == 0, first.output
    assert f"captures {summary.captures:,}" in first.output
    again = runner.invoke(app, ["export", str(capture), str(tmp_path / "pq"), "--labels", str(labels)])
    assert "exported 0 new files" in again.output


def test_sql_output_defines_views_for_the_real_duckdb_cli(tree, tmp_path):
    """`captureq sql URI > views.sql; duckdb -init views.sql` answers like the Python API."""
    capture, labels, summary = tree
    exe = duckdb_cli()
    assert exe, "the duckdb CLI is installed by `make install` (duckdb-cli)"
    result = runner.invoke(app, ["sql", str(capture), "--labels", str(labels), "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    init = tmp_path / "views.sql"
    init.write_text(result.stdout)
    q = ("select count(*) as captures, (select count(*) from predictions where ground_truth is not null) "
         "as labelled from captures;")
    out = subprocess.run([exe, "-init", str(init), "-csv", "-c", q], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout.split("\n", 1)[1] if out.stdout.startswith("--") else out.stdout)))
    import captureq

    expected = captureq.open(str(capture), labels=str(labels)).sql(
        "select count(*) as n from predictions where ground_truth is not null").to_pylist()[0]["n"]
    assert int(rows[0]["captures"]) == summary.captures
    assert int(rows[0]["labelled"]) == expected
    # piping the script into the shell works as well
    piped = subprocess.run([exe, "-csv"], input=result.stdout + q, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    assert str(summary.captures) in piped.stdout
