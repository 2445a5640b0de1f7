"""Hostile input through the whole pipeline: the real corpus files, mutated.

``test_quarantine.py`` pins the reason for each kind of bad line; here every mutation of the
real SageMaker files (``tests/data/corpus``) is read by ``captureq.open(...).load()`` with its
neighbours, and the scan must never raise, every non-blank line must be a parsed row or a
quarantine row with a reason, and ``lines_read == rows + quarantined_lines`` exactly.

Cases: 75 deterministic mutations × 2 corpus files, 3 gzip forms each of 2 files, 4 huge
(> 10 MB) lines, and 30 hypothesis examples of random byte edits of the real files.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path

import pyarrow.compute as pc
import pytest
from faults import gzip_variants, huge_mutations, mutations
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import captureq

pytestmark = pytest.mark.slow  # hundreds of mutations of the real corpus files

CORPUS_FILES = {
    "seed-churn": "seed-churn/xgb-churn-prediction-model/AllTraffic/2022/02/14/17/25-06-000-seed-sample.jsonl",
    "book-housing": "book-housing/ll-housing/AllTraffic/2020/07/30/13/36-30-000-book-sample.jsonl",
}


def nonblank_lines(blob: bytes) -> int:
    """How many lines of a file are not blank (what ``lines_read`` must count)."""
    if blob.startswith(b"\xef\xbb\xbf"):
        blob = blob[3:]
    lines = blob.split(b"\n")
    return sum(1 for line in lines if line.strip(b" \t\r"))


def check(root: Path, expected_lines: int | None = None, tag: str = ""):
    """Load ``root``; assert the invariants every hostile input must keep; return the tables."""
    t = captureq.open(str(root)).load()  # never raises
    c = t.counts
    assert c.lines_read == c.rows + c.quarantined_lines, c
    assert c.rows == t.captures.num_rows
    if expected_lines is not None:
        assert c.lines_read == expected_lines, (tag, c)
    rows = {(r["source_file"], r["line_number"]) for r in t.captures.select(["source_file", "line_number"]).to_pylist()}
    assert len(rows) == t.captures.num_rows, "a line became two rows"
    quarantined = set()
    for q in t.quarantine.to_pylist():
        assert q["reason"], q
        assert q["stage"] in {"file", "line", "input", "output", "align"}, q
        if q["stage"] == "line":
            key = (q["source_file"], q["line_number"])
            assert key not in rows and key not in quarantined, f"line {key} counted twice"
            quarantined.add(key)
        elif q["stage"] in ("input", "output", "align"):
            assert q["capture_id"] in set(t.captures["capture_id"].to_pylist()), q
    assert len(quarantined) == c.quarantined_lines
    # every input/output record belongs to a parsed capture
    ids = set(t.captures["capture_id"].to_pylist())
    assert set(t.inputs["capture_id"].to_pylist()) <= ids
    assert set(t.outputs["capture_id"].to_pylist()) <= ids
    return t


def plant(root: Path, corpus: Path, name: str, data: bytes, filename: str | None = None) -> Path:
    """Copy the whole corpus under ``root`` and replace file ``name`` with ``data``."""
    shutil.copytree(corpus, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.md"))
    path = root / CORPUS_FILES[name]
    if filename is not None:
        path.unlink()
        path = path.with_name(filename)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def originals(corpus) -> dict[str, bytes]:
    return {name: (corpus / rel).read_bytes() for name, rel in CORPUS_FILES.items()}


@pytest.fixture(scope="module")
def other_lines(originals) -> dict[str, int]:
    """Non-blank lines of the *other* corpus file (it is read alongside every mutation)."""
    total = sum(nonblank_lines(b) for b in originals.values())
    return {name: total - nonblank_lines(b) for name, b in originals.items()}


@pytest.mark.parametrize("name", list(CORPUS_FILES))
def test_every_mutation_of_a_real_file_is_accounted_for(name, corpus, originals, other_lines, tmp_path):
    ran = 0
    for tag, data in mutations(originals[name]):
        root = tmp_path / tag
        plant(root, corpus, name, data)
        t = check(root, other_lines[name] + nonblank_lines(data), tag)
        # the untouched neighbour always parses in full
        other = next(n for n in CORPUS_FILES if n != name)
        src = f"file://{root / CORPUS_FILES[other]}"
        assert t.captures["source_file"].to_pylist().count(src) == other_lines[name], tag
        if tag.startswith("b64-") or tag in {"as-is", "crlf", "bom", "bom-crlf", "no-final-newline"}:
            assert t.counts.quarantined_lines == 0, tag
        ran += 1
    assert ran >= 70


def test_good_lines_around_a_bad_one_keep_their_values(corpus, originals, tmp_path):
    """The real values (corpus README) survive a junk line planted before them."""
    blob = originals["seed-churn"]
    plant(tmp_path, corpus, "seed-churn", b"{junk\n\x00\xff\n" + blob)
    t = check(tmp_path, 1 + 2 + 3)
    inputs = t.inputs.filter(pc.equal(t.inputs["endpoint"], "xgb-churn-prediction-model")).sort_by("capture_id")
    assert sorted(inputs["_c0"].to_pylist()) == [50, 69, 94]
    assert t.counts.quarantined_lines == 2


def test_duplicate_event_ids_are_kept_as_distinct_captures(corpus, originals, tmp_path):
    """seed-churn's three records share one eventId; doubling the file gives six captures."""
    blob = originals["seed-churn"]
    plant(tmp_path, corpus, "seed-churn", blob + blob)
    t = check(tmp_path, 7)
    churn = t.captures.filter(pc.equal(t.captures["endpoint"], "xgb-churn-prediction-model"))
    assert churn.num_rows == 6 and len(set(churn["event_id"].to_pylist())) == 1
    assert len(set(churn["capture_id"].to_pylist())) == 6


