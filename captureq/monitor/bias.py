"""Bias metrics of captured traffic, as SageMaker Clarify defines them, and bias drift checks.

Clarify's analysis configuration names a label (``label``, ``label_values_or_threshold``), the
facets (``facet: [{name_or_index, value_or_threshold}]``), an optional ``group_variable`` (for
the conditional demographic disparities) and ``probability_threshold``. Each facet value splits
the records into the *disadvantaged* group ``d`` (the facet's value(s), or above its threshold)
and the rest ``a``. Every metric is a function of a few counts, so the records are counted once
(one ``numpy.bincount`` per facet over window × facet value × group × label × prediction) and
the metrics are computed on the count arrays for all windows and facet values at once.

Definitions follow AWS's ``smclarify`` (the library behind Clarify's processing jobs), edge cases
included: ``x / 0`` is ±infinity and ``0 / 0`` is 0 in the conditional ratios, two infinite
ratios differ by 0, and a metric Clarify refuses (an empty group, no common label value) is NaN
here and ``{"value": null, "error": …}`` in ``analysis.json``. The tests hold every metric
against smclarify's values on seeded datasets (``tests/data/clarify``).

>>> import numpy as np
>>> facet = np.array(["f", "f", "m", "m"]); y = np.array([1, 0, 1, 1]); p = np.array([1, 0, 1, 0])
>>> m = metrics_of(facet, ["f"], y, p)
>>> round(m["DPPL"], 3), round(m["CI"], 3)
(0.0, 0.0)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError

PRE_TRAINING = "pre_training"
POST_TRAINING = "post_training"
# short name -> (stage, Clarify's description)
METRICS: dict[str, tuple[str, str]] = {
    "CDDL": (PRE_TRAINING, "Conditional Demographic Disparity in Labels (CDDL)"),
    "CI": (PRE_TRAINING, "Class Imbalance (CI)"),
    "DPL": (PRE_TRAINING, "Difference in Positive Proportions in Labels (DPL)"),
    "JS": (PRE_TRAINING, "Jensen-Shannon Divergence (JS)"),
    "KL": (PRE_TRAINING, "Kullback-Liebler Divergence (KL)"),
    "KS": (PRE_TRAINING, "Kolmogorov-Smirnov Distance (KS)"),
    "LP": (PRE_TRAINING, "L-p Norm (LP)"),
    "TVD": (PRE_TRAINING, "Total Variation Distance (TVD)"),
    "AD": (POST_TRAINING, "Accuracy Difference (AD)"),
    "CDDPL": (POST_TRAINING, "Conditional Demographic Disparity in Predicted Labels (CDDPL)"),
    "DAR": (POST_TRAINING, "Difference in Acceptance Rates (DAR)"),
    "DCA": (POST_TRAINING, "Difference in Conditional Acceptance (DCA)"),
    "DCR": (POST_TRAINING, "Difference in Conditional Rejection (DCR)"),
    "DI": (POST_TRAINING, "Disparate Impact (DI)"),
    "DPPL": (POST_TRAINING, "Difference in Positive Proportions in Predicted Labels (DPPL)"),
    "DRR": (POST_TRAINING, "Difference in Rejection Rates (DRR)"),
    "GE": (POST_TRAINING, "Generalized Entropy (GE)"),
    "RD": (POST_TRAINING, "Recall Difference (RD)"),
    "SD": (POST_TRAINING, "Specificity Difference (SD)"),
    "TE": (POST_TRAINING, "Treatment Equality (TE)"),
}
# metrics that read only the prediction: computed over every captured record, labelled or not
PREDICTION_ONLY = ("DPPL", "DI", "CDDPL")
CLOUDWATCH_INFINITY = 2.348543e108  # what Clarify publishes for ±infinity
NAMESPACE = "aws/sagemaker/Endpoints/bias-metrics"
MIN_GROUP = 30
TOLERANCE = 0.1
ALPHA = 0.001
BOOTSTRAP = 1000
UNLABELLED = 2  # label state of a record without ground truth (cells: label 0, 1, unlabelled)
NO_PREDICTION = 2


# ---------------------------------------------------------------------------------------------
# The analysis configuration
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Facet:
    name_or_index: str | int
    value_or_threshold: tuple | None = None

    @property
    def name(self) -> str:
        return str(self.name_or_index)


@dataclass(frozen=True)
class BiasConfig:
    """Clarify's analysis configuration: the parts bias metrics read."""

    label: str
    label_values_or_threshold: tuple
    facets: tuple[Facet, ...]
    headers: tuple[str, ...] | None = None
    group_variable: str | int | None = None
    probability_threshold: float = 0.5

    @classmethod
    def load(cls, config: str | Path | dict) -> BiasConfig:
        """From a dict or an ``analysis_config.json`` path."""
        where = "the analysis configuration"
        if not isinstance(config, dict):
            where = str(config)
            try:
                config = json.loads(Path(config).read_text())
            except FileNotFoundError:
                raise ConfigError(f"no analysis configuration at {where}: pass --config "
                                  "analysis_config.json (Clarify's analysis configuration)") from None
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{where} is not JSON ({exc})") from None
        facets = config.get("facet")
        if not facets or not isinstance(facets, list):
            raise ConfigError(
                f"{where} has no 'facet' list: add \"facet\": [{{\"name_or_index\": \"sex\", "
                "\"value_or_threshold\": [1]}]"
            )
        label_values = config.get("label_values_or_threshold")
        if label_values is None:
            raise ConfigError(
                f"{where} has no 'label_values_or_threshold': add the positive label value(s), "
                "e.g. \"label_values_or_threshold\": [1]"
            )
        if not isinstance(label_values, list):
            label_values = [label_values]
        out = []
        for f in facets:
            if "name_or_index" not in f:
                raise ConfigError(f"{where}: every facet needs 'name_or_index', got {f}")
            v = f.get("value_or_threshold")
            if v is not None and not isinstance(v, list):
                v = [v]
            out.append(Facet(f["name_or_index"], tuple(v) if v else None))
        headers = config.get("headers")
        return cls(
            label=str(config.get("label", "label")),
            label_values_or_threshold=tuple(label_values),
            facets=tuple(out),
            headers=tuple(headers) if headers else None,
            group_variable=config.get("group_variable"),
            probability_threshold=float(config.get("probability_threshold", 0.5)),
        )


