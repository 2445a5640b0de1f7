"""(c) DuckDB SQL alone: ``read_json`` with explicit columns, ``string_split`` and casts."""

from __future__ import annotations

import os

from .common import FEATURES, Job

_PAYLOAD = "STRUCT(observedContentType VARCHAR, mode VARCHAR, data VARCHAR, encoding VARCHAR)"
COLUMNS = {
    "captureData": f"STRUCT(endpointInput {_PAYLOAD}, endpointOutput {_PAYLOAD})",
    "eventMetadata": "STRUCT(eventId VARCHAR, inferenceId VARCHAR, inferenceTime VARCHAR)",
    "eventVersion": "VARCHAR",
}
_PAYLOAD_TEXT = {
    "CSV": "captureData.endpointInput.data",
    "BASE64": "decode(from_base64(captureData.endpointInput.data))",
}


def job_sql(encoding: str) -> str:
    if encoding == "JSON":
        vec = "from_json(captureData.endpointInput.data, '{\"features\": \"DOUBLE[]\"}').features"
    else:
        vec = f"CAST(string_split(rtrim({_PAYLOAD_TEXT[encoding]}, chr(10)), ',') AS DOUBLE[])"
    cols = ", ".join(f"v[{k + 1}] AS f{k}" for k in range(FEATURES))
    return f"""
        WITH raw AS (
            SELECT string_split(filename, '/')[-7] AS endpoint,
                   string_split(filename, '/')[-6] AS variant,
                   eventMetadata.eventId AS event_id,
                   CAST(eventMetadata.inferenceTime AS TIMESTAMPTZ) AS inference_time,
                   {vec} AS v,
                   CAST(captureData.endpointOutput.data AS DOUBLE) AS score
            FROM read_json($files, format = 'newline_delimited', columns = $columns, filename = true)
        )
        SELECT endpoint, variant, event_id, inference_time, {cols}, score FROM raw
    """


def run(job: Job):
    import duckdb

    con = duckdb.connect(config={"threads": job.extra.get("threads", 2)})
    rel = con.sql(job_sql(job.encoding), params={"files": job.files, "columns": COLUMNS})
    return rel.to_arrow_table()


def hourly_raw(job: Job):
    """The hourly aggregate with DuckDB straight over the JSONL (no payload decoding needed)."""
    import duckdb

    con = duckdb.connect(config={"threads": job.extra.get("threads", 2)})
    return con.execute(
        """SELECT string_split(filename, '/')[-7] AS endpoint,
                  date_trunc('hour', CAST(eventMetadata.inferenceTime AS TIMESTAMPTZ)) AS hour,
                  count(*) AS n, avg(CAST(captureData.endpointOutput.data AS DOUBLE)) AS mean_score
           FROM read_json($files, format = 'newline_delimited', columns = $columns, filename = true)
           GROUP BY ALL ORDER BY ALL""",
        {"files": job.files, "columns": COLUMNS},
    ).to_arrow_table()


def cli_script(job: Job):
    """Whole process: a Python script that runs the job with DuckDB alone and writes CSV."""
    import subprocess
    import sys

    out = job.extra["csv_out"]
    subprocess.run([sys.executable, "-m", "benchmarks.duckdb_alone", job.tree, job.encoding, out], check=True,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return out