@pytest.mark.parametrize("tz, expected", [("+05:30", "2022-02-14 11:55:06.250000+00:00"),
                                          ("-08:00", "2022-02-15 01:25:06.250000+00:00"),
                                          ("Z", "2022-02-14 17:25:06.250000+00:00")])
def test_non_utc_and_fractional_times_are_normalized_to_utc(corpus, originals, tmp_path, tz, expected):
    blob = originals["book-housing"].replace(b"2020-07-30T13:36:30Z", f"2022-02-14T17:25:06.25{tz}".encode())
    assert blob != originals["book-housing"]
    plant(tmp_path, corpus, "book-housing", blob)
    t = check(tmp_path, 4)
    row = t.captures.filter(pc.equal(t.captures["endpoint"], "ll-housing")).to_pylist()[0]
    assert str(row["inference_time"]) == expected


@pytest.mark.parametrize("name", list(CORPUS_FILES))
def test_gzip_forms(name, corpus, originals, other_lines, tmp_path):
    for filename, data in gzip_variants(Path(CORPUS_FILES[name]).name, originals[name]):
        root = tmp_path / filename
        plant(root, corpus, name, data, filename)
        t = check(root)
        if "-cut." in filename:  # a corrupt gzip is one file row, and no line of it is counted
            [row] = t.quarantine.to_pylist()
            assert (row["stage"], row["reason"].startswith("not a readable gzip file")) == ("file", True)
            assert (t.counts.files_failed, t.counts.lines_read) == (1, other_lines[name])
        else:
            assert t.counts.lines_read == other_lines[name] + nonblank_lines(originals[name])
            assert t.quarantine.num_rows == 0


def test_gzip_of_a_mutated_file(corpus, originals, tmp_path):
    for i, (tag, data) in enumerate(mutations(originals["seed-churn"])):
        if i % 6:
            continue
        root = tmp_path / tag
        plant(root, corpus, "seed-churn", gzip.compress(data), Path(CORPUS_FILES["seed-churn"]).name + ".gz")
        check(root, 1 + nonblank_lines(data))


def test_huge_lines(corpus, originals, tmp_path):
    """Lines carrying > 10 MB payloads: parsed, or quarantined, never a crash."""
    for tag, data in huge_mutations(originals["seed-churn"]):
        root = tmp_path / tag
        plant(root, corpus, "seed-churn", data)
        t = check(root, 1 + nonblank_lines(data))
        if tag == "huge-csv-payload":
            assert t.counts.quarantined_lines == 0 and t.inputs.num_rows > 50_000
        elif tag == "huge-base64-image":
            assert t.counts.quarantined_lines == 0
        else:
            assert t.counts.quarantined_lines == 1
        shutil.rmtree(root)


EDIT = st.tuples(st.sampled_from(["delete", "insert", "replace", "cut"]), st.floats(0, 1),
                 st.binary(min_size=1, max_size=6) | st.sampled_from([b"\n", b"\r\n", b"\x00", b"\xef\xbb\xbf",
                                                                      b'"', b"\\", b"{", b"}", b",", b"\xff"]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(list(CORPUS_FILES)), edits=st.lists(EDIT, min_size=1, max_size=6))
def test_random_byte_edits_of_real_files(corpus, name, edits):
    blob = (corpus / CORPUS_FILES[name]).read_bytes()
    for op, where, chunk in edits:
        at = int(where * len(blob))
        if op == "delete":
            blob = blob[:at] + blob[at + len(chunk):]
        elif op == "insert":
            blob = blob[:at] + chunk + blob[at:]
        elif op == "replace":
            blob = blob[:at] + chunk + blob[at + len(chunk):]
        else:
            blob = blob[:at]
    with tempfile.TemporaryDirectory() as root:
        plant(Path(root), corpus, name, blob)
        others = sum(nonblank_lines((corpus / rel).read_bytes()) for n, rel in CORPUS_FILES.items() if n != name)
        check(Path(root), others + nonblank_lines(blob))
