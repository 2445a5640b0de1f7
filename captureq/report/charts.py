"""Vega-Lite figures (through altair) built from the tables in :mod:`captureq.report.data`.

Each builder takes a data table and returns an altair chart, usable as is in a notebook.
Times are UTC on every axis; ``onset`` (the first drifted hour, if any) draws the same red
dashed rule on every time axis so the eye can line figures up.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import altair as alt
import pyarrow as pa

WIDTH = 760
ONSET_COLOR = "#d62728"
SERIES_COLORS = {"baseline": "#7f7f7f", "window": "#1f77b4"}
SINCE_COLOR = "#d62728"
UTC = alt.Scale(type="utc")
TIME_AXIS = alt.Axis(labelAngle=0, format="%b %d %H:00", labelOverlap=True)  # UTC: the scale is
PSI_MAX = 2.0  # colour scale top: hourly PSI of a few dozen values is noisy below ~0.5


def _iso(v: datetime) -> str:
    return v.strftime("%Y-%m-%dT%H:%M:%SZ")


def values(table: pa.Table) -> list[dict]:
    """Rows for inline Vega-Lite data: times as ISO-8601 UTC strings, NaN as null."""
    out = []
    for row in table.to_pylist():
        for k, v in row.items():
            if isinstance(v, datetime):
                row[k] = _iso(v)
            elif isinstance(v, float):
                row[k] = float(f"{v:.4g}") if math.isfinite(v) else None
        out.append(row)
    return out


def _time_x(field: str = "hour", title: str = "hour (UTC)") -> alt.X:
    return alt.X(f"{field}:T", title=title, scale=UTC, axis=TIME_AXIS)


def onset_layer(onset: dict | None, label: bool = True) -> list[alt.Chart]:
    """A dashed rule at the first drifted hour, labelled with the feature(s)."""
    if not onset:
        return []
    data = alt.Data(values=[{"t": _iso(onset["hour"]), "label": onset["label"]}])
    rule = (
        alt.Chart(data)
        .mark_rule(color=ONSET_COLOR, strokeDash=[6, 3], strokeWidth=2)
        .encode(x=alt.X("t:T", scale=UTC), tooltip=[alt.Tooltip("label:N", title="drift")])
    )
    if not label:
        return [rule]
    text = (
        alt.Chart(data)
        .mark_text(align="left", baseline="top", dx=4, dy=2, color=ONSET_COLOR, fontWeight="bold")
        .encode(x=alt.X("t:T", scale=UTC), y=alt.value(0), text="label:N")
    )
    return [rule, text]


def traffic_chart(table: pa.Table, onset: dict | None = None) -> alt.Chart:
    """Stacked bars: requests per hour, one colour per endpoint / variant."""
    rows = values(table)
    for r in rows:
        r["series"] = f"{r['endpoint']} / {r['variant']}"
    bars = (
        alt.Chart(alt.Data(values=rows))
        .mark_bar()
        .encode(
            x=alt.X("utcyearmonthdatehours(hour):T", title="hour (UTC)", axis=TIME_AXIS),
            y=alt.Y("sum(requests):Q", title="requests per hour", stack="zero"),
            color=alt.Color("series:N", title="endpoint / variant"),
            tooltip=[
                alt.Tooltip(
                    "hour:T", title="hour (UTC)", format="%Y-%m-%d %H:00", formatType="utc"
                ),
                "endpoint:N",
                "variant:N",
                "sum(requests):Q",
                "sum(records):Q",
            ],
        )
    )
    return alt.layer(bars, *onset_layer(onset)).properties(width=WIDTH, height=180)


def prediction_chart(
    table: pa.Table, prediction: str, onset: dict | None = None
) -> alt.Chart | alt.VConcatChart:
    """One panel per variant: the 10–90 % and 25–75 % bands and the median of a numeric
    prediction per hour, or the share of each predicted value (non-numeric predictions)."""
    rows = values(table)
    panels = []
    for variant in sorted({r["variant"] for r in rows}):
        data = alt.Data(values=[r for r in rows if r["variant"] == variant])
        base = alt.Chart(data)
        if "p50" in table.column_names:
            tip = [
                alt.Tooltip(
                    "hour:T", title="hour (UTC)", format="%Y-%m-%d %H:00", formatType="utc"
                ),
                "n:Q",
                alt.Tooltip("mean:Q", format=".3f"),
                alt.Tooltip("p10:Q", format=".3f"),
                alt.Tooltip("p50:Q", format=".3f"),
                alt.Tooltip("p90:Q", format=".3f"),
            ]
            layers = [
                base.mark_area(opacity=0.2, color="#1f77b4").encode(
                    x=_time_x(), y=alt.Y("p10:Q", title=prediction), y2="p90:Q"
                ),
                base.mark_area(opacity=0.35, color="#1f77b4").encode(
                    x=_time_x(), y="p25:Q", y2="p75:Q"
                ),
                base.mark_line(color="#08306b", point=alt.OverlayMarkDef(size=12)).encode(
                    x=_time_x(), y="p50:Q", tooltip=tip
                ),
            ]
        else:
            layers = [
                base.mark_bar().encode(
                    x=_time_x(),
                    y=alt.Y("share:Q", title="share", stack="normalize"),
                    color=alt.Color("prediction:N", title=prediction),
                    tooltip=["hour:T", "prediction:N", "n:Q", alt.Tooltip("share:Q", format=".1%")],
                )
            ]
        panels.append(
            alt.layer(*layers, *onset_layer(onset)).properties(
                width=WIDTH, height=130, title=f"variant {variant}"
            )
        )
    if len(panels) == 1:
        return panels[0]
    return alt.vconcat(*panels).resolve_scale(x="shared")


def drift_chart(
    table: pa.Table, order: list[str], onset: dict | None = None, metric: str = "psi"
) -> alt.Chart:
    """Feature × hour heat map coloured by ``metric`` (PSI, clamped at ``PSI_MAX``); ✕ marks an hour in
    which a constraint check on that feature failed."""
    rows = values(table)
    for r in rows:
        start = datetime.strptime(r["hour"], "%Y-%m-%dT%H:%M:%SZ")
        r["mid"] = _iso(start + timedelta(minutes=30))
    data = alt.Data(values=rows)
    y = alt.Y("feature:N", sort=order, title=None)
    tip = [
        "feature:N",
        alt.Tooltip("hour:T", title="hour (UTC)", format="%Y-%m-%d %H:00", formatType="utc"),
        alt.Tooltip("psi:Q", title="PSI", format=".3f"),
        alt.Tooltip("js_distance:Q", title="JS distance", format=".3f"),
        alt.Tooltip("distance:Q", title="distance (L∞)", format=".3f"),
        alt.Tooltip("threshold:Q", format=".2f"),
        alt.Tooltip("failed_checks:N", title="failed checks"),
        alt.Tooltip("n:Q", title="values"),
    ]
    cells = (
        alt.Chart()
        .mark_rect(stroke="white", strokeWidth=0.5)
        .encode(
            x=_time_x(),
            x2="hour_end:T",
            y=y,
            color=alt.Color(
                f"{metric}:Q",
                title="PSI" if metric == "psi" else metric,
                scale=alt.Scale(scheme="orangered", domain=[0, PSI_MAX], clamp=True),
                legend=alt.Legend(orient="right", format=".1f", gradientLength=120),
            ),
            tooltip=tip,
        )
    )
    # a ✕ on a violating cell, no text elsewhere (filtering the rows instead would leave vega
    # an empty layer when nothing drifted, which it warns about)
    marks = (
        alt.Chart()
        .mark_text(fontSize=12, fontWeight="bold", color="white")
        .encode(x=alt.X("mid:T", scale=UTC), y=y, tooltip=tip,
                text=alt.condition(alt.datum.violation, alt.value("✕"), alt.value("")))
    )
    height = max(120, 18 * len(order))
    chart = alt.layer(cells, marks, *onset_layer(onset, label=False), data=data).properties(
        width=WIDTH, height=height
    )
    if onset:  # the label goes above the map: red on red cells would not read
        chart = chart.properties(
            title=alt.TitleParams(onset["label"], color=ONSET_COLOR, anchor="start", fontSize=12)
        )
    return chart


def histogram_chart(table: pa.Table, features: list[str], columns: int = 2) -> alt.ConcatChart:
    """Per feature: the share of values per bin, baseline (grey) vs window (blue) and, when
    drift began, since then (red)."""
    rows = values(table)
    series = sorted({r["series"] for r in rows}, key=lambda s: (s != "baseline", s != "window", s))
    colors = [SERIES_COLORS.get(s, SINCE_COLOR) for s in series]
    color = alt.Color("series:N", title=None, scale=alt.Scale(domain=series, range=colors))
    by_feature: dict[str, list[dict]] = {}
    for r in rows:
        by_feature.setdefault(r["feature"], []).append(r)
    panels = []
    for name in features:
        mine = by_feature.get(name, [])
        if not mine:
            continue
        binning = mine[0].get("binning") or ("linear" if mine[0]["bin_start"] is not None else "category")
        base = alt.Chart(alt.Data(values=mine)).properties(
            width=WIDTH // columns - 60, height=140, title=f"{name} ({binning} bins)"
        )
        tip = ["series:N", "bin:N", alt.Tooltip("share:Q", format=".1%")]
        if binning in ("linear", "log"):
            # log bins are equally wide on a log axis; the bars span their bins
            panel = base.mark_bar(opacity=0.45, binSpacing=0).encode(
                x=alt.X("bin_start:Q", title=name, bin="binned")
                if binning == "linear"
                else alt.X("bin_start:Q", title=f"{name} (log scale)", scale=alt.Scale(type="log")),
                x2="bin_end:Q",
                y=alt.Y("share:Q", title="share of values", stack=None, axis=alt.Axis(format="%")),
                color=color,
                tooltip=tip,
            )
        else:  # categories, or quantile bins: one equally wide slot per bin, in order
            panel = base.mark_bar().encode(
                x=alt.X("bin:N", title=name, sort=None, axis=alt.Axis(labelAngle=-40, labelLimit=90)),
                xOffset="series:N",
                y=alt.Y("share:Q", title="share of values", axis=alt.Axis(format="%")),
                color=color,
                tooltip=tip,
            )
        panels.append(panel)
    return alt.concat(*panels, columns=columns)


def quality_chart(table: pa.Table, onset: dict | None = None) -> alt.VConcatChart:
    """Hourly model-quality metrics (top) and label coverage (bottom)."""
    rows = values(table)
    for r in rows:
        start = datetime.strptime(r["hour"], "%Y-%m-%dT%H:%M:%SZ")
        r["hour_end"] = _iso(start + timedelta(hours=1))
    lines = (
        alt.Chart(alt.Data(values=rows))
        .mark_line(point=alt.OverlayMarkDef(size=14))
        .encode(
            x=_time_x(),
            y=alt.Y("value:Q", title="metric"),
            color=alt.Color("metric:N", title="metric"),
            tooltip=[
                alt.Tooltip(
                    "hour:T", title="hour (UTC)", format="%Y-%m-%d %H:00", formatType="utc"
                ),
                "metric:N",
                alt.Tooltip("value:Q", format=".3f"),
                "labelled:Q",
            ],
        )
    )
    seen, cover = set(), []
    for r in rows:
        if r["hour"] not in seen:
            seen.add(r["hour"])
            cover.append(r)
    coverage = (
        alt.Chart(alt.Data(values=cover))
        .mark_bar(color="#9ecae1", stroke="white", strokeWidth=0.5)
        .encode(
            x=_time_x(),
            x2="hour_end:T",
            y2=alt.datum(0),
            y=alt.Y(
                "label_coverage:Q",
                title="label coverage",
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%"),
            ),
            tooltip=[
                alt.Tooltip(
                    "hour:T", title="hour (UTC)", format="%Y-%m-%d %H:00", formatType="utc"
                ),
                alt.Tooltip("label_coverage:Q", format=".1%"),
                "labelled:Q",
                "records:Q",
            ],
        )
    )
    top = alt.layer(lines, *onset_layer(onset)).properties(width=WIDTH, height=180)
    bottom = alt.layer(coverage, *onset_layer(onset, label=False)).properties(
        width=WIDTH, height=70
    )
    return alt.vconcat(top, bottom).resolve_scale(x="shared", color="independent")


def quarantine_chart(table: pa.Table) -> alt.Chart:
    """Horizontal bars: quarantined entries per stage and reason."""
    rows = values(table)
    for r in rows:
        reason = r["reason"] or ""
        r["what"] = f"{r['stage']}: {reason[:70]}{'…' if len(reason) > 70 else ''}"
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_bar(color="#ff7f0e")
        .encode(
            x=alt.X("entries:Q", title="quarantined entries"),
            y=alt.Y("what:N", sort="-x", title=None),
            tooltip=["stage:N", "reason:N", "entries:Q", "files:Q", "first_seen:N"],
        )
        .properties(width=WIDTH - 300, height=max(40, 22 * len(rows)))
    )


def feature_spec_template(series: list[str] | None = None) -> dict:
    """The Vega-Lite spec the page fills in for a feature drawn on demand: its bins (named
    dataset ``bins``: series, bin, share) over its hourly PSI (``psi``: hour, psi). The page sets
    ``datasets``, the title and the series colours."""
    tip = [{"field": "series"}, {"field": "bin"}, {"field": "share", "format": ".1%"}]
    return {
        "$schema": alt.SCHEMA_URL,
        "vconcat": [
            {
                "data": {"name": "bins"},
                "mark": {"type": "bar"},
                "width": WIDTH - 80,
                "height": 150,
                "encoding": {
                    "x": {"field": "bin", "type": "ordinal", "sort": None, "title": None,
                          "axis": {"labelAngle": -40, "labelLimit": 90}},
                    "xOffset": {"field": "series", "type": "nominal", "sort": None},
                    "y": {"field": "share", "type": "quantitative", "title": "share of values",
                          "axis": {"format": "%"}},
                    "color": {"field": "series", "type": "nominal", "title": None,
                              "scale": {"domain": [], "range": []}},
                    "tooltip": tip,
                },
            },
            {
                "data": {"name": "psi"},
                "mark": {"type": "bar", "color": "#e6550d"},
                "width": WIDTH - 80,
                "height": 60,
                "encoding": {
                    "x": {"field": "hour", "type": "temporal", "scale": {"type": "utc"},
                          "title": "hour (UTC)", "axis": {"format": "%b %d %H:00", "labelOverlap": True}},
                    "y": {"field": "psi", "type": "quantitative", "title": "hourly PSI"},
                    "tooltip": [{"field": "hour", "type": "temporal", "format": "%Y-%m-%d %H:00",
                                 "formatType": "utc"}, {"field": "psi", "format": ".2f"}],
                },
            },
        ],
    }


def series_colors(series: list[str]) -> list[str]:
    """Baseline grey, window blue, the hours since drift began red."""
    return [SERIES_COLORS.get(s, SINCE_COLOR) for s in series]


def spec(chart: Any) -> dict:
    """The chart's Vega-Lite spec as a dict (what the HTML embeds)."""
    return chart.to_dict()


