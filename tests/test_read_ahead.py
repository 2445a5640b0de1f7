"""Reading many small objects from an object store: batches are fetched ahead of the decoders
(bounded), GETs run as wide as the ``concurrency`` storage option, the scan lists the root
once (no HEAD) and its hour folders at once; answers, quarantine and unreadable reports are
the same as without read-ahead, with latency and injected faults (tests/faults.py).

Nothing here is timed: the bounds are counted (batches and bytes held, requests in flight at
the server), not measured in seconds.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import Counter

import pytest
from faults import FaultyS3

import captureq
from captureq.generate import generate_benchmark_tree
from captureq.read import READ_AHEAD_BATCHES, ReadAhead, fetch, plan_batches
from captureq.scan import Scanner


class InFlight:
    """WSGI middleware: hold each request ``delay`` seconds and count the most requests of each
    kind (``GET`` of an object, ``LIST``, ``HEAD``) in flight at once, and all of them."""

    def __init__(self, app, delay: float = 0.0):
        self.app, self.delay = app, delay
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.total: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "").lstrip("/")
        method = environ["REQUEST_METHOD"]
        kind = "LIST" if method == "GET" and "/" not in path.rstrip("/") else method
        with self._lock:
            self.now[kind] += 1
            self.total[kind] += 1
            self.peak[kind] = max(self.peak[kind], self.now[kind])
        try:
            time.sleep(self.delay)
            return self.app(environ, start_response)
        finally:
            with self._lock:
                self.now[kind] -= 1


@pytest.fixture
def latency(s3_server):
    """An :class:`InFlight` of 0.1 s per request in front of the S3 server (under the fault
    proxy, when a test installs one after this)."""
    wsgi = s3_server._server._server
    app = wsgi.app
    wsgi.app = proxy = InFlight(app, delay=0.1)
    try:
        yield proxy
    finally:
        wsgi.app = app


@pytest.fixture
def small_tree(s3_server, s3_bucket, tmp_path) -> str:
    """60 small objects (2 endpoints × 3 hours × 10), 10 records each, put straight into the
    bucket (setup is not what is tested)."""
    local = tmp_path / "tree"
    generate_benchmark_tree(str(local), records=600, features=4, endpoints=2, hours=3, files_per_hour=10)
    objects = {f"capture/{p.relative_to(local).as_posix()}": p.read_bytes()
               for p in sorted(local.rglob("*.jsonl"))}
    s3_server.seed(s3_bucket, objects)
    return f"s3://{s3_bucket}/capture"


def test_read_ahead_holds_at_most_its_bound_and_gives_fetchs_batches(small_tree, s3_options, latency):
    scan = Scanner(small_tree, storage_options=s3_options).scan()
    groups = plan_batches(scan.files, batch_bytes=12_000)
    assert len(groups) >= 10
    one = max(sum(f.size for f in g) for g in groups)
    ahead = ReadAhead(Scanner(small_tree, storage_options=s3_options).fs, groups, max_bytes=2 * one + 1,
                      max_batches=3)
    batches = []
    for g in groups:
        time.sleep(0.15)  # a slow decoder: the read-ahead fills up to its bound and waits
        batches.append(ahead.take(g))
    assert 2 <= ahead.peak_batches <= 3  # it reads ahead, and no further than allowed
    assert ahead.peak_bytes <= 2 * one + 1
    fs = Scanner(small_tree, storage_options=s3_options).fs
    for g, b in zip(groups, batches):
        want = fetch(fs, g)
        assert (b.files, b.blobs, b.failed) == (want.files, want.blobs, want.failed)


def test_a_group_it_has_not_started_is_left_to_the_caller_and_never_fetched_twice(small_tree, s3_options,
                                                                                     latency):
    scanner = Scanner(small_tree, storage_options=s3_options)
    groups = plan_batches(scanner.scan().files, batch_bytes=12_000)
    latency.total.clear()
    ahead = ReadAhead(scanner.fs, groups, max_bytes=1, max_batches=1)  # one batch at a time
    assert ahead.take(groups[3]) is None  # not started: the caller fetches it
    assert ahead.take([groups[0][0]]) is None  # not one of its groups
    got = [ahead.take(g) for i, g in enumerate(groups) if i != 3]
    assert all(b is not None and not b.failed for b in got)
    assert latency.total["GET"] == sum(len(g) for i, g in enumerate(groups) if i != 3)


def test_gets_run_as_wide_as_the_concurrency_option(small_tree, s3_options, latency):
    t = captureq.open(small_tree, storage_options=s3_options, cache=False).load()
    assert t.counts.files == 60
    assert latency.peak["GET"] > 10  # botocore's own pool (10 connections) is sized up to match
    latency.peak.clear()
    t = captureq.open(small_tree, storage_options={**s3_options, "concurrency": 4}, cache=False).load()
    assert t.counts.files == 60
    assert 1 < latency.peak["GET"] <= 4


def test_the_scan_lists_without_head_requests_and_hours_at_once(small_tree, s3_options, latency):
    latency.total.clear()
    scan = Scanner(small_tree, storage_options=s3_options).scan()
    assert len(scan.files) == 60 and all(f.size and f.version.startswith("etag:") for f in scan.files)
    assert latency.total["HEAD"] == 0
    latency.peak.clear()
    # two ragged hours per variant, two variants: four hour folders listed at once
    scan = Scanner(small_tree, storage_options=s3_options).scan(start="2026-01-01T01:00", end="2026-01-01T03:00")
    assert len(scan.files) == 40
    assert latency.total["HEAD"] == 0 and latency.peak["LIST"] >= 4


def test_a_missing_prefix_and_a_single_object_are_told_apart_with_one_listing(small_tree, s3_options, s3_fs):
    from s3util import new_bucket

    from captureq.errors import ScanError

    empty = new_bucket(s3_fs)
    assert Scanner(f"s3://{empty}", storage_options=s3_options).scan().files == []  # a bucket, empty

    with pytest.raises(ScanError, match="does not exist or is not readable"):
        Scanner(small_tree + "-nope", storage_options=s3_options).scan()
    one = Scanner(small_tree, storage_options=s3_options).scan().files[0]
    alone = Scanner(one.url, storage_options=s3_options).scan()
    assert [(f.path, f.size, f.version) for f in alone.files] == [(one.path, one.size, one.version)]


def _answer(url, s3_options, **extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = captureq.open(url, storage_options={**s3_options, "retries": 2, "deadline": 10, **extra},
                          batch_bytes=12_000, cache=False).load()
    counts = {k: v for k, v in vars(t.counts).items() if k not in ("retries", "unreadable")}
    quarantine = sorted((r["source_file"], r["stage"], r["reason"]) for r in t.quarantine.to_pylist())
    inputs = t.inputs.sort_by("event_id").to_pylist()
    return counts, sorted(map(str, t.unreadable)), quarantine, inputs


@pytest.mark.parametrize("read_ahead", [1, 200_000])
def test_answers_quarantine_and_unreadable_are_the_same_with_latency_and_faults(small_tree, s3_server,
                                                                                  s3_bucket, s3_options,
                                                                                  latency, read_ahead):
    keys = sorted(p for p in s3_server.filesystem().find(small_tree) if p.endswith(".jsonl"))
    answers = []
    for opts in ({"read_ahead": 0}, {"read_ahead": read_ahead}):
        faults = FaultyS3(s3_server)
        with faults.installed():
            faults.slowdown(keys[3], times=1)  # retried
            faults.reset(keys[17], times=1)  # retried
            faults.error(keys[25], status=500)  # unreadable
            faults.swap(keys[40], b'{"not": "what was listed"}\n')  # changed while read
            answers.append(_answer(small_tree, s3_options, **opts))
    without, with_ahead = answers
    assert with_ahead == without
    counts, unreadable, quarantine, inputs = with_ahead
    assert counts["files_failed"] == 2 and len(unreadable) == 2
    assert sum(1 for q in quarantine if q[1] == "file") == 2
    assert counts["files"] == 58 and len(inputs) == 580


def test_a_reader_that_stops_early_leaves_no_batch_running(small_tree, s3_options, latency):
    scanner = Scanner(small_tree, storage_options=s3_options)
    groups = plan_batches(scanner.scan().files, batch_bytes=12_000)
    ahead = ReadAhead(scanner.fs, groups, max_bytes=10**9, max_batches=READ_AHEAD_BATCHES)
    assert ahead.take(groups[0]) is not None
    ahead.close()
    latency.total.clear()
    time.sleep(0.5)
    assert latency.total["GET"] <= READ_AHEAD_BATCHES * max(len(g) for g in groups)
    assert all(ahead.take(g) is None for g in groups[READ_AHEAD_BATCHES + 1:])
