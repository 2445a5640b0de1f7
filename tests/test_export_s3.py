"""Exports to and from S3 (the moto server on loopback), changed source files, the writer lease
on object stores, and destinations that would write into the source tree.

* S3 → S3, S3 → local and local → S3: incremental, every record once, the destination with its
  own storage options (``--out-storage-option`` / ``out_storage_options=``), defaulting to the
  source's when both are on the same kind of storage.
* A local-engine export to S3 SIGKILLed mid-run, then rerun: every record exactly once.
* Two exports into one S3 prefix at once: one runs, the other refuses (the lease object).
* A source file that changes after it was exported is exported again, its earlier rows replaced
  in the same commit (locally and on S3).
* ``captureq export SRC SRC/out`` is refused.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from s3util import upload_tree
from trees import T0, capture, label, write_captures, write_labels
from typer.testing import CliRunner

import captureq
from captureq.cli import app
from captureq.errors import ConfigError, ExportError
from captureq.export import META, _Output, live_parts, plan
from captureq.generate import generate_benchmark_tree, generate_tree

pytestmark = pytest.mark.s3

CLI = [str(Path(sys.executable).parent / "captureq")]


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("tree")
    generate_tree(str(base / "capture"), labels_out=str(base / "labels"), hours=3, requests_per_hour=10, seed=3)
    return base / "capture", base / "labels"


def cli_options(server, flag: str = "--storage-option") -> list[str]:
    return [flag, "key=testing", flag, "secret=testing",
            flag, f"client_kwargs.endpoint_url={server.endpoint_url}", flag, "use_listings_cache=false"]


def read_table(fs, root: str, table: str) -> pa.Table:
    """What a reader of ``{root}/{table}/**/*.parquet`` sees (any fsspec filesystem)."""
    paths = sorted(p for p in fs.glob(f"{root.rstrip('/')}/{table}/**/*.parquet"))
    if not paths:
        return pa.table({})
    return pa.concat_tables([pq.read_table(p, filesystem=fs) for p in paths], promote_options="permissive")


def assert_exactly_once(fs, root: str, expected_ids: list[str]) -> None:
    ids = read_table(fs, root, "captures").column("capture_id").to_pylist()
    assert len(ids) == len(set(ids)), "a capture exported twice"
    assert sorted(ids) == sorted(expected_ids)


def assert_manifest_matches_storage(fs, root: str) -> dict:
    """The live parts (commit log) are exactly the visible parts; no temp file is visible."""
    manifest = json.loads(fs.cat(f"{root}/{META}/manifest.json"))
    commits = [json.loads(fs.cat(p)) for p in sorted(fs.glob(f"{root}/{META}/commits/*.json"))]
    live = live_parts(commits)
    visible = {p[len(root) + 1:] for p in fs.find(root) if f"/{META}/" not in p}
    assert set(live) == visible
    assert sorted(p for t in manifest["parts"].values() for p in t) == sorted(live)
    return manifest


# -- S3 both ways ------------------------------------------------------------------------------

def wait_for_a_commit(proc, s3_fs, s3_bucket, seconds: float = 40) -> None:
    """Wait (at most ``seconds``) until the export ``proc`` has committed something, or ended."""
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        s3_fs.invalidate_cache()
        if s3_fs.exists(f"{s3_bucket}/export/{META}/commits"):
            return
        time.sleep(0.05)

def test_cli_exports_s3_to_s3_with_the_sources_options_by_default(small_tree, s3_server, s3_fs, s3_bucket):
    capture_dir, labels_dir = small_tree
    upload_tree(s3_fs, capture_dir, f"s3://{s3_bucket}/capture")
    upload_tree(s3_fs, labels_dir, f"s3://{s3_bucket}/labels")
    src, out = f"s3://{s3_bucket}/capture", f"s3://{s3_bucket}/export"
    args = ["export", src, out, "--labels", f"s3://{s3_bucket}/labels", *cli_options(s3_server)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    expected = captureq.open(str(capture_dir)).captures()
    assert_exactly_once(s3_fs, f"{s3_bucket}/export", expected["capture_id"].to_pylist())
    assert read_table(s3_fs, f"{s3_bucket}/export", "labels").num_rows == captureq.open(
        str(capture_dir), labels=str(labels_dir)).labels().num_rows
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "exported 0 new files" in again.stdout
    assert_exactly_once(s3_fs, f"{s3_bucket}/export", expected["capture_id"].to_pylist())
    assert_manifest_matches_storage(s3_fs, f"{s3_bucket}/export")
    leases = s3_fs.ls(f"{s3_bucket}/export/{META}/lease")
    assert json.loads(s3_fs.cat(max(leases)))["released"], "the lease is released at the end"


def test_cli_out_storage_option_is_the_destinations_own(small_tree, s3_server, s3_fs, s3_bucket, tmp_path):
    capture_dir, _ = small_tree
    # local → S3: the source has no options; the destination's come from --out-storage-option
    args = ["export", str(capture_dir), f"s3://{s3_bucket}/out", *cli_options(s3_server, "--out-storage-option")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    expected = captureq.open(str(capture_dir)).captures()["capture_id"].to_pylist()
    assert_exactly_once(s3_fs, f"{s3_bucket}/out", expected)
    # S3 → local: the source's options are not given to the local destination
    upload_tree(s3_fs, capture_dir, f"s3://{s3_bucket}/capture")
    local_out = tmp_path / "local-out"
    result = CliRunner().invoke(app, ["export", f"s3://{s3_bucket}/capture", str(local_out), *cli_options(s3_server)])
    assert result.exit_code == 0, result.output
    import fsspec

    assert_exactly_once(fsspec.filesystem("file"), str(local_out), expected)


@pytest.mark.parametrize("direction", ["s3-to-s3", "local-to-s3", "s3-to-local"])
def test_python_export_is_incremental_in_every_direction(direction, small_tree, s3_options, s3_fs, s3_bucket,
                                                          tmp_path):
    import fsspec

    capture_dir, labels_dir = small_tree
    upload_tree(s3_fs, capture_dir, f"s3://{s3_bucket}/capture")
    if direction.startswith("s3"):
        tree = captureq.open(f"s3://{s3_bucket}/capture", storage_options=s3_options)
    else:
        tree = captureq.open(str(capture_dir))
    if direction.endswith("to-s3"):
        out, fs, root, kw = f"s3://{s3_bucket}/export2", s3_fs, f"{s3_bucket}/export2", {"out_storage_options": s3_options}
    else:
        out, fs, root, kw = str(tmp_path / "out"), fsspec.filesystem("file"), str(tmp_path / "out"), {}
    first = tree.export(out, **kw)
    assert first.files_exported == len(tree.scan().files) > 0
    second = captureq.export.export(tree, out, **kw)
    assert (second.files_exported, second.files_changed) == (0, 0)
    assert_exactly_once(fs, root, captureq.open(str(capture_dir)).captures()["capture_id"].to_pylist())
    assert_manifest_matches_storage(fs, root)


def test_the_same_scheme_shares_the_sources_options_in_python(small_tree, s3_options, s3_fs, s3_bucket):
    upload_tree(s3_fs, small_tree[0], f"s3://{s3_bucket}/capture")
    tree = captureq.open(f"s3://{s3_bucket}/capture", storage_options=s3_options)
    assert tree.export(f"s3://{s3_bucket}/export").files_exported > 0


def test_sql_cache_of_an_s3_tree_locally_or_on_s3(small_tree, s3_server, s3_fs, s3_bucket, tmp_path):
    import duckdb

    upload_tree(s3_fs, small_tree[0], f"s3://{s3_bucket}/capture")
    src = f"s3://{s3_bucket}/capture"
    local = CliRunner().invoke(app, ["sql", src, "--cache", str(tmp_path / "cache"), *cli_options(s3_server)])
    assert local.exit_code == 0, local.output
    con = duckdb.connect()
    con.execute(local.stdout)
    expected = captureq.open(str(small_tree[0])).captures().num_rows
    assert con.execute("select count(*) from captures").fetchone()[0] == expected
    remote = CliRunner().invoke(app, ["sql", src, "--cache", f"s3://{s3_bucket}/cache", *cli_options(s3_server)])
    assert remote.exit_code == 0, remote.output
    assert f"s3://{s3_bucket}/cache/captures/**/*.parquet" in remote.stdout
    assert read_table(s3_fs, f"{s3_bucket}/cache", "captures").num_rows == expected


# -- killed mid-run, with S3 as the destination -------------------------------------------------
@pytest.fixture(scope="module")
def mid_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mid") / "capture"
    generate_benchmark_tree(str(root), records=4000, endpoints=2, hours=3, files_per_hour=25)
    return root


def test_sigkill_a_local_export_to_s3_then_rerun_exports_every_record_once(mid_tree, s3_server, s3_fs, s3_bucket):
    out = f"s3://{s3_bucket}/export"
    args = [*CLI, "export", str(mid_tree), out, *cli_options(s3_server, "--out-storage-option")]
    # a killed run's lease stays behind; a short lease lets the next run take it over
    env = {**os.environ, "CAPTUREQ_BATCH_BYTES": str(48 * 1024), "CAPTUREQ_WORKERS": "1",
           "CAPTUREQ_LEASE_SECONDS": "2"}
    kills = 0
    for delay in (0.5, 1.2, 2.0):
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_a_commit(proc, s3_fs, s3_bucket)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert proc.returncode == -signal.SIGKILL or proc.returncode == 0, proc.stderr.read()
        proc.stderr.close()
        s3_fs.invalidate_cache()
        ids = read_table(s3_fs, f"{s3_bucket}/export", "captures")
        if ids.num_rows:
            assert ids.num_rows == len(set(ids["capture_id"].to_pylist())), "a capture visible twice"
        time.sleep(2.1)  # the dead run's lease expires
    assert kills >= 2, "the kills should land while the export runs"
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    s3_fs.invalidate_cache()
    expected = captureq.open(str(mid_tree)).captures()["capture_id"].to_pylist()
    assert_exactly_once(s3_fs, f"{s3_bucket}/export", expected)
    manifest = assert_manifest_matches_storage(s3_fs, f"{s3_bucket}/export")
    assert manifest["tables"]["captures"]["rows"] == len(expected)
    assert not s3_fs.find(f"{s3_bucket}/export/{META}/tmp"), "the last run leaves no temp objects"


# -- the writer lease on object stores -----------------------------------------------------------
def test_two_exports_into_one_s3_prefix_one_refuses(mid_tree, s3_server, s3_fs, s3_bucket):
    out = f"s3://{s3_bucket}/export"
    args = [*CLI, "export", str(mid_tree), out, *cli_options(s3_server, "--out-storage-option")]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert sorted(code == 0 for code, _, _ in results) == [False, True], results
    refused = next(o + e for code, o, e in results if code)
    assert "another captureq export is writing to" in refused and "lease" in refused
    s3_fs.invalidate_cache()
    expected = captureq.open(str(mid_tree)).captures()["capture_id"].to_pylist()
    assert_exactly_once(s3_fs, f"{s3_bucket}/export", expected)
    assert_manifest_matches_storage(s3_fs, f"{s3_bucket}/export")


def test_a_live_lease_refuses_a_stale_one_is_taken_over(small_tree, s3_options, s3_fs, s3_bucket, monkeypatch):
    out = f"s3://{s3_bucket}/export"
    holder = _Output(out, s3_options)
    holder.lock()
    with pytest.raises(ExportError, match="another captureq export is writing to"):
        captureq.open(str(small_tree[0])).export(out, out_storage_options=s3_options)
    # the holder dies without releasing; once its lease expires, the next export takes over
    path = max(s3_fs.ls(f"{s3_bucket}/export/{META}/lease"))
    lease = json.loads(s3_fs.cat(path))
    lease["expires"] = time.time() - 1
    s3_fs.pipe(path, json.dumps(lease).encode())
    summary = captureq.open(str(small_tree[0])).export(out, out_storage_options=s3_options)
    assert summary.files_exported > 0
    # the dead holder, if it wakes up, finds its lease gone and refuses to commit
    with pytest.raises(ExportError, match="lease"):
        holder.check_lease()


# -- changed source files ----------------------------------------------------------------------
def test_a_file_appended_to_after_export_is_exported_again_locally(tmp_path):
    tree, out = tmp_path / "capture", tmp_path / "out"
    a = write_captures(tree, [capture("1,2", "0.1", event_id="a1")], name="a.jsonl")
    write_captures(tree, [capture("3,4", "0.2", event_id="b1")], name="b.jsonl")
    first = captureq.open(str(tree)).export(str(out))
    assert first.files_exported == 2
    a.write_text(a.read_text() + json.dumps(capture("5,6", "0.3", event_id="a2")) + "\n")
    assert plan(captureq.open(str(tree)), str(out)).changed == ["ep/AllTraffic/" + f"{T0:%Y/%m/%d/%H}/a.jsonl"]
    result = CliRunner().invoke(app, ["export", str(tree), str(out)])
    assert result.exit_code == 0, result.output
    assert "1 changed files re-exported" in result.stdout
    import fsspec

    fs = fsspec.filesystem("file")
    got = read_table(fs, str(out), "captures")
    assert sorted(got["event_id"].to_pylist()) == ["a1", "a2", "b1"]
    assert sorted(read_table(fs, str(out), "inputs")["_c0"].to_pylist()) == [1, 3, 5]
    manifest = assert_manifest_matches_storage(fs, str(out))
    assert manifest["tables"]["captures"]["rows"] == 3
    third = captureq.open(str(tree)).export(str(out))
    assert (third.files_exported, third.files_changed) == (0, 0)


def test_a_changed_label_file_and_its_quarantine_rows_are_replaced(tmp_path):
    tree, labels, out = tmp_path / "capture", tmp_path / "labels", tmp_path / "out"
    write_captures(tree, [capture("1,2", "0.1", event_id="a1")], name="a.jsonl")
    lf = write_labels(labels, [label("a1", "0"), "{not json"], name="l.jsonl")
    write_labels(labels, [label("zz", "1")], name="m.jsonl")
    captureq.open(str(tree), labels=str(labels)).export(str(out))
    lf.write_text(json.dumps(label("a1", "1")) + "\n")  # corrected: the bad line is gone too
    second = captureq.open(str(tree), labels=str(labels)).export(str(out))
    assert (second.files_exported, second.label_files_exported) == (0, 1)
    import fsspec

    fs = fsspec.filesystem("file")
    got = read_table(fs, str(out), "labels")
    assert sorted(zip(got["event_id"].to_pylist(), got["ground_truth"].to_pylist())) == [("a1", "1"), ("zz", "1")]
    assert read_table(fs, str(out), "quarantine").num_rows == 0
    assert_manifest_matches_storage(fs, str(out))


def test_an_object_replaced_on_s3_is_exported_again(s3_options, s3_fs, s3_bucket, tmp_path):
    local = tmp_path / "capture"
    write_captures(local, [capture("1,2", "0.1", event_id="a1"), capture("1,2", "0.1", event_id="a2")],
                   name="a.jsonl")
    write_captures(local, [capture("3,4", "0.2", event_id="b1")], name="b.jsonl")
    upload_tree(s3_fs, local, f"s3://{s3_bucket}/capture")
    tree = lambda: captureq.open(f"s3://{s3_bucket}/capture", storage_options=s3_options)  # noqa: E731
    out = f"s3://{s3_bucket}/export"
    tree().export(out)
    # same size, different bytes: only the ETag tells
    key = f"{s3_bucket}/capture/ep/AllTraffic/{T0:%Y/%m/%d/%H}/a.jsonl"
    old = s3_fs.cat(key)
    new = old.replace(b'"a1"', b'"z1"')
    assert len(new) == len(old)
    s3_fs.pipe(key, new)
    summary = tree().export(out)
    assert (summary.files_exported, summary.files_changed) == (1, 1)
    got = read_table(s3_fs, f"{s3_bucket}/export", "captures")
    assert sorted(got["event_id"].to_pylist()) == ["a2", "b1", "z1"]
    assert_manifest_matches_storage(s3_fs, f"{s3_bucket}/export")


def test_a_crash_while_replacing_a_changed_file_rolls_forward(tmp_path, monkeypatch):
    import captureq.export as ex

    tree, out = tmp_path / "capture", tmp_path / "out"
    a = write_captures(tree, [capture("1,2", "0.1", event_id="a1")], name="a.jsonl")
    write_captures(tree, [capture("3,4", "0.2", event_id="b1")], name="b.jsonl")
    captureq.open(str(tree)).export(str(out))
    a.write_text(a.read_text() + json.dumps(capture("5,6", "0.3", event_id="a2")) + "\n")
    real = ex._Output.remove

    def dying_remove(self, path):
        raise KeyboardInterrupt("killed between placing the new parts and deleting the old")

    monkeypatch.setattr(ex._Output, "remove", dying_remove)
    with pytest.raises(KeyboardInterrupt):
        captureq.open(str(tree)).export(str(out))
    monkeypatch.setattr(ex._Output, "remove", real)
    summary = captureq.open(str(tree)).export(str(out))
    assert summary.recovered_commits == 1 and summary.files_exported == 0
    import fsspec

    fs = fsspec.filesystem("file")
    assert sorted(read_table(fs, str(out), "captures")["event_id"].to_pylist()) == ["a1", "a2", "b1"]
    assert_manifest_matches_storage(fs, str(out))


# -- never into the source tree ----------------------------------------------------------------
def test_a_destination_inside_the_source_is_refused(small_tree, tmp_path, s3_options, s3_fs, s3_bucket):
    capture_dir, _ = small_tree
    result = CliRunner().invoke(app, ["export", str(capture_dir), str(capture_dir / "out")])
    assert result.exit_code == 2
    assert "inside the source tree" in result.output
    assert not (capture_dir / "out").exists()
    with pytest.raises(ConfigError, match="inside the source tree"):
        captureq.open(str(capture_dir)).export(str(capture_dir / "sub" / ".." / "out2"))
    with pytest.raises(ConfigError, match="inside the source tree"):
        captureq.open(str(capture_dir)).export(str(capture_dir))
    upload_tree(s3_fs, capture_dir, f"s3://{s3_bucket}/capture")
    with pytest.raises(ConfigError, match="inside the source tree"):
        captureq.open(f"s3://{s3_bucket}/capture", storage_options=s3_options).export(
            f"s3://{s3_bucket}/capture/out")
    # a sibling with a common name prefix is fine
    assert captureq.open(str(capture_dir)).export(str(capture_dir) + "-out").files_exported > 0


# -- Spark to S3 -------------------------------------------------------------------------------
@pytest.mark.spark
def test_spark_export_to_s3_continues_a_local_one(small_tree, s3_options, s3_fs, s3_bucket):
    pytest.importorskip("pyspark")
    import captureq.spark as cqs

    capture_dir, labels_dir = small_tree
    upload_tree(s3_fs, capture_dir, f"s3://{s3_bucket}/capture")
    out = f"s3://{s3_bucket}/export"
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.sql.session.timeZone", "UTC").config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1").getOrCreate())
    src = f"s3://{s3_bucket}/capture"
    windowed = captureq.open(src, storage_options=s3_options, end="2026-01-01T01")
    first = windowed.export(out)
    second = cqs.export_parquet(spark, src, out, storage_options=s3_options, out_storage_options=s3_options,
                                task_bytes=4096)
    assert first.files_exported > 0 and second.files_exported > 0
    # the first run also read the 01 folder (lateness), for rows of its window only: the second
    # run skips the files done for good, those wholly inside the window
    inside = [f for f in windowed.scan().files if f.hour < windowed.window.end]
    assert 0 < len(inside) < first.files_exported
    assert second.files_skipped == len(inside)
    expected = captureq.open(str(capture_dir)).captures()["capture_id"].to_pylist()
    assert_exactly_once(s3_fs, f"{s3_bucket}/export", expected)
    assert_manifest_matches_storage(s3_fs, f"{s3_bucket}/export")
    # an object replaced with one line fewer: Spark re-exports it and drops its earlier rows
    key = sorted(s3_fs.find(f"{s3_bucket}/capture"))[-1]
    lines = s3_fs.cat(key).splitlines(keepends=True)
    s3_fs.pipe(key, b"".join(lines[:-1]))
    third = cqs.export_parquet(spark, src, out, storage_options=s3_options, task_bytes=4096)
    assert (third.files_exported, third.files_changed) == (1, 1)
    now = captureq.open(src, storage_options=s3_options).captures()["capture_id"].to_pylist()
    assert len(now) == len(expected) - 1
    assert_exactly_once(s3_fs, f"{s3_bucket}/export", now)
    assert_manifest_matches_storage(s3_fs, f"{s3_bucket}/export")


# -- storage that fails: leases that know their owner, storage errors named ---------------------
@pytest.fixture
def faults(s3_server):
    from faults import FaultyS3

    f = FaultyS3(s3_server)
    with f.installed():
        yield f


QUICK = ["--out-storage-option", "retries=1", "--out-storage-option", "deadline=10"]


def newest_lease(s3_fs, bucket: str) -> dict:
    s3_fs.invalidate_cache()
    return json.loads(s3_fs.cat(max(s3_fs.ls(f"{bucket}/export/{META}/lease"))))


@pytest.mark.parametrize("earlier_runs", [0, 2])
def test_a_lost_response_to_the_lease_put_is_our_own_lease(small_tree, s3_server, s3_fs, s3_bucket, faults,
                                                          earlier_runs):
    out = f"s3://{s3_bucket}/export"
    args = ["export", str(small_tree[0]), out, *cli_options(s3_server, "--out-storage-option"), *QUICK]
    for _ in range(earlier_runs):
        assert CliRunner().invoke(app, args).exit_code == 0
    faults.lose(f"{s3_bucket}/export/{META}/lease/*", times=1, method="PUT")
    r = CliRunner().invoke(app, args)
    assert faults.requests[("PUT", f"{s3_bucket}/export/{META}/lease/{earlier_runs + 1:012d}.json")] >= 2
    assert r.exit_code == 0, r.output
    lease = newest_lease(s3_fs, s3_bucket)
    assert lease["released"] and lease["token"]


def test_a_persistent_500_on_export_writes_is_a_storage_error_naming_the_object(small_tree, s3_server, s3_fs,
                                                                               s3_bucket, faults):
    out = f"s3://{s3_bucket}/export"
    faults.error(f"{s3_bucket}/export/{META}/tmp/*", 500, method="PUT")
    r = CliRunner().invoke(app, ["export", str(small_tree[0]), out,
                                 *cli_options(s3_server, "--out-storage-option"), *QUICK])
    assert r.exit_code == 2, r.output
    assert "bug in captureq" not in r.output
    assert "storage error: PUT" in r.stderr and f"s3://{s3_bucket}/export/{META}/tmp/" in r.stderr
    assert "500" in r.stderr and "try again later" in r.stderr
    assert newest_lease(s3_fs, s3_bucket)["released"], "a failed export releases its lease"


def test_a_persistent_500_on_listing_is_a_storage_error_naming_the_prefix(small_tree, s3_server, s3_fs,
                                                                         s3_bucket, faults):
    upload_tree(s3_fs, small_tree[0], f"s3://{s3_bucket}/capture")
    faults.list_error(s3_bucket, 500)
    r = CliRunner().invoke(app, ["query", f"s3://{s3_bucket}/capture", "select count(*) from captures",
                                 *cli_options(s3_server), "--storage-option", "retries=1"])
    assert r.exit_code == 2, r.output
    assert "bug in captureq" not in r.output
    assert re.search(r"storage error: (LIST|HEAD) s3://" + s3_bucket + "/capture", r.stderr), r.stderr
    assert "500" in r.stderr


def test_a_dead_local_holders_lease_is_broken_at_once(small_tree, s3_options, s3_fs, s3_bucket):
    import socket

    out = f"s3://{s3_bucket}/export"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lease = {"token": "x" * 32, "host": socket.gethostname(), "pid": dead.pid,
             "acquired": time.time(), "expires": time.time() + 600}
    s3_fs.pipe(f"{s3_bucket}/export/{META}/lease/000000000001.json", json.dumps(lease).encode())
    summary = captureq.open(str(small_tree[0])).export(out, out_storage_options=s3_options)
    assert summary.files_exported > 0
    # a holder on another host (or alive here) is waited for
    lease = {**lease, "host": "another-host", "pid": dead.pid, "expires": time.time() + 600}
    s3_fs.pipe(f"{s3_bucket}/export/{META}/lease/000000000009.json", json.dumps(lease).encode())
    with pytest.raises(ExportError, match="another captureq export is writing to"):
        captureq.open(str(small_tree[0])).export(out, out_storage_options=s3_options)


def test_sigterm_releases_the_lease(mid_tree, s3_server, s3_fs, s3_bucket):
    out = f"s3://{s3_bucket}/export"
    env = {**os.environ, "CAPTUREQ_BATCH_BYTES": str(48 * 1024), "CAPTUREQ_WORKERS": "1"}
    proc = subprocess.Popen([*CLI, "export", str(mid_tree), out, *cli_options(s3_server, "--out-storage-option")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_a_commit(proc, s3_fs, s3_bucket)
    assert proc.poll() is None, "the export should still be running"
    proc.send_signal(signal.SIGTERM)
    stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode != 0
    lease = newest_lease(s3_fs, s3_bucket)
    assert lease["released"], stderr
    # and the next run starts at once, finishing the job
    summary = captureq.open(str(mid_tree)).export(out, out_storage_options=s3_server.storage_options())
    assert summary.files_exported > 0
