"""The capture writer: what it captures is exactly what captureq reads back, and nothing is lost."""

from __future__ import annotations

import base64
import itertools
import json
import logging
import math
import random
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import captureq
from captureq import ConfigError
from captureq.capture import CaptureConfig, CaptureWriter, DiskGuard, write_ground_truth
from captureq.records import csv_line

UTC = timezone.utc


class Clock:
    """A settable clock (epoch seconds) for the writer."""

    def __init__(self, when: datetime):
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now


def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


# -- configuration ------------------------------------------------------------------------------
def test_boto_dict_and_keywords_give_the_same_config(tmp_path) -> None:
    boto = CaptureConfig.from_dict(
        {
            "EnableCapture": True,
            "InitialSamplingPercentage": 35,
            "DestinationS3Uri": str(tmp_path),
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {
                "CsvContentTypes": ["text/csv"],
                "JsonContentTypes": ["application/json"],
            },
        },
        endpoint="churn",
    )
    kw = CaptureConfig(
        str(tmp_path),
        sampling_percentage=35,
        capture_options=["REQUEST", "RESPONSE"],
        csv_content_types=["text/csv"],
        json_content_types=["application/json"],
        endpoint="churn",
    )
    assert boto == kw
    assert CaptureConfig(str(tmp_path)).sampling_percentage == 20  # the SageMaker SDK default
    assert CaptureConfig(str(tmp_path)).disk_threshold == 75
    output_only = CaptureConfig.from_dict(
        {"DestinationS3Uri": "x", "CaptureOptions": [{"CaptureMode": "Output"}]}
    )
    assert (output_only.capture_input, output_only.capture_output) == (False, True)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"DestinationS3Uri": "x", "InitialSamplingPercentage": 150}, "from 0 to 100"),
        ({"DestinationS3Uri": "x", "InitialSamplingPercentage": "20"}, "from 0 to 100"),
        ({"DestinationS3Uri": "x", "EnableCapture": "yes"}, "True or False"),
        ({"DestinationS3Uri": ""}, "non-empty URI"),
        ({"InitialSamplingPercentage": 20}, "needs DestinationS3Uri"),
        (
            {"DestinationS3Uri": "x", "CaptureOptions": [{"CaptureMode": "Both"}]},
            "'Input', 'Output'",
        ),
        ({"DestinationS3Uri": "x", "CaptureOptions": []}, "at least one"),
        ({"DestinationS3Uri": "x", "CaptureOptions": ["Input"]}, "CaptureOptions must look like"),
        (
            {"DestinationS3Uri": "x", "CaptureContentTypeHeader": {"CsvContentTypes": "text/csv"}},
            "list of content types",
        ),
        (
            {"DestinationS3Uri": "x", "CaptureContentTypeHeader": {"CsvContentTypes": ["csv"]}},
            "not a content type",
        ),
        ({"DestinationS3Uri": "x", "SamplingPercentage": 20}, "unknown DataCaptureConfig keys"),
    ],
)
def test_invalid_config_says_what_is_wrong(config, message) -> None:
    with pytest.raises(ConfigError, match=message):
        CaptureConfig.from_dict(config)


def test_invalid_names_and_rollover_settings() -> None:
    with pytest.raises(ConfigError, match="not a SageMaker name"):
        CaptureConfig("x", endpoint="my/endpoint")
    with pytest.raises(ConfigError, match="max_file_bytes"):
        CaptureConfig("x", max_file_bytes=0)
    with pytest.raises(ConfigError, match="disk_threshold"):
        CaptureConfig("x", disk_threshold=150)


# -- round trip ---------------------------------------------------------------------------------
numbers = st.one_of(
    st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
)


@st.composite
def payloads(draw, n_rows: int):
    """(payload as sent, content type, rows it holds or None for binary) holding ``n_rows`` records."""
    kind = draw(st.sampled_from(["csv", "json", "jsonlines", "npy"] + (["binary"] if n_rows == 1 else [])))
    if kind == "binary":  # opaque bytes: one record with no value column
        data = draw(st.binary(min_size=1, max_size=64))
        return data, draw(st.sampled_from(["image/png", "application/octet-stream"])), None
    width = draw(st.integers(1, 4))
    rows = draw(
        st.lists(
            st.lists(numbers, min_size=width, max_size=width), min_size=n_rows, max_size=n_rows
        )
    )
    if kind == "npy":  # the SageMaker SDK's NumpySerializer: a 2-D array, one record per row
        import io

        import numpy as np

        buf = io.BytesIO()
        np.save(buf, np.array(rows, dtype=np.float64))
        return buf.getvalue(), "application/x-npy", rows
    if kind == "csv":
        text = "".join(csv_line(r) + "\n" for r in rows)
        ctype = draw(st.sampled_from(["text/csv", "text/csv; charset=utf-8", "Text/CSV"]))
    elif kind == "json":
        text = json.dumps({"instances": rows})
        ctype = draw(st.sampled_from(["application/json", "application/json; charset=utf-8"]))
    else:
        text = "".join(json.dumps(r) + "\n" for r in rows)
        ctype = "application/jsonlines"
    as_bytes = draw(st.booleans())
    return (text.encode() if as_bytes else text), ctype, rows


