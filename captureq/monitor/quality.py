"""Model quality from the ``predictions`` view: predictions joined with their ground truth.

Metrics per hour or day (and for the whole window), defined as scikit-learn defines them:

* binary — accuracy, precision, recall, F1 (zero when undefined, sklearn's ``zero_division``
  result), ``auc_roc`` (``roc_auc_score``), ``auc_pr`` (``average_precision_score``: the
  step-wise average precision, not the trapezoidal area), and the confusion matrix, with
  ``predicted = score >= threshold``;
* multiclass — accuracy, weighted F1 (``f1_score(average="weighted")``), confusion matrix, over
  text or numeric classes;
* regression — MAE, MSE, RMSE, R² (``r2_score``), MAPE (``mean_absolute_percentage_error``);

plus ``label_coverage`` (labelled records / records; a record is labelled when its
``ground_truth`` is not null, as ``count(ground_truth)`` counts) and label delay in hours (label hour −
inference hour). Everything is numpy over whole columns; a window is a slice of sorted rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError
from .problem import BINARY, MULTICLASS, ModelType, choose, encode, to_float

PREDICTION_COLUMNS = (
    "output_c0",
    "output_score",
    "output_predicted_label",
    "output_label",
    "output_prediction",
)


# ---------------------------------------------------------------------------------------------
# Metric definitions (numpy; tests hold them against scikit-learn)
# ---------------------------------------------------------------------------------------------
def _div(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def binary_metrics(
    y_true: np.ndarray, score: np.ndarray, threshold: float = 0.5
) -> dict[str, float | int | None]:
    """Binary classification metrics; ``y_true`` in {0, 1}, ``score`` a probability (or label)."""
    y = y_true.astype(bool)
    pred = score >= threshold
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    tn = int(np.sum(~pred & ~y))
    precision, recall = _div(tp, tp + fp), _div(tp, tp + fn)
    return {
        "accuracy": _div(tp + tn, len(y)),
        "precision": precision,
        "recall": recall,
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "auc_roc": auc_roc(y, score),
        "auc_pr": average_precision(y, score),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def auc_roc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann–Whitney with average ranks for ties); None with one class."""
    pos, n = int(y.sum()), len(y)
    if pos == 0 or pos == n:
        return None
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(n)
    _, first, counts = np.unique(s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0  # average 1-based rank of each tie group
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * (n - pos)))


