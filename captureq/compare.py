"""Two models' answers to the same requests, side by side: a baseline variant and a candidate.

The candidate is a variant of the same tree or of another tree (``captureq replay`` writes the
candidate's answers as a capture tree: the original ``eventId``/``inferenceId`` and
``inferenceTime``, the candidate's name as the variant, ``replayLatencyMs`` and ``replayTime``
in ``eventMetadata``, a failed request as a capture with ``replayError`` and no output).

**Pairing.** A request is known by ``(inference_id, event_id, inference_time)`` — never by its
event id alone, which real data repeats — and a record by that key plus its ``record_index``.
A key held by more than one capture on either side cannot be paired and is counted in
``ambiguous_requests``; a baseline request without a candidate capture is ``missing``, one the
candidate answered with an error counts in its error rate. Everything is joined with polars over
whole columns.

**What is compared** (:class:`CompareResult`): agreement (the share of records whose predicted
labels are equal — for scores at ``threshold``; for regression within ``tolerance``), the flip
matrix (baseline label × candidate label), the distribution of score differences (candidate −
baseline) and the records that differ most with their inputs; the features whose distributions
differ most between agreeing and disagreeing records (two-sample Kolmogorov–Smirnov for numbers,
Pearson's chi-square for categories, ranked by p-value); both models' quality on the same
labelled records (the metrics of :mod:`captureq.monitor.quality`) with a seeded, paired
bootstrap interval of each difference; an estimate on the records without labels (CBPE for
scores, DLE for regression: :mod:`captureq.monitor.estimate`); and each side's latency
percentiles and error rate over the paired requests.

>>> import captureq                                                        # doctest: +SKIP
>>> cq = captureq.open("capture", labels="groundtruth")                    # doctest: +SKIP
>>> r = compare(cq, baseline="AllTraffic", candidate="xgb-v2")             # doctest: +SKIP
>>> r.summary["agreement"], r.summary["accuracy_diff"]                     # doctest: +SKIP
(0.962, -0.004)
>>> r.check(["agreement<0.95"])                                            # doctest: +SKIP
[]
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ConfigError
from .monitor.problem import (
    BINARY,
    MULTICLASS,
    REGRESSION,
    ModelType,
    _number_text,
    choose,
    encode,
    to_float,
)

KEY = ["inference_id", "event_id", "inference_time"]
META_COLUMNS = frozenset({"capture_id", "record_index", "endpoint", "variant", "event_id",
                          "inference_id", "inference_time", "ground_truth", "ground_truth_value",
                          "label_hour"})  # fmt: skip
ERROR_KEYS = ("replayError", "error")  # eventMetadata keys that mark a failed request
LATENCY_KEY = "replayLatencyMs"
QUALITY_METRICS = {
    BINARY: ("accuracy", "precision", "recall", "f1", "auc_roc"),
    MULTICLASS: ("accuracy", "weighted_f1"),
    REGRESSION: ("mae", "rmse", "r2"),
}
ESTIMATED_METRICS = {BINARY: ("accuracy", "precision", "recall", "f1", "auc_roc"),
                     REGRESSION: ("mae", "rmse")}  # fmt: skip
DIFF_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
LATENCY_QUANTILES = (0.5, 0.9, 0.95, 0.99)
MAX_CATEGORIES = 20  # a categorical feature's most common values; the rest are one "other"
BOOTSTRAP_CELLS = 2_000_000  # resampled values held at once (replicates × records)
OPERATORS = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}


# ---------------------------------------------------------------------------------------------
# metric names (what --fail-if accepts)
# ---------------------------------------------------------------------------------------------
def metric_names(problem_type: str) -> list[str]:
    """Every name in :attr:`CompareResult.summary` for ``problem_type``: what ``--fail-if``
    accepts."""
    names = ["requests_baseline", "requests_candidate", "paired_requests", "missing_requests",
             "extra_requests", "ambiguous_requests", "missing_rate", "records_compared",
             "unanswered_records", "agreement", "flip_rate", "error_rate_baseline",
             "error_rate_candidate", "error_rate_diff"]  # fmt: skip
    for side in ("baseline", "candidate"):
        names += [f"latency_mean_{side}"] + [
            f"latency_p{round(q * 100)}_{side}" for q in LATENCY_QUANTILES
        ]
    if problem_type != MULTICLASS:
        names += ["score_diff_mean", "score_diff_std", "score_diff_abs_mean", "score_diff_min",
                  "score_diff_max"] + [f"score_diff_p{round(q * 100):02d}" for q in DIFF_QUANTILES]
    names.append("labelled_records")
    for m in QUALITY_METRICS[problem_type]:
        names += [f"{m}_baseline", f"{m}_candidate", f"{m}_diff", f"{m}_diff_lower",
                  f"{m}_diff_upper"]  # fmt: skip
    for m in ESTIMATED_METRICS.get(problem_type, ()):
        names += [f"estimated_{m}_baseline", f"estimated_{m}_candidate", f"estimated_{m}_diff"]
    return names


_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*(\S+)\s*$")


def parse_fail_if(text: str) -> tuple[str, str, float]:
    """``"agreement<0.95"`` → ``("agreement", "<", 0.95)``: a condition that fails the run when
    it holds.

    >>> parse_fail_if("accuracy_diff <= -0.01")
    ('accuracy_diff', '<=', -0.01)
    """
    m = _CONDITION.match(text)
    value = None
    if m:
        try:
            value = float(m.group(3))
        except ValueError:
            value = None
    if not m or value is None or math.isnan(value):
        raise ConfigError(
            f"--fail-if {text!r} is not METRIC<VALUE: write e.g. agreement<0.95 or "
            "accuracy_diff<-0.01 (operators <, <=, >, >=)"
        )
    return m.group(1), m.group(2), value


# ---------------------------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------------------------
@dataclass
class CompareResult:
    """The comparison of ``candidate`` against ``baseline`` on the same requests.

    ``summary``: every headline number by name (:func:`metric_names`; None where it cannot be
    computed, such as quality without labels); ``flips``: ``baseline, candidate, count`` (the
    predicted labels; empty for regression); ``score_diff``: ``statistic, value`` of candidate −
    baseline scores; ``diff_histogram``: the differences in 30 equal bins; ``top``: the records
    that differ most, with their inputs; ``slices``: one row per input feature, agreeing vs
    disagreeing records, most different first; ``quality``: both models' metrics on the same
    labelled records with the bootstrap interval of the difference; ``estimate``: CBPE/DLE on
    the records without labels; ``latency``: per side, over the paired requests; ``notes``:
    what could not be computed and why.
    """

    baseline: str
    candidate: str
    endpoint: str | None
    model_type: ModelType
    tolerance: float
    confidence: float
    bootstrap: int
    summary: dict[str, Any]
    flips: pa.Table
    score_diff: pa.Table
    diff_histogram: pa.Table
    top: pa.Table
    slices: pa.Table
    quality: pa.Table
    estimate: pa.Table
    latency: pa.Table
    notes: list[str] = field(default_factory=list)

    @property
    def problem_type(self) -> str:
        return self.model_type.problem_type

    @property
    def threshold(self) -> float:
        return self.model_type.threshold

    @property
    def metrics(self) -> pa.Table:
        """``metric, value``: the summary as a table (what ``--format csv|json`` prints)."""
        names = [n for n in metric_names(self.problem_type) if n in self.summary]
        values = [self.summary[n] for n in names]
        return pa.table({"metric": pa.array(names, pa.string()),
                         "value": pa.array([None if v is None else float(v) for v in values],
                                           pa.float64())})  # fmt: skip

    def check(self, conditions: list[str]) -> tuple[list[str], list[str]]:
        """The ``--fail-if`` conditions that hold (each as a sentence), and those that could not
        be checked (the metric has no value, e.g. quality without labels).

        A name that is not a metric of this comparison is a :class:`ConfigError` listing them.
        """
        parsed = [parse_fail_if(c) for c in conditions]
        known = metric_names(self.problem_type)
        for name, _, _ in parsed:
            if name not in known:
                raise ConfigError(
                    f"--fail-if: no metric {name!r} for {self.problem_type}; the metrics are "
                    + ", ".join(known)
                )
        tripped, unchecked = [], []
        for name, op, limit in parsed:
            value = self.summary.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                unchecked.append(f"{name}{op}{limit:g}: {name} has no value")
            elif OPERATORS[op](value, limit):
                tripped.append(f"{name} is {value:.6g}, and --fail-if {name}{op}{limit:g}")
        return tripped, unchecked

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain Python (JSON-ready apart from NaN)."""
        return {
            "baseline": self.baseline, "candidate": self.candidate, "endpoint": self.endpoint,
            "model": self.model_type.describe(), "summary": self.summary,
            "flips": self.flips.to_pylist(), "score_diff": self.score_diff.to_pylist(),
            "quality": self.quality.to_pylist(), "estimate": self.estimate.to_pylist(),
            "latency": self.latency.to_pylist(), "slices": self.slices.to_pylist(),
            "notes": self.notes,
        }  # fmt: skip