# Input and output hold the same number of records (one prediction per row), as a model answers.
requests = st.lists(
    st.integers(1, 3).flatmap(
        lambda n: st.tuples(
            payloads(n),
            payloads(n),
            st.one_of(st.none(), st.text("abcdef0123456789-", min_size=1, max_size=12)),
        )
    ),
    min_size=1,
    max_size=6,
)


def _expected_encoding(ctype: str, data, csv_types, json_types) -> str:
    media = ctype.split(";")[0].strip().lower()
    if isinstance(data, bytes):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return "BASE64"
    if media in csv_types:
        return "CSV"
    if media in json_types:
        return "JSON"
    return "BASE64"


def _values(table, capture_ids, prefix=""):
    """Per capture, its decoded records as lists of floats (column order _c0, _c1, ...)."""
    rows = table.to_pylist()
    out = {}
    for r in rows:
        cols = sorted(
            (k for k in r if k.startswith("_c") and r[k] is not None), key=lambda k: int(k[2:])
        )
        out.setdefault(r["capture_id"], []).append([float(r[c]) for c in cols])
    return [out.get(c, []) for c in capture_ids]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(reqs=requests, list_csv=st.booleans(), list_json=st.booleans(), second=st.integers(0, 3599))
def test_round_trip_reads_back_exactly_what_was_captured(
    tmp_path_factory, reqs, list_csv, list_json, second
):
    out = str(tmp_path_factory.mktemp("rt"))
    csv_types = ("text/csv",) if list_csv else ()
    json_types = ("application/json", "application/jsonlines") if list_json else ()
    cfg = CaptureConfig(
        out,
        sampling_percentage=100,
        csv_content_types=csv_types,
        json_content_types=json_types,
        endpoint="ep-1",
        variant="v1",
    )
    when = datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp() + second
    with CaptureWriter(cfg, clock=lambda: when) as writer:
        for (inp, ict, _), (out_, oct_, _), iid in reqs:
            assert writer.capture(inp, ict, out_, oct_, inference_id=iid)
    tree = captureq.open(out)
    tables = tree.load()
    assert tables.quarantine.num_rows == 0
    assert tables.counts.lines_read == tables.counts.rows == len(reqs)
    caps = tables.captures.sort_by("line_number").to_pylist()
    for cap, ((inp, ict, _irows), (out_, oct_, _orows), iid) in zip(caps, reqs):
        assert (cap["endpoint"], cap["variant"], cap["inference_id"]) == ("ep-1", "v1", iid)
        assert cap["inference_time"] == datetime.fromtimestamp(int(when), UTC)
        for side, data, ctype in (("input", inp, ict), ("output", out_, oct_)):
            encoding = _expected_encoding(ctype, data, csv_types, json_types)
            assert cap[f"{side}_observed_content_type"] == ctype
            assert cap[f"{side}_encoding"] == encoding
            raw = data if isinstance(data, bytes) else data.encode()
            stored = cap[f"{side}_data"]
            assert (base64.b64decode(stored) if encoding == "BASE64" else stored.encode()) == raw
    ids = [c["capture_id"] for c in caps]
    for side, table in (("input", tables.inputs), ("output", tables.outputs)):
        got = _values(table, ids)
        for decoded, req in zip(got, reqs):
            data, _, rows = req[0] if side == "input" else req[1]
            want = [[]] if rows is None else [[float(v) for v in r] for r in rows]
            assert decoded == want


# -- sampling -----------------------------------------------------------------------------------
@pytest.mark.parametrize("percent", [0, 5, 20, 100])
def test_sampling_rate_is_within_binomial_bounds(tmp_path, percent) -> None:
    n = 10_000
    with CaptureWriter(
        CaptureConfig(str(tmp_path), sampling_percentage=percent), rng=random.Random(percent)
    ) as writer:
        taken = sum(writer.capture("1", "text/csv", "0", "text/csv") for _ in range(n))
    p = percent / 100
    sd = math.sqrt(n * p * (1 - p))
    assert abs(taken - n * p) <= 4.5 * sd  # exact at 0 and 100 %
    assert writer.stats.sampled == writer.stats.written == taken
    assert writer.stats.not_sampled == n - taken
    rows = captureq.open(str(tmp_path)).captures().num_rows if taken else 0
    assert rows == taken


def test_disabled_capture_writes_nothing(tmp_path) -> None:
    with CaptureWriter(
        {
            "DestinationS3Uri": str(tmp_path),
            "EnableCapture": False,
            "InitialSamplingPercentage": 100,
        }
    ) as writer:
        assert not writer.capture("1", "text/csv", "0", "text/csv")
    assert writer.stats.files == 0 and not list(tmp_path.iterdir())


