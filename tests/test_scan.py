"""The scanner: which objects a URI and a window name, and how few listings it takes to find them."""

from __future__ import annotations

import gzip
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trees import capture, label, write_captures, write_labels

import captureq
from captureq.errors import ConfigError, ScanError
from captureq.scan import Scanner, scan

UTC = timezone.utc
H0 = datetime(2026, 1, 1, 22, tzinfo=UTC)
HOURS = [H0 + timedelta(hours=i) for i in range(6)]  # 22:00 on Jan 1 .. 03:00 on Jan 2
PARTITIONS = [("churn", "AllTraffic"), ("churn", "Canary"), ("fraud", "AllTraffic")]
ALL = {(e, v, h) for e, v in PARTITIONS for h in HOURS}
GZ_HOUR = HOURS[4]  # fraud/AllTraffic/2026/01/02/02 also holds a .jsonl.gz


@pytest.fixture
def tree(tmp_path) -> Path:
    """2 endpoints, 3 variants, 6 hours across midnight: one file per hour, plus a gzip file
    (two gzip members), a text file in an hour folder and a README at the top."""
    root = tmp_path / "capture"
    for e, v in PARTITIONS:
        for h in HOURS:
            rec = capture(
                "1,2\n", "0.5", event_id=f"{e}-{v}-{h:%d%H}", when=h + timedelta(minutes=5)
            )
            write_captures(root, [rec], endpoint=e, variant=v, when=h, name="f.jsonl")
    gz = [
        capture("3,4\n", "0.1", event_id=f"gz-{i}", when=GZ_HOUR + timedelta(minutes=i))
        for i in (1, 2)
    ]
    members = b"".join(
        gzip.compress(p.read_bytes())
        for p in (
            write_captures(root, [gz[0]], endpoint="fraud", when=GZ_HOUR, name="tmp-a"),
            write_captures(root, [gz[1]], endpoint="fraud", when=GZ_HOUR, name="tmp-b"),
        )
    )
    for name in ("tmp-a", "tmp-b"):
        (root / "fraud/AllTraffic/2026/01/02/02" / name).unlink()
    (root / "fraud/AllTraffic/2026/01/02/02/g.jsonl.gz").write_bytes(members)
    (root / "churn/AllTraffic/2026/01/02/01/notes.txt").write_text("not a capture file\n")
    (root / "README.md").write_text("capture tree\n")
    return root


def found(result) -> set[tuple[str, str, datetime]]:
    return {(f.endpoint, f.variant, f.hour) for f in result.files}


# -- where the URI points ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "sub, expected",
    [
        ("", ALL),
        ("churn", {p for p in ALL if p[0] == "churn"}),
        ("churn/Canary", {p for p in ALL if p[:2] == ("churn", "Canary")}),
        (
            "churn/AllTraffic/2026/01/01",
            {p for p in ALL if p[:2] == ("churn", "AllTraffic") and p[2].day == 1},
        ),
        ("fraud/AllTraffic/2026/01/02/02", {("fraud", "AllTraffic", GZ_HOUR)}),
        ("churn/Canary/2026/01/01/23/f.jsonl", {("churn", "Canary", HOURS[1])}),
        (
            "*/AllTraffic/2026/01/02/0[01]/*.jsonl",
            {p for p in ALL if p[1] == "AllTraffic" and p[2] in HOURS[2:4]},
        ),
        ("*/Canary", {p for p in ALL if p[1] == "Canary"}),
    ],
    ids=["prefix", "endpoint", "variant", "day", "hour", "file", "glob-files", "glob-folders"],
)
def test_root_can_be_any_level_of_the_tree(tree, sub, expected):
    result = scan(str(tree / sub) if sub else str(tree))
    assert found(result) == expected
    for f in result.files:  # rel is the same whatever the root: capture_id hashes it
        assert f.rel == Path(f.path).relative_to(tree).as_posix()
        assert f.rel.startswith(f"{f.endpoint}/{f.variant}/{f.hour:%Y/%m/%d/%H}/")


