"""Model quality before the labels arrive: estimated from the captured predictions alone.

* **Binary classifiers — confidence-based performance estimation (CBPE).** On a *reference*
  window that has ground truth, the model's score is calibrated (:func:`fit_calibration`:
  isotonic regression, or the identity when the score already is a calibrated probability —
  chosen by the cross-fitted expected calibration error). In any later window each record with
  calibrated probability ``p`` and predicted label ``score >= threshold`` adds its expected
  share to the confusion matrix: ``p`` to TP and ``1 − p`` to FP when predicted positive,
  ``1 − p`` to TN and ``p`` to FN when predicted negative. Accuracy, precision, recall and F1
  follow from the expected counts; ROC AUC is the weighted AUC of the model's score with every
  record counted as a positive with weight ``p`` and as a negative with weight ``1 − p``.
* **Regression — direct loss estimation (DLE).** A histogram gradient-boosting model trained
  on the reference window predicts each record's absolute (and squared) error from its input
  features and the prediction; the window's estimated MAE is the mean predicted absolute error,
  its RMSE the root of the mean predicted squared error.

**The confidence band** is the sampling error of the *realized* metric given the window's
records, under the assumption that the calibrated probabilities are right: each label is an
independent Bernoulli(``p``) draw, so the expected counts have the variance ``Σ p(1 − p)`` and
the metric's standard error follows from it — exactly for accuracy and precision (their
denominators are known before the labels), by the delta method for recall, F1 and ROC AUC (the
realized AUC is a function of two sums linear in the labels: the rank sum of the positives and
their number). The
band is ``estimate ± z·se`` clipped to [0, 1], ``z`` for ``confidence`` (0.95 by default). For
DLE the two error models give each record's error variance (``Var|e| = E e² − (E|e|)²``;
``Var e² = 2 (E e²)²`` as for a normal error) and the band is the realized MAE's/RMSE's sampling
error from those.

The result has one row per window (``hour`` or ``day``, plus ``window`` for all of it) and
metric, with the *realized* value beside the estimate wherever labels exist (computed by
:func:`captureq.monitor.model_quality` from the ``predictions`` view). It is registered on the
tree as the ``estimated_quality`` view. Thresholds come from the reference's realized metrics
(Model Monitor's model-quality constraints: ``LessThanThreshold`` for metrics where higher is
better, ``GreaterThanThreshold`` for errors); a window whose whole band lies on the wrong side
of a threshold is a violation in ``constraint_violations.json`` form.

>>> import captureq, tempfile
>>> from captureq.generate import EndpointSpec, generate_tree
>>> d = tempfile.mkdtemp()
>>> _ = generate_tree(d + "/c", labels_out=d + "/l", hours=4, requests_per_hour=200,
...                   endpoints=[EndpointSpec("clf", n_features=3, intercept=0, scale=2)])
>>> cq = captureq.open(d + "/c", labels=d + "/l")
>>> r = cq.estimate_quality(reference_start="2026-01-01T00", reference_end="2026-01-01T02")
>>> r.calibration.method in ("identity", "isotonic"), r.problem_type
(True, 'BinaryClassification')
>>> row = r.metric("accuracy", granularity="window")[0]
>>> abs(row["estimated"] - row["realized"]) < 0.05
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError
from .problem import BINARY, REGRESSION
from .quality import (
    VIOLATION_SCHEMA,
    _numeric,
    binary_metrics,
    model_quality,
    pick_prediction,
)

BINARY_METRICS = ("accuracy", "precision", "recall", "f1", "auc_roc")
REGRESSION_METRICS = ("mae", "rmse")
LOWER_IS_BETTER = frozenset(REGRESSION_METRICS)
MIN_REFERENCE = 50  # labelled reference records below which calibration is refused

SCHEMA = pa.schema(
    [
        ("endpoint", pa.string()),
        ("window_start", pa.timestamp("us", tz="UTC")),
        ("granularity", pa.string()),
        ("metric", pa.string()),
        ("estimated", pa.float64()),
        ("lower", pa.float64()),
        ("upper", pa.float64()),
        ("realized", pa.float64()),
        ("records", pa.int64()),
        ("labelled", pa.int64()),
        ("threshold", pa.float64()),
        ("alert", pa.bool_()),
    ]
)


def _require_sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the [estimate] extra is missing
        raise ConfigError(
            "quality estimation needs scikit-learn: pip install 'captureq[estimate]'"
        ) from exc


# ---------------------------------------------------------------------------------------------
# Calibration: reliability curve, expected calibration error, isotonic or identity
# ---------------------------------------------------------------------------------------------
def reliability_curve(
    y: np.ndarray, prob: np.ndarray, n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty equal-width bin of ``prob``: fraction of positives, mean probability, count.

    The bins are scikit-learn's ``calibration_curve(strategy="uniform")`` bins.

    >>> reliability_curve(np.array([0, 1, 1, 1]), np.array([0.1, 0.15, 0.9, 0.95]), n_bins=2)
    (array([0.5, 1. ]), array([0.125, 0.925]), array([2, 2]))
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], prob)
    count = np.bincount(ids, minlength=n_bins)
    pos = np.bincount(ids, weights=y.astype("float64"), minlength=n_bins)
    total = np.bincount(ids, weights=prob, minlength=n_bins)
    keep = count > 0
    return pos[keep] / count[keep], total[keep] / count[keep], count[keep]


def expected_calibration_error(y: np.ndarray, prob: np.ndarray, n_bins: int = 10) -> float:
    """``Σ_bins (n_b / n) · |fraction positive − mean probability|`` over equal-width bins.

    >>> y, prob = np.array([0, 1, 1, 1]), np.array([0.1, 0.15, 0.9, 0.95])
    >>> round(expected_calibration_error(y, prob, n_bins=2), 4)
    0.225
    """
    if not len(y):
        return 0.0
    frac, mean, count = reliability_curve(y, prob, n_bins)
    return float(np.sum(count * np.abs(frac - mean)) / count.sum())


@dataclass
class Calibration:
    """The score → probability map fitted on the reference window.

    ``method`` is ``"identity"`` or ``"isotonic"``; ``ece_raw`` is the reference's expected
    calibration error of the raw score, ``ece_chance`` the ECE a perfectly calibrated score
    reaches by chance on as many records (95th percentile over simulated label draws),
    ``ece_isotonic`` the ECE of isotonic regression measured out of fold (cross-fitted, so it is
    not flattered by fitting and scoring the same records); ``reliability`` the reference's
    reliability curve before and after.
    """

    method: str
    ece_raw: float | None
    ece_isotonic: float | None
    reliability: pa.Table
    ece_chance: float | None = None
    model: Any = field(default=None, repr=False)

    def __call__(self, score: np.ndarray) -> np.ndarray:
        if self.method == "identity":
            return np.clip(score, 0.0, 1.0)
        return np.clip(self.model.predict(score), 0.0, 1.0)


def _isotonic():
    from sklearn.isotonic import IsotonicRegression

    return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")


def fit_calibration(
    y: np.ndarray,
    score: np.ndarray,
    *,
    method: str = "auto",
    n_bins: int = 10,
    folds: int = 5,
    seed: int = 0,
) -> Calibration:
    """Calibrate ``score`` against binary labels ``y``.

    ``method="auto"`` keeps the identity when the raw score is a probability whose ECE is no
    larger than a calibrated score's would be by chance (the 95th percentile of the ECE over
    100 label sets drawn as Bernoulli(score)), or no larger than isotonic regression's
    out-of-fold ECE; else isotonic. Isotonic regression is not free: its steps are noisy, and
    noise in ``p`` inflates estimated accuracy (``max(p, 1 − p)`` is convex), so it is used
    only when the score is measurably off. ``"identity"`` and ``"isotonic"`` force one. A
    score outside [0, 1] (a margin or logit) is always isotonic.
    """
    if method not in ("auto", "identity", "isotonic"):
        raise ConfigError(f"calibration must be auto, identity or isotonic, got {method!r}")
    y = y.astype("float64")
    is_prob = bool(len(score)) and bool((score >= 0).all() and (score <= 1).all())
    if method == "identity" and not is_prob:
        raise ConfigError(
            "the score is not a probability in [0, 1]: identity calibration is impossible; "
            "use calibration='isotonic' (or 'auto')"
        )
    ece_raw = expected_calibration_error(y, score, n_bins) if is_prob else None
    ece_chance = None
    if is_prob:
        rng = np.random.default_rng(seed)
        chance = [  # 100 vectorized draws, not a loop per record
            expected_calibration_error(rng.random(len(score)) < score, score, n_bins)
            for _ in range(100)
        ]
        ece_chance = float(np.quantile(chance, 0.95))
    ece_iso = None
    model = None
    if method != "identity":
        _require_sklearn()
        k = max(2, min(folds, len(y) // 10))
        fold = np.random.default_rng(seed).permutation(len(y)) % k
        oof = np.empty(len(y))
        for f in range(k):  # k fits, not one per record
            held = fold == f
            oof[held] = _isotonic().fit(score[~held], y[~held]).predict(score[held])
        ece_iso = expected_calibration_error(y, np.clip(oof, 0, 1), n_bins)
        model = _isotonic().fit(score, y)
    if method == "auto":
        off = ece_raw is None or (ece_raw > ece_chance and ece_iso < ece_raw)
        method = "isotonic" if off else "identity"
        if method == "identity":
            model = None
    cal = Calibration(method, ece_raw, ece_iso, pa.table({}), ece_chance=ece_chance, model=model)
    rows = []
    for kind, prob in (("raw", score if is_prob else None), ("calibrated", cal(score))):
        if prob is None:
            continue
        frac, mean, count = reliability_curve(y, prob, n_bins)
        rows += [
            {"curve": kind, "mean_probability": float(m), "fraction_positive": float(f),
             "records": int(c)}
            for f, m, c in zip(frac, mean, count)
        ]
    cal.reliability = pa.Table.from_pylist(rows)
    return cal


# ---------------------------------------------------------------------------------------------
# CBPE: expected confusion matrix and weighted AUC per group (vectorized over all groups)
# ---------------------------------------------------------------------------------------------
def weighted_auc(
    score: np.ndarray,
    w_pos: np.ndarray,
    w_neg: np.ndarray,
    groups: np.ndarray | None = None,
    n_groups: int | None = None,
) -> np.ndarray:
    """ROC AUC with every record counted as a positive of weight ``w_pos`` and a negative of
    weight ``w_neg`` (ties count one half), per group; NaN where a group lacks either class.

    Equals ``roc_auc_score(r_[ones, zeros], r_[score, score], sample_weight=r_[w_pos, w_neg])``.

    >>> weighted_auc(np.array([0.2, 0.8]), np.array([0.0, 1.0]), np.array([1.0, 0.0]))
    array([1.])
    """
    if groups is None:
        groups = np.zeros(len(score), dtype="int64")
    if n_groups is None:
        n_groups = int(groups.max()) + 1 if len(groups) else 0
    wp_total = np.bincount(groups, weights=w_pos, minlength=n_groups)
    wn_total = np.bincount(groups, weights=w_neg, minlength=n_groups)
    if not len(score):
        return np.full(n_groups, np.nan)
    order = np.lexsort((score, groups))
    g, s, wp, wn = groups[order], score[order], w_pos[order], w_neg[order]
    new = np.r_[True, (g[1:] != g[:-1]) | (s[1:] != s[:-1])]
    key = np.cumsum(new) - 1  # one key per distinct (group, score)
    kp, kn, kg = np.bincount(key, weights=wp), np.bincount(key, weights=wn), g[new]
    before = np.cumsum(kn) - kn  # negative weight of every earlier key, all groups
    first = np.r_[True, kg[1:] != kg[:-1]]
    below = before - before[first][np.cumsum(first) - 1]  # … within the key's own group
    num = np.bincount(kg, weights=kp * (below + 0.5 * kn), minlength=n_groups)
    den = wp_total * wn_total
    return np.divide(num, den, out=np.full(n_groups, np.nan), where=den > 0)


def _safe(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype="float64"), where=den > 0)


def cbpe_metrics(
    prob: np.ndarray,
    score: np.ndarray,
    threshold: float = 0.5,
    groups: np.ndarray | None = None,
    n_groups: int | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Estimated ``(value, standard error)`` per group of every binary metric.

    ``prob`` is the calibrated probability of each record, ``score`` the model's own score (it
    sets the predicted label, ``score >= threshold``, and ranks the records for AUC). With
    ``prob`` in {0, 1} the values are scikit-learn's realized metrics with ``prob`` as labels
    (precision, recall and F1 are 0 when undefined, as with ``zero_division=0``).
    """
    if groups is None:
        groups = np.zeros(len(prob), dtype="int64")
    if n_groups is None:
        n_groups = int(groups.max()) + 1 if len(groups) else 0
    pred = (score >= threshold).astype("float64")
    var = prob * (1.0 - prob)

    def total(w: np.ndarray) -> np.ndarray:
        return np.bincount(groups, weights=w, minlength=n_groups)

    n = total(np.ones(len(prob)))
    m = total(pred)  # predicted positives: known before any label
    tp, fn = total(prob * pred), total(prob * (1.0 - pred))
    v_tp, v_fn = total(var * pred), total(var * (1.0 - pred))
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    out["accuracy"] = (_safe(tp + (n - m) - fn, n), np.sqrt(_safe(v_tp + v_fn, n**2)))
    out["precision"] = (_safe(tp, m), np.sqrt(_safe(v_tp, m**2)))
    pos = tp + fn
    out["recall"] = (_safe(tp, pos), np.sqrt(_safe(fn**2 * v_tp + tp**2 * v_fn, pos**4)))
    d = tp + m + fn  # 2TP + FP + FN, with FP = m − TP
    out["f1"] = (
        _safe(2 * tp, d),
        np.sqrt(_safe((2 * (m + fn)) ** 2 * v_tp + (2 * tp) ** 2 * v_fn, d**4)),
    )
    auc = weighted_auc(score, prob, 1.0 - prob, groups, n_groups)
    # Realized AUC = (R − N(N + 1)/2) / (N (n − N)) with R = Σ y·rank and N = Σ y, both linear
    # in the Bernoulli labels: the delta method on (R, N) gives its variance.
    r = group_ranks(score, groups)
    big_r, big_n = total(prob * r), pos
    v_r, v_n, c_rn = total(var * r * r), total(var), total(var * r)
    num, den = big_r - big_n * (big_n + 1) / 2, big_n * (n - big_n)
    with np.errstate(invalid="ignore", divide="ignore"):
        d_r = 1.0 / den
        d_n = (-(big_n + 0.5) * den - num * (n - 2 * big_n)) / den**2
        v_auc = d_r**2 * v_r + d_n**2 * v_n + 2 * d_r * d_n * c_rn
    se_auc = np.sqrt(np.clip(np.nan_to_num(v_auc), 0, None))
    out["auc_roc"] = (auc, np.where(np.isfinite(auc), se_auc, np.nan))
    return out