# -- roll-over ----------------------------------------------------------------------------------
def test_objects_roll_over_at_the_hour_boundary(tmp_path) -> None:
    clock = Clock(datetime(2026, 3, 1, 10, 59, 59, 500000, tzinfo=UTC))
    with CaptureWriter(
        CaptureConfig(str(tmp_path), sampling_percentage=100, endpoint="churn"), clock=clock
    ) as writer:
        writer.capture("1", "text/csv", "0.1", "text/csv", inference_id="before")
        clock.now += 0.7  # 11:00:00.200
        writer.capture("2", "text/csv", "0.2", "text/csv", inference_id="after")
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jsonl"))
    assert len(files) == 2
    assert files[0].startswith("churn/AllTraffic/2026/03/01/10/59-59-500-")
    assert files[1].startswith("churn/AllTraffic/2026/03/01/11/00-00-200-")
    caps = captureq.open(str(tmp_path)).captures().sort_by("inference_time").to_pylist()
    assert [(c["inference_id"], c["inference_time"].hour) for c in caps] == [
        ("before", 10),
        ("after", 11),
    ]


def test_objects_roll_over_by_size(tmp_path) -> None:
    cfg = CaptureConfig(str(tmp_path), sampling_percentage=100, max_file_bytes=2_000)
    with CaptureWriter(cfg) as writer:
        for i in range(100):
            writer.capture(f"{i},1,2", "text/csv", "0.5", "text/csv", inference_id=str(i))
    sizes = [p.stat().st_size for p in tmp_path.rglob("*.jsonl")]
    line = max(sizes) - 2_000  # an object closes on the line that takes it past the limit
    assert len(sizes) == writer.stats.files > 5 and line < 300
    assert sorted(
        captureq.open(str(tmp_path)).captures().column("inference_id").to_pylist(), key=int
    ) == [str(i) for i in range(100)]


def test_objects_roll_over_by_age_without_a_flush(tmp_path) -> None:
    clock = Clock(datetime(2026, 3, 1, 10, 0, tzinfo=UTC))
    cfg = CaptureConfig(str(tmp_path), sampling_percentage=100, max_file_age=30)
    with CaptureWriter(cfg, clock=clock, tick=0.01) as writer:
        writer.capture("1", "text/csv", "0.1", "text/csv")
        time.sleep(0.1)
        assert writer.stats.files == 0  # still young: buffered
        clock.now += 31
        assert wait_for(lambda: writer.stats.files == 1)


# -- disk guard ---------------------------------------------------------------------------------
def test_disk_guard_pauses_above_the_threshold_and_resumes_below(tmp_path) -> None:
    usage = [40.0]
    guard = DiskGuard(str(tmp_path), threshold=75, usage=lambda path: usage[0], interval=0)
    with CaptureWriter(
        CaptureConfig(str(tmp_path), sampling_percentage=100), guard=guard
    ) as writer:
        assert writer.capture("1", "text/csv", "0", "text/csv", inference_id="a")
        usage[0] = 75.0
        assert [writer.capture("2", "text/csv", "0", "text/csv") for _ in range(3)] == [False] * 3
        usage[0] = 74.9
        assert writer.capture("3", "text/csv", "0", "text/csv", inference_id="c")
    assert (writer.stats.skipped_disk, guard.skipped, guard.pauses) == (3, 3, 1)
    ids = sorted(captureq.open(str(tmp_path)).captures().column("inference_id").to_pylist())
    assert ids == ["a", "c"]


def test_disk_guard_uses_the_config_threshold_and_never_raises(tmp_path) -> None:
    with CaptureWriter(
        CaptureConfig(str(tmp_path), sampling_percentage=100), usage=lambda path: 76.0
    ) as full:
        assert not full.capture("1", "text/csv", "0", "text/csv")
    assert full.guard.threshold == 75 and full.stats.skipped_disk == 1

    def broken(path):
        raise OSError("no such disk")

    with CaptureWriter(
        CaptureConfig(str(tmp_path), sampling_percentage=100), usage=broken
    ) as writer:
        assert writer.capture(
            "1", "text/csv", "0", "text/csv"
        )  # an unreadable disk does not stop capture
    assert writer.stats.written == 1


