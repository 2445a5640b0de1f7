"""eventMetadata keys captureq has no column for are kept (captures.event_metadata), and
monitoring splits by any of them (one baseline and one set of verdicts per model)."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import captureq
from captureq.read import FileBatch
from trees import T0, capture, write_captures


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
