"""The object-store scenario: many small objects behind an S3 endpoint that answers slowly.

``python -m benchmarks.s3latency`` (``make bench-s3``) serves capture trees of many small
objects (SageMaker writes one every few seconds per instance) from moto's S3 server on
loopback, behind a WSGI proxy that holds every request ``--latency`` milliseconds before
answering it (what a round trip to a real bucket costs). Each contender is a whole process,
timed from ``exec`` to its answer, for the same question, "how many input records, and the
mean of their first feature ``_c0``":

* ``captureq query s3://… --no-cache`` (the CLI, as a user runs it);
* polars ``scan_ndjson("s3://…/**/*.jsonl")`` with ``storage_options`` pointing at the server;
* a boto3 loop: list the prefix, GET each object in turn, ``json.loads`` each line.

Every answer is checked equal to the others'; the proxy counts the requests of each run
(GETs of objects, LISTs, HEADs). The table goes to stdout and, with ``--write``, into
``benchmarks/RESULTS.md`` between the markers of its section.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from urllib.parse import parse_qs, unquote

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "RESULTS.md")
BEGIN = "<!-- s3-latency: begin (written by python -m benchmarks.s3latency --write) -->"
END = "<!-- s3-latency: end -->"
SQL = "select count(*) as n, avg(_c0) as mean from inputs"
RECORDS_PER_OBJECT = 40
FILES_PER_HOUR = 20
ENDPOINTS = 2
CONTENDERS = ("captureq query --no-cache", "captureq query --no-cache, before", "polars scan_ndjson",
              "boto3 list + GET loop")


class Delay:
    """WSGI middleware: hold every request ``seconds`` before the app answers it, and count
    the requests by kind (``GET`` of an object, ``LIST``, ``HEAD``, …)."""

    def __init__(self, app, seconds: float):
        self.app = app
        self.seconds = seconds
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        path = unquote(environ.get("PATH_INFO", "")).lstrip("/")
        method = environ["REQUEST_METHOD"]
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if method == "GET" and "/" not in path.rstrip("/") and ("list-type" in query or "prefix" in query):
            kind = "LIST"
        else:
            kind = method
        with self._lock:
            self.counts[kind] += 1
        if self.seconds:
            time.sleep(self.seconds)
        return self.app(environ, start_response)


class SlowS3:
    """moto's S3 server on a free loopback port behind a :class:`Delay`."""

    def __init__(self, latency: float):
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        wsgi = self._server._server
        self.delay = wsgi.app = Delay(wsgi.app, latency)

    def stop(self) -> None:
        self._server.stop()

    def seed(self, bucket: str, tree: str, prefix: str) -> int:
        """Put every file of the local ``tree`` under ``s3://bucket/prefix`` (straight into the
        server's store: setup is not what is measured). Returns the number of objects."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        backend.create_bucket(bucket, "us-east-1")
        n = 0
        for folder, _, names in os.walk(tree):
            for name in names:
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    backend.put_object(bucket, f"{prefix}/{os.path.relpath(path, tree)}", f.read())
                n += 1
        return n


# -- the contenders, each a whole process printing "n,mean" ----------------------------------------
POLARS = r"""
import sys, polars as pl
url, endpoint = sys.argv[1], sys.argv[2]
opts = {"aws_endpoint_url": endpoint, "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
        "aws_region": "us-east-1", "aws_allow_http": "true"}
data = pl.col("captureData").struct.field("endpointInput").struct.field("data")
out = (pl.scan_ndjson(url + "/**/*.jsonl", storage_options=opts)
       .select(data.str.split(",").list.first().cast(pl.Float64).alias("c0"))
       .select(pl.len().alias("n"), pl.col("c0").mean().alias("mean")).collect())
print(f"{out['n'][0]},{out['mean'][0]!r}")
"""

BOTO3 = r"""
import json, sys, boto3
bucket, prefix, endpoint = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                  aws_secret_access_key="testing", region_name="us-east-1")
n, total = 0, 0.0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
    for obj in page.get("Contents", []):
        if not obj["Key"].endswith(".jsonl"):
            continue
        body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        for line in body.splitlines():
            if line.strip():
                record = json.loads(line)
                total += float(record["captureData"]["endpointInput"]["data"].split(",", 1)[0])
                n += 1
