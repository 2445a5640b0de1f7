"""Replay: captured requests sent again to a candidate model, its answers written as a tree."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import captureq
from captureq import records as rec
from captureq.capture import CaptureConfig, CaptureWriter

UTC = timezone.utc


# -- the capture writer's hooks the replay uses ----------------------------------------------
def test_capture_record_keeps_extra_event_metadata_after_the_standard_keys():
    r = rec.capture_record(
        input=None,
        output=rec.encode_payload("0.5", "text/csv", mode="OUTPUT"),
        event_id="e",
        inference_id="i",
        inference_time=datetime(2026, 1, 1, tzinfo=UTC),
        metadata={"replayLatencyMs": 12.5, "replayTime": "2026-03-01T00:00:00.123456Z"},
    )
    assert list(r["eventMetadata"]) == [
        "eventId", "inferenceId", "inferenceTime", "replayLatencyMs", "replayTime"
    ]
    assert r["eventMetadata"]["replayLatencyMs"] == 12.5


def test_writer_reports_each_written_object_and_keeps_extra_metadata(tmp_path):
    seen: list[tuple[str, bytes]] = []
    cfg = CaptureConfig(str(tmp_path / "out"), sampling_percentage=100, endpoint="ep",
                        spool_dir=str(tmp_path / "spool"))
    with CaptureWriter(cfg, on_written=lambda path, data: seen.append((path, data))) as w:
        for i in range(3):
            w.capture("1,2\n", "text/csv", "0.5", "text/csv", inference_id=f"r{i}",
                      when=datetime(2026, 1, 1, 5, tzinfo=UTC), metadata={"replayKey": f"k{i}"})
    assert len(seen) == 1
    path, data = seen[0]
    assert path.endswith(".jsonl") and "/ep/AllTraffic/2026/01/01/05/" in path
    keys = [json.loads(line)["eventMetadata"]["replayKey"] for line in data.splitlines()]
    assert keys == ["k0", "k1", "k2"]
    meta = captureq.open(str(tmp_path / "out")).captures().column("event_metadata").to_pylist()
    assert sorted(json.loads(m)["replayKey"] for m in meta) == ["k0", "k1", "k2"]
