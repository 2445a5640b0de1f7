"""The warm path: a second query on the same tree and window is answered from the Parquet cache,
which is invalidated per file, safe with two processes, and bounded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from trees import T0, capture, label, write_captures, write_labels

import captureq
from captureq import cache, pipeline

QUERIES = [
    "select * from captures order by capture_id",
    "select * from inputs order by capture_id, record_index",
    "select * from outputs order by capture_id, record_index",
    "select * from predictions order by capture_id, record_index",
    "select * from labels order by label_id, record_index",
    "select stage, source_file, line_number, reason from quarantine order by all",
]


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("CAPTUREQ_CACHE", str(root))
    return root


def tree(root, hours=2):
    for h in range(hours):
        write_captures(root / "cap", [capture(f"{h},2,3", "0.5", event_id=f"e{h}",
                                              when=T0 + timedelta(hours=h)), "{junk"],
                       when=T0 + timedelta(hours=h))
    write_labels(root / "gt", [label("e0", "1")])
    return str(root / "cap"), str(root / "gt")


def refuse_reading(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a capture file was read on the warm path")

    monkeypatch.setattr(pipeline, "process_captures", refuse)
    monkeypatch.setattr(pipeline, "process_labels", refuse)


def test_second_query_is_answered_from_the_cache(tmp_path, cache_root, monkeypatch):
    cap, gt = tree(tmp_path)
    cold = {q: captureq.open(cap, labels=gt, cache=False).sql(q).to_arrow() for q in QUERIES}
    captureq.open(cap, labels=gt).sql("select count(*) from captures")  # fills the cache behind
    cache.wait()
    assert not (cache_root / "nothing").exists() and any(cache_root.iterdir())
    refuse_reading(monkeypatch)
    warm = captureq.open(cap, labels=gt)
    for q in QUERIES:
        assert warm.sql(q).to_arrow().equals(cold[q]), q


def test_a_narrower_window_reads_only_its_files_from_the_cache(tmp_path, cache_root, monkeypatch):
    cap, gt = tree(tmp_path, hours=3)
    captureq.open(cap, labels=gt).sql("select 1")
    cache.wait()
    window = {"start": T0 + timedelta(hours=1), "end": T0 + timedelta(hours=2)}
    expected = {q: captureq.open(cap, labels=gt, cache=False, **window).sql(q).to_arrow() for q in QUERIES}
    # exact window (not whole hours): the capture of 13:30:15 only, not the one of the hour
    # listed before start (12:30:15) nor the one at end (14:30:15); a junk line counts at its
    # hour folder's start: the one of hour 14 only (14:00 is in the window, 13:00 is not)
    assert expected[QUERIES[0]].column("event_id").to_pylist() == ["e1"]
    assert expected[QUERIES[-1]].column("source_file").to_pylist()[0].split("/")[-2] == "14"
    refuse_reading(monkeypatch)
    for q in QUERIES:
        assert captureq.open(cap, labels=gt, **window).sql(q).to_arrow().equals(expected[q]), q


def test_a_changed_file_is_read_again(tmp_path, cache_root):
    cap, _ = tree(tmp_path)
    captureq.open(cap).sql("select 1")
    cache.wait()
    path = write_captures(cap, [capture("9,9,9", "0.1", event_id="new")], when=T0, name=None)
    cq = captureq.open(cap)
    assert cq.sql("select count(*) as n from inputs where _c0 = 9").to_pylist() == [{"n": 1}]
    assert cq._cache["warm"] is None  # not answered from the stale cache
    cache.wait()
    path.write_bytes(path.read_bytes() + json.dumps(capture("7,7,7", "0.1")).encode() + b"\n")  # grows
    cq = captureq.open(cap)
    assert cq.sql("select count(*) as n from inputs where _c0 in (7, 9)").to_pylist() == [{"n": 2}]
    assert cq._cache["warm"] is None
    cache.wait()
    cq = captureq.open(cap)
    assert cq.sql("select count(*) as n from inputs where _c0 in (7, 9)").to_pylist() == [{"n": 2}]
    assert cq._cache["warm"] is not None  # rebuilt, and used again


def test_no_cache_writes_nothing(tmp_path, cache_root):
    cap, _ = tree(tmp_path)
    captureq.open(cap, cache=False).sql("select count(*) from captures")
    cache.wait()
    assert not cache_root.exists()


def test_two_processes_filling_one_cache_at_once(tmp_path, cache_root):
    cap, gt = tree(tmp_path, hours=4)
    sql = "select count(*) as n, sum(_c0)::BIGINT as s from inputs"
    script = f"import captureq; print(captureq.open({cap!r}, labels={gt!r}).sql({sql!r}).to_pylist())"
    env = {**os.environ, "CAPTUREQ_CACHE": str(cache_root)}
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0] == outs[1] == str([{"n": 4, "s": 6}])
    assert cache.wait(cache_root, timeout=120)  # their fills are detached: they outlive them
    cq = captureq.open(cap, labels=gt)
    assert cq.sql(sql).to_pylist() == [{"n": 4, "s": 6}]
    assert cq._cache["warm"] is not None


def test_the_cache_is_bounded_least_recently_used_out(tmp_path, cache_root):
    a, _ = tree(tmp_path / "a")
    b, _ = tree(tmp_path / "b")
    captureq.open(a).sql("select 1")
    cache.wait()
    first = cache.cache_dir(a, None)
    size = cache._size(first)
    captureq.open(b, cache_max_bytes=size + size // 2).sql("select 1")
    cache.wait()
    assert not first.exists()  # least recently used, evicted
    assert cache.cache_dir(b, None).exists()


def test_cli_query_uses_the_cache_and_no_cache_opts_out(tmp_path, cache_root):
    from typer.testing import CliRunner

    from captureq.cli import app

    cap, gt = tree(tmp_path)
    sql = "select capture_id, _c0 from inputs order by all"
    runner = CliRunner()
    cold = runner.invoke(app, ["query", cap, sql, "--format", "csv", "--no-cache"])
    assert cold.exit_code == 0, cold.output
    cache.wait()
    assert not cache_root.exists()
    first = runner.invoke(app, ["query", cap, sql, "--format", "csv", "--cache-max-bytes", "100000000"])
    cache.wait()
    assert any(cache_root.iterdir())
    second = runner.invoke(app, ["query", cap, sql, "--format", "csv"])
    assert cold.output == first.output == second.output
    assert captureq.open(cap).sql("select 1").num_rows == 1


def test_sql_answered_from_the_cache_is_locked_down_too(tmp_path, cache_root, monkeypatch):
    from captureq.errors import QueryError

    cap, gt = tree(tmp_path)
    captureq.open(cap, labels=gt).sql("select 1")
    cache.wait()
    refuse_reading(monkeypatch)
    warm = captureq.open(cap, labels=gt)
    assert warm.sql("select count(*) as n from inputs").to_pylist() == [{"n": 2}]
    assert warm._cache["warm"] is not None
    leak = tmp_path / "leak.csv"
    for query in (f"COPY (select * from captures) TO '{leak}'",
                  f"select * from read_parquet('{cache_root}/**/*.parquet')"):
        with pytest.raises(QueryError, match="allow_external_access=True"):
            warm.sql(query)
    assert not leak.exists()
    warm.sql(f"COPY (select event_id from captures) TO '{leak}'", allow_external_access=True)
    assert warm._cache["warm_external"] is not None
    assert leak.read_text().count("\n") == 3  # header + one capture per hour


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def windowed_tree(root):
    """Records written into the previous hour's object, payload failures, bad lines, embedded
    ground truth and a label tree with a bad label: everything a window must cut exactly."""
    by_folder = {}
    for i, (folder, when) in enumerate([
        ("2026-01-01T05", "2026-01-01T05:59:59"),
        ("2026-01-01T05", "2026-01-01T06:30:00"),  # in the previous hour's object
        ("2026-01-01T06", "2026-01-01T06:10:00"),
        ("2026-01-01T06", "2026-01-01T06:40:00"),
        ("2026-01-01T06", "2026-01-01T06:59:59.999999"),
        ("2026-01-01T07", "2026-01-01T07:00:00"),
        ("2026-01-01T07", "2026-01-01T06:59:58"),  # flushed after the hour turned
        ("2026-01-01T08", "2026-01-01T07:59:59.5"),  # likewise, into the last listed folder
    ]):
        rec = capture(f"{i},2,3", "0.5", event_id=f"e{i}", when=_at(when))
        rec["eventMetadata"]["inferenceTime"] = when + "Z"
        if i % 2:
            rec["groundTruthData"] = label(f"e{i}", str(i % 3))["groundTruthData"]
        if i in (1, 2):
            rec["captureData"]["endpointInput"]["data"] = 12  # a payload failure
        by_folder.setdefault(folder, []).append(rec)
    for folder in by_folder:
        by_folder[folder].append("{junk")
        write_captures(root / "cap", by_folder[folder], when=_at(folder), name="f.jsonl")
    bad = label("e3", "1", encoding="JSON")
    bad["groundTruthData"]["data"] = {"label": 1}
    write_labels(root / "gt", [label("e0", "1"), label("e4", "0"), bad], name="l.jsonl")
    return str(root / "cap"), str(root / "gt")


@pytest.mark.parametrize("start, end", [
    ("2026-01-01T06:30", "2026-01-01T07"),
    ("2026-01-01T06", "2026-01-01T07"),
    ("2026-01-01T06:00:01", "2026-01-01T06:59:59.999999"),
    (None, "2026-01-01T06:30"),
    ("2026-01-01T06:40", None),
])
def test_a_window_from_the_cache_is_exactly_the_window_read_cold(tmp_path, cache_root, monkeypatch,
                                                                 start, end):
    cap, gt = windowed_tree(tmp_path)
    captureq.open(cap, labels=gt).sql("select 1")
    cache.wait()
    window = {"start": start, "end": end}
    queries = [*QUERIES, "select stage, capture_id from quarantine order by all"]
    expected = {q: captureq.open(cap, labels=gt, cache=False, **window).sql(q).to_arrow()
                for q in queries}
    refuse_reading(monkeypatch)
    warm = captureq.open(cap, labels=gt, **window)
    for q in queries:
        assert warm.sql(q).to_arrow().equals(expected[q]), q
    assert warm._cache["warm"] is not None


def test_hourly_windows_filled_one_by_one_answer_warm_as_cold(tmp_path, cache_root, monkeypatch):
    """Each hourly window's cold query fills the cache for that window only (its neighbouring
    folders read in part); a later warm query of each window gives the cold rows, records in a
    neighbouring hour's folder included."""
    cap, gt = windowed_tree(tmp_path)
    hours = ["2026-01-01T05", "2026-01-01T06", "2026-01-01T07", "2026-01-01T08"]
    queries = [*QUERIES, "select stage, capture_id from quarantine order by all"]
    expected = {}
    for start, end in zip(hours, hours[1:]):
        captureq.open(cap, labels=gt, start=start, end=end).sql("select 1")  # fills behind
        cache.wait()
        expected[start] = {q: captureq.open(cap, labels=gt, cache=False, start=start, end=end)
                           .sql(q).to_arrow() for q in queries}
    late = expected["2026-01-01T06"][QUERIES[0]].column("event_id").to_pylist()
    assert "e6" in late  # 06:59:58, in the 07 folder
    assert "e7" in expected["2026-01-01T07"][QUERIES[0]].column("event_id").to_pylist()
    refuse_reading(monkeypatch)
    for start, end in zip(hours, hours[1:]):
        warm = captureq.open(cap, labels=gt, start=start, end=end)
        for q in queries:
            assert warm.sql(q).to_arrow().equals(expected[start][q]), (start, q)
        assert warm._cache["warm"] is not None


