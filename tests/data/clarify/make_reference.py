"""Reference bias metrics from AWS's ``smclarify`` for tests/test_monitor_bias.py.

smclarify's pins conflict with captureq's, so run it in a virtualenv of its own:

    python3 -m venv /tmp/clarify-venv
    /tmp/clarify-venv/bin/pip install --no-deps smclarify
    /tmp/clarify-venv/bin/pip install pandas numpy scikit-learn pyfunctional boto3
    /tmp/clarify-venv/bin/python tests/data/clarify/make_reference.py

It writes ``reference.json`` beside itself: every dataset's rows (facet, label, predicted label,
group) and smclarify's pre- and post-training reports for it, as ``bias_report`` returns them
(values ``"Infinity"``/``"-Infinity"`` for infinities, ``null`` with an ``error`` when smclarify
refuses a metric). The datasets are seeded, so the file is reproducible.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import smclarify
from smclarify.bias import report

N = 120  # above 40 records, so smclarify's 5 % uniqueness rule reads 0/1 labels as categories


def _binary(rng: np.random.Generator, n: int, facet: np.ndarray, base: float, lift: float):
    d = facet.astype(bool)
    p_label = np.where(d, base, base + lift)
    label = (rng.random(n) < p_label).astype(int)
    flip = rng.random(n) < 0.2
    pred = np.where(flip, 1 - label, label)
    pred = np.where(d & (rng.random(n) < 0.15), 0, pred)  # the model rejects more of the facet
    return label, pred


def datasets() -> list[dict]:
    out = []
    rng = np.random.default_rng(7)
    sex = rng.integers(0, 2, N)
    label, pred = _binary(rng, N, sex, 0.35, 0.2)
    group = rng.choice(["g1", "g2", "g3"], N)
    out.append(dict(name="binary_facet", facet=sex.tolist(), facet_kind="categorical",
                    facet_values=[1], label=label.tolist(), pred=pred.tolist(),
                    group=group.tolist()))
    out.append(dict(name="binary_facet_one_vs_all", facet=sex.tolist(),
                    facet_kind="categorical", facet_values=None, label=label.tolist(),
                    pred=pred.tolist(), group=group.tolist()))

    rng = np.random.default_rng(11)
    region = rng.choice(["north", "south", "east", "west"], N, p=[0.4, 0.3, 0.2, 0.1])
    label, pred = _binary(rng, N, np.isin(region, ["south", "west"]), 0.3, 0.3)
    group = rng.choice(["a", "b", "c", "d"], N)
    out.append(dict(name="multicategory_facet", facet=region.tolist(), facet_kind="categorical",
                    facet_values=["south", "west"], label=label.tolist(), pred=pred.tolist(),
                    group=group.tolist()))
    out.append(dict(name="multicategory_one_vs_all", facet=region.tolist(),
                    facet_kind="categorical", facet_values=None, label=label.tolist(),
                    pred=pred.tolist(), group=group.tolist()))

    rng = np.random.default_rng(13)
    age = np.round(rng.uniform(18, 80, N), 1)
    label, pred = _binary(rng, N, age > 50, 0.4, 0.15)
    group = rng.choice(["x", "y"], N)
    out.append(dict(name="continuous_facet", facet=age.tolist(), facet_kind="continuous",
                    facet_values=[50.0], label=label.tolist(), pred=pred.tolist(),
                    group=group.tolist()))

    # a facet value nobody has: smclarify refuses the metrics that need the group
    out.append(dict(name="empty_group", facet=region.tolist(), facet_kind="categorical",
                    facet_values=["nowhere"], label=out[2]["label"], pred=out[2]["pred"],
                    group=out[2]["group"]))

    # a group whose labels and predictions are all positive: one-sided distributions,
    # infinite conditional-rejection ratios
    rng = np.random.default_rng(17)
    team = rng.choice(["red", "blue", "green"], N, p=[0.2, 0.5, 0.3])
    label = (rng.random(N) < 0.5).astype(int)
    pred = np.where(rng.random(N) < 0.25, 1 - label, label)
    label[team == "red"] = 1
    pred[team == "red"] = 1
    group = rng.choice(["p", "q", "r"], N)
    group[:5] = "s"  # a small stratum of the group variable
    out.append(dict(name="single_class_group", facet=team.tolist(), facet_kind="categorical",
                    facet_values=["red"], label=label.tolist(), pred=pred.tolist(),
                    group=group.tolist()))
    out.append(dict(name="single_class_one_vs_all", facet=team.tolist(),
                    facet_kind="categorical", facet_values=None, label=label.tolist(),
                    pred=pred.tolist(), group=group.tolist()))

    # groups the model always accepts (blue) or always rejects (green), labels mixed: infinite
    # conditional ratios (DCR, DCA, TE) and one-sided predictions
    rng = np.random.default_rng(19)
    shade = rng.choice(["blue", "green", "grey"], N, p=[0.25, 0.25, 0.5])
    label = (rng.random(N) < 0.5).astype(int)
    pred = np.where(rng.random(N) < 0.2, 1 - label, label)
    pred[shade == "blue"] = 1
    pred[shade == "green"] = 0
    group = rng.choice(["u", "v"], N)
    out.append(dict(name="infinite_ratios", facet=shade.tolist(), facet_kind="categorical",
                    facet_values=None, label=label.tolist(), pred=pred.tolist(),
                    group=group.tolist()))
    return out


def reference(ds: dict) -> dict:
    facet = pd.Series(ds["facet"], name="facet")
    if ds["facet_kind"] == "categorical":
        facet = facet.astype("category")
    df = pd.DataFrame({"facet": facet, "label": ds["label"], "pred": ds["pred"]})
    label = report.LabelColumn("label", df["label"].astype("category"), [1])
    pred = report.LabelColumn("pred", df["pred"].astype("category"), [1])
    group = pd.Series(ds["group"], name="group")
    facet_col = report.FacetColumn("facet", ds["facet_values"])
    pre = report.bias_report(df, facet_col, label, report.StageType.PRE_TRAINING,
                             group_variable=group)
    post = report.bias_report(df, facet_col, label, report.StageType.POST_TRAINING, pred,
                              group_variable=group)
    post = [{**f, "metrics": [m for m in f["metrics"] if m["name"] != "FT"]} for f in post]
    return {"pre_training": pre, "post_training": post}


def main() -> None:
    import importlib.metadata

    data = datasets()
    for ds in data:
        ds["reference"] = reference(ds)
    doc = {
        "generator": "tests/data/clarify/make_reference.py",
        "smclarify": importlib.metadata.version("smclarify"),
        "pandas": pd.__version__,
        "note": "FT (flip test) is left out: it needs the model's features, out of captureq's scope",
        "datasets": data,
    }
    path = Path(__file__).with_name("reference.json")
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path} ({len(data)} datasets)")


if __name__ == "__main__":
    main()
