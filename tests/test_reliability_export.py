"""Exports that are killed, run twice at once, or fed hostile names and credentials.

* ``captureq export`` SIGKILLed at random points, again and again, then run to the end: the
  Parquet holds every record exactly once, readers never see a temp or half-written file, and
  the manifest agrees with the parts on disk.
* Two exports into one output at once: one runs, the other refuses (ExportError), nothing doubles.
* Endpoint/variant names with quotes, semicolons and ``..``, and user filters, never reach SQL
  unescaped nor a path outside the output; credentials never reach logs or the manifest;
  captureq never writes into the capture tree it reads.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from trees import T0, capture, write_captures

import captureq
from captureq.export import META, read_manifest, shell_sql
from captureq.generate import generate_benchmark_tree

pytestmark = pytest.mark.slow  # kills exports at random points, again and again

CLI = [str(Path(sys.executable).parent / "captureq")]
RECORDS = 40_000


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory) -> Path:
    """1,200 files (three export batches), big enough that a kill lands mid-export."""
    root = tmp_path_factory.mktemp("big") / "capture"
    generate_benchmark_tree(str(root), records=RECORDS, endpoints=2, hours=12, files_per_hour=50)
    return root


def visible_files(out: Path) -> list[Path]:
    """Every file a reader of ``captures/**`` etc. could see (all but ``_captureq/``)."""
    return [p for p in out.rglob("*") if p.is_file() and META not in p.relative_to(out).parts]


def check_reader_view(out: Path) -> None:
    """What a reader sees at any moment: whole Parquet parts, no capture twice."""
    for p in visible_files(out):
        assert p.name.startswith("part-") and p.suffix == ".parquet", p
        pq.read_metadata(p)  # a complete file (a torn one has no footer)
    if list((out / "captures").rglob("*.parquet")) if (out / "captures").exists() else []:
        n, distinct = duckdb.execute(
            "select count(*), count(distinct capture_id) from read_parquet(?)",
            [f"{out}/captures/**/*.parquet"]).fetchone()
        assert n == distinct


def check_manifest(out: Path) -> dict:
    manifest = read_manifest(str(out))
    commits = [json.loads(p.read_text()) for p in sorted((out / META / "commits").glob("*.json"))]
    parts = {p["path"] for c in commits for p in c["parts"]}
    on_disk = {p.relative_to(out).as_posix() for p in visible_files(out)}
    assert parts == on_disk, "every committed part is on disk, and nothing else is"
    for table, info in manifest["tables"].items():
        rows = sum(pq.read_metadata(out / p).num_rows for p in parts if p.startswith(f"{table}/"))
        assert (info["rows"], info["parts"]) == (rows, sum(p.startswith(f"{table}/") for p in parts))
    sources = [s["rel"] for c in commits for s in c["sources"]]
    assert len(sources) == len(set(sources)) == manifest["source_files"], "a source file committed twice"
    return manifest