def test_a_single_hour_folder_holds_both_plain_and_gzip_files(tree):
    result = scan(str(tree / "fraud/AllTraffic/2026/01/02/02"))
    assert sorted(Path(f.path).name for f in result.files) == ["f.jsonl", "g.jsonl.gz"]
    assert [f.compressed for f in result.files] == [False, True]


# -- endpoint and variant filters ------------------------------------------------------------
@pytest.mark.parametrize(
    "endpoint, variant, expected",
    [
        ("churn", None, {p for p in ALL if p[0] == "churn"}),
        ("fr*", None, {p for p in ALL if p[0] == "fraud"}),
        (["churn", "fraud"], None, ALL),
        (None, "Can*", {p for p in ALL if p[1] == "Canary"}),
        ("churn", "All*", {p for p in ALL if p[:2] == ("churn", "AllTraffic")}),
        ("nope", None, set()),
    ],
)
def test_endpoint_and_variant_filters_take_names_and_patterns(tree, endpoint, variant, expected):
    assert found(scan(str(tree), endpoint=endpoint, variant=variant)) == expected


def test_filters_apply_when_the_root_is_an_endpoint_or_variant_folder(tree):
    assert found(scan(str(tree / "churn"), endpoint="fraud")) == set()
    assert found(scan(str(tree / "churn"), variant="Canary")) == {
        p for p in ALL if p[:2] == ("churn", "Canary")
    }
    assert found(scan(str(tree / "churn/Canary"), variant="AllTraffic")) == set()


# -- time windows -----------------------------------------------------------------------------
def hours_of(result) -> list[int]:
    return sorted({f.hour.hour for f in result.files})


def test_end_is_exclusive_and_start_is_floored_to_its_hour(tree):
    assert hours_of(scan(str(tree), start="2026-01-01T23", end="2026-01-02T01")) == [0, 23]
    assert hours_of(scan(str(tree), start="2026-01-01T23:59:59Z", end="2026-01-02T00:00Z")) == [23]
    # an hour folder is read when any part of it lies inside [start, end)
    assert hours_of(scan(str(tree), start="2026-01-02T02", end="2026-01-02T02:30Z")) == [2]


def test_times_with_offsets_are_converted_to_utc(tree):
    window = scan(str(tree), start="2026-01-02T01:00:00+02:00", end="2026-01-01T20:00:00-05:00")
    assert hours_of(window) == [0, 23]  # 23:00Z to 01:00Z
    naive = scan(str(tree), start=datetime(2026, 1, 2, 2), end=datetime(2026, 1, 2, 3))  # UTC
    assert {f.hour for f in naive.files} == {HOURS[4]}


def test_open_ended_windows(tree):
    assert {f.hour for f in scan(str(tree), start="2026-01-02T02").files} == set(HOURS[4:])
    assert {f.hour for f in scan(str(tree), end="2026-01-01T23").files} == {HOURS[0]}


def test_bad_windows_are_errors_that_say_what_to_do(tree):
    with pytest.raises(ScanError, match="must be after start"):
        scan(str(tree), start="2026-01-02T03", end="2026-01-02T01")
    with pytest.raises(ConfigError, match="ISO 8601"):
        scan(str(tree), start="yesterday")


# -- what is read and what is skipped ---------------------------------------------------------
def test_non_jsonl_files_are_reported_as_skipped_and_never_parsed(tree):
    result = scan(str(tree))
    skipped = {Path(url).name: reason for url, reason in result.skipped}
    assert set(skipped) == {"notes.txt", "README.md"}
    assert all(reason.startswith("not a capture file") for reason in skipped.values())
    cq = captureq.open(str(tree))
    assert cq.quarantine().num_rows == 0  # the text file did not become bad lines
    assert all(not s.endswith((".txt", ".md")) for s in cq.captures()["source_file"].to_pylist())


def test_gzip_files_are_read_with_every_member(tree):
    captures = captureq.open(str(tree)).captures()
    from_gz = sorted(
        e
        for e, s in zip(captures["event_id"].to_pylist(), captures["source_file"].to_pylist())
        if s.endswith(".jsonl.gz")
    )
    assert from_gz == ["gz-1", "gz-2"]
    assert captures.num_rows == len(ALL) + 2


