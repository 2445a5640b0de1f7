"""Assemble the monitoring report: run the analyses, build each figure, write one HTML file.

>>> import captureq
>>> cq = captureq.open("demo-data/capture", labels="demo-data/groundtruth")   # doctest: +SKIP
>>> rep = build_report(cq, "demo-data/baseline", endpoint="churn-xgb")        # doctest: +SKIP
>>> rep.charts()["drift"]            # an altair chart, displayed inline in a notebook  # doctest: +SKIP
>>> rep.write("report.html")                                                  # doctest: +SKIP
"""

from __future__ import annotations

import html
import re
import shlex
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError
from ..monitor import Baseline, MonitorResult, QualityResult, model_quality, monitor
from ..monitor.baseline import tree_inputs
from ..monitor.check import align_names
from ..monitor.problem import BINARY, ModelType
from ..timeutil import to_utc
from . import charts, data
from .html import esc, page


@dataclass
class Figure:
    """One section of the report: its data, its chart (None when there is nothing to plot) and
    the commands that reproduce it."""

    key: str
    title: str
    description: str
    data: pa.Table
    chart: Any = None
    reproduce: str = ""
    note: str | None = None
    table: pa.Table | None = None
    failed: bool = False
    html: str = ""


@dataclass
class Report:
    """A built report: ``figures`` (in page order), ``headline`` lines, and the analyses."""

    title: str
    subtitle: str
    headline: list[str]
    drift_found: bool
    figures: list[Figure] = field(default_factory=list)
    monitor: MonitorResult | None = None
    quality: QualityResult | None = None
    features: dict | None = None
    bias: Any = None
    attribution: Any = None

    @property
    def failed(self) -> list[str]:
        """Keys of the sections whose figure could not be built."""
        return [f.key for f in self.figures if f.failed]

    def charts(self) -> dict[str, Any]:
        """The altair charts by figure key (traffic, predictions, drift, histograms, quality,
        quarantine) — display them in a notebook or save them with altair."""
        return {f.key: f.chart for f in self.figures if f.chart is not None}

    def headline_text(self) -> list[str]:
        """The headline as plain text (for a terminal)."""
        return [html.unescape(re.sub(r"<[^>]+>", "", line)) for line in self.headline]

    def figure(self, key: str) -> Figure:
        return next(f for f in self.figures if f.key == key)

    def to_html(self) -> str:
        """The self-contained HTML page."""
        parts = [f"<h1>{esc(self.title)}</h1>", f'<p class="meta">{self.subtitle}</p>']
        alarm = (self.drift_found or self.failed or bool(self.bias and self.bias.violations)
                 or bool(self.attribution and self.attribution.violated))
        cls = "headline" if alarm else "headline ok"
        items = "".join(f"<li>{line}</li>" for line in self.headline)
        parts.append(f'<div class="{cls}"><ul>{items}</ul></div>')
        specs: dict[str, dict] = {}
        for f in self.figures:
            parts.append(f'<h2 id="{f.key}">{esc(f.title)}</h2>')
            parts.append(f'<p class="desc">{f.description}</p>')
            note = f.note
            if f.chart is None and not f.html and not note:  # never a heading over nothing
                note = "nothing to draw: no data for this figure in the window"
            if note:
                cls = "note error" if f.failed else "note"
                parts.append(f'<p class="{cls}">{esc(note)}</p>')
            if f.chart is not None:
                fig_id = f"fig-{f.key}"
                specs[fig_id] = charts.spec(f.chart)
                parts.append(
                    f'<div class="figure" id="{fig_id}" data-key="{esc(f.key)}" '
                    f'data-title="{esc(f.title)}"></div>'
                )
            if f.html:
                parts.append(f.html)
            if f.table is not None and f.table.num_rows:
                parts.append(_html_table(f.table))
            if f.reproduce:
                parts.append(
                    "<details><summary>reproduce this figure</summary>"
                    f"<pre><code>{esc(f.reproduce)}</code></pre></details>"
                )
        extra = {"captureq-features": self.features} if self.features else {}
        return page(self.title, "\n".join(parts), specs, extra)

    def write(self, out: str | Path) -> Path:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.to_html(), encoding="utf-8")
        return out


def _html_table(table: pa.Table, limit: int = 20) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in table.column_names)
    body = []
    for row in table.slice(0, limit).to_pylist():
        body.append(
            "<tr>"
            + "".join(f"<td>{esc('' if v is None else v)}</td>" for v in row.values())
            + "</tr>"
        )
    more = f"<caption>{limit} of {table.num_rows} rows</caption>" if table.num_rows > limit else ""
    return f'<table class="data">{more}<tr>{head}</tr>{"".join(body)}</table>'


