"""(d) Polars alone: ``scan_ndjson`` with a schema, ``str.split`` and casts."""

from __future__ import annotations

from .common import FEATURES, Job


def _schema():
    import polars as pl

    payload = pl.Struct({"observedContentType": pl.String, "mode": pl.String, "data": pl.String,
                         "encoding": pl.String})
    return {
        "captureData": pl.Struct({"endpointInput": payload, "endpointOutput": payload}),
        "eventMetadata": pl.Struct({"eventId": pl.String, "inferenceId": pl.String, "inferenceTime": pl.String}),
        "eventVersion": pl.String,
    }


def run(job: Job):
    import polars as pl

    lf = pl.scan_ndjson(job.files, schema=_schema(), include_file_paths="path")
    data = pl.col("captureData").struct.field("endpointInput").struct.field("data")
    if job.encoding == "JSON":
        vec = data.str.json_decode(pl.Struct({"features": pl.List(pl.Float64)})).struct.field("features")
    else:
        if job.encoding == "BASE64":
            data = data.str.decode("base64").cast(pl.String)
        vec = data.str.strip_chars_end("\n").str.split(",").cast(pl.List(pl.Float64))
    parts = pl.col("path").str.split("/")
    meta = pl.col("eventMetadata")
    return (
        lf.select(
            parts.list.get(-7).alias("endpoint"),
            parts.list.get(-6).alias("variant"),
            meta.struct.field("eventId").alias("event_id"),
            meta.struct.field("inferenceTime").str.to_datetime(time_unit="us", time_zone="UTC").alias("inference_time"),
            vec.alias("v"),
            pl.col("captureData").struct.field("endpointOutput").struct.field("data").cast(pl.Float64).alias("score"),
        )
        .select("endpoint", "variant", "event_id", "inference_time",
                *[pl.col("v").list.get(k).alias(f"f{k}") for k in range(FEATURES)], "score")
        .collect()
    )
