"""Filling the warm cache off the critical path: a detached process writes it after the answer is
out (the CLI exits without waiting), fills queue behind one another instead of being dropped,
and the cache layout is cheap to write and to read."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from trees import T0, capture, write_captures

import captureq
from captureq import cache
from captureq.decode import DecodeOptions

SQL = "select capture_id, _c0, _c1 from inputs order by all"


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("CAPTUREQ_CACHE", str(root))
    yield root
    cache.wait(root)  # no fill left writing into a folder pytest will delete


def tree(root: Path, hours: int = 3) -> str:
    for h in range(hours):
        write_captures(root / "cap", [capture(f"{h},2,3", "0.5", event_id=f"e{h}",
                                              when=T0 + timedelta(hours=h)), "{junk"],
                       when=T0 + timedelta(hours=h))
    return str(root / "cap")


@contextlib.contextmanager
def writer_lock(folder: Path):
    """Hold the export lock of a tree cache, as a slow fill of another process would."""
    meta = folder / "_captureq"
    meta.mkdir(parents=True, exist_ok=True)
    with open(meta / "lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def warm_in_another_process(cap: str, sql: str, **window) -> tuple[str, bool]:
    script = (
        "import captureq, sys\n"
        f"cq = captureq.open({cap!r}, **{window!r})\n"
        f"rows = cq.sql({sql!r}).to_pylist()\n"
        "print(rows); print(cq._cache['warm'] is not None)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env=os.environ, timeout=120).stdout.splitlines()
    return out[0], out[1] == "True"


def test_the_cli_returns_before_the_fill_and_a_second_process_finds_it_warm(tmp_path, cache_root):
    cap = tree(tmp_path)
    cold = captureq.open(cap, cache=False).sql(SQL).to_pylist()
    exe = Path(sys.executable).with_name("captureq")
    with writer_lock(cache.cache_dir(cap, None)):  # the fill cannot start its export yet
        run = subprocess.run([str(exe), "query", cap, SQL, "--format", "csv"], capture_output=True,
                             text=True, timeout=120, env=os.environ)
        assert run.returncode == 0, run.stderr
        assert run.stdout.count("\n") == 1 + len(cold)  # the answer is out, the process is gone
        assert cache.pending(cache_root)  # its fill waits, detached, for its turn
        assert cache.lookup(captureq.open(cap)) is None
    assert cache.wait(cache_root, timeout=120)
    assert not cache.pending(cache_root)
    rows, warm = warm_in_another_process(cap, SQL)
    assert warm and rows == str(cold)


def test_fills_of_two_windows_queue_and_both_land(tmp_path, cache_root, monkeypatch):
    cap = tree(tmp_path, hours=4)
    windows = [{"start": T0, "end": T0 + timedelta(hours=2)},
               {"start": T0 + timedelta(hours=2), "end": T0 + timedelta(hours=4)}]
    cold = [captureq.open(cap, cache=False, **w).sql(SQL).to_pylist() for w in windows]
    with writer_lock(cache.cache_dir(cap, None)):
        for w, rows in zip(windows, cold):
            assert captureq.open(cap, **w).sql(SQL).to_pylist() == rows  # answered, fill queued
        assert len(cache.pending(cache_root)) == 2
    assert cache.wait(cache_root, timeout=120)
    for w, rows in zip(windows, cold):
        got, warm = warm_in_another_process(cap, SQL, **{k: v.isoformat() for k, v in w.items()})
        assert warm and got == str(rows)


def test_the_cache_key_follows_the_decode_options(tmp_path, cache_root):
    cap = tree(tmp_path)
    named = captureq.open(cap, options=DecodeOptions(input_names=["a", "b", "c"]))
    assert named.sql("select a from inputs order by a").to_pylist() == [{"a": 0}, {"a": 1}, {"a": 2}]
    cache.wait(cache_root)
    plain = captureq.open(cap)
    assert plain.sql("select _c0 from inputs order by 1").num_rows == 3  # not the named cache's
    cache.wait(cache_root)
    again = captureq.open(cap, options=DecodeOptions(input_names=["a", "b", "c"]))
    assert again.sql("select a from inputs order by a").num_rows == 3
    assert again._cache["warm"] is not None


def test_a_fill_writes_one_part_per_table_and_batch(tmp_path, cache_root):
    """Parts per hour partition made the fill write (and a warm read open) hundreds of small
    files: the cache keeps one part per table per batch of source files."""
    cap = tree(tmp_path, hours=6)
    captureq.open(cap).sql("select 1")
    assert cache.wait(cache_root)
    folder = cache.cache_dir(cap, None)
    for table in ("captures", "inputs", "outputs"):
        assert len(list((folder / table).rglob("*.parquet"))) == 1, table
    warm = captureq.open(cap, start=T0 + timedelta(hours=2), end=T0 + timedelta(hours=3))
    assert warm.sql("select _c0 from inputs").to_pylist() == [{"_c0": 2}]
    assert warm._cache["warm"] is not None


def test_warm_connections_of_two_trees_in_one_process_keep_their_own_views(tmp_path, cache_root):
    """Warm connections are cursors of one shared locked-down database: each has its own views."""
    a, b = tree(tmp_path / "a", hours=1), tree(tmp_path / "b", hours=2)
    for cap in (a, b):
        captureq.open(cap).sql("select 1")
    assert cache.wait(cache_root)
    qa, qb = captureq.open(a), captureq.open(b)
    assert qa.sql("select count(*) as n from inputs").to_pylist() == [{"n": 1}]
    assert qb.sql("select count(*) as n from inputs").to_pylist() == [{"n": 2}]
    assert qa.sql("select count(*) as n from predictions").to_pylist() == [{"n": 1}]
    assert qa._cache["warm"] is not None and qb._cache["warm"] is not None
    with pytest.raises(captureq.errors.QueryError):
        qb.sql(f"select * from read_text('{a}/**')")


def test_a_fill_deferred_to_exit_starts_at_wait(tmp_path, cache_root):
    """The CLI defers its fill to exit, so the fill does not compete with writing the answer."""
    cap = tree(tmp_path)
    cq = captureq.open(cap)
    cq.cache_fill_at_exit = True
    assert cq.sql(SQL).num_rows == 3
    assert not cache.pending(cache_root) and cache.lookup(captureq.open(cap)) is None  # not yet
    assert cache.wait(cache_root)  # starts it, then waits for it
    assert cache.lookup(captureq.open(cap)) is not None


def test_the_fill_process_imports_this_captureq_whatever_the_working_folder(tmp_path, cache_root,
                                                                            monkeypatch):
    """``python -c`` puts the working folder first on sys.path: a folder holding another
    ``captureq`` (a source checkout of another version) must not be what the fill runs."""
    cap = tree(tmp_path)
    other = tmp_path / "elsewhere"
    (other / "captureq").mkdir(parents=True)
    (other / "captureq" / "__init__.py").write_text("raise ImportError('not this captureq')\n")
    monkeypatch.chdir(other)
    captureq.open(cap).sql("select 1")
    assert cache.wait(cache_root, timeout=120)
    assert cache.lookup(captureq.open(cap)) is not None