def _fmt_hour(v: datetime) -> str:
    return v.strftime("%Y-%m-%d %H:%M UTC")


def _iso_arg(v: datetime) -> str:
    return v.strftime("%Y-%m-%dT%H:%M")


def pick_endpoint(tree: Any, endpoint: str | list[str] | tuple | None) -> str:
    """The one endpoint the baseline describes: ``endpoint`` (a name or pattern) or the only one."""
    found = [
        r["endpoint"]
        for r in tree.sql("select distinct endpoint from captures order by 1").to_pylist()
    ]
    if not found:
        raise ConfigError(
            f"no captures in {tree.uri} for this window: check the URI and --start/--end"
        )
    if endpoint:
        patterns = [endpoint] if isinstance(endpoint, str) else list(endpoint)
        found = [e for e in found if any(fnmatchcase(e, p) for p in patterns)]
        if not found:
            raise ConfigError(f"no endpoint matches {', '.join(patterns)} in {tree.uri}")
    if len(found) > 1:
        raise ConfigError(
            f"the window holds {len(found)} endpoints ({', '.join(found)}); a baseline describes "
            "one: pass endpoint=... (--endpoint)"
        )
    return found[0]


def _endpoint_rows(table: pa.Table, endpoint: str) -> pa.Table:
    if "endpoint" not in table.column_names:
        return table
    return table.filter(pc.equal(table["endpoint"], endpoint))


HEADLINE_FEATURES = 5  # drifted features named in the headline; the rest are counted
DRIFT_SECTIONS = ("drift", "histograms", "features")  # their failure voids "no feature drifted"


def _figure(
    key: str,
    title: str,
    description: str,
    rows: pa.Table,
    draw: Any,
    reproduce: str,
    empty: str,
    **kwargs: Any,
) -> Figure:
    """A section whose chart is ``draw()`` when ``rows`` has rows (else ``empty`` says why
    not). A chart that cannot be built leaves the error in the section (``failed``) instead of
    stopping the report."""
    note = kwargs.pop("note", None)
    if not rows.num_rows:
        return Figure(key, title, description, rows, None, reproduce, empty, **kwargs)
    try:
        chart = draw()
    except Exception as exc:  # noqa: BLE001 - any builder error: the page says which section and why
        return Figure(key, title, description, rows, None, reproduce,
                      f"could not draw this figure: {type(exc).__name__}: {exc}",
                      failed=True, **kwargs)  # fmt: skip
    return Figure(key, title, description, rows, chart, reproduce, note, **kwargs)


def model_args(model: ModelType) -> list[str]:
    """The ``captureq quality`` options that choose ``model`` again."""
    args = ["--problem-type", model.problem_type]
    if model.probabilities:
        args += ["--probability", ",".join(model.probabilities)]
        if model.class_labels:
            args += ["--class-labels", ",".join(model.class_labels)]
    else:
        args += ["--prediction", model.prediction]
    if model.problem_type == BINARY and model.threshold != 0.5:
        args += ["--threshold", str(model.threshold)]
    return args