def estimate_chart(table: pa.Table, onset: dict | None = None) -> alt.Chart:
    """One metric per hour: the estimated value (dashed) inside its confidence band (shaded),
    the realized value where labels exist (solid, with points) and the reference's threshold
    (grey rule). ``table`` has hour, metric, estimated, lower, upper, realized, threshold."""
    rows = values(table)
    metric = rows[0]["metric"] if rows else "metric"
    data = alt.Data(values=rows)
    tip = [
        alt.Tooltip("hour:T", title="hour (UTC)", format="%Y-%m-%d %H:00", formatType="utc"),
        alt.Tooltip("estimated:Q", format=".3f"),
        alt.Tooltip("lower:Q", format=".3f"),
        alt.Tooltip("upper:Q", format=".3f"),
        alt.Tooltip("realized:Q", format=".3f"),
        "labelled:Q",
        "records:Q",
    ]
    base = alt.Chart(data)
    band = base.mark_area(opacity=0.25, color="#1f77b4").encode(
        x=_time_x(), y=alt.Y("lower:Q", title=metric, scale=alt.Scale(zero=False)), y2="upper:Q"
    )
    est = base.mark_line(color="#1f77b4", strokeDash=[5, 3]).encode(
        x=_time_x(), y="estimated:Q", tooltip=tip
    )
    real = (
        base.transform_filter("isValid(datum.realized)")
        .mark_line(color="#000000", point=alt.OverlayMarkDef(size=14, color="#000000"))
        .encode(x=_time_x(), y="realized:Q", tooltip=tip)
    )
    layers = [band, est, real]
    if rows and rows[0].get("threshold") is not None:
        limit = alt.Data(values=[{"threshold": rows[0]["threshold"]}])
        layers.append(
            alt.Chart(limit)
            .mark_rule(color="#7f7f7f", strokeDash=[2, 2])
            .encode(y="threshold:Q", tooltip=[alt.Tooltip("threshold:Q", format=".3f")])
        )
    return alt.layer(*layers, *onset_layer(onset)).properties(width=WIDTH, height=180)


