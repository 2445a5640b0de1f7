"""Deterministic benchmark trees under ``benchmarks/data/`` (git-ignored), reused when present.

A tree is written by :func:`captureq.generate.generate_benchmark_tree`; its folder name holds
every parameter, and a ``.json`` stamp next to it (written last) says it is complete, so a run
interrupted half-way is regenerated rather than silently reused.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timedelta, timezone

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
UTC = timezone.utc
START = datetime(2026, 1, 1, tzinfo=UTC)


def tree_params(records: int, encoding: str, *, features: int = 69, endpoints: int = 2, hours: int = 48,
                files_per_hour: int = 20, seed: int = 0) -> dict:
    return {"records": records, "features": features, "endpoints": endpoints, "hours": hours,
            "files_per_hour": files_per_hour, "encoding": encoding.upper(), "seed": seed}


def ensure_tree(params: dict, data_dir: str = DATA) -> tuple[str, dict]:
    """The path of the tree for ``params`` (generated if missing) and its stamp (bytes, files)."""
    from captureq.generate import generate_benchmark_tree

    p = params
    name = (f"{p['encoding'].lower()}-r{p['records']}-f{p['features']}-e{p['endpoints']}-h{p['hours']}"
            f"-fph{p['files_per_hour']}-s{p['seed']}")
    path = os.path.join(data_dir, name)
    stamp_path = path + ".json"
    if os.path.exists(stamp_path):
        with open(stamp_path) as f:
            stamp = json.load(f)
        if stamp.get("params") == p and os.path.isdir(path):
            return path, stamp
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(data_dir, exist_ok=True)
    summary = generate_benchmark_tree(path, records=p["records"], features=p["features"], endpoints=p["endpoints"],
                                      hours=p["hours"], files_per_hour=p["files_per_hour"],
                                      encoding=p["encoding"], seed=p["seed"], start=START)
    nbytes = sum(os.path.getsize(f) for f in summary.files)
    per_hour = {h.strftime("%Y/%m/%d/%H"): n for h, n in summary.captures_per_hour.items()}
    stamp = {"params": p, "captures": summary.captures, "files": summary.files_written, "bytes": nbytes,
             "captures_per_hour": per_hour}
    with open(stamp_path, "w") as f:
        json.dump(stamp, f)
    return path, stamp


def first_hours(stamp: dict, records: int) -> tuple[set[str], int, str]:
    """The first hours of a tree holding about ``records`` records: (hour folders, records, end time)."""
    hours: set[str] = set()
    n = 0
    for hour in sorted(stamp["captures_per_hour"]):
        if hours and n >= records:
            break
        hours.add(hour)
        n += stamp["captures_per_hour"][hour]
    end = START + timedelta(hours=len(hours))
    return hours, n, end.isoformat()
