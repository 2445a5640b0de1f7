"""Capture trees for the job and schedule tests: one endpoint, CSV features, a score output,
and ground truth for every record (written with captureq's own writer, see trees.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from trees import capture, label, write_captures, write_labels

from captureq.records import csv_line

ENDPOINT = "churn"


def hour_records(hour: datetime, n: int = 40, *, shift: float = 0.0, seed: int = 0):
    """``n`` captures spread over ``hour`` and their labels: features ``_c0`` (integer),
    ``_c1`` (fractional, moved by ``shift``), ``_c2`` (integer 0–3); output a score in [0, 1]."""
    rng = np.random.default_rng([seed, int(hour.timestamp())])
    a = rng.integers(18, 80, n)
    b = rng.normal(50.0 + shift, 5.0, n)
    c = rng.integers(0, 4, n)
    score = 1.0 / (1.0 + np.exp(-(b - 50.0 - shift) / 5.0))
    truth = (rng.random(n) < score).astype(int)
    records, labels, rows = [], [], []
    for i in range(n):
        eid = f"{hour:%Y%m%d%H}-{seed}-{i}"
        when = hour + timedelta(seconds=int(i * 3600 / n))
        row = [int(a[i]), f"{b[i]:.3f}", int(c[i])]
        rows.append(row)
        records.append(
            capture(csv_line(row), f"{score[i]:.4f}", event_id=eid, inference_id=eid, when=when)
        )
        labels.append(label(eid, str(truth[i])))
    return records, labels, rows


def write_hour(root: Path, hour: datetime, labels_root: Path | None = None,
               label_delay: timedelta = timedelta(0), **kw) -> Path:
    """Write ``hour``'s captures (and labels, when ``labels_root`` is given); returns the
    capture file."""
    records, labels, _ = hour_records(hour, **kw)
    path = write_captures(root, records, endpoint=ENDPOINT, when=hour, name=f"{hour:%M}-x.jsonl")
    if labels_root is not None:
        write_labels(labels_root, labels, when=hour + label_delay, name=f"{hour:%Y%m%d%H}.jsonl")
    return path


def training_csv(path: Path, hours: list[datetime]) -> Path:
    """The features of ``hours`` (unshifted) as a header-less CSV, a training set."""
    lines = []
    for h in hours:
        lines += [csv_line(r) for r in hour_records(h, seed=1)[2]]
    path.write_text("\n".join(lines) + "\n")
    return path
