"""Windows are exact times: rows with ``start ≤ inference_time < end``, whatever hour file holds them."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from trees import capture, write_captures
from typer.testing import CliRunner

import captureq
from captureq.cli import app

UTC = timezone.utc


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# (hour folder, record time): the folder is where the object is; the time is what counts.
RECORDS = [
    ("2026-01-01T05", "2026-01-01T05:59:59"),
    ("2026-01-01T05", "2026-01-01T06:30:00"),  # written into the previous hour's object
    ("2026-01-01T06", "2026-01-01T06:00:04"),
    ("2026-01-01T06", "2026-01-01T06:29:59"),
    ("2026-01-01T06", "2026-01-01T06:30:00"),
    ("2026-01-01T06", "2026-01-01T06:45:30"),
    ("2026-01-01T06", "2026-01-01T06:59:59.999999"),
    ("2026-01-01T07", "2026-01-01T07:00:00"),
    ("2026-01-01T07", "2026-01-01T07:00:01"),
    ("2026-01-31T23", "2026-01-31T23:59:30"),
    ("2026-02-01T00", "2026-02-01T00:00:00"),
    ("2026-12-31T23", "2026-12-31T23:59:59"),
    ("2026-12-31T23", "2027-01-01T00:00:00.500000"),  # previous hour's object, across the year
    ("2027-01-01T00", "2027-01-01T00:00:00"),
]
BAD_LINE_HOUR = "2026-01-01T06"  # one line without a parseable time, in the 06 object


def ident(folder: str, when: str) -> str:
    return f"{folder}|{when}"


@pytest.fixture(scope="module")
def wtree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("windows") / "capture"
    by_folder: dict[str, list] = {}
    for folder, when in RECORDS:
        rec = capture("1,2\n", "0.5", event_id=ident(folder, when), when=t(when))
        rec["eventMetadata"]["inferenceTime"] = when + "Z"  # fractional seconds as written
        by_folder.setdefault(folder, []).append(rec)
    by_folder[BAD_LINE_HOUR].append('{"eventMetadata": {"eventId": "x"}, "captureData": {}}')
    for folder, lines in by_folder.items():
        write_captures(root, lines, when=t(folder), name="f.jsonl")
    return root


def expected(start: str | None, end: str | None) -> set[str]:
    lo = t(start) if start else datetime.min.replace(tzinfo=UTC)
    hi = t(end) if end else datetime.max.replace(tzinfo=UTC)
    return {ident(f, w) for f, w in RECORDS if lo <= t(w) < hi}


EDGES = [
    ("2026-01-01T06:30", "2026-01-01T07"),  # minutes: the example
    ("2026-01-01T06:00:01", "2026-01-01T06:00:05"),  # seconds
    ("2026-01-01T06", "2026-01-01T06:00:01"),  # one second of an hour is not the hour
    ("2026-01-01T06:30", "2026-01-01T06:45:30"),  # exactly at start in, exactly at end out
    ("2026-01-01T06:59:59.999999", "2026-01-01T07:00:00.000001"),  # microseconds
    ("2026-01-01T07", None),  # open end; the 06 object is only the margin
    (None, "2026-01-01T06:30"),  # open start
    ("2026-01-31T23:59:30", "2026-02-01T00:00:01"),  # month end
    ("2026-02-01", "2026-02-02"),  # a day whose previous hour is in another month
    ("2026-12-31T23:59:59", "2027-01-01"),  # year end, end exclusive at midnight
    ("2027-01-01", "2027-01-01T01"),  # holds a record from 2026's last object
]


@pytest.mark.parametrize("start, end", EDGES)
def test_a_window_keeps_exactly_the_rows_inside_it(wtree, start, end):
    tables = captureq.open(str(wtree), start=start, end=end).load()
    assert set(tables.captures["event_id"].to_pylist()) == expected(start, end)
    # inputs and outputs follow their capture
    assert set(tables.inputs["event_id"].to_pylist()) == expected(start, end)
    assert set(tables.outputs["event_id"].to_pylist()) == expected(start, end)
    c = tables.counts
    assert c.lines_read == c.rows + c.quarantined_lines + c.outside_window
    assert c.reconciles


def test_where_narrows_to_exact_times(wtree):
    cq = captureq.open(str(wtree)).where(start="2026-01-01T06:30", end="2026-01-01T07")
    first = cq.sql("select min(inference_time) as t from captures").to_arrow()["t"][0].as_py()
    assert first == t("2026-01-01T06:30")
    assert cq.captures().num_rows == len(expected("2026-01-01T06:30", "2026-01-01T07"))


def test_a_line_without_a_time_counts_at_the_start_of_its_hour_file(wtree):
    whole_hour = captureq.open(str(wtree), start="2026-01-01T06", end="2026-01-01T07").load()
    assert [r["stage"] for r in whole_hour.quarantine.to_pylist()] == ["line"]
    assert whole_hour.counts.quarantined_lines == 1
    # 06:00 is not in [06:30, 07): the 06 object's bad line belongs to the windows holding 06:00
    for start, end in [("2026-01-01T06:30", "2026-01-01T07"), ("2026-01-01T07", "2026-01-01T08")]:
        tables = captureq.open(str(wtree), start=start, end=end).load()
        assert tables.quarantine.num_rows == 0
        assert tables.counts.quarantined_lines == 0
        c = tables.counts
        assert c.lines_read == c.rows + c.outside_window
    after = captureq.open(str(wtree), start="2026-01-01T07", end="2026-01-01T08").load()
    assert after.counts.outside_window == 5 + 1  # the 06 object's five records and its bad line


def test_every_line_is_counted_once_across_adjacent_windows(wtree):
    cuts = [None, "2026-01-01T06:30", "2026-01-01T07", "2026-02-01", "2027-01-01", None]
    total_rows = total_q = 0
    for start, end in zip(cuts, cuts[1:]):
        tables = captureq.open(str(wtree), start=start, end=end).load()
        total_rows += tables.counts.rows
        total_q += tables.counts.quarantined_lines
    assert total_rows == len(RECORDS)
    assert total_q == 1


def test_cli_windows_are_exact_and_scan_prints_rows_outside_the_window(wtree):
    runner = CliRunner()
    res = runner.invoke(
        app,
        ["query", str(wtree), "select min(inference_time) as t, count(*) as n from captures",
         "--start", "2026-01-01T06:30", "--end", "2026-01-01T07", "--format", "json"],
    )
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)[0]
    assert row["n"] == len(expected("2026-01-01T06:30", "2026-01-01T07"))
    assert row["t"].startswith("2026-01-01 06:30:00") or row["t"].startswith("2026-01-01T06:30:00")
    res = runner.invoke(app, ["scan", str(wtree), "--start", "2026-01-01T06:30",
                              "--end", "2026-01-01T07"])
    assert res.exit_code == 0, res.output
    assert "outside the window" in res.stdout
    # the 05, 06 and 07 objects (one hour of lateness either way): 9 records and 06's bad line
    # (which counts at 06:00), 4 in the window
    n_out = 2 + 5 + 2 + 1 - len(expected("2026-01-01T06:30", "2026-01-01T07"))
    assert f"{n_out} outside the window" in res.stdout


def test_windows_are_the_same_on_s3(wtree, s3_fs, s3_bucket, s3_options):
    from s3util import upload_tree

    url = f"s3://{s3_bucket}/capture"
    upload_tree(s3_fs, wtree, url)
    for start, end in EDGES:
        got = captureq.open(url, storage_options=s3_options, start=start, end=end).captures()
        assert set(got["event_id"].to_pylist()) == expected(start, end), (start, end)


def test_monitor_windows_are_exact(wtree):
    from captureq.monitor import baseline, monitor

    base = baseline(captureq.open(str(wtree)))
    result = monitor(captureq.open(str(wtree)), base, start="2026-01-01T06:30",
                     end="2026-01-01T07")
    starts = [r["window_start"] for r in result.drift.to_pylist() if r["granularity"] == "window"]
    assert starts and all(s == t("2026-01-01T06") for s in starts)  # floor of 06:30, not 05:00
    stats = result.statistics
    n = stats["dataset"]["item_count"]
    assert n == len(expected("2026-01-01T06:30", "2026-01-01T07"))


def test_window_mask_edges():
    import pyarrow as pa

    from captureq import schema
    from captureq.window import filter_captures

    times = pa.array(
        [t("2026-01-01T06:30"), t("2026-01-01T06:29:59.999999"), t("2026-01-01T07"), None],
        schema.TIMESTAMP,
    )
    kept, outside = filter_captures(pa.table({"inference_time": times}),
                                    "2026-01-01T06:30", "2026-01-01T07")
    assert kept["inference_time"].to_pylist() == [t("2026-01-01T06:30")]
    assert outside == 3
    kept, outside = filter_captures(pa.table({"inference_time": times}), None, None)
    assert kept.num_rows == 4 and outside == 0
    # offsets are converted to UTC
    kept, _ = filter_captures(pa.table({"inference_time": times}),
                              "2026-01-01T08:30+02:00", "2026-01-01T09:00+02:00")
    assert kept.num_rows == 1


def _exported(out: Path, table: str = "captures") -> list[str]:
    import duckdb

    if not list(out.glob(f"{table}/**/*.parquet")):
        return []
    with duckdb.connect() as con:  # own connection: the default one is shared by tests
        rows = con.sql(
            f"select event_id from read_parquet('{out}/{table}/**/*.parquet', union_by_name=true)"
        ).fetchall()
    return sorted(r[0] for r in rows)


def test_export_windows_are_exact_and_later_windows_add_each_row_once(wtree, tmp_path):
    out = tmp_path / "out"
    s = captureq.open(str(wtree), start="2026-01-01T06:30", end="2026-01-01T07").export(str(out))
    assert _exported(out) == sorted(expected("2026-01-01T06:30", "2026-01-01T07"))
    assert _exported(out, "inputs") == _exported(out)
    assert s.counts.lines_read == s.counts.rows + s.counts.quarantined_lines + s.counts.outside_window
    # the same window again: nothing new
    again = captureq.open(str(wtree), start="2026-01-01T06:30", end="2026-01-01T07").export(str(out))
    assert again.rows["captures"] == 0
    # the rest of the hour, then everything: each record exactly once, the bad line once
    captureq.open(str(wtree), start="2026-01-01T06", end="2026-01-01T06:30").export(str(out))
    assert _exported(out) == sorted(expected("2026-01-01T06", "2026-01-01T07"))
    captureq.open(str(wtree)).export(str(out))
    assert _exported(out) == sorted(ident(f, w) for f, w in RECORDS)
    import duckdb

    with duckdb.connect() as con:
        bad = con.sql(f"select count(*) from read_parquet('{out}/quarantine/**/*.parquet') "
                      "where stage = 'line'").fetchall()[0][0]
    assert bad == 1
    # and a full run afterwards has nothing left to read
    last = captureq.open(str(wtree)).export(str(out))
    assert last.files_exported == 0 and last.rows["captures"] == 0


def test_a_file_wholly_inside_an_export_window_is_done_for_good(wtree, tmp_path):
    """Only files with lines outside the window are entered with it; the others are done."""
    out = tmp_path / "out"
    captureq.open(str(wtree), start="2026-01-01T07", end="2026-01-02").export(str(out))
    sources = [s for p in sorted((out / "_captureq" / "commits").glob("*.json"))
               for s in json.loads(p.read_text())["sources"]]
    windowed = {s["rel"].split("/")[5] for s in sources if "window" in s}  # the hour folder
    assert windowed == {"06"}  # the margin hour: read only for rows of the window (none here)
    assert {s["rel"].split("/")[5] for s in sources if "window" not in s} == {"07"}


def test_payload_failures_and_timeless_records_follow_the_window(tmp_path):
    """A non-string payload is quarantined only with its capture; a record without
    inferenceTime takes its folder's hour, so it is in the windows holding hh:00."""
    root = tmp_path / "capture"
    early = capture("1,2\n", "0.5", event_id="early", when=t("2026-01-01T06:10"))
    early["captureData"]["endpointInput"]["data"] = 12
    late = capture("1,2\n", "0.5", event_id="late", when=t("2026-01-01T06:40"))
    late["captureData"]["endpointInput"]["data"] = {"x": 1}
    ok = capture("3,4\n", "0.5", event_id="ok", when=t("2026-01-01T06:50"))
    timeless = capture("5,6\n", "0.5", event_id="timeless", when=t("2026-01-01T06:20"))
    del timeless["eventMetadata"]["inferenceTime"]
    write_captures(root, [early, late, ok, timeless], when=t("2026-01-01T06"), name="f.jsonl")
    tables = captureq.open(str(root), start="2026-01-01T06:30", end="2026-01-01T07").load()
    assert sorted(tables.captures["event_id"].to_pylist()) == ["late", "ok"]
    q = [r for r in tables.quarantine.to_pylist() if r["stage"] == "input"]
    ids = dict(zip(tables.captures["capture_id"].to_pylist(), tables.captures["event_id"].to_pylist()))
    assert [ids.get(r["capture_id"]) for r in q] == ["late"]
    assert tables.inputs["event_id"].to_pylist() == ["ok"]
    whole = captureq.open(str(root), start="2026-01-01T06", end="2026-01-01T06:30").load()
    assert sorted(whole.captures["event_id"].to_pylist()) == ["early", "timeless"]
    c = tables.counts
    assert c.lines_read == c.rows + c.quarantined_lines + c.outside_window == 4


