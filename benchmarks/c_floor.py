"""(e) The floors: reading the bytes only, and pyarrow's JSON parse of the same bytes.

Neither does the job (no payload is decoded), so they are not checked for equal output —
they bound from below what any reader of these files can cost. The parse floor reads the
files in the same ~64 MB batches captureq uses and keeps the parsed tables.
"""

from __future__ import annotations

from .common import Job

BATCH_BYTES = 64 * 1024 * 1024


def read_bytes(job: Job) -> int:
    total = 0
    for path in job.files:
        with open(path, "rb") as f:
            total += len(f.read())
    return total


def _batches(files: list[str]):
    blobs, size = [], 0
    for path in files:
        with open(path, "rb") as f:
            blob = f.read()
        blobs.append(blob if blob.endswith(b"\n") else blob + b"\n")
        size += len(blob)
        if size >= BATCH_BYTES:
            yield b"".join(blobs)
            blobs, size = [], 0
    if blobs:
        yield b"".join(blobs)


def pyarrow_parse(job: Job):
    import pyarrow as pa
    import pyarrow.json as pj

    payload = pa.struct([("observedContentType", pa.string()), ("mode", pa.string()), ("data", pa.string()),
                         ("encoding", pa.string())])
    raw = pa.schema([
        ("captureData", pa.struct([("endpointInput", payload), ("endpointOutput", payload)])),
        ("eventMetadata", pa.struct([("eventId", pa.string()), ("inferenceId", pa.string()),
                                     ("inferenceTime", pa.string())])),
        ("eventVersion", pa.string()),
    ])
    tables = []
    for data in _batches(job.files):
        tables.append(pj.read_json(
            pa.py_buffer(data),
            read_options=pj.ReadOptions(block_size=4 << 20, use_threads=True),
            parse_options=pj.ParseOptions(explicit_schema=raw, unexpected_field_behavior="ignore"),
        ))
    return pa.concat_tables(tables)
