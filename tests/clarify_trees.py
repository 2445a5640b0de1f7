"""A capture tree for Clarify's two monitors at once: CSV inputs ``sex, income, region``, a JSON
response ``{"score": …, "explanations": {"kernel_shap": …}}`` per record and its ground truth.
From hour ``shift_at`` the model's scores for sex=1 fall by 40 % (bias drift) and the SHAP
spread of ``region`` jumps from 0.05 to 1.5 (attribution drift)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from trees import capture, label, write_captures, write_labels

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
ENDPOINT = "loans"
FEATURES = ["income", "sex", "age", "tenure", "region"]
SCALES = [1.0, 0.6, 0.3, 0.15, 0.05]
BIAS_CONFIG = {
    "label": "approved",
    "label_values_or_threshold": [1],
    "headers": ["sex", "income", "region"],
    "facet": [{"name_or_index": "sex", "value_or_threshold": [1]}],
    "group_variable": "region",
    "probability_threshold": 0.5,
}


def write_clarify_tree(root: Path, hours: int, per_hour: int, shift_at: int | None,
                       seed: int = 1) -> tuple[Path, Path]:
    """``root/capture`` and ``root/labels``; the test's own writer, not the code under test."""
    rng = np.random.default_rng(seed)
    for h in range(hours):
        when = START + timedelta(hours=h)
        n = per_hour
        sex = rng.integers(0, 2, n)
        income = np.round(rng.normal(60, 15, n), 1)
        region = rng.integers(1, 4, n)
        score = 1 / (1 + np.exp(-(0.04 * (income - 60) + 0.3 * (region - 2))))
        y = (rng.random(n) < score).astype(int)
        scales = np.array(SCALES)
        if shift_at is not None and h >= shift_at:
            score = np.where(sex == 1, score * 0.6, score)
            scales[-1] = 1.5
        phis = rng.normal(0, 1, (n, len(FEATURES))) * scales
        lines, labels = [], []
        for i in range(n):
            iid = f"{h}-{i}"
            body = {"score": round(float(score[i]), 5), "explanations": {"kernel_shap": [[
                {"feature_header": f, "attributions": [{"attribution": [float(v)]}]}
                for f, v in zip(FEATURES, phis[i])]]}}
            lines.append(capture(f"{sex[i]},{income[i]},{region[i]}\n", json.dumps(body),
                                 output_type="application/json", event_id=iid,
                                 inference_id=iid, when=when + timedelta(seconds=10 * i)))
            labels.append(label(iid, str(y[i])))
        write_captures(root / "capture", lines, endpoint=ENDPOINT, when=when, name=f"c{h}.jsonl")
        write_labels(root / "labels", labels, when=when + timedelta(hours=1), name=f"l{h}.jsonl")
    return root / "capture", root / "labels"