def group_ranks(score: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The 1-based rank of each score within its group, ties given their average rank.

    >>> group_ranks(np.array([0.3, 0.1, 0.3, 0.5]), np.array([0, 0, 0, 1]))
    array([2.5, 1. , 2.5, 1. ])
    """
    if not len(score):
        return np.empty(0)
    order = np.lexsort((score, groups))
    g, s = groups[order], score[order]
    new = np.r_[True, (g[1:] != g[:-1]) | (s[1:] != s[:-1])]
    key = np.cumsum(new) - 1
    count = np.bincount(key)
    before = np.cumsum(count) - count
    kg = g[new]
    first = np.r_[True, kg[1:] != kg[:-1]]
    within = before - before[first][np.cumsum(first) - 1]
    ranks = np.empty(len(score))
    ranks[order] = (within + (count + 1) / 2.0)[key]
    return ranks


# ---------------------------------------------------------------------------------------------
# DLE: a gradient-boosting model of each record's error
# ---------------------------------------------------------------------------------------------
@dataclass
class LossModel:
    """Direct loss estimation fitted on the reference: models of |error| and error²."""

    features: list[str]
    abs_model: Any = field(repr=False)
    sq_model: Any = field(repr=False)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.clip(self.abs_model.predict(X), 0, None),
            np.clip(self.sq_model.predict(X), 0, None),
        )


def _feature_columns(table: pa.Table, prediction: str) -> list[str]:
    skip = {"endpoint", "variant", "capture_id", "record_index", "event_id", "inference_id",
            "inference_time", "ground_truth", "ground_truth_value", "label_hour"}
    cols = []
    for name in table.column_names:
        if name in skip or (name.startswith("output_") and name != prediction):
            continue
        t = table.schema.field(name).type
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
            cols.append(name)
    if prediction not in cols:
        cols.append(prediction)
    return cols


def _matrix(table: pa.Table, columns: list[str]) -> np.ndarray:
    if not columns:
        return np.empty((table.num_rows, 0))
    return np.column_stack(
        [
            _numeric(table[c]) if c in table.column_names else np.full(table.num_rows, np.nan)
            for c in columns
        ]
    )


def fit_loss_model(X: np.ndarray, y: np.ndarray, pred: np.ndarray, features: list[str],
                   seed: int = 0) -> LossModel:
    """Train DLE's two error models on the reference (features ``X`` include the prediction)."""
    _require_sklearn()
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    def model():
        return HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05,
                                             min_samples_leaf=20, random_state=seed)

    err = pred - y
    with threadpool_limits(1):  # OpenMP on a busy box is 40x slower; the models are small
        return LossModel(features, model().fit(X, np.abs(err)), model().fit(X, err**2))


