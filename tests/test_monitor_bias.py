"""Bias metrics and bias drift: captureq's values held against AWS's smclarify, the files held
against Clarify's and Model Monitor's shapes, and drift found on capture trees with a planted
shift (and none on a stationary stream)."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import captureq
from captureq.cli import app
from captureq.errors import ConfigError
from captureq.monitor.bias import (
    CLOUDWATCH_INFINITY,
    METRICS,
    BiasConfig,
    bias,
    metrics_of,
)
from trees import capture, label, write_captures, write_labels

DATA = Path(__file__).parent / "data"
REFERENCE = json.loads((DATA / "clarify" / "reference.json").read_text())
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _value(v):
    if v is None:
        return math.nan
    if isinstance(v, str):
        return float(v.replace("Infinity", "inf"))
    return float(v)


def _same(got: float, want: float) -> bool:
    if math.isnan(want):
        return math.isnan(got)
    if math.isinf(want):
        return got == want
    return got == pytest.approx(want, rel=1e-9, abs=1e-12)


def _table(ds: dict) -> pa.Table:
    n = len(ds["label"])
    return pa.table({
        "endpoint": ["ep"] * n,
        "inference_time": pa.array([START + timedelta(seconds=i) for i in range(n)],
                                   pa.timestamp("us", tz="UTC")),
        "facet": ds["facet"],
        "grp": ds["group"],
        "output_label": pa.array(ds["pred"], pa.float64()),
        "ground_truth_value": pa.array(ds["label"], pa.float64()),
    })


def _config(ds: dict, facet_values=...) -> dict:
    values = ds["facet_values"] if facet_values is ... else facet_values
    facet = {"name_or_index": "facet"}
    if values is not None:
        facet["value_or_threshold"] = values
    return {"label": "label", "label_values_or_threshold": [1], "facet": [facet],
            "group_variable": "grp"}


CASES = [(ds["name"], stage) for ds in REFERENCE["datasets"]
         for stage in ("pre_training", "post_training")]


@pytest.mark.parametrize("name,stage", CASES)
def test_every_metric_matches_smclarify(name, stage):
    ds = next(d for d in REFERENCE["datasets"] if d["name"] == name)
    result = bias(_table(ds), _config(ds), prediction="output_label")
    section = result.analysis[f"{stage}_bias_metrics"]
    got = {e["value_or_threshold"]: e for e in section["facets"]["facet"]}
    want = ds["reference"][stage]
    assert sorted(got) == sorted(str(e["value_or_threshold"]) for e in want)
    checked = 0
    for entry in want:
        mine = {m["name"]: m for m in got[str(entry["value_or_threshold"])]["metrics"]}
        assert [m["name"] for m in entry["metrics"]] == list(mine)  # Clarify's order: by name
        for m in entry["metrics"]:
            ours = mine[m["name"]]
            assert ours["description"] == m["description"]
            assert _same(_value(ours["value"]), _value(m["value"])), (
                entry["value_or_threshold"], m["name"], ours["value"], m["value"])
            assert ("error" in ours) == (m["value"] is None)
            checked += 1
    assert checked >= 8


def test_reference_covers_infinities_and_refusals():
    values = [m["value"] for ds in REFERENCE["datasets"] for st_ in ds["reference"].values()
              for f in st_ for m in f["metrics"]]
    assert "Infinity" in values and "-Infinity" in values and None in values


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(0, 1),
                          st.integers(0, 1)), min_size=1, max_size=40))
def test_metrics_match_the_slow_definitions(rows):
    """Counting once per split equals the record-by-record definitions (the oracle)."""
    arr = np.array(rows)
    facet, y, p, g = arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]
    got = metrics_of(facet, [1], y, p, g)
    want = _slow(facet == 1, y.astype(bool), p.astype(bool), g)
    for name, v in want.items():
        assert _same(got[name], v), (name, got[name], v)


def _slow(d, y, p, g):
    def div(a, b):
        if b == 0:
            return 0.0 if a == 0 else math.copysign(math.inf, a)
        return a / b

    def diff(x, z):
        return 0.0 if x == z == math.inf else x - z

    out = {}
    a = ~d
    na, nd = int(a.sum()), int(d.sum())
    nan = math.nan
    empty = na == 0 or nd == 0

    def cnt(mask):
        return int(mask.sum())

    qa = cnt(a & y) / na if na else nan
    qd = cnt(d & y) / nd if nd else nan
    out["CI"] = nan if empty else (na - nd) / (na + nd)
    out["DPL"] = nan if empty else qa - qd
    pa_, pd_ = [1 - qa, qa], [1 - qd, qd]
    keep = [i for i in range(2) if not empty and pa_[i] > 0 and pd_[i] > 0]
    if keep:
        out["KL"] = sum(pa_[i] * math.log(pa_[i] / pd_[i]) for i in keep)
        m = {i: (pa_[i] + pd_[i]) / 2 for i in keep}
        out["JS"] = 0.5 * sum(pa_[i] * math.log(pa_[i] / m[i]) + pd_[i] * math.log(pd_[i] / m[i])
                              for i in keep)
        out["LP"] = math.sqrt(sum((pa_[i] - pd_[i]) ** 2 for i in keep))
        out["TVD"] = 0.5 * sum(abs(pa_[i] - pd_[i]) for i in keep)
        out["KS"] = max(abs(pa_[i] - pd_[i]) for i in keep)
    else:
        for k in ("KL", "JS", "LP", "TVD", "KS"):
            out[k] = nan
    qah = cnt(a & p) / na if na else nan
    qdh = cnt(d & p) / nd if nd else nan
    out["DPPL"] = nan if empty else qah - qdh
    out["DI"] = nan if empty else div(qdh, qah)

    def q(f):
        tp, fp = cnt(f & y & p), cnt(f & ~y & p)
        fn, tn = cnt(f & y & ~p), cnt(f & ~y & ~p)
        return tp, fp, fn, tn

    tpa, fpa, fna, tna = q(a)
    tpd, fpd, fnd, tnd = q(d)
    post = {
        "DCA": diff(div(tpa + fna, tpa + fpa), div(tpd + fnd, tpd + fpd)),
        "DCR": diff(div(tnd + fpd, tnd + fnd), div(tna + fpa, tna + fna)),
        "RD": diff(div(tpa, tpa + fna), div(tpd, tpd + fnd)),
        "SD": diff(div(tnd, tnd + fpd), div(tna, tna + fpa)),
        "DAR": diff(div(tpa, tpa + fpa), div(tpd, tpd + fpd)),
        "DRR": diff(div(tnd, tnd + fnd), div(tna, tna + fna)),
        "AD": diff(div(tpa + tna, na), div(tpd + tnd, nd)),
        "TE": diff(div(fnd, fpd), div(fna, fpa)),
    }
    out.update({k: nan if empty else v for k, v in post.items()})
    benefit = p.astype(int) - y.astype(int) + 1
    mb = benefit.mean()
    out["GE"] = nan if mb == 0 else float(((benefit / mb) ** 2 - 1).sum() / (len(y) * 2))

    def cdd(outcome):
        if outcome.all() or (~outcome).all():
            return nan
        total, acc = 0, 0.0
        for grp in np.unique(g):
            in_g = g == grp
            A = div(cnt(outcome & d & in_g), cnt(outcome & in_g))
            D = div(cnt(~outcome & d & in_g), cnt(~outcome & in_g))
            acc += cnt(in_g) * (D - A)
            total += cnt(in_g)
        return div(acc, total)

    out["CDDL"], out["CDDPL"] = cdd(y), cdd(p)
    assert set(out) == set(METRICS)
    return out
