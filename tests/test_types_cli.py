"""Types from the command line: declared types on every reading command, `captureq schema`, and
each endpoint's own typed views in the duckdb shell (README, "Types")."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from datetime import timedelta

import pyarrow.parquet as pq
import pytest
from trees import T0, capture, write_captures
from typer.testing import CliRunner

import captureq
from captureq.cli import app, duckdb_cli

runner = CliRunner()
HOUR0 = T0.replace(minute=0, second=0)


def hour(h: int) -> str:
    return (HOUR0 + timedelta(hours=h)).isoformat()


def write_hour(root, hour: int, rows: list[str], endpoint: str = "t", input_type: str = "text/csv"):
    when = HOUR0 + timedelta(hours=hour)
    caps = [capture(r, "0.5", event_id=f"{endpoint}-{hour}-{i}", when=when + timedelta(seconds=i),
                    input_type=input_type)
            for i, r in enumerate(rows)]
    write_captures(root, caps, endpoint=endpoint, when=when)


@pytest.fixture
def zips(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPTUREQ_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "cap"
    write_hour(root, 0, ["007,1", "123,2", "0042,3"])
    return root


def test_query_with_a_declared_type_keeps_the_text_as_written(zips):
    q = "select _c0 from inputs order by _c0"
    inferred = runner.invoke(app, ["query", str(zips), q, "-f", "json", "--no-cache"])
    assert [r["_c0"] for r in json.loads(inferred.stdout)] == [7, 42, 123]
    declared = runner.invoke(app, ["query", str(zips), q, "-f", "json", "--input-type", "_c0=VARCHAR"])
    assert declared.exit_code == 0, declared.output
    assert [r["_c0"] for r in json.loads(declared.stdout)] == ["0042", "007", "123"]


def test_output_types_are_declared_the_same_way(zips):
    q = "select typeof(_c0) as t from outputs limit 1"
    result = runner.invoke(app, ["query", str(zips), q, "-f", "json", "--output-type", "_c0=VARCHAR"])
    assert json.loads(result.stdout) == [{"t": "VARCHAR"}]


def test_export_and_the_shell_script_honour_declared_types(zips, tmp_path):
    out = tmp_path / "pq"
    result = runner.invoke(app, ["export", str(zips), str(out), "--input-type", "_c0=VARCHAR", "-q"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out / "inputs")
    assert sorted(table.column("_c0").to_pylist()) == ["0042", "007", "123"]
    script = runner.invoke(app, ["sql", str(zips), "--cache", str(tmp_path / "c"), "--input-type", "_c0=VARCHAR"])
    assert script.exit_code == 0, script.output
    import duckdb

    con = duckdb.connect()
    con.execute(script.stdout)
    assert sorted(r[0] for r in con.sql("select _c0 from inputs").fetchall()) == ["0042", "007", "123"]


def test_a_bad_type_declaration_names_the_option(zips):
    result = runner.invoke(app, ["query", str(zips), "select 1", "--input-type", "_c0=ZIPCODE"])
    assert result.exit_code == 2
    assert "ZIPCODE" in result.output and "VARCHAR" in result.output
    result = runner.invoke(app, ["query", str(zips), "select 1", "--input-type", "_c0"])
    assert result.exit_code == 2
    assert "--input-type" in result.output and "COLUMN=TYPE" in result.output


@pytest.fixture
def evolving(tmp_path, monkeypatch):
    """Endpoint t: _c0 integers in hour 0, fractions from hour 1, words from hour 2; _c1 empty
    until hour 1. Endpoint j: JSON with a nested key."""
    monkeypatch.setenv("CAPTUREQ_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "cap"
    write_hour(root, 0, ["1,", "2,"])
    write_hour(root, 1, ["2.5,7", "3,8"])
    write_hour(root, 2, ["gold,9"])
    write_hour(root, 1, ['{"user": {"age": 20}, "user.age": 999}'], endpoint="j", input_type="application/json")
    return root


def test_schema_prints_each_endpoints_columns_and_when_they_widened(evolving):
    result = runner.invoke(app, ["schema", str(evolving), "-f", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    cols = {(c["endpoint"], c["side"], c["column"]): c for c in doc}
    c0 = cols[("t", "input", "_c0")]
    assert c0["type"] == "VARCHAR" and not c0["declared"]
    assert [(h["hour"], h["change"], h.get("from"), h["to"]) for h in c0["history"]] == [
        (hour(0), "added", None, "BIGINT"),
        (hour(1), "widened", "BIGINT", "DOUBLE"),
        (hour(2), "widened", "DOUBLE", "VARCHAR"),
    ]
    c1 = cols[("t", "input", "_c1")]
    assert c1["type"] == "BIGINT" and c1["first_seen"] == hour(1)
    # JSON columns show the key path they hold: a nested key and a literal dotted key differ
    nested = cols[("j", "input", "user.age")]
    literal = [c for (e, s, n), c in cols.items() if e == "j" and c["key_path"] == ["user.age"]]
    assert nested["key_path"] == ["user", "age"] and len(literal) == 1
    assert literal[0]["column"] != "user.age"
    # the types the schema states are the types the views have
    con = captureq.open(str(evolving), cache=False)
    assert con.sql('select typeof(_c0) as t from "t".inputs limit 1').to_pylist() == [{"t": "VARCHAR"}]


def test_schema_of_a_window_and_with_declared_types(evolving):
    result = runner.invoke(app, ["schema", str(evolving), "-f", "json", "--end", hour(2),
                                 "--input-type", "_c1=VARCHAR", "--endpoint", "t"])
    assert result.exit_code == 0, result.output
    cols = {(c["side"], c["column"]): c for c in json.loads(result.stdout)}
    assert cols[("input", "_c0")]["type"] == "DOUBLE"
    assert cols[("input", "_c1")]["type"] == "VARCHAR" and cols[("input", "_c1")]["declared"]
    table = runner.invoke(app, ["schema", str(evolving)])
    assert table.exit_code == 0, table.output
    assert "widened" in table.output and "_c0" in table.output


def test_the_shell_has_each_endpoints_typed_views(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPTUREQ_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "cap"
    write_hour(root, 0, ["1,2", "3,4"], endpoint="num")
    write_hour(root, 0, ["a,b"], endpoint="txt")
    exe = duckdb_cli()
    assert exe, "the duckdb CLI is installed by `make install` (duckdb-cli)"
    script = runner.invoke(app, ["sql", str(root), "--cache", str(tmp_path / "c")])
    assert script.exit_code == 0, script.output
    q = 'select avg(_c1) as a, any_value(typeof(_c0)) as t from "num".inputs;'
    out = subprocess.run([exe, "-csv"], input=script.stdout + q, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert rows == [{"a": "3.0", "t": "BIGINT"}]
    expected = captureq.open(str(root), cache=False).sql(q.rstrip(";")).to_pylist()
    assert expected == [{"a": 3.0, "t": "BIGINT"}]


def test_monitoring_commands_take_declared_types_too(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPTUREQ_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "cap"
    write_hour(root, 0, ["1,x", "2,3", "3,4", "4,5"])

    def completeness(folder):
        doc = json.loads((folder / "constraints.json").read_text())
        return {f["name"]: f["completeness"] for f in doc["features"]}

    plain = runner.invoke(app, ["baseline", str(root), str(tmp_path / "plain"), "-q"])
    assert plain.exit_code == 0, plain.output
    assert completeness(tmp_path / "plain")["_c1"] == 1.0
    declared = runner.invoke(app, ["baseline", str(root), str(tmp_path / "b"), "--input-type", "_c1=BIGINT", "-q"])
    assert declared.exit_code == 0, declared.output
    assert completeness(tmp_path / "b")["_c1"] == 0.75  # "x" is not a BIGINT: null, and quarantined
    for command in ("monitor", "report", "quality", "estimate", "attribution monitor", "bias monitor"):
        help_text = runner.invoke(app, [*command.split(), "--help"]).output
        assert "--input-type" in help_text and "--output-type" in help_text, command
    checked = runner.invoke(app, ["monitor", str(root), "--baseline", str(tmp_path / "b"),
                                  "--input-type", "_c1=BIGINT", "--no-hourly", "-f", "json"])
    assert checked.exit_code == 0, checked.output
    metrics = {(m["metric_name"], m["statistic"]): m["value"] for m in json.loads(checked.stdout)}
    assert metrics[("feature_non_null__c1", "Value")] == 0.75