def dle_metrics(
    abs_hat: np.ndarray, sq_hat: np.ndarray, groups: np.ndarray, n_groups: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Estimated ``(value, standard error)`` per group of MAE and RMSE from each record's
    predicted |error| (``abs_hat``) and error² (``sq_hat``).

    Per record ``Var|e| = E e² − (E|e|)²`` and ``Var e² = 2 (E e²)²`` (as for a normal error);
    the RMSE's error follows from the MSE's by the delta method.
    """
    n = np.bincount(groups, minlength=n_groups).astype("float64")
    mae = _safe(np.bincount(groups, weights=abs_hat, minlength=n_groups), n)
    rmse = np.sqrt(_safe(np.bincount(groups, weights=sq_hat, minlength=n_groups), n))
    v_abs = np.bincount(groups, weights=np.clip(sq_hat - abs_hat**2, 0, None), minlength=n_groups)
    v_sq = np.bincount(groups, weights=2 * sq_hat**2, minlength=n_groups)
    se_mse = np.sqrt(_safe(v_sq, n**2))
    return {
        "mae": (mae, np.sqrt(_safe(v_abs, n**2))),
        "rmse": (rmse, _safe(se_mse, 2 * rmse)),  # d√x = dx / 2√x
    }


# ---------------------------------------------------------------------------------------------
# The analysis over a capture tree
# ---------------------------------------------------------------------------------------------
@dataclass
class EstimateResult:
    """Estimated (and, where labels exist, realized) quality per window and metric.

    ``metrics`` is the ``estimated_quality`` view's table (see :data:`SCHEMA`);
    ``constraints`` the thresholds taken from the reference (Model Monitor's constraints.json
    shape); ``violations`` a row per window and crossed threshold; ``constraint_violations``
    the whole window's violations as in ``constraint_violations.json``.
    """

    problem_type: str
    prediction: str
    threshold: float
    confidence: float
    endpoint: str | None
    reference: dict[str, Any]
    metrics: pa.Table
    constraints: dict
    violations: pa.Table
    calibration: Calibration | None = None
    loss_model: LossModel | None = None

    @property
    def constraint_violations(self) -> dict:
        rows = self.violations.filter(pc.equal(self.violations["granularity"], "window"))
        return {"violations": rows.select(
            ["metric_name", "constraint_check_type", "description"]).to_pylist()}

    def metric(self, name: str, granularity: str | None = None) -> list[dict]:
        """The rows of one metric (optionally one granularity) as dicts."""
        t = self.metrics.filter(pc.equal(self.metrics["metric"], name))
        if granularity is not None:
            t = t.filter(pc.equal(t["granularity"], granularity))
        return t.to_pylist()

    def write(self, out: str | Path) -> Path:
        """constraints.json, constraint_violations.json, estimated_quality.parquet and
        violations.parquet (every window) under ``out``."""
        import pyarrow.parquet as pq

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "constraints.json").write_text(json.dumps(self.constraints, indent=2) + "\n")
        (out / "constraint_violations.json").write_text(
            json.dumps(self.constraint_violations, indent=2) + "\n"
        )
        pq.write_table(self.metrics, out / "estimated_quality.parquet")
        pq.write_table(self.violations, out / "violations.parquet")
        return out


def _one_endpoint(table: pa.Table, what: str) -> str | None:
    if "endpoint" not in table.column_names or not table.num_rows:
        return None
    eps = sorted(pc.unique(table["endpoint"]).to_pylist())
    if len(eps) > 1:
        raise ConfigError(
            f"the {what} holds {len(eps)} endpoints ({', '.join(eps)}); quality is estimated "
            "per model: pass endpoint=... (--endpoint)"
        )
    return eps[0]


def _windows(table: pa.Table, by: str) -> tuple[np.ndarray, pa.Array]:
    """Group id of every row and the groups' start times (sorted)."""
    floor = pc.floor_temporal(table["inference_time"], unit=by).combine_chunks()
    as_int = floor.cast(pa.int64()).to_numpy(zero_copy_only=False)
    uniq, ids = np.unique(as_int, return_inverse=True)
    return ids.astype("int64"), pa.array(uniq, pa.int64()).cast(floor.type)


def _metric_rows(parts, estimate, names, limits, realized, endpoint, z):
    """The ``estimated_quality`` table and the violation rows: one per window and metric."""
    columns: dict[str, list] = {f.name: [] for f in SCHEMA}
    violations: list[dict] = []
    for gran, ids, starts in parts:
        k = len(starts)
        est = estimate(ids, k)
        counts = np.bincount(ids, minlength=k)
        start_list = starts.to_pylist()
        for name in names:
            value, se = est[name]
            lo, hi = value - z * se, value + z * se
            if name not in LOWER_IS_BETTER:
                lo, hi = np.clip(lo, 0, 1), np.clip(hi, 0, 1)
            else:
                lo = np.clip(lo, 0, None)
            limit = limits.get(name)
            if limit is None:
                alert = np.zeros(k, bool)
            elif name in LOWER_IS_BETTER:
                alert = lo > limit
            else:
                alert = hi < limit
            alert &= np.isfinite(value)
            check = "GreaterThanThreshold" if name in LOWER_IS_BETTER else "LessThanThreshold"
            for i in range(k):  # one row per window and metric, not per record
                r = realized.get((gran, start_list[i]), {})
                v = float(value[i]) if np.isfinite(value[i]) else None
                columns["endpoint"].append(endpoint)
                columns["window_start"].append(start_list[i])
                columns["granularity"].append(gran)
                columns["metric"].append(name)
                columns["estimated"].append(v)
                columns["lower"].append(float(lo[i]) if v is not None else None)
                columns["upper"].append(float(hi[i]) if v is not None else None)
                columns["realized"].append(r.get(name) if r.get("labelled") else None)
                columns["records"].append(int(counts[i]))
                columns["labelled"].append(int(r.get("labelled", 0)))
                columns["threshold"].append(limit)
                columns["alert"].append(bool(alert[i]))
                if alert[i]:
                    violations.append({
                        "window_start": start_list[i],
                        "granularity": gran,
                        "metric_name": name,
                        "constraint_check_type": check,
                        "description": f"Metric {name} with {value[i]:.4g} was {check} {limit:.4g}",
                    })
    return pa.table(columns, schema=SCHEMA), violations


def estimate_quality(
    source: Any,
    *,
    reference_start: Any,
    reference_end: Any,
    threshold: float = 0.5,
    prediction: str | None = None,
    problem_type: str | None = None,
    calibration: str = "auto",
    confidence: float = 0.95,
    by: str = "hour",
    start: Any = None,
    end: Any = None,
    endpoint: str | None = None,
    variant: str | None = None,
    thresholds: dict[str, float] | None = None,
) -> EstimateResult:
    """Estimate model quality per ``by`` window from the predictions alone.

    ``source`` is a :class:`~captureq.CaptureTree` opened with ``labels=``; the reference is
    ``[reference_start, reference_end)`` of it and must have ground truth; the analysed window is
    the tree narrowed by ``start``/``end``/``endpoint``/``variant``. ``problem_type`` is
    BinaryClassification (CBPE) or Regression (DLE), inferred from the reference when omitted.
    ``thresholds`` overrides the alert thresholds that default to the reference's realized
    metrics. The result's table becomes the tree's ``estimated_quality`` view. Records without
    a score (no captured output) cannot be estimated and are not counted in ``records``.
    """
    from ..plan import ScanPlan as CaptureTree

    if by not in ("hour", "day"):
        raise ConfigError(f"by must be 'hour' or 'day', got {by!r}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be between 0 and 1, got {confidence}")
    if not isinstance(source, CaptureTree):
        raise ConfigError("estimate_quality needs a CaptureTree: captureq.open(uri, labels=...)")
    if not source.labels_uri:
        raise ConfigError(
            "the reference window needs ground truth: open the tree with labels=... (--labels)"
        )
    tree = source._narrow({"endpoint": endpoint, "variant": variant})
    ref_tree = tree.where(start=reference_start, end=reference_end)
    ref = ref_tree.predictions()
    ep = _one_endpoint(ref, "reference window")
    pred_col = pick_prediction(ref, prediction) if ref.num_rows else (prediction or "")
    if not ref.num_rows:
        raise ConfigError(
            f"no predictions between {reference_start} and {reference_end}: check the reference "
            "window and the endpoint"
        )
    ref_y = _numeric(ref["ground_truth_value"])
    ref_s = _numeric(ref[pred_col])
    lab = ~np.isnan(ref_y) & ~np.isnan(ref_s)
    if lab.sum() < MIN_REFERENCE:
        raise ConfigError(
            f"the reference window has {int(lab.sum())} labelled records; at least "
            f"{MIN_REFERENCE} are needed: widen --reference-start/--reference-end or wait for "
            "labels"
        )
    if problem_type is None:
        ok = np.isin(ref_y[lab], (0.0, 1.0)).all()
        problem_type = BINARY if ok and len(np.unique(ref_y[lab])) == 2 else REGRESSION
    if problem_type not in (BINARY, REGRESSION):
        raise ConfigError(
            f"quality estimation supports {BINARY} (CBPE) and {REGRESSION} (DLE), "
            f"got {problem_type!r}"
        )

    table = tree._narrow({"start": start, "end": end}).predictions()
    if ep is not None and table.num_rows and "endpoint" in table.column_names:
        table = table.filter(pc.equal(table["endpoint"], ep))
    score = _numeric(table[pred_col]) if pred_col in table.column_names else np.empty(0)
    keep = ~np.isnan(score)
    table, score = table.filter(pa.array(keep)), score[keep]
    z = NormalDist().inv_cdf(0.5 + confidence / 2)

    cal = loss = None
    if problem_type == BINARY:
        y, s = ref_y[lab], ref_s[lab]
        if len(np.unique(y)) < 2:
            raise ConfigError("the reference window's labels hold one class: widen it")
        cal = fit_calibration(y, s, method=calibration)
        prob = cal(score)
        names = BINARY_METRICS
        ref_metrics = binary_metrics(y, s, threshold)
        reference_values = {k: ref_metrics[k] for k in names}

        def estimate(groups, n_groups):
            return cbpe_metrics(prob, score, threshold, groups, n_groups)

    else:
        features = _feature_columns(ref, pred_col)
        Xr = _matrix(ref, features)[lab]
        loss = fit_loss_model(Xr, ref_y[lab], ref_s[lab], features)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            a_hat, s_hat = loss.predict(_matrix(table, features))
        names = REGRESSION_METRICS
        err = ref_s[lab] - ref_y[lab]
        reference_values = {"mae": float(np.mean(np.abs(err))),
                            "rmse": float(np.sqrt(np.mean(err**2)))}

        def estimate(groups, n_groups):
            return dle_metrics(a_hat, s_hat, groups, n_groups)

    limits = dict(reference_values)
    if thresholds:
        unknown = set(thresholds) - set(names)
        if unknown:
            raise ConfigError(f"no metric {sorted(unknown)}; thresholds take {list(names)}")
        limits.update(thresholds)

    # -- realized side: the predictions view through model_quality -------------------------
    realized: dict[tuple[str, Any], dict] = {}
    if table.num_rows:
        q = model_quality(table, problem_type=problem_type, prediction=pred_col,
                          threshold=threshold, by=by)
        for r in q.metrics.to_pylist():
            realized[(r["granularity"], r["window_start"])] = r

    parts = []
    if table.num_rows:
        ids, starts = _windows(table, by)
        whole = pc.min(pc.floor_temporal(table["inference_time"], unit=by)).as_py()
        parts = [(by, ids, starts),
                 ("window", np.zeros(table.num_rows, dtype="int64"), pa.array([whole], starts.type))]
    metrics, violations = _metric_rows(parts, estimate, names, limits, realized, ep, z)
    section = ("binary_classification_constraints" if problem_type == BINARY
               else "regression_constraints")
    constraints = {
        "version": 0.0,
        section: {
            name: {
                "threshold": limits[name],
                "comparison_operator": "GreaterThanThreshold" if name in LOWER_IS_BETTER
                else "LessThanThreshold",
            }
            for name in names
            if limits.get(name) is not None
        },
    }
    result = EstimateResult(
        problem_type=problem_type,
        prediction=pred_col,
        threshold=threshold,
        confidence=confidence,
        endpoint=ep,
        reference={"start": reference_start, "end": reference_end, "records": ref.num_rows,
                   "labelled": int(lab.sum()), **reference_values},
        metrics=metrics,
        constraints=constraints,
        violations=pa.Table.from_pylist(violations, schema=VIOLATION_SCHEMA),
        calibration=cal,
        loss_model=loss,
    )
    source._add_view("estimated_quality", metrics)  # on every connection, now and later
    return result