# ---------------------------------------------------------------------------------------------
# Metrics on count arrays: C[..., g, f, y, p], f 0 = a / 1 = d, y and p 0/1/missing
# ---------------------------------------------------------------------------------------------
def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """smclarify's ``divide``: 0/0 is 0, x/0 is ±infinity."""
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        q = a / np.where(b == 0, 1.0, b)
    return np.where(b == 0, np.where(a == 0, 0.0, np.copysign(np.inf, a)), q)


def _diff(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``x - y``, 0 when both are +infinity (smclarify's rule for two infinite ratios)."""
    with np.errstate(invalid="ignore"):
        d = x - y
    return np.where((x == np.inf) & (y == np.inf), 0.0, d)


def _nan_unless(ok: np.ndarray, value: np.ndarray) -> np.ndarray:
    return np.where(ok, value, np.nan)


def _cdd(counts: np.ndarray) -> np.ndarray:
    """Conditional demographic disparity from ``counts[..., g, f, outcome]`` (outcome 0/1)."""
    pos = counts[..., 1].sum(-1)  # per group: positive outcomes (both facets)
    neg = counts[..., 0].sum(-1)
    a_share = _div(counts[..., 1, 1], pos)  # share of the group's positives in d
    d_share = _div(counts[..., 1, 0], neg)
    n_g = counts.sum((-1, -2))
    cdd = _div((n_g * (d_share - a_share)).sum(-1), n_g.sum(-1))
    ok = (pos.sum(-1) > 0) & (neg.sum(-1) > 0)
    return _nan_unless(ok, cdd)


def metrics_from_counts(c: np.ndarray, grouped: bool = True) -> dict[str, np.ndarray]:
    """Every metric from counts ``c[..., g, f, y, p]`` (shape ``(..., G, 2, 3, 3)``)."""
    c = np.asarray(c, dtype="float64")
    t = c.sum(-4)  # over groups: (..., 2, 3, 3)
    lab = t[..., :2, :2]  # labelled records with a prediction: (..., f, y, p)
    tn, fp = lab[..., 0, 0], lab[..., 0, 1]
    fn, tp = lab[..., 1, 0], lab[..., 1, 1]
    n_lab = lab.sum((-1, -2))
    lab_ok = (n_lab[..., 0] > 0) & (n_lab[..., 1] > 0)
    pred = t[..., :, :2].sum(-2)  # every record with a prediction: (..., f, p)
    n_pred = pred.sum(-1)
    pred_ok = (n_pred[..., 0] > 0) & (n_pred[..., 1] > 0)
    y = t[..., :2, :].sum(-1)  # every labelled record: (..., f, y)
    n_y = y.sum(-1)
    y_ok = (n_y[..., 0] > 0) & (n_y[..., 1] > 0)
    a, d = 0, 1
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        # pre-training, on labelled records
        out["CI"] = _nan_unless(y_ok, (n_y[..., a] - n_y[..., d]) / (n_y[..., a] + n_y[..., d]))
        qa, qd = y[..., a, 1] / n_y[..., a], y[..., d, 1] / n_y[..., d]
        out["DPL"] = _nan_unless(y_ok, qa - qd)
        pa_ = np.stack([1 - qa, qa], -1)
        pd_ = np.stack([1 - qd, qd], -1)
        common = (pa_ > 0) & (pd_ > 0)  # smclarify keeps the label values both groups have
        dist_ok = y_ok & common.any(-1)
        pa0, pd0 = np.where(common, pa_, 0.0), np.where(common, pd_, 0.0)
        m = (pa0 + pd0) / 2
        kl = np.where(common, pa_ * np.log(pa_ / pd_), 0.0).sum(-1)
        js = 0.5 * (
            np.where(common, pa_ * np.log(pa_ / m), 0.0).sum(-1)
            + np.where(common, pd_ * np.log(pd_ / m), 0.0).sum(-1)
        )
        out["KL"] = _nan_unless(dist_ok, kl)
        out["JS"] = _nan_unless(dist_ok, js)
        out["LP"] = _nan_unless(dist_ok, np.sqrt(((pa0 - pd0) ** 2).sum(-1)))
        out["TVD"] = _nan_unless(dist_ok, 0.5 * np.abs(pa0 - pd0).sum(-1))
        out["KS"] = _nan_unless(dist_ok, np.abs(pa0 - pd0).max(-1))
        # post-training
        qa_hat, qd_hat = pred[..., a, 1] / n_pred[..., a], pred[..., d, 1] / n_pred[..., d]
        out["DPPL"] = _nan_unless(pred_ok, qa_hat - qd_hat)
        out["DI"] = _nan_unless(pred_ok, _div(qd_hat, qa_hat))
        ca, cd = _div(tp[..., a] + fn[..., a], tp[..., a] + fp[..., a]), _div(
            tp[..., d] + fn[..., d], tp[..., d] + fp[..., d])
        out["DCA"] = _nan_unless(lab_ok, _diff(ca, cd))
        ra, rd_ = _div(tn[..., a] + fp[..., a], tn[..., a] + fn[..., a]), _div(
            tn[..., d] + fp[..., d], tn[..., d] + fn[..., d])
        out["DCR"] = _nan_unless(lab_ok, _diff(rd_, ra))
        rec_a, rec_d = _div(tp[..., a], tp[..., a] + fn[..., a]), _div(tp[..., d], tp[..., d] + fn[..., d])
        out["RD"] = _nan_unless(lab_ok, _diff(rec_a, rec_d))
        sp_a, sp_d = _div(tn[..., a], tn[..., a] + fp[..., a]), _div(tn[..., d], tn[..., d] + fp[..., d])
        out["SD"] = _nan_unless(lab_ok, _diff(sp_d, sp_a))
        ar_a, ar_d = _div(tp[..., a], tp[..., a] + fp[..., a]), _div(tp[..., d], tp[..., d] + fp[..., d])
        out["DAR"] = _nan_unless(lab_ok, _diff(ar_a, ar_d))
        rr_a, rr_d = _div(tn[..., a], tn[..., a] + fn[..., a]), _div(tn[..., d], tn[..., d] + fn[..., d])
        out["DRR"] = _nan_unless(lab_ok, _diff(rr_d, rr_a))
        acc_a, acc_d = _div(tp[..., a] + tn[..., a], n_lab[..., a]), _div(tp[..., d] + tn[..., d], n_lab[..., d])
        out["AD"] = _nan_unless(lab_ok, _diff(acc_a, acc_d))
        tau_a, tau_d = _div(fn[..., a], fp[..., a]), _div(fn[..., d], fp[..., d])
        out["TE"] = _nan_unless(lab_ok, _diff(tau_d, tau_a))
        # generalized entropy (alpha 2) of the benefit b = prediction - label + 1, over everyone
        n = n_lab.sum(-1)
        b1 = (tp + tn + 2 * fp).sum(-1)
        b2 = (tp + tn + 4 * fp).sum(-1)
        mean_b = b1 / n
        ge = ((b2 / n) / mean_b**2 - 1) / 2
        out["GE"] = _nan_unless((n > 0) & (b1 > 0), ge)
        # conditional demographic disparities, per group of group_variable
        if grouped:
            yc = c[..., :, :, :2, :].sum(-1)  # (..., g, f, y) labelled
            pc_ = c[..., :, :, :, :2].sum(-2)  # (..., g, f, p) predicted
            out["CDDL"] = _cdd(yc)
            out["CDDPL"] = _cdd(pc_)
        else:
            out["CDDL"] = np.full(out["CI"].shape, np.nan)
            out["CDDPL"] = np.full(out["CI"].shape, np.nan)
    return out


def group_sizes(c: np.ndarray) -> dict[str, np.ndarray]:
    """Records behind each metric: the smaller of d and a (labelled, or predicted for DPPL/DI)."""
    t = np.asarray(c).sum(-4)
    lab = t[..., :2, :2].sum((-1, -2)).min(-1)
    pred = t[..., :, :2].sum((-1, -2)).min(-1)
    y = t[..., :2, :].sum((-1, -2)).min(-1)
    n_lab = t[..., :2, :2].sum((-1, -2, -3))
    out = {}
    for name, (stage, _) in METRICS.items():
        if name in PREDICTION_ONLY:
            out[name] = pred
        elif name == "GE":
            out[name] = n_lab
        elif stage == PRE_TRAINING:
            out[name] = y
        else:
            out[name] = lab
    return out


def distance(name: str, value: np.ndarray) -> np.ndarray:
    """How far a value is from its metric's ideal: ``|ln DI|`` for DI (ideal 1), else ``|v|``."""
    v = np.asarray(value, dtype="float64")
    if name == "DI":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs(np.log(v))
    return np.abs(v)


def _cells(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return y.astype("int64") * 3 + p.astype("int64")


def count_cells(
    window: np.ndarray, n_windows: int, member: np.ndarray, k: int, group: np.ndarray, g: int,
    y: np.ndarray, p: np.ndarray,
) -> np.ndarray:
    """Counts ``(W, K, G, 2, 3, 3)``: ``member`` is each record's facet-value code (−1: none)
    for one-vs-rest splits; d counts come from one bincount, a = all − d."""
    cell = (group.astype("int64") * 9) + _cells(y, p)
    total = np.bincount(window * (g * 9) + cell, minlength=n_windows * g * 9).reshape(
        n_windows, 1, g, 3, 3)
    inside = member >= 0
    key = (window[inside] * k + member[inside]) * (g * 9) + cell[inside]
    d = np.bincount(key, minlength=n_windows * k * g * 9).reshape(n_windows, k, g, 3, 3)
    return np.stack([total - d, d], axis=-3)


def metrics_of(
    facet: np.ndarray, values: list | None, label: np.ndarray, pred: np.ndarray,
    group: np.ndarray | None = None,
) -> dict[str, float]:
    """Metrics of one split (facet value(s) ``values``) of 0/1 ``label`` and ``pred`` arrays."""
    d = np.isin(facet, values)
    g_codes, g = (np.unique(group, return_inverse=True)[1], len(np.unique(group))) if (
        group is not None) else (np.zeros(len(facet), "int64"), 1)
    c = count_cells(np.zeros(len(facet), "int64"), 1, np.where(d, 0, -1), 1, g_codes, g,
                    np.asarray(label), np.asarray(pred))
    return {k: float(v[0, 0]) for k, v in metrics_from_counts(c, group is not None).items()}


# ---------------------------------------------------------------------------------------------
# From the predictions view
# ---------------------------------------------------------------------------------------------
def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _numeric(arr: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """Floats of a column, or None when it is text that is not all numbers."""
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        try:
            arr = pc.cast(arr, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
    if pa.types.is_boolean(arr.type):
        arr = pc.cast(arr, pa.int8())
    try:
        return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _member(arr: pa.ChunkedArray, values: tuple) -> np.ndarray:
    """Records whose value is one of ``values`` (numbers compared as numbers)."""
    num = _numeric(arr)
    if num is not None and all(_is_number(v) for v in values):
        return np.isin(num, [float(v) for v in values])
    text = pc.cast(arr, pa.string()).to_numpy(zero_copy_only=False)
    return np.isin(text.astype(str), [str(v) for v in values])


def is_continuous(arr: pa.ChunkedArray, values: tuple | None) -> bool:
    """Clarify's type rule: a facet/label is continuous when it is numeric, one threshold is
    given, and it is not a handful of whole numbers (≥ 5 % distinct, and more than 10 values)."""
    if values is None or len(values) != 1 or not _is_number(values[0]):
        return False
    num = _numeric(arr)
    if num is None:
        return False
    num = num[~np.isnan(num)]
    if not len(num):
        return False
    if (num == np.round(num)).all():
        distinct = len(np.unique(num))
        return distinct > 10 and distinct / len(num) >= 0.05
    return True


def _column(table: pa.Table, name_or_index: str | int, headers: tuple | None, label: str,
            what: str) -> str:
    cols = table.column_names
    inputs = [c for c in cols if c.startswith("_c") or not (
        c.startswith("output_") or c in _NOT_INPUTS)]
    if isinstance(name_or_index, int) or (isinstance(name_or_index, str)
                                          and name_or_index.isdigit() and name_or_index not in cols):
        name = f"_c{int(name_or_index)}"
        if name in cols:
            return name
    elif name_or_index in cols:
        return str(name_or_index)
    elif headers and name_or_index in headers:
        features = [h for h in headers if h != label]
        if name_or_index in features:
            name = f"_c{features.index(name_or_index)}"
            if name in cols:
                return name
    raise ConfigError(
        f"{what} {name_or_index!r} is not a captured input: the inputs are {inputs}; name one, "
        "give its position (0 is _c0), or list the CSV columns' names in 'headers'"
    )


_NOT_INPUTS = {
    "capture_id", "record_index", "endpoint", "variant", "event_id", "inference_id",
    "inference_time", "ground_truth", "ground_truth_value", "label_hour",
}


@dataclass
class _Prepared:
    window: np.ndarray
    starts: list
    y: np.ndarray
    p: np.ndarray
    group: np.ndarray
    n_groups: int
    label_text: str


def _prepare(table: pa.Table, config: BiasConfig, prediction: str | None,
             probability: str | None, every: str | None) -> _Prepared:
    from .quality import pick_prediction

    n = table.num_rows
    # label: y 0/1, or 2 without ground truth
    if "ground_truth_value" in table.column_names and table["ground_truth_value"].null_count < n:
        truth = table["ground_truth_value"]
    elif "ground_truth" in table.column_names:
        truth = table["ground_truth"]
    else:
        truth = pa.chunked_array([pa.nulls(n, pa.float64())])
    has_label = pc.is_valid(truth).to_numpy(zero_copy_only=False)
    values = config.label_values_or_threshold
    if is_continuous(truth, values):
        num = _numeric(truth)
        pos_label = np.nan_to_num(num, nan=-np.inf) > float(values[0])
        label_text = f"({values[0]}, inf]"
    else:
        pos_label = _member(truth, values)
        label_text = ",".join(map(str, values))
    y = np.where(has_label, pos_label.astype("int64"), UNLABELLED)

    # prediction: a predicted label, or a probability cut at probability_threshold
    if prediction and probability:
        raise ConfigError("pass --prediction (a predicted label) or --probability (a score), "
                          "not both")
    column = probability or pick_prediction(table, prediction)
    pred = table[column]
    has_pred = pc.is_valid(pred).to_numpy(zero_copy_only=False)
    num = _numeric(pred)
    scores = probability is not None or (
        prediction is None and num is not None and len(num[has_pred])
        and (num[has_pred] >= 0).all() and (num[has_pred] <= 1).all()
        and not np.isin(num[has_pred], (0.0, 1.0)).all()
    )
    if scores:
        if num is None:
            raise ConfigError(f"--probability column {column!r} is not numeric")
        pos_pred = np.nan_to_num(num, nan=-np.inf) > config.probability_threshold
    elif is_continuous(truth, values):
        pos_pred = np.nan_to_num(num, nan=-np.inf) > float(values[0])
    else:
        pos_pred = _member(pred, values)
    p = np.where(has_pred, pos_pred.astype("int64"), NO_PREDICTION)

    if config.group_variable is not None:
        col = _column(table, config.group_variable, config.headers, config.label,
                      "group_variable")
        enc = pc.dictionary_encode(pc.cast(table[col], pa.string())).combine_chunks()
        idx = pc.fill_null(enc.indices, len(enc.dictionary)).to_numpy(zero_copy_only=False)
        group, n_groups = idx.astype("int64"), len(enc.dictionary) + 1
    else:
        group, n_groups = np.zeros(n, "int64"), 1

    if every is None or n == 0:
        window = np.zeros(n, "int64")
        starts = [pc.min(pc.floor_temporal(table["inference_time"], unit="hour")).as_py()
                  if n else None]
    else:
        if every not in ("hour", "day"):
            raise ConfigError(f"--every must be hour or day, got {every!r}")
        floored = pc.floor_temporal(table["inference_time"], unit=every)
        enc = pc.dictionary_encode(floored).combine_chunks()
        order = pc.array_sort_indices(enc.dictionary).to_numpy(zero_copy_only=False)
        rank = np.empty(len(order), "int64")
        rank[order] = np.arange(len(order))
        window = rank[enc.indices.to_numpy(zero_copy_only=False)]
        starts = enc.dictionary.take(pa.array(order)).to_pylist()
    return _Prepared(window, starts, y, p, group, n_groups, label_text)


@dataclass
class _FacetSplit:
    facet: str
    keys: list[str]  # value_or_threshold of each split, as Clarify writes it
    member: np.ndarray  # per record: the split it is in (d), or -1
    continuous: bool
    threshold: float | None = None


def _facet_splits(table: pa.Table, facet: Facet, config: BiasConfig,
                  continuous: bool | None) -> _FacetSplit:
    col = _column(table, facet.name_or_index, config.headers, config.label, "facet")
    arr = table[col]
    values = facet.value_or_threshold
    if continuous is None:
        continuous = is_continuous(arr, values)
    if continuous:
        if not values or not _is_number(values[0]):
            raise ConfigError(f"facet {facet.name!r} is continuous: give one numeric threshold")
        num = _numeric(arr)
        t = float(values[0])
        finite = num[~np.isnan(num)]
        top = float(finite.max()) if len(finite) else t
        member = np.where(np.nan_to_num(num, nan=-np.inf) > t, 0, -1)
        return _FacetSplit(facet.name, [f"({_num(t)}, {_num(top)}]"], member, True, t)
    if values:
        member = np.where(_member(arr, values), 0, -1)
        return _FacetSplit(facet.name, [",".join(map(str, values))], member, False)
    text = pc.cast(arr, pa.string())
    enc = pc.dictionary_encode(text).combine_chunks()
    idx = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype("int64")
    return _FacetSplit(facet.name, [str(v) for v in enc.dictionary.to_pylist()], idx, False)


def _num(x: float) -> str:
    return repr(float(x))


def split_key(facet_value: str) -> str:
    """The value a baseline entry is matched on: a continuous facet's ``(t, max]`` by ``t``."""
    if facet_value.startswith("(") and "," in facet_value:
        return "> " + facet_value[1:].split(",")[0].strip()
    return facet_value


# ---------------------------------------------------------------------------------------------
# Results and files
# ---------------------------------------------------------------------------------------------
METRIC_SCHEMA = pa.schema([
    ("window_start", pa.timestamp("us", tz="UTC")),
    ("granularity", pa.string()),
    ("stage", pa.string()),
    ("facet", pa.string()),
    ("facet_value", pa.string()),
    ("metric_name", pa.string()),
    ("value", pa.float64()),
    ("group_size", pa.int64()),
    ("baseline", pa.float64()),
    ("lower_distance", pa.float64()),
    ("violation", pa.bool_()),
])


@dataclass
class BiasResult:
    """Clarify's ``analysis.json`` for the whole window (``analysis``) and for each hour/day
    (``windows``); with a baseline, ``constraint_violations`` (whole window) and ``hourly``
    (per window) in Model Monitor's bias-drift form; ``metrics`` every value as a row;
    ``cloudwatch`` the PutMetricData requests Model Monitor would send (one per window)."""

    analysis: dict
    windows: dict[str, dict] = field(default_factory=dict)
    constraint_violations: dict | None = None
    hourly: dict[str, dict] = field(default_factory=dict)
    metrics: pa.Table = field(default_factory=METRIC_SCHEMA.empty_table)
    cloudwatch: list[dict] = field(default_factory=list)

    @property
    def violations(self) -> list[dict]:
        """Every violation of every window (and of the whole window), with its window."""
        found = [{"window": "window", **v} for v in
                 (self.constraint_violations or {}).get("violations", [])]
        for w, doc in self.hourly.items():
            found += [{"window": w, **v} for v in doc.get("violations", [])]
        return found

    def write(self, out: str | Path, metrics_dir: str | Path | None = None) -> Path:
        """analysis.json, constraint_violations.json (with a baseline), bias_metrics.parquet and
        ``hourly/<window>/`` with each window's files; ``metrics_dir`` gets
        ``cloudwatch_metrics.jsonl`` (one PutMetricData request a line)."""
        import pyarrow.parquet as pq

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        _dump(out / "analysis.json", self.analysis)
        if self.constraint_violations is not None:
            _dump(out / "constraint_violations.json", self.constraint_violations)
        for w, doc in self.windows.items():
            d = out / "hourly" / w
            d.mkdir(parents=True, exist_ok=True)
            _dump(d / "analysis.json", doc)
            if w in self.hourly:
                _dump(d / "constraint_violations.json", self.hourly[w])
        pq.write_table(self.metrics, out / "bias_metrics.parquet")
        if metrics_dir is not None:
            m = Path(metrics_dir)
            m.mkdir(parents=True, exist_ok=True)
            (m / "cloudwatch_metrics.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in self.cloudwatch))
        return out


def _json_value(v: float) -> Any:
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return float(v)


def _dump(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=2) + "\n")


def _error(name: str) -> str:
    if name in ("CDDL", "CDDPL"):
        return ("needs a group_variable and both outcomes in the data")
    if name in ("KL", "JS", "LP", "TVD", "KS"):
        return "no label value common to the facet's group and the rest (or a group is empty)"
    if name == "GE":
        return "no labelled predictions, or every prediction is a false negative"
    return "the facet's group or the rest is empty"


def _analysis(label: str, label_text: str, stage_facets: dict[str, dict[str, list]]) -> dict:
    doc: dict[str, Any] = {"version": "1.0"}
    for stage in (PRE_TRAINING, POST_TRAINING):
        doc[f"{stage}_bias_metrics"] = {
            "label": label,
            "label_value_or_threshold": label_text,
            "facets": stage_facets[stage],
        }
    return doc


def load_analysis(path: str | Path) -> dict:
    """A Clarify ``analysis.json`` (a file, or a folder that holds one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "analysis.json"
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no analysis.json at {path}: pass --baseline OUT/analysis.json, the "
                          "file `captureq bias baseline` (or a Clarify job) wrote") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p} is not JSON ({exc})") from None
    if not any(f"{s}_bias_metrics" in doc for s in (PRE_TRAINING, POST_TRAINING)):
        raise ConfigError(f"{p} has neither pre_training_bias_metrics nor "
                          "post_training_bias_metrics: is it a Clarify analysis.json?")
    return doc


def _baseline_values(doc: dict) -> dict[tuple[str, str, str], float]:
    """(facet, split key, metric) -> value from an analysis.json."""
    out = {}
    for stage in (PRE_TRAINING, POST_TRAINING):
        section = doc.get(f"{stage}_bias_metrics") or {}
        for facet, entries in (section.get("facets") or {}).items():
            for e in entries:
                key = split_key(str(e.get("value_or_threshold")))
                for m in e.get("metrics", []):
                    v = m.get("value")
                    if isinstance(v, str):
                        v = float(v.replace("Infinity", "inf"))
                    out[(facet, key, m["name"])] = np.nan if v is None else float(v)
    return out


def _continuous_facets(doc: dict) -> dict[str, bool]:
    out = {}
    for stage in (PRE_TRAINING, POST_TRAINING):
        for facet, entries in ((doc.get(f"{stage}_bias_metrics") or {}).get("facets") or {}).items():
            out[facet] = any(str(e.get("value_or_threshold", "")).startswith("(") for e in entries)
    return out


def bias(
    source: Any,
    config: BiasConfig | dict | str | Path,
    *,
    baseline: dict | str | Path | None = None,
    every: str | None = None,
    prediction: str | None = None,
    probability: str | None = None,
    endpoint: str | None = None,
    start: Any = None,
    end: Any = None,
    tolerance: float = TOLERANCE,
    min_group: int = MIN_GROUP,
    alpha: float = ALPHA,
    schedule: str = "captureq",
    seed: int = 0,
) -> BiasResult:
    """Clarify's bias metrics of the captured predictions and their ground truth.

    ``source`` is a :class:`~captureq.CaptureTree` opened with ``labels=`` (or an Arrow table
    shaped like the ``predictions`` view); ``config`` Clarify's analysis configuration.
    ``every`` (``"hour"``/``"day"``) also computes each window. With ``baseline`` (an
    ``analysis.json``), a metric of a window is a violation when its distance from the ideal
    (``|v|``; ``|ln DI|``) is, even at its lower ``alpha`` bound (a seeded Bayesian bootstrap of
    the window's counts), above the baseline's distance plus ``tolerance``; a split with fewer than
    ``min_group`` records in the facet's group or in the rest gets no verdict.
    """
    from ..plan import ScanPlan as CaptureTree

    if not isinstance(config, BiasConfig):
        config = BiasConfig.load(config)
    base_doc = None
    if baseline is not None:
        base_doc = baseline if isinstance(baseline, dict) else load_analysis(baseline)
    if isinstance(source, CaptureTree):
        table = source._narrow({"start": start, "end": end, "endpoint": endpoint}).predictions()
    else:
        table = source
    if "endpoint" in table.column_names and table.num_rows:
        eps = pc.unique(table["endpoint"]).to_pylist()
        if len(eps) > 1:
            raise ConfigError(
                f"the window holds {len(eps)} endpoints ({', '.join(sorted(map(str, eps)))}); "
                "bias is per model: pass endpoint=... (--endpoint)")
    ep = table["endpoint"][0].as_py() if (
        "endpoint" in table.column_names and table.num_rows) else endpoint
    prep = _prepare(table, config, prediction, probability, every)
    continuous = _continuous_facets(base_doc) if base_doc else {}
    base = _baseline_values(base_doc) if base_doc else {}
    grouped = config.group_variable is not None
    rng = np.random.default_rng(seed)

    n_win = len(prep.starts)
    # window index -1 = the whole window, then each hour/day
    labels = ["window"] + ([_win_key(s) for s in prep.starts] if every else [])
    facets_by_win: list[dict[str, dict[str, list]]] = [
        {PRE_TRAINING: {}, POST_TRAINING: {}} for _ in labels]
    violations: list[list[dict]] = [[] for _ in labels]
    rows: list[dict] = []
    for facet in config.facets:
        split = _facet_splits(table, facet, config, continuous.get(facet.name))
        k = len(split.keys)
        whole = count_cells(np.zeros(table.num_rows, "int64"), 1, split.member, k, prep.group,
                            prep.n_groups, prep.y, prep.p)
        parts = [whole]
        if every:
            parts.append(count_cells(prep.window, n_win, split.member, k, prep.group,
                                     prep.n_groups, prep.y, prep.p))
        counts = np.concatenate(parts, axis=0)  # (1 + W, K, G, 2, 3, 3)
        values = metrics_from_counts(counts, grouped)
        sizes = group_sizes(counts)
        lower = _lower_bounds(counts, grouped, alpha, rng) if base_doc else None
        for wi in range(len(labels)):
            for ki, key in enumerate(split.keys):
                skey = split_key(key)
                entries: dict[str, list] = {PRE_TRAINING: [], POST_TRAINING: []}
                for name, (stage, desc) in METRICS.items():
                    v = float(values[name][wi, ki])
                    entry: dict[str, Any] = {"name": name, "description": desc}
                    if math.isnan(v):
                        entry.update(value=None, error=_error(name))
                    else:
                        entry["value"] = _json_value(v)
                    entries[stage].append(entry)
                    b = base.get((split.facet, skey, name), np.nan) if base_doc else np.nan
                    lo = float(lower[name][wi, ki]) if lower is not None else np.nan
                    n_small = int(sizes[name][wi, ki])
                    violated = bool(
                        base_doc is not None and not math.isnan(b) and not math.isnan(lo)
                        and n_small >= min_group
                        and lo > float(distance(name, b)) + tolerance
                    )
                    if violated:
                        violations[wi].append({
                            "facet": split.facet,
                            "facet_value": key if not split.continuous else _base_key(
                                base_doc, split.facet, skey, key),
                            "metric_name": name,
                            "constraint_check_type": "bias_drift_check",
                            "description": _describe(v, b, name, tolerance),
                        })
                    rows.append({
                        "window_start": prep.starts[wi - 1] if wi else prep.starts[0],
                        "granularity": "window" if wi == 0 else every,
                        "stage": stage, "facet": split.facet, "facet_value": key,
                        "metric_name": name, "value": v, "group_size": n_small,
                        "baseline": b, "lower_distance": lo, "violation": violated,
                    })
                for stage in entries:
                    entries[stage].sort(key=lambda e: e["name"])
                    facets_by_win[wi][stage].setdefault(split.facet, []).append(
                        {"value_or_threshold": key, "metrics": entries[stage]})
    docs = [_analysis(config.label, prep.label_text, f) for f in facets_by_win]
    result = BiasResult(analysis=docs[0], windows=dict(zip(labels[1:], docs[1:])))
    if base_doc is not None:
        result.constraint_violations = {"version": "1.0", "violations": violations[0]}
        result.hourly = {w: {"version": "1.0", "violations": v}
                         for w, v in zip(labels[1:], violations[1:])}
    result.metrics = pa.Table.from_pylist(rows, schema=METRIC_SCHEMA)
    result.cloudwatch = cloudwatch_requests(result.metrics, ep, schedule, config.label,
                                            prep.label_text)
    return result


def _base_key(doc: dict, facet: str, skey: str, fallback: str) -> str:
    for stage in (PRE_TRAINING, POST_TRAINING):
        for e in ((doc.get(f"{stage}_bias_metrics") or {}).get("facets") or {}).get(facet, []):
            if split_key(str(e.get("value_or_threshold"))) == skey:
                return str(e["value_or_threshold"])
    return fallback


def _win_key(start: Any) -> str:
    return start.strftime("%Y-%m-%dT%H") if start is not None else "unknown"


def _describe(value: float, baseline: float, name: str, tolerance: float) -> str:
    from .messages import describe

    return describe("bias_drift_check", value=value, baseline=baseline, metric=name,
                    tolerance=tolerance)


def _lower_bounds(counts: np.ndarray, grouped: bool, alpha: float,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The ``alpha`` quantile of each metric's distance under a Bayesian bootstrap of each
    window's counts: cell shares drawn from Dirichlet(counts + ½ per facet × label × prediction
    cell, spread over the groups), times the window's size. The ½ (Jeffreys' prior) keeps a
    cell that happens to be empty in a small window from reading as a certain zero."""
    g = counts.shape[-4]
    seen = counts.sum((0, 1, 2, 3)) > 0  # label/prediction states present at all: (3, 3)
    prior = np.broadcast_to(np.where(seen, 0.5 / g, 0.0), counts.shape[-4:])
    parts: dict[str, list] = {name: [] for name in METRICS}
    step = 32  # windows per batch of draws, to bound memory
    for i in range(0, counts.shape[0], step):
        chunk = counts[i : i + step].astype("float64")
        n = chunk.sum((-1, -2, -3, -4))[..., None, None, None, None]
        shares = rng.standard_gamma(chunk + prior, size=(BOOTSTRAP,) + chunk.shape)
        total = shares.sum((-1, -2, -3, -4), keepdims=True)
        draws = n * shares / np.where(total > 0, total, 1.0)
        values = metrics_from_counts(draws, grouped)
        for name, v in values.items():
            dist = distance(name, v)
            # an undefined draw never lowers the bound
            bound = np.quantile(np.where(np.isnan(dist), np.inf, dist), alpha, axis=0,
                                method="lower")
            parts[name].append(np.where(np.isnan(v).all(0), np.nan, bound))
    return {name: np.concatenate(p, axis=0) for name, p in parts.items()}


def cloudwatch_requests(metrics: pa.Table, endpoint: str | None, schedule: str, label: str,
                        label_value: str) -> list[dict]:
    """PutMetricData requests, one per hour/day window (or one for the whole window when there
    are none): ``bias_metric_<SHORT>`` per facet value and stage, ±infinity as ±2.348543e108
    (as Clarify publishes it), NaN left out."""
    out: dict[Any, list] = {}
    for r in metrics.to_pylist():
        v = r["value"]
        if v is None or math.isnan(v):
            continue
        if math.isinf(v):
            v = math.copysign(CLOUDWATCH_INFINITY, v)
        ts = r["window_start"]
        out.setdefault((r["granularity"], ts), []).append({
            "MetricName": f"bias_metric_{r['metric_name']}",
            "Dimensions": [
                {"Name": "Endpoint", "Value": str(endpoint)},
                {"Name": "MonitoringSchedule", "Value": schedule},
                {"Name": "BiasStage", "Value": r["stage"]},
                {"Name": "Label", "Value": label},
                {"Name": "LabelValue", "Value": label_value},
                {"Name": "Facet", "Value": r["facet"]},
                {"Name": "FacetValue", "Value": r["facet_value"]},
            ],
            "Timestamp": ts.isoformat() if ts is not None else None,
            "Value": v,
            "Unit": "None",
        })
    per_window = {k: v for k, v in out.items() if k[0] != "window"} or out
    return [{"Namespace": NAMESPACE, "MetricData": data} for _, data in sorted(
        per_window.items(), key=lambda kv: (kv[0][1] is None, kv[0][1]))]
