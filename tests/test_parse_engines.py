"""Two outer parsers, one answer: DuckDB's JSON reader (``CAPTUREQ_PARSER=duckdb``) gives the
same tables, provenance and quarantine as pyarrow's reader with bisection (the reference), on
generated lines and on every mutation of the real corpus files."""

from __future__ import annotations

import json

import pytest
from faults import mutations
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trees import capture, label

from captureq import parse
from captureq.read import FileBatch
from captureq.records import dumps


class _File:
    def __init__(self, n: int):
        self.url = f"file:///t/ep/v/2024/05/01/12/f{n}.jsonl"
        self.rel = f"ep/v/2024/05/01/12/f{n}.jsonl"
        self.endpoint, self.variant, self.hour, self.size, self.mtime = "ep", "v", None, None, None


def _batch(blobs: list[bytes]) -> FileBatch:
    return FileBatch([_File(i) for i in range(len(blobs))], list(blobs), [])


def both(fn, batch, monkeypatch):
    """``fn(batch)`` with each parser, and how many batches DuckDB's reader accepted."""
    accepted = []
    real = parse._duckdb_read

    def spy(data, raw_schema, project=False):
        table = real(data, raw_schema, project)
        accepted.append(table is not None)
        return table

    monkeypatch.setattr(parse, "_duckdb_read", spy)
    monkeypatch.setattr(parse, "PARSER", "duckdb")
    fast = fn(batch)
    monkeypatch.setattr(parse, "PARSER", "pyarrow")
    ref = fn(batch)
    return fast, ref, sum(accepted)


def projected(batch, monkeypatch):
    """``parse_captures`` as a read that needs no payload text does it (the default parser
    setting), beside pyarrow's full read; and whether DuckDB's reader took the batch."""
    accepted = []
    real = parse._duckdb_read

    def spy(data, raw_schema, project=False):
        table = real(data, raw_schema, project)
        accepted.append(project and table is not None)
        return table

    monkeypatch.setattr(parse, "_duckdb_read", spy)
    monkeypatch.setattr(parse, "PARSER", "auto")
    fast = parse.parse_captures(batch, payload=False)
    monkeypatch.setattr(parse, "PARSER", "pyarrow")
    ref = parse.parse_captures(batch)
    return fast, ref, sum(accepted)


def same(fast: parse.Parsed, ref: parse.Parsed, tag=""):
    assert fast.table.equals(ref.table), tag
    assert fast.quarantine.equals(ref.quarantine), (tag, fast.quarantine.to_pylist(), ref.quarantine.to_pylist())
    assert (fast.lines_read, fast.blank_lines) == (ref.lines_read, ref.blank_lines), tag


def same_projected(fast: parse.Parsed, ref: parse.Parsed, tag=""):
    """Equal but for the payload text, which the projected read gives as "" where it is there."""
    for col in ("input_data", "output_data"):
        f, r = fast.table.column(col), ref.table.column(col)
        assert f.is_null().equals(r.is_null()), tag
        assert set(f.drop_null().to_pylist()) <= {""} | set(r.drop_null().to_pylist()), tag
    text = ["input_data", "output_data"]
    assert fast.table.drop_columns(text).equals(ref.table.drop_columns(text)), tag
    assert fast.quarantine.equals(ref.quarantine), (tag, fast.quarantine.to_pylist(), ref.quarantine.to_pylist())
    assert (fast.lines_read, fast.blank_lines) == (ref.lines_read, ref.blank_lines), tag
    assert fast.payload_failures == ref.payload_failures, tag
    assert (fast.labels is None) == (ref.labels is None), tag
    if ref.labels is not None:
        assert fast.labels.equals(ref.labels), tag


