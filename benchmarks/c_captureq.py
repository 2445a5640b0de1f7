"""(a) captureq, through its public API: the ``predictions`` view, one row per record.

``captureq.open(tree).sql(JOB_SQL).to_arrow()`` — what a user writes. ``predictions`` is
inputs beside outputs (paired by captureq while decoding) left-joined with labels (none here).
"""

from __future__ import annotations

import os
import subprocess
import sys

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


def hourly_raw(job: Job):
    """The hourly aggregate straight over the raw JSONL tree (every file read and decoded)."""
    import captureq

    return captureq.open(job.tree, cache=False).sql(HOURLY_SQL).to_arrow()


def count_now(job: Job):
    """``select count(*) from captures``: the plan parses the lines and decodes no payload."""
    import captureq

    return captureq.open(job.tree, cache=False).sql(COUNT_SQL).to_arrow()


def count_everything(job: Job):
    """The same count the way captureq did it before the scan plan: every table decoded first."""
    import captureq

    cq = captureq.open(job.tree, cache=False)
    cq.load()
    return cq.sql(COUNT_SQL).to_arrow()


def _warm(job: Job, sql: str):
    import captureq
    from captureq import cache

    old = os.environ.get("CAPTUREQ_CACHE")
    os.environ["CAPTUREQ_CACHE"] = job.extra["cache"]
    try:
        result = captureq.open(job.tree, cache=True).sql(sql).to_arrow()
        cache.wait()  # a miss fills the cache: that time counts
    finally:
        if old is None:
            os.environ.pop("CAPTUREQ_CACHE", None)
        else:
            os.environ["CAPTUREQ_CACHE"] = old
    return result


def warm(job: Job):
    """The job again on a tree whose Parquet cache is fresh (the warm-up run filled it)."""
    return _warm(job, JOB_SQL)


def warm_hourly(job: Job):
    """The hourly aggregate again, from the fresh Parquet cache."""
    return _warm(job, HOURLY_SQL)


def _cli(job: Job, *flags: str) -> str:
    out = job.extra["csv_out"]
    exe = os.path.join(os.path.dirname(sys.executable), "captureq")
    env = {**os.environ, "CAPTUREQ_CACHE": job.extra.get("cache", "")}
    with open(out, "wb") as f:
        subprocess.run([exe, "query", job.tree, JOB_SQL, "--format", "csv", *flags], stdout=f, env=env,
                       check=True)
    return out


def cli_cold(job: Job):
    """Whole process: ``captureq query TREE SQL --format csv --no-cache`` into a file."""
    return _cli(job, "--no-cache")


def cli_cache(job: Job):
    """Whole process with the cache on (``job.extra['cache']``: fresh before each run = first query)."""
    return _cli(job)


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
