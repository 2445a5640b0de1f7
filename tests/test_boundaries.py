"""Records in the "wrong" hour folder: a window finds them whichever neighbouring folder holds them.

SageMaker names an object's hour folder by when it was written, so a buffer flushed after the
hour turned puts 04:59:59.9 into ``…/05/``, and an object named for its first record holds
records of the next hour in ``…/04/``. Windows are by ``inferenceTime``: the scanner lists the
folders ``[start - lateness, end + lateness)`` and every reader keeps rows by time.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from trees import capture, write_captures
from typer.testing import CliRunner

import captureq
from captureq.cli import app

UTC = timezone.utc


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# (hour folder, record time): late flushes (folder after the record's hour) and early objects
# (folder before it), on every boundary from 03:00 to 08:00
RECORDS = [
    ("2026-01-01T03", "2026-01-01T03:10:00"),
    ("2026-01-01T04", "2026-01-01T03:59:59.900000"),  # flushed after 04:00
    ("2026-01-01T04", "2026-01-01T04:20:00"),
    ("2026-01-01T05", "2026-01-01T04:59:59.900000"),  # the issue's record
    ("2026-01-01T04", "2026-01-01T05:00:00.100000"),  # an object named for its 04:59 record
    ("2026-01-01T05", "2026-01-01T05:30:00"),
    ("2026-01-01T06", "2026-01-01T05:59:59"),  # late
    ("2026-01-01T05", "2026-01-01T06:00:00"),  # early, exactly on the hour
    ("2026-01-01T06", "2026-01-01T06:40:00"),
    ("2026-01-01T08", "2026-01-01T07:59:59.999999"),  # late, into the last window's end folder
    ("2026-01-01T07", "2026-01-01T07:05:00"),
    ("2026-01-01T06", "2026-01-01T07:00:00"),  # early
    ("2026-01-01T08", "2026-01-01T08:00:00"),  # after the last window
    ("2026-01-01T03", "2026-01-01T02:59:59"),  # before the first window, late
]
HOURS = [f"2026-01-01T0{h}" for h in range(3, 9)]  # T03 … T08: five hourly windows


def ident(folder: str, when: str) -> str:
    return f"{folder}|{when}"


def build(root: Path, records=RECORDS, bad_lines: bool = False) -> Path:
    """The records in their folders; ``bad_lines``: one line without a time in each folder."""
    by_folder: dict[str, list] = {}
    for folder, when in records:
        rec = capture("1,2\n", "0.5", event_id=ident(folder, when), when=t(when))
        rec["eventMetadata"]["inferenceTime"] = when + "Z"
        by_folder.setdefault(folder, []).append(rec)
    for folder, lines in by_folder.items():
        if bad_lines:
            lines.append('{"eventMetadata": {"eventId": "x"}, "captureData": {}}')
        write_captures(root, lines, when=t(folder), name="f.jsonl")
    return root


@pytest.fixture(scope="module")
def btree(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("boundaries") / "capture", bad_lines=True)


FOLDERS = sorted({f for f, _ in RECORDS})  # each holds one line without a time


def expected(start: str | None, end: str | None, records=RECORDS) -> set[str]:
    lo = t(start) if start else datetime.min.replace(tzinfo=UTC)
    hi = t(end) if end else datetime.max.replace(tzinfo=UTC)
    return {ident(f, w) for f, w in records if lo <= t(w) < hi}


@pytest.mark.parametrize("start, end", list(zip(HOURS, HOURS[1:])))
def test_an_hourly_window_holds_its_records_whichever_neighbouring_folder_holds_them(
        btree, start, end):
    tables = captureq.open(str(btree), start=start, end=end).load()
    assert set(tables.captures["event_id"].to_pylist()) == expected(start, end)
    assert set(tables.inputs["event_id"].to_pylist()) == expected(start, end)
    assert tables.counts.reconciles


def test_the_issues_record_is_in_the_04_window(btree):
    got = captureq.open(str(btree), start="2026-01-01T04", end="2026-01-01T05").captures()
    assert "2026-01-01T05|2026-01-01T04:59:59.900000" in got["event_id"].to_pylist()


def test_listing_covers_the_folders_within_lateness_on_both_sides(btree):
    from captureq.scan import scan

    hours = {f.hour for f in scan(str(btree), start="2026-01-01T05", end="2026-01-01T06",
                                  lateness=timedelta(hours=1)).files}
    assert hours == {t("2026-01-01T04"), t("2026-01-01T05"), t("2026-01-01T06")}
    # without lateness, exactly the folders overlapping the window
    assert {f.hour for f in scan(str(btree), start="2026-01-01T05",
                                 end="2026-01-01T06").files} == {t("2026-01-01T05")}
    # a window ending mid-hour: a record of 05:29 written up to an hour late is in 06
    hours = {f.hour for f in scan(str(btree), start="2026-01-01T05:30", end="2026-01-01T05:45",
                                  lateness=timedelta(hours=1)).files}
    assert hours == {t("2026-01-01T04"), t("2026-01-01T05"), t("2026-01-01T06")}
    two = {f.hour for f in scan(str(btree), start="2026-01-01T05", end="2026-01-01T06",
                                lateness=timedelta(hours=2)).files}
    assert two == {t(h) for h in HOURS[:5]}


def test_lateness_is_a_setting_of_open_and_where(btree):
    # lateness 0: folders overlapping the window only, so the 05 folder's 04:59 record is missed
    none = captureq.open(str(btree), start="2026-01-01T04", end="2026-01-01T05", lateness=0)
    assert {f.hour for f in none.scan().files} == {t("2026-01-01T04")}
    assert set(none.captures()["event_id"].to_pylist()) < expected("2026-01-01T04",
                                                                   "2026-01-01T05")
    wide = captureq.open(str(btree)).where(start="2026-01-01T04", end="2026-01-01T05",
                                            lateness="2h")
    assert {f.hour for f in wide.scan().files} == {t(h) for h in HOURS[:4]}
    assert set(wide.captures()["event_id"].to_pylist()) == expected("2026-01-01T04",
                                                                    "2026-01-01T05")


def _exported(out: Path, table: str = "captures") -> list[str]:
    import duckdb

    if not list(out.glob(f"{table}/**/*.parquet")):
        return []
    with duckdb.connect() as con:
        rows = con.sql(f"select event_id from read_parquet('{out}/{table}/**/*.parquet', "
                       "union_by_name=true)").fetchall()
    return sorted(r[0] for r in rows)


def _bad_lines(out: Path) -> list[str]:
    """The hour folders of the exported ``line`` quarantine rows."""
    import duckdb

    with duckdb.connect() as con:
        rows = con.sql(f"select source_file from read_parquet('{out}/quarantine/**/*.parquet') "
                       "where stage = 'line'").fetchall()
    return sorted(r[0].split("/")[-2] for r in rows)


def test_hourly_exports_hold_each_record_exactly_once(btree, tmp_path):
    out = tmp_path / "out"
    for start, end in zip(HOURS, HOURS[1:]):
        captureq.open(str(btree), start=start, end=end).export(str(out))
        assert _exported(out) == sorted(expected(HOURS[0], end))
        # a line without a time counts at the start of its folder's hour: once, in that window
        assert _bad_lines(out) == [f[-2:] for f in FOLDERS if HOURS[0] <= f < end]
    assert _exported(out, "inputs") == sorted(expected(HOURS[0], HOURS[-1]))
    # an unwindowed run adds exactly the records outside T03..T08, then nothing is left
    captureq.open(str(btree)).export(str(out))
    assert _exported(out) == sorted(ident(f, w) for f, w in RECORDS)
    assert _bad_lines(out) == [f[-2:] for f in FOLDERS]
    last = captureq.open(str(btree)).export(str(out))
    assert last.files_exported == 0 and last.rows["captures"] == 0


def test_the_cli_takes_lateness(btree):
    runner = CliRunner()
    args = ["query", str(btree), "select count(*) as n from captures", "--start",
            "2026-01-01T04", "--end", "2026-01-01T05", "--format", "csv", "--no-cache"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert res.stdout.split()[-1] == str(len(expected("2026-01-01T04", "2026-01-01T05")))
    res = runner.invoke(app, [*args, "--lateness", "0"])
    assert res.exit_code == 0, res.output
    assert int(res.stdout.split()[-1]) < len(expected("2026-01-01T04", "2026-01-01T05"))
    res = runner.invoke(app, [*args, "--lateness", "soon"])
    assert res.exit_code == 2 and "lateness" in res.output


# -- any sequence of windows ------------------------------------------------------------------
BASE = t("2026-01-01T03")


@st.composite
def trees_and_windows(draw):
    """Records in 03:00–09:00, most within a few seconds of an hour boundary, each in its own
    hour folder or a neighbour (±1 h); a sequence of windows (hourly, quarter-hour cuts, or
    unbounded)."""
    n = draw(st.integers(2, 12))
    near = st.builds(lambda h, s: BASE + timedelta(hours=h, seconds=s),
                     st.integers(1, 5), st.integers(-3, 3))
    anywhere = st.integers(0, 6 * 3600 - 1).map(lambda s: BASE + timedelta(seconds=s))
    records = []
    for i in range(n):
        at = draw(st.one_of(near, anywhere))
        shift = draw(st.sampled_from([-1, 0, 1]))
        folder = at.replace(minute=0, second=0) + timedelta(hours=shift)
        records.append((folder.strftime("%Y-%m-%dT%H"), at.isoformat()[:19] + f".{i:06d}"))
    cut = st.integers(0, 7 * 4).map(lambda q: BASE + timedelta(minutes=15 * q - 30))
    hourly = st.integers(0, 5).map(lambda h: (BASE + timedelta(hours=h),
                                              BASE + timedelta(hours=h + 1)))
    windows = draw(st.lists(st.one_of(
        hourly, hourly,
        st.tuples(cut, cut).filter(lambda w: w[0] < w[1]),
        st.just((None, None))), min_size=1, max_size=6))
    return records, windows


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=trees_and_windows())
@example(case=([("2026-01-01T05", "2026-01-01T04:59:59.900000"),
                ("2026-01-01T04", "2026-01-01T05:00:00.100000")],
               [(t(a), t(b)) for a, b in zip(HOURS, HOURS[1:])]))
def test_any_sequence_of_windowed_exports_holds_each_record_at_most_once_and_all_it_covered(
        tmp_path_factory, case):
    records, windows = case
    base = tmp_path_factory.mktemp("seq")
    root, out = build(base / "capture", records, bad_lines=True), base / "out"
    covered: set[str] = set()
    folders = sorted({t(f) for f, _ in records})
    for i, (start, end) in enumerate(windows):
        cq = captureq.open(str(root), start=start, end=end, cache=False)
        cq.export(str(out))
        covered |= expected(start and start.isoformat()[:19], end and end.isoformat()[:19],
                            records)
        got = _exported(out)
        assert len(got) == len(set(got)), "a record exported twice"
        assert set(got) == covered
        # each folder's timeless line: once, when a window held the start of its hour
        lines = _bad_lines(out) if list(out.glob("quarantine/**/*.parquet")) else []
        assert lines == sorted(f"{h:%H}" for h in folders if any(
            (s is None or s <= h) and (e is None or h < e) for s, e in windows[: i + 1]))


# -- the lateness setting ---------------------------------------------------------------------
@given(n=st.integers(0, 10_000), unit=st.sampled_from(["s", "m", "h", "d", "H", ""]),
       space=st.sampled_from(["", " "]))
def test_lateness_text_is_a_number_and_a_unit(n, unit, space):
    from captureq.errors import ConfigError
    from captureq.timeutil import MAX_LATENESS, to_lateness

    for text, want in ((f"{n}{space}{unit}", timedelta(seconds=n * {"s": 1, "m": 60, "h": 3600,
                        "d": 86400, "": 3600}[unit.lower()])), (n, timedelta(hours=n))):
        if want <= MAX_LATENESS:
            assert to_lateness(text) == want
        else:
            with pytest.raises(ConfigError, match="365d"):
                to_lateness(text)


@given(text=st.text(max_size=12))
def test_lateness_junk_is_a_config_error_that_says_what_to_give(text):
    from captureq.errors import ConfigError
    from captureq.timeutil import to_lateness

    try:
        got = to_lateness(text)
    except ConfigError as exc:
        assert any(hint in str(exc) for hint in ("2h", "0 or more", "365d"))
    else:
        assert got >= timedelta(0)


def test_lateness_defaults_to_one_hour_or_the_environment(btree, monkeypatch):
    from captureq.errors import ConfigError

    cq = captureq.open(str(btree), start="2026-01-01T04", end="2026-01-01T05")
    assert cq.lateness == timedelta(hours=1)
    monkeypatch.setenv("CAPTUREQ_LATENESS", "0")
    assert cq.lateness == timedelta(0)
    assert {f.hour for f in cq.scan().files} == {t("2026-01-01T04")}
    monkeypatch.setenv("CAPTUREQ_LATENESS", "-1h")
    with pytest.raises(ConfigError, match="CAPTUREQ_LATENESS"):
        captureq.open(str(btree), start="2026-01-01T04", end="2026-01-01T05").scan()
    with pytest.raises(ConfigError, match="negative"):
        captureq.open(str(btree), lateness=timedelta(hours=-1))
    for huge in ("999999999999", "1e400", 10**30, float("inf"), timedelta(days=400)):
        with pytest.raises(ConfigError, match="365d|not a duration"):
            captureq.open(str(btree), lateness=huge)
