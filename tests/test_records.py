"""The capture-format writer: record shapes, payload encodings, paths, CSV rows."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from captureq.records import (
    DEFAULT_CSV_TYPES,
    DEFAULT_JSON_TYPES,
    capture_path,
    capture_record,
    csv_line,
    dumps,
    encode_payload,
    format_time,
    ground_truth_record,
    label_path,
    media_type,
    object_name,
)

UTC = timezone.utc
T = datetime(2022, 2, 14, 17, 25, 49, tzinfo=UTC)
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


# -- media types and payload encodings ----------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("text/csv", "text/csv"),
        ("text/csv; charset=utf-8", "text/csv"),
        ("Text/CSV;charset=character-encoding", "text/csv"),
        ("  application/JSON ; q=1", "application/json"),
        ("", ""),
    ],
)
def test_media_type(header: str, expected: str) -> None:
    assert media_type(header) == expected


def test_default_types() -> None:
    assert DEFAULT_CSV_TYPES == ("text/csv",)
    assert DEFAULT_JSON_TYPES == (
        "application/json",
        "application/jsonlines",
        "application/x-jsonlines",
    )


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [
        ("text/csv", "CSV"),
        ("text/csv; charset=utf-8", "CSV"),
        ("TEXT/CSV; charset=character-encoding", "CSV"),
        ("application/json", "JSON"),
        ("Application/JSON; charset=utf-8", "JSON"),
        ("application/jsonlines", "JSON"),
        ("application/x-jsonlines", "JSON"),
        ("application/x-npy", "BASE64"),
        ("text/plain", "BASE64"),
        ("", "BASE64"),
    ],
)
def test_encode_payload_default_types(content_type: str, encoding: str) -> None:
    text = '{"a": [1, 2]}\n'
    p = encode_payload(text, content_type, mode="INPUT")
    assert list(p) == ["observedContentType", "mode", "data", "encoding"]
    assert p["observedContentType"] == content_type  # verbatim, parameters and case kept
    assert p["mode"] == "INPUT"
    assert p["encoding"] == encoding
    if encoding == "BASE64":
        assert base64.b64decode(p["data"], validate=True).decode() == text
    else:
        assert p["data"] == text


def test_encode_payload_listed_types_are_normalized() -> None:
    # The capture config may list types with other case or parameters.
    p = encode_payload("1,2", "text/csv", csv_types=["TEXT/CSV; charset=utf-8"], mode="INPUT")
    assert p["encoding"] == "CSV"
    p = encode_payload("[1]", "application/json", json_types=["Application/Json"], mode="OUTPUT")
    assert p["encoding"] == "JSON" and p["mode"] == "OUTPUT"


def test_csv_not_listed_is_base64_and_decodes_twice() -> None:
    p = encode_payload("1,2.5\n3,4\n", "text/csv", csv_types=(), mode="INPUT")
    assert p == {
        "observedContentType": "text/csv",
        "mode": "INPUT",
        "data": base64.b64encode(b"1,2.5\n3,4\n").decode(),
        "encoding": "BASE64",
    }
    assert base64.b64decode(p["data"]).decode().splitlines() == ["1,2.5", "3,4"]


def test_json_not_listed_is_base64() -> None:
    p = encode_payload('{"x":1}', "application/json", json_types=(), mode="INPUT")
    assert p["encoding"] == "BASE64"
    assert json.loads(base64.b64decode(p["data"])) == {"x": 1}


def test_bytes_payloads() -> None:
    # valid UTF-8 bytes of a listed type are stored as text
    assert encode_payload("é,1".encode(), "text/csv", mode="INPUT")["data"] == "é,1"
    # bytes that are not UTF-8 are always base64, whatever the content type says
    raw = b"\xff\xfe\x00\x01"
    for ctype in ("text/csv", "application/json", "application/octet-stream"):
        p = encode_payload(raw, ctype, mode="INPUT")
        assert p["encoding"] == "BASE64"
        assert base64.b64decode(p["data"]) == raw


def test_base64_standard_alphabet_padded() -> None:
    p = encode_payload(b"\xfb\xff", "application/octet-stream", mode="INPUT")
    assert p["data"] == "+/8="  # standard alphabet (not -_), padded


@given(st.binary(max_size=300))
def test_base64_round_trip(raw: bytes) -> None:
    p = encode_payload(raw, "application/x-npy", mode="INPUT")
    assert p["encoding"] == "BASE64"
    assert base64.b64decode(p["data"], validate=True) == raw


@given(st.text(max_size=200))
def test_text_round_trip_through_a_line(text: str) -> None:
    for ctype, csv_types in (("text/csv", DEFAULT_CSV_TYPES), ("text/csv", ())):
        rec = capture_record(
            input=encode_payload(text, ctype, csv_types=csv_types, mode="INPUT"),
            output=None,
            event_id="e",
            inference_time=T,
        )
        line = dumps(rec)
        assert "\n" not in line
        p = json.loads(line)["captureData"]["endpointInput"]
        back = p["data"] if p["encoding"] == "CSV" else base64.b64decode(p["data"]).decode()
        assert back == text


# -- records ------------------------------------------------------------------------------------
def test_capture_record_shape() -> None:
    inp = encode_payload("1,2\n", "text/csv", mode="INPUT")
    out = encode_payload("0.5", "text/csv; charset=utf-8", mode="OUTPUT")
    rec = capture_record(input=inp, output=out, event_id="e1", inference_id="i1", inference_time=T)
    assert list(rec) == ["captureData", "eventMetadata", "eventVersion"]
    assert list(rec["captureData"]) == ["endpointInput", "endpointOutput"]
    assert rec["captureData"]["endpointInput"] is inp
    assert rec["eventMetadata"] == {
        "eventId": "e1",
        "inferenceId": "i1",
        "inferenceTime": "2022-02-14T17:25:49Z",
    }
    assert list(rec["eventMetadata"]) == ["eventId", "inferenceId", "inferenceTime"]
    assert rec["eventVersion"] == "0"


def test_capture_record_omissions() -> None:
    out = encode_payload("0.5", "text/csv", mode="OUTPUT")
    rec = capture_record(input=None, output=out, event_id="e", inference_time=T)
    assert list(rec["captureData"]) == ["endpointOutput"]
    assert list(rec["eventMetadata"]) == ["eventId", "inferenceTime"]
    inp = encode_payload("1", "text/csv", mode="INPUT")
    rec = capture_record(input=inp, output=None, event_id="e", inference_time=T, event_version="1")
    assert list(rec["captureData"]) == ["endpointInput"]
    assert rec["eventVersion"] == "1"


@pytest.mark.parametrize(
    ("when", "text"),
    [
        (datetime(2022, 2, 14, 17, 25, 49), "2022-02-14T17:25:49Z"),  # naive = UTC
        (datetime(2022, 2, 14, 17, 25, 49, 999_999, tzinfo=UTC), "2022-02-14T17:25:49Z"),
        (
            datetime(2022, 2, 14, 19, 25, 49, tzinfo=timezone(timedelta(hours=2))),
            "2022-02-14T17:25:49Z",
        ),
        (
            datetime(2022, 2, 14, 23, 30, tzinfo=timezone(timedelta(hours=-1))),
            "2022-02-15T00:30:00Z",
        ),
    ],
)
def test_inference_time_is_utc_whole_seconds_z(when: datetime, text: str) -> None:
    assert format_time(when) == text
    rec = capture_record(input=None, output=None, event_id="e", inference_time=when)
    assert rec["eventMetadata"]["inferenceTime"] == text
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)


def test_ground_truth_record() -> None:
    rec = ground_truth_record(event_id="i1", data="1")
    assert rec == {
        "groundTruthData": {"data": "1", "encoding": "CSV"},
        "eventMetadata": {"eventId": "i1"},
        "eventVersion": "0",
    }
    assert list(rec) == ["groundTruthData", "eventMetadata", "eventVersion"]
    assert list(rec["groundTruthData"]) == ["data", "encoding"]
    rec = ground_truth_record(event_id="e", data='{"label": 1}', encoding="JSON", event_version="2")
    assert rec["groundTruthData"]["encoding"] == "JSON" and rec["eventVersion"] == "2"


def test_dumps_compact_unicode_one_line() -> None:
    rec = ground_truth_record(event_id="é", data="a\nb")
    line = dumps(rec)
    assert line == (
        '{"groundTruthData":{"data":"a\\nb","encoding":"CSV"},'
        '"eventMetadata":{"eventId":"é"},"eventVersion":"0"}'
    )
    assert not line.endswith("\n")


def _rebuild(line: str) -> str:
    """Rebuild a real capture line from its parsed content with the writer."""
    r = json.loads(line)
    cap, meta = r["captureData"], r["eventMetadata"]

    def side(key: str, mode: str) -> dict | None:
        p = cap.get(key)
        if p is None:
            return None
        assert p["encoding"] in ("CSV", "JSON")
        return encode_payload(p["data"], p["observedContentType"], mode=mode)

    return dumps(
        capture_record(
            input=side("endpointInput", "INPUT"),
            output=side("endpointOutput", "OUTPUT"),
            event_id=meta["eventId"],
            inference_id=meta.get("inferenceId"),
            inference_time=datetime.fromisoformat(meta["inferenceTime"].replace("Z", "+00:00")),
            event_version=r["eventVersion"],
        )
    )


def test_writer_reproduces_the_real_corpus_byte_for_byte(corpus) -> None:
    files = sorted(corpus.rglob("*.jsonl"))
    assert files
    for f in files:
        for line in f.read_text().splitlines():
            assert _rebuild(line) == line


# -- paths --------------------------------------------------------------------------------------
def test_capture_path() -> None:
    when = datetime(2022, 2, 14, 17, 25, 6, 12_000, tzinfo=UTC)
    path = capture_path("s3://bucket/capture/", "ep", "AllTraffic", when)
    m = re.fullmatch(
        rf"s3://bucket/capture/ep/AllTraffic/2022/02/14/17/25-06-012-({UUID4})\.jsonl", path
    )
    assert m, path
    assert capture_path("root", "ep", "v", when) != capture_path("root", "ep", "v", when)
    assert (
        capture_path("root", "ep", "v", when, name="x.jsonl") == "root/ep/v/2022/02/14/17/x.jsonl"
    )


def test_paths_use_utc_hours() -> None:
    when = datetime(2022, 2, 15, 0, 5, 0, tzinfo=timezone(timedelta(hours=1)))
    assert capture_path("p", "e", "v", when, name="f.jsonl") == "p/e/v/2022/02/14/23/f.jsonl"
    assert label_path("p", when, name="f.jsonl") == "p/2022/02/14/23/f.jsonl"
    naive = datetime(2022, 2, 14, 23, 5)
    assert label_path("p/", naive, name="f.jsonl") == "p/2022/02/14/23/f.jsonl"


def test_label_path_default_name() -> None:
    path = label_path("labels", datetime(2022, 2, 14, 19, 1, 2, tzinfo=UTC))
    assert re.fullmatch(rf"labels/2022/02/14/19/01-02-000-{UUID4}\.jsonl", path), path


def test_object_name() -> None:
    when = datetime(2022, 2, 14, 17, 5, 9, 999_999, tzinfo=UTC)
    assert object_name(when, "u") == "05-09-999-u.jsonl"
    assert object_name(when, "u", suffix=".jsonl.gz") == "05-09-999-u.jsonl.gz"
    assert re.fullmatch(rf"05-09-999-{UUID4}\.jsonl", object_name(when))


# -- CSV rows -----------------------------------------------------------------------------------
def test_csv_line_like_the_corpus() -> None:
    assert csv_line([69, 0, 153.7, 109, 194.0, 105]) == "69,0,153.7,109,194.0,105"
    assert csv_line([0.1 + 0.2, 1e-20, -0.0, None, 3]) == "0.30000000000000004,1e-20,-0.0,,3"
    assert csv_line([]) == ""
    assert csv_line([None]) == ""


def test_csv_line_numpy_scalars_and_strings() -> None:
    values = [np.int64(7), np.float64(2.5), np.float32(0.5), np.uint8(3), True, "a,b", 'q"', "x"]
    assert csv_line(values) == '7,2.5,0.5,3,1,"a,b","q""",x'


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.integers() | st.none()))
def test_csv_line_reads_back_exactly(values: list) -> None:
    fields = csv_line(values).split(",") if values else []
    assert len(fields) == len(values)
    for v, f in zip(values, fields, strict=True):
        if v is None:
            assert f == ""
        elif isinstance(v, int):
            assert int(f) == v and "." not in f
        else:
            assert float(f) == v