def test_sigkill_at_random_points_then_rerun_exports_every_record_once(big_tree, tmp_path):
    out = tmp_path / "out"
    rng = random.Random(int(os.environ.get("CAPTUREQ_KILL_SEED", "8")))
    # small batches on one worker: many commits per run, so a kill lands between any two
    env = {**os.environ, "CAPTUREQ_BATCH_BYTES": str(256 * 1024), "CAPTUREQ_WORKERS": "1"}
    # how long a whole export works on this machine now (from its first part to its end): the
    # eight kills are drawn inside a tenth of that each, so every run is cut before the export
    # is done (a fixed span goes stale as the engine gets faster)
    timing = tmp_path / "timing"
    proc = subprocess.Popen([*CLI, "export", str(big_tree), str(timing)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = None
    while proc.poll() is None:
        if started is None and (timing / META / "tmp").exists() and any((timing / META / "tmp").iterdir()):
            started = time.monotonic()
        time.sleep(0.01)
    assert proc.returncode == 0
    span = (time.monotonic() - started) / 10 if started else 0.1
    kills = 0
    for _ in range(8):
        runs_before = set((out / META / "tmp").iterdir()) if (out / META / "tmp").exists() else set()
        proc = subprocess.Popen([*CLI, "export", str(big_tree), str(out)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:  # wait until the run has started
            if (out / META / "tmp").exists() and set((out / META / "tmp").iterdir()) - runs_before:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, span))  # then kill it anywhere: writing parts, renaming, committing
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        check_reader_view(out)
    assert kills >= 6, "the kills should land while the export runs"
    done = subprocess.run([*CLI, "export", str(big_tree), str(out)], capture_output=True, text=True, check=True)
    assert "exported" in done.stdout

    check_reader_view(out)
    assert not list((out / META / "tmp").iterdir()), "the last run leaves no temp files"
    manifest = check_manifest(out)
    assert manifest["source_files"] == 1200
    n, distinct = duckdb.execute("select count(*), count(distinct capture_id) from read_parquet(?)",
                                 [f"{out}/captures/**/*.parquet"]).fetchone()
    assert n == distinct == RECORDS
    assert duckdb.execute("select count(*) from read_parquet(?)", [f"{out}/inputs/**/*.parquet"]).fetchone()[0] \
        == RECORDS
    assert manifest["tables"]["captures"]["rows"] == RECORDS


def test_two_exports_at_once_one_runs_the_other_refuses(big_tree, tmp_path):
    out = tmp_path / "out"
    procs = [subprocess.Popen([*CLI, "export", str(big_tree), str(out)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert sorted(code == 0 for code, _, _ in results) == [False, True], results
    refused = next(out + err for code, out, err in results if code)
    assert "another captureq export is writing to" in refused
    check_reader_view(out)
    assert check_manifest(out)["tables"]["captures"]["rows"] == RECORDS


# -- hostile names -----------------------------------------------------------------------------

HOSTILE = ["ep'; DROP TABLE captures; --", 'ep"quoted"', "..", "ep%2F..%2Fescape", "ep name with spaces",
           "ép-ünï", "ep\\back"]


@pytest.fixture
def hostile_tree(tmp_path) -> Path:
    root = tmp_path / "capture"
    for i, name in enumerate(HOSTILE):
        endpoint = name if name != ".." else "..."  # a folder cannot be named ".."; S3 keys can (below)
        write_captures(root, [capture("1,2", "0.5", event_id=f"e{i}")], endpoint=endpoint, variant=f"v'{i};..")
    return root


def names(table) -> list[str]:
    return sorted(set(table["endpoint"].to_pylist()))


def test_hostile_names_are_data_not_sql_and_stay_inside_the_output(hostile_tree, tmp_path):
    expected = sorted(n if n != ".." else "..." for n in HOSTILE)
    cq = captureq.open(str(hostile_tree))
    assert names(cq.captures()) == expected
    got = cq.sql("select endpoint, variant, count(*) n from predictions group by all order by 1").to_pylist()
    assert [r["endpoint"] for r in got] == expected and all(r["n"] == 1 for r in got)
    for name in expected:  # user filters are globs on names, never SQL
        assert cq.where(endpoint=name).captures()["endpoint"].to_pylist() == [name]
    assert cq.where(endpoint="x' OR '1'='1").captures().num_rows == 0
    assert cq.sql("select count(*) n from captures where endpoint = $1", [expected[0]]).to_pylist() == [{"n": 1}]

    out = tmp_path / "o'ut; --"
    cq.export(str(out))
    for p in tmp_path.rglob("*"):
        assert p.resolve().is_relative_to(out.resolve()) or p.resolve().is_relative_to(hostile_tree.resolve()) \
            or p == out, p
    parts = list((out / "captures").glob("*/*/date=*/hour=*/*.parquet"))
    assert len(parts) == len(HOSTILE)
    assert all(p.parent.parent.parent.parent.parent == out / "captures" for p in parts)
    # the partition folders hold the names unchanged (percent-encoded), and DuckDB and the
    # duckdb-shell SQL read them back
    files = duckdb.connect().execute("select distinct endpoint from read_parquet(?, hive_partitioning = true) "
                                     "order by 1", [f"{out}/captures/**/*.parquet"]).fetchall()
    assert [r[0] for r in files] == expected
    con = duckdb.connect()
    con.execute(shell_sql(str(out)))
    assert [r[0] for r in con.execute("select distinct endpoint from captures order by 1").fetchall()] == expected
    assert con.execute("select distinct variant from captures where endpoint = '...'").fetchall() == [("v'2;..",)]


def test_dot_dot_segments_in_s3_keys_never_escape_the_output(s3_fs, s3_bucket, s3_options, tmp_path):
    data = json.dumps(capture("1,2", "0.5")).encode() + b"\n"
    hour = f"{T0:%Y/%m/%d/%H}"
    keys = [f"{s3_bucket}/capture/../AllTraffic/{hour}/a.jsonl", f"{s3_bucket}/capture/ep/../{hour}/b.jsonl",
            f"{s3_bucket}/capture/ep/v/{hour}/../c.jsonl"]
    for key in keys:
        s3_fs.pipe(key, data)
    cq = captureq.open(f"s3://{s3_bucket}/capture", storage_options=s3_options)
    out = tmp_path / "export" / "out"
    cq.export(str(out))
    written = [p for p in (tmp_path / "export").rglob("*")]
    assert written and all(p.resolve().is_relative_to(out.resolve()) for p in written if p != out)
    assert {p.name for p in tmp_path.iterdir()} == {"export"}
    check_manifest(out)


# -- credentials ---------------------------------------------------------------------------------

KEY, SECRET = "AKIAFAKEKEY0123456789", "fake/secret+KEY/never-logged-0123456789"


def test_credentials_never_reach_logs_output_or_manifest(s3_server, s3_fs, s3_bucket, corpus, tmp_path, caplog):
    from s3util import upload_tree

    upload_tree(s3_fs, corpus, f"s3://{s3_bucket}/capture")
    opts = {**s3_server.storage_options(), "key": KEY, "secret": SECRET}
    out = tmp_path / "out"
    with caplog.at_level(logging.DEBUG):
        tree = captureq.open(f"s3://{s3_bucket}/capture", storage_options=opts)
        tree.export(str(out))
        tree.sql("select count(*) from captures").to_pylist()
    # botocore's own DEBUG log names the access key id (not a secret) in the signed header; the
    # secret is in no log, and captureq's records name neither
    assert SECRET not in caplog.text
    assert not [r for r in caplog.records if r.name.startswith("captureq") and KEY in r.getMessage()]
    for p in out.rglob("*"):
        if p.is_file():
            assert KEY.encode() not in p.read_bytes() and SECRET.encode() not in p.read_bytes(), p

    # the CLI, given them as --storage-option, echoes neither
    env = {**os.environ, "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
    run = subprocess.run([*CLI, "export", f"s3://{s3_bucket}/capture", str(tmp_path / "cli-out"),
                          "--storage-option", f"key={KEY}", "--storage-option", f"secret={SECRET}",
                          "--storage-option", f"client_kwargs.endpoint_url={s3_server.endpoint_url}"],
                         check=False, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert KEY not in run.stdout + run.stderr and SECRET not in run.stdout + run.stderr


def test_uris_with_user_and_password_are_redacted_in_the_manifest(corpus, tmp_path):
    tree = captureq.open(str(corpus))
    tree.scan()
    # The same tree, as if it had been opened through a URL carrying credentials.
    secret_uri = f"https://user:{SECRET}@example.com/capture"
    tree = dataclasses.replace(tree, uri=secret_uri, labels_uri=f"ftp://user:{SECRET}@host/labels", _cache=tree._cache)
    tree._cache["label_scan"] = (None, None)
    tree.export(str(tmp_path / "out"))
    text = (tmp_path / "out" / META / "manifest.json").read_text()
    assert SECRET not in text
    manifest = json.loads(text)
    assert (manifest["source"], manifest["labels_source"]) == ("https://example.com/capture", "ftp://host/labels")


# -- the source tree is read-only to captureq ----------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in [root, *root.rglob("*")]}


def test_captureq_never_writes_into_the_capture_tree(hostile_tree, tmp_path):
    labels = tmp_path / "labels"
    (labels / f"{T0:%Y/%m/%d/%H}").mkdir(parents=True)
    (labels / f"{T0:%Y/%m/%d/%H}" / "l.jsonl").write_text(
        json.dumps({"groundTruthData": {"data": "1", "encoding": "CSV"},
                    "eventMetadata": {"eventId": "e0"}, "eventVersion": "0"}) + "\n")
    before = snapshot(hostile_tree), snapshot(labels)
    cq = captureq.open(str(hostile_tree), labels=str(labels))
    cq.scan()
    cq.load()
    cq.sql("select * from predictions").to_pylist()
    cq.export(str(tmp_path / "out"))
    cq.export(str(tmp_path / "out"))
    subprocess.run([*CLI, "query", str(hostile_tree), "select count(*) from captures", "--labels", str(labels)],
                   capture_output=True, check=True, env={**os.environ, "CAPTUREQ_CACHE": str(tmp_path / "cache")})
    assert (snapshot(hostile_tree), snapshot(labels)) == before