def test_a_file_outside_the_hour_folders_is_skipped_with_the_reason(tree):
    write_captures(tree, [capture("1\n", "0")], endpoint="churn", when=H0, name="x.jsonl")
    stray = tree / "churn/AllTraffic/stray.jsonl"
    stray.write_bytes((tree / "churn/AllTraffic/2026/01/01/22/x.jsonl").read_bytes())
    result = scan(str(tree / "churn/AllTraffic"))
    assert [(Path(u).name, r) for u, r in result.skipped if u.endswith("stray.jsonl")] == [
        ("stray.jsonl",
         "not in a partition: not under {endpoint}/{variant}/yyyy/mm/dd/hh/; cannot tell its partition")
    ]
    assert stray.as_posix() not in {f.path for f in result.files}


def test_an_empty_tree_gives_empty_tables(tmp_path):
    (tmp_path / "empty").mkdir()
    result = scan(str(tmp_path / "empty"))
    assert (result.files, result.skipped) == ([], [])
    tables = captureq.open(str(tmp_path / "empty")).load()
    assert tables.captures.num_rows == tables.inputs.num_rows == tables.quarantine.num_rows == 0
    assert tables.counts.files == 0


def test_a_missing_tree_is_a_scan_error_that_names_it(tmp_path):
    missing = tmp_path / "no-such-tree"
    with pytest.raises(ScanError, match=r"no-such-tree does not exist.*check the path"):
        scan(str(missing))
    with pytest.raises(ScanError, match="no-such-tree"):
        captureq.open(str(missing)).captures()
    with pytest.raises(ScanError, match="cannot open"):
        scan("nosuchprotocol://bucket/capture")


# -- ground-truth trees -----------------------------------------------------------------------
def test_a_labels_tree_has_hours_but_no_endpoints(tmp_path):
    root = tmp_path / "labels"
    for h in HOURS[:3]:
        write_labels(root, [label(f"id-{h:%H}", "1")], when=h, name="l.jsonl")
    (root / "2026/01/01/22/_SUCCESS").write_text("")  # a marker file, not a capture file
    result = scan(str(root), layout="labels")
    assert [(f.endpoint, f.variant, f.hour, f.rel) for f in result.files] == [
        (None, None, h, f"{h:%Y/%m/%d/%H}/l.jsonl") for h in HOURS[:3]
    ]
    assert [Path(u).name for u, _ in result.skipped] == ["_SUCCESS"]
    windowed = scan(str(root), layout="labels", start=HOURS[1], end=HOURS[2])
    assert [f.hour for f in windowed.files] == [HOURS[1]]


# -- how much listing a window costs -----------------------------------------------------------
def test_a_few_hours_cost_one_listing_per_hour_and_variant(tree):
    result = scan(str(tree), start=HOURS[1], end=HOURS[4])
    assert found(result) == {p for p in ALL if p[2] in HOURS[1:4]}
    discovery = 1 + 2  # the root, then each endpoint folder for its variants
    assert result.list_calls <= discovery + 3 * len(PARTITIONS)
    whole = scan(str(tree))
    assert whole.list_calls <= discovery + len(PARTITIONS)  # one recursive walk per variant


def test_an_open_ended_window_does_not_list_every_day_until_now(tmp_path):
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for days in (1, 300, 500):
        write_captures(
            tmp_path, [capture("1\n", "0")], when=now - timedelta(days=days), name=f"{days}.jsonl"
        )
    result = Scanner(str(tmp_path / "ep/AllTraffic")).scan(start=now - timedelta(days=400))
    assert sorted(Path(f.path).name for f in result.files) == ["1.jsonl", "300.jsonl"]
    # whole months and years are one listing each: a few dozen calls, not one per day (400+)
    assert result.list_calls < 70


# The window logic (days, months, years, ragged hours) against a brute-force oracle.
SPREAD = [
    datetime(2025, 11, 20, tzinfo=UTC) + timedelta(days=d, hours=(7 * d) % 24)
    for d in range(0, 470, 3)
]


@pytest.fixture(scope="module")
def spread_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("spread")
    for h in SPREAD:
        write_captures(root, [capture("1\n", "0", when=h)], when=h, name="f.jsonl")
    return root / "ep" / "AllTraffic"


