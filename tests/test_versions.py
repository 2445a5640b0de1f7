"""What differs between the Python and DuckDB versions captureq supports (pyproject.toml's
``requires-python`` and ``dependencies``): ``make test-pythons`` runs this module on every
Python 3.10–3.13, each with the newest dependencies that install there (DuckDB 1.x on 3.10)."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

import captureq
from captureq.plan import to_arrow

ROOT = Path(__file__).resolve().parents[1]


def test_a_statement_without_a_result_gives_an_empty_table():
    # DuckDB 1.x returns None from con.sql() for CREATE, SET and COPY; 2.x a one-row relation
    assert to_arrow(None) == pa.table({})


def test_sql_that_creates_a_table_returns_a_result_on_every_duckdb(corpus):
    cq = captureq.open(str(corpus))
    table = cq.sql("create temp table t as select 1 as a").to_arrow()
    assert table.num_rows <= 1  # [] on DuckDB 1.x, [{"Count": 1}] on 2.x


def test_the_classifiers_name_the_pythons_make_test_pythons_runs():
    text = (ROOT / "pyproject.toml").read_text()
    low, high = re.search(r'requires-python = ">=3\.(\d+),<3\.(\d+)"', text).groups()
    admitted = [f"3.{minor}" for minor in range(int(low), int(high))]
    classified = re.findall(r'"Programming Language :: Python :: (3\.\d+)"', text)
    tested = re.search(r"^PYTHONS \?= (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    assert classified == admitted == tested