GOOD = [
    dumps(capture("1,2,3", "0.5")),
    dumps(capture('{"features": [1, 2]}', '{"predictions": [{"score": 0.1}]}',
                  input_type="application/json", output_type="application/json", inference_id="r-1")),
    dumps(capture("a\tb,\"q\"\n", "x", base64=True)),
    dumps(capture(None, "0.1")),
]
HOSTILE = [
    b"", b"   ", b"\t\r", "\ufeff".encode() + GOOD[0].encode(), b"null", b"[1,2]", b"{junk", b"\x00\xff",
    b'{"eventMetadata":{"eventId":1,"inferenceTime":"2024-05-01T12:00:00Z"},"captureData":{"endpointInput":{"data":"1","encoding":"CSV"}}}',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"},"captureData":{"endpointInput":{"data":{"a":1},"encoding":"JSON"}}}',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"},"captureData":{"endpointInput":{"data":7,"encoding":"CSV"}}}',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z",},"captureData":{"endpointInput":{"data":"1","encoding":"CSV"}}}',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"},"x":[1,2, ],"captureData":{"endpointInput":{"data":"1","encoding":"CSV"}}}',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"},"x":nan,"captureData":{"endpointInput":{"data":"1","encoding":"CSV"}}}',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"},"x":NaN,"captureData":{"endpointInput":{"data":"1","encoding":"CSV"}}}',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"},"x":-Infinity,"captureData":{"endpointInput":{"data":"1","encoding":"CSV"}}}',
    b'{"eventMetadata":{"eventId":"e","eventId":"f","inferenceTime":"2024-05-01T12:00:00Z"},"captureData":{"endpointInput":{"data":"1","encoding":"CSV"}}}',
    b'{"eventMetadata":"e","captureData":{"endpointInput":{"data":"1","encoding":"CSV"}}}',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"soon"},"captureData":{"endpointInput":{"data":"1","encoding":"CSV"}}}',
    b'{"EventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"},"captureData":{"endpointInput":{"data":"1"}}}',
    b'{"eventMetadata":{"eventId":"e\\u0000\\u00e9","inferenceTime":"2024-05-01T12:00:00Z"},"captureData":{"endpointInput":{"data":"\\"q\\"","encoding":"CSV"}}}',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"}} {"a":1}',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"}}{"eventMetadata":{"eventId":"f"}}',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"},"captureData":{"endpointInput":{"data":"1","encoding":"CSV"}},"eventVersion":true}',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"},"captureData":{"endpointInput":{"data":null,"encoding":"CSV"},"endpointOutput":{"data":"1","encoding":"CSV"}}}',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"},"captureData":{"endpointInput":null}}',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"},"captureData":{"endpointInput":{"data":"1"},"endpointOutput":[]}}',
    # what DuckDB's reader accepts and pyarrow's rejects, beyond nan/inf and trailing commas:
    # an exponent that overflows a double, a vertical tab or form feed after the object, a
    # non-string in a string field whose key is written with an escape
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"},"x":[1e400],"captureData":{"endpointInput":{"data":"1","encoding":"CSV"}}}',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"},"x":-2.5E+0309,"captureData":{"endpointInput":{"data":"1","encoding":"CSV"}}}',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"},"captureData":{"endpointInput":{"data":"1","encoding":"CSV"}}}\x0b',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"},"captureData":{"endpointInput":{"data":"1","encoding":"CSV"}}} \x0c',
    b'{"eventMetadata":{"event\\u0049d":5,"inferenceTime":"2024-05-01T12:00:00Z"},"captureData":{"endpointInput":{"data":"1","encoding":"CSV"}}}',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"},"captureData":{"endpointInput":{"data":"1","encoding":"CSV"}},"eventVersion":[0]}',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"},"captureData":{"endpointInput":{"data":"1","mode":{}}},"eventVersion":"0"}',
    b'{"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"},"captureData":{"batchTransformOutput":5,"endpointInput":{"data":"1"}}}',
]
LINES = [g.encode() for g in GOOD] + HOSTILE


def test_duckdb_reads_clean_batches_and_gives_the_same_tables(monkeypatch):
    blobs = [("\n".join(GOOD * 50) + "\n").encode(), ("\n\n".join(GOOD) + "\r\n\n  \n").encode(), b""]
    fast, ref, accepted = both(parse.parse_captures, _batch(blobs), monkeypatch)
    same(fast, ref)
    assert accepted == 1  # the fast path was taken, not just the fallback
    assert fast.table.num_rows == 4 * 50 + 4
    fast, ref, accepted = projected(_batch(blobs), monkeypatch)
    same_projected(fast, ref)
    assert accepted == 1


def test_suspect_lines_go_to_pyarrow_and_the_rest_to_duckdb(monkeypatch):
    """A line DuckDB would wrongly accept costs only itself: the others are still DuckDB's."""
    nan = HOSTILE.index(next(h for h in HOSTILE if b'"x":nan' in h))
    repair = HOSTILE.index(next(h for h in HOSTILE if b'"data":7' in h))
    blob = b"\n".join([LINES[0]] * 20 + [HOSTILE[nan]] + [LINES[1]] * 20 + [HOSTILE[repair], b""])
    fast, ref, accepted = both(parse.parse_captures, _batch([blob]), monkeypatch)
    same(fast, ref)
    assert accepted == 1
    assert ref.quarantine.num_rows == 1 and ref.payload_failures  # the nan line; the repaired one kept
    fast, ref, accepted = projected(_batch([blob]), monkeypatch)
    same_projected(fast, ref)
    assert accepted == 1