def test_a_cache_part_overwritten_by_user_sql_is_never_served(tmp_path, cache_root):
    """Warm views read their Parquet parts natively, so a locked-down connection may open those
    exact files (and nothing else). SQL that overwrites one must not change a later answer: the
    part no longer has the size it was committed with, so the cache is not used (and dropped)."""
    from captureq.errors import QueryError

    cap, gt = tree(tmp_path)
    q = "select * from inputs order by capture_id, record_index"
    expected = captureq.open(cap, labels=gt, cache=False).sql(q).to_arrow()
    captureq.open(cap, labels=gt).sql("select 1")
    cache.wait()
    warm = captureq.open(cap, labels=gt)
    assert warm.sql(q).to_arrow().equals(expected)
    assert warm._cache["warm"] is not None
    parts = sorted(cache_root.glob("*/inputs/**/*.parquet"))
    assert parts
    altered = False
    for part in parts:
        for options in ("FORMAT parquet", "FORMAT parquet, USE_TMP_FILE false"):
            try:
                warm.sql(f"COPY (select 'x' as capture_id, 0 as record_index) TO '{part}' ({options})")
                altered = True
            except QueryError:  # refused: then the part is as it was
                pass
    again = captureq.open(cap, labels=gt)
    assert again.sql(q).to_arrow().equals(expected)
    assert (again._cache["warm"] is None) == altered  # never answered from an altered part
    captureq.open(cap, labels=gt).sql("select 1")
    cache.wait()
    healed = captureq.open(cap, labels=gt)
    assert healed.sql(q).to_arrow().equals(expected)
    assert healed._cache["warm"] is not None  # filled again, and used


