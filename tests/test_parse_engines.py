"""The outer parser: DuckDB's JSON reader reads every batch; a batch it rejects falls back per
file to the exact path (pyarrow's reader with bisection), and both give what each line means as
JSON (``json.loads``), plus the documented leniencies and payload repairs.

The oracle here is :func:`reference`, a slow reader written for the tests only: one line at a
time through ``json.loads``, with no code shared with :mod:`captureq.parse`.
"""

from __future__ import annotations

import json
import math
import re
import sys

import pyarrow as pa
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


def duck_calls(monkeypatch) -> list[bool]:
    """Each call of DuckDB's reader from now on: whether it accepted its bytes."""
    calls: list[bool] = []
    real = parse._duck_read

    def spy(data, raw_schema, project=False):
        got = real(data, raw_schema, project)
        calls.append(got is not None)
        return got

    monkeypatch.setattr(parse, "_duck_read", spy)
    return calls


def both(fn, batch, **kw):
    """``fn(batch)`` with the default parser and with the exact (fallback) path alone."""
    return fn(batch, **kw), fn(batch, parser="exact", **kw)


def same(fast: parse.Parsed, ref: parse.Parsed, tag=""):
    assert fast.table.equals(ref.table), (tag, fast.table.to_pylist(), ref.table.to_pylist())
    assert fast.quarantine.equals(ref.quarantine), (tag, fast.quarantine.to_pylist(), ref.quarantine.to_pylist())
    assert (fast.lines_read, fast.blank_lines) == (ref.lines_read, ref.blank_lines), tag
    assert fast.payload_failures == ref.payload_failures, tag
    assert fast.lines_read == fast.table.num_rows + _line_rows(fast), tag  # counts reconcile


def _line_rows(p: parse.Parsed) -> int:
    return sum(1 for s in p.quarantine.column("stage").to_pylist() if s == "line")


def same_projected(fast: parse.Parsed, ref: parse.Parsed, tag=""):
    """Equal but for the payload text, which a read without payloads gives as "" where it is."""
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
META = '"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"}'
IN = '"captureData":{"endpointInput":{"data":"1","encoding":"CSV"}}'


def rec(*members: str) -> bytes:
    return ("{" + ",".join(members) + "}").encode()


HOSTILE = [
    b"", b"   ", b"\t\r", "\ufeff".encode() + GOOD[0].encode(), b"null", b"[1,2]", b"{junk", b"\x00\xff",
    rec('"eventMetadata":{"eventId":1,"inferenceTime":"2024-05-01T12:00:00Z"}', IN),
    rec(META, '"captureData":{"endpointInput":{"data":{"a":1},"encoding":"JSON"}}'),
    rec(META, '"captureData":{"endpointInput":{"data":7,"encoding":"CSV"}}'),
    rec('"eventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z",}', IN),
    rec(META, '"x":[1,2, ]', IN),
    rec(META, '"x":nan', IN),
    rec(META, '"x":NaN', IN),
    rec(META, '"x":-Infinity', IN),
    rec('"eventMetadata":{"eventId":"e","eventId":"f","inferenceTime":"2024-05-01T12:00:00Z"}', IN),
    rec('"eventMetadata":"e"', IN),
    rec('"eventMetadata":{"eventId":"e","inferenceTime":"soon"}', IN),
    b'{"EventMetadata":{"eventId":"e","inferenceTime":"2024-05-01T12:00:00Z"},"captureData":{"endpointInput":{"data":"1"}}}',
    rec('"eventMetadata":{"eventId":"e\\u0000\\u00e9","inferenceTime":"2024-05-01T12:00:00Z"}',
        '"captureData":{"endpointInput":{"data":"\\"q\\"","encoding":"CSV"}}'),
    rec(META) + b' {"a":1}',
    rec(META) + rec('"eventMetadata":{"eventId":"f"}'),
    rec(META, IN, '"eventVersion":true'),
    rec(META, '"captureData":{"endpointInput":{"data":null,"encoding":"CSV"},"endpointOutput":{"data":"1","encoding":"CSV"}}'),
    rec(META, '"captureData":{"endpointInput":null}'),
    rec(META, '"captureData":{"endpointInput":{"data":"1"},"endpointOutput":[]}'),
    rec(META, '"x":[1e400]', IN),
    rec(META, '"x":-2.5E+0309', IN),
    rec(META, IN) + b"\x0b",
    rec(META, IN) + b" \x0c",
    b"\x0c" + rec(META, IN),
    rec('"eventMetadata":{"event\\u0049d":5,"inferenceTime":"2024-05-01T12:00:00Z"}', IN),
    rec(META, IN, '"eventVersion":[0]'),
    rec(META, '"captureData":{"endpointInput":{"data":"1","mode":{}}}', '"eventVersion":"0"'),
    rec(META, '"captureData":{"batchTransformOutput":5,"endpointInput":{"data":"1"}}'),
    rec(META, '"x":"\\ud800"', IN),
    rec(META, '"x":' + "[" * 3000 + "]" * 3000, IN),
    rec(META, '"x":{"y":1,"y":2}', IN),
    rec(META, '"eventVersion":1.50', IN),
    rec(META, '"eventVersion":12345678901234567890123', IN),
    rec(META, '"eventVersion":1e400', IN),
    rec(META, '"x":[1,,]', IN),
    rec(META, '"x":+inf', IN),
]
LINES = [g.encode() for g in GOOD] + HOSTILE


