"""(a) captureq, through its public API: the ``predictions`` view, one row per record.

``captureq.open(tree).sql(JOB_SQL).to_arrow()`` — what a user writes. ``predictions`` is
inputs beside outputs (paired by captureq while decoding) left-joined with labels (none here).
"""

from __future__ import annotations

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


def run(job: Job):
    import captureq

    return captureq.open(job.tree, start=job.start, end=job.end).sql(JOB_SQL).to_arrow()


def hourly_raw(job: Job):
    """The hourly aggregate straight over the raw JSONL tree (every file read and decoded)."""
    import captureq

    return captureq.open(job.tree).sql(HOURLY_SQL).to_arrow()


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
