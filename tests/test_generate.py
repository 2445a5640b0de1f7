"""The sample and benchmark tree generators, checked by reading their files back with plain json."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from captureq.errors import ConfigError
from captureq.generate import (
    EndpointSpec,
    default_endpoints,
    generate_benchmark_tree,
    generate_tree,
)
from captureq.records import capture_record, dumps, encode_payload, media_type

UTC = timezone.utc
START = datetime(2026, 1, 1, tzinfo=UTC)
CAPTURE_PATH = re.compile(
    r"(?P<endpoint>[^/]+)/(?P<variant>[^/]+)/(?P<y>\d{4})/(?P<m>\d\d)/(?P<d>\d\d)/(?P<h>\d\d)/"
    r"(?P<mm>\d\d)-(?P<ss>\d\d)-(?P<ms>\d{3})-[0-9a-f-]{36}\.jsonl(\.gz)?"
)
SMALL = {"hours": 6, "requests_per_hour": 20}


# -- reading trees back, independently of captureq's reader --------------------------------------
def _text(path: Path) -> str:
    raw = path.read_bytes()
    return (gzip.decompress(raw) if path.name.endswith(".gz") else raw).decode()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in _files(root)}


def _captures(root: Path) -> list[tuple[str, dict]]:
    """(path relative to root, record) for every capture line."""
    out = []
    for p in _files(root):
        text = _text(p)
        assert text.endswith("\n")
        out += [(str(p.relative_to(root)), json.loads(line)) for line in text.splitlines()]
    return out


def _payload_text(p: dict) -> str:
    return base64.b64decode(p["data"]).decode() if p["encoding"] == "BASE64" else p["data"]


def _rows(p: dict) -> list:
    """The records in a payload: CSV rows (as lists of strings) or JSON instances."""
    text = _payload_text(p)
    if media_type(p["observedContentType"]) == "text/csv":
        return [line.split(",") for line in text.splitlines() if line]
    doc = json.loads(text)
    if isinstance(doc, list):
        return doc
    for key in ("instances", "predictions"):
        if key in doc:
            return doc[key]
    return [doc]


def _hour_of(rel: str) -> datetime:
    m = CAPTURE_PATH.fullmatch(rel)
    assert m, rel
    return datetime(int(m["y"]), int(m["m"]), int(m["d"]), int(m["h"]), tzinfo=UTC)


def _time(record: dict) -> datetime:
    return datetime.fromisoformat(record["eventMetadata"]["inferenceTime"].replace("Z", "+00:00"))


# -- generate_tree ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    base = tmp_path_factory.mktemp("demo")
    summary = generate_tree(str(base / "capture"), labels_out=str(base / "labels"), seed=7, **SMALL)
    return base, summary


def test_default_endpoints_match_the_brief() -> None:
    churn, housing, fraud = default_endpoints()
    assert churn.name == "churn-xgb" and dict(churn.variants) == {"AllTraffic": 0.8, "Canary": 0.2}
    assert churn.n_features == 12 and churn.input_content_type == "text/csv"
    assert (
        housing.input_kind == "json-instances" and housing.input_content_type == "application/json"
    )
    assert fraud.input_content_type == "text/csv" and "text/csv" not in fraud.capture_csv_types


def test_same_seed_same_bytes(tmp_path) -> None:
    a = generate_tree(str(tmp_path / "a"), labels_out=str(tmp_path / "la"), seed=3, **SMALL)
    b = generate_tree(str(tmp_path / "b"), labels_out=str(tmp_path / "lb"), seed=3, **SMALL)
    c = generate_tree(str(tmp_path / "c"), seed=4, **SMALL)
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")
    assert _tree_bytes(tmp_path / "la") == _tree_bytes(tmp_path / "lb")
    assert _tree_bytes(tmp_path / "a") != _tree_bytes(tmp_path / "c")
    assert a.repeated_event_id == b.repeated_event_id
    # writing labels or not does not change the captures
    assert a.captures == c.captures
    d = generate_tree(str(tmp_path / "d"), seed=3, **SMALL)
    assert _tree_bytes(tmp_path / "d") == _tree_bytes(tmp_path / "a")
    assert d.labels_written == 0 and d.label_files == []


def test_summary_counts_equal_what_was_written(demo) -> None:
    base, s = demo
    caps = _captures(base / "capture")
    assert s.captures == len(caps)
    assert s.files_written == len(_files(base / "capture")) == len(s.files)
    assert s.start == START and s.end == START + timedelta(hours=SMALL["hours"])

    per_ep: dict[str, Counter] = defaultdict(Counter)
    per_variant: Counter = Counter()
    per_hour: Counter = Counter()
    files_per_ep: Counter = Counter()
    for p in _files(base / "capture"):
        files_per_ep[str(p.relative_to(base / "capture")).split("/")[0]] += 1
    for rel, r in caps:
        m = CAPTURE_PATH.fullmatch(rel)
        assert m, rel
        ep = m["endpoint"]
        per_variant[ep, m["variant"]] += 1
        per_hour[_hour_of(rel)] += 1
        assert _time(r).replace(minute=0, second=0) == _hour_of(rel)  # hour folder = UTC hour
        cap = r["captureData"]
        n_in = len(_rows(cap["endpointInput"]))
        n_out = len(_rows(cap["endpointOutput"]))
        assert n_in == n_out
        per_ep[ep].update(captures=1, input_records=n_in, output_records=n_out)
    assert s.input_records == sum(c["input_records"] for c in per_ep.values())
    assert s.output_records == sum(c["output_records"] for c in per_ep.values())
    assert s.input_records > s.captures  # some requests carry several records
    for ep, es in s.endpoints.items():
        assert es.captures == per_ep[ep]["captures"] == SMALL["hours"] * SMALL["requests_per_hour"]
        assert es.input_records == per_ep[ep]["input_records"]
        assert es.output_records == per_ep[ep]["output_records"]
        assert es.files == files_per_ep[ep]
        assert es.variants == {v: per_variant[ep, v] for v in es.variants}
    assert s.captures_per_hour == dict(sorted(per_hour.items()))
    times = [_time(r) for _, r in caps]
    assert (s.first_inference_time, s.last_inference_time) == (min(times), max(times))
    # canary gets roughly a fifth of churn's traffic
    canary = s.endpoints["churn-xgb"].variants["Canary"] / s.endpoints["churn-xgb"].captures
    assert 0.08 < canary < 0.35


def test_files_are_named_and_ordered_like_sagemaker(demo) -> None:
    base, _ = demo
    for p in _files(base / "capture"):
        rel = str(p.relative_to(base / "capture"))
        m = CAPTURE_PATH.fullmatch(rel)
        assert m, rel
        lines = [json.loads(x) for x in _text(p).splitlines()]
        times = [_time(r) for r in lines]
        assert times == sorted(times)
        # the name carries minute and second of the first record
        assert (times[0].minute, times[0].second) == (int(m["mm"]), int(m["ss"]))


def test_payload_shapes_per_endpoint(demo) -> None:
    base, _ = demo
    seen = Counter()
    for rel, r in _captures(base / "capture"):
        ep = rel.split("/")[0]
        inp, out = r["captureData"]["endpointInput"], r["captureData"]["endpointOutput"]
        assert inp["mode"] == "INPUT" and out["mode"] == "OUTPUT"
        assert r["eventVersion"] == "0"
        if ep == "churn-xgb":
            assert (inp["observedContentType"], inp["encoding"]) == ("text/csv", "CSV")
            assert inp["data"].endswith("\n")
            assert all(len(row) == 12 for row in _rows(inp))
            assert out["encoding"] == "CSV"
            scores = [float(x) for x in out["data"].split("\n")]
            assert all(0 < x < 1 for x in scores)
            seen["churn-multi"] += len(scores) > 1
        elif ep == "housing-ll":
            assert (inp["observedContentType"], inp["encoding"]) == ("application/json", "JSON")
            doc = json.loads(inp["data"])
            assert 1 <= len(doc["instances"]) <= 3
            assert all(
                len(x) == 8 and all(isinstance(v, float) for v in x) for x in doc["instances"]
            )
            preds = json.loads(out["data"])["predictions"]
            assert len(preds) == len(doc["instances"]) and all(set(p) == {"score"} for p in preds)
        else:
            assert ep == "fraud-json"
            assert (inp["observedContentType"], inp["encoding"]) == ("text/csv", "BASE64")
            assert len(_rows(inp)) == 1 and len(_rows(inp)[0]) == 10
            assert (out["observedContentType"], out["encoding"]) == ("application/json", "JSON")
            doc = json.loads(out["data"])
            assert set(doc) == {"label", "score"} and doc["label"] == int(doc["score"] >= 0.5)
            assert "inferenceId" in r["eventMetadata"]
    assert seen["churn-multi"] > 0


def test_inference_ids_and_the_repeated_event_id(demo) -> None:
    base, s = demo
    caps = [r for _, r in _captures(base / "capture")]
    churn_ids = [
        "inferenceId" in r["eventMetadata"]
        for rel, r in _captures(base / "capture")
        if rel.startswith("churn-xgb/")
    ]
    assert 0.55 < np.mean(churn_ids) < 0.85  # ~70 %
    counts = Counter(r["eventMetadata"]["eventId"] for r in caps)
    assert s.repeated_event_id is not None and s.repeated_event_id_count == 3
    assert counts[s.repeated_event_id] == 3
    assert all(n == 1 for e, n in counts.items() if e != s.repeated_event_id)
    repeated = [r for r in caps if r["eventMetadata"]["eventId"] == s.repeated_event_id]
    inference_ids = [r["eventMetadata"]["inferenceId"] for r in repeated]
    assert len(set(inference_ids)) == 3
    all_ids = [
        r["eventMetadata"]["inferenceId"] for r in caps if "inferenceId" in r["eventMetadata"]
    ]
    assert len(all_ids) == len(set(all_ids))


def test_labels_match_captures(demo) -> None:
    base, s = demo
    key_of = {}
    for rel, r in _captures(base / "capture"):
        meta = r["eventMetadata"]
        key = meta.get("inferenceId", meta["eventId"])
        assert key not in key_of
        key_of[key] = (rel.split("/")[0], _hour_of(rel), r)
    label_files = _files(base / "labels")
    assert len(label_files) == s.label_files_written == len(s.label_files)
    n_lines = n_records = 0
    per_ep: Counter = Counter()
    scores: dict[int, list[float]] = defaultdict(list)
    for p in label_files:
        rel = str(p.relative_to(base / "labels"))
        m = re.fullmatch(r"(\d{4})/(\d\d)/(\d\d)/(\d\d)/([a-z-]+)-[0-9a-f-]{36}\.jsonl", rel)
        assert m, rel
        hour = datetime(*(int(x) for x in m.groups()[:4]), tzinfo=UTC)
        for line in _text(p).splitlines():
            lab = json.loads(line)
            assert list(lab) == ["groundTruthData", "eventMetadata", "eventVersion"]
            ep, cap_hour, cap = key_of[lab["eventMetadata"]["eventId"]]
            assert ep == m[5]
            assert hour == cap_hour + timedelta(hours=2)  # label_delay_hours
            values = lab["groundTruthData"]["data"].split("\n")
            assert len(values) == len(_rows(cap["captureData"]["endpointInput"]))
            enc = lab["groundTruthData"]["encoding"]
            if ep == "churn-xgb":
                assert enc == "CSV" and set(values) <= {"0", "1"}
                preds = cap["captureData"]["endpointOutput"]["data"].split("\n")
                for v, pr in zip(values, preds, strict=True):
                    scores[int(v)].append(float(pr))
            elif ep == "fraud-json":
                assert enc == "JSON" and json.loads(values[0]) in (0, 1)
            else:
                assert enc == "CSV" and all(float(v) == float(v) for v in values)
            n_lines += 1
            n_records += len(values)
            per_ep[ep] += 1
    assert s.labels_written == n_lines and s.label_records == n_records
    assert {ep: es.labels for ep, es in s.endpoints.items()} == {
        ep: per_ep[ep] for ep in s.endpoints
    }
    assert 0.45 < s.labels_written / s.captures < 0.75  # label_fraction 0.6
    # ground truth was drawn from the scores: positives score higher
    assert np.mean(scores[1]) > np.mean(scores[0]) + 0.1


def _churn_rows(root: Path) -> dict[tuple[str, int], np.ndarray]:
    """Churn input rows of each capture, keyed by (file, line number)."""
    out = {}
    for p in _files(root / "churn-xgb"):
        rel = str(p.relative_to(root))
        for i, line in enumerate(_text(p).splitlines()):
            rows = _rows(json.loads(line)["captureData"]["endpointInput"])
            out[rel, i] = np.array([[float(x) for x in row] for row in rows])
    return out


def test_drift_shifts_one_feature_from_one_hour(tmp_path) -> None:
    kw = {"hours": 8, "requests_per_hour": 40, "seed": 1, "repeated_event_id_count": 0}
    generate_tree(str(tmp_path / "base"), **kw)
    s = generate_tree(str(tmp_path / "drift"), drift_feature="_c3", drift_from_hour=5, **kw)
    assert s.drift_feature == "_c3" and s.drift_start == START + timedelta(hours=5)
    base, drift = _tree_bytes(tmp_path / "base"), _tree_bytes(tmp_path / "drift")
    assert base.keys() == drift.keys()
    for rel in base:
        if not rel.startswith("churn-xgb/") or _hour_of(rel) < s.drift_start:
            assert base[rel] == drift[rel], rel  # other endpoints and earlier hours untouched
    before, after = _churn_rows(tmp_path / "base"), _churn_rows(tmp_path / "drift")
    assert before.keys() == after.keys()
    diffs = []
    for (rel, i), a in before.items():
        delta = after[rel, i] - a
        assert not np.delete(delta, 3, axis=1).any()  # only _c3 moves
        if _hour_of(rel) >= s.drift_start:
            diffs += delta[:, 3].tolist()
        else:
            assert not delta.any()
    # _c3 (day calls, std 20) moves by 3 standard deviations
    assert diffs and abs(np.mean(diffs) - 60) < 1


def test_drift_feature_validation(tmp_path) -> None:
    with pytest.raises(ConfigError, match="_c3"):
        generate_tree(str(tmp_path), hours=1, drift_feature="day_calls")


def test_input_only_and_output_only(tmp_path) -> None:
    specs = [
        EndpointSpec("in-only", n_features=3, capture_output=False),
        EndpointSpec(
            "out-only",
            n_features=3,
            capture_input=False,
            records_per_request=(1, 2),
            multi_record_fraction=0.5,
        ),
    ]
    s = generate_tree(
        str(tmp_path), endpoints=specs, hours=2, requests_per_hour=10, repeated_event_id_count=0
    )
    caps = _captures(tmp_path)
    assert len(caps) == s.captures == 40
    assert s.repeated_event_id is None and s.repeated_event_id_count == 0
    outputs = 0
    for rel, r in caps:
        side = list(r["captureData"])
        assert side == (["endpointInput"] if rel.startswith("in-only/") else ["endpointOutput"])
        if rel.startswith("out-only/"):
            outputs += len(_rows(r["captureData"]["endpointOutput"]))
    assert s.endpoints["in-only"].output_records == 0
    assert s.endpoints["out-only"].input_records == 0
    assert s.endpoints["out-only"].output_records == outputs > 20
    assert s.input_records == s.endpoints["in-only"].input_records == 20


def test_other_payload_kinds(tmp_path) -> None:
    specs = [
        EndpointSpec(
            "feat",
            n_features=4,
            input_kind="json-features",
            output_kind="json-label-score",
            records_per_request=(1, 2),
            multi_record_fraction=0.5,
        ),
        EndpointSpec(
            "lines",
            n_features=2,
            input_kind="jsonlines",
            task="regression",
            output_kind="json-predictions",
            records_per_request=(2, 3),
            label_encoding=None,
        ),
    ]
    s = generate_tree(
        str(tmp_path / "c"),
        endpoints=specs,
        hours=1,
        requests_per_hour=12,
        labels_out=str(tmp_path / "l"),
    )
    for rel, r in _captures(tmp_path / "c"):
        inp = r["captureData"]["endpointInput"]
        text = inp["data"]
        if rel.startswith("feat/"):
            doc = json.loads(text)
            assert ("features" in doc) or all(set(x) == {"features"} for x in doc["instances"])
        else:
            assert inp["observedContentType"] == "application/jsonlines"
            assert all(len(json.loads(x)) == 2 for x in text.split("\n"))
    assert s.endpoints["lines"].labels == 0 and s.endpoints["feat"].labels > 0


def test_bad_specs_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="input_kind"):
        EndpointSpec("x", input_kind="xml")
    with pytest.raises(ConfigError, match="feature_means"):
        EndpointSpec("x", n_features=2, feature_means=(1.0,))
    with pytest.raises(ConfigError, match="records_per_request"):
        EndpointSpec("x", records_per_request=(0, 1))
    with pytest.raises(ConfigError, match="unique"):
        generate_tree("unused", endpoints=[EndpointSpec("x"), EndpointSpec("x")])


def test_compress_writes_gzip_with_the_same_lines(tmp_path) -> None:
    generate_tree(str(tmp_path / "plain"), seed=2, labels_out=str(tmp_path / "lp"), **SMALL)
    s = generate_tree(
        str(tmp_path / "gz"), seed=2, compress=True, labels_out=str(tmp_path / "lg"), **SMALL
    )
    plain = {k + ".gz": v for k, v in _tree_bytes(tmp_path / "plain").items()}
    packed = _tree_bytes(tmp_path / "gz")
    assert plain.keys() == packed.keys()
    assert all(gzip.decompress(packed[k]) == plain[k] for k in plain)
    assert all(p.endswith(".jsonl.gz") for p in s.files + s.label_files)


def test_writes_through_fsspec_memory() -> None:
    import fsspec

    s = generate_tree(
        "memory://cq-test/capture",
        hours=1,
        requests_per_hour=4,
        seed=0,
        labels_out="memory://cq-test/labels",
        label_fraction=1.0,
    )
    fs = fsspec.filesystem("memory")
    try:
        lines = sum(fs.cat_file(p).count(b"\n") for p in fs.find("/cq-test/capture"))
        assert lines == s.captures == 12
        assert len(fs.find("/cq-test/labels")) == s.label_files_written == 3
    finally:
        fs.rm("/cq-test", recursive=True)


@pytest.fixture
def s3_options(monkeypatch):
    moto_server = pytest.importorskip("moto.server")
    import s3fs

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    opts = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": f"http://{host}:{port}"},
        "skip_instance_cache": True,
    }
    s3fs.S3FileSystem(**opts).mkdir("bucket")
    yield opts
    server.stop()


@pytest.mark.s3
def test_writes_to_s3(s3_options) -> None:
    import s3fs

    s = generate_tree(
        "s3://bucket/capture",
        hours=2,
        requests_per_hour=5,
        seed=0,
        labels_out="s3://bucket/labels",
        storage_options=s3_options,
    )
    b = generate_benchmark_tree(
        "s3://bucket/bench", records=300, hours=2, files_per_hour=2, storage_options=s3_options
    )
    fs = s3fs.S3FileSystem(**s3_options)
    found = sorted(fs.find("bucket/capture"))
    assert found == sorted(s.files)
    assert sum(fs.cat_file(p).count(b"\n") for p in found) == s.captures == 30
    assert len(fs.find("bucket/labels")) == s.label_files_written
    assert sum(fs.cat_file(p).count(b"\n") for p in fs.find("bucket/bench")) == b.captures == 300


# -- generate_benchmark_tree --------------------------------------------------------------------
def _rebuild(line: str) -> str:
    r = json.loads(line)
    inp, out = r["captureData"]["endpointInput"], r["captureData"]["endpointOutput"]
    text = _payload_text(inp)
    csv_types = ("text/csv",) if inp["encoding"] != "BASE64" else ()
    return dumps(
        capture_record(
            input=encode_payload(
                text, inp["observedContentType"], csv_types=csv_types, mode="INPUT"
            ),
            output=encode_payload(out["data"], out["observedContentType"], mode="OUTPUT"),
            event_id=r["eventMetadata"]["eventId"],
            inference_time=_time(r),
        )
    )


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    base = tmp_path_factory.mktemp("bench")
    summaries = {
        enc: generate_benchmark_tree(
            str(base / enc), records=10_000, encoding=enc, hours=4, files_per_hour=5
        )
        for enc in ("CSV", "JSON", "BASE64")
    }
    return base, summaries


@pytest.mark.parametrize("encoding", ["CSV", "JSON", "BASE64"])
def test_benchmark_tree(bench, encoding) -> None:
    base, summaries = bench
    s = summaries[encoding]
    root = base / encoding
    caps = _captures(root)
    assert len(caps) == s.captures == s.input_records == s.output_records == 10_000
    assert s.files_written == len(_files(root)) == 2 * 4 * 5
    assert {ep: es.captures for ep, es in s.endpoints.items()} == {"bench-0": 5000, "bench-1": 5000}
    assert sum(s.captures_per_hour.values()) == 10_000 and len(s.captures_per_hour) == 4
    ctype = "application/json" if encoding == "JSON" else "text/csv"
    per_file = Counter()
    ints = floats = 0
    for rel, r in caps:
        per_file[rel] += 1
        inp = r["captureData"]["endpointInput"]
        assert (inp["observedContentType"], inp["encoding"]) == (ctype, encoding)
        assert _time(r).replace(minute=0, second=0) == _hour_of(rel)
        if encoding == "JSON":
            row = json.loads(inp["data"])["features"]
            assert len(row) == 69
        else:
            text = _payload_text(inp)
            assert text.endswith("\n") and text.count("\n") == 1
            row = text[:-1].split(",")
            assert len(row) == 69
            ints += sum("." not in x for x in row[:11])
            floats += sum("." in x for x in row[:11])
            assert set(row[11:]) <= {"0", "1"}
        assert 0 < float(r["captureData"]["endpointOutput"]["data"]) < 1
    if encoding != "JSON":
        assert ints and floats  # a mix, like "69,0,153.7,109,194.0,..."
    assert max(per_file.values()) - min(per_file.values()) <= 1
    # every line is exactly what the reference writer produces
    for p in _files(root)[:5]:
        for line in _text(p).splitlines():
            assert _rebuild(line) == line
    times = [_time(r) for _, r in caps]
    assert (s.first_inference_time, s.last_inference_time) == (min(times), max(times))


def test_benchmark_encodings_hold_the_same_data(bench) -> None:
    base, _ = bench

    def rows(enc):
        out = []
        for _, r in _captures(base / enc):
            inp = r["captureData"]["endpointInput"]
            text = _payload_text(inp)
            values = json.loads(text)["features"] if enc == "JSON" else json.loads(f"[{text[:-1]}]")
            out.append(
                (r["eventMetadata"]["eventId"], values, r["captureData"]["endpointOutput"]["data"])
            )
        return out

    csv = rows("CSV")
    assert csv == rows("JSON") == rows("BASE64")


def test_benchmark_is_deterministic(tmp_path) -> None:
    def digest(root: Path) -> str:
        h = hashlib.sha256()
        for rel, data in _tree_bytes(root).items():
            h.update(rel.encode() + data)
        return h.hexdigest()

    kw = {"records": 2_000, "hours": 3, "files_per_hour": 4}
    generate_benchmark_tree(str(tmp_path / "a"), seed=5, **kw)
    generate_benchmark_tree(str(tmp_path / "b"), seed=5, **kw)
    generate_benchmark_tree(str(tmp_path / "c"), seed=6, **kw)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")


def test_benchmark_options(tmp_path) -> None:
    s = generate_benchmark_tree(
        str(tmp_path / "x"),
        records=101,
        features=5,
        endpoints=3,
        hours=2,
        files_per_hour=50,
        compress=True,
    )
    caps = _captures(tmp_path / "x")
    assert len(caps) == s.captures == 101
    assert all(p.endswith(".jsonl.gz") for p in s.files)
    assert s.files_written == sum(min(50, es.captures) for es in s.endpoints.values())
    assert all(len(r["captureData"]["endpointInput"]["data"].split(",")) == 5 for _, r in caps)
    with pytest.raises(ConfigError, match="encoding"):
        generate_benchmark_tree(str(tmp_path / "y"), records=10, encoding="XML")