# -- the oracle ----------------------------------------------------------------------------------


class _Lit(str):
    """A number or constant as written in the line."""


class _Dup(Exception):
    pass


def _pairs(pairs):
    keys = [k for k, _ in pairs]
    obj = dict(pairs)
    if any(_has_surrogate(x) for pair in pairs for x in pair):  # overwritten pairs too
        obj["\x00sur"] = True
    if len(set(keys)) != len(keys):
        obj["\x00dup"] = frozenset(k for k in keys if keys.count(k) > 1)
    return obj


_TRAILING = re.compile(r'("(?:[^"\\]|\\.)*")|(?<=[\]}\w"])(\s*),(?=\s*[\]}])|(?<![\w.])(-?)(nan|infinity|inf)(?![\w.])',
                       re.IGNORECASE)


def _lenient(text: str) -> str:
    """The line with what DuckDB also accepts rewritten as JSON: a trailing comma after a value,
    nan/inf/infinity in any case with an optional minus."""
    def sub(m):
        if m.group(1):
            return m.group(1)
        if m.group(4) is None:  # a trailing comma: dropped
            return m.group(2)
        return '"\\u0000lit:' + m.group(3) + m.group(4) + '"'  # read back as a literal
    return _TRAILING.sub(sub, text)


def _literals(v):
    if isinstance(v, str) and v.startswith("\x00lit:"):
        return _Lit(v[5:])
    if isinstance(v, dict):
        out = {k: _literals(x) for k, x in v.items()}
        return out
    if isinstance(v, list):
        return [_literals(x) for x in v]
    return v


def _loads(text: str):
    kw = dict(object_pairs_hook=_pairs, parse_float=_Lit, parse_int=_Lit, parse_constant=_Lit)
    try:
        return json.loads(text, **kw)
    except json.JSONDecodeError:
        return _literals(json.loads(_lenient(text), **kw))


def _plain(v):
    """A parsed value with literals as Python numbers (what ``json.loads`` gives)."""
    if isinstance(v, _Lit):
        return json.loads(v) if v[-1:].isdigit() or v in ("NaN", "Infinity", "-Infinity") else float(v.replace("inity", ""))
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items() if k not in ("\x00dup", "\x00sur")}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _has_surrogate(v) -> bool:
    if isinstance(v, str) and not isinstance(v, _Lit):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in v)
    if isinstance(v, dict):
        return "\x00sur" in v
    if isinstance(v, list):
        return any(_has_surrogate(x) for x in v)
    return False


def _number_text(lit: str) -> str:
    try:
        value = json.loads(lit)
    except ValueError:
        return lit  # nan/inf written in another case: kept as written
    if isinstance(value, float) and math.isinf(value) and lit not in ("Infinity", "-Infinity"):
        return lit  # a number too large for a double: its text as written
    return json.dumps(value)


