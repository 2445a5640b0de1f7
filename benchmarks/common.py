"""What every contender shares: the job's description, its output columns and the checksums."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

FEATURES = 69
FEATURE_NAMES = [f"f{i}" for i in range(FEATURES)]
KEY_NAMES = ["endpoint", "variant", "event_id", "inference_time"]
COLUMNS = KEY_NAMES + FEATURE_NAMES + ["score"]


@dataclass
class Job:
    """One contender's task: read ``files`` (all under ``tree``) into the output table."""

    tree: str
    encoding: str  # CSV, JSON or BASE64: how the input payloads are stored
    files: list[str]
    records: int  # records in ``files`` (for records/s)
    nbytes: int  # bytes of ``files`` (for MB/s)
    start: str | None = None  # the window of ``files``, for contenders that take a time window
    end: str | None = None
    extra: dict = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def loads(text: str) -> Job:
        return Job(**json.loads(text))


def list_files(tree: str, hours: set[str] | None = None) -> list[str]:
    """Every ``.jsonl`` file under ``tree`` (sorted); only those of ``hours`` ("yyyy/mm/dd/hh") if given."""
    out = []
    for root, _dirs, names in os.walk(tree):
        for name in names:
            if name.endswith(".jsonl"):
                path = os.path.join(root, name)
                if hours is None or "/".join(path.split(os.sep)[-5:-1]) in hours:
                    out.append(path)
    out.sort()
    return out


def partition(path: str) -> tuple[str, str]:
    """``(endpoint, variant)`` of a file at ``{tree}/{endpoint}/{variant}/yyyy/mm/dd/hh/{file}``."""
    parts = path.split(os.sep)
    return parts[-7], parts[-6]


def checksums(df) -> dict:
    """Order-independent checksums of a result (a polars DataFrame with :data:`COLUMNS`).

    Strings: null count, total bytes and the wrapping sum of their hashes; timestamps: sum of
    epoch microseconds; numbers: null count and sum (compared with a relative tolerance).
    """
    import polars as pl

    out: dict = {"rows": df.height, "columns": list(df.columns)}
    for name in df.columns:
        s = df.get_column(name)
        if s.dtype == pl.String:
            out[name] = [s.null_count(), int(s.str.len_bytes().sum() or 0),
                         int(s.hash(seed=0).cast(pl.UInt64).sum() or 0) % (1 << 64)]
        elif isinstance(s.dtype, pl.Datetime):
            out[name] = [s.null_count(), int(s.dt.epoch("us").sum() or 0)]
        else:
            out[name] = [s.null_count(), float(s.cast(pl.Float64).sum() or 0.0)]
    return out


def compare(expected: dict, got: dict, rel: float = 1e-9) -> list[str]:
    """Differences between two :func:`checksums` results (empty when they agree)."""
    problems = []
    if expected["rows"] != got["rows"]:
        problems.append(f"rows: expected {expected['rows']}, got {got['rows']}")
    if expected["columns"] != got["columns"]:
        problems.append("columns differ")
        return problems
    for name in expected["columns"]:
        a, b = expected[name], got[name]
        if a[0] != b[0]:
            problems.append(f"{name}: {a[0]} nulls expected, got {b[0]}")
        for x, y in zip(a[1:], b[1:]):
            if isinstance(x, float) or isinstance(y, float):
                if abs(x - y) > rel * max(1.0, abs(x), abs(y)):
                    problems.append(f"{name}: sum {x!r} expected, got {y!r}")
            elif x != y:
                problems.append(f"{name}: checksum {x} expected, got {y}")
    return problems


def to_polars(result):
    """A contender's result (Arrow table, polars or DuckDB) as a polars DataFrame of :data:`COLUMNS`."""
    import polars as pl
    import pyarrow as pa

    if isinstance(result, pa.Table):
        result = pl.from_arrow(result)
    if result.columns != COLUMNS:
        raise ValueError(f"result columns {result.columns[:6]}… are not the job's columns")
    return result
