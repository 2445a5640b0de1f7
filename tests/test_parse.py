"""The line parser: many files in one batch, line numbers, source files, capture ids, huge lines."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from trees import T0, capture, dumps, write_captures

import captureq
from captureq.parse import parse_captures, parse_time, split_lines
from captureq.read import FileBatch
from captureq.scan import CaptureFile

UTC = timezone.utc


def batch_of(*blobs: bytes) -> FileBatch:
    """A FileBatch straight from bytes, one file per blob (no storage involved)."""
    files = [
        CaptureFile(
            path=f"/t/ep/v/2024/05/01/12/{i}.jsonl",
            url=f"file:///t/ep/v/2024/05/01/12/{i}.jsonl",
            rel=f"ep/v/2024/05/01/12/{i}.jsonl",
            endpoint="ep",
            variant="v",
            hour=datetime(2024, 5, 1, 12, tzinfo=UTC),
            size=len(b),
        )
        for i, b in enumerate(blobs)
    ]
    return FileBatch(files=files, blobs=list(blobs))


def line(event_id: str) -> bytes:
    return dumps(capture("1,2", "0.5", event_id=event_id)).encode()


def test_line_numbers_and_files_in_one_batch():
    blobs = [
        line("a1") + b"\n" + line("a2") + b"\n",
        b"",  # an empty file in the middle
        line("c1"),  # no trailing newline
        b"\n\n" + line("d3") + b"\n{bad\n" + line("d5") + b"\n\n",
        line("e1") + b"\r\n" + line("e2") + b"\r\n",
    ]
    parsed = parse_captures(batch_of(*blobs))
    t = parsed.table
    assert t["event_id"].to_pylist() == ["a1", "a2", "c1", "d3", "d5", "e1", "e2"]
    assert t["line_number"].to_pylist() == [1, 2, 1, 3, 5, 1, 2]
    files = [u.rsplit("/", 1)[1] for u in t["source_file"].to_pylist()]
    assert files == ["0.jsonl", "0.jsonl", "2.jsonl", "3.jsonl", "3.jsonl", "4.jsonl", "4.jsonl"]
    [q] = parsed.quarantine.to_pylist()
    assert (q["source_file"].rsplit("/", 1)[1], q["line_number"]) == ("3.jsonl", 4)
    assert (parsed.lines_read, parsed.blank_lines) == (8, 3)


def test_split_lines_treats_whitespace_only_lines_as_blank():
    lines = split_lines(batch_of(b"  \n\t\r\n" + b" " * 100 + b"\n x\n", b"\xef\xbb\xbf  {}\n"))
    assert lines.line_number.tolist() == [4, 1]
    assert lines.file_index.tolist() == [0, 1]
    assert lines.blank == 3
    assert bytes(lines.first).decode() == "x{"  # first non-blank byte, after a byte-order mark too


def many_files(root, n_files=40):
    """``n_files`` capture files over 2 endpoints, 2 variants and several hours; the event id of
    every good line says where it is. Returns {event_id: (path, line)} and the bad lines."""
    where, bad = {}, []
    for f in range(n_files):
        endpoint, variant = f"ep-{f % 2}", ("AllTraffic", "shadow")[f // 2 % 2]
        when = T0 + timedelta(hours=f % 5, minutes=f)
        lines: list = []
        for k in range(f % 4 + 1):
            if (f + k) % 7 == 3:
                lines.append("")  # blank line
            if (f + k) % 11 == 5:
                lines.append("{broken")
            lines.append(capture("1,2", "0.5", event_id=f"f{f}-k{k}", when=when))
        path = write_captures(
            root, lines, endpoint=endpoint, variant=variant, when=when, name=f"f{f:02d}.jsonl"
        )
        number = 0
        for item in lines:
            number += 1
            if isinstance(item, dict):
                where[item["eventMetadata"]["eventId"]] = (f"file://{path}", number)
            elif item:
                bad.append((f"file://{path}", number))
    return where, bad


@pytest.mark.parametrize("batch_bytes", [64 << 20, 2000], ids=["one-batch", "many-batches"])
def test_line_numbers_and_source_files_across_many_files(tmp_path, batch_bytes):
    where, bad = many_files(tmp_path)
    t = captureq.open(str(tmp_path), batch_bytes=batch_bytes).load()
    got = {r["event_id"]: (r["source_file"], r["line_number"]) for r in t.captures.to_pylist()}
    assert got == where
    assert sorted((r["source_file"], r["line_number"]) for r in t.quarantine.to_pylist()) == sorted(
        bad
    )
    assert {r["stage"] for r in t.quarantine.to_pylist()} == {"line"}
    # inputs and outputs point back at the right capture
    by_id = {r["capture_id"]: r["event_id"] for r in t.captures.to_pylist()}
    assert [by_id[c] for c in t.inputs["capture_id"].to_pylist()] == t.inputs[
        "event_id"
    ].to_pylist()
    assert [by_id[c] for c in t.outputs["capture_id"].to_pylist()] == t.outputs[
        "event_id"
    ].to_pylist()
    assert t.counts.files == 40 and t.counts.reconciles
    assert t.counts.rows == len(where) and t.counts.quarantined_lines == len(bad)


def test_many_files_are_one_parse_call(tmp_path):
    many_files(tmp_path)
    cq = captureq.open(str(tmp_path))
    files = cq.scan().files
    from captureq.read import fetch

    batch = fetch(cq.scanner().fs, files)
    parsed = parse_captures(batch)
    assert len(batch.files) == 40
    assert parsed.table.num_rows == cq.load().captures.num_rows


def test_capture_id_is_unique_and_stable(tmp_path):
    where, _ = many_files(tmp_path / "a", n_files=12)
    first = captureq.open(str(tmp_path / "a")).load().captures
    ids = first["capture_id"].to_pylist()
    assert len(set(ids)) == len(ids) == len(where)
    assert all(len(i.split(":")[0]) == 16 and i.split(":")[1].isdigit() for i in ids)
    again = captureq.open(str(tmp_path / "a")).load().captures
    assert again["capture_id"].to_pylist() == ids
    # the same tree elsewhere (another bucket, prefix or machine) has the same ids
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "deeper")
    moved = captureq.open(str(tmp_path / "elsewhere" / "deeper")).load().captures
    assert dict(
        zip(moved["event_id"].to_pylist(), moved["capture_id"].to_pylist(), strict=True)
    ) == dict(zip(first["event_id"].to_pylist(), ids, strict=True))
    # and so does opening one endpoint or one hour folder of it
    part = captureq.open(str(tmp_path / "a" / "ep-0")).load().captures
    assert set(part["capture_id"].to_pylist()) < set(ids)
    assert (
        dict(zip(part["event_id"].to_pylist(), part["capture_id"].to_pylist(), strict=True)).items()
        <= dict(zip(first["event_id"].to_pylist(), ids, strict=True)).items()
    )


def test_same_event_id_in_two_files_gets_two_capture_ids(tmp_path):
    write_captures(tmp_path, [capture("1", "0.5", event_id="same")], name="a.jsonl")
    write_captures(tmp_path, [capture("2", "0.6", event_id="same")], name="b.jsonl")
    caps = captureq.open(str(tmp_path)).load().captures
    assert caps["event_id"].to_pylist() == ["same", "same"]
    assert len(set(caps["capture_id"].to_pylist())) == 2


def test_huge_line(tmp_path):
    rows = [f"{i},{i * 0.5!r},{-i}" for i in range(300_000)]
    big = "\n".join(rows) + "\n"
    assert len(big) > 4 << 20
    scores = "\n".join("0.5" for _ in rows)
    write_captures(
        tmp_path,
        [
            capture("1,2,3", "0.1", event_id="before"),
            capture(big, scores, event_id="huge"),
            capture("4,5,6", "0.2", event_id="after"),
        ],
    )
    t = captureq.open(str(tmp_path)).load()
    assert t.quarantine.num_rows == 0
    assert t.captures["event_id"].to_pylist() == ["before", "huge", "after"]
    assert t.captures["line_number"].to_pylist() == [1, 2, 3]
    assert t.inputs.num_rows == 300_002 and t.outputs.num_rows == 300_002
    huge = t.inputs.filter(pa.compute.equal(t.inputs["event_id"], "huge"))
    assert huge["record_index"][-1].as_py() == 299_999
    assert huge["_c1"][-1].as_py() == 299_999 * 0.5
    assert t.inputs["_c0"][-1].as_py() == 4.0


def test_huge_json_line(tmp_path):
    doc = '{"instances": [' + ",".join(f"[{i}, {i}.25]" for i in range(250_000)) + "]}"
    assert len(doc) > 4 << 20
    write_captures(
        tmp_path,
        [
            capture("1", "0.5", event_id="small"),
            capture(doc, None, input_type="application/json", event_id="huge"),
        ],
    )
    t = captureq.open(str(tmp_path)).load()
    assert t.quarantine.num_rows == 0
    assert t.inputs.num_rows == 250_001
    assert t.inputs["_c1"][-1].as_py() == 249_999.25


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2022-02-14T17:25:49Z", datetime(2022, 2, 14, 17, 25, 49, tzinfo=UTC)),
        ("2022-02-14T17:25:49.123456Z", datetime(2022, 2, 14, 17, 25, 49, 123456, tzinfo=UTC)),
        ("2022-02-14T19:25:49+02:00", datetime(2022, 2, 14, 17, 25, 49, tzinfo=UTC)),
        ("2022-02-14T12:25:49.5-0500", datetime(2022, 2, 14, 17, 25, 49, 500000, tzinfo=UTC)),
        ("2022-02-14T17:25:49", datetime(2022, 2, 14, 17, 25, 49, tzinfo=UTC)),  # no offset: UTC
        ("2022-02-14 17:25:49Z", datetime(2022, 2, 14, 17, 25, 49, tzinfo=UTC)),
        ("2022-02-14T17:25Z", datetime(2022, 2, 14, 17, 25, tzinfo=UTC)),
        ("2022-02-30T17:25:49Z", None),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_time(text, expected):
    # alone, and mixed with other formats in one array (formats differ line by line in real trees)
    assert parse_time(pa.array([text], pa.string())).to_pylist() == [expected]
    mixed = parse_time(
        pa.array(["2022-02-14T17:25:49Z", text, "2022-02-14T19:25:49+02:00", "junk"], pa.string())
    )
    assert mixed.to_pylist()[1] == expected
    assert (
        mixed.to_pylist()[0]
        == mixed.to_pylist()[2]
        == datetime(2022, 2, 14, 17, 25, 49, tzinfo=UTC)
    )
