"""Run one contender in this process: warm up, time ``repeats`` runs, report JSON on stdout.

``python -m benchmarks.worker < spec.json`` — the harness starts one of these per contender so
that ``ru_maxrss`` (peak RSS) belongs to that contender alone. Thread limits are applied before
any library is imported.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import resource
import shutil
import statistics
import sys
import time

from .common import Job, checksums, to_polars


def limit_threads(threads: int) -> None:
    """Cap every library's thread pool at ``threads`` (pyarrow, polars, OpenMP, DuckDB)."""
    os.environ["POLARS_MAX_THREADS"] = str(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import duckdb
    import pyarrow as pa

    pa.set_cpu_count(threads)
    pa.set_io_thread_count(max(threads, 1))
    if getattr(duckdb.connect, "_bench_threads", None) != threads:
        connect = getattr(duckdb.connect, "_bench_original", duckdb.connect)

        def limited(database=":memory:", read_only=False, config=None, **kw):
            config = {"threads": threads, **(config or {})}
            return connect(database, read_only, config, **kw)

        limited._bench_threads = threads
        limited._bench_original = connect
        duckdb.connect = limited


def _task(name: str):
    module, func = name.split(":")
    return getattr(importlib.import_module(f"benchmarks.{module}"), func)


def summarize(kind: str, result) -> dict:
    """What the harness compares: checksums of a job's table, rows of a query, or nothing."""
    if kind == "table":
        return checksums(to_polars(result))
    if kind == "rows":
        import polars as pl
        import pyarrow as pa

        df = pl.from_arrow(result) if isinstance(result, pa.Table) else result
        df = df.with_columns(pl.col("hour").dt.epoch("s"), pl.col("mean_score").round(9)).sort("endpoint", "hour")
        return {"rows": df.height, "values": df.rows()}
    if kind == "count":
        return {"rows": int(result.num_rows if hasattr(result, "num_rows") else result)}
    if kind == "scalar":  # a one-value answer (count(*))
        return {"rows": result.num_rows, "value": result.column(0)[0].as_py()}
    if kind == "csv":  # a CSV file of the job's columns (whole-process contenders)
        return checksums(csv_table(result))
    return {}


def csv_table(path: str):
    """The job's table from a CSV file written by a whole-process contender (times as UTC)."""
    import polars as pl

    df = pl.read_csv(path, infer_schema_length=0)  # every column as text, parsed below
    t = df["inference_time"].str.replace(" ", "T").str.replace(r"([+-]\d\d)$", "${1}:00")
    return df.with_columns(
        inference_time=t.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", time_zone="UTC"),
        **{c: pl.col(c).cast(pl.Float64) for c in df.columns if c.startswith("f") or c == "score"},
    )


def run(spec: dict) -> dict:
    """Warm up, time ``spec['repeats']`` runs of ``spec['task']`` and summarize the last result."""
    threads = spec.get("threads")
    if threads:
        limit_threads(threads)
    job = Job(**spec["job"])
    func = _task(spec["task"])
    fresh_out = spec.get("fresh_out")  # a folder emptied before every run (exports)
    settle = _task(spec["settle"]) if spec.get("settle") else None  # untimed, after every run

    def once(j: Job):
        if fresh_out:
            shutil.rmtree(fresh_out, ignore_errors=True)
        return func(j)

    warmup = spec.get("warmup", "full")
    if warmup == "full":
        once(job)
    elif warmup == "first_file":
        once(Job(**{**spec["job"], "files": job.files[:1]}))
    if settle and warmup != "none":
        settle(job)
    gc.collect()
    times = []
    result = None
    for _ in range(spec.get("repeats", 3)):
        result = None
        gc.collect()
        t0 = time.perf_counter()
        result = once(job)
        times.append(time.perf_counter() - t0)
        if settle:  # e.g. wait for a detached cache fill: not the run's time, not the next run's
            settle(job)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"times": times, "median": statistics.median(times), "peak_rss_mib": peak_kib / 1024}
    out["summary"] = summarize(spec.get("check", "none"), result)
    return out


def main() -> None:
    spec = json.loads(sys.stdin.read())
    print("BENCH-RESULT " + json.dumps(run(spec)))


if __name__ == "__main__":
    main()
