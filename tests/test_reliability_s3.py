"""Flaky storage: the loopback S3 server (s3util.py) with faults injected at the server.

captureq reads through s3fs with one retry policy of its own (:mod:`captureq.storage`): s3fs
and botocore make one attempt per call, and ``read.fetch`` retries transient errors (throttling,
dropped connections, 5xx, timeouts) within a per-object deadline, so the attempts and the time
stay bounded. What cannot be read is reported (``Result.unreadable``, a warning, a ``file``
quarantine row with the reason, ``Counts.files_failed``), never read half, and an export does
not mark it done.
"""

from __future__ import annotations

import json
import time

import pytest
from faults import FaultyS3
from s3util import upload_tree

import captureq
from captureq.export import read_manifest
from captureq.read import fetch

pytestmark = pytest.mark.slow  # faults injected into the loopback S3 server, with retries and deadlines

# captureq's retry policy with quick pauses: a test counts its attempts (s3fs and botocore
# make one attempt per call under it).
FAST = {"retries": 2, "deadline": 10}


@pytest.fixture
def tree(s3_fs, s3_bucket, corpus) -> tuple[str, dict[str, str]]:
    """The real corpus uploaded to the test bucket: its URL and {corpus name: key}."""
    url = f"s3://{s3_bucket}/capture"
    upload_tree(s3_fs, corpus, url)
    keys = {p.split("/")[2]: p for p in s3_fs.find(f"{s3_bucket}/capture") if p.endswith(".jsonl")}
    assert sorted(keys) == ["book-housing", "seed-churn"]
    return url, keys


@pytest.fixture
def faults(s3_server):
    """Faults at the server, removed (and every stalled request released) at the end."""
    f = FaultyS3(s3_server)
    with f.installed():
        yield f


def open_tree(url, s3_options, **extra):
    return captureq.open(url, storage_options={**s3_options, **FAST, **extra})


def file_rows(t):
    return [(r["source_file"], r["reason"]) for r in t.quarantine.to_pylist() if r["stage"] == "file"]


def test_a_few_slowdowns_are_retried_and_nothing_is_lost(tree, faults, s3_options):
    url, keys = tree
    faults.slowdown(keys["seed-churn"], times=1)
    t = open_tree(url, s3_options).load()
    assert faults.gets[keys["seed-churn"]] == 2  # a 503, then the object
    assert (t.counts.files, t.counts.files_failed, t.counts.rows) == (2, 0, 4)
    assert t.quarantine.num_rows == 0


def test_endless_slowdown_gives_up_after_bounded_attempts_and_says_so(tree, faults, s3_options):
    url, keys = tree
    faults.slowdown(keys["seed-churn"])
    started = time.monotonic()
    t = open_tree(url, s3_options).load()
    # captureq's 3 attempts (retries=2), and no retries of s3fs's or botocore's under them
    assert faults.gets[keys["seed-churn"]] == 3
    assert time.monotonic() - started < 10
    [(src, reason)] = file_rows(t)
    assert src.endswith(keys["seed-churn"]) and "reduce your request rate" in reason
    assert (t.counts.files, t.counts.files_failed, t.counts.rows) == (1, 1, 1)
    assert t.counts.reconciles


def test_connection_reset_mid_body_is_retried(tree, faults, s3_options):
    url, keys = tree
    faults.reset(keys["seed-churn"], times=1)
    t = open_tree(url, s3_options).load()
    assert faults.gets[keys["seed-churn"]] == 2
    assert (t.counts.files_failed, t.counts.rows, t.quarantine.num_rows) == (0, 4, 0)


def test_connection_reset_every_time_is_a_failed_file_not_half_a_file(tree, faults, s3_options):
    url, keys = tree
    faults.reset(keys["seed-churn"])
    t = open_tree(url, s3_options).load()
    assert faults.gets[keys["seed-churn"]] == 3
    [(src, reason)] = file_rows(t)
    assert src.endswith(keys["seed-churn"]) and "could not read file" in reason
    # not one line of the half body became a row or a quarantined line
    assert set(t.captures["endpoint"].to_pylist()) == {"ll-housing"}
    assert (t.counts.lines_read, t.counts.quarantined_lines) == (1, 0)


def test_a_slow_object_is_waited_for(tree, faults, s3_options):
    url, keys = tree
    faults.slow(keys["seed-churn"], seconds=1.0)
    t = open_tree(url, s3_options).load()
    assert (t.counts.files_failed, t.counts.rows) == (0, 4)


