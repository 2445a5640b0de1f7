"""Model Monitor's model-quality files: ``statistics.json``, ``constraints.json`` and violations.

:func:`quality_statistics` writes what Model Monitor's model-quality job writes for one window:
``version``, ``dataset.item_count`` and one of ``binary_classification_metrics`` /
``multiclass_classification_metrics`` / ``regression_metrics``. Every scalar metric is
``{"value": v, "standard_deviation": s}`` where ``s`` is the standard deviation of the metric
over 5 random samples of 80 % of the rows (without replacement, seeded) when there are at least
200 rows, else the string ``"NaN"`` — as Model Monitor documents it. The confusion matrix is
``{"<actual>": {"<predicted>": count}}``; the ROC and precision–recall curves are lists.

The ``*_best_constant_classifier`` values are the metric of a classifier that always predicts the
positive class (binary; as Model Monitor's own example shows, its accuracy is the share of
positives) or the most frequent class (multiclass).

:func:`quality_constraints` suggests ``constraints.json`` from a baseline's statistics: each
metric's baseline value is its threshold, with ``LessThanThreshold`` for metrics where higher is
better and ``GreaterThanThreshold`` for errors and false rates. :func:`quality_violations`
checks a window's statistics against them, with Model Monitor's wording
(``Metric f1 with 0.61 was LessThanThreshold 0.66``).

>>> import numpy as np
>>> s = quality_statistics(np.array([0, 0, 0, 1.0]), np.array([0.9, 0.8, 0.1, 0.7]), "BinaryClassification")
>>> s["binary_classification_metrics"]["confusion_matrix"]
{'0': {'0': 1, '1': 2}, '1': {'0': 0, '1': 1}}
>>> s["binary_classification_metrics"]["precision"]
{'value': 0.3333333333333333, 'standard_deviation': 'NaN'}
>>> s["binary_classification_metrics"]["accuracy_best_constant_classifier"]["value"]
0.25
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .messages import describe
from .problem import BINARY, MULTICLASS, REGRESSION
from .quality import auc_roc

SECTIONS = {
    BINARY: ("binary_classification_metrics", "binary_classification_constraints"),
    MULTICLASS: ("multiclass_classification_metrics", "multiclass_classification_constraints"),
    REGRESSION: ("regression_metrics", "regression_constraints"),
}
BOOTSTRAP_MIN_ROWS, BOOTSTRAP_DRAWS, BOOTSTRAP_SHARE = 200, 5, 0.8
LESS, GREATER = "LessThanThreshold", "GreaterThanThreshold"
# metric -> the operator that flags it: higher-is-better metrics fail when they fall below
CONSTRAINED = {
    BINARY: {
        "recall": LESS,
        "precision": LESS,
        "accuracy": LESS,
        "true_positive_rate": LESS,
        "true_negative_rate": LESS,
        "false_positive_rate": GREATER,
        "false_negative_rate": GREATER,
        "auc": LESS,
        "f0_5": LESS,
        "f1": LESS,
        "f2": LESS,
    },
    MULTICLASS: {
        "accuracy": LESS,
        "weighted_recall": LESS,
        "weighted_precision": LESS,
        "weighted_f0_5": LESS,
        "weighted_f1": LESS,
        "weighted_f2": LESS,
    },
    REGRESSION: {"mae": GREATER, "mse": GREATER, "rmse": GREATER, "r2": LESS},
}


def _div(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def _fbeta(precision: float, recall: float, beta: float) -> float:
    b2 = beta * beta
    return _div((1 + b2) * precision * recall, b2 * precision + recall)


# ---------------------------------------------------------------------------------------------
# scalar metrics (numpy; tests hold them against scikit-learn)
# ---------------------------------------------------------------------------------------------
def binary_scalars(y: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Model Monitor's scalar binary metrics; ``y`` in {0, 1}, positive when score ≥ threshold."""
    t = y.astype(bool)
    pred = score >= threshold
    tp = int(np.sum(pred & t))
    fp = int(np.sum(pred & ~t))
    fn = int(np.sum(~pred & t))
    tn = int(np.sum(~pred & ~t))
    precision, recall = _div(tp, tp + fp), _div(tp, tp + fn)
    auc = auc_roc(t, score.astype("float64"))
    pos = _div(int(t.sum()), len(t))  # the constant "always positive" classifier
    return {
        "recall": recall,
        "precision": precision,
        "accuracy": _div(tp + tn, len(t)),
        "recall_best_constant_classifier": 1.0 if t.any() else 0.0,
        "precision_best_constant_classifier": pos,
        "accuracy_best_constant_classifier": pos,
        "true_positive_rate": recall,
        "true_negative_rate": _div(tn, tn + fp),
        "false_positive_rate": _div(fp, fp + tn),
        "false_negative_rate": _div(fn, fn + tp),
        "auc": float("nan") if auc is None else auc,
        "f0_5": _fbeta(precision, recall, 0.5),
        "f0_5_best_constant_classifier": _fbeta(pos, 1.0 if t.any() else 0.0, 0.5),
        "f1": _fbeta(precision, recall, 1.0),
        "f1_best_constant_classifier": _fbeta(pos, 1.0 if t.any() else 0.0, 1.0),
        "f2": _fbeta(precision, recall, 2.0),
        "f2_best_constant_classifier": _fbeta(pos, 1.0 if t.any() else 0.0, 2.0),
    }