# -- shutdown -----------------------------------------------------------------------------------
def test_close_flushes_everything_captured_from_many_threads(tmp_path) -> None:
    writer = CaptureWriter(
        CaptureConfig(str(tmp_path), sampling_percentage=100, max_file_bytes=50_000)
    )

    def serve(t: int) -> None:
        for i in range(500):
            writer.capture(f"{t},{i}", "text/csv", "0.5", "text/csv", inference_id=f"{t}-{i}")

    threads = [threading.Thread(target=serve, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = writer.close()
    assert stats.queued == stats.written == 4000 and stats.lost == 0
    assert not writer.capture("late", "text/csv", "0", "text/csv")  # closed: refused, not lost
    caps = captureq.open(str(tmp_path)).captures()
    assert len(set(caps.column("inference_id").to_pylist())) == caps.num_rows == 4000


def test_process_exit_flushes_what_was_buffered(tmp_path) -> None:
    script = (
        "from captureq.capture import CaptureWriter, CaptureConfig\n"
        f"w = CaptureWriter(CaptureConfig({str(tmp_path)!r}, sampling_percentage=100, max_file_age=3600))\n"
        "for i in range(250): w.capture(str(i), 'text/csv', '0.5', 'text/csv', inference_id=str(i))\n"
    )  # no close(): the atexit hook must write the buffered records
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert captureq.open(str(tmp_path)).captures().num_rows == 250


@pytest.mark.s3
def test_process_exit_writes_what_was_buffered_to_s3(tmp_path, s3_bucket, s3_options) -> None:
    destination = f"s3://{s3_bucket}/capture"
    script = (
        "from captureq.capture import CaptureWriter, CaptureConfig\n"
        f"w = CaptureWriter(CaptureConfig({destination!r}, sampling_percentage=100, "
        f"max_file_age=3600, spool_dir={str(tmp_path / 'spool')!r}, storage_options={s3_options!r}))\n"
        "for i in range(250): w.capture(str(i), 'text/csv', '0.5', 'text/csv', inference_id=str(i))\n"
    )  # no close(): the exit hook must write the buffered records while S3 is reachable
    done = subprocess.run([sys.executable, "-c", script], timeout=120, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert captureq.open(destination, storage_options=s3_options).captures().num_rows == 250
    assert not list((tmp_path / "spool").rglob("*.jsonl"))


def test_failed_writes_are_retried_and_counted(tmp_path, monkeypatch) -> None:
    writer = CaptureWriter(CaptureConfig(str(tmp_path), sampling_percentage=100,
                                         spool_dir=str(tmp_path / ".spool")))
    real, calls = writer.fs.pipe_file, []

    def flaky(path, data):
        calls.append(path)
        if len(calls) == 1:
            raise ConnectionError("S3 is having a moment")
        return real(path, data)

    monkeypatch.setattr(writer.fs, "pipe_file", flaky)  # fsspec shares the instance
    writer.capture("1", "text/csv", "0", "text/csv")
    stats = writer.close()
    assert (stats.write_errors, stats.retried, stats.written, stats.lost) == (1, 1, 1, 0)
    assert [p.name.startswith(".") for p in tmp_path.rglob("*.jsonl*")] == [False]


def test_capture_costs_microseconds_on_the_request_path(tmp_path) -> None:
    with CaptureWriter(CaptureConfig(str(tmp_path), sampling_percentage=100)) as writer:
        body, out, timings = "69,0,153.7,194.0,1,2,3,4,5,6,7,8\n", "0.123", []
        for _ in range(5_000):
            t0 = time.perf_counter_ns()
            writer.capture(body, "text/csv", out, "text/csv", inference_id="x")
            timings.append(time.perf_counter_ns() - t0)
    median_us = statistics.median(timings) / 1000
    assert median_us < 50, f"capture() took {median_us:.1f} µs (median)"
    assert writer.stats.written == 5_000


# -- ground truth -------------------------------------------------------------------------------
def test_ground_truth_joins_the_captured_predictions(tmp_path) -> None:
    capture, labels = tmp_path / "capture", tmp_path / "labels"
    t = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    with CaptureWriter(
        CaptureConfig(str(capture), sampling_percentage=100, endpoint="churn"), clock=lambda: t
    ) as writer:
        writer.capture("1,2\n3,4\n", "text/csv", "0.9\n0.2\n", "text/csv", inference_id="r1")
        writer.capture("5,6\n", "text/csv", "0.85\n", "text/csv", inference_id="r2")
    write_ground_truth(str(labels), {"r1": "1\n0"}, when=datetime(2026, 3, 2, 8, tzinfo=UTC))
    write_ground_truth(str(labels), [("r2", True)], when=datetime(2026, 3, 2, 9, tzinfo=UTC))
    tree = captureq.open(str(capture), labels=str(labels))
    rows = tree.sql(
        "select inference_id, record_index, output_c0, ground_truth_value "
        "from predictions order by all"
    ).to_pylist()
    assert [tuple(r.values()) for r in rows] == [
        ("r1", 0, 0.9, 1.0),
        ("r1", 1, 0.2, 0.0),
        ("r2", 0, 0.85, 1.0),
    ]
    assert tree.quarantine().num_rows == 0


# -- S3 -----------------------------------------------------------------------------------------
@pytest.mark.s3
def test_writes_capture_and_ground_truth_to_s3(s3_bucket, s3_options, s3_fs) -> None:
    capture, labels = f"s3://{s3_bucket}/capture", f"s3://{s3_bucket}/labels"
    clock = Clock(datetime(2026, 3, 1, 10, 59, 58, tzinfo=UTC))
    cfg = CaptureConfig.from_dict(
        {"DestinationS3Uri": capture, "InitialSamplingPercentage": 100},
        endpoint="churn",
        storage_options=s3_options,
    )
    with CaptureWriter(cfg, clock=clock) as writer:
        for i in range(6):
            writer.capture(f"{i},1.5\n", "text/csv", f"0.{i}\n", "text/csv", inference_id=f"r{i}")
            clock.now += 1  # crosses 11:00 after the second request
    write_ground_truth(
        labels,
        {f"r{i}": i % 2 for i in range(6)},
        storage_options=s3_options,
        when=datetime(2026, 3, 1, 12, tzinfo=UTC),
    )
    keys = sorted(s3_fs.find(f"{s3_bucket}/capture"))
    assert [k.split("/")[-2] for k in keys] == ["10", "11"] and writer.stats.written == 6
    tree = captureq.open(capture, labels=labels, storage_options=s3_options)
    rows = tree.sql(
        "select inference_id, output_c0, ground_truth_value from predictions order by 1"
    ).to_pylist()
    assert [tuple(r.values()) for r in rows] == [(f"r{i}", i / 10, float(i % 2)) for i in range(6)]
    assert tree.quarantine().num_rows == 0


@pytest.mark.parametrize(
    ("modes", "sides"),
    [
        ([{"CaptureMode": "Input"}], ("input",)),
        ([{"CaptureMode": "Output"}], ("output",)),
    ],
)
def test_capture_options_keep_only_the_chosen_side(tmp_path, modes, sides) -> None:
    cfg = CaptureConfig.from_dict(
        {
            "DestinationS3Uri": str(tmp_path),
            "InitialSamplingPercentage": 100,
            "CaptureOptions": modes,
        }
    )
    with CaptureWriter(cfg) as writer:
        writer.capture("1,2\n", "text/csv", "0.5\n", "text/csv")
    line = json.loads(next(tmp_path.rglob("*.jsonl")).read_text())
    assert list(line["captureData"]) == [f"endpoint{s.title()}" for s in sides]
    tree = captureq.open(str(tmp_path))
    assert tree.quarantine().num_rows == 0
    assert (tree.inputs().num_rows, tree.outputs().num_rows) == (
        (1, 0) if sides == ("input",) else (0, 1)
    )


# -- nothing lost: the spool ---------------------------------------------------------------------
# A child process captures under load and reports each accepted request on stdout as
# "event_id monotonic_time" (CLOCK_MONOTONIC is shared by processes on one machine).
CHILD = """
import json, signal, sys, time
from captureq.capture import CaptureConfig, CaptureWriter

args = json.loads(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))  # an orderly exit, as a server does
writer = CaptureWriter(CaptureConfig(args["destination"], **args["config"]))
n, batch = args["n"], args["batch"]
for start in range(0, n, batch):
    lines = []
    for i in range(start, min(n, start + batch)):
        if writer.capture(f"{i},1,2,3", "text/csv", "0.5", "text/csv", event_id=f"e{i}"):
            lines.append(f"e{i} {time.monotonic()}\\n")
    sys.stdout.write("".join(lines))
    sys.stdout.flush()
    time.sleep(args["pause"])
print("all-accepted", flush=True)
time.sleep(600)
"""


def start_child(tmp_path, destination: str, config: dict, n: int, batch: int = 20,
                pause: float = 0.005) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    args = json.dumps({"destination": destination, "config": config, "n": n, "batch": batch,
                       "pause": pause})
    return subprocess.Popen(
        [sys.executable, str(script), args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Accepted:
    """Reads a child's stdout in a thread: the event ids it accepted and when."""

    def __init__(self, proc: subprocess.Popen):
        self.times: dict[str, float] = {}
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc) -> None:
        for line in proc.stdout:
            if line.startswith("all-accepted"):
                self.done.set()
            elif line.endswith("\n"):
                eid, t = line.split()
                self.times[eid] = float(t)

    def join(self) -> None:
        self._thread.join(10)


def event_ids(destination: str, storage_options=None) -> list[str]:
    return captureq.open(destination, storage_options=storage_options).captures().column(
        "event_id"
    ).to_pylist()


FLUSH = 0.2  # the children's spool_flush_interval
SLACK = 0.5  # scheduling delay allowed on a busy, shared machine on top of it


def kill_9_and_restart(tmp_path, destination, max_file_age, storage_options=None) -> None:
    """Kill a writer under load, start another on the same spool: nothing accepted before the
    last flush interval is missing, nothing is there twice.

    With a long ``max_file_age`` everything is still in the spool at the kill; with a short one
    objects were written all along and the spool holds only the newest records (maybe none).
    """
    spool = str(tmp_path / "spool")
    config = {"sampling_percentage": 100, "spool_dir": spool, "spool_flush_interval": FLUSH,
              "max_file_age": max_file_age, "storage_options": storage_options}
    proc = start_child(tmp_path, destination, config, n=1_000_000)
    accepted = Accepted(proc)
    try:
        assert wait_for(lambda: len(accepted.times) > 2_000, timeout=60)
        time.sleep(1.5)
        killed_at = time.monotonic()
        proc.kill()  # SIGKILL: no atexit, no close()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    accepted.join()
    before = {e for e, t in accepted.times.items() if t < killed_at - FLUSH - SLACK}
    assert len(before) > 1_000
    in_spool = sum(1 for p in (tmp_path / "spool").rglob("*.jsonl") for _ in p.open("rb"))
    if max_file_age > 60:
        assert in_spool >= len(before)  # nothing was written before the kill

    writer = CaptureWriter(
        CaptureConfig(destination, sampling_percentage=100, spool_dir=spool,
                      storage_options=storage_options)
    )
    stats = writer.close()
    assert (stats.recovered, stats.lost, stats.kept) == (in_spool, 0, 0)
    ids = event_ids(destination, storage_options)
    assert len(ids) == len(set(ids))  # none twice
    # Nothing that was not accepted: a kill between capture() and the report to stdout leaves
    # at most one batch accepted but unreported.
    reported = max(int(e[1:]) for e in accepted.times)
    unreported = {int(e[1:]) for e in set(ids) - set(accepted.times)}
    assert all(reported < i <= reported + 20 for i in unreported), sorted(unreported)
    missing = before - set(ids)
    assert not missing, f"{len(missing)} of {len(before)} accepted before the last flush lost"
    assert not [p for p in (tmp_path / "spool").rglob("*.jsonl")]  # the spool is empty again


@pytest.mark.parametrize("max_file_age", [0.5, 3600])
def test_kill_9_under_load_then_restart_loses_at_most_the_flush_interval(
    tmp_path, max_file_age
) -> None:
    kill_9_and_restart(tmp_path, str(tmp_path / "capture"), max_file_age)


@pytest.mark.s3
@pytest.mark.parametrize("max_file_age", [0.5, 3600])
def test_kill_9_under_load_then_restart_on_s3(
    tmp_path, s3_bucket, s3_options, max_file_age
) -> None:
    kill_9_and_restart(tmp_path, f"s3://{s3_bucket}/capture", max_file_age, s3_options)


@pytest.mark.s3
def test_sigterm_during_an_outage_keeps_the_spool_for_the_next_writer(
    tmp_path, s3_server, s3_bucket, s3_options, caplog
) -> None:
    from faults import FaultyS3

    destination, spool = f"s3://{s3_bucket}/capture", str(tmp_path / "spool")
    config = {"sampling_percentage": 100, "spool_dir": spool, "max_file_age": 3600,
              "storage_options": s3_options}
    faults = FaultyS3(s3_server)
    with faults.installed():
        faults.outage(s3_bucket)
        proc = start_child(tmp_path, destination, config, n=1_000, batch=100, pause=0)
        accepted = Accepted(proc)
        try:
            assert accepted.done.wait(60)
            t0 = time.monotonic()
            proc.terminate()  # SIGTERM while S3 answers 503 to everything
            _, err = proc.communicate(timeout=90)
            took = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
        assert sum(faults.refused.values()) > 0, err  # the child did try to write
        faults.restore(s3_bucket)
    accepted.join()
    assert len(accepted.times) == 1_000
    assert "0 written" in err and "1000 kept in 1 spool file(s)" in err and "0 lost" in err, err
    assert took < 15, f"shutdown took {took:.1f} s"  # close_timeout is 10 s

    caplog.set_level(logging.WARNING, logger="captureq.capture")
    writer = CaptureWriter(
        CaptureConfig(destination, sampling_percentage=100, spool_dir=spool,
                      storage_options=s3_options)
    )
    stats = writer.close()
    assert (stats.recovered, stats.lost, stats.kept) == (1_000, 0, 0)
    assert "found 1000 records in 1 file(s) left in the spool" in caplog.text
    ids = event_ids(destination, s3_options)
    assert sorted(ids) == sorted(accepted.times)


def failing_uploads(writer: CaptureWriter, monkeypatch) -> list[bool]:
    """Make ``writer``'s uploads fail with a 503 while ``down[0]`` (the returned list) is True."""
    real, down = writer.fs.pipe_file, [True]

    def pipe_file(path, data):
        if down[0]:
            raise ConnectionError("503 SlowDown")
        return real(path, data)

    monkeypatch.setattr(writer.fs, "pipe_file", pipe_file)  # fsspec shares the instance
    return down


def test_an_outage_is_counted_and_logged_while_it_lasts(tmp_path, caplog, monkeypatch) -> None:
    caplog.set_level(logging.WARNING, logger="captureq.capture")
    cfg = CaptureConfig(str(tmp_path / "capture"), sampling_percentage=100,
                        spool_dir=str(tmp_path / "spool"), max_file_age=0.05)
    writer = CaptureWriter(cfg, tick=0.01)
    down = failing_uploads(writer, monkeypatch)
    for i in range(50):
        writer.capture(str(i), "text/csv", "0", "text/csv", event_id=f"e{i}")
    assert wait_for(lambda: writer.stats.retried >= 1 and writer.stats.spooled == 50)
    assert writer.stats.written == 0 and writer.stats.write_errors == writer.stats.retried
    assert "records in 1 file(s) wait in the spool" in caplog.text
    down[0] = False
    assert writer.flush(10)
    stats = writer.close()
    assert (stats.queued, stats.spooled, stats.written, stats.lost) == (50, 50, 50, 0)
    assert "works again" in caplog.text
    assert sorted(event_ids(cfg.destination), key=lambda e: int(e[1:])) == [
        f"e{i}" for i in range(50)
    ]


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"") + b"\n"),
                      max_size=10), cut=st.integers(0, 400))
