"""The capture writer: what it captures is exactly what captureq reads back, and nothing is lost."""

from __future__ import annotations

import base64
import json
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
    kind = draw(st.sampled_from(["csv", "json", "jsonlines"] + (["binary"] if n_rows == 1 else [])))
    if kind == "binary":
        data = draw(st.binary(min_size=1, max_size=64))
        return (
            data,
            draw(st.sampled_from(["image/png", "application/x-npy", "application/octet-stream"])),
            None,
        )
    width = draw(st.integers(1, 4))
    rows = draw(
        st.lists(
            st.lists(numbers, min_size=width, max_size=width), min_size=n_rows, max_size=n_rows
        )
    )
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
        out.setdefault(r["capture_id"], []).append(
            r["payload"] if r.get("payload") is not None else [float(r[c]) for c in cols]
        )
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
    for cap, ((inp, ict, irows), (out_, oct_, orows), iid) in zip(caps, reqs):
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
            want = [data] if rows is None else [[float(v) for v in r] for r in rows]
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


def test_failed_writes_are_retried_and_counted(tmp_path) -> None:
    writer = CaptureWriter(CaptureConfig(str(tmp_path), sampling_percentage=100))
    real, calls = writer.fs.pipe_file, []

    def flaky(path, data):
        calls.append(path)
        if len(calls) == 1:
            raise ConnectionError("S3 is having a moment")
        return real(path, data)

    writer.fs.pipe_file = flaky
    writer.capture("1", "text/csv", "0", "text/csv")
    stats = writer.close()
    assert (stats.write_errors, stats.written, stats.lost) == (1, 1, 0)


def test_capture_costs_microseconds_on_the_request_path(tmp_path) -> None:
    with CaptureWriter(CaptureConfig(str(tmp_path), sampling_percentage=100)) as writer:
        body, out, timings = "69,0,153.7,194.0,1,2,3,4,5,6,7,8\n", "0.123", []
        for i in range(5_000):
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