def test_an_object_deleted_between_list_and_get(tree, s3_fs, s3_options, tmp_path):
    url, keys = tree
    cq = open_tree(url, s3_options)
    assert len(cq.scan().files) == 2  # LIST
    s3_fs.rm(keys["seed-churn"])
    t = cq.load()  # GET
    [(src, reason)] = file_rows(t)
    assert src.endswith(keys["seed-churn"]) and reason == "file disappeared between listing and reading"
    assert (t.counts.files, t.counts.files_failed, t.counts.rows) == (1, 1, 1)


@pytest.mark.parametrize("change", ["grew", "shrank"])
def test_an_object_rewritten_between_list_and_get_is_not_read_half(tree, s3_fs, s3_options, tmp_path, change):
    """Size at LIST != size at GET: the object is still being written (or was replaced)."""
    url, keys = tree
    key = keys["seed-churn"]
    cq = open_tree(url, s3_options)
    cq.scan()
    original = s3_fs.cat(key)
    s3_fs.pipe(key, original + original if change == "grew" else original[: len(original) // 2])
    t = cq.load()
    [(src, reason)] = file_rows(t)
    assert src.endswith(key) and "changed while being read" in reason
    assert set(t.captures["endpoint"].to_pylist()) == {"ll-housing"}


def test_export_does_not_mark_an_unread_file_done(tree, faults, s3_options, tmp_path):
    url, keys = tree
    out = str(tmp_path / "out")
    faults.slowdown(keys["seed-churn"])
    first = open_tree(url, s3_options).export(out)
    assert (first.files_exported, first.counts.files_failed) == (1, 1)
    assert read_manifest(out)["source_files"] == 1
    faults.rules.clear()  # the storage recovers: the next run picks the file up
    second = open_tree(url, s3_options).export(out)
    assert (second.files_exported, second.files_skipped) == (1, 1)
    assert read_manifest(out)["tables"]["captures"]["rows"] == 4


def test_export_does_not_mark_a_changing_file_done(tree, s3_fs, s3_options, tmp_path):
    url, keys = tree
    out = str(tmp_path / "out")
    cq = open_tree(url, s3_options)
    cq.scan()
    key = keys["seed-churn"]
    s3_fs.pipe(key, s3_fs.cat(key) * 2)  # rewritten (6 records) after the LIST
    assert cq.export(out).files_exported == 1
    assert open_tree(url, s3_options).export(out).files_exported == 1
    assert read_manifest(out)["tables"]["captures"]["rows"] == 1 + 6


def test_fetch_follows_one_retry_policy_not_stacked_ones(tree, faults, s3_options):
    """s3fs x botocore x captureq's own tries made 100 GETs (3 minutes) of one throttled object:
    under the policy, ``retries`` is the whole story."""
    url, keys = tree
    cq = open_tree(url, s3_options)
    files, fs = cq.scan().files, cq.scanner().fs
    faults.slowdown(keys["book-housing"])
    for retries in (0, 1, 3):
        faults.gets.clear()
        batch = fetch(fs, files, retries=retries, backoff=0.01)
        assert [f.rel.split("/")[0] for f, _ in batch.failed] == ["ll-housing"]
        assert [f.rel.split("/")[0] for f in batch.files] == ["xgb-churn-prediction-model"]
        assert faults.gets[keys["book-housing"]] == retries + 1
        assert batch.retries == retries


def test_local_transient_errors_are_retried_with_backoff(tmp_path, corpus):
    """A filesystem that is not async (read in rounds) follows the same policy: 2 retries by
    default, pauses doubling."""
    import shutil

    from fsspec.implementations.local import LocalFileSystem

    shutil.copytree(corpus, tmp_path / "t", ignore=shutil.ignore_patterns("*.md"))
    files = captureq.open(str(tmp_path / "t")).scan().files

    class Flaky(LocalFileSystem):
        calls = 0

        def cat_ranges(self, paths, starts, ends, **kw):
            Flaky.calls += 1
            got = super().cat_ranges(paths, starts, ends, **kw)
            if Flaky.calls <= 2:
                got = [ConnectionResetError("injected") for _ in got]
            return got

    started = time.monotonic()
    batch = fetch(Flaky(skip_instance_cache=True), files, backoff=0.05)
    assert (Flaky.calls, len(batch.files), batch.failed) == (3, 2, [])
    assert time.monotonic() - started >= 0.05 + 0.1  # slept 0.05, then 0.1

    Flaky.calls = -100  # fails every time: 1 + 2 retries, then reported
    batch = fetch(Flaky(skip_instance_cache=True), files, backoff=0.01)
    assert Flaky.calls == -97 and len(batch.failed) == 2
    assert all("ConnectionResetError" in reason for _, reason in batch.failed)


# -- what could not be read is said, everywhere --------------------------------------------------
QUICK = {"retries": 1, "timeout": 2, "deadline": 5}  # captureq's retry policy, kept short


def cli_options(server, **extra) -> list[str]:
    args = ["--storage-option", "key=testing", "--storage-option", "secret=testing",
            "--storage-option", f"client_kwargs.endpoint_url={server.endpoint_url}",
            "--storage-option", "use_listings_cache=false"]
    for k, v in extra.items():
        args += ["--storage-option", f"{k}={v}"]
    return args


def test_a_permanently_failing_object_is_reported_by_the_python_api(tree, faults, s3_options):
    url, keys = tree
    faults.error(keys["seed-churn"], 500)
    cq = captureq.open(url, storage_options={**s3_options, **QUICK}, cache=False)
    with pytest.warns(captureq.UnreadableWarning, match="1 object could not be read"):
        result = cq.sql("select endpoint, count(*) as n from captures group by 1")
    assert result.to_pylist() == [{"endpoint": "ll-housing", "n": 1}]
    [lost] = result.unreadable
    assert isinstance(lost, captureq.Unreadable)
    assert lost.path == f"s3://{keys['seed-churn']}" and "500" in lost.reason
    assert faults.gets[keys["seed-churn"]] == 2  # retries=1: two attempts, no more
    with pytest.warns(captureq.UnreadableWarning):
        assert cq.load().counts.unreadable == [lost]

    strict = captureq.open(url, storage_options={**s3_options, **QUICK}, cache=False, strict=True)
    with pytest.raises(captureq.UnreadableError, match=keys["seed-churn"]):
        strict.sql("select count(*) from captures")


def test_the_cli_says_what_it_could_not_read_and_strict_fails(tree, faults, s3_server):
    from typer.testing import CliRunner

    from captureq.cli import app

    url, keys = tree
    faults.error(keys["seed-churn"], 500)
    runner = CliRunner()
    query = ["query", url, "select endpoint, count(*) as n from captures group by 1", "-f", "json",
             *cli_options(s3_server, **QUICK)]
    for cache in (["--no-cache"], []):  # the cached path says it too
        r = runner.invoke(app, query + cache)
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout) == [{"endpoint": "ll-housing", "n": 1}]
        assert "1 object could not be read" in r.stderr and keys["seed-churn"] in r.stderr
        assert "500" in r.stderr
    r = runner.invoke(app, query + ["--strict"])
    assert r.exit_code == 2 and keys["seed-churn"] in r.stderr and r.stdout == ""

    r = runner.invoke(app, ["scan", url, "-f", "json", *cli_options(s3_server, **QUICK)])
    doc = json.loads(r.stdout)
    assert [u["path"] for u in doc["unreadable"]] == [f"s3://{keys['seed-churn']}"]
    assert "500" in doc["unreadable"][0]["reason"]
    r = runner.invoke(app, ["scan", url, *cli_options(s3_server, **QUICK)])
    assert "1 unreadable" in r.stdout and keys["seed-churn"] in r.stdout


def test_export_names_what_it_could_not_read(tree, faults, s3_server, tmp_path):
    from typer.testing import CliRunner

    from captureq.cli import app

    url, keys = tree
    faults.error(keys["seed-churn"], 500)
    out = str(tmp_path / "out")
    r = CliRunner().invoke(app, ["export", url, out, *cli_options(s3_server, **QUICK)])
    assert r.exit_code == 0, r.output
    assert "exported 1 new files" in r.stdout
    assert "1 object could not be read" in r.stderr and keys["seed-churn"] in r.stderr
    r = CliRunner().invoke(app, ["export", url, out, "--strict", *cli_options(s3_server, **QUICK)])
    assert r.exit_code == 2 and keys["seed-churn"] in r.stderr


def test_a_stalled_object_ends_within_the_deadline_as_timed_out(tree, faults, s3_options):
    url, keys = tree
    faults.stall(keys["seed-churn"], seconds=60)
    policy = {"retries": 10, "timeout": 0.5, "deadline": 2}
    cq = captureq.open(url, storage_options={**s3_options, **policy}, cache=False)
    cq.scan()
    import duckdb  # noqa: F401 - imported before the clock starts
    started = time.monotonic()
    with pytest.warns(captureq.UnreadableWarning):
        r = cq.sql("select count(*) as n from captures")
    took = time.monotonic() - started
    assert r.to_pylist() == [{"n": 1}]
    [lost] = r.unreadable
    assert lost.reason.startswith("unreadable: timed out after") and "deadline 2s" in lost.reason
    assert took < 2 + 1.5  # the deadline, plus reading the other object
    assert 2 <= faults.gets[keys["seed-churn"]] <= 5  # attempts of 0.5 s within 2 s


def test_botocores_own_timeout_is_honoured_and_bounded(tree, faults, s3_options):
    """``config_kwargs.read_timeout`` reaches botocore; one attempt and the object is reported."""
    url, keys = tree
    faults.stall(keys["seed-churn"], seconds=60)
    opts = {**s3_options, "retries": 0, "config_kwargs": {"read_timeout": 1}}
    started = time.monotonic()
    with pytest.warns(captureq.UnreadableWarning):
        r = captureq.open(url, storage_options=opts, cache=False).sql("select count(*) as n from captures")
    assert time.monotonic() - started < 6
    [lost] = r.unreadable
    assert "Timeout" in lost.reason or "timed out" in lost.reason
    assert faults.gets[keys["seed-churn"]] == 1


def test_storage_option_retries_is_taken_by_the_cli(tree, faults, s3_server):
    from typer.testing import CliRunner

    from captureq.cli import app

    url, keys = tree
    faults.error(keys["seed-churn"], 503)
    r = CliRunner().invoke(app, ["query", url, "select count(*) as n from captures", "--no-cache", "-f", "csv",
                                 *cli_options(s3_server, retries=3, deadline=20)])
    assert r.exit_code == 0, r.output
    assert faults.gets[keys["seed-churn"]] == 4
    assert "could not be read" in r.stderr


def export_file_rows(out: str) -> list[str]:
    """The ``file`` quarantine rows a reader of the export's live parts sees (their sources)."""
    import pyarrow.parquet as pq

    manifest = read_manifest(out)
    paths = manifest["parts"].get("quarantine", [])
    rows = [r for p in paths for r in pq.read_table(f"{out}/{p}").to_pylist()]
    return [r["source_file"] for r in rows if r["stage"] == "file"]


def test_a_loss_record_heals_once_the_object_is_read(tree, faults, s3_options, tmp_path):
    """Fault, fault again, recover: one ``file`` row while the object is unreadable, none after;
    in an export and in the query cache (which is an export), through the warm path too."""
    from captureq import cache

    url, keys = tree
    key = keys["seed-churn"]
    out = str(tmp_path / "out")
    opts = {**s3_options, **QUICK}

    def file_row_count(cq) -> int:
        return cq.sql("select count(*) as n from quarantine where stage = 'file'").to_pylist()[0]["n"]

    for _ in range(2):  # unreadable twice: still one loss record, not two
        faults.error(key, 500)
        with pytest.warns(captureq.UnreadableWarning):
            summary = captureq.open(url, storage_options=opts).export(out)
        assert [u.path for u in summary.unreadable] == [f"s3://{key}"]
        assert export_file_rows(out) == [f"s3://{key}"]
        with pytest.warns(captureq.UnreadableWarning):
            cache.refresh(captureq.open(url, storage_options=opts, cache=True))
        faults.rules.clear()
    summary = captureq.open(url, storage_options=opts).export(out)
    assert (summary.files_exported, summary.unreadable) == (1, [])
    assert export_file_rows(out) == []
    assert read_manifest(out)["tables"]["captures"]["rows"] == 4

    cq = captureq.open(url, storage_options=opts, cache=True)
    cache.refresh(cq)
    assert cache.lookup(cq) is not None  # the warm path answers
    assert file_row_count(captureq.open(url, storage_options=opts, cache=True)) == 0
    assert file_row_count(captureq.open(url, storage_options=opts, cache=False)) == 0


def test_an_unwrapped_storage_failure_is_explained_as_storage_not_a_bug():
    from captureq.cli_errors import explain

    message = explain(OSError(121, "We encountered an internal error. Please try again."))
    assert message is not None and message.startswith("storage error:") and "try again later" in message
    assert explain(ValueError("a real bug")) is None
