"""The data behind each figure of the report, as Arrow tables (unit-tested on their own).

Every function takes what captureq already produces — a :class:`~captureq.CaptureTree` (for
its SQL views), a :class:`~captureq.monitor.MonitorResult`, a
:class:`~captureq.monitor.Baseline`, a :class:`~captureq.monitor.QualityResult` — and returns
one tidy table. The SQL lives in ``captureq/report/sql/*.sql``; :func:`query_text` gives the
exact text the report prints under "reproduce".

>>> import captureq
>>> cq = captureq.open("demo-data/capture")                        # doctest: +SKIP
>>> traffic(cq).column_names                                       # doctest: +SKIP
['hour', 'endpoint', 'variant', 'requests', 'records']
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..monitor.baseline import FRACTIONAL, INTEGRAL, STRING, Baseline, column, sketch_sample
from ..monitor.check import MonitorResult
from ..monitor.quality import BINARY, MULTICLASS, QualityResult
from ..views import quote_ident, quote_literal

HOUR = pa.timestamp("us", tz="UTC")
QUALITY_METRICS = {
    BINARY: ("accuracy", "precision", "recall", "f1", "auc_roc"),
    MULTICLASS: ("accuracy", "weighted_f1"),
}
REGRESSION_METRICS = ("mae", "rmse", "r2")


@cache
def sql_text(name: str) -> str:
    """The text of ``captureq/report/sql/<name>.sql``."""
    return (resources.files("captureq.report") / "sql" / f"{name}.sql").read_text()


def query_text(name: str, *, prediction: str | None = None, endpoint: str | None = None) -> str:
    """A report query as it runs, with ``{prediction}`` filled in; with ``endpoint`` the bound
    ``$endpoint`` parameter is spelled out too, for pasting into ``captureq query`` or duckdb."""
    text = sql_text(name)
    if prediction is not None:
        text = text.replace("{prediction}", quote_ident(prediction))
    if endpoint is not None:
        text = text.replace("$endpoint", quote_literal(endpoint))
    return text


def utc(table: pa.Table) -> pa.Table:
    """Timestamp columns as ``timestamp[us, tz=UTC]`` (DuckDB answers with ``Etc/UTC``)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type) and f.type != HOUR:
            table = table.set_column(i, f.name, pc.cast(table[f.name], HOUR))
    return table


def _run(tree: Any, name: str, *, prediction: str | None = None, **params: Any) -> pa.Table:
    sql = query_text(name, prediction=prediction)
    return utc(tree.sql(sql, params or None).to_arrow())


# ---------------------------------------------------------------------------------------------
# 1. traffic
# ---------------------------------------------------------------------------------------------
def traffic(tree: Any) -> pa.Table:
    """Requests and input records per UTC hour, endpoint and variant (every endpoint)."""
    return _run(tree, "traffic")


# ---------------------------------------------------------------------------------------------
# 2. predictions over time
# ---------------------------------------------------------------------------------------------
def prediction_column(tree: Any, endpoint: str, prediction: str | None = None) -> str:
    """The endpoint's prediction column in the ``predictions`` view (as model quality picks it)."""
    from ..monitor.quality import pick_prediction

    sample = tree.sql(
        "select * from predictions where endpoint = $endpoint limit 1000", {"endpoint": endpoint}
    ).to_arrow()
    return pick_prediction(sample, prediction)


def prediction_is_numeric(tree: Any, endpoint: str, prediction: str) -> bool:
    col = quote_ident(prediction)
    row = tree.sql(
        f"select count({col}) as present, count(try_cast({col} as double)) as numeric "
        "from predictions where endpoint = $endpoint",
        {"endpoint": endpoint},
    ).to_pylist()[0]
    return row["numeric"] > 0 and row["numeric"] == row["present"]


def prediction_distribution(tree: Any, endpoint: str, prediction: str) -> pa.Table:
    """Per hour and variant: n, mean and the 10/25/50/75/90th percentiles of a numeric
    prediction, or (non-numeric predictions) each predicted value's share."""
    name = (
        "predictions_numeric"
        if prediction_is_numeric(tree, endpoint, prediction)
        else "predictions_categorical"
    )
    return _run(tree, name, prediction=prediction, endpoint=endpoint)


# ---------------------------------------------------------------------------------------------
# 3. drift heat map
# ---------------------------------------------------------------------------------------------
def drift_heatmap(result: MonitorResult) -> pa.Table:
    """One row per feature and hour: PSI, JS distance, distance, threshold, the drift verdict
    and the constraint checks that failed in that hour (``violation``)."""
    con = duckdb.connect()
    con.register("drift", result.drift)
    con.register("violations", result.violations)
    rel = con.sql(sql_text("drift_heatmap"))
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return utc(fetch())


def feature_order(result: MonitorResult) -> list[str]:
    """Features worst first: most drifted hours, then the largest hourly distance."""
    return [r["feature"] for r in result.first_drift().to_pylist()]


def drift_onset(result: MonitorResult) -> list[dict]:
    """Features that drifted, earliest first: feature, first_drift_hour, drifted_hours, hours,
    max_psi — the report's headline."""
    rows = [r for r in result.first_drift().to_pylist() if r.get("first_drift_hour") is not None]
    return sorted(rows, key=lambda r: (r["first_drift_hour"], -r["drifted_hours"]))


# ---------------------------------------------------------------------------------------------
# 4. histograms, baseline vs window
# ---------------------------------------------------------------------------------------------
def worst_features(result: MonitorResult, k: int = 4) -> list[str]:
    """The ``k`` features with the most drifted hours (then the largest distance)."""
    return feature_order(result)[:k]


