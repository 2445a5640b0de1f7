"""The object-store benchmark's bookkeeping (not timed): answers are compared, and its table
goes where ``python -m benchmarks`` keeps it."""

from __future__ import annotations

from benchmarks import s3latency
from benchmarks.harness import NOTES


def test_a_contender_with_another_answer_or_two_answers_is_not_the_same():
    rows = [{"answers": [(24000, 100.204)]}, {"answers": [(24000, 100.204 + 1e-12)]},
            {"answers": [(24000, 100.3)]}, {"answers": [(23999, 100.204)]},
            {"answers": [(24000, 100.204), (24000, 100.3)]}]
    s3latency.agree(rows)
    assert [r["same"] for r in rows] == [True, True, False, False, False]


def test_the_table_goes_after_the_notes_marker_and_is_replaced_in_place(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(f"# measured\n\n{NOTES}\n### a note\n")
    s3latency.write(str(path), "| table one |")
    s3latency.write(str(path), "| table two |")
    text = path.read_text()
    assert "table one" not in text and text.count("table two") == 1
    assert text.index(NOTES) < text.index("table two") < text.index("### a note")
    assert text.startswith("# measured\n")