def test_a_spool_file_cut_by_a_crash_yields_its_complete_lines(tmp_path_factory, lines, cut):
    from captureq.capture.spool import read_segment

    data = b"".join(lines)
    cut = min(cut, len(data))
    path = tmp_path_factory.mktemp("seg") / "x.jsonl"
    path.write_bytes(data[:cut])
    got, n = read_segment(str(path))
    whole = [line for line, end in zip(lines, itertools.accumulate(map(len, lines))) if end <= cut]
    assert (got, n) == (b"".join(whole), len(whole))


def test_spool_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="spool_flush_interval"):
        CaptureConfig("x", spool_flush_interval=0)
    with pytest.raises(ConfigError, match="spool_max_bytes"):
        CaptureConfig("x", spool_max_bytes=10)
    with pytest.raises(ConfigError, match="local folder"):
        CaptureConfig("x", spool_dir="s3://bucket/spool")


# -- nothing lost: a full disk -------------------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MB tmpfs (needs root); skipped where it cannot be mounted."""
    path = tmp_path / "tiny"
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)],
                          capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)


def jsonl_lines(root) -> list[dict]:
    """Every line of every capture object under ``root``, each checked to be whole JSON."""
    out = []
    for p in root.rglob("*.jsonl"):
        data = p.read_bytes()
        assert data.endswith(b"\n"), f"{p} is truncated"
        out.extend(json.loads(line) for line in data.splitlines())
    return out