def test_a_changed_file_replaces_its_rows_for_every_window_it_was_exported_for(tmp_path):
    """Windowed exports and changed files: a file exported for window W1 that changes is read
    again, in one commit, for W1 and the new window W2 (its old rows go); it stays partial for
    the rest, so a later window adds its remaining rows, each row exactly once."""
    from captureq.export import plan

    root, out = tmp_path / "capture", tmp_path / "out"

    def write(events):
        recs = [capture("1,2\n", "0.5", event_id=e, when=t(f"2026-01-01T{e}")) for e in events]
        write_captures(root, recs, when=t("2026-01-01T06"), name="f.jsonl")

    write(["06:10", "06:40"])
    captureq.open(str(root), start="2026-01-01T06", end="2026-01-01T06:30").export(str(out))
    assert _exported(out) == ["06:10"]
    assert plan(captureq.open(str(root)), str(out)).partial == [
        "ep/AllTraffic/2026/01/01/06/f.jsonl"]  # exported for a window only: not done
    write(["06:10", "06:20", "06:40", "06:50"])  # the object is rewritten (another size)
    s = captureq.open(str(root), start="2026-01-01T06:45", end="2026-01-01T07").export(str(out))
    assert s.files_changed == 1
    assert _exported(out) == ["06:10", "06:20", "06:50"]  # W1 ∪ W2 of the new version, once
    assert _exported(out, "inputs") == ["06:10", "06:20", "06:50"]
    last = json.loads(sorted((out / "_captureq" / "commits").glob("*.json"))[-1].read_text())
    assert last["removes"] and [len(x) for x in last["sources"][0]["window"]] == [2, 2]
    # the gap between the two windows, then everything: the rest, once
    captureq.open(str(root), start="2026-01-01T06:30", end="2026-01-01T06:45").export(str(out))
    assert _exported(out) == ["06:10", "06:20", "06:40", "06:50"]
    assert plan(captureq.open(str(root)), str(out)).done == 1  # W1 ∪ gap ∪ W2 covers the file
    again = captureq.open(str(root)).export(str(out))
    assert again.files_exported == 0 and _exported(out) == ["06:10", "06:20", "06:40", "06:50"]
    # changed again, unwindowed run: read whole, old rows replaced
    write(["06:10", "06:20", "06:40", "06:50", "06:55"])
    captureq.open(str(root), start="2026-01-01T06", end="2026-01-01T06:05").export(str(out))
    assert _exported(out) == ["06:10", "06:20", "06:40", "06:50", "06:55"]
