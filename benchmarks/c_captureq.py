"""(a) captureq, through its public API: the ``predictions`` view, one row per record.

``captureq.open(tree).sql(JOB_SQL).to_arrow()`` — what a user writes. ``predictions`` is
inputs beside outputs (paired by captureq while decoding) left-joined with labels (none here).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

from .common import FEATURES, Job

JOB_SQL = (
    "select endpoint, variant, event_id, inference_time, "
    + ", ".join(f'"_c{k}" as f{k}' for k in range(FEATURES))
    + ", output_c0 as score from predictions"
)

HOURLY_SQL = (
    "select endpoint, date_trunc('hour', inference_time) as hour, count(*) as n, avg(\"_c0\") as mean_score "
    "from outputs group by all order by all"
)


COUNT_SQL = "select count(*) as n from captures"


def run(job: Job):
    """The job in memory, as a first query (no Parquet cache used or written)."""
    import captureq

    return captureq.open(job.tree, start=job.start, end=job.end, cache=False).sql(JOB_SQL).to_arrow()


@contextlib.contextmanager
def pyarrow_outer_parser():
    """Within the block, every batch is read by the exact path alone (pyarrow's reader: the
    outer parser before DuckDB's), to compare the two in one run."""
    from captureq import parse

    fns = (parse.parse_captures, parse.parse_labels)
    old = [fn.__kwdefaults__["parser"] for fn in fns]
    for fn in fns:
        fn.__kwdefaults__["parser"] = "exact"
    try:
        yield
    finally:
        for fn, value in zip(fns, old):
            fn.__kwdefaults__["parser"] = value


def run_pyarrow_parser(job: Job):
    """The job in memory with pyarrow's reader as the outer parser."""
    with pyarrow_outer_parser():
        return run(job)


def hourly_raw(job: Job):
    """The hourly aggregate straight over the raw JSONL tree (every file read and decoded)."""
    import captureq

    return captureq.open(job.tree, cache=False).sql(HOURLY_SQL).to_arrow()


def count_now(job: Job):
    """``select count(*) from captures``: the plan parses the lines and decodes no payload."""
    import captureq

    return captureq.open(job.tree, cache=False).sql(COUNT_SQL).to_arrow()


def count_now_pyarrow_parser(job: Job):
    """:func:`count_now` with pyarrow's reader as the outer parser."""
    with pyarrow_outer_parser():
        return count_now(job)


def count_everything(job: Job):
    """The same count the way captureq did it before the scan plan: every table decoded first."""
    import captureq

    cq = captureq.open(job.tree, cache=False)
    cq.load()
    return cq.sql(COUNT_SQL).to_arrow()


@contextlib.contextmanager
def _cache_root(job: Job):
    """CAPTUREQ_CACHE set to the job's cache folder for the block."""
    old = os.environ.get("CAPTUREQ_CACHE")
    os.environ["CAPTUREQ_CACHE"] = job.extra["cache"]
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CAPTUREQ_CACHE", None)
        else:
            os.environ["CAPTUREQ_CACHE"] = old


_runs: dict[tuple, int] = {}  # (task, tree, sql) → runs so far in this worker: the first fills


def _first(*key) -> bool:
    _runs[key] = _runs.get(key, 0) + 1
    return _runs[key] == 1


def _warm(job: Job, sql: str):
    import captureq
    from captureq import cache

    with _cache_root(job):
        cq = captureq.open(job.tree, cache=True)
        result = cq.sql(sql).to_arrow()
        if _first("warm", job.tree, sql):
            assert cache.wait(), "the cache fill did not finish"  # the warm-up run fills the cache
        else:  # a timed run: it must really have been answered from the cache
            assert cq._cache.get("warm") is not None, "a warm run was not served from the cache"
    return result


def warm(job: Job):
    """The job again on a tree whose Parquet cache is fresh (the warm-up run filled it)."""
    return _warm(job, JOB_SQL)


def warm_hourly(job: Job):
    """The hourly aggregate again, from the fresh Parquet cache."""
    return _warm(job, HOURLY_SQL)


def first_hourly(job: Job):
    """The hourly aggregate as a first query with the cache on (the worker empties the cache
    before each run): answered in memory, the fill handed to a detached process."""
    import captureq

    with _cache_root(job):
        cq = captureq.open(job.tree, cache=True)
        result = cq.sql(HOURLY_SQL).to_arrow()
        assert cq._cache.get("warm") is None, "a first run found the cache filled"
    return result


def settle(job: Job):
    """Untimed, after each run: wait for the detached cache fill the run started."""
    from captureq import cache

    assert cache.wait(job.extra["cache"], timeout=600), "the cache fill did not finish"


def _cli(job: Job, *flags: str) -> str:
    out = job.extra["csv_out"]
    exe = os.path.join(os.path.dirname(sys.executable), "captureq")
    env = {**os.environ, "CAPTUREQ_CACHE": job.extra.get("cache", "")}
    with open(out, "wb") as f:
        subprocess.run([exe, "query", job.tree, JOB_SQL, "--format", "csv", *flags], stdout=f, env=env,
                       check=True)
    return out


def cli_cold_pyarrow_parser(job: Job):
    """:func:`cli_cold` with pyarrow's reader as the outer parser (set before the CLI runs)."""
    out = job.extra["csv_out"]
    code = ("import sys; from benchmarks.c_captureq import pyarrow_outer_parser; pyarrow_outer_parser().__enter__(); "
            "from captureq.cli import run; sys.argv = ['captureq', *sys.argv[1:]]; run()")
    env = {**os.environ, "CAPTUREQ_CACHE": job.extra.get("cache", "")}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(out, "wb") as f:
        subprocess.run([sys.executable, "-c", code, "query", job.tree, JOB_SQL, "--format", "csv", "--no-cache"],
                       stdout=f, env=env, check=True, cwd=root)
    return out


def cli_cold(job: Job):
    """Whole process: ``captureq query TREE SQL --format csv --no-cache`` into a file."""
    return _cli(job, "--no-cache")


def cli_cache(job: Job):
    """Whole process with the cache on (``job.extra['cache']``: emptied before each run = first
    query; the fill it leaves behind runs detached, waited for untimed by :func:`settle`)."""
    return _cli(job)


def cli_warm(job: Job):
    """Whole process, the cache filled by the warm-up run: asserted served from it (it touched
    the tree cache's last-used mark and left no fill behind)."""
    from captureq import cache

    first = _first("cli_warm", job.tree)
    began = time.time()
    out = _cli(job)
    if not first:
        with _cache_root(job):
            used = cache.cache_dir(job.tree, None) / cache.META / "last_used"
            assert not cache.pending(), "a warm CLI run started a cache fill: it was not served from the cache"
            assert used.stat().st_mtime >= began - 1, "a warm CLI run did not use the cache"
    return out


def export(job: Job):
    """``captureq export``: JSONL → hive-partitioned Parquet under ``job.extra['out']``."""
    import captureq

    return captureq.open(job.tree).export(job.extra["out"])


def hourly_export(job: Job):
    """The same hourly aggregate over the Parquet export, through the views captureq's shell uses."""
    import duckdb

    from captureq.export import shell_sql

    con = duckdb.connect()
    con.execute(shell_sql(job.extra["out"]))
    return con.sql(HOURLY_SQL).to_arrow_table()