# ---------------------------------------------------------------------------------------------
# pairing
# ---------------------------------------------------------------------------------------------
def _requests(caps: pa.Table):
    """One row per capture: its key, whether it failed, its latency, how often its key occurs."""
    import polars as pl

    df = pl.from_arrow(caps.select(["capture_id", *KEY, "event_metadata", "output_data"]))
    meta = pl.col("event_metadata")
    failed = pl.col("output_data").is_null()
    for key in ERROR_KEYS:
        failed = failed | meta.str.json_path_match(f"$.{key}").is_not_null()
    return df.select(
        "capture_id", *KEY,
        failed.alias("error"),
        meta.str.json_path_match(f"$.{LATENCY_KEY}").cast(pl.Float64, strict=False)
        .alias("latency_ms"),
        pl.len().over(KEY).alias("copies"),
    )  # fmt: skip


def pair_requests(base_caps: pa.Table, cand_caps: pa.Table) -> tuple[Any, dict[str, int]]:
    """The paired requests (a polars frame: ``capture_id``, ``capture_id_c``, key, ``error``,
    ``error_c``, ``latency_ms``, ``latency_ms_c``) and the counts of what was not paired."""
    import polars as pl

    b, c = _requests(base_caps), _requests(cand_caps)
    repeated = pl.concat([b.filter(pl.col("copies") > 1).select(KEY),
                          c.filter(pl.col("copies") > 1).select(KEY)]).unique()  # fmt: skip
    bu = b.join(repeated, on=KEY, how="anti", nulls_equal=True)
    cu = c.join(repeated, on=KEY, how="anti", nulls_equal=True)
    pairs = bu.join(cu, on=KEY, how="inner", nulls_equal=True, suffix="_c")
    counts = {
        "requests_baseline": b.height,
        "requests_candidate": c.height,
        "paired_requests": pairs.height,
        "missing_requests": bu.height - pairs.height,
        "extra_requests": cu.height - pairs.height,
        "ambiguous_requests": b.height - bu.height,
    }
    return pairs, counts


