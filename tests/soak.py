"""The long scale run (``make soak``; not part of ``make test``).

1. Generates a large capture tree (10 M records by default, several GB) unless it exists.
2. In a fresh subprocess each: streams the whole tree through scan → read → parse → decode
   without keeping the tables, then exports it to Parquet; peak RSS of each process from
   ``resource.getrusage``. The export is then checked with duckdb: every record exactly once.
3. Lists 30 days × 24 hours × several endpoints on the loopback S3 server: LIST calls and time.

    python tests/soak.py --records 10000000 --dir /work/soak
    python tests/soak.py --records 2000000            # a smaller run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

STREAM = """
import json, resource, sys, time
import captureq
from captureq.pipeline import Counts, run_captures
t0 = time.monotonic()
cq = captureq.open(sys.argv[1])
scan = cq.scan()
listed = time.monotonic() - t0
counts = Counts()
for r in run_captures(cq.scanner().fs, scan.files, cq.options):
    counts.add(r.counts)
print(json.dumps({"files": len(scan.files), "bytes": scan.total_bytes, "list_seconds": listed,
                  "seconds": time.monotonic() - t0, "rows": counts.rows, "input_records": counts.input_records,
                  "reconciles": counts.reconciles, "files_failed": counts.files_failed,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

EXPORT = """
import json, resource, sys, time
import captureq
t0 = time.monotonic()
s = captureq.open(sys.argv[1]).export(sys.argv[2])
print(json.dumps({"seconds": time.monotonic() - t0, "files": s.files_exported, "rows": s.rows,
                  "parts": s.parts_written, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def generate(root: Path, records: int, endpoints: int, hours: int, files_per_hour: int) -> dict:
    from captureq.generate import generate_benchmark_tree

    stamp = root / "soak.json"
    want = {"records": records, "endpoints": endpoints, "hours": hours, "files_per_hour": files_per_hour}
    if stamp.exists() and json.loads(stamp.read_text())["params"] == want:
        return json.loads(stamp.read_text())
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.monotonic()
    s = generate_benchmark_tree(str(root / "capture"), records=records, endpoints=endpoints, hours=hours,
                                files_per_hour=files_per_hour)
    info = {"params": want, "captures": s.captures, "files": s.files_written,
            "bytes": sum(p.stat().st_size for p in (root / "capture").rglob("*.jsonl")),
            "seconds": time.monotonic() - t0}
    stamp.write_text(json.dumps(info))
    return info


def s3_listing(days: int, endpoints: int) -> dict:
    """Seed days × 24 hours × endpoints objects, then time full and narrowed scans."""
    sys.path.insert(0, str(HERE))
    os.environ.setdefault("AWS_CONFIG_FILE", "/nonexistent")
    os.environ.setdefault("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    from datetime import datetime, timedelta, timezone

    from s3util import S3Server, new_bucket

    import captureq

    server = S3Server().start()
    try:
        fs = server.filesystem()
        bucket = new_bucket(fs)
        start = datetime(2026, 1, 1, tzinfo=timezone.utc)
        objects = {}
        for e in range(endpoints):
            for h in range(days * 24):
                t = start + timedelta(hours=h)
                objects[f"capture/ep-{e}/AllTraffic/{t:%Y/%m/%d/%H}/{t:%M-%S}-000-x.jsonl"] = b"{}\n"
        server.seed(bucket, objects)
        results = {"objects": len(objects)}
        windows = {
            "everything": {},
            "one endpoint, all days": {"endpoint": "ep-0"},
            "7 days, ragged ends": {"start": start + timedelta(days=10, hours=5),
                                    "end": start + timedelta(days=17, hours=7)},
            "3 hours": {"start": start + timedelta(days=20, hours=3), "end": start + timedelta(days=20, hours=6)},
        }
        for name, window in windows.items():
            server.log.clear()
            t0 = time.monotonic()
            scan = captureq.open(f"s3://{bucket}/capture", storage_options=server.storage_options(), **window).scan()
            results[name] = {"files": len(scan.files), "list_calls": scan.list_calls,
                             "lists_on_server": len(server.log.lists(bucket)),
                             "seconds": round(time.monotonic() - t0, 3)}
        return results
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=10_000_000)
    ap.add_argument("--endpoints", type=int, default=4)
    ap.add_argument("--hours", type=int, default=48)
    ap.add_argument("--files-per-hour", type=int, default=20)
    ap.add_argument("--dir", default=str(HERE.parent / "soak-data"))
    ap.add_argument("--s3-days", type=int, default=30)
    ap.add_argument("--s3-endpoints", type=int, default=4)
    ap.add_argument("--keep", action="store_true", help="keep the export folder")
    args = ap.parse_args(argv)

    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    need = args.records * 700 * 1.6  # tree + export, with room
    free = shutil.disk_usage(root).free
    if free < need:
        sys.exit(f"soak: {free / 1e9:.1f} GB free at {root}, about {need / 1e9:.1f} GB needed; "
                 f"use --records {int(free / 700 / 1.6):,} or another --dir")
    report: dict = {}
    report["generate"] = generate(root, args.records, args.endpoints, args.hours, args.files_per_hour)
    print("generated:", report["generate"], flush=True)
    capture, out = root / "capture", root / "export"
    report["stream"] = run_child(STREAM, str(capture))
    print("scan+read+decode:", report["stream"], flush=True)
    shutil.rmtree(out, ignore_errors=True)
    report["export"] = run_child(EXPORT, str(capture), str(out))
    print("export:", report["export"], flush=True)

    import duckdb

    n, distinct = duckdb.execute("select count(*), count(distinct capture_id) from read_parquet(?)",
                                 [f"{out}/captures/**/*.parquet"]).fetchone()
    report["check"] = {"captures": n, "distinct_capture_ids": distinct,
                       "export_bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file())}
    print("check:", report["check"], flush=True)
    assert n == distinct == report["generate"]["captures"] == report["stream"]["rows"], report
    assert report["stream"]["reconciles"] and report["stream"]["files_failed"] == 0
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)

    report["s3_listing"] = s3_listing(args.s3_days, args.s3_endpoints)
    print("s3 listing:", json.dumps(report["s3_listing"], indent=1), flush=True)
    (root / "soak-report.json").write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