BIG = "1," * 500  # about 1 kB of CSV per record


def test_a_full_destination_disk_leaves_no_truncated_object(tmp_path, tiny_disk, caplog) -> None:
    caplog.set_level(logging.INFO, logger="captureq.capture")
    cfg = CaptureConfig(str(tiny_disk / "capture"), sampling_percentage=100,
                        spool_dir=str(tmp_path / "spool"), max_file_bytes=50_000,
                        close_timeout=2)
    with CaptureWriter(cfg) as writer:
        for i in range(3_000):
            assert writer.capture(BIG, "text/csv", "0", "text/csv", event_id=f"e{i}")
    s = writer.stats
    on_disk = jsonl_lines(tiny_disk)
    assert not list(tiny_disk.rglob("*.tmp"))  # failed objects leave no temp file behind
    assert s.written == len(on_disk) > 0 and s.retried > 0 and s.lost == 0
    in_spool = jsonl_lines(tmp_path / "spool")
    assert s.kept == len(in_spool) and s.written + s.kept == s.queued == 3_000
    assert {r["eventMetadata"]["eventId"] for r in on_disk + in_spool} == {
        f"e{i}" for i in range(3_000)
    }
    assert f"{s.written} written" in caplog.text and f"{s.kept} kept in" in caplog.text
    assert ", 0 lost" in caplog.text