def build_report(
    tree: Any,
    baseline: Baseline | str | Path,
    *,
    endpoint: str | None = None,
    prediction: str | None = None,
    problem_type: str | None = None,
    probability: str | list[str] | None = None,
    class_labels: list[str] | None = None,
    threshold: float = 0.5,
    top_features: int = 20,
    categories: int = 12,
    baseline_label: str | None = None,
    estimate_reference: tuple[Any, Any] | None = None,
    compare: Any = None,
    bias_config: str | Path | dict | None = None,
    bias_baseline: str | Path | None = None,
    attribution_baseline: str | Path | None = None,
) -> Report:
    """Run monitoring (and model quality when the tree has labels) and build every figure.

    ``tree`` is a :class:`~captureq.CaptureTree` (narrow it with ``start``/``end`` first);
    traffic and quarantine cover every endpoint in it, the other figures ``endpoint`` (needed
    when the window holds several). ``baseline`` is a :class:`Baseline` or its folder.
    ``estimate_reference=(start, end)``, a labelled window, adds the quality estimated without
    labels (CBPE/DLE) beside the realized quality. ``compare``, a
    :class:`~captureq.compare.CompareResult`, adds its sections (candidate vs baseline).
    ``bias_config`` (Clarify's analysis configuration), with ``bias_baseline`` (an
    ``analysis.json``) optional, adds the bias-drift section (:func:`~captureq.monitor.bias.bias`
    per hour; needs the labels); ``attribution_baseline`` (Clarify's SHAP ``analysis.json``) the
    feature-attribution section (:func:`~captureq.monitor.attribution.attribution_monitor`).
    ``prediction``, ``problem_type``,
    ``probability``, ``class_labels`` and ``threshold`` say what the model is, as for
    :func:`~captureq.monitor.quality.model_quality` (inferred when omitted).
    """
    base_label = baseline_label or (
        str(baseline) if not isinstance(baseline, Baseline) else "BASELINE"
    )
    base = baseline if isinstance(baseline, Baseline) else Baseline.load(baseline)
    ep = pick_endpoint(tree, endpoint)

    # -- the commands that reproduce each figure --------------------------------------------
    w = tree.window
    window_args = []
    if w.start is not None:
        window_args += ["--start", _iso_arg(w.start)]
    if w.end is not None:
        window_args += ["--end", _iso_arg(w.end)]
    labels_args = ["--labels", tree.labels_uri] if tree.labels_uri else []
    open_kw = [repr(tree.uri)]
    if tree.labels_uri:
        open_kw.append(f"labels={tree.labels_uri!r}")
    if w.start is not None:
        open_kw.append(f"start={_iso_arg(w.start)!r}")
    if w.end is not None:
        open_kw.append(f"end={_iso_arg(w.end)!r}")
    py_open = f"cq = captureq.open({', '.join(open_kw)})"

    def cli(*args: str) -> str:
        return shlex.join(["captureq", *args])

    def query_cmd(sql: str) -> str:
        # the SQL's header comment becomes a shell comment: an argument starting with "--"
        # would read as an option
        lines = sql.strip().splitlines()
        header = [ln[2:].strip() for ln in lines if ln.startswith("--")]
        body = "\n".join(ln for ln in lines if not ln.startswith("--"))
        cmd = cli("query", tree.uri, *labels_args, *window_args, "--format", "csv", body)
        return "".join(f"# {h}\n" for h in header) + cmd

    monitor_cmd = cli(
        "monitor",
        tree.uri,
        "--baseline",
        base_label,
        "--endpoint",
        ep,
        *window_args,
        "--out",
        "monitor-out",
    )

    # -- analyses --------------------------------------------------------------------------
    # named as the baseline names them (a header-named training CSV vs _c0… payloads), with
    # the raw-text evidence the type checks need
    inputs = align_names(_endpoint_rows(tree_inputs(tree), ep), base)
    result = monitor(inputs, base)
    onsets = data.drift_onset(result)
    onset = None
    if onsets:
        first = onsets[0]["first_drift_hour"]
        feats = [o["feature"] for o in onsets if o["first_drift_hour"] == first]
        named = ", ".join(feats[:3]) + (f" and {len(feats) - 3} more" if len(feats) > 3 else "")
        onset = {"hour": first, "label": f"drift began {first:%m-%d %H:00} UTC: {named}"}

    figures: list[Figure] = []

    t = data.traffic(tree, ep)
    figures.append(
        _figure(
            "traffic",
            f"Traffic per hour — {ep}",
            "Requests captured per UTC hour, stacked by variant.",
            t,
            lambda: charts.traffic_chart(t, onset),
            query_cmd(data.query_text("traffic", endpoint=ep)),
            "no captures in the window",
        )
    )

    # model quality first: the problem type and prediction it chooses (from the outputs and the
    # labels) name the column the predictions figure shows
    quality, q_note = None, None
    if tree.labels_uri:
        preds = _endpoint_rows(tree.predictions(), ep)
        try:
            quality = model_quality(preds, problem_type=problem_type, prediction=prediction,
                                    probability=probability, class_labels=class_labels,
                                    threshold=threshold)  # fmt: skip
        except ConfigError as exc:
            q_note = str(exc)
    pred_col = (
        quality.model_type.prediction
        if quality is not None
        else data.prediction_column(tree, ep, prediction)
    )
    pd_ = data.prediction_distribution(tree, ep, pred_col)
    sql_name = "predictions_numeric" if "p50" in pd_.column_names else "predictions_categorical"
    figures.append(
        _figure(
            "predictions",
            f"Predictions over time — {ep}, {pred_col}",
            "Per hour and variant: the band holds the middle 80 % (light) and 50 % (dark) of the "
            "predictions, the line is the median.",
            pd_,
            lambda: charts.prediction_chart(pd_, pred_col, onset),
            query_cmd(data.query_text(sql_name, prediction=pred_col, endpoint=ep)),
            f"no values of {pred_col} for {ep} in the window",
        )
    )

    heat = data.drift_heatmap(result)
    order = data.feature_order(result)
    top = order[:top_features]
    shown = f"the {len(top)} worst of {len(order)} features" if len(order) > len(top) else "every feature"
    heat_sql = data.sql_text("drift_heatmap").strip()
    figures.append(
        _figure(
            "drift",
            f"Drift per feature and hour — {ep} against the baseline",
            "Colour: population stability index (PSI) of each feature's hourly values against "
            "the baseline (darker = further from the baseline; clamped at 2). ✕: a constraint "
            f"check on that feature failed in that hour. Shown: {shown}, the most failed hours "
            "first; every feature is in the table below.",
            heat,
            lambda: charts.drift_chart(
                heat.filter(pc.is_in(heat["feature"], pa.array(top, pa.string()))), top, onset
            ),
            f"{monitor_cmd}\n\n# or in Python, the heat map's exact data:\n"
            f"import captureq, duckdb\n{py_open}\n"
            f"r = cq.where(endpoint={ep!r}).monitor({base_label!r})\n"
            f"drift, violations = r.drift, r.violations\n"
            f'duckdb.sql("""\n{heat_sql}\n""").pl()',
            "no hourly drift rows: the window has no timestamps",
        )
    )

    worst = top
    since = onset["hour"] if onset else None
    # every feature's bins: the worst are drawn, the others on demand from the feature table
    every = data.feature_histograms(base, inputs, order, since=since, categories=categories)
    hist = every.filter(pc.is_in(every["feature"], pa.array(worst, pa.string())))
    figures.append(
        _figure(
            "histograms",
            f"Worst {len(worst)} features: baseline vs window",
            "Share of values per bin: the baseline (grey), the whole window (blue)"
            + (
                f" and the hours since drift began, {_fmt_hour(onset['hour'])} (red)."
                if onset
                else "."
            ),
            hist,
            lambda: charts.histogram_chart(hist, worst),
            "import captureq\nfrom captureq.monitor import Baseline, monitor\n"
            "from captureq.monitor.check import align_names\n"
            "from captureq.report import data\n"
            f"{py_open}\nbase = Baseline.load({base_label!r})\n"
            f"inputs = align_names(cq.where(endpoint={ep!r}).inputs(), base)\n"
            f"worst = data.worst_features(monitor(inputs, base), {top_features})\n"
            "data.feature_histograms(base, inputs, worst"
            + (f", since=datetime.fromisoformat({onset['hour'].isoformat()!r})" if onset else "")
            + ")",
            data.why_no_histograms(base, inputs, worst),
        )
    )

    ft = data.feature_table(result)
    features = None
    try:
        features = data.feature_payload(ft, every, heat)
        features["spec"] = charts.feature_spec_template()
        features["colors"] = charts.series_colors(features["series"])
        ft_note, ft_failed = None if ft.num_rows else "no feature has hourly drift results", False
    except Exception as exc:  # noqa: BLE001 - a section that cannot be drawn says so
        ft_note, ft_failed = f"could not draw this figure: {type(exc).__name__}: {exc}", True
        features = None
    figures.append(
        Figure(
            "features",
            f"Every feature, ranked — {len(order):,} features",
            "Worst first (most drifted hours, then the largest distance). Type in the box to "
            "filter by name, click a column heading to sort, click a feature to draw its "
            "histogram (baseline vs window) and its hourly PSI below the table.",
            ft,
            None,
            f"{monitor_cmd}\n\n# or in Python:\nimport captureq\nfrom captureq.monitor import "
            f"monitor\nfrom captureq.report import data\n{py_open}\n"
            f"data.feature_table(cq.where(endpoint={ep!r}).monitor({base_label!r}))",
            ft_note,
            failed=ft_failed,
            html='<div class="features" id="feature-table"></div>' if features else "",
        )
    )

    if tree.labels_uri:
        qt = data.quality_over_time(quality) if quality else None
        overall = quality.overall() if quality else {}
        desc = (
            f"{quality.problem_type} metrics of {quality.prediction} against ground truth per hour (top) and "
            f"the share of records with a label (bottom); over the window {overall.get('labelled', 0):,} "
            f"of {overall.get('records', 0):,} records are labelled."
            if quality
            else "Model quality against ground truth."
        )
        if qt is not None and not (qt.num_rows and pc.sum(qt["labelled"]).as_py()):
            q_note = q_note or "no labelled records in the window yet"
        figures.append(
            _figure(
                "quality",
                f"Model quality over time — {ep}",
                desc,
                qt if qt is not None else pa.table({}),
                lambda: charts.quality_chart(qt, onset),
                cli(
                    "quality",
                    tree.uri,
                    *labels_args,
                    *window_args,
                    "--endpoint",
                    ep,
                    *(model_args(quality.model_type) if quality else ["--prediction", pred_col]),
                ),
                q_note or "no model quality for this window",
                note=q_note,
            )
        )
    else:
        figures.append(
            Figure(
                "quality",
                "Model quality over time",
                "Needs ground truth: pass --labels URI (labels=... in Python).",
                pa.table({}),
                note="no labels URI given",
            )
        )

    if estimate_reference is not None:
        figures.append(_estimate_figure(tree, ep, pred_col, estimate_reference, onset, cli))

    bias_result = attribution_result = None
    if bias_config is not None:
        from .clarify import bias_figure

        fig, bias_result = bias_figure(
            tree, ep, bias_config, bias_baseline, cli, window_args, prediction=prediction,
            probability=probability if isinstance(probability, str) else None,
            figure_cls=Figure)
        figures.append(fig)
    if attribution_baseline is not None:
        from .clarify import attribution_figure

        fig, attribution_result = attribution_figure(tree, ep, attribution_baseline, cli,
                                                     window_args, figure_cls=Figure)
        figures.append(fig)

    if compare is not None:
        from .compare import compare_figures

        figures.extend(compare_figures(compare))

    qs = data.quarantine_summary(tree)
    total_q = pc.sum(qs["entries"]).as_py() or 0 if qs.num_rows else 0
    figures.append(
        _figure(
            "quarantine",
            "Quarantine",
            f"{total_q:,} lines or payloads could not be used (all endpoints); per stage and reason.",
            qs,
            lambda: charts.quarantine_chart(qs),
            query_cmd(data.query_text("quarantine_summary"))
            + "\n\n# every entry, with the raw text:\n"
            + query_cmd("select * from quarantine order by source_file, line_number"),
            "nothing was quarantined",
            table=qs,
        )
    )

    # -- headline --------------------------------------------------------------------------
    headline = []
    hours = result.drift.filter(pc.equal(result.drift["granularity"], "hour"))
    n_hours = len(set(hours["window_start"].to_pylist())) if hours.num_rows else 0
    for o in onsets[:HEADLINE_FEATURES]:
        headline.append(
            f"<b>Drift in <code>{esc(o['feature'])}</code> from {_fmt_hour(o['first_drift_hour'])}</b>: "
            f"{o['drifted_hours']} of {o['hours']} hours failed the baseline drift check "
            f"(max PSI {o['max_psi']:.2f})."
        )
    if len(onsets) > HEADLINE_FEATURES:
        headline.append(
            f"<b>{len(onsets) - HEADLINE_FEATURES:,} more of the {len(order):,} features drifted</b> "
            "(all in the feature table)."
        )
    failed = [f for f in figures if f.failed]
    for f in failed:
        headline.append(f"<b>The section “{esc(f.title)}” failed to draw</b>: {esc(f.note)}")
    if not onsets:
        if any(f.key in DRIFT_SECTIONS for f in failed):
            headline.append(
                "Drift is not shown: a drift section failed to draw (above); "
                f"<code>{esc(monitor_cmd)}</code> writes the verdicts."
            )
        else:
            headline.append(
                f'<span data-claim="no-drift">No feature drifted in any of the {n_hours} hours '
                "checked.</span>"
            )
    window_viol = result.constraint_violations["violations"]
    if window_viol:
        kinds = sorted({v["constraint_check_type"] for v in window_viol})
        headline.append(
            f"{len(window_viol)} constraint violation(s) over the whole window ({', '.join(kinds)})."
        )
    if quality is not None and quality.overall():
        o = quality.overall()
        key = "accuracy" if "accuracy" in o else "r2"
        if o.get(key) is not None:
            headline.append(
                f"Model quality over the window: {key} {o[key]:.3f}, label coverage {o['label_coverage']:.0%}."
            )
    if bias_result is not None and bias_baseline is not None:
        hours = sorted({v["window"] for v in bias_result.violations if v["window"] != "window"})
        names = sorted({v["metric_name"] for v in bias_result.violations})
        headline.append(
            f"<b>Bias drift: violations in {len(hours)} hour(s)</b> ({esc(', '.join(names))})."
            if hours else "Bias drift: no bias violation in any hour.")
    if attribution_result is not None:
        s = attribution_result.scores
        bad = s.filter(pc.and_(pc.not_equal(s["granularity"], "window"), s["violation"]))
        headline.append(
            f"<b>Feature-attribution drift in {len({r for r in bad['window_start'].to_pylist()})} "
            f"hour(s)</b>: NDCG below {bad['threshold'][0].as_py()} from "
            f"{_fmt_hour(pc.min(bad['window_start']).as_py())}."
            if bad.num_rows else "Feature-attribution drift: every hour's NDCG met the threshold.")
    headline.append(f"{total_q:,} quarantined lines/payloads.")

    start = w.start or (pc.min(heat["hour"]).as_py() if heat.num_rows else None)
    end = w.end or (pc.max(heat["hour_end"]).as_py() if heat.num_rows else None)
    span = f"{_fmt_hour(start)} – {_fmt_hour(end)}" if start and end else "whole tree"
    subtitle = (
        f"endpoint <b>{esc(ep)}</b> · window {esc(span)} · capture <code>{esc(tree.uri)}</code>"
        + (f" · labels <code>{esc(tree.labels_uri)}</code>" if tree.labels_uri else "")
        + f" · baseline <code>{esc(base_label)}</code><br>reproduce the whole report: <code>"
        + esc(
            cli(
                "report",
                tree.uri,
                "--baseline",
                base_label,
                *labels_args,
                *window_args,
                "--endpoint",
                ep,
                "-o",
                "report.html",
            )
        )
        + "</code>"
    )
    return Report(
        title=f"captureq monitoring report — {ep}",
        subtitle=subtitle,
        headline=headline,
        drift_found=bool(onsets),
        figures=figures,
        monitor=result,
        quality=quality,
        features=features,
        bias=bias_result,
        attribution=attribution_result,
    )