def why_no_histograms(baseline: Baseline, inputs: pa.Table, features: list[str]) -> str:
    """In words, why :func:`feature_histograms` has nothing to draw."""
    names = {f["name"] for f in baseline.statistics["features"]}
    if not inputs.num_rows:
        return "no input records for this endpoint in the window"
    shared = names & set(inputs.column_names)
    if not shared:
        return (
            f"the window's columns ({', '.join(sorted(inputs.column_names)[:6])}…) share no name "
            f"with the baseline's features ({', '.join(sorted(names)[:6])}…): is this the "
            "baseline of this endpoint?"
        )
    if not features:
        return "no feature has hourly drift results: the window has no inference times"
    return "the worst features have no values in the window to compare with the baseline"


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else counts.astype("float64")


def _numeric_bins(
    feature: str, series: str, values: np.ndarray, weights: np.ndarray | None, edges: np.ndarray
) -> list[dict]:
    counts, _ = np.histogram(values, bins=edges, weights=weights)
    return [
        {
            "feature": feature,
            "series": series,
            "bin": f"{edges[i]:.3g}–{edges[i + 1]:.3g}",
            "bin_start": float(edges[i]),
            "bin_end": float(edges[i + 1]),
            "share": float(share),
        }
        for i, share in enumerate(_shares(counts.astype("float64")))
    ]


def feature_histograms(
    baseline: Baseline,
    inputs: pa.Table,
    features: list[str],
    *,
    bins: int = 20,
    since: Any = None,
) -> pa.Table:
    """Share of values per bin for each feature: ``series`` 'baseline' (from statistics.json's
    sketch), 'window' (``inputs``) and, with ``since`` (a UTC time), 'since <time>' — the rows of
    ``inputs`` from then on. Numeric features share equal-width bins spanning baseline and
    window; string features get one bin per value (``bin_start``/``bin_end`` null)."""
    stats = {f["name"]: f for f in baseline.statistics["features"]}
    parts: dict[str, pa.Table] = {"window": inputs}
    if since is not None and "inference_time" in inputs.column_names:
        mask = pc.greater_equal(inputs["inference_time"], pa.scalar(since, HOUR))
        parts[f"since {since:%Y-%m-%d %H:%M}"] = inputs.filter(mask)
    rows: list[dict] = []
    for name in features:
        base = stats.get(name)
        if base is None or name not in inputs.column_names:
            continue
        kind = base.get("inferred_type")
        if kind in (INTEGRAL, FRACTIONAL):
            bv, bw = sketch_sample(base)
            current = {}
            for series, table in parts.items():
                col = column(name, table[name])
                v = col.values if col.values is not None else np.empty(0)
                current[series] = v[np.isfinite(v)]
            everything = [a for a in [bv, *current.values()] if len(a)]
            if not everything:
                continue
            lo = min(float(a.min()) for a in everything)
            hi = max(float(a.max()) for a in everything)
            edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
            rows += _numeric_bins(name, "baseline", bv, bw, edges)
            for series, values in current.items():
                rows += _numeric_bins(name, series, values, None, edges)
        elif kind == STRING:
            buckets = base["string_statistics"]["distribution"]["categorical"]["buckets"]
            base_counts = {b["value"]: b["count"] for b in buckets}
            series_counts = {"baseline": base_counts}
            for series, table in parts.items():
                vc = pc.value_counts(pc.cast(table[name], pa.string()).drop_null())
                series_counts[series] = dict(
                    zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())
                )
            values = sorted(set().union(*series_counts.values()))
            for series, counts in series_counts.items():
                total = sum(counts.values()) or 1
                for v in values:
                    rows.append(
                        {
                            "feature": name,
                            "series": series,
                            "bin": str(v),
                            "bin_start": None,
                            "bin_end": None,
                            "share": counts.get(v, 0) / total,
                        }
                    )
    return pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("feature", pa.string()),
                ("series", pa.string()),
                ("bin", pa.string()),
                ("bin_start", pa.float64()),
                ("bin_end", pa.float64()),
                ("share", pa.float64()),
            ]
        ),
    )


# ---------------------------------------------------------------------------------------------
# 5. model quality
# ---------------------------------------------------------------------------------------------
def quality_over_time(quality: QualityResult) -> pa.Table:
    """Hourly metrics in long form (hour, metric, value) plus each hour's label coverage
    (``records``, ``labelled``, ``label_coverage``)."""
    names = QUALITY_METRICS.get(quality.problem_type, REGRESSION_METRICS)
    rows = []
    for r in quality.metrics.to_pylist():
        if r.get("granularity") == "window":
            continue
        for m in names:
            rows.append(
                {
                    "hour": r["window_start"],
                    "metric": m,
                    "value": r.get(m),
                    "records": r["records"],
                    "labelled": r["labelled"],
                    "label_coverage": r["label_coverage"],
                }
            )
    return pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("hour", HOUR),
                ("metric", pa.string()),
                ("value", pa.float64()),
                ("records", pa.int64()),
                ("labelled", pa.int64()),
                ("label_coverage", pa.float64()),
            ]
        ),
    )


# ---------------------------------------------------------------------------------------------
# 6. quarantine
# ---------------------------------------------------------------------------------------------
def quarantine_summary(tree: Any) -> pa.Table:
    """Quarantined entries per stage and reason, with files affected and the first one seen."""
    return _run(tree, "quarantine_summary")