print(f"{n},{total / n!r}")
"""


def _env(root: str = ROOT) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
               AWS_EC2_METADATA_DISABLED="true", CAPTUREQ_NO_CACHE="1",
               PYTHONPATH=os.pathsep.join(p for p in [root, os.environ.get("PYTHONPATH", "")] if p))
    return env


BEFORE = "captureq query --no-cache, before"  # another checkout's captureq (--before DIR)


def commands(server: SlowS3, bucket: str, prefix: str) -> dict[str, list[str]]:
    url = f"s3://{bucket}/{prefix}"
    py = sys.executable
    captureq = [py, "-m", "captureq", "query", url, SQL, "--no-cache", "--format", "csv", "--quiet",
                "--storage-option", "key=testing", "--storage-option", "secret=testing",
                "--storage-option", f"client_kwargs.endpoint_url={server.endpoint_url}"]
    return {
        "captureq query --no-cache": captureq,
        BEFORE: captureq,
        "polars scan_ndjson": [py, "-c", POLARS, url, server.endpoint_url],
        "boto3 list + GET loop": [py, "-c", BOTO3, bucket, prefix, server.endpoint_url],
    }


def answer(name: str, stdout: str) -> tuple[int, float]:
    """``(n, mean)`` from a contender's output (captureq's CSV has a header line)."""
    last = [line for line in stdout.strip().splitlines() if line.strip()][-1]
    n, mean = last.split(",")
    return int(n), float(mean)


def run_one(server: SlowS3, argv: list[str], root: str = ROOT) -> tuple[float, str, Counter]:
    server.delay.counts.clear()
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=_env(root), cwd=root, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout, Counter(server.delay.counts)


def scenario(objects: int, latency_ms: float, repeats: int, contenders: list[str], data: str,
             before: str | None = None) -> list[dict]:
    """Time every contender on a tree of ``objects`` objects at ``latency_ms`` per request."""
    from captureq.generate import generate_benchmark_tree

    hours = objects // (ENDPOINTS * FILES_PER_HOUR)
    tree = os.path.join(data, f"s3-{objects}")
    if not os.path.isdir(tree):
        generate_benchmark_tree(tree, records=objects * RECORDS_PER_OBJECT, endpoints=ENDPOINTS, hours=hours,
                                files_per_hour=FILES_PER_HOUR, encoding="CSV", seed=0)
    server = SlowS3(latency_ms / 1000)
    try:
        bucket = f"bench-{objects}-{latency_ms:g}".replace(".", "-")
        n_objects = server.seed(bucket, tree, "capture")
        rows = []
        for name, argv in commands(server, bucket, "capture").items():
            if name not in contenders or (name == BEFORE and not before):
                continue
            root = before if name == BEFORE else ROOT
            slow = name.startswith("boto3")  # the baseline one GET at a time: one run, no warm-up
            if not slow:
                run_one(server, argv, root)  # warm-up: the page cache, the server's first answers
            times, outputs, counts = [], set(), Counter()
            for _ in range(1 if slow else repeats):
                seconds, stdout, counts = run_one(server, argv, root)
                times.append(seconds)
                outputs.add(answer(name, stdout))
            rows.append({"objects": n_objects, "latency_ms": latency_ms, "name": name, "times": times,
                         "median": statistics.median(times), "answers": sorted(outputs),
                         "requests": dict(counts)})
            print(f"  {objects} objects, {latency_ms:g} ms: {name}: {statistics.median(times):.2f} s "
                  f"{sorted(outputs)} {dict(counts)}", file=sys.stderr, flush=True)
        agree(rows)
        return rows
    finally:
        server.stop()


def agree(rows: list[dict]) -> None:
    """Mark each row ``same``: one answer over its runs, equal to the first contender's (the
    count exactly, the mean to 1e-9 relative: sums in another order)."""
    ref = rows[0]["answers"][0] if rows and len(rows[0]["answers"]) == 1 else None
    for row in rows:
        mine = row["answers"]
        row["same"] = bool(ref and len(mine) == 1 and mine[0][0] == ref[0]
                           and abs(mine[0][1] - ref[1]) <= 1e-9 * max(1.0, abs(ref[1])))


def render(rows: list[dict], args, elapsed: float, load: tuple[float, float]) -> str:
    from .harness import _machine

    out = [
        "## Object store: many small objects behind a slow endpoint (`python -m benchmarks.s3latency`)",
        "",
        (f"Written by `python -m benchmarks.s3latency {' '.join(args.argv)}` in {elapsed / 60:.1f} min. "
         f"Machine: {_machine()}{', **' + args.note + '**' if args.note else ''} (load average "
         f"{load[0]:.1f} at the start, {load[1]:.1f} at the end): compare the ratios, not the seconds."),
        "",
        (f"moto's S3 server on loopback behind a proxy holding every request the given time; "
         f"{RECORDS_PER_OBJECT} records per object ({ENDPOINTS} endpoints, {FILES_PER_HOUR} objects per "
         f"endpoint and hour, CSV payloads of 69 features). Each contender is a whole process (`exec` to "
         f"answer), median of {args.repeats} runs after a warm-up (the boto3 loop: one run); the question: "
         f"`{SQL}`. Requests are those of the last run, as the proxy saw them."),
        "",
        "| objects | latency | contender | median s | ÷ polars | GET | LIST | HEAD | same answer |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        polars = next((r for r in rows if r["objects"] == row["objects"] and r["latency_ms"] == row["latency_ms"]
                       and r["name"].startswith("polars")), None)
        ratio = f"{row['median'] / polars['median']:.2f}×" if polars else "–"
        req = row["requests"]
        out.append(f"| {row['objects']:,} | {row['latency_ms']:g} ms | {row['name']} | {row['median']:.2f} | "
                   f"{ratio} | {req.get('GET', 0)} | {req.get('LIST', 0)} | {req.get('HEAD', 0)} | "
                   f"{'yes' if row['same'] else '**no**'} |")
    return "\n".join(out)


def write(path: str, text: str) -> None:
    """Put ``text`` between :data:`BEGIN` and :data:`END` in ``path``; the first time, right
    after the harness's notes marker (what ``python -m benchmarks`` keeps when it rewrites the
    file), or at the end."""
    from .harness import NOTES

    with open(path) as f:
        old = f.read()
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    elif NOTES in old:
        at = old.index(NOTES) + len(NOTES)
        new = old[:at] + "\n" + block + "\n" + old[at:]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(new)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m benchmarks.s3latency", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objects", default="600,3000", help="objects per tree, comma-separated (default 600,3000)")
    p.add_argument("--latency", default="30,60", help="milliseconds per request, comma-separated (default 30,60)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per contender after a warm-up (default 3)")
    p.add_argument("--contenders", default="captureq,polars,boto3",
                   help="which of captureq, polars, boto3 to run (default all)")
    p.add_argument("--data", default=os.path.join(HERE, "data"), help="where the trees are generated")
    p.add_argument("--before", default=None, metavar="DIR",
                   help="also time the captureq of another checkout (a folder holding captureq/)")
    p.add_argument("--write", action="store_true", help="write the table into benchmarks/RESULTS.md")
    p.add_argument("--note", default="", help="said about the machine (e.g. 'shared by 8 engineers')")
    args = p.parse_args(argv)
    args.argv = argv
    wanted = [c.strip() for c in args.contenders.split(",") if c.strip()]
    names = [n for n in CONTENDERS if any(n.startswith(w) for w in wanted)]
    os.makedirs(args.data, exist_ok=True)
    load0, started = os.getloadavg()[0], time.perf_counter()
    rows = []
    for objects in (int(x) for x in args.objects.split(",")):
        for latency in (float(x) for x in args.latency.split(",")):
            rows += scenario(objects, latency, args.repeats, names, args.data, args.before)
    text = render(rows, args, time.perf_counter() - started, (load0, os.getloadavg()[0]))
    print(text)
    if args.write:
        write(RESULTS, text)
    return 0 if all(r["same"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