def average_precision(y: np.ndarray, score: np.ndarray) -> float | None:
    """``Σ (R_n − R_{n−1}) · P_n`` over the distinct thresholds; None without positives."""
    pos = int(y.sum())
    if pos == 0:
        return None
    order = np.argsort(-score, kind="mergesort")
    s, t = score[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    tps = np.cumsum(t)[last]
    fps = (last + 1) - tps
    precision = tps / (tps + fps)
    recall = tps / pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def multiclass_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, classes: list[str] | None = None
) -> tuple[dict[str, float], list[dict]]:
    """Accuracy, weighted F1 and the confusion matrix rows (actual, predicted, count); classes
    are numbers or text, or positions in ``classes`` (their names)."""
    from .quality_files import class_name

    labels, inv = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    k = len(labels)
    t, p = inv[: len(y_true)], inv[len(y_true) :]
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype("float64")
    support = cm.sum(axis=1).astype("float64")
    predicted = cm.sum(axis=0).astype("float64")
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    weighted = float(np.sum(f1 * support) / support.sum()) if support.sum() else 0.0
    names = [class_name(v, classes) for v in labels]
    rows = [
        {"actual": names[i], "predicted": names[j], "count": int(cm[i, j])}
        for i, j in zip(*np.nonzero(cm))
    ]
    return {"accuracy": _div(tp.sum(), len(y_true)), "weighted_f1": weighted}, rows


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, MSE, RMSE, R² and MAPE as scikit-learn computes them."""
    err = y_pred - y_true
    mse = float(np.mean(err**2))
    ss_res = float(np.sum(err**2))
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    if ss_tot:
        r2 = 1.0 - ss_res / ss_tot
    else:
        r2 = 1.0 if ss_res == 0 else 0.0
    mape = float(np.mean(np.abs(err) / np.maximum(np.abs(y_true), np.finfo(np.float64).eps)))
    return {
        "mae": float(np.mean(np.abs(err))),
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "r2": r2,
        "mape": mape,
    }


# ---------------------------------------------------------------------------------------------
# Over the predictions view
# ---------------------------------------------------------------------------------------------
def _numeric(arr: pa.ChunkedArray) -> np.ndarray:
    return to_float(arr)


def pick_prediction(table: pa.Table, prediction: str | None) -> str:
    if prediction:
        if prediction not in table.column_names:
            raise ConfigError(
                f"no prediction column {prediction!r}; the predictions view has "
                f"{[c for c in table.column_names if c.startswith('output_')]}"
            )
        return prediction
    for c in PREDICTION_COLUMNS:
        if c in table.column_names and table[c].null_count < table.num_rows:
            return c
    cols = [
        c
        for c in table.column_names
        if c.startswith("output_") and table[c].null_count < table.num_rows
    ]
    if not cols:
        raise ConfigError("the predictions have no output column: pass prediction='output_...'")
    return cols[0]


VIOLATION_SCHEMA = pa.schema(
    [
        ("window_start", pa.timestamp("us", tz="UTC")),
        ("granularity", pa.string()),
        ("metric_name", pa.string()),
        ("constraint_check_type", pa.string()),
        ("description", pa.string()),
    ]
)


@dataclass
class QualityResult:
    """Per-window metrics (``metrics``), confusion matrices (``confusion``) and the settings used.

    Model Monitor's files: ``statistics`` (the window's model-quality statistics.json),
    ``baseline`` (a :class:`~captureq.monitor.quality_files.QualityBaseline` when one was made),
    ``constraint_violations`` (the window's constraint_violations.json when constraints were
    given), ``hourly`` (per-hour/day violations files) and ``violations`` (every violation as a
    row); ``cloudwatch_metrics`` holds the metrics Model Monitor would publish, one row each.
    ``model_type`` is the choice of problem type and prediction (:mod:`.problem`), ``prediction``
    its column (``argmax(…)`` for a probability vector).
    """

    problem_type: str
    prediction: str
    threshold: float
    metrics: pa.Table
    confusion: pa.Table
    statistics: dict = field(default_factory=dict)
    baseline: Any = None
    constraint_violations: dict | None = None
    hourly: dict[str, dict] = field(default_factory=dict)
    violations: pa.Table = field(default_factory=lambda: VIOLATION_SCHEMA.empty_table())
    cloudwatch_metrics: pa.Table = field(default_factory=lambda: _metric_table([]))
    model_type: ModelType | None = None

    def overall(self) -> dict[str, Any]:
        rows = [r for r in self.metrics.to_pylist() if r["granularity"] == "window"]
        return rows[0] if rows else {}

    def write(self, out: str | Path) -> Path:
        """statistics.json, constraint_violations.json (with constraints), metrics.parquet,
        quality.parquet (the per-window metrics) and hourly/<window>/constraint_violations.json."""
        import pyarrow.parquet as pq

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "statistics.json").write_text(json.dumps(self.statistics, indent=2) + "\n")
        if self.constraint_violations is not None:
            (out / "constraint_violations.json").write_text(
                json.dumps(self.constraint_violations, indent=2) + "\n"
            )
        for window, files in self.hourly.items():
            d = out / "hourly" / window
            d.mkdir(parents=True, exist_ok=True)
            (d / "constraint_violations.json").write_text(json.dumps(files, indent=2) + "\n")
        pq.write_table(self.cloudwatch_metrics, out / "metrics.parquet")
        pq.write_table(self.metrics, out / "quality.parquet")
        return out


def _metric_table(rows: list[dict]) -> pa.Table:
    from .metrics import table

    return table(rows)


def model_quality(
    source: Any,
    *,
    problem_type: str | None = None,
    prediction: str | None = None,
    probability: str | list[str] | None = None,
    class_labels: list[str] | None = None,
    threshold: float = 0.5,
    by: str = "hour",
    endpoint: str | None = None,
    start: Any = None,
    end: Any = None,
    baseline_out: str | Path | None = None,
    constraints: Any = None,
    out: str | Path | None = None,
    seed: int = 0,
) -> QualityResult:
    """Model-quality metrics per ``by`` window (``"hour"`` or ``"day"``) and for the whole window.

    ``source`` is a :class:`~captureq.CaptureTree` opened with ``labels=`` (or an Arrow table
    shaped like the ``predictions`` view). ``problem_type`` (BinaryClassification,
    MulticlassClassification or Regression), ``prediction`` (the predicted label or score
    column), ``probability`` (a binary score column, or a multiclass model's probability
    columns, whose argmax is the prediction), ``class_labels`` (those columns' classes, in order)
    are inferred from the outputs and the labels when omitted (:func:`.problem.choose`;
    ``result.model_type`` says what was chosen); binary records are positive when score ≥
    ``threshold``.

    Model Monitor's files (see :mod:`.quality_files`): ``baseline_out`` writes the window's
    statistics.json and suggested constraints.json there (a model-quality baseline);
    ``constraints`` (a folder, or a :class:`~.quality_files.QualityBaseline`) checks the window
    and every hour/day against it; ``out`` writes the result's files (:meth:`QualityResult.write`).
    ``seed`` seeds the bootstrap behind each ``standard_deviation``.
    """
    from .quality_files import QualityBaseline

    if constraints is not None and not isinstance(constraints, QualityBaseline):
        constraints = QualityBaseline.load(constraints)
    if problem_type is None and constraints is not None:
        problem_type = constraints.problem_type
    from ..plan import ScanPlan as CaptureTree

    if by not in ("hour", "day"):
        raise ConfigError(f"by must be 'hour' or 'day', got {by!r}")
    if isinstance(source, CaptureTree):
        table = source._narrow({"start": start, "end": end, "endpoint": endpoint}).predictions()
    else:
        table = source
    if "endpoint" in table.column_names and table.num_rows:
        eps = pc.unique(table["endpoint"]).to_pylist()
        if len(eps) > 1:
            raise ConfigError(
                f"the window holds {len(eps)} endpoints ({', '.join(sorted(eps))}); "
                "model quality is per model: pass endpoint=... (--endpoint)"
            )
    model = choose(
        table,
        problem_type=problem_type,
        prediction=prediction,
        probability=probability,
        class_labels=class_labels,
        threshold=threshold,
    )
    problem_type, pred_col = model.problem_type, model.column
    enc = encode(table, model)
    truth_all, pred_all, labelled, usable = enc.truth, enc.pred, enc.labelled, enc.usable
    classes = enc.classes

    unit = "day" if by == "day" else "hour"
    win = pc.floor_temporal(table["inference_time"], unit=unit).to_numpy(zero_copy_only=False)
    inf_hour = pc.floor_temporal(table["inference_time"], unit="hour").to_numpy(
        zero_copy_only=False
    )
    if "label_hour" in table.column_names:
        lh = pc.cast(table["label_hour"], pa.timestamp("us", tz="UTC")).to_numpy(
            zero_copy_only=False
        )
        delay = (lh.astype("datetime64[us]") - inf_hour.astype("datetime64[us]")).astype(
            "float64"
        ) / 3.6e9
    else:
        delay = np.full(table.num_rows, np.nan)

    metric_rows: list[dict] = []
    confusion_rows: list[dict] = []
    labelled_sets: list[tuple[Any, str, np.ndarray, np.ndarray]] = []

    def evaluate(idx: np.ndarray, start_ts: Any, granularity: str) -> None:
        lab = idx[usable[idx]]
        n_labelled = int(labelled[idx].sum())
        d = delay[idx[labelled[idx]]]
        d = d[~np.isnan(d)]
        row: dict[str, Any] = {
            "window_start": start_ts,
            "granularity": granularity,
            "records": len(idx),
            "labelled": n_labelled,
            "label_coverage": _div(n_labelled, len(idx)),
            "label_delay_mean_h": float(d.mean()) if len(d) else None,
            "label_delay_max_h": float(d.max()) if len(d) else None,
        }
        y, p = truth_all[lab], pred_all[lab]
        labelled_sets.append((start_ts, granularity, y, p))
        cm: list[dict] = []
        if len(lab):
            if problem_type == BINARY:
                m = binary_metrics(y, p, threshold)
                cm = [
                    {"actual": a, "predicted": b, "count": m[k]}
                    for a, b, k in (
                        ("1", "1", "tp"),
                        ("0", "1", "fp"),
                        ("0", "0", "tn"),
                        ("1", "0", "fn"),
                    )
                ]
                row.update(m)
            elif problem_type == MULTICLASS:
                m, cm = multiclass_metrics(y, p, classes)
                row.update(m)
            else:
                row.update(regression_metrics(y, p))
        metric_rows.append(row)
        confusion_rows.extend(
            {"window_start": start_ts, "granularity": granularity, **c} for c in cm
        )

    everything = np.arange(table.num_rows)
    if table.num_rows:
        first = pc.min(pc.floor_temporal(table["inference_time"], unit=unit)).as_py()
        evaluate(everything, first, "window")
        order = np.argsort(win, kind="stable")
        uniq, starts = np.unique(win[order], return_index=True)
        bounds = list(starts) + [len(order)]
        ts = pc.floor_temporal(table["inference_time"], unit=unit).take(pa.array(order[starts]))
        for i in range(len(uniq)):
            evaluate(order[bounds[i] : bounds[i + 1]], ts[i].as_py(), by)
    metrics = pa.Table.from_pylist(metric_rows) if metric_rows else pa.table({"window_start": []})
    confusion = pa.Table.from_pylist(
        confusion_rows,
        schema=pa.schema(
            [
                ("window_start", pa.timestamp("us", tz="UTC")),
                ("granularity", pa.string()),
                ("actual", pa.string()),
                ("predicted", pa.string()),
                ("count", pa.int64()),
            ]
        ),
    )
    result = QualityResult(
        problem_type, pred_col, model.threshold, metrics, confusion, model_type=model
    )
    ep = (
        table["endpoint"][0].as_py()
        if "endpoint" in table.column_names and table.num_rows
        else endpoint
    )
    _model_monitor_files(result, labelled_sets, ep, constraints, seed, classes)
    if baseline_out is not None:
        if not result.statistics.get("dataset", {}).get("item_count"):
            raise ConfigError(
                "no labelled predictions in the window: a model-quality baseline needs ground "
                "truth (pass labels=... / --labels and a window that has labels)"
            )
        result.baseline.write(baseline_out)
    if out is not None:
        result.write(out)
    return result


def _model_monitor_files(
    result: QualityResult,
    windows: list[tuple[Any, str, np.ndarray, np.ndarray]],
    endpoint: str | None,
    constraints: Any,
    seed: int,
    classes: list[str] | None = None,
) -> None:
    """Fill ``result`` with Model Monitor's statistics, violations and metric rows."""
    from .metrics import model_quality_rows
    from .quality_files import (
        QualityBaseline,
        iso_millis,
        quality_constraints,
        quality_statistics,
    )
    from .quality_files import quality_violations as violations_of

    metric_rows: list[dict] = []
    violation_rows: list[dict] = []
    evaluated = datetime.now(timezone.utc)
    for start_ts, granularity, y, p in windows:
        if not len(y):
            continue
        stats = quality_statistics(
            y, p, result.problem_type, threshold=result.threshold, seed=seed,
            evaluation_time=evaluated, classes=classes,
        )
        metric_rows += model_quality_rows(stats, start_ts, endpoint, granularity)
        found = violations_of(stats, constraints.constraints) if constraints is not None else []
        violation_rows += [
            {"window_start": start_ts, "granularity": granularity, **v} for v in found
        ]
        if granularity == "window":
            result.statistics = stats
            result.baseline = QualityBaseline(stats, quality_constraints(stats))
            if constraints is not None:
                result.constraint_violations = {"violations": found}
        elif constraints is not None:
            key = start_ts.strftime("%Y-%m-%dT%H") if start_ts is not None else "unknown"
            result.hourly[key] = {"violations": found}
    if constraints is not None and result.constraint_violations is None:
        result.constraint_violations = {"violations": []}
    if not result.statistics:  # nothing labelled yet
        result.statistics = {
            "version": 0.0,
            "dataset": {"item_count": 0, "evaluation_time": iso_millis(evaluated)},
        }
    result.violations = pa.Table.from_pylist(violation_rows, schema=VIOLATION_SCHEMA)
    result.cloudwatch_metrics = _metric_table(metric_rows)