def _estimate_figure(tree: Any, ep: str, pred_col: str, reference: tuple, onset, cli) -> Figure:
    """The estimated-quality section: CBPE/DLE band and estimate vs the realized line."""
    from ..monitor.estimate import estimate_quality

    ref_start, ref_end = (_iso_arg(to_utc(v)) for v in reference)
    cmd = cli("estimate", tree.uri, *(["--labels", tree.labels_uri] if tree.labels_uri else []),
              "--endpoint", ep, "--prediction", pred_col,
              "--reference-start", ref_start, "--reference-end", ref_end)
    title = f"Quality estimated without labels — {ep}"
    try:
        est = estimate_quality(tree, reference_start=ref_start, reference_end=ref_end,
                               endpoint=ep, prediction=pred_col)
    except ConfigError as exc:
        return Figure("estimate", title, "Needs a labelled reference window.", pa.table({}),
                      reproduce=cmd, note=str(exc))
    m = est.metrics
    name = m["metric"][0].as_py() if m.num_rows else "accuracy"
    rows = m.filter(pc.and_(pc.equal(m["granularity"], "hour"), pc.equal(m["metric"], name)))
    rows = rows.rename_columns(["hour" if c == "window_start" else c for c in rows.column_names])
    how = (f"CBPE, calibration {est.calibration.method}" if est.calibration
           else "DLE, gradient-boosted error model")
    desc = (f"{name} per hour estimated from the predictions alone ({how}, reference "
            f"{ref_start} – {ref_end}): dashed line inside its {est.confidence:.0%} band; the "
            "solid line is the realized value where labels exist, the grey rule the reference's "
            f"threshold. {_crossed(est.violations)}")
    return Figure("estimate", title, desc, rows,
                  charts.estimate_chart(rows, onset) if rows.num_rows else None, cmd,
                  None if rows.num_rows else "no predictions in the window")


def _crossed(violations: pa.Table) -> str:
    hours = [v for v in violations.to_pylist() if v["granularity"] == "hour"]
    if not hours:
        return "No hour's estimate crossed the reference's thresholds."
    per: dict[str, int] = {}
    for v in hours:
        per[v["metric_name"]] = per.get(v["metric_name"], 0) + 1
    return "Hours whose band crossed the reference's threshold: " + ", ".join(
        f"{k} {n}" for k, n in sorted(per.items())
    ) + "."
