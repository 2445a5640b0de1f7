"""(b) The docs' way: ``json.loads`` per line, then split the payload — a Python loop per record."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from .common import FEATURE_NAMES, Job, partition


def run(job: Job):
    import pyarrow as pa

    endpoints, variants, event_ids, times, scores = [], [], [], [], []
    features: list[list[float]] = []
    for path in job.files:
        endpoint, variant = partition(path)
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                rec = json.loads(line)
                meta = rec["eventMetadata"]
                inp = rec["captureData"]["endpointInput"]
                data = inp["data"]
                if inp["encoding"] == "BASE64":
                    data = base64.b64decode(data).decode("utf-8")
                if inp["encoding"] == "JSON":
                    values = [float(v) for v in json.loads(data)["features"]]
                else:
                    values = [float(v) for v in data.strip().split(",")]
                endpoints.append(endpoint)
                variants.append(variant)
                event_ids.append(meta["eventId"])
                times.append(datetime.fromisoformat(meta["inferenceTime"]))
                features.append(values)
                scores.append(float(rec["captureData"]["endpointOutput"]["data"]))
    columns = {"endpoint": endpoints, "variant": variants, "event_id": event_ids,
               "inference_time": pa.array(times, pa.timestamp("us", tz="UTC"))}
    for name, col in zip(FEATURE_NAMES, zip(*features)):
        columns[name] = pa.array(col, pa.float64())
    columns["score"] = pa.array(scores, pa.float64())
    return pa.table(columns)
