"""Mistakes in baselining are errors that say what was read and which option fixes them."""

from __future__ import annotations

import json
import warnings
from datetime import datetime, timezone

import pyarrow as pa
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from captureq.cli import app
from captureq.errors import ConfigError
from captureq.generate import default_endpoints, generate_tree
from captureq.monitor import Baseline, baseline, monitor
from captureq.monitor.baseline import read_table

try:
    from captureq.monitor.baseline import HeaderWarning
except ImportError:  # before the fix
    HeaderWarning = UserWarning

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
runner = CliRunner()


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    root = tmp_path_factory.mktemp("checks")
    generate_tree(str(root / "capture"), endpoints=[default_endpoints()[0]], hours=3,
                  requests_per_hour=20, start=START)
    return root / "capture"


# -- empty or feature-less baseline input ---------------------------------------------------
def test_an_empty_folder_is_not_a_baseline(tmp_path):
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, ["baseline", str(tmp_path / "empty"), str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    assert "0 files" in r.output and "0 rows" in r.output
    assert not (tmp_path / "out").exists()


def test_a_csv_with_a_header_only_is_not_a_baseline(tmp_path):
    (tmp_path / "t.csv").write_text("age,income\n")
    with pytest.raises(ConfigError, match=r"1 file, 0 rows, 2 columns"):
        baseline(str(tmp_path / "t.csv"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_table_without_feature_columns_is_not_a_baseline(tmp_path):
    t = pa.table({"inference_time": pa.array([START], pa.timestamp("us", "UTC"))})
    with pytest.raises(ConfigError, match="no feature columns"):
        baseline(t, tmp_path / "out")


def test_an_export_of_an_empty_window_is_not_a_baseline(tmp_path, capture):
    exported = tmp_path / "parquet"
    assert runner.invoke(app, ["export", str(capture), str(exported)]).exit_code == 0
    r = runner.invoke(app, ["baseline", str(exported), str(tmp_path / "out"), "--end", "2000-01-01"])
    assert r.exit_code == 2, r.output
    assert "0 rows" in r.output and "TRAINING_DATA" in r.output
    assert not (tmp_path / "out").exists()


# -- monitor checks the baseline before it writes ----------------------------------------------
def _featureless(folder):
    folder.mkdir()
    (folder / "statistics.json").write_text(json.dumps({"version": 0.0, "features": []}))
    (folder / "constraints.json").write_text(json.dumps({"version": 0.0, "features": []}))
    return folder


@pytest.mark.parametrize("command", ["monitor", "report"])
def test_monitor_refuses_a_featureless_baseline_before_writing(tmp_path, capture, command):
    base = _featureless(tmp_path / "base")
    out = ["--out", str(tmp_path / "mon")] if command == "monitor" else ["-o", str(tmp_path / "mon")]
    r = runner.invoke(app, [command, str(capture), "--baseline", str(base), *out])
    assert r.exit_code == 2, r.output
    assert "internal error" not in r.output
    assert "no features" in r.output and "--baseline" in r.output
    assert not (tmp_path / "mon").exists()


def test_monitor_refuses_a_featureless_baseline_object(tmp_path, capture):
    empty = Baseline({"version": 0.0, "features": []}, {"version": 0.0, "features": []})
    with pytest.raises(ConfigError, match="no features"):
        monitor(str(capture), empty, tmp_path / "mon")
    assert not (tmp_path / "mon").exists()


def test_first_drift_of_a_run_without_hours_has_its_columns():
    from captureq.monitor.check import DRIFT_SCHEMA, VIOLATION_SCHEMA, MonitorResult

    r = MonitorResult({}, {"violations": []}, VIOLATION_SCHEMA.empty_table(),
                      DRIFT_SCHEMA.empty_table())
    assert {"feature", "first_drift_hour", "drifted_hours", "hours"} <= set(
        r.first_drift().column_names)


# -- paths ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["*.csv", "train-[12].csv", "data/?.parquet"])
def test_a_glob_training_file_is_named_with_its_option(tmp_path, name):
    r = runner.invoke(app, ["baseline", str(tmp_path / name), str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    assert "Errno" not in r.output and "expand=True" not in r.output
    assert "TRAINING_DATA" in r.output and name in r.output


def test_a_missing_training_file_is_named_with_its_option(tmp_path):
    with pytest.raises(ConfigError, match=r"TRAINING_DATA .*nope\.csv does not exist"):
        baseline(str(tmp_path / "nope.csv"))


def test_a_missing_baseline_folder_names_the_option(tmp_path, capture):
    r = runner.invoke(app, ["monitor", str(capture), "--baseline", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "--baseline" in r.output, r.output


# -- the CSV header ---------------------------------------------------------------------------
def test_a_headerless_csv_keeps_its_first_row(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("59,71.49,US,0\n60,72.1,DE,1\n61,3.2,US,0\n")
    t = read_table(str(p))
    assert t.column_names == ["_c0", "_c1", "_c2", "_c3"]
    assert t.num_rows == 3 and t["_c0"].to_pylist()[0] == "59"


def test_a_csv_header_over_numbers_is_a_header(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("age,income,country,churn\n59,71.49,US,0\n60,72.1,DE,1\n")
    t = read_table(str(p))
    assert t.column_names == ["age", "income", "country", "churn"] and t.num_rows == 2


def test_an_all_text_csv_is_read_with_a_header_and_a_warning(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("country,plan\nUS,gold\nDE,basic\n")
    with pytest.warns(HeaderWarning, match="--header"):
        t = read_table(str(p))
    assert t.column_names == ["country", "plan"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_table(str(p), header=False).num_rows == 3
        assert read_table(str(p), header=True).num_rows == 2


def test_the_header_options_are_said_explicitly(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("1,2\n3,4\n")
    r = runner.invoke(app, ["baseline", str(p), str(tmp_path / "a"), "--header", "-f", "csv"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[1].startswith("1,")
    r = runner.invoke(app, ["baseline", str(p), str(tmp_path / "b"), "--no-header", "-f", "csv"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[1].startswith("_c0,")


def test_the_cli_prints_the_header_warning(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("country,plan\nUS,gold\nDE,basic\n")
    r = runner.invoke(app, ["baseline", str(p), str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "warning" in r.output and "--no-header" in r.output


_number = st.one_of(st.integers(-10**6, 10**6).map(str),
                    st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: f"{x:.3f}"))
_word = st.from_regex(r"[A-Za-z][A-Za-z_]{0,8}", fullmatch=True).filter(
    lambda w: w.lower() not in ("nan", "inf", "infinity"))  # those are numbers


@settings(max_examples=40, deadline=None)
@given(
    kinds=st.lists(st.booleans(), min_size=1, max_size=6).filter(any),  # True: numeric column
    rows=st.integers(1, 5),
    with_header=st.booleans(),
    data=st.data(),
)
def test_the_header_is_found_whenever_a_numeric_column_tells(tmp_path_factory, kinds, rows,
                                                             with_header, data):
    """With a numeric column, the first row's typing decides: a header is found, a headerless
    file keeps every row."""
    assume(with_header or rows >= 2)  # one row of text and numbers could be either
    body = [[data.draw(_number if k else _word) for k in kinds] for _ in range(rows)]
    names = [f"f{i}" for i in range(len(kinds))]
    lines = ([names] if with_header else []) + body
    p = tmp_path_factory.mktemp("h") / "t.csv"
    p.write_text("\n".join(",".join(r) for r in lines) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", HeaderWarning)
        t = read_table(str(p))
    assert t.num_rows == rows
    assert t.column_names == (names if with_header else [f"_c{i}" for i in range(len(kinds))])


# -- labels -----------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["export", "scan", "quality", "sql"])
def test_a_missing_labels_folder_fails_before_work_starts(tmp_path, capture, command):
    args = {
        "export": ["export", str(capture), str(tmp_path / "out")],
        "scan": ["scan", str(capture)],
        "quality": ["quality", str(capture)],
        "sql": ["sql", str(capture), "--cache", str(tmp_path / "out")],
    }[command]
    r = runner.invoke(app, [*args, "--labels", str(tmp_path / "no-labels")])
    assert r.exit_code == 2, r.output
    assert "--labels" in r.output and "no-labels" in r.output
    assert not (tmp_path / "out").exists()


def test_export_checks_the_labels_before_committing_captures(tmp_path, capture):
    import captureq

    tree = captureq.open(str(capture), labels=str(tmp_path / "no-labels"))
    with pytest.raises(Exception, match="labels"):
        tree.export(str(tmp_path / "out"))
    assert not list((tmp_path / "out").glob("captures/**/*.parquet"))
