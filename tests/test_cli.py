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


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (select * from captures) TO '{out}'",
        "select * from read_text('/etc/hostname')",
        "select * from read_csv('/etc/passwd')",
        "ATTACH '{out}' AS x",
        "SET enable_external_access = true",
    ],
    ids=["copy-to", "read_text", "read_csv", "attach", "unlock"],
)
def test_query_sql_cannot_touch_files_unless_asked(tree, tmp_path, sql):
    capture, _, _ = tree
    out = tmp_path / "leak.csv"
    result = runner.invoke(app, ["query", str(capture), sql.format(out=out)])
    assert result.exit_code == 2, result.output
    assert "--allow-external-access" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_query_with_allow_external_access_can_copy_and_read_files(tree, tmp_path):
    capture, _, summary = tree
    out = tmp_path / "captures.csv"
    result = runner.invoke(app, ["query", str(capture), f"COPY (select event_id from captures) TO '{out}'",
                                 "--allow-external-access"])
    assert result.exit_code == 0, result.output
    assert out.read_text().count("\n") == summary.captures + 1  # header
    result = runner.invoke(app, ["query", str(capture), f"select count(*) as n from read_csv('{out}')",
                                 "--allow-external-access", "-f", "json"])
    assert json.loads(result.stdout)[0]["n"] == summary.captures


def test_python_sql_is_locked_down_by_default_and_views_still_work(tree, tmp_path):
    import captureq
    from captureq.errors import QueryError

    capture, labels, summary = tree
    cq = captureq.open(str(capture), labels=str(labels))
    for view in ("captures", "inputs", "outputs", "labels", "quarantine", "predictions"):
        cq.sql(f"select count(*) from {view}")  # every view of sql/*.sql works locked down
    assert cq.sql("select count(*) as n from captures").to_pylist() == [{"n": summary.captures}]
    with pytest.raises(QueryError, match="allow_external_access=True"):
        cq.sql(f"COPY (select 1) TO '{tmp_path / 'x.csv'}'")
    assert not (tmp_path / "x.csv").exists()
    cq.sql(f"COPY (select 1 as a) TO '{tmp_path / 'x.csv'}'", allow_external_access=True)
    assert (tmp_path / "x.csv").read_text() == "a\n1\n"