def test_the_commit_log_is_compacted_as_fills_add_to_it(tmp_path, cache_root, monkeypatch):
    """Each fill of a growing tree adds commit records; folding a log that only grows would make
    every warm lookup slower by the day. Past ``COMPACT_AFTER`` records the fill folds them into
    one snapshot record, and the cache answers as before."""
    monkeypatch.setattr(cache, "COMPACT_AFTER", 4)
    cap, gt = tree(tmp_path)
    commits = lambda: sorted(cache_root.glob("*/_captureq/commits/*.json"))  # noqa: E731
    counts = []
    for i in range(9):  # a new file each time, as an endpoint writes them
        write_captures(cap, [capture(f"{i},1,1", "0.1", event_id=f"n{i}")], when=T0, name=None)
        cache.refresh(captureq.open(cap, labels=gt))
        counts.append(len(commits()))
    assert max(counts) <= 4 + 2  # never more than the threshold and the last run's records
    assert any(json.loads(p.read_text()).get("kind") == "snapshot" for p in commits())
    for q in QUERIES:
        cold = captureq.open(cap, labels=gt, cache=False).sql(q).to_arrow()
        warm = captureq.open(cap, labels=gt)
        assert warm.sql(q).to_arrow().equals(cold), q
        assert warm._cache["warm"] is not None
    # and the export keeps going on from the snapshot: a changed file replaces its rows
    path = write_captures(cap, [capture("5,5,5", "0.1", event_id="c")], when=T0, name=None)
    cache.refresh(captureq.open(cap, labels=gt))
    path.write_bytes(json.dumps(capture("6,6,6", "0.1", event_id="c")).encode() + b"\n")
    cache.refresh(captureq.open(cap, labels=gt))
    q = "select _c0 from inputs where event_id = 'c'"
    warm = captureq.open(cap, labels=gt)
    assert warm.sql(q).to_pylist() == [{"_c0": 6}]
    assert warm._cache["warm"] is not None


def test_a_fill_process_lists_with_the_querys_lateness(tmp_path, cache_root):
    """The detached fill rebuilds the plan from JSON: same window, same lateness, same files."""
    cap, gt = windowed_tree(tmp_path)
    for lateness in (None, timedelta(0), timedelta(hours=2)):
        plan = captureq.open(cap, labels=gt, start="2026-01-01T06", end="2026-01-01T07",
                             lateness=lateness)
        again = cache._plan_of(json.loads(json.dumps(cache._spec(plan, None))))
        assert again.window == plan.window and again.lateness == plan.lateness
        assert [f.rel for f in again.scan().files] == [f.rel for f in plan.scan().files]
