"""Parquet export: hive layout, incremental runs, atomic commits, the lock, readers."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

import captureq
from captureq.errors import ExportError
from captureq.export import _Output, read_manifest
from captureq.generate import generate_tree


@pytest.fixture(scope="module")
def demo_tree(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("tree")
    generate_tree(str(base / "capture"), labels_out=str(base / "labels"), hours=6, requests_per_hour=20)
    return base / "capture", base / "labels"


def parquet_rows(out: Path, table: str) -> int:
    return duckdb.execute(f"select count(*) from read_parquet('{out}/{table}/**/*.parquet')").fetchone()[0]


def test_export_writes_hive_partitions_readable_by_duckdb_and_polars(demo_tree, tmp_path):
    capture, labels = demo_tree
    cq = captureq.open(str(capture), labels=str(labels))
    summary = cq.export(str(tmp_path / "out"))
    out = tmp_path / "out"
    tables = cq.load()
    assert summary.rows["captures"] == tables.captures.num_rows
    assert parquet_rows(out, "inputs") == tables.inputs.num_rows
    assert parquet_rows(out, "labels") == tables.labels.num_rows
    parts = list((out / "captures").glob("endpoint=*/variant=*/date=*/hour=*/*.parquet"))
    assert parts and all(p.name.startswith("part-") for p in parts)
    meta = pq.read_metadata(parts[0])
    assert meta.row_group(0).column(0).compression == "ZSTD"
    # polars reads each endpoint's parts with no options (one schema per endpoint; endpoints
    # have different columns, so across endpoints a reader matches columns by name)
    endpoints = sorted(p.name for p in (out / "inputs").glob("endpoint=*"))
    assert len(endpoints) > 1
    heights = [pl.scan_parquet(str(out / "inputs" / e / "**" / "*.parquet"), hive_partitioning=False).collect().height
               for e in endpoints]
    assert sum(heights) == tables.inputs.num_rows
    with duckdb.connect() as con:
        both = con.execute(f"select count(*) from read_parquet('{out}/inputs/**/*.parquet', union_by_name=true)")
        assert both.fetchall()[0][0] == tables.inputs.num_rows


def test_second_export_adds_nothing_and_row_counts_stay(demo_tree, tmp_path):
    capture, labels = demo_tree
    out = tmp_path / "out"
    first = captureq.open(str(capture), labels=str(labels)).export(str(out))
    second = captureq.open(str(capture), labels=str(labels)).export(str(out))
    assert first.files_exported > 0
    assert second.files_exported == 0 and second.files_skipped == first.files_exported
    assert second.label_files_exported == 0
    assert parquet_rows(out, "captures") == first.rows["captures"]
    manifest = read_manifest(str(out))
    assert manifest["tables"]["captures"]["rows"] == first.rows["captures"]
    assert manifest["source_files"] == first.files_exported


def test_new_file_in_an_old_hour_is_picked_up(demo_tree, tmp_path):
    capture, labels = demo_tree
    tree = tmp_path / "capture"
    import shutil

    shutil.copytree(capture, tree)
    out = tmp_path / "out"
    first = captureq.open(str(tree)).export(str(out))
    # a late object lands in an hour folder that was already exported
    some = next(tree.rglob("*.jsonl"))
    late = some.with_name("59-59-999-late.jsonl")
    late.write_text(some.read_text())
    second = captureq.open(str(tree)).export(str(out))
    assert second.files_exported == 1
    lines = len(some.read_text().splitlines())
    assert parquet_rows(out, "captures") == first.rows["captures"] + lines


def test_window_export_then_full_export_never_duplicates(demo_tree, tmp_path):
    capture, _ = demo_tree
    out = tmp_path / "out"
    part = captureq.open(str(capture), start="2026-01-01T00", end="2026-01-01T02").export(str(out))
    full = captureq.open(str(capture)).export(str(out))
    total = captureq.open(str(capture)).captures().num_rows
    assert part.rows["captures"] + full.rows["captures"] == total
    assert parquet_rows(out, "captures") == total


def test_a_second_concurrent_export_is_refused(demo_tree, tmp_path):
    capture, _ = demo_tree
    holder = _Output(str(tmp_path / "out"), None)
    holder.lock()
    try:
        with pytest.raises(ExportError, match="another captureq export"):
            captureq.open(str(capture)).export(str(tmp_path / "out"))
    finally:
        holder.unlock()
    assert captureq.open(str(capture)).export(str(tmp_path / "out")).files_exported > 0


def test_staged_commit_of_a_dead_run_is_rolled_forward(demo_tree, tmp_path, monkeypatch):
    """Simulate a crash after the commit record was staged but before it was published."""
    import captureq.export as ex

    capture, _ = demo_tree
    out = tmp_path / "out"
    real_mv = ex._Output.rename
    calls = {"n": 0}

    def dying_rename(self, src, dst):
        calls["n"] += 1
        if calls["n"] == 2:  # one part renamed into place, the others still in tmp
            raise KeyboardInterrupt("killed")
        return real_mv(self, src, dst)

    monkeypatch.setattr(ex._Output, "rename", dying_rename)
    with pytest.raises(KeyboardInterrupt):
        captureq.open(str(capture)).export(str(out))
    monkeypatch.setattr(ex._Output, "rename", real_mv)
    summary = captureq.open(str(capture)).export(str(out))
    assert summary.recovered_commits == 1
    total = captureq.open(str(capture)).captures().num_rows
    assert parquet_rows(out, "captures") == total  # every row exactly once
    assert not list((out / "_captureq" / "tmp").iterdir())


def test_manifest_never_holds_credentials(demo_tree, tmp_path):
    from captureq.export import _redact

    assert _redact("s3://AKIAXXX:secret@bucket/prefix") == "s3://bucket/prefix"
    capture, _ = demo_tree
    captureq.open(str(capture)).export(str(tmp_path / "out"))
    text = (tmp_path / "out" / "_captureq" / "manifest.json").read_text()
    assert json.loads(text)["source"] == str(capture)