def reference(line: bytes, raw_schema: pa.Schema):
    """``(row, repaired)`` for a line that has a meaning, else None. ``row`` is the line as the
    raw schema's nested dict (as ``Table.to_pylist`` gives it) and ``repaired`` the payload
    sides whose ``data`` was a JSON value other than a string."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # the reference reads deep nesting too (DuckDB's reader does)
    try:
        return _reference(line, raw_schema)
    finally:
        sys.setrecursionlimit(limit)


def _reference(line: bytes, raw_schema: pa.Schema):
    try:
        text = line.decode("utf-8").strip(" \t\r\x0b\x0c")
        doc = _loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or _has_surrogate(doc):
        return None
    repaired = []

    def build(t, node, path):
        if any(f.name in node.get("\x00dup", ()) for f in t):
            raise _Dup  # a key of a field captureq reads, twice: which value is meant is ambiguous
        out = {}
        for f in t:
            v = node.get(f.name)
            if pa.types.is_struct(f.type):
                if v is None:
                    out[f.name] = None
                elif not isinstance(v, dict):
                    raise _Dup
                else:
                    out[f.name] = build(f.type, v, path + (f.name,))
            elif v is None or (isinstance(v, str) and not isinstance(v, _Lit)):
                out[f.name] = v
            elif f.name == "data" and path in parse.PAYLOAD_SIDES:
                repaired.append(parse.PAYLOAD_SIDES[path])
                out[f.name] = json.dumps(_plain(v))
            elif isinstance(v, _Lit):
                out[f.name] = _number_text(v)
            elif isinstance(v, bool):
                out[f.name] = "true" if v else "false"
            else:
                out[f.name] = ("json", _plain(v))  # an object or array: JSON text of the same value
        return out

    try:
        return build(raw_schema, doc, ()), sorted(repaired)
    except _Dup:
        return None


def _matches(got, want) -> bool:
    if isinstance(want, tuple):
        return isinstance(got, str) and json.dumps(_plain(_loads(got))) == json.dumps(want[1])
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(_matches(got[k], want[k]) for k in want)
    return got == want


def check_against_reference(blobs: list[bytes], raw_schema: pa.Schema, parser: str):
    batch = _batch(blobs)
    lines = parse.split_lines(batch)
    repairs: dict = {}
    table, positions, bad = parse.parse_json_lines(lines, raw_schema, repairs, parser=parser)
    want = {i: reference(lines.buf[lines.starts[i]:lines.ends[i]], raw_schema) for i in range(len(lines.starts))}
    assert sorted(positions.tolist() + [b for b, _ in bad]) == list(range(len(lines.starts)))  # counts reconcile
    assert {b for b, _ in bad} == {i for i, w in want.items() if w is None}, [
        (lines.text(b), r) for b, r in bad]
    assert all(reason for _, reason in bad)
    rows = table.to_pylist()
    for r, i in enumerate(positions.tolist()):
        row, sides = want[i]
        assert _matches(rows[r], row), (lines.text(i), rows[r], row)
        assert sorted(side for side, _ in repairs.get(i, [])) == sides, lines.text(i)
    # every line's bytes accounted for: blank lines are what is whitespace to JSON and DuckDB
    assert lines.blank == sum(b.count(b"\n") + (not b.endswith(b"\n") and bool(b)) for b in blobs) - len(want)


# -- generated and hostile lines -----------------------------------------------------------------

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False).map(repr).map(_Lit),
    st.sampled_from(["1.50", "1E2", "-0", "1e400", "-2.5E+0309", "1e-400", "0.1000000000000000055511"]).map(_Lit),
    st.text(st.characters(codec="utf-8"), max_size=8),
    st.sampled_from(["\ud800", "\udc00x", "\ud83d\ude00", "\x00", "\u2028", "é/\\\"\n\t"]),
)
_VALUES = st.recursive(_SCALARS, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.dictionaries(st.sampled_from(["a", "data", "eventId", "é"]), kids, max_size=3)),
    max_leaves=8)
_KEYS = {(): ["captureData", "eventMetadata", "eventVersion", "groundTruthData", "x"],
         ("captureData",): ["endpointInput", "endpointOutput", "batchTransformOutput", "y"],
         ("eventMetadata",): ["eventId", "inferenceId", "inferenceTime", "targetModel"],
         ("groundTruthData",): ["data", "encoding"],
         "payload": ["data", "encoding", "mode", "observedContentType"]}


def _dump(v) -> str:
    """JSON text of a generated value (literals written as they are; strings with escapes)."""
    if isinstance(v, _Lit):
        return str(v)
    if isinstance(v, str):
        return '"' + "".join(c if c.isalnum() or c in " ,./:-" else f"\\u{ord(c):04x}" if ord(c) < 0x10000
                             else json.dumps(c)[1:-1] for c in v) + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_dump(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(_dump(k) + ":" + _dump(x) for k, x in v.items()) + "}"
    return json.dumps(v)


@st.composite
def _objects(draw, path=()):
    keys = _KEYS.get(path, _KEYS["payload"] if path[:1] == ("captureData",) else ["a"])
    members = []
    for key in draw(st.lists(st.sampled_from(keys), max_size=5)):  # repeats: duplicate keys
        child = path + (key,)
        if child in _KEYS or child[:1] == ("captureData",) and len(child) == 2:
            value = draw(st.one_of(_objects(child), _VALUES.map(_dump)))
        else:
            value = _dump(draw(_VALUES))
        members.append(f'"{key}"' + draw(st.sampled_from([":", " : "])) + value)
    if members and draw(st.integers(0, 9)) == 0:
        members[-1] += ","  # a trailing comma
    return "{" + ",".join(members) + "}"


_ODD = st.sampled_from(["nan", "-INF", "Infinity", "NaN", "[1,]", "[,]", "+1", "01", "{,}", "tru"])


@st.composite
def _lines(draw):
    text = draw(_objects())
    if draw(st.integers(0, 5)) == 0:  # an odd value somewhere a value may go
        at = [m.end() for m in re.finditer(r'":', text)]
        if at:
            i = draw(st.sampled_from(at))
            text = text[:i] + draw(_ODD) + "," + '"z":' + text[i:]
    before = draw(st.sampled_from(["", " ", "\t", "\x0c", "\ufeff"]))
    after = draw(st.sampled_from(["", " ", "\r", "\x0b", " \x0c", " junk", "{}", "\x00"]))
    return (before + text + after).encode()


@settings(max_examples=150, deadline=None)
@given(files=st.lists(st.lists(st.one_of(_lines(), st.sampled_from(LINES)), max_size=8), min_size=1, max_size=3),
       newline=st.sampled_from([b"\n", b"\r\n"]), final=st.booleans(),
       parser=st.sampled_from(["duckdb", "exact"]))
def test_parsed_lines_mean_what_json_loads_reads(files, newline, final, parser):
    blobs = [newline.join(f) + (newline if final and f else b"") for f in files]
    check_against_reference(blobs, parse.RAW_CAPTURE, parser)


@pytest.mark.parametrize("parser", ["duckdb", "exact"])
@pytest.mark.parametrize("line", range(len(HOSTILE)))
def test_each_hostile_line_means_what_json_loads_reads(line, parser):
    check_against_reference([b"\n".join([LINES[0], HOSTILE[line], LINES[1], b""]), LINES[2]], parse.RAW_CAPTURE, parser)


def test_labels_mean_what_json_loads_reads_too():
    good = dumps(label("e1", "1")).encode()
    blob = b"\n".join([good, b'{"groundTruthData":{"data":1},"eventMetadata":{"eventId":"x"}}', good + b",",
                       b'{"groundTruthData":{"data":"1",},"eventMetadata":{"eventId":2}}'])
    for parser in ("duckdb", "exact"):
        check_against_reference([blob], parse.RAW_LABEL, parser)


# -- the decision: DuckDB's reader by default, per-file fallback ---------------------------------


def test_duckdb_reads_a_clean_batch_in_one_call(monkeypatch):
    calls = duck_calls(monkeypatch)
    blobs = [("\n".join(GOOD * 50) + "\n").encode(), ("\n\n".join(GOOD) + "\r\n\n  \n").encode(), b""]
    fast, ref = both(parse.parse_captures, _batch(blobs))
    assert calls[0] is True and len(calls) == 1  # one reader call, before the exact path ran
    same(fast, ref)
    assert fast.table.num_rows == 4 * 50 + 4
    calls.clear()
    fast = parse.parse_captures(_batch(blobs), payload=False)
    assert calls == [True]
    same_projected(fast, ref)


def test_there_is_no_parser_switch_in_the_environment(monkeypatch):
    assert not hasattr(parse, "PARSER") and not hasattr(parse, "use_duckdb")
    monkeypatch.setenv("CAPTUREQ_PARSER", "pyarrow")
    calls = duck_calls(monkeypatch)
    parse.parse_captures(_batch([(GOOD[0] + "\n").encode()]))
    assert calls == [True]
    with pytest.raises(ValueError, match="parser"):
        parse.parse_captures(_batch([(GOOD[0] + "\n").encode()]), parser="pyarrow")


def test_a_rejected_batch_falls_back_per_file(monkeypatch):
    """One bad line costs DuckDB only its own file: the other files are still read by it, and
    the bad file's lines get exact reasons and line numbers."""
    calls = duck_calls(monkeypatch)
    good = "\n".join(GOOD * 5).encode() + b"\n"
    bad = b"\n".join([GOOD[0].encode(), b"{junk", GOOD[1].encode(), rec(META, '"x":nan', IN)]) + b"\n"
    parsed = parse.parse_captures(_batch([good, bad, good]))
    assert calls[:4] == [False, True, False, True]  # the batch; then each file, the bad one rejected
    [q] = parsed.quarantine.to_pylist()
    assert (q["source_file"].endswith("f1.jsonl"), q["line_number"], q["raw"]) == (True, 2, "{junk")
    assert q["reason"].startswith("invalid JSON line: Expecting property name")
    assert parsed.table.num_rows == 2 * 20 + 3  # the nan line (an unused field) is kept
    assert parsed.lines_read == parsed.table.num_rows + 1