def bias_chart(table: pa.Table) -> alt.FacetChart:
    """One panel per facet split (rows) and metric (columns): the hourly value (line), the
    baseline's value (grey rule) and the hours that violated (red points). ``table`` has hour,
    facet, facet_value, metric_name, value, baseline, violation."""
    rows = [r for r in values(table) if r["value"] is not None]  # ±inf and undefined: not drawn
    for r in rows:
        r["split"] = f"{r['facet']} = {r['facet_value']}"
    tip = [
        alt.Tooltip("hour:T", title="hour (UTC)", format="%Y-%m-%d %H:00", formatType="utc"),
        alt.Tooltip("split:N", title="facet"),
        alt.Tooltip("metric_name:N", title="metric"),
        alt.Tooltip("value:Q", format=".3f"),
        alt.Tooltip("baseline:Q", format=".3f"),
        alt.Tooltip("violation:N"),
    ]
    base = alt.Chart().encode(x=_time_x())
    line = base.mark_line(point=True, color=SERIES_COLORS["window"]).encode(
        y=alt.Y("value:Q", title="value"), tooltip=tip)
    rule = alt.Chart().mark_rule(color=SERIES_COLORS["baseline"], strokeDash=[4, 2]).encode(
        y="mean(baseline):Q")
    bad = base.mark_point(color=ONSET_COLOR, filled=True, size=60).encode(
        y="value:Q", tooltip=tip,
        opacity=alt.condition(alt.datum.violation, alt.value(1), alt.value(0)))
    metrics = sorted({r["metric_name"] for r in rows})
    width = max(160, min(360, (WIDTH - 40) // max(1, len(metrics)) - 30))
    return (
        alt.layer(line, rule, bad, data=alt.Data(values=rows))
        .properties(width=width, height=140)
        .facet(row=alt.Row("split:N", title=None), column=alt.Column("metric_name:N", title=None))
        .resolve_scale(y="independent")
    )


def attribution_chart(bars: pa.Table, ndcg: pa.Table) -> alt.VConcatChart:
    """Top: global attributions of the top features, the baseline (grey) against the window
    (blue). Bottom: NDCG per hour and label, the threshold (dashed) and the violating hours
    (red points)."""
    feats = [r["feature"] for r in bars.select(["feature"]).to_pylist()]
    bar = (
        alt.Chart(alt.Data(values=values(bars)))
        .transform_fold(["baseline", "window"], as_=["series", "attribution"])
        .mark_bar()
        .encode(
            y=alt.Y("feature:N", sort=list(dict.fromkeys(feats)), title=None),
            yOffset=alt.YOffset("series:N"),
            x=alt.X("attribution:Q", title="global attribution"),
            color=alt.Color("series:N", title=None,
                            scale=alt.Scale(domain=["baseline", "window"],
                                            range=[SERIES_COLORS["baseline"],
                                                   SERIES_COLORS["window"]])),
            tooltip=["label:N", "feature:N", "series:N",
                     alt.Tooltip("attribution:Q", format=".4f")],
        )
        .properties(width=WIDTH - 160, height=max(120, 28 * len(set(feats))))
    )
    rows = values(ndcg)
    tip = [
        alt.Tooltip("hour:T", title="hour (UTC)", format="%Y-%m-%d %H:00", formatType="utc"),
        "label:N", alt.Tooltip("ndcg:Q", format=".3f"), "violation:N", "top_features:N",
    ]
    data = alt.Data(values=rows)
    line = alt.Chart(data).mark_line(point=True).encode(
        x=_time_x(), y=alt.Y("ndcg:Q", title="NDCG vs baseline", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("label:N", title="label"), tooltip=tip)
    rule = alt.Chart(data).mark_rule(color=ONSET_COLOR, strokeDash=[6, 3]).encode(
        y="mean(threshold):Q")
    bad = alt.Chart(data).mark_point(color=ONSET_COLOR, filled=True, size=70).encode(
        x=_time_x(), y="ndcg:Q", tooltip=tip,
        opacity=alt.condition(alt.datum.violation, alt.value(1), alt.value(0)))
    return alt.vconcat(bar, alt.layer(line, rule, bad).properties(width=WIDTH - 160, height=180))