def _one_endpoint(tree: Any, caps: pa.Table, what: str, variant: str) -> str:
    if not caps.num_rows:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            said = " ".join(tree.scan().warnings)
        raise ConfigError(
            f"no captures of the {what} variant {variant!r} in {tree.uri} for this window"
            + (f": {said}" if said else "; check the variant's name and --start/--end")
        )
    eps = sorted(pc.unique(caps["endpoint"]).to_pylist())
    if len(eps) > 1:
        raise ConfigError(
            f"the {what} variant {variant!r} is in {len(eps)} endpoints ({', '.join(eps)}); "
            "a comparison is per endpoint: pass endpoint=... (--endpoint)"
        )
    return eps[0]


# ---------------------------------------------------------------------------------------------
# the paired bootstrap (vectorized over replicates × records)
# ---------------------------------------------------------------------------------------------
def _safe(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype="float64")
    return np.divide(num, den, out=np.zeros_like(num), where=np.asarray(den) > 0)


def bootstrap_metrics(
    problem_type: str, y: np.ndarray, pred: np.ndarray, idx: np.ndarray, threshold: float = 0.5
) -> dict[str, np.ndarray]:
    """The quality metrics of every resample: row ``i`` of ``idx`` (replicates × records) holds
    the positions drawn for replicate ``i``. Values are those of
    :mod:`captureq.monitor.quality` on ``y[idx[i]]``, ``pred[idx[i]]`` (NaN for an AUC of one
    class), computed for all replicates at once.
    """
    k, n = idx.shape
    if problem_type == BINARY:
        t, p = y[idx] >= 0.5, pred[idx] >= threshold
        tp, fp = (t & p).sum(1), (~t & p).sum(1)
        fn, tn = (t & ~p).sum(1), (~t & ~p).sum(1)
        # AUC: how often each record was drawn, in score order (sorted once for every
        # replicate); per distinct score the drawn positives meet the negatives below it (and
        # half of those tied with it)
        order = np.argsort(pred, kind="mergesort")
        s, pos = pred[order], y[order] >= 0.5
        where = np.empty(n, dtype="int64")
        where[order] = np.arange(n)
        drawn = np.bincount((np.arange(k)[:, None] * n + where[idx]).ravel(),
                            minlength=k * n).reshape(k, n).astype("float64")  # fmt: skip
        starts = np.r_[0, np.nonzero(np.diff(s))[0] + 1]
        w_pos = np.add.reduceat(drawn * pos, starts, axis=1)
        w_neg = np.add.reduceat(drawn * ~pos, starts, axis=1)
        below = np.cumsum(w_neg, axis=1) - w_neg
        den = w_pos.sum(1) * w_neg.sum(1)
        auc = np.divide((w_pos * (below + 0.5 * w_neg)).sum(1), den,
                        out=np.full(k, np.nan), where=den > 0)  # fmt: skip
        return {
            "accuracy": (tp + tn) / n,
            "precision": _safe(tp, tp + fp),
            "recall": _safe(tp, tp + fn),
            "f1": _safe(2 * tp, 2 * tp + fp + fn),
            "auc_roc": auc,
        }
    if problem_type == MULTICLASS:
        _, codes = np.unique(np.concatenate([y, pred]), return_inverse=True)
        classes = int(codes.max()) + 1 if len(codes) else 0
        yt, yp = codes[:n][idx], codes[n:][idx]
        row = np.arange(k)[:, None] * classes
        correct = yt == yp
        support = np.bincount((row + yt).ravel(), minlength=k * classes).reshape(k, classes)
        predicted = np.bincount((row + yp).ravel(), minlength=k * classes).reshape(k, classes)
        tp = np.bincount((row + yt).ravel(), weights=correct.ravel().astype("float64"),
                         minlength=k * classes).reshape(k, classes)  # fmt: skip
        f1 = _safe(2 * tp, support + predicted)
        return {"accuracy": correct.mean(1),
                "weighted_f1": _safe((f1 * support).sum(1), support.sum(1))}  # fmt: skip
    err = pred[idx] - y[idx]
    yy = y[idx]
    mse = (err**2).mean(1)
    ss_res = (err**2).sum(1)
    ss_tot = ((yy - yy.mean(1, keepdims=True)) ** 2).sum(1)
    r2 = np.where(ss_tot > 0, 1 - _safe(ss_res, ss_tot), np.where(ss_res == 0, 1.0, 0.0))
    return {"mae": np.abs(err).mean(1), "rmse": np.sqrt(mse), "r2": r2}