def test_a_full_spool_disk_counts_and_logs_what_it_loses(tmp_path, tiny_disk, caplog) -> None:
    caplog.set_level(logging.INFO, logger="captureq.capture")
    cfg = CaptureConfig(str(tmp_path / "capture"), sampling_percentage=100,
                        spool_dir=str(tiny_disk / "spool"), disk_threshold=100,
                        max_file_age=3600)
    with CaptureWriter(cfg) as writer:
        for i in range(3_000):
            writer.capture(BIG, "text/csv", "0", "text/csv", event_id=f"e{i}")
        assert wait_for(lambda: writer.stats.spool_errors > 0)
    s = writer.stats
    on_disk = jsonl_lines(tmp_path / "capture")
    assert s.written == len(on_disk) > 0 and s.lost > 0 and s.kept == 0
    assert s.written + s.lost + s.skipped == 3_000
    assert "cannot append to the spool" in caplog.text
    assert f"{s.written} written" in caplog.text and f", {s.lost} lost" in caplog.text
    assert not jsonl_lines(tiny_disk)  # nothing left behind in the spool either


def test_disk_guard_logs_when_it_starts_and_stops_skipping(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="captureq.capture")
    usage = [40.0]
    guard = DiskGuard(str(tmp_path), threshold=75, usage=lambda path: usage[0], interval=0)
    with CaptureWriter(
        CaptureConfig(str(tmp_path / "capture"), sampling_percentage=100), guard=guard
    ) as writer:
        writer.capture("1", "text/csv", "0", "text/csv")
        usage[0] = 80.0
        for _ in range(7):
            writer.capture("2", "text/csv", "0", "text/csv")
        assert "paused" in caplog.text and "80.0 %" in caplog.text
        usage[0] = 50.0
        writer.capture("3", "text/csv", "0", "text/csv")
    assert "resumed" in caplog.text and "7 requests skipped" in caplog.text
    assert writer.stats.skipped_disk == 7


def test_a_full_spool_skips_captures_and_logs_start_and_end(tmp_path, caplog, monkeypatch) -> None:
    caplog.set_level(logging.INFO, logger="captureq.capture")
    cfg = CaptureConfig(str(tmp_path / "capture"), sampling_percentage=100, max_file_bytes=2_000,
                        spool_max_bytes=2_000, spool_dir=str(tmp_path / "spool"),
                        spool_flush_interval=0.05)
    writer = CaptureWriter(cfg, tick=0.01)
    down = failing_uploads(writer, monkeypatch)
    accepted = [i for i in range(40) if writer.capture(BIG, "text/csv", "0", "text/csv",
                                                        event_id=f"e{i}")]
    assert wait_for(lambda: writer.spool.bytes >= 2_000 and writer._spool_full)
    assert not writer.capture(BIG, "text/csv", "0", "text/csv")
    assert writer.stats.skipped_spool >= 1 and "skipping captures" in caplog.text
    skipped = writer.stats.skipped_spool
    down[0] = False
    assert writer.flush(10)  # a flush writes now, whatever the back-off
    assert wait_for(lambda: not writer._spool_full)
    assert f"{skipped} requests were skipped while it was full" in caplog.text
    assert writer.capture(BIG, "text/csv", "0", "text/csv", event_id="after")
    stats = writer.close()
    assert stats.lost == stats.kept == 0
    assert sorted(event_ids(cfg.destination)) == sorted([f"e{i}" for i in accepted] + ["after"])