@settings(max_examples=60, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2025, 11, 1), max_value=datetime(2027, 3, 31)),
    length=st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(days=500)),
)
def test_windows_find_exactly_the_hours_inside_them(spread_tree, start, length):
    start, end = start.replace(tzinfo=UTC), start.replace(tzinfo=UTC) + length
    floor = start.replace(minute=0, second=0, microsecond=0)
    result = Scanner(str(spread_tree)).scan(start=start, end=end)
    assert [f.hour for f in result.files] == [h for h in SPREAD if floor <= h < end]


# -- paths are literal; patterns only where an option says so ---------------------------------
def _bracket_tree(root: Path) -> Path:
    """``root/pre[1]`` holding endpoints ``br[a]ck`` and ``plain*?`` (names glob would mangle)."""
    tree = root / "pre[1]"
    for e in ("br[a]ck", "plain*?"):
        lines = [capture("1,2\n", "0.5", event_id=f"{e}-{i}", when=T_BR) for i in range(3)]
        write_captures(tree, lines, endpoint=e, when=T_BR, name="f[0].jsonl")
    return tree


T_BR = datetime(2026, 3, 1, 10, 5, tzinfo=UTC)


def _check_literal(uri: str, storage_options: dict | None = None) -> None:
    cq = captureq.open(uri, storage_options=storage_options)
    tables = cq.load()
    assert tables.quarantine.num_rows == 0, tables.quarantine.to_pylist()
    assert tables.counts.rows == tables.counts.lines_read == 6
    assert sorted(set(tables.captures["endpoint"].to_pylist())) == ["br[a]ck", "plain*?"]
    assert all("/br[a]ck/" in s or "/plain*?/" in s for s in tables.captures["source_file"].to_pylist())
    # names given as filters match themselves literally, patterns still work
    assert captureq.open(uri, storage_options=storage_options, endpoint="br[a]ck").captures().num_rows == 3
    assert captureq.open(uri, storage_options=storage_options, endpoint="plain*").captures().num_rows == 3
    # a path inside the tree that contains brackets is read literally too
    sub = uri.rstrip("/") + "/br[a]ck/AllTraffic/2026/03/01/10/f[0].jsonl"
    assert captureq.open(sub, storage_options=storage_options).captures().num_rows == 3


def test_paths_with_glob_characters_are_read_literally(tmp_path):
    _check_literal(str(_bracket_tree(tmp_path)))


def test_paths_with_glob_characters_are_read_literally_on_s3(tmp_path, s3_fs, s3_bucket, s3_options):
    from s3util import upload_tree

    url = f"s3://{s3_bucket}/pre[1]"
    upload_tree(s3_fs, _bracket_tree(tmp_path), url)
    _check_literal(url, s3_options)


def test_cli_scan_of_a_bracketed_path_reads_every_line(tmp_path):
    from typer.testing import CliRunner

    from captureq.cli import app

    res = CliRunner().invoke(app, ["scan", str(_bracket_tree(tmp_path))])
    assert res.exit_code == 0, res.output
    assert "6 read = 6 captures + 0 quarantined" in res.stdout


def test_a_glob_root_is_still_a_pattern_when_no_such_path_exists(tmp_path):
    tree = _bracket_tree(tmp_path)
    result = scan(str(tmp_path / "pre?1?" / "br?a?ck"))
    assert {f.endpoint for f in result.files} == {"br[a]ck"}
    assert len(result.files) == 1 and tree.exists()


def test_a_filter_that_matches_nothing_says_what_exists(tree):
    with pytest.warns(UserWarning, match=r"no endpoint matches 'nope'.*churn, fraud"):
        result = scan(str(tree), endpoint="nope")
    assert result.files == []
    assert result.warnings and "churn, fraud" in result.warnings[0]
    with pytest.warns(UserWarning, match=r"no variant matches 'Shadow'.*AllTraffic, Canary"):
        scan(str(tree), variant="Shadow")
    from typer.testing import CliRunner

    from captureq.cli import app

    res = CliRunner().invoke(app, ["scan", str(tree), "--endpoint", "churn-*x"])
    assert res.exit_code == 0
    assert "no endpoint matches 'churn-*x'" in res.stderr and "churn, fraud" in res.stderr
