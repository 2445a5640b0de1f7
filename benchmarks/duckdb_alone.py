"""The whole-process DuckDB-alone contender: ``python -m benchmarks.duckdb_alone TREE ENCODING OUT.csv``.

What a user would write without captureq: glob the tree, one ``read_json`` statement with the
job's SQL (:func:`benchmarks.c_duckdb.job_sql`), ``COPY … TO`` CSV.
"""

from __future__ import annotations

import sys


def main(tree: str, encoding: str, out: str) -> None:
    import duckdb

    from benchmarks.c_duckdb import COLUMNS, job_sql

    files = f"{tree.rstrip('/')}/*/*/*/*/*/*/*.jsonl"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rel = con.sql(job_sql(encoding), params={"files": files, "columns": COLUMNS})
    rel.write_csv(out, header=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