def test_a_live_writers_spool_is_left_alone(tmp_path, monkeypatch) -> None:
    cfg = CaptureConfig(str(tmp_path / "capture"), sampling_percentage=100,
                        spool_dir=str(tmp_path / "spool"), max_file_age=0.05)
    first = CaptureWriter(cfg, tick=0.01)
    down = failing_uploads(first, monkeypatch)
    for i in range(10):
        first.capture(str(i), "text/csv", "0", "text/csv", event_id=f"e{i}")
    assert wait_for(lambda: first.stats.retried >= 1)
    second = CaptureWriter(cfg)  # e.g. another worker process of the same server
    assert second.close().recovered == 0
    assert not list((tmp_path / "capture").rglob("*.jsonl"))
    down[0] = False
    stats = first.close()
    assert (stats.written, stats.kept, stats.lost) == (10, 0, 0)
    assert sorted(event_ids(cfg.destination)) == sorted(f"e{i}" for i in range(10))


def test_a_spool_file_uploaded_twice_is_one_object(tmp_path) -> None:
    """A writer killed after writing an object but before deleting its spool file."""
    out, spool = tmp_path / "capture", tmp_path / "spool"
    cfg = CaptureConfig(str(out), sampling_percentage=100, spool_dir=str(spool))
    with CaptureWriter(cfg) as writer:
        for i in range(10):
            writer.capture(str(i), "text/csv", "0", "text/csv", event_id=f"e{i}")
    [obj] = list(out.rglob("*.jsonl"))
    left = spool / "w-1-dead" / obj.relative_to(out)  # what the killed writer left behind
    left.parent.mkdir(parents=True)
    left.write_bytes(obj.read_bytes())
    stats = CaptureWriter(cfg).close()
    assert (stats.recovered, stats.files) == (10, 1)
    assert list(out.rglob("*.jsonl")) == [obj]
    assert sorted(event_ids(str(out))) == sorted(f"e{i}" for i in range(10))
    assert not spool.exists() or not list(spool.rglob("*.jsonl"))


def test_one_object_that_keeps_failing_does_not_hold_up_the_others(tmp_path, monkeypatch) -> None:
    clock = Clock(datetime(2026, 3, 1, 10, 59, 59, tzinfo=UTC))
    cfg = CaptureConfig(str(tmp_path / "capture"), sampling_percentage=100,
                        spool_dir=str(tmp_path / "spool"), close_timeout=1)
    writer = CaptureWriter(cfg, clock=clock, tick=0.01)
    real = writer.fs.pipe_file

    def pipe_file(path, data):
        if "/2026/03/01/10/" in path:
            raise PermissionError("denied for this prefix")
        return real(path, data)

    monkeypatch.setattr(writer.fs, "pipe_file", pipe_file)  # fsspec shares the instance
    writer.capture("1", "text/csv", "0", "text/csv", event_id="at-10")
    clock.now += 2  # 11:00:01: the 10 o'clock object is complete
    writer.capture("2", "text/csv", "0", "text/csv", event_id="at-11")
    assert writer.flush(5) is False  # the 10 o'clock object failed
    assert event_ids(cfg.destination) == ["at-11"]
    stats = writer.close()
    assert (stats.written, stats.kept, stats.lost) == (1, 1, 0) and stats.retried >= 2


class _DiskWithRoom:
    """``os`` for the spool module, with ``room`` bytes left on the disk (ENOSPC after that)."""

    def __init__(self, room: int):
        self.room = room

    def write(self, fd, data):
        import errno
        import os

        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = os.write(fd, bytes(data[: self.room]))
        self.room -= n
        return n

    def __getattr__(self, name):
        import os

        return getattr(os, name)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"") + b"\n"),
                                 min_size=1, max_size=5), min_size=1, max_size=4),
       room=st.integers(0, 300))
def test_a_spool_append_on_a_full_disk_keeps_whole_lines(tmp_path_factory, monkeypatch, batches, room):
    from captureq.capture import spool as spool_mod

    disk = _DiskWithRoom(room)
    with monkeypatch.context() as m:
        m.setattr(spool_mod, "os", disk)
        spool = spool_mod.Spool(str(tmp_path_factory.mktemp("spool")))
        seg = spool.segment("ep/v/2026/01/01/00/x.jsonl")
        lines = [line for batch in batches for line in batch]
        for batch in batches:
            for line in batch:
                seg.add(line)
            seg.flush()
        on_disk = open(seg.path, "rb").read() if seg.records else b""
        # the file holds exactly the first seg.records lines, whole; the rest is pending
        assert on_disk == b"".join(lines[: seg.records]) and seg.flushed == len(on_disk)
        assert seg.pending == lines[seg.records:] and spool.bytes == len(on_disk)
        assert (seg.error is None) == (not seg.pending)
        disk.room = 10**9  # space freed
        seg.flush()
        seg.close()
    assert spool_mod.read_segment(seg.path) == (b"".join(lines), len(lines))
