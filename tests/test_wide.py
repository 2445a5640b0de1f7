"""Absurdly wide payloads are refused before anything wide is built.

A record with more columns than ``DecodeOptions.max_columns`` (default 10,000, or
``CAPTUREQ_MAX_COLUMNS``) becomes one ``input``/``output`` quarantine row saying so; the capture
row is kept and the cost stays linear in the payload's size. Peak memory is measured in a
subprocess with ``resource.getrusage``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
from trees import capture, write_captures

import captureq
from captureq.decode import DecodeOptions


def _csv_row(n: int) -> str:
    return ",".join(["0.5"] * n)


def _json_list(n: int) -> str:
    return "[" + ",".join(["0.5"] * n) + "]"


def _scan_in_subprocess(root, extra_env=None) -> dict:
    code = textwrap.dedent(
        """
        import json, resource, sys, time
        import captureq
        t = time.monotonic()
        tables = captureq.open(sys.argv[1]).load()
        q = tables.quarantine.to_pylist()
        print(json.dumps({
            "seconds": time.monotonic() - t,
            "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "captures": tables.captures.num_rows,
            "inputs": tables.inputs.num_rows,
            "input_columns": tables.inputs.num_columns,
            "quarantine": [(r["stage"], r["reason"]) for r in q],
            "reconciles": tables.counts.reconciles,
        }))
        """
    )
    # Linux carries a process's peak RSS across fork/vfork + exec, so a child of this (large)
    # pytest process would report pytest's peak: start the measured process from a small one.
    launcher = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"
    env = {**os.environ, **(extra_env or {})}
    out = subprocess.run([sys.executable, "-c", launcher, sys.executable, "-c", code, str(root)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "payload,ctype",
    [(_csv_row(3_000_000), "text/csv"), (_json_list(3_000_000), "application/json")],
    ids=["csv", "json"],
)
def test_three_million_values_are_quarantined_in_seconds_within_a_gib(tmp_path, payload, ctype):
    write_captures(tmp_path, [capture(payload, "0.5", input_type=ctype), capture("1,2", "0.5")])
    r = _scan_in_subprocess(tmp_path)
    assert r["captures"] == 2 and r["reconciles"]
    assert r["inputs"] == 1  # the narrow capture decodes; the wide one is refused
    reasons = [reason for stage, reason in r["quarantine"] if stage == "input"]
    assert len(reasons) == 1
    assert "3000000 columns" in reasons[0] and "10000" in reasons[0]
    assert "CAPTUREQ_MAX_COLUMNS" in reasons[0]
    assert r["seconds"] < 20, r
    assert r["rss_kib"] < 1024 * 1024, r


@pytest.mark.parametrize("ctype,make", [("text/csv", _csv_row), ("application/json", _json_list)],
                         ids=["csv", "json"])
def test_9999_columns_decode_and_10001_are_refused(tmp_path, ctype, make):
    write_captures(tmp_path, [capture(make(9_999), "0.5", input_type=ctype, event_id="a"),
                              capture(make(10_001), "0.5", input_type=ctype, event_id="b")])
    t = time.monotonic()
    tables = captureq.open(str(tmp_path)).load()
    assert time.monotonic() - t < 30
    assert tables.inputs.num_rows == 1
    assert tables.inputs.column("event_id").to_pylist() == ["a"]
    assert "_c9998" in tables.inputs.column_names and "_c9999" not in tables.inputs.column_names
    q = [r for r in tables.quarantine.to_pylist() if r["stage"] == "input"]
    assert len(q) == 1 and "10001 columns" in q[0]["reason"]
    assert tables.counts.reconciles


def test_many_narrow_rows_in_one_payload_are_not_wide(tmp_path):
    rows = "\n".join(_csv_row(50) for _ in range(1_000))  # 50,000 values, 50 per record
    write_captures(tmp_path, [capture(rows, "\n".join(["0.5"] * 1_000))])
    tables = captureq.open(str(tmp_path), options=DecodeOptions(max_columns=60)).load()
    assert tables.inputs.num_rows == 1_000
    assert not [r for r in tables.quarantine.to_pylist() if r["stage"] == "input"]


def test_a_quoted_comma_is_not_a_column(tmp_path):
    text = '"' + "," * 50 + '",1'
    write_captures(tmp_path, [capture(text, "0.5")])
    tables = captureq.open(str(tmp_path), options=DecodeOptions(max_columns=5)).load()
    assert tables.inputs.num_rows == 1
    assert tables.inputs.column("_c0").to_pylist() == ["," * 50]


def test_the_limit_is_set_by_option_and_by_environment(tmp_path, monkeypatch):
    write_captures(tmp_path, [capture(_csv_row(30), "0.5")])
    q = captureq.open(str(tmp_path), options=DecodeOptions(max_columns=20)).quarantine()
    assert [r["stage"] for r in q.to_pylist()] == ["input"]
    assert "30 columns" in q.column("reason")[0].as_py()
    monkeypatch.setenv("CAPTUREQ_MAX_COLUMNS", "25")
    q = captureq.open(str(tmp_path)).quarantine()
    assert "more than the limit of 25" in q.column("reason")[0].as_py()
    monkeypatch.setenv("CAPTUREQ_MAX_COLUMNS", "40")
    assert captureq.open(str(tmp_path)).quarantine().num_rows == 0


def test_a_wide_json_object_is_refused(tmp_path):
    doc = json.dumps({f"f{i}": i for i in range(50)})
    write_captures(tmp_path, [capture(doc, "0.5", input_type="application/json"),
                              capture('{"a": 1}', "0.5", input_type="application/json", event_id="b")])
    tables = captureq.open(str(tmp_path), options=DecodeOptions(max_columns=20)).load()
    assert tables.inputs.column("event_id").to_pylist() == ["b"]
    q = [r for r in tables.quarantine.to_pylist() if r["stage"] == "input"]
    assert len(q) == 1 and "50 columns" in q[0]["reason"]