@pytest.mark.parametrize("line", range(len(HOSTILE)))
def test_each_hostile_line_among_good_ones(line, monkeypatch):
    blob = b"\n".join([LINES[0], HOSTILE[line], LINES[1], b""])
    fast, ref, _ = both(parse.parse_captures, _batch([blob, LINES[2] + b"\n"]), monkeypatch)
    same(fast, ref, HOSTILE[line])
    fast, ref, _ = projected(_batch([blob, LINES[2] + b"\n"]), monkeypatch)
    same_projected(fast, ref, HOSTILE[line])


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(st.lists(st.sampled_from(range(len(LINES))), max_size=12), min_size=1, max_size=4),
       newline=st.sampled_from([b"\n", b"\r\n"]), final=st.booleans())
def test_generated_batches_give_identical_tables(files, newline, final, monkeypatch):
    blobs = [newline.join(LINES[i] for i in f) + (newline if final else b"") for f in files]
    fast, ref, _ = both(parse.parse_captures, _batch(blobs), monkeypatch)
    same(fast, ref)
    fast, ref, _ = projected(_batch(blobs), monkeypatch)
    same_projected(fast, ref)


def test_labels_too(monkeypatch):
    good = dumps(label("e1", "1")).encode()
    blobs = [b"\n".join([good, good, b'{"groundTruthData":{"data":1},"eventMetadata":{"eventId":"x"}}', good]) + b"\n"]
    fast, ref, _ = both(parse.parse_labels, _batch(blobs), monkeypatch)
    same(fast, ref)
    fast, ref, accepted = both(parse.parse_labels, _batch([good + b"\n" + good]), monkeypatch)
    same(fast, ref)
    assert accepted == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seed-churn", "book-housing"])
def test_every_corpus_mutation_gives_identical_quarantine(name, corpus, monkeypatch):
    rel = {
        "seed-churn": "seed-churn/xgb-churn-prediction-model/AllTraffic/2022/02/14/17/25-06-000-seed-sample.jsonl",
        "book-housing": "book-housing/ll-housing/AllTraffic/2020/07/30/13/36-30-000-book-sample.jsonl",
    }[name]
    original = (corpus / rel).read_bytes()
    ran = 0
    for tag, data in mutations(original):
        fast, ref, _ = both(parse.parse_captures, _batch([data, original]), monkeypatch)
        same(fast, ref, tag)
        fast, ref, _ = projected(_batch([data, original]), monkeypatch)
        same_projected(fast, ref, tag)
        ran += 1
    assert ran >= 70


def test_the_suspect_scan_flags_what_duckdb_accepts_and_pyarrow_rejects():
    def flagged(*lines: bytes) -> list[int]:
        return parse._suspect_lines(parse.split_lines(_batch([b"\n".join(lines) + b"\n"])),
                                    parse.RAW_CAPTURE).tolist()

    lenient = [b'{"a":[1, 2 ,\t]}', b'{"a":1 , }', b'{"a": -INF}', b'{"a":[nan]}', b'{"a": +Infinity}',
               b'{"data": 1}', b'{"data" : {"x": "y"}}', b'{"eventVersion":[0]}', b'{"mode": true}',
               b'{"a":1e400}', b'{"a":[-2.5E+0309]}', b'{"a":1}\x0b', b'{"event\\u0049d":5}',
               b'{"endpointInput":5}', b'{"captureData": "x"}']
    assert flagged(*lenient) == list(range(len(lenient)))
    fine = [b'{"data": "1,2,3", "inferenceId": "x", "data":null}', json.dumps({"data": "informal"}).encode(),
            b'{"eventId":"965f50b3-0e123-4dea","data":"1e400 nan"}', b'{"a":1e99,"b":[null, true, false]}',
            json.dumps({"data": json.dumps({"features": [1, "x"], "inf": None})}).encode()]
    assert flagged(*fine) == []


def test_payloads_to_repair_are_looked_for_only_when_the_batch_fails(monkeypatch):
    """pyarrow's path scans for non-string payload data only once the whole batch failed to
    parse (a clean batch costs one reader call and no scan), and then still repairs them."""
    scans = []
    real = parse._data_not_string

    def spy(lines):
        scans.append(1)
        return real(lines)

    monkeypatch.setattr(parse, "_data_not_string", spy)
    monkeypatch.setattr(parse, "PARSER", "pyarrow")
    clean = parse.parse_captures(_batch([b"\n".join(LINES[:4]) + b"\n"]))
    assert scans == [] and clean.table.num_rows == 4 and not clean.quarantine.num_rows
    repair = next(h for h in HOSTILE if b'"data":7' in h)
    fixed = parse.parse_captures(_batch([b"\n".join([LINES[0], repair, LINES[1]]) + b"\n"]))
    assert scans == [1]
    assert fixed.table.num_rows == 3 and not fixed.quarantine.num_rows
    assert [r for r, _ in fixed.payload_failures["input"]] == [1]