def paired_bootstrap(
    problem_type: str, y: np.ndarray, base: np.ndarray, cand: np.ndarray, *,
    replicates: int, confidence: float, seed: int, threshold: float = 0.5,
) -> dict[str, tuple[float, float]]:
    """``(lower, upper)`` of each metric's difference (candidate − baseline): the same records
    are drawn for both models in each replicate; seeded; blocks of replicates at a time."""
    n = len(y)
    if not replicates or n < 2:
        return {}
    rng = np.random.default_rng(seed)
    per_block = max(1, BOOTSTRAP_CELLS // n)
    diffs: dict[str, list[np.ndarray]] = {}
    for first in range(0, replicates, per_block):  # blocks of replicates, never records
        idx = rng.integers(0, n, size=(min(per_block, replicates - first), n))
        mb = bootstrap_metrics(problem_type, y, base, idx, threshold)
        mc = bootstrap_metrics(problem_type, y, cand, idx, threshold)
        for name in mb:
            diffs.setdefault(name, []).append(mc[name] - mb[name])
    alpha = (1 - confidence) / 2
    out = {}
    for name, parts in diffs.items():
        d = np.concatenate(parts)
        d = d[~np.isnan(d)]
        out[name] = (float(np.quantile(d, alpha)), float(np.quantile(d, 1 - alpha))) if len(d) \
            else (None, None)
    return out


# ---------------------------------------------------------------------------------------------
# where they disagree
# ---------------------------------------------------------------------------------------------
def _is_numeric(arr: pa.ChunkedArray) -> bool:
    t = arr.type
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def disagreement_slices(features: pa.Table, agree: np.ndarray) -> pa.Table:
    """Per feature, how its distribution differs between agreeing and disagreeing records:
    numbers by the two-sample KS statistic, categories (text, booleans; the
    ``MAX_CATEGORIES`` most common values and "other") by Pearson's chi-square; ranked by
    p-value, then statistic. ``where`` names the values over-represented among disagreements."""
    import polars as pl

    from .monitor.drift import chi2_homogeneity, ks_pvalue, ks_statistic

    rows = []
    for name in features.column_names:  # one pass per feature, vectorized over records
        col = features[name]
        if _is_numeric(col):
            v = to_float(col)
            a, d = np.sort(v[agree & ~np.isnan(v)]), np.sort(v[~agree & ~np.isnan(v)])
            if not len(a) or not len(d):
                continue
            stat = ks_statistic(a, np.ones(len(a)), d)
            lo, hi = np.quantile(d, [0.25, 0.75])
            rows.append({"feature": name, "test": "ks", "statistic": stat,
                         "p_value": ks_pvalue(stat, len(a), len(d)),
                         "agreeing": len(a), "disagreeing": len(d),
                         "where": f"disagreeing: median {np.median(d):.4g} (middle half "
                                  f"{lo:.4g}–{hi:.4g}); agreeing: median {np.median(a):.4g}"})  # fmt: skip
            continue
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
                or pa.types.is_boolean(col.type)):  # fmt: skip
            continue
        df = pl.DataFrame({"v": pl.from_arrow(col.cast(pa.string())), "agree": agree})
        df = df.filter(pl.col("v").is_not_null())
        if df.is_empty():
            continue
        top = df.group_by("v").len().sort(["len", "v"], descending=[True, False]).head(MAX_CATEGORIES)
        counts = (
            df.with_columns(pl.when(pl.col("v").is_in(top["v"].implode())).then(pl.col("v"))
                            .otherwise(pl.lit("other")).alias("v"))
            .group_by("v").agg(pl.col("agree").sum().alias("a"), (~pl.col("agree")).sum().alias("d"))
            .sort("v")
        )  # fmt: skip
        a, d = counts["a"].to_numpy().astype("float64"), counts["d"].to_numpy().astype("float64")
        if not a.sum() or not d.sum():
            continue
        stat, p = chi2_homogeneity(a, d)
        excess = d / d.sum() - a / a.sum()
        i = int(np.argmax(excess))
        rows.append({"feature": name, "test": "chi2", "statistic": stat, "p_value": p,
                     "agreeing": int(a.sum()), "disagreeing": int(d.sum()),
                     "where": f"{counts['v'][i]!s}: {d[i] / d.sum():.0%} of disagreeing vs "
                              f"{a[i] / a.sum():.0%} of agreeing"})  # fmt: skip
    schema = pa.schema([("feature", pa.string()), ("test", pa.string()),
                        ("statistic", pa.float64()), ("p_value", pa.float64()),
                        ("agreeing", pa.int64()), ("disagreeing", pa.int64()),
                        ("where", pa.string())])  # fmt: skip
    rows.sort(key=lambda r: (r["p_value"], -r["statistic"]))
    return pa.Table.from_pylist(rows, schema=schema)