def test_lenient_lines_keep_their_values():
    lines = [rec('"eventMetadata":{"eventId":12,"inferenceTime":"2024-05-01T12:00:00Z",}', IN),
             rec(META, IN, '"eventVersion":1.50,'), rec(META, IN, '"x":[-inf, NAN,]') + b"\x0b",
             b"\x0c" + rec(META, IN, '"eventVersion":true')]
    for junk in ([], [b"{junk"]):  # DuckDB reads the batch; the exact path reads it
        parsed = parse.parse_captures(_batch([b"\n".join(lines + junk) + b"\n"]))
        assert parsed.table.column("event_id").to_pylist() == ["12", "e", "e", "e"]
        assert parsed.table.column("event_version").to_pylist() == [None, "1.5", None, "true"]
        assert parsed.quarantine.num_rows == len(junk)


AMBIGUOUS = {
    "duplicate-key": (rec('"eventMetadata":{"eventId":"e","eventId":"f","inferenceTime":"2024-05-01T12:00:00Z"}', IN),
                      "duplicate key eventMetadata.eventId"),
    "lone-surrogate": (rec(META, '"x":"\\ud800"', IN), "line holds a lone UTF-16 surrogate"),
    "struct-is-a-string": (rec('"eventMetadata":"e"', IN), "wrong type: eventMetadata is a string, expected an object"),
    "struct-is-an-array": (rec(META, '"captureData":[]'), "wrong type: captureData is an array, expected an object"),
    "trailing-comma-alone": (rec(META, '"x":[,]', IN), "invalid JSON line: Expecting value"),
}


