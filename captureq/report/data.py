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
def traffic(tree: Any, endpoint: str | None = None) -> pa.Table:
    """Requests and input records per UTC hour, endpoint and variant: of ``endpoint``, or of
    every endpoint in the window when it is None."""
    return _run(tree, "traffic", endpoint=endpoint)


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


HISTOGRAM_SCHEMA = pa.schema(
    [
        ("feature", pa.string()),
        ("series", pa.string()),
        ("bin", pa.string()),
        ("bin_start", pa.float64()),
        ("bin_end", pa.float64()),
        ("share", pa.float64()),
        ("binning", pa.string()),
    ]
)
CROWDED = 0.5  # equal-width bins are replaced when one of them holds more than this share


def numeric_edges(values: np.ndarray, weights: np.ndarray, bins: int = 20) -> tuple[np.ndarray, str]:
    """Bin edges for one numeric feature's values (baseline and window together) and the rule
    that chose them: ``linear`` (equal width) unless that puts more than half of the values in
    one bin while they take more distinct values than there are bins; then ``log`` (equal
    width in log space) when every value is positive, else ``quantile`` (edges at the weighted
    quantiles, repeated edges merged)."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.linspace(lo, lo + 1.0, bins + 1), "linear"
    edges = np.linspace(lo, hi, bins + 1)
    counts, _ = np.histogram(values, bins=edges, weights=weights)
    total = counts.sum()
    if total <= 0 or counts.max() / total <= CROWDED or len(np.unique(values)) <= bins:
        return edges, "linear"
    if lo > 0:
        return np.geomspace(lo, hi, bins + 1), "log"
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    at = np.searchsorted(cum, np.linspace(0.0, cum[-1], bins + 1)[1:-1], side="left")
    inner = values[order][np.clip(at, 0, len(values) - 1)]
    return np.unique(np.r_[lo, inner, hi]), "quantile"


def _numeric_bins(
    feature: str, series: str, values: np.ndarray, weights: np.ndarray | None,
    edges: np.ndarray, binning: str,
) -> dict[str, list]:
    counts, _ = np.histogram(values, bins=edges, weights=weights)
    n = len(edges) - 1
    return {
        "feature": [feature] * n,
        "series": [series] * n,
        "bin": [f"{edges[i]:.3g}–{edges[i + 1]:.3g}" for i in range(n)],
        "bin_start": edges[:-1].tolist(),
        "bin_end": edges[1:].tolist(),
        "share": _shares(counts.astype("float64")).tolist(),
        "binning": [binning] * n,
    }


def _category_bins(
    feature: str, series_counts: dict[str, dict], categories: int
) -> list[dict[str, list]]:
    """Shares of the ``categories`` values most frequent over every series (each series'
    shares summed), the rest in one ``other`` bin."""
    totals = {s: sum(c.values()) or 1 for s, c in series_counts.items()}
    weight: dict[Any, float] = {}
    for s, counts in series_counts.items():
        for v, c in counts.items():
            weight[v] = weight.get(v, 0.0) + c / totals[s]
    ranked = sorted(weight, key=lambda v: (-weight[v], str(v)))
    top, rest = ranked[:categories], ranked[categories:]
    labels = [str(v) for v in top] + (["other"] if rest else [])
    out = []
    for s, counts in series_counts.items():
        shares = [counts.get(v, 0) / totals[s] for v in top]
        if rest:
            shares.append(sum(counts.get(v, 0) for v in rest) / totals[s])
        n = len(labels)
        out.append(
            {
                "feature": [feature] * n,
                "series": [s] * n,
                "bin": labels,
                "bin_start": [None] * n,
                "bin_end": [None] * n,
                "share": shares,
                "binning": ["category"] * n,
            }
        )
    return out


def feature_histograms(
    baseline: Baseline,
    inputs: pa.Table,
    features: list[str],
    *,
    bins: int = 20,
    categories: int = 12,
    since: Any = None,
) -> pa.Table:
    """Share of values per bin for each feature: ``series`` 'baseline' (from statistics.json's
    sketch), 'window' (``inputs``) and, with ``since`` (a UTC time), 'since <time>' — the rows of
    ``inputs`` from then on. Numeric features share bins spanning baseline and window, chosen
    by :func:`numeric_edges` (``binning`` says which rule); string features get one bin per
    value for the ``categories`` most frequent values and one ``other`` bin for the rest
    (``bin_start``/``bin_end`` null, ``binning`` 'category')."""
    stats = {f["name"]: f for f in baseline.statistics["features"]}
    parts: dict[str, pa.Table] = {"window": inputs}
    if since is not None and "inference_time" in inputs.column_names:
        mask = pc.greater_equal(inputs["inference_time"], pa.scalar(since, HOUR))
        parts[f"since {since:%Y-%m-%d %H:%M}"] = inputs.filter(mask)
    blocks: list[dict[str, list]] = []
    present = set(inputs.column_names)  # once: listing a wide table's names per feature is slow
    for name in features:
        base = stats.get(name)
        if base is None or name not in present:
            continue
        kind = base.get("inferred_type")
        if kind in (INTEGRAL, FRACTIONAL):
            bv, bw = sketch_sample(base)
            current = {}
            for series, table in parts.items():
                col = column(name, table[name])
                v = col.values if col.values is not None else np.empty(0)
                current[series] = v[np.isfinite(v)]
            pooled = [bv, *current.values()]
            if not any(len(a) for a in pooled):
                continue
            edges, binning = numeric_edges(
                np.concatenate(pooled),
                np.concatenate([bw, *(np.ones(len(a)) for a in current.values())]),
                bins,
            )
            blocks.append(_numeric_bins(name, "baseline", bv, bw, edges, binning))
            for series, values in current.items():
                blocks.append(_numeric_bins(name, series, values, None, edges, binning))
        elif kind == STRING:
            buckets = base["string_statistics"]["distribution"]["categorical"]["buckets"]
            series_counts = {"baseline": {b["value"]: b["count"] for b in buckets}}
            for series, table in parts.items():
                vc = pc.value_counts(pc.cast(table[name], pa.string()).drop_null())
                series_counts[series] = dict(
                    zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())
                )
            blocks += _category_bins(name, series_counts, categories)
    columns = {f.name: [v for b in blocks for v in b[f.name]] for f in HISTOGRAM_SCHEMA}
    return pa.table(columns, schema=HISTOGRAM_SCHEMA)


def feature_table(result: MonitorResult) -> pa.Table:
    """Every feature, worst first (most drifted hours, then the largest distance): rank,
    feature, drifted_hours, hours, first_drift_hour, max_psi, max_distance."""
    t = result.first_drift()
    t = t.select(["feature", "drifted_hours", "hours", "first_drift_hour", "max_psi", "max_distance"])
    t = utc(t)
    return t.add_column(0, "rank", pa.array(np.arange(1, t.num_rows + 1, dtype="int64")))


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


# ---------------------------------------------------------------------------------------------
# 7. every feature: the page's ranked table, each feature's figure drawn on demand
# ---------------------------------------------------------------------------------------------
PSI_CELLS = 200_000  # features × hours above which the page carries no hourly PSI per feature


def _num(v: Any, digits: int = 4) -> Any:
    return float(f"{v:.{digits}g}") if isinstance(v, float) and np.isfinite(v) else None


def feature_payload(features: pa.Table, histograms: pa.Table, heat: pa.Table) -> dict:
    """What the page's feature table carries, compactly: ``columns`` and ``rows`` of
    :func:`feature_table`; ``series`` (baseline, window, since …); per feature in ``hist`` its
    ``binning``, bin ``edges`` (numbers) or ``labels`` (categories) and each series' shares in
    thousandths; ``hours`` and per feature in ``psi`` its hourly PSI in hundredths (left out
    when features × hours exceeds ``PSI_CELLS``)."""
    cols = features.column_names
    data_cols = []
    for name in cols:
        col = features[name]
        if pa.types.is_timestamp(col.type):
            data_cols.append([None if v is None else f"{v:%Y-%m-%d %H:00}" for v in col.to_pylist()])
        elif pa.types.is_floating(col.type):
            data_cols.append([_num(v) for v in col.to_pylist()])
        else:
            data_cols.append(col.to_pylist())
    rows = [list(r) for r in zip(*data_cols)] if data_cols else []

    names = histograms["series"].unique().to_pylist()
    series = sorted(names, key=lambda s: (s != "baseline", s != "window", s))
    index = {s: i for i, s in enumerate(series)}
    hist: dict[str, dict] = {}
    f_ = histograms["feature"].to_pylist()
    s_ = histograms["series"].to_pylist()
    b_ = histograms["bin"].to_pylist()
    lo_ = histograms["bin_start"].to_pylist()
    hi_ = histograms["bin_end"].to_pylist()
    sh_ = np.rint(np.nan_to_num(histograms["share"].to_numpy(zero_copy_only=False)) * 1000)
    kind_ = histograms["binning"].to_pylist()
    for i, name in enumerate(f_):
        h = hist.get(name)
        if h is None:
            h = hist[name] = {"binning": kind_[i], "shares": [[] for _ in series]}
            if kind_[i] == "category":
                h["labels"] = []
            else:
                h["edges"] = [_num(lo_[i])]
        shares = h["shares"][index[s_[i]]]
        if s_[i] == "baseline":
            if "labels" in h:
                h["labels"].append(b_[i])
            else:
                h["edges"].append(_num(hi_[i]))
        shares.append(int(sh_[i]))

    out: dict[str, Any] = {"columns": cols, "rows": rows, "series": series, "hist": hist}
    hours = sorted(set(heat["hour"].to_pylist())) if heat.num_rows else []
    if hours and len(hours) * features.num_rows <= PSI_CELLS:
        at = {h: i for i, h in enumerate(hours)}
        psi: dict[str, list] = {}
        cents = np.rint(np.nan_to_num(heat["psi"].to_numpy(zero_copy_only=False), nan=-1) * 100)
        for name, hour, v in zip(heat["feature"].to_pylist(), heat["hour"].to_pylist(), cents):
            psi.setdefault(name, [None] * len(hours))[at[hour]] = None if v < 0 else int(v)
        out["hours"] = [f"{h:%Y-%m-%dT%H:%M:%SZ}" for h in hours]
        out["psi"] = psi
    return out