def _weighted(y: np.ndarray, pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    k = len(labels)
    t = np.searchsorted(labels, y)
    p = np.searchsorted(labels, pred)
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype("float64")
    tp = np.diag(cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    rec = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    prec = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    w = support / support.sum() if support.sum() else support

    def fb(beta: float) -> float:
        b2 = beta * beta
        den = b2 * prec + rec
        f = np.divide((1 + b2) * prec * rec, den, out=np.zeros(k), where=den > 0)
        return float(np.sum(w * f))

    return {
        "accuracy": _div(tp.sum(), len(y)),
        "weighted_recall": float(np.sum(w * rec)),
        "weighted_precision": float(np.sum(w * prec)),
        "weighted_f0_5": fb(0.5),
        "weighted_f1": fb(1.0),
        "weighted_f2": fb(2.0),
    }


def multiclass_scalars(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Accuracy and support-weighted recall/precision/F-scores (sklearn ``average="weighted"``)
    plus the same for the constant classifier predicting the most frequent class."""
    labels = np.unique(np.concatenate([y, pred]))
    out = _weighted(y, pred, labels)
    values, counts = np.unique(y, return_counts=True)
    majority = values[np.argmax(counts)] if len(values) else labels[0]
    const = _weighted(y, np.full(len(y), majority), labels)
    for name, value in const.items():
        out[f"{name}_best_constant_classifier"] = value
    return out


def regression_scalars(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MAE, MSE, RMSE and R² as scikit-learn computes them."""
    err = pred - y
    mse = float(np.mean(err**2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    ss_res = float(np.sum(err**2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot else (1.0 if ss_res == 0 else 0.0)
    return {"mae": float(np.mean(np.abs(err))), "mse": mse, "rmse": float(np.sqrt(mse)), "r2": r2}


def scalars(
    problem_type: str, y: np.ndarray, pred: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    if problem_type == BINARY:
        return binary_scalars(y, pred, threshold)
    if problem_type == MULTICLASS:
        return multiclass_scalars(y, pred)
    return regression_scalars(y, pred)


# ---------------------------------------------------------------------------------------------
# curves and the confusion matrix
# ---------------------------------------------------------------------------------------------
def roc_curve(y: np.ndarray, score: np.ndarray) -> dict[str, list[float]]:
    """False/true positive rates at every distinct score, highest first, from (0, 0) — as
    ``sklearn.metrics.roc_curve(drop_intermediate=False)``."""
    t = y.astype(bool)
    order = np.argsort(-score, kind="mergesort")
    s, tt = score[order], t[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1] if len(s) else np.empty(0, int)
    tps = np.cumsum(tt)[last] if len(s) else np.empty(0)
    fps = (last + 1) - tps
    pos, neg = int(t.sum()), int((~t).sum())
    tpr = np.r_[0.0, tps / pos] if pos else np.r_[0.0, np.zeros(len(tps))]
    fpr = np.r_[0.0, fps / neg] if neg else np.r_[0.0, np.zeros(len(fps))]
    return {"false_positive_rates": fpr.tolist(), "true_positive_rates": tpr.tolist()}


def precision_recall_curve(y: np.ndarray, score: np.ndarray) -> dict[str, list[float]]:
    """Precision and recall at every distinct score, lowest score first, ending at (1, 0) — as
    ``sklearn.metrics.precision_recall_curve``."""
    t = y.astype(bool)
    order = np.argsort(-score, kind="mergesort")
    s, tt = score[order], t[order]
    if not len(s):
        return {"precisions": [1.0], "recalls": [0.0]}
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(tt)[last].astype("float64")
    fps = (last + 1) - tps
    pos = int(t.sum())
    precision = np.divide(tps, tps + fps, out=np.ones_like(tps), where=(tps + fps) > 0)
    recall = tps / pos if pos else np.ones_like(tps)
    # lowest threshold first, then (precision 1, recall 0) appended, as sklearn returns them
    return {
        "precisions": np.r_[precision[::-1], 1.0].tolist(),
        "recalls": np.r_[recall[::-1], 0.0].tolist(),
    }


def confusion_matrix(
    y: np.ndarray, pred: np.ndarray, classes: list[str] | None = None
) -> dict[str, dict[str, int]]:
    """``{"<actual>": {"<predicted>": count}}`` over every label seen (Model Monitor's layout);
    labels are numbers or text, or positions in ``classes`` (their names)."""
    labels = np.unique(np.concatenate([y, pred]))
    names = [class_name(v, classes) for v in labels]
    k = len(labels)
    t, p = np.searchsorted(labels, y), np.searchsorted(labels, pred)
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    return {names[i]: {names[j]: int(cm[i, j]) for j in range(k)} for i in range(k)}


def class_name(v: Any, classes: list[str] | None = None) -> str:
    """A class as Model Monitor names it in a confusion matrix: ``1.0`` → ``"1"``, text as is;
    with ``classes``, ``v`` is a position in it."""
    if classes is not None:
        return classes[int(v)]
    if isinstance(v, str):
        return v
    f = float(v)
    return str(int(f)) if f.is_integer() else str(f)


# ---------------------------------------------------------------------------------------------
# statistics.json / constraints.json / violations
# ---------------------------------------------------------------------------------------------
def _json_number(x: float) -> float | str:
    return x if np.isfinite(x) else "NaN"


def quality_statistics(
    y: np.ndarray,
    pred: np.ndarray,
    problem_type: str,
    *,
    threshold: float = 0.5,
    seed: int = 0,
    evaluation_time: datetime | None = None,
    classes: list[str] | None = None,
) -> dict:
    """Model Monitor's model-quality ``statistics.json`` for labels ``y`` and predictions ``pred``
    (binary: a score or probability, positive when ≥ ``threshold``; multiclass: classes as
    numbers or as text, or positions in ``classes``, their names, as :func:`.problem.encode`
    gives them).

    ``evaluation_time`` (when the window was evaluated) becomes ``dataset.evaluation_time`` as
    newer Model Monitor files write it: ``"2023-03-30T21:08:34.729Z"``."""
    if problem_type not in SECTIONS:
        raise ConfigError(
            f"problem_type must be {BINARY}, {MULTICLASS} or {REGRESSION}, got {problem_type!r}"
        )
    if problem_type == MULTICLASS and (_is_text(y) or _is_text(pred)):
        y, pred = np.asarray(y, dtype=object), np.asarray(pred, dtype=object)
    elif problem_type == MULTICLASS:
        y, pred = np.rint(np.asarray(y, "float64")), np.rint(np.asarray(pred, "float64"))
    else:
        y, pred = np.asarray(y, dtype="float64"), np.asarray(pred, dtype="float64")
    n = len(y)
    values = scalars(problem_type, y, pred, threshold)
    deviation: dict[str, Any] = dict.fromkeys(values, "NaN")
    if n >= BOOTSTRAP_MIN_ROWS:
        rng = np.random.default_rng(seed)
        size = int(round(BOOTSTRAP_SHARE * n))
        draws = []
        for _ in range(BOOTSTRAP_DRAWS):
            idx = rng.choice(n, size=size, replace=False)
            draws.append(scalars(problem_type, y[idx], pred[idx], threshold))
        for name in values:
            sample = np.array([d[name] for d in draws], dtype="float64")
            deviation[name] = (
                float(np.std(sample)) if np.isfinite(sample).all() else "NaN"
            )
    metrics: dict[str, Any] = {}
    if problem_type == BINARY:
        metrics["confusion_matrix"] = confusion_matrix(y, (pred >= threshold).astype("float64"))
    elif problem_type == MULTICLASS:
        metrics["confusion_matrix"] = confusion_matrix(y, pred, classes)
    for name, value in values.items():
        if problem_type == BINARY and name == "auc":
            metrics["receiver_operating_characteristic_curve"] = roc_curve(y, pred)
            metrics["precision_recall_curve"] = precision_recall_curve(y, pred)
        metrics[name] = {"value": _json_number(value), "standard_deviation": deviation[name]}
    dataset: dict[str, Any] = {"item_count": n}
    if evaluation_time is not None:
        dataset["evaluation_time"] = iso_millis(evaluation_time)
    return {"version": 0.0, "dataset": dataset, SECTIONS[problem_type][0]: metrics}


def _is_text(values: Any) -> bool:
    a = np.asarray(values)
    return a.dtype == object or a.dtype.kind in "US"


def iso_millis(t: datetime) -> str:
    """``2023-03-30T21:08:34.729Z``: UTC with milliseconds, the way Model Monitor writes times.

    >>> iso_millis(datetime(2023, 3, 30, 21, 8, 34, 729512, tzinfo=timezone.utc))
    '2023-03-30T21:08:34.729Z'
    """
    t = t.astimezone(timezone.utc) if t.tzinfo else t
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def problem_type_of(statistics_or_constraints: dict) -> str | None:
    """The problem type a model-quality statistics.json or constraints.json is about."""
    for problem_type, keys in SECTIONS.items():
        if any(k in statistics_or_constraints for k in keys):
            return problem_type
    return None


def quality_constraints(statistics: dict) -> dict:
    """Suggested model-quality ``constraints.json``: each metric's baseline value as threshold."""
    problem_type = problem_type_of(statistics)
    if problem_type is None:
        raise ConfigError("not a model-quality statistics.json: no *_metrics section")
    metrics = statistics[SECTIONS[problem_type][0]]
    out = {}
    for name, op in CONSTRAINED[problem_type].items():
        value = (metrics.get(name) or {}).get("value")
        if isinstance(value, (int, float)) and np.isfinite(value):
            out[name] = {"threshold": float(value), "comparison_operator": op}
    return {"version": 0.0, SECTIONS[problem_type][1]: out}


def quality_violations(statistics: dict, constraints: dict) -> list[dict]:
    """The ``violations`` of a window's model-quality statistics against ``constraints``."""
    problem_type = problem_type_of(constraints)
    if problem_type is None:
        raise ConfigError(
            "not a model-quality constraints.json: expected binary_classification_constraints, "
            "multiclass_classification_constraints or regression_constraints"
        )
    metrics = statistics.get(SECTIONS[problem_type][0])
    if metrics is None:
        raise ConfigError(
            f"the constraints are for {problem_type} but the window was evaluated as "
            f"{problem_type_of(statistics)}: pass problem_type={problem_type!r}"
        )
    out = []
    for name, rule in constraints[SECTIONS[problem_type][1]].items():
        op = rule.get("comparison_operator")
        if op not in (LESS, GREATER):
            raise ConfigError(
                f"constraint {name!r}: comparison_operator must be {LESS} or {GREATER}, got {op!r}"
            )
        value = (metrics.get(name) or {}).get("value")
        if not isinstance(value, (int, float)) or not np.isfinite(value):
            continue
        threshold = float(rule["threshold"])
        if (op == LESS and value < threshold) or (op == GREATER and value > threshold):
            out.append(
                {
                    "metric_name": name,
                    "constraint_check_type": op,
                    "description": describe(op, metric=name, value=value, threshold=threshold),
                }
            )
    return out


@dataclass
class QualityBaseline:
    """A model-quality baseline: statistics.json and constraints.json as dicts."""

    statistics: dict
    constraints: dict

    @property
    def problem_type(self) -> str | None:
        return problem_type_of(self.constraints) or problem_type_of(self.statistics)

    def write(self, out: str | Path) -> Path:
        from .baseline import write_baseline_files

        return write_baseline_files(out, self.statistics, self.constraints)

    @classmethod
    def load(cls, path: str | Path) -> QualityBaseline:
        """Read a model-quality baseline folder (ours or Model Monitor's); constraints.json is
        required, statistics.json optional."""
        from .baseline import read_json

        path = Path(path)
        constraints = read_json(path / "constraints.json", "captureq quality ... --baseline-out")
        if problem_type_of(constraints) is None:
            hint = (
                "it is a data-quality baseline: use `captureq monitor --baseline`"
                if "features" in constraints
                else "expected binary_classification_constraints, "
                "multiclass_classification_constraints or regression_constraints"
            )
            raise ConfigError(f"{path / 'constraints.json'} is not a model-quality baseline: {hint}")
        stats_path = path / "statistics.json"
        statistics = read_json(stats_path, "") if stats_path.exists() else {}
        return cls(statistics, constraints)
