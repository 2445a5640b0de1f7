"""The scan plan: a query reads only the tables, sides and payload text it needs, and gets the
same answer as when everything is read."""

from __future__ import annotations

import ast
from pathlib import Path

import pyarrow as pa
import pytest

import captureq
from captureq import pipeline
from captureq.plan import ALL_PARTS, query_needs, view_sources

ROOT = Path(__file__).resolve().parent.parent


def test_view_sources_follow_the_sql_files():
    assert view_sources("captures") == {"captures"}
    assert view_sources("outputs") == {"outputs"}
    assert view_sources("predictions") == {"pairs", "labels"}
    assert view_sources("pairs") == {"inputs", "outputs"}


@pytest.mark.parametrize(
    "sql, parts, text",
    [
        ("select count(*) from captures", {"captures"}, False),
        ("select endpoint, count(*) from captures group by 1", {"captures"}, False),
        ("select input_data from captures", {"captures"}, True),
        ("select * from captures", {"captures"}, True),
        ("select c.output_data from captures c", {"captures"}, True),
        ("select count(*) from inputs", {"inputs"}, False),
        ("select count(*) from outputs", {"inputs", "outputs"}, False),
        ("select * from predictions", {"inputs", "outputs", "pairs", "labels"}, True),
        ("select count(*) from labels", {"labels"}, False),
        ("select * from quarantine", set(ALL_PARTS), True),
        ("with x as (select * from inputs) select count(*) from x join captures using (capture_id)",
         {"inputs", "captures"}, True),
        ("select count(*) from captures where capture_id in (select capture_id from outputs)",
         {"captures", "inputs", "outputs"}, False),
        ("select count(*) from captures; select count(*) from labels", {"captures", "labels"}, False),
        ("select count(*) from captures where endpoint = $1", {"captures"}, False),
        ("describe captures", {"captures"}, True),
        ("pragma table_info('inputs')", {"inputs"}, True),  # not a SELECT: payload text kept
        ("select 42", set(), False),
    ],
)
def test_query_needs(sql, parts, text):
    needs = query_needs(sql)
    assert set(needs.parts) == parts
    assert needs.payload_text == text


def test_count_of_captures_decodes_no_payload(corpus, monkeypatch):
    full = captureq.open(str(corpus), cache=False).sql("select count(*) as n from captures").to_arrow()

    def refuse(*args, **kwargs):
        raise AssertionError("a payload was decoded for a count of captures")

    monkeypatch.setattr(pipeline, "decode_side", refuse)
    cq = captureq.open(str(corpus), cache=False)
    assert cq.sql("select count(*) as n from captures").to_arrow() == full
    assert "input_data" not in cq._cache["tables"].captures.column_names  # payload text not kept


QUERIES = [
    "select count(*) as n from captures",
    "select endpoint, variant, count(*) as n, min(inference_time) as t from captures group by all order by all",
    "select * from captures order by capture_id",
    "select count(*) as n from inputs",
    "select * from inputs order by capture_id, record_index",
    "select * from outputs order by capture_id, record_index",
    "select * from predictions order by capture_id, record_index",
    "select * from labels order by label_id, record_index",
    "select stage, count(*) as n from quarantine group by all order by all",
]


def test_every_query_answers_as_when_everything_is_read(corpus):
    everything = captureq.open(str(corpus)).connect()
    lazy = captureq.open(str(corpus))
    for sql in QUERIES:  # one plan, growing what it has read, query after query
        expected = everything.sql(sql).to_arrow_table()
        assert lazy.sql(sql).to_arrow().equals(expected), sql
        assert captureq.open(str(corpus)).sql(sql).to_arrow().equals(expected), sql


def test_labels_query_decodes_no_payload(tmp_path, monkeypatch):
    """Labels can sit inside capture lines (merged records), so the capture files are parsed,
    but no input or output payload is decoded."""
    from trees import capture, label, write_captures, write_labels

    write_captures(tmp_path / "cap", [capture("1,2", "0.5", event_id="e1")])
    write_labels(tmp_path / "gt", [label("e1", "1")])
    calls = []
    real = pipeline.decode_side
    monkeypatch.setattr(pipeline, "decode_side", lambda *a, **k: calls.append(1) or real(*a, **k))
    cq = captureq.open(str(tmp_path / "cap"), labels=str(tmp_path / "gt"), cache=False)
    assert cq.sql("select count(*) as n from labels").to_pylist() == [{"n": 1}]
    assert calls == []
    assert cq.sql("select count(*) as n from predictions").to_pylist() == [{"n": 1}]
    assert calls == [1, 1]


def test_plan_repr_says_what_was_read(corpus):
    cq = captureq.open(str(corpus), cache=False)
    assert "read=" not in repr(cq)
    cq.sql("select count(*) from captures")
    assert "read=['captures']" in repr(cq)


def test_no_module_below_the_api_imports_it():
    above = {"api.py", "__init__.py", "demo.py", "serve_demo.py"}  # cli.py files wire the API
    offenders = [
        str(path.relative_to(ROOT / "captureq"))
        for path in sorted((ROOT / "captureq").rglob("*.py"))
        if path.name not in above and not path.name.startswith("cli") and _imports_api_name(path)
    ]
    assert offenders == []


def _imports_api_name(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module in (None, "captureq")):
            if any(a.name == "api" for a in node.names):
                return True
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[-1] == "api":
            return True
    return False


def test_an_empty_window_has_every_view(tmp_path):
    cq = captureq.open(str(tmp_path))
    assert cq.sql("select count(*) as n from predictions").to_pylist() == [{"n": 0}]
    assert isinstance(cq.captures(), pa.Table)
