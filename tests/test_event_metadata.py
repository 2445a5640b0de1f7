"""eventMetadata keys captureq has no column for are kept (captures.event_metadata), and
monitoring splits by any of them (one baseline and one set of verdicts per model)."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trees import T0, capture, write_captures

import captureq


def _with_meta(record: dict, extra: dict) -> dict:
    record["eventMetadata"].update(extra)
    return record


def _metadata(root) -> list:
    cq = captureq.open(str(root))
    rows = cq.sql("select event_id, event_metadata from captures order by event_id").to_arrow().to_pylist()
    return [None if r["event_metadata"] is None else json.loads(r["event_metadata"]) for r in rows]


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
_keys = st.text(min_size=1, max_size=10).filter(
    lambda k: k not in ("eventId", "inferenceId", "inferenceTime"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.dictionaries(_keys, _json, max_size=4), min_size=1, max_size=4))
def test_unknown_event_metadata_keys_are_kept_as_written(tmp_path_factory, extras):
    root = tmp_path_factory.mktemp("tree")
    write_captures(root, [_with_meta(capture("1,2", "0.5", event_id=f"e{i}", inference_id="i"), extra)
                          for i, extra in enumerate(extras)])
    assert _metadata(root) == [extra or None for extra in extras]


def test_known_keys_keep_their_columns_and_payload_text_is_not_metadata(tmp_path):
    payload = json.dumps({"eventMetadata": {"targetModel": "inside-the-payload"}})
    write_captures(tmp_path, [
        _with_meta(capture(payload, "0.5", input_type="application/json", event_id="e0"),
                   {"targetModel": "m1.tar.gz"}),
        capture("1,2", "0.5", event_id="e1", inference_id="i1"),
    ])
    assert _metadata(tmp_path) == [{"targetModel": "m1.tar.gz"}, None]
    cq = captureq.open(str(tmp_path))
    got = cq.sql("select event_metadata->>'targetModel' as m, inference_id from captures order by event_id")
    assert got.to_arrow().to_pylist() == [{"m": "m1.tar.gz", "inference_id": None},
                                          {"m": None, "inference_id": "i1"}]


def _two_models(root, drift_hours=()):
    """One endpoint serving a 3-wide and a 5-wide CSV model, named in eventMetadata.targetModel."""
    rng = random.Random(7)
    for h in range(4):
        lines = []
        for i in range(120):
            width, model = (3, "small.tar.gz") if i % 2 else (5, "models/big.tar.gz")
            shift = 3.0 if h in drift_hours and width == 5 else 0.0
            row = ",".join(f"{rng.gauss(shift, 1):.4f}" for _ in range(width))
            lines.append(_with_meta(capture(row, "0.5", event_id=f"e{h}-{i}",
                                            when=T0 + timedelta(hours=h, minutes=i % 50)),
                                    {"targetModel": model}))
        write_captures(root, lines, when=T0 + timedelta(hours=h), name=f"f{h}.jsonl")


def test_a_two_model_endpoint_yields_two_schemas_and_two_baselines(tmp_path):
    from captureq.monitor import baseline, baseline_by, monitor_by

    _two_models(tmp_path / "tree", drift_hours=(2, 3))
    cq = captureq.open(str(tmp_path / "tree"))
    t0 = T0.replace(minute=0, second=0)
    mixed = baseline(cq, end=t0 + timedelta(hours=2))
    assert {f["completeness"] for f in mixed.constraints["features"]} == {1.0, 0.5}
    bases = baseline_by(cq, tmp_path / "base", "targetModel", end=t0 + timedelta(hours=2))
    assert set(bases) == {"small.tar.gz", "models/big.tar.gz"}
    for model, width in (("small.tar.gz", 3), ("models/big.tar.gz", 5)):
        features = bases[model].constraints["features"]
        assert [f["name"] for f in features] == [f"_c{i}" for i in range(width)]
        assert {f["completeness"] for f in features} == {1.0}
    assert sorted(p.name for p in (tmp_path / "base").iterdir()) == ["models%2Fbig.tar.gz", "small.tar.gz"]
    runs = monitor_by(cq, tmp_path / "base", tmp_path / "mon", "metadata.targetModel",
                      start=t0 + timedelta(hours=2), hourly=False)
    kinds = {m: {v["constraint_check_type"] for v in r.constraint_violations["violations"]}
             for m, r in runs.items()}
    assert kinds["small.tar.gz"] == set()
    assert kinds["models/big.tar.gz"] == {"baseline_drift_check"}
    assert (tmp_path / "mon" / "small.tar.gz" / "constraint_violations.json").exists()


def test_monitoring_a_model_without_a_baseline_says_what_to_do(tmp_path):
    from captureq.errors import ConfigError
    from captureq.monitor import baseline_by, monitor_by

    _two_models(tmp_path / "tree")
    cq = captureq.open(str(tmp_path / "tree"))
    baseline_by(cq, tmp_path / "base", "targetModel")
    (tmp_path / "base" / "small.tar.gz" / "statistics.json").unlink()
    with pytest.raises(ConfigError, match="no baseline for targetModel=small.tar.gz.*--by targetModel"):
        monitor_by(cq, tmp_path / "base", None, "targetModel")


def test_event_metadata_round_trips_through_the_export_and_the_cache(tmp_path, monkeypatch):
    import pyarrow.dataset as ds

    from captureq import cache, pipeline

    monkeypatch.setenv("CAPTUREQ_CACHE", str(tmp_path / "cache"))
    extra = {"targetModel": "m1.tar.gz", "nested": {"a": [1, 2]}}
    write_captures(tmp_path / "tree", [
        _with_meta(capture("1,2", "0.5", event_id="e0"), extra),
        capture("3,4", "0.5", event_id="e1"),
    ])
    query = "select event_id, event_metadata from captures order by event_id"
    cold = captureq.open(str(tmp_path / "tree"), cache=False).sql(query).to_arrow()
    assert [None if v is None else json.loads(v) for v in cold["event_metadata"].to_pylist()] == [extra, None]
    captureq.open(str(tmp_path / "tree")).export(str(tmp_path / "out"))
    parts = ds.dataset(tmp_path / "out" / "captures", format="parquet", partitioning="hive")
    exported = parts.to_table(columns=["event_id", "event_metadata"]).sort_by("event_id")
    assert exported.column("event_metadata").to_pylist() == cold["event_metadata"].to_pylist()
    captureq.open(str(tmp_path / "tree")).sql("select count(*) from captures")
    cache.wait()

    def refuse(*a, **k):
        raise AssertionError("a capture file was read on the warm path")

    monkeypatch.setattr(pipeline, "process_captures", refuse)
    assert captureq.open(str(tmp_path / "tree")).sql(query).to_arrow().equals(cold)


def test_the_cli_splits_baseline_and_monitor_by_target_model(tmp_path):
    from typer.testing import CliRunner

    from captureq.cli import app

    _two_models(tmp_path / "tree")
    runner = CliRunner()
    made = runner.invoke(app, ["baseline", str(tmp_path / "tree"), str(tmp_path / "base"),
                               "--by", "targetModel", "--format", "csv", "--quiet"])
    assert made.exit_code == 0, made.output
    lines = made.output.strip().splitlines()
    assert lines[0].startswith("targetModel,feature,")
    assert sum(line.startswith("small.tar.gz,") for line in lines) == 3
    assert sum(line.startswith("models/big.tar.gz,") for line in lines) == 5
    ran = runner.invoke(app, ["monitor", str(tmp_path / "tree"), "--baseline", str(tmp_path / "base"),
                              "--by", "metadata.targetModel", "--out", str(tmp_path / "mon"),
                              "--format", "json", "--quiet", "--no-hourly"])
    assert ran.exit_code == 0, ran.output
    assert {r["targetModel"] for r in json.loads(ran.output)} == {"small.tar.gz", "models/big.tar.gz"}
    assert (tmp_path / "mon" / "models%2Fbig.tar.gz" / "statistics.json").exists()
