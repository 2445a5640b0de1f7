"""Bad lines and bad files become quarantine rows, never exceptions, and the counts reconcile.

Every bad line is exactly one quarantine row (stage ``line``) naming its file, its line number
and what is wrong; a file that cannot be read at all is one row of stage ``file``.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trees import capture, dumps, label, write_captures, write_labels

import captureq

GOOD = dumps(capture("1,2", "0.5")).encode()


def good(event_id: str) -> bytes:
    return dumps(capture("1,2", "0.5", event_id=event_id)).encode()


def read(tmp_path: Path, data: bytes, *, name: str = "f.jsonl", compress: bool = False):
    path = write_captures(tmp_path, raw=data, name=name, compress=compress)
    tables = captureq.open(str(tmp_path)).load()
    assert tables.counts.reconciles
    return path, tables


def line_rows(tables):
    return [r for r in tables.quarantine.to_pylist() if r["stage"] == "line"]


def with_key(line: bytes, old: bytes, new: bytes) -> bytes:
    assert old in line
    return line.replace(old, new)


BAD_LINES = {
    "malformed": (
        b"{not json",
        "invalid JSON line: Expecting property name enclosed in double quotes (column 2)",
    ),
    "truncated": (GOOD[:70], "truncated JSON line: it ends inside a value"),
    "truncated-after-comma": (GOOD[: GOOD.index(b',"eventMetadata"') + 1], "truncated JSON line"),
    # a payload whose data is a number keeps its capture row and is quarantined as
    # stage 'input'/'output', and a record without inferenceTime takes its hour from
    # its folder: neither is a bad line any more (tests/test_payload_shapes.py).
    "data-is-a-number-and-no-eventId": (
        with_key(with_key(GOOD, b'"data":"1,2"', b'"data":12'), b'"eventId":"event-1",', b""),
        "missing eventMetadata.eventId",
    ),
    "metadata-is-a-string": (
        with_key(
            GOOD, GOOD[GOOD.index(b'{"eventId"') : GOOD.index(b'},"eventVersion"') + 1], b'"x"'
        ),
        "wrong type: eventMetadata is a string, expected an object",
    ),
    "missing-eventMetadata": (
        json.dumps({"captureData": json.loads(GOOD)["captureData"]}).encode(),
        "missing eventMetadata.eventId",
    ),
    "missing-eventId": (
        with_key(GOOD, b'"eventId":"event-1",', b""),
        "missing eventMetadata.eventId",
    ),
    "unparseable-time": (
        with_key(GOOD, b"2024-05-01T12:30:15Z", b"yesterday noon"),
        "eventMetadata.inferenceTime is not an ISO 8601 time",
    ),
    "impossible-time": (
        with_key(GOOD, b"2024-05-01T12:30:15Z", b"2024-02-30T12:30:15Z"),
        "eventMetadata.inferenceTime is not an ISO 8601 time",
    ),
    "no-payload": (
        b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:30:15Z"}}',
        "captureData has neither endpointInput nor endpointOutput data",
    ),
    "array": (b"[1, 2]", "line is an array, not a JSON object"),
    "number": (b"42", "line is a number, not a JSON object"),
    "two-objects": (GOOD + GOOD, "invalid JSON line: Extra data"),
    "nul-bytes": (b"\x00\x00\x00\x00", "line contains NUL bytes"),
    "nul-inside": (GOOD[:30] + b"\x00" + GOOD[30:], "line contains NUL bytes"),
    "invalid-utf8": (
        with_key(GOOD, b'"data":"1,2"', b'"data":"1,\xff\xfe"'),
        "line is not valid UTF-8 text",
    ),
    "invalid-utf8-unused-field": (
        with_key(GOOD, b'"eventVersion":"0"', b'"eventVersion":"\xc3"'),
        "line is not valid UTF-8 text",
    ),
}


@pytest.mark.parametrize("bad, reason", list(BAD_LINES.values()), ids=list(BAD_LINES))
def test_bad_line_is_one_quarantine_row(tmp_path, bad, reason):
    path, t = read(tmp_path, GOOD + b"\n" + bad + b"\n" + GOOD + b"\n")
    [row] = line_rows(t)
    assert row["source_file"] == f"file://{path}"
    assert row["line_number"] == 2
    assert row["reason"].startswith(reason), row["reason"]
    assert row["capture_id"] is None
    assert row["raw"] == bad.decode("utf-8", errors="replace")
    assert t.captures["line_number"].to_pylist() == [1, 3]
    assert (t.counts.lines_read, t.counts.rows, t.counts.quarantined_lines) == (3, 2, 1)
    assert t.quarantine.num_rows == 1  # nothing else complains


@pytest.mark.parametrize("bad, reason", list(BAD_LINES.values()), ids=list(BAD_LINES))
def test_bad_last_line_without_newline(tmp_path, bad, reason):
    _, t = read(tmp_path, GOOD + b"\n" + bad)
    [row] = line_rows(t)
    assert (row["line_number"], row["reason"].startswith(reason)) == (2, True)


def test_many_bad_lines_in_many_places(tmp_path):
    bads = list(BAD_LINES.values())
    lines, expected = [], {}
    for i in range(60):
        if i % 3 == 1:
            bad, reason = bads[i % len(bads)]
            lines.append(bad)
            expected[i + 1] = reason
        else:
            lines.append(good(f"e{i}"))
    _, t = read(tmp_path, b"\n".join(lines) + b"\n")
    got = {r["line_number"]: r["reason"] for r in line_rows(t)}
    assert sorted(got) == sorted(expected)
    assert all(got[n].startswith(expected[n]) for n in expected)
    assert t.captures["event_id"].to_pylist() == [f"e{i}" for i in range(60) if i % 3 != 1]
    assert t.captures["line_number"].to_pylist() == [i + 1 for i in range(60) if i % 3 != 1]


def test_empty_file(tmp_path):
    _, t = read(tmp_path, b"")
    assert (t.captures.num_rows, t.quarantine.num_rows, t.counts.lines_read, t.counts.files) == (
        0,
        0,
        0,
        1,
    )


def test_blank_lines_are_skipped_but_counted(tmp_path):
    data = b"\n" + good("a") + b"\n\n   \n\t\r\n" + b" " * 40 + b"\n" + good("b") + b"\n\n"
    _, t = read(tmp_path, data)
    assert t.quarantine.num_rows == 0
    assert t.captures["line_number"].to_pylist() == [2, 7]
    assert (t.counts.lines_read, t.counts.blank_lines) == (2, 6)


def test_only_blank_lines(tmp_path):
    _, t = read(tmp_path, b"\n  \n\r\n")
    assert (
        t.captures.num_rows,
        t.quarantine.num_rows,
        t.counts.lines_read,
        t.counts.blank_lines,
    ) == (0, 0, 0, 3)


def test_byte_order_mark(tmp_path):
    _, t = read(tmp_path, b"\xef\xbb\xbf" + good("a") + b"\n" + good("b") + b"\n")
    assert t.quarantine.num_rows == 0
    assert t.captures["event_id"].to_pylist() == ["a", "b"]
    assert t.captures["line_number"].to_pylist() == [1, 2]


def test_crlf_line_ends(tmp_path):
    _, t = read(tmp_path, good("a") + b"\r\n" + good("b") + b"\r\n\r\n" + good("c"))
    assert t.quarantine.num_rows == 0
    assert t.captures["line_number"].to_pylist() == [1, 2, 4]
    assert t.inputs.num_rows == 3 and t.outputs.num_rows == 3


def test_bad_line_after_crlf_lines(tmp_path):
    _, t = read(tmp_path, good("a") + b"\r\n{oops\r\n" + good("c") + b"\r\n")
    [row] = line_rows(t)
    assert row["line_number"] == 2 and row["raw"] == "{oops"


def test_gzip_file(tmp_path):
    path, t = read(
        tmp_path, good("a") + b"\n{bad\n" + good("b") + b"\n", name="f.jsonl", compress=True
    )
    assert path.name == "f.jsonl.gz"
    assert t.captures["event_id"].to_pylist() == ["a", "b"]
    assert set(t.captures["source_file"].to_pylist()) == {f"file://{path}"}
    [row] = line_rows(t)
    assert (row["source_file"], row["line_number"]) == (f"file://{path}", 2)


def test_gzip_with_several_members(tmp_path):
    # one gzip member per flush, concatenated
    data = gzip.compress(good("a") + b"\n") + gzip.compress(good("b") + b"\n")
    write_captures(tmp_path, raw=data, name="x.jsonl.gz")
    t = captureq.open(str(tmp_path)).load()
    assert t.captures["event_id"].to_pylist() == ["a", "b"]
    assert t.captures["line_number"].to_pylist() == [1, 2]


def test_corrupt_gzip_is_one_file_row_and_other_files_still_read(tmp_path):
    bad = write_captures(tmp_path, raw=gzip.compress(GOOD + b"\n")[:-12], name="a-bad.jsonl.gz")
    write_captures(tmp_path, raw=b"this is not gzip at all", name="b-bad.jsonl.gz")
    write_captures(tmp_path, [capture("1,2", "0.5", event_id="ok")], name="c-good.jsonl")
    t = captureq.open(str(tmp_path)).load()
    assert t.captures["event_id"].to_pylist() == ["ok"]
    rows = t.quarantine.to_pylist()
    assert [(r["stage"], r["source_file"], r["line_number"]) for r in rows] == [
        ("file", f"file://{bad}", None),
        ("file", f"file://{bad.parent / 'b-bad.jsonl.gz'}", None),
    ]
    assert all(r["reason"].startswith("not a readable gzip file") for r in rows)
    assert (t.counts.files, t.counts.files_failed, t.counts.lines_read, t.counts.rows) == (
        1,
        2,
        1,
        1,
    )
    assert t.counts.reconciles


def test_bad_label_lines(tmp_path):
    write_captures(tmp_path / "c", [capture("1", "0.5")])
    path = write_labels(
        tmp_path / "l",
        [
            label("e1", "1"),
            b"{broken",
            {"groundTruthData": {"data": "1"}},
            {"eventMetadata": {"eventId": "e4"}},
            label("e5", "0"),
        ],
    )
    t = captureq.open(str(tmp_path / "c"), labels=str(tmp_path / "l")).load()
    rows = [
        (r["stage"], r["source_file"], r["line_number"], r["reason"].split(" (")[0])
        for r in t.quarantine.to_pylist()
    ]
    src = f"file://{path}"
    assert rows == [
        ("line", src, 2, "invalid JSON line: Expecting property name enclosed in double quotes"),
        ("line", src, 3, "missing eventMetadata.eventId"),
        ("line", src, 4, "missing groundTruthData.data"),
    ]
    assert t.labels["event_id"].to_pylist() == ["e1", "e5"]
    assert t.label_counts.reconciles and t.label_counts.lines_read == 5


# -- never raises on junk ----------------------------------------------------------------------

ENCODINGS = st.sampled_from(["CSV", "JSON", "BASE64", "base64", "", "XML"]) | st.none()
CONTENT_TYPES = (
    st.sampled_from(
        [
            "text/csv",
            "text/csv; charset=utf-8",
            "application/json",
            "application/jsonlines",
            "image/png",
            "application/x-npy",
            "application/x-npz",
            "application/x-recordio-protobuf",
            "",
            "TEXT/CSV",
        ]
    )
    | st.none()
)
def _npy(arr) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _binary_junk() -> list[str]:
    """base64 of npy and RecordIO payloads, whole and broken."""
    import base64
    import struct

    import numpy as np

    good = _npy(np.arange(3.0))
    pieces = [good, good[:20], good[:-1], good.replace(b"(3,)", b"(9,)"), _npy(np.zeros((2, 2, 2))),
              struct.pack("<II", 0xCED7230A, 1000) + b"\x0a\x02", struct.pack("<II", 0xCED7230A, 4) + b"\x0a\xff\xff\xff",
              struct.pack("<II", 0xCED7230A, 2) + b"\x0a\x00\x00\x00"]
    return [base64.b64encode(p).decode() for p in pieces]


BINARY_JUNK = _binary_junk()
DATA = (
    st.text(max_size=30)
    | st.sampled_from(
        [
            "1,2",
            "1,2\n3",
            "",
            "{",
            "[1, 2]",
            '{"instances": [[1]]}',
            '{"instances": 5}',
            "MSwy",
            "AAEC",
            "////",
            '{"a":1}\n{"a":',
            "null",
            '[[1], {"a": 2}]',
            '"x"',
            '{"predictions": []}',
            "[]",
            "{}",
            "1e400",
            "-",
            '"a\nb",1',
            *BINARY_JUNK,
        ]
    )
    | st.dictionaries(
        st.text(max_size=4),
        st.integers() | st.floats() | st.text(max_size=3) | st.none(),
        max_size=3,
    ).map(json.dumps)
    | st.integers()
    | st.none()
)
TIMES = (
    st.sampled_from(["2024-05-01T12:30:15Z", "2024-05-01T12:30:15.25+02:00", "2024-05-01", "x", ""])
    | st.none()
)


@st.composite
def capture_like(draw):
    """A JSON object shaped roughly like a capture record, with any field wrong or missing."""

    def side():
        return draw(
            st.none()
            | st.fixed_dictionaries(
                {},
                optional={
                    "observedContentType": CONTENT_TYPES,
                    "mode": st.just("INPUT"),
                    "data": DATA,
                    "encoding": ENCODINGS,
                },
            )
        )

    doc = {
        "captureData": {
            k: v
            for k, v in (("endpointInput", side()), ("endpointOutput", side()))
            if v is not None or draw(st.booleans())
        }
    }
    meta = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "eventId": st.text(max_size=5) | st.integers(),
                "inferenceId": st.text(max_size=5),
                "inferenceTime": TIMES,
            },
        )
    )
    if draw(st.booleans()):
        doc["eventMetadata"] = meta
    if draw(st.booleans()):
        doc["eventVersion"] = "0"
    return json.dumps(doc, ensure_ascii=draw(st.booleans())).encode()


JUNK_LINE = (
    st.binary(max_size=40)
    | st.text(max_size=40).map(lambda s: s.encode())
    | st.sampled_from(
        [
            b"{",
            b"}",
            b"[]",
            b"{}",
            b"null",
            b"\xef\xbb\xbf{}",
            b"\r",
            b"   ",
            b"\x00",
            GOOD[:-1],
            GOOD + b" ",
            b" " + GOOD,
            GOOD.replace(b'"', b"'"),
        ]
    )
    | capture_like()
).map(lambda b: b.replace(b"\n", b" "))


def oracle_lines(blob: bytes) -> list[tuple[int, bytes]]:
    """(line number, text) of the non-blank lines of a file: the slow, readable reference."""
    if blob.startswith(b"\xef\xbb\xbf"):
        blob = blob[3:]
    lines = blob.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [(i + 1, line) for i, line in enumerate(lines) if line.strip(b" \t\r")]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files=st.lists(
        st.lists(st.tuples(st.booleans(), JUNK_LINE), max_size=12), min_size=1, max_size=3
    ),
    crlf=st.booleans(),
    bom=st.booleans(),
)
def test_never_raises_on_junk(files, crlf, bom):
    with tempfile.TemporaryDirectory() as root:
        expected_good = {}
        blobs = {}
        for f, lines in enumerate(files):
            out = []
            for i, (is_good, junk) in enumerate(lines):
                out.append(good(f"f{f}-l{i + 1}") if is_good else junk)
                if is_good:
                    expected_good[(f, i + 1)] = f"f{f}-l{i + 1}"
            blob = (b"\r\n" if crlf else b"\n").join(out) + (b"\n" if out else b"")
            if bom and f == 0:
                blob = b"\xef\xbb\xbf" + blob
            path = write_captures(root, raw=blob, name=f"{f}.jsonl")
            blobs[f"file://{path}"] = (f, blob)
        t = captureq.open(root).load()  # never raises
        c = t.counts
        assert c.reconciles
        assert c.lines_read == sum(len(oracle_lines(b)) for _, b in blobs.values())
        seen = {}
        for r in t.captures.to_pylist():
            seen[(blobs[r["source_file"]][0], r["line_number"])] = r["event_id"]
        for r in t.quarantine.to_pylist():
            # value: a cell that does not fit its column's type (the lake-schema rule)
            assert r["stage"] in {"line", "input", "output", "align", "value"}
            assert r["reason"]
            if r["stage"] == "line":
                key = (blobs[r["source_file"]][0], r["line_number"])
                assert key not in seen, "a line is either a row or quarantined, once"
                seen[key] = None
        # every non-blank line is accounted for exactly once, and every good line is a row
        assert set(seen) == {(f, n) for f, b in blobs.values() for n, _ in oracle_lines(b)}
        for key, event_id in expected_good.items():
            assert seen[key] == event_id