@pytest.mark.parametrize("parser", ["duckdb", "exact"])
@pytest.mark.parametrize("tag", list(AMBIGUOUS))
def test_lines_without_one_meaning_are_quarantined_with_the_reason(tag, parser):
    line, reason = AMBIGUOUS[tag]
    parsed = parse.parse_captures(_batch([b"\n".join([GOOD[0].encode(), line, GOOD[1].encode()])]), parser=parser)
    [q] = parsed.quarantine.to_pylist()
    assert q["line_number"] == 2 and q["reason"].startswith(reason), q["reason"]
    assert parsed.table.num_rows == 2


@pytest.mark.parametrize("line", range(len(HOSTILE)))
def test_each_hostile_line_among_good_ones_both_paths_agree(line):
    blob = b"\n".join([LINES[0], HOSTILE[line], LINES[1], b""])
    fast, ref = both(parse.parse_captures, _batch([blob, LINES[2] + b"\n"]))
    same(fast, ref, HOSTILE[line])
    same_projected(parse.parse_captures(_batch([blob, LINES[2] + b"\n"]), payload=False), ref, HOSTILE[line])


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(st.lists(st.sampled_from(range(len(LINES))), max_size=12), min_size=1, max_size=4),
       newline=st.sampled_from([b"\n", b"\r\n"]), final=st.booleans())
