"""Replay: captured requests sent again to a candidate model, its answers written as a tree."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import captureq
from captureq import records as rec
from captureq.capture import CaptureConfig, CaptureWriter

UTC = timezone.utc


# -- the capture writer's hooks the replay uses ----------------------------------------------
def test_capture_record_keeps_extra_event_metadata_after_the_standard_keys():
    r = rec.capture_record(
        input=None,
        output=rec.encode_payload("0.5", "text/csv", mode="OUTPUT"),
        event_id="e",
        inference_id="i",
        inference_time=datetime(2026, 1, 1, tzinfo=UTC),
        metadata={"replayLatencyMs": 12.5, "replayTime": "2026-03-01T00:00:00.123456Z"},
    )
    assert list(r["eventMetadata"]) == [
        "eventId", "inferenceId", "inferenceTime", "replayLatencyMs", "replayTime"
    ]
    assert r["eventMetadata"]["replayLatencyMs"] == 12.5


def test_writer_reports_each_written_object_and_keeps_extra_metadata(tmp_path):
    seen: list[tuple[str, bytes]] = []
    cfg = CaptureConfig(str(tmp_path / "out"), sampling_percentage=100, endpoint="ep",
                        spool_dir=str(tmp_path / "spool"))
    with CaptureWriter(cfg, on_written=lambda path, data: seen.append((path, data))) as w:
        for i in range(3):
            w.capture("1,2\n", "text/csv", "0.5", "text/csv", inference_id=f"r{i}",
                      when=datetime(2026, 1, 1, 5, tzinfo=UTC), metadata={"replayKey": f"k{i}"})
    assert len(seen) == 1
    path, data = seen[0]
    assert path.endswith(".jsonl") and "/ep/AllTraffic/2026/01/01/05/" in path
    keys = [json.loads(line)["eventMetadata"]["replayKey"] for line in data.splitlines()]
    assert keys == ["k0", "k1", "k2"]
    meta = captureq.open(str(tmp_path / "out")).captures().column("event_metadata").to_pylist()
    assert sorted(json.loads(m)["replayKey"] for m in meta) == ["k0", "k1", "k2"]


# -- fixtures: a source tree and real candidate servers on loopback ---------------------------
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from captureq import replay as rp
from captureq.capture import write_ground_truth
from captureq.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 1, 1, 5, 0, tzinfo=UTC)


def make_tree(base: Path, n: int = 40, *, base64_every: int = 4, repeat_event_id: bool = True):
    """``n`` captured CSV requests of endpoint ``churn`` in hour 05 (every ``base64_every``-th
    stored BASE64, two sharing one eventId), and labels for the even ones. Returns the
    requests as (inference id, body)."""
    capture, labels = base / "capture", base / "labels"
    plain = CaptureConfig(str(capture), sampling_percentage=100, endpoint="churn",
                          spool_dir=str(base / "spool-a"))
    b64 = CaptureConfig(str(capture), sampling_percentage=100, endpoint="churn",
                        csv_content_types=(), spool_dir=str(base / "spool-b"))
    sent = []
    with CaptureWriter(plain) as wa, CaptureWriter(b64) as wb:
        for i in range(n):
            body = f"{i},{i % 7},{2 * i}\n"
            w = wb if base64_every and i % base64_every == 3 else wa
            event = "dup-event" if repeat_event_id and i in (1, 2) else f"e-{i}"
            w.capture(body, "text/csv", "0.5\n", "text/csv", inference_id=f"req-{i}",
                      event_id=event, when=T0.replace(minute=i % 60, second=i % 60))
            sent.append((f"req-{i}", body))
    write_ground_truth(str(labels), {k: str(int(k[4:]) % 2) for k, _ in sent[::2]},
                       when=T0.replace(hour=8))
    return capture, labels, sent


class Candidate:
    """A real HTTP model server on 127.0.0.1 (http.server in a thread).

    ``mode``: ``csv`` answers the sum of each row's numbers as CSV; ``json`` answers
    ``{"predictions": [{"score": …}]}``. ``fail``: ``{row's first number: [statuses…]}`` answers
    those statuses first (then succeeds). ``slow``: ``{first number: seconds}`` sleeps first.
    Records each request (path, headers, body) and the most requests in flight at once.
    """

    def __init__(self, mode: str = "csv", fail=None, slow=None, delay: float = 0.0):
        self.mode, self.fail, self.slow, self.delay = mode, dict(fail or {}), slow or {}, delay
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.active = self.max_active = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with owner.lock:
                    owner.requests.append({"path": self.path, "headers": dict(self.headers),
                                           "body": body})
                    owner.active += 1
                    owner.max_active = max(owner.max_active, owner.active)
                try:
                    status, ctype, out = owner.answer(body)
                finally:
                    with owner.lock:
                        owner.active -= 1
                data = out.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/invocations"

    def answer(self, body: bytes):
        rows = [[float(v) for v in line.split(",")] for line in body.decode().splitlines()]
        first = int(rows[0][0])
        with self.lock:
            todo = self.fail.get(first)
            status = todo.pop(0) if todo else None
        if self.delay or first in self.slow:
            time.sleep(self.slow.get(first, self.delay))
        if status is not None:
            return status, "text/plain", f"candidate failed with {status}"
        if self.mode == "json":
            return 200, "application/json", json.dumps(
                {"predictions": [{"score": sum(r)} for r in rows]})
        return 200, "text/csv", "".join(f"{sum(r)}\n" for r in rows)

    def __enter__(self):
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


FAST = rp.RetryPolicy(retries=2, max_seconds=5, backoff=0.01, max_backoff=0.05)


def out_keys(out: Path) -> Counter:
    caps = captureq.open(str(out)).captures()
    return Counter(json.loads(m)["replayKey"] for m in caps.column("event_metadata").to_pylist())


# -- parsers ----------------------------------------------------------------------------------
@given(st.integers(min_value=1, max_value=10**9))
def test_sample_count_round_trips(n):
    assert rp.parse_sample(str(n)) == n


@given(st.floats(min_value=1e-6, max_value=1.0, allow_nan=False))
def test_sample_fraction_round_trips(f):
    assert rp.parse_sample(repr(f)) == pytest.approx(f)
    assert rp.parse_sample(f"{f * 100!r}%") == pytest.approx(f)


@given(st.text(max_size=12))
def test_sample_parser_raises_only_config_errors(text):
    try:
        value = rp.parse_sample(text)
    except ConfigError:
        return
    assert (isinstance(value, int) and value >= 1) or 0 < value <= 1


@given(st.from_regex(r"[a-zA-Z0-9](-?[a-zA-Z0-9]){0,10}", fullmatch=True),
       st.one_of(st.none(), st.from_regex(r"[a-zA-Z0-9](-?[a-zA-Z0-9]){0,10}", fullmatch=True)))
def test_sagemaker_target_round_trips(endpoint, variant):
    text = f"sagemaker:{endpoint}" + (f":{variant}" if variant else "")
    t = rp.parse_target(text)
    assert (t.kind, t.endpoint, t.variant) == ("sagemaker", endpoint, variant)
    assert t.default_name == (variant or endpoint)


@pytest.mark.parametrize("bad", ["ftp://x/invocations", "sagemaker:", "sagemaker:a:b:c",
                                 "sagemaker:bad_name", "localhost:8080"])
def test_bad_targets_say_what_is_expected(bad):
    with pytest.raises(ConfigError, match="sagemaker:ENDPOINT"):
        rp.parse_target(bad)


# -- selection --------------------------------------------------------------------------------
def test_keys_tell_apart_repeated_event_ids_and_survive_a_move(tmp_path):
    capture, _, sent = make_tree(tmp_path, n=12)
    a = rp.select_requests(captureq.open(str(capture)).captures())
    assert a.num_rows == 12 == len(set(a.column("replay_key").to_pylist()))
    moved = tmp_path / "elsewhere" / "tree"
    shutil.copytree(capture, moved)
    b = rp.select_requests(captureq.open(str(moved)).captures())
    assert sorted(a.column("replay_key").to_pylist()) == sorted(b.column("replay_key").to_pylist())


def test_samples_are_deterministic_subsets(tmp_path):
    capture, _, _ = make_tree(tmp_path, n=40)
    caps = captureq.open(str(capture)).captures()
    every = set(rp.select_requests(caps).column("replay_key").to_pylist())
    half = rp.select_requests(caps, 0.5).column("replay_key").to_pylist()
    assert set(half) < every and 8 <= len(half) <= 32  # 40 draws at p=0.5
    assert rp.select_requests(caps, 0.5).column("replay_key").to_pylist() == half
    ten = rp.select_requests(caps, 10).column("replay_key").to_pylist()
    assert len(ten) == 10 and set(ten) == set(sorted(every)[:10])
    times = rp.select_requests(caps, 10).column("inference_time").to_pylist()
    assert times == sorted(times)


# -- replaying to a real HTTP candidate -------------------------------------------------------
def test_replay_sends_each_request_once_and_the_output_joins_the_labels(tmp_path):
    capture, labels, sent = make_tree(tmp_path, n=40)
    out = tmp_path / "replay"
    with Candidate() as cand:
        r = rp.replay(str(capture), cand.url, str(out), name="v2", concurrency=4, retry=FAST)
    assert (r.selected, r.sent, r.answers, r.failures) == (40, 40, 40, 0)
    # the captured bytes (BASE64 ones decoded), content type and accept, once each
    assert sorted(q["body"].decode() for q in cand.requests) == sorted(b for _, b in sent)
    assert {q["headers"]["Content-Type"] for q in cand.requests} == {"text/csv"}
    assert {q["headers"]["Accept"] for q in cand.requests} == {"text/csv"}
    assert {q["path"] for q in cand.requests} == {"/invocations"}
    caps = captureq.open(str(out)).captures()
    assert set(caps.column("variant").to_pylist()) == {"v2"}
    orig = captureq.open(str(capture)).captures()
    pairs = lambda t: sorted(zip(t.column("event_id").to_pylist(),  # noqa: E731
                                 t.column("inference_id").to_pylist(),
                                 t.column("inference_time").to_pylist()))
    assert pairs(caps) == pairs(orig)
    meta = [json.loads(m) for m in caps.column("event_metadata").to_pylist()]
    assert all(m["replayLatencyMs"] >= 0 and m["replayAttempts"] == 1 and m["replayTime"]
               and m["replaySourceVariant"] == "AllTraffic" for m in meta)
    assert len(out_keys(out)) == 40
    # every tool reads it unchanged: predictions join the original tree's labels
    q = """select count(*) n, count(ground_truth) labelled,
                  count(*) filter (where output_c0 = _c0 + _c1 + _c2) right_answers
           from predictions"""
    got = captureq.open(str(out), labels=str(labels)).sql(q).to_arrow().to_pylist()[0]
    assert got == {"n": 40, "labelled": 20, "right_answers": 40}
    assert "p50" in r.summary() and "40 answers" in r.summary()


def test_a_rerun_sends_nothing_and_writes_nothing(tmp_path):
    capture, _, _ = make_tree(tmp_path, n=20)
    out = tmp_path / "replay"
    with Candidate() as cand:
        rp.replay(str(capture), cand.url, str(out), retry=FAST)
        again = rp.replay(str(capture), cand.url, str(out), retry=FAST)
        assert len(cand.requests) == 20
    assert (again.selected, again.already_done, again.sent, again.answers) == (20, 20, 0, 0)
    assert set(out_keys(out).values()) == {1} and len(out_keys(out)) == 20


def test_failures_are_retried_then_recorded_and_counted(tmp_path):
    capture, _, _ = make_tree(tmp_path, n=30)
    out = tmp_path / "replay"
    # row i's first number is i: 3 and 4 recover after 503s/429, 5 always 500s, 6 is a 400
    fail = {3: [503, 503], 4: [429], 5: [500] * 10, 6: [400]}
    with Candidate(fail=fail) as cand:
        r = rp.replay(str(capture), cand.url, str(out), name="flaky", retry=FAST)
    assert r.selected == r.answers + r.failures == 30
    assert (r.answers, r.failures) == (28, 2)
    assert r.retries == 2 + 1 + 2  # two 503s, one 429, two retries of the 500
    failures = {f["inferenceId"]: f for f in rp.read_failures(str(out), "flaky")}
    assert set(failures) == {"req-5", "req-6"}
    assert (failures["req-5"]["status"], failures["req-5"]["attempts"]) == (500, 3)
    assert (failures["req-6"]["status"], failures["req-6"]["attempts"]) == (400, 1)
    assert "candidate failed with 500" in failures["req-5"]["error"]
    assert captureq.open(str(out)).captures().num_rows == 28
    # a rerun sends neither the answered nor the failed requests
    with Candidate() as cand:
        again = rp.replay(str(capture), cand.url, str(out), name="flaky", retry=FAST)
        assert cand.requests == [] and again.already_done == 30


def test_slow_answers_time_out_and_concurrency_is_bounded(tmp_path):
    capture, _, _ = make_tree(tmp_path, n=16)
    out = tmp_path / "replay"
    with Candidate(delay=0.05, slow={7: 3.0}) as cand:
        t0 = time.monotonic()
        r = rp.replay(str(capture), cand.url, str(out), concurrency=3, timeout=0.5,
                      retry=rp.RetryPolicy(retries=1, max_seconds=2, backoff=0.01))
        took = time.monotonic() - t0
    assert cand.max_active <= 3
    assert (r.answers, r.failures) == (15, 1)
    (f,) = rp.read_failures(str(out), r.name)
    assert f["inferenceId"] == "req-7" and f["status"] is None and "timed out" in f["error"]
    assert took < 15
    assert r.latency_ms(0.5) >= 50


def test_the_rate_limit_spaces_requests(tmp_path):
    capture, _, _ = make_tree(tmp_path, n=10)
    with Candidate() as cand:
        t0 = time.monotonic()
        r = rp.replay(str(capture), cand.url, str(tmp_path / "out"), concurrency=4, rate=20)
        took = time.monotonic() - t0
    assert r.answers == 10 and took >= 9 / 20


def test_a_json_candidate_answers_in_its_own_format(tmp_path):
    capture, labels, _ = make_tree(tmp_path, n=12)
    out = tmp_path / "replay"
    with Candidate(mode="json") as cand:
        r = rp.replay(str(capture), cand.url, str(out), name="json-model")
    assert r.answers == 12
    caps = captureq.open(str(out)).captures()
    assert set(caps.column("output_encoding").to_pylist()) == {"JSON"}
    q = "select count(*) filter (where output_score = _c0 + _c1 + _c2) ok from predictions"
    assert captureq.open(str(out), labels=str(labels)).sql(q).to_arrow().to_pylist() == [{"ok": 12}]


# -- interrupted: a real kill of the replaying process ------------------------------------------
def test_a_killed_replay_resumes_without_writing_any_answer_twice(tmp_path):
    capture, _, sent = make_tree(tmp_path, n=60)
    out = tmp_path / "replay"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    code = (
        "import sys, captureq.replay as rp\n"
        "rp.replay(sys.argv[1], sys.argv[2], sys.argv[3], name='killed', concurrency=2,\n"
        "          close_timeout=60, commit_interval=0.5)\n"
    )
    with Candidate(delay=0.1) as cand:
        proc = subprocess.Popen([sys.executable, "-c", code, str(capture), cand.url, str(out)],
                                env=env)
        try:
            deadline = time.monotonic() + 60
            # wait until some answers are written and some are only spooled, then kill -9
            while time.monotonic() < deadline and not (
                len(cand.requests) >= 30 and list(out.rglob("*.jsonl"))
            ):
                time.sleep(0.05)
            assert len(cand.requests) >= 30, "the replay did not get going"
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        first = len(cand.requests)
        assert first < 60, "the replay ended before the kill"
        saved = os.environ.get("XDG_CACHE_HOME")
        os.environ["XDG_CACHE_HOME"] = env["XDG_CACHE_HOME"]  # the same spool as the killed run
        try:
            again = rp.replay(str(capture), cand.url, str(out), name="killed", concurrency=2)
        finally:
            if saved is None:
                os.environ.pop("XDG_CACHE_HOME")
            else:
                os.environ["XDG_CACHE_HOME"] = saved
    keys = out_keys(out)
    assert len(keys) == 60 and set(keys.values()) == {1}  # every answer, each once
    assert again.already_done + again.answers == 60 and again.already_done > 0
    assert again.sent == len(cand.requests) - first  # only what was missing was sent
    assert again.sent <= 60 - again.already_done


# -- sagemaker:ENDPOINT against moto's server mode ----------------------------------------------
def test_a_sagemaker_endpoint_target_through_moto_server(tmp_path, s3_server, monkeypatch):
    import urllib.request

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    capture, labels, sent = make_tree(tmp_path, n=8)
    # moto answers InvokeEndpoint from a queue of results, one per distinct request
    results = [{"Body": f"0.{i}", "ContentType": "text/csv"} for i in range(8)]
    req = urllib.request.Request(
        f"{s3_server.endpoint_url}/moto-api/static/sagemaker/endpoint-results",
        data=json.dumps({"results": results, "region": "us-east-1"}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req, timeout=10).read()
    out = tmp_path / "replay"
    r = rp.replay(str(capture), "sagemaker:churn-v2:Canary", str(out), region="us-east-1",
                  endpoint_url=s3_server.endpoint_url, concurrency=1, retry=FAST)
    assert (r.name, r.answers, r.failures) == ("Canary", 8, 0)
    assert any(q.key and "endpoints/churn-v2/invocations" in f"{q.bucket}/{q.key}"
               for q in s3_server.log.requests)
    caps = captureq.open(str(out)).captures()
    assert sorted(caps.column("output_data").to_pylist()) == sorted(x["Body"] for x in results)
    assert set(caps.column("variant").to_pylist()) == {"Canary"}


# -- the command --------------------------------------------------------------------------------
def test_the_replay_command_prints_one_summary_line(tmp_path):
    from typer.testing import CliRunner

    from captureq.cli import app

    capture, _, _ = make_tree(tmp_path, n=20)
    out = tmp_path / "replay"
    with Candidate(fail={5: [500] * 10}) as cand:
        res = CliRunner().invoke(app, ["replay", str(capture), "--to", cand.url, "--out", str(out),
                                       "--sample", "10", "--concurrency", "2", "--retries", "0",
                                       "--name", "cli-model"])
        assert res.exit_code == 0, res.output
        assert len(cand.requests) == 10
    assert "as cli-model: 10 requests: 10 sent" in res.output
    bad = CliRunner().invoke(app, ["replay", str(capture), "--to", "ftp://x", "--out", str(out)])
    assert bad.exit_code == 2 and "sagemaker:ENDPOINT" in bad.output
