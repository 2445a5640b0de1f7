"""The report's sections for Clarify's two monitors: bias drift and feature-attribution drift.

Each section runs the library's monitor (:func:`~captureq.monitor.bias.bias`,
:func:`~captureq.monitor.attribution.attribution_monitor`) over the report's window and
endpoint; the data functions here only select and reshape its results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

from .data import HOUR

BIAS_METRICS = ("DPPL", "DI")  # always drawn; every post-training metric that violated too
TOP_ATTRIBUTIONS = 10


def bias_over_time(result: Any, metrics: tuple[str, ...] = BIAS_METRICS) -> pa.Table:
    """Hourly post-training values of ``metrics`` and of every metric that violated in some
    hour: ``hour, facet, facet_value, metric_name, value, baseline, violation`` (the rows of
    ``BiasResult.metrics``)."""
    m = result.metrics
    m = m.filter(pc.and_(pc.not_equal(m["granularity"], "window"),
                         pc.equal(m["stage"], "post_training")))
    violated = pc.unique(m.filter(m["violation"])["metric_name"]).to_pylist()
    keep = list(metrics) + sorted(set(violated) - set(metrics))
    m = m.filter(pc.is_in(m["metric_name"], pa.array(keep, pa.string())))
    out = m.select(["window_start", "facet", "facet_value", "metric_name", "value", "baseline",
                    "violation"]).rename_columns(["hour", "facet", "facet_value", "metric_name",
                                                  "value", "baseline", "violation"])
    return out.set_column(0, "hour", pc.cast(out["hour"], HOUR))


VIOLATION_SCHEMA = pa.schema([("window", pa.string()), ("facet", pa.string()),
                              ("facet_value", pa.string()), ("metric_name", pa.string()),
                              ("description", pa.string())])


def bias_violations(result: Any) -> pa.Table:
    """Every violation (each hour's, and the whole window's as ``window``), in window order."""
    rows = [{k: v.get(k) for k in VIOLATION_SCHEMA.names} for v in result.violations]
    rows.sort(key=lambda r: (r["window"] == "window", r["window"], r["facet"], r["metric_name"]))
    return pa.Table.from_pylist(rows, schema=VIOLATION_SCHEMA)


def attribution_bars(result: Any, top: int = TOP_ATTRIBUTIONS) -> pa.Table:
    """Global attributions over the whole window against the baseline's, for the features in
    the top ``top`` of either: ``label, feature, baseline, window, baseline_rank, rank``."""
    r = result.ranks
    r = r.filter(pc.equal(r["granularity"], "window"))
    r = r.filter(pc.or_(pc.less_equal(r["rank"], top), pc.less_equal(r["baseline_rank"], top)))
    r = r.sort_by([("label", "ascending"), ("baseline_rank", "ascending")])
    return pa.table({"label": r["label"], "feature": r["feature"],
                     "baseline": r["baseline_value"], "window": r["value"],
                     "baseline_rank": r["baseline_rank"], "rank": r["rank"]})


def attribution_ndcg(result: Any) -> pa.Table:
    """NDCG per window and label against the baseline: ``hour, label, ndcg, threshold,
    violation, top_features``."""
    s = result.scores
    s = s.filter(pc.not_equal(s["granularity"], "window")).sort_by("window_start")
    return pa.table({"hour": pc.cast(s["window_start"], HOUR), "label": s["label"],
                     "ndcg": s["ndcg"], "threshold": s["threshold"],
                     "violation": s["violation"], "top_features": s["top_features"]})


def _failed(figure_cls: Any, key: str, title: str, description: str, reproduce: str,
            exc: Exception) -> Any:
    return figure_cls(key, title, description, pa.table({}), None, reproduce,
                      f"could not draw this figure: {type(exc).__name__}: {exc}", failed=True)


def bias_figure(tree: Any, ep: str, config: str | Path | dict, baseline: str | Path | None,
                cli: Callable[..., str], window_args: list[str], *,
                prediction: str | None = None, probability: str | None = None,
                figure_cls: Any) -> tuple[Any, Any]:
    """The bias section and the library's :class:`BiasResult` (None when it failed)."""
    from ..monitor.bias import bias
    from . import charts

    title = f"Bias drift — {ep}"
    labels = ["--labels", tree.labels_uri] if tree.labels_uri else []
    cmd = cli("bias", "monitor", tree.uri, *labels, *window_args, "--endpoint", ep,
              "--config", str(config), *(["--baseline", str(baseline)] if baseline else []),
              *(["--prediction", prediction] if prediction else []),
              *(["--probability", probability] if probability else []),
              "--every", "hour", "--out", "bias-monitor")
    desc = ("Clarify's post-training bias metrics per hour and facet: DPPL (difference in "
            "positive prediction proportions), DI (disparate impact) and every metric that "
            "violated in some hour (red points)"
            + (", against the baseline's value (grey rule)." if baseline else
               "; pass --bias-baseline to judge them against a baseline.")
            + " The table lists the violations.")
    try:
        result = bias(tree, config, baseline=baseline, every="hour", endpoint=ep,
                      prediction=prediction, probability=probability)
        rows = bias_over_time(result)
        table = bias_violations(result)
        chart = charts.bias_chart(rows) if rows.num_rows else None
    except Exception as exc:  # noqa: BLE001 - the section says which step failed and why
        return _failed(figure_cls, "bias", title, desc, cmd, exc), None
    note = None if rows.num_rows else "no hourly bias values in the window"
    return figure_cls("bias", title, desc, rows, chart, cmd, note, table=table), result


def attribution_figure(tree: Any, ep: str, baseline: str | Path, cli: Callable[..., str],
                       window_args: list[str], *, figure_cls: Any) -> tuple[Any, Any]:
    """The feature-attribution section and the library's :class:`AttributionResult` (None
    when it failed)."""
    from ..monitor.attribution import attribution_monitor
    from . import charts

    title = f"Feature-attribution drift — {ep}"
    cmd = cli("attribution", "monitor", tree.uri, "--baseline", str(baseline), "--endpoint", ep,
              *window_args, "--every", "hour", "--out", "attribution")
    desc = (f"Global SHAP attributions of the top {TOP_ATTRIBUTIONS} features, the baseline "
            "(grey) against the whole window (blue), and per hour the NDCG of the window's "
            "feature ranking against the baseline's (1 = same ranking); an hour below the "
            "threshold (dashed rule) is a violation (red). The table holds the bars' values.")
    try:
        result = attribution_monitor(tree.where(endpoint=ep), baseline, every="hour")
        bars = attribution_bars(result)
        rows = attribution_ndcg(result)
        chart = charts.attribution_chart(bars, rows) if rows.num_rows else None
    except Exception as exc:  # noqa: BLE001 - the section says which step failed and why
        return _failed(figure_cls, "attribution", title, desc, cmd, exc), None
    note = None if rows.num_rows else "no attributions in the window"
    return figure_cls("attribution", title, desc, rows, chart, cmd, note, table=bars), result