def test_generated_batches_give_identical_tables(files, newline, final):
    blobs = [newline.join(LINES[i] for i in f) + (newline if final else b"") for f in files]
    fast, ref = both(parse.parse_captures, _batch(blobs))
    same(fast, ref)
    same_projected(parse.parse_captures(_batch(blobs), payload=False), ref)


def test_labels_too(monkeypatch):
    good = dumps(label("e1", "1")).encode()
    blobs = [b"\n".join([good, good, b'{"groundTruthData":{"data":1},"eventMetadata":{"eventId":"x"}}', good]) + b"\n"]
    same(*both(parse.parse_labels, _batch(blobs)))
    calls = duck_calls(monkeypatch)
    same(*both(parse.parse_labels, _batch([good + b"\n" + good])))
    assert calls[0] is True


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seed-churn", "book-housing"])
def test_every_corpus_mutation_gives_identical_quarantine(name, corpus):
    rel = {
        "seed-churn": "seed-churn/xgb-churn-prediction-model/AllTraffic/2022/02/14/17/25-06-000-seed-sample.jsonl",
        "book-housing": "book-housing/ll-housing/AllTraffic/2020/07/30/13/36-30-000-book-sample.jsonl",
    }[name]
    original = (corpus / rel).read_bytes()
    ran = 0
    for tag, data in mutations(original):
        fast, ref = both(parse.parse_captures, _batch([data, original]))
        same(fast, ref, tag)
        same_projected(parse.parse_captures(_batch([data, original]), payload=False), ref, tag)
        ran += 1
    assert ran >= 70


def test_payload_repairs_are_found_by_the_reader_not_a_scan(monkeypatch):
    """A payload whose data is not a string is flagged by DuckDB's reader itself (its JSON type):
    no regex pass over the batch, and the capture row keeps the value as JSON text."""
    monkeypatch.setattr(re, "finditer", None)  # any scan of the buffer with Python's re fails
    line = rec(META, '"captureData":{"endpointInput":{"data":{"instances": [[1, 2]]},"encoding":"JSON"},'
                     '"endpointOutput":{"data":0.93,"encoding":"CSV"}}')
    parsed = parse.parse_captures(_batch([b"\n".join([GOOD[0].encode(), line]) + b"\n"]))
    assert parsed.table.column("input_data").to_pylist() == ["1,2,3", '{"instances": [[1, 2]]}']
    assert parsed.table.column("output_data").to_pylist() == ["0.5", "0.93"]
    assert [r for r, _ in parsed.payload_failures["input"]] == [1]
    assert "a JSON number, not a string" in parsed.payload_failures["output"][0][1]
    assert not parsed.quarantine.num_rows


@pytest.mark.parametrize("parser", ["duckdb", "exact"])
def test_embedded_labels_keep_their_text_when_no_payload_text_is_read(parser):
    """A query of ``labels`` reads no payload text, but a merged record's groundTruthData.data
    is the label itself: it is read whatever the query needs."""
    merged = ('{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT",'
              '"data":"1,2","encoding":"CSV"}},"groundTruthData":{"data":"1","encoding":"CSV"},'
              '"eventMetadata":{"eventId":"e1","inferenceTime":"2026-01-01T00:00:00Z"},"eventVersion":"0"}')
    for payload in (True, False):
        got = parse.parse_captures(_batch([(merged + "\n").encode()]), payload=payload, parser=parser)
        assert got.labels is not None and got.labels.column("data").to_pylist() == ["1"], payload