# ---------------------------------------------------------------------------------------------
# the comparison
# ---------------------------------------------------------------------------------------------
def _labels_as_text(enc, values: np.ndarray) -> pa.Array:
    """Encoded classes (positions in ``enc.classes``, or class numbers) as their names."""
    if enc.classes is not None:
        names = pa.array(enc.classes, pa.string())
        return pc.take(names, pa.array(values, mask=np.isnan(values)).cast(pa.int64()))
    return _number_text(values)


def _features(table: pa.Table) -> list[str]:
    return [c for c in table.column_names
            if c not in META_COLUMNS and not c.startswith("output_")]  # fmt: skip


def _stats(values: np.ndarray, qs) -> list[float]:
    return [float(v) for v in np.quantile(values, qs)] if len(values) else [None] * len(qs)


def compare(
    tree: Any,
    *,
    baseline: str,
    candidate: str,
    candidate_tree: Any = None,
    endpoint: str | None = None,
    candidate_endpoint: str | None = None,
    problem_type: str | None = None,
    prediction: str | None = None,
    probability: str | list[str] | None = None,
    class_labels: list[str] | None = None,
    threshold: float = 0.5,
    tolerance: float = 0.0,
    top: int = 10,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> CompareResult:
    """Compare the ``candidate`` variant's answers with the ``baseline`` variant's on the same
    requests.

    ``tree`` is a :class:`~captureq.CaptureTree` (its labels, when opened with ``labels=``, are
    the ground truth; narrow it with ``start``/``end`` first); the candidate is a variant of
    ``tree`` or of ``candidate_tree`` (in the endpoint ``candidate_endpoint``, by default the
    baseline's). The model — problem type and prediction — is read from the baseline's outputs
    and labels (:func:`captureq.monitor.problem.choose`; ``problem_type``, ``prediction``,
    ``probability``, ``class_labels`` and ``threshold`` choose it instead) and applied to both.
    Regression records agree when they differ by at most ``tolerance``. ``top`` records that
    differ most are kept; ``bootstrap`` paired resamples (seeded by ``seed``) give the
    ``confidence`` interval of each quality difference (0: none).
    """
    import polars as pl

    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be between 0 and 1, got {confidence}")
    if bootstrap < 0:
        raise ConfigError(f"bootstrap must be 0 or more replicates, got {bootstrap}")
    notes: list[str] = []
    base_tree = tree.where(variant=baseline, **({"endpoint": endpoint} if endpoint else {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base_caps = base_tree.captures()
    ep = _one_endpoint(base_tree, base_caps, "baseline", baseline)
    other = candidate_tree if candidate_tree is not None else tree
    cand_ep = candidate_endpoint or ep
    cand_tree = other.where(variant=candidate, endpoint=cand_ep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cand_caps = cand_tree.captures()
    if not cand_caps.num_rows and candidate_tree is not None and candidate_endpoint is None:
        cand_tree = other.where(variant=candidate)  # another tree may name the endpoint otherwise
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cand_caps = cand_tree.captures()
    _one_endpoint(cand_tree, cand_caps, "candidate", candidate)

    pairs, counts = pair_requests(base_caps, cand_caps)
    summary: dict[str, Any] = dict(counts)
    summary["missing_rate"] = _safe(counts["missing_requests"], counts["requests_baseline"]).item()
    if not counts["paired_requests"]:
        notes.append(f"no request of {baseline!r} was answered by {candidate!r}: requests pair "
                     "by (inference_id, event_id, inference_time); check the variants and window")

    # -- errors and latency over the paired requests ---------------------------------------
    lat_rows = []
    for side, suffix, name in (("baseline", "", baseline), ("candidate", "_c", candidate)):
        err = pairs[f"error{suffix}"].to_numpy()
        ms = pairs[f"latency_ms{suffix}"].drop_nulls().to_numpy()
        rate = float(err.mean()) if len(err) else None
        summary[f"error_rate_{side}"] = rate
        qs = _stats(ms, LATENCY_QUANTILES)
        mean = float(ms.mean()) if len(ms) else None
        summary[f"latency_mean_{side}"] = mean
        for q, v in zip(LATENCY_QUANTILES, qs):
            summary[f"latency_p{round(q * 100)}_{side}"] = v
        lat_rows.append({"variant": name, "side": side, "requests": len(err),
                         "errors": int(err.sum()), "error_rate": rate, "latency_n": len(ms),
                         "mean_ms": mean, **{f"p{round(q * 100)}_ms": v
                                             for q, v in zip(LATENCY_QUANTILES, qs)}})  # fmt: skip
    if summary["error_rate_baseline"] is not None:
        summary["error_rate_diff"] = summary["error_rate_candidate"] - summary["error_rate_baseline"]
    if not lat_rows[0]["latency_n"]:
        notes.append(f"the baseline's captures carry no {LATENCY_KEY}: its latency is omitted")
    latency = pa.Table.from_pylist(lat_rows)

    # -- records: both sides' predictions, row by row --------------------------------------
    base_preds = base_tree.predictions()
    cand_preds = cand_tree.predictions()
    ok = pairs.filter(~pl.col("error") & ~pl.col("error_c")).select(
        "capture_id", "capture_id_c").with_row_index("pair")
    bp = pl.from_arrow(base_preds.select(["capture_id", "record_index"])).with_row_index("_rb")
    cp = pl.from_arrow(cand_preds.select(["capture_id", "record_index"])).with_row_index("_rc")
    rec = (
        bp.join(ok, on="capture_id", how="inner")
        .join(cp.rename({"capture_id": "capture_id_c"}), on=["capture_id_c", "record_index"],
              how="left")
        .sort("_rb")
    )  # fmt: skip
    base_tab = base_preds.take(pa.array(rec["_rb"].to_numpy()))
    cand_tab = cand_preds.take(rec["_rc"].to_arrow())

    model = choose(base_tab if base_tab.num_rows else base_preds, problem_type=problem_type,
                   prediction=prediction, probability=probability, class_labels=class_labels,
                   threshold=threshold)  # fmt: skip
    cand_model = model
    needed = model.probabilities or (model.prediction,)
    if any(c not in cand_tab.column_names for c in needed):
        cand_model = choose(cand_tab, problem_type=model.problem_type, threshold=threshold)
        notes.append(f"the candidate has no {', '.join(needed)}: its prediction is "
                     f"{cand_model.column}")
    enc_b = encode(base_tab, model)
    cand_for_enc = cand_tab
    for c in ("ground_truth", "ground_truth_value"):  # the baseline's labels: same requests
        if c in base_tab.column_names:
            cand_for_enc = (cand_for_enc.set_column(cand_for_enc.column_names.index(c), c,
                                                    base_tab[c].cast(cand_for_enc.schema.field(c).type))
                            if c in cand_for_enc.column_names
                            else cand_for_enc.append_column(c, base_tab[c]))  # fmt: skip
    enc_c = encode(cand_for_enc, cand_model)
    kind = model.problem_type

    if kind == MULTICLASS:
        lb, lc = _labels_as_text(enc_b, enc_b.pred), _labels_as_text(enc_c, enc_c.pred)
        comparable = (pc.is_valid(lb).to_numpy(zero_copy_only=False)
                      & pc.is_valid(lc).to_numpy(zero_copy_only=False))  # fmt: skip
        agree = pc.fill_null(pc.equal(lb, lc), False).to_numpy(zero_copy_only=False)
        sb = sc = None
    else:
        sb, sc = enc_b.pred, enc_c.pred
        comparable = ~np.isnan(sb) & ~np.isnan(sc)
        if kind == BINARY:
            yb, yc = sb >= model.threshold, sc >= cand_model.threshold
            lb = pa.array(np.where(yb, "1", "0"))
            lc = pa.array(np.where(yc, "1", "0"))
            agree = yb == yc
        else:
            agree = np.abs(sc - sb) <= tolerance
            lb = lc = None
    agree = agree & comparable
    n_cmp = int(comparable.sum())
    summary["records_compared"] = n_cmp
    summary["unanswered_records"] = int((~comparable).sum())
    summary["agreement"] = float(agree.sum() / n_cmp) if n_cmp else None
    summary["flip_rate"] = 1 - summary["agreement"] if n_cmp else None

    # -- flips -----------------------------------------------------------------------------
    flip_schema = pa.schema([("baseline", pa.string()), ("candidate", pa.string()),
                             ("count", pa.int64())])  # fmt: skip
    if lb is not None and n_cmp:
        keep = pa.array(comparable)
        flips = (
            pl.DataFrame({"baseline": pl.from_arrow(pc.filter(lb, keep)),
                          "candidate": pl.from_arrow(pc.filter(lc, keep))})
            .group_by("baseline", "candidate").len("count").sort("baseline", "candidate")
            .to_arrow().cast(flip_schema)
        )  # fmt: skip
    else:
        flips = flip_schema.empty_table()

    # -- score differences -----------------------------------------------------------------
    d_all = sc - sb if sb is not None else None
    stat_rows: list[dict] = []
    hist = pa.table({"low": pa.array([], pa.float64()), "high": pa.array([], pa.float64()),
                     "records": pa.array([], pa.int64())})  # fmt: skip
    if d_all is not None and n_cmp:
        d = d_all[comparable]
        stats = {"mean": float(d.mean()), "std": float(d.std()),
                 "abs_mean": float(np.abs(d).mean()), "min": float(d.min()),
                 "max": float(d.max())}  # fmt: skip
        for q, v in zip(DIFF_QUANTILES, _stats(d, DIFF_QUANTILES)):
            stats[f"p{round(q * 100):02d}"] = v
        for k2, v in stats.items():
            summary[f"score_diff_{k2}"] = v
            stat_rows.append({"statistic": k2, "value": v})
        counts_, edges = np.histogram(d, bins=30)
        hist = pa.table({"low": edges[:-1], "high": edges[1:], "records": counts_.astype("int64")})
    score_diff = pa.Table.from_pylist(stat_rows, schema=pa.schema(
        [("statistic", pa.string()), ("value", pa.float64())]))

    # -- the records that differ most ------------------------------------------------------
    positions = np.nonzero(comparable)[0]
    if d_all is not None:
        order = positions[np.argsort(-np.abs(d_all[positions]), kind="stable")]
    else:
        order = positions[np.argsort(agree[positions], kind="stable")]  # disagreements first
    order = order[:top]
    take = pa.array(order, pa.int64())
    top_cols: dict[str, Any] = {c: base_tab[c].take(take)
                                for c in ("event_id", "inference_id", "inference_time",
                                          "record_index")}  # fmt: skip
    if d_all is not None:
        top_cols["baseline"] = pa.array(sb[order])
        top_cols["candidate"] = pa.array(sc[order])
        top_cols["diff"] = pa.array(d_all[order])
    else:
        top_cols["baseline"] = lb.take(take)
        top_cols["candidate"] = lc.take(take)
    if "ground_truth" in base_tab.column_names:
        top_cols["ground_truth"] = base_tab["ground_truth"].take(take)
    for c in _features(base_tab):
        top_cols[c] = base_tab[c].take(take)
    top_table = pa.table(top_cols)

    # -- slices ----------------------------------------------------------------------------
    feats = _features(base_tab)
    keep = pa.array(comparable)
    slices = disagreement_slices(base_tab.select(feats).filter(keep), agree[comparable])
    if n_cmp and (agree[comparable].all() or not agree[comparable].any()):
        notes.append("the models agree on every record (or on none): no slices to compare")

    # -- quality on the same labelled records ----------------------------------------------
    labelled = comparable & enc_b.usable
    summary["labelled_records"] = int(labelled.sum())
    quality, q_y, q_b, q_c = _quality(kind, enc_b, enc_c, labelled, model, cand_model, lb, lc)
    intervals = (paired_bootstrap(kind, q_y, q_b, q_c, replicates=bootstrap,
                                  confidence=confidence, seed=seed, threshold=model.threshold)
                 if q_y is not None else {})  # fmt: skip
    q_rows = []
    for name in QUALITY_METRICS[kind]:
        vb = quality[0].get(name) if quality else None
        vc = quality[1].get(name) if quality else None
        diff = vc - vb if vb is not None and vc is not None else None
        lo, hi = intervals.get(name, (None, None))
        summary.update({f"{name}_baseline": vb, f"{name}_candidate": vc, f"{name}_diff": diff,
                        f"{name}_diff_lower": lo, f"{name}_diff_upper": hi})  # fmt: skip
        q_rows.append({"metric": name, "baseline": vb, "candidate": vc, "diff": diff,
                       "diff_lower": lo, "diff_upper": hi, "labelled": int(labelled.sum())})
    q_schema = pa.schema([("metric", pa.string()), ("baseline", pa.float64()),
                          ("candidate", pa.float64()), ("diff", pa.float64()),
                          ("diff_lower", pa.float64()), ("diff_upper", pa.float64()),
                          ("labelled", pa.int64())])  # fmt: skip
    quality_table = pa.Table.from_pylist(q_rows, schema=q_schema)
    if not labelled.any():
        notes.append("no labelled records among the pairs: quality is not measured"
                     + ("" if kind == MULTICLASS else " (see the estimate)"))

    # -- estimated quality where labels do not exist ---------------------------------------
    estimate = _estimate(kind, base_tab, feats, enc_b, sb, sc, comparable, labelled, model,
                         summary, notes)  # fmt: skip

    return CompareResult(
        baseline=baseline, candidate=candidate, endpoint=ep, model_type=model,
        tolerance=tolerance, confidence=confidence, bootstrap=bootstrap, summary=summary,
        flips=flips, score_diff=score_diff, diff_histogram=hist, top=top_table, slices=slices,
        quality=quality_table, estimate=estimate, latency=latency, notes=notes,
    )  # fmt: skip


def _quality(kind, enc_b, enc_c, labelled, model, cand_model, lb, lc):
    """Both models' metrics on the labelled pairs, and the arrays the bootstrap resamples."""
    from .monitor.quality import binary_metrics, multiclass_metrics, regression_metrics

    if not labelled.any():
        return None, None, None, None
    y = enc_b.truth[labelled]
    if kind == BINARY:
        b, c = enc_b.pred[labelled], enc_c.pred[labelled]
        if cand_model.threshold != model.threshold:  # pragma: no cover - one threshold is given
            c = c - cand_model.threshold + model.threshold
        out = tuple(binary_metrics(y, s, model.threshold) for s in (b, c))
        return out, y, b, c
    if kind == REGRESSION:
        b, c = enc_b.pred[labelled], enc_c.pred[labelled]
        return tuple(regression_metrics(y, s) for s in (b, c)), y, b, c
    keep = pa.array(labelled)
    truth = pc.filter(_labels_as_text(enc_b, enc_b.truth), keep)
    tb, tc = pc.filter(lb, keep), pc.filter(lc, keep)
    names = pc.unique(pa.concat_arrays([truth, tb, tc]))
    codes = [pc.index_in(a, value_set=names).to_numpy(zero_copy_only=False).astype("float64")
             for a in (truth, tb, tc)]  # fmt: skip
    yk, bk, ck = codes
    out = tuple(multiclass_metrics(yk, p)[0] for p in (bk, ck))
    return out, yk, bk, ck


def _estimate(kind, base_tab, feats, enc_b, sb, sc, comparable, labelled, model, summary, notes):
    """CBPE (binary) or DLE (regression) of both models on the pairs without labels."""
    from .monitor.estimate import MIN_REFERENCE

    schema = pa.schema([("metric", pa.string()), ("baseline", pa.float64()),
                        ("candidate", pa.float64()), ("diff", pa.float64()),
                        ("baseline_se", pa.float64()), ("candidate_se", pa.float64()),
                        ("records", pa.int64()), ("method", pa.string())])  # fmt: skip
    unlabelled = comparable & ~enc_b.labelled
    names = ESTIMATED_METRICS.get(kind, ())
    for name in names:
        for side in ("baseline", "candidate", "diff"):
            summary[f"estimated_{name}_{side}"] = None
    if kind == MULTICLASS or not unlabelled.any():
        if kind == MULTICLASS and unlabelled.any():
            notes.append("quality without labels is estimated for binary scores (CBPE) and "
                         "regression (DLE), not for multiclass labels")
        return schema.empty_table()
    n_ref = int(labelled.sum())
    try:
        if kind == BINARY:
            from .monitor.estimate import cbpe_metrics, fit_calibration

            ests, method = [], None
            for s in (sb, sc):
                score = s[unlabelled]
                y_ref = enc_b.truth[labelled]
                if n_ref >= MIN_REFERENCE and len(np.unique(y_ref)) == 2:
                    cal = fit_calibration(y_ref, s[labelled])
                    prob, method = cal(score), f"CBPE, {cal.method} calibration on {n_ref} labelled pairs"
                elif len(score) and (score >= 0).all() and (score <= 1).all():
                    prob = score
                    method = (f"CBPE, scores taken as calibrated ({n_ref} labelled pairs, "
                              f"{MIN_REFERENCE} needed to calibrate)")
                else:
                    notes.append("no estimate: the scores are not probabilities and fewer than "
                                 f"{MIN_REFERENCE} labelled pairs can calibrate them")
                    return schema.empty_table()
                ests.append(cbpe_metrics(prob, score, model.threshold))
        else:
            if n_ref < MIN_REFERENCE:
                notes.append(f"no estimate: DLE learns the error from {MIN_REFERENCE} labelled "
                             f"pairs or more; {n_ref} are labelled")
                return schema.empty_table()
            from threadpoolctl import threadpool_limits

            from .monitor.estimate import dle_metrics, fit_loss_model

            numeric = [f for f in feats if _is_numeric(base_tab[f])]
            X = (np.column_stack([to_float(base_tab[f]) for f in numeric]) if numeric
                 else np.empty((base_tab.num_rows, 0)))  # fmt: skip
            ests, method = [], f"DLE on {n_ref} labelled pairs"
            for s in (sb, sc):
                Xs = np.column_stack([X, s])
                loss = fit_loss_model(Xs[labelled], enc_b.truth[labelled], s[labelled],
                                      numeric + ["prediction"])  # fmt: skip
                with threadpool_limits(1):
                    a_hat, s_hat = loss.predict(Xs[unlabelled])
                ests.append(dle_metrics(a_hat, s_hat, np.zeros(len(a_hat), dtype="int64"), 1))
    except ConfigError as exc:  # scikit-learn missing, one class in the reference
        notes.append(f"no estimate: {exc}")
        return schema.empty_table()
    rows = []
    for name in names:
        (vb, seb), (vc, sec) = (e[name] for e in ests)
        b_, c_ = float(vb[0]), float(vc[0])
        b_ = b_ if math.isfinite(b_) else None
        c_ = c_ if math.isfinite(c_) else None
        diff = c_ - b_ if b_ is not None and c_ is not None else None
        summary.update({f"estimated_{name}_baseline": b_, f"estimated_{name}_candidate": c_,
                        f"estimated_{name}_diff": diff})  # fmt: skip
        rows.append({"metric": name, "baseline": b_, "candidate": c_, "diff": diff,
                     "baseline_se": float(seb[0]), "candidate_se": float(sec[0]),
                     "records": int(unlabelled.sum()), "method": method})  # fmt: skip
    return pa.Table.from_pylist(rows, schema=schema)
