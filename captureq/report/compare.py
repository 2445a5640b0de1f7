"""The comparison of two models (:func:`captureq.compare.compare`) as report sections.

:func:`compare_figures` gives the sections as :class:`~captureq.report.build.Figure` objects,
which a :class:`~captureq.report.build.Report` lays out (``build_report(…, compare=result)``
adds them to the monitoring report); :func:`compare_report` makes a page of its own.

>>> from captureq.compare import compare                                  # doctest: +SKIP
>>> compare_report(compare(cq, baseline="A", candidate="B")).write("compare.html")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .build import Figure, Report
from .html import esc


def _flip_chart(flips: pa.Table):
    import altair as alt

    from .charts import values

    rows = values(flips)
    base = alt.Chart(alt.Data(values=rows)).encode(
        x=alt.X("candidate:N", title="candidate's label"),
        y=alt.Y("baseline:N", title="baseline's label"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("count:Q", scale=alt.Scale(scheme="blues"), title="records"),
        tooltip=["baseline:N", "candidate:N", "count:Q"],
    )
    text = base.mark_text(fontSize=13).encode(text="count:Q")
    side = max(120, 48 * len({r["candidate"] for r in rows}))
    return (cells + text).properties(width=side, height=side)


def _diff_chart(hist: pa.Table):
    import altair as alt

    from .charts import WIDTH, values

    return (
        alt.Chart(alt.Data(values=values(hist)))
        .mark_bar(color="#1f77b4")
        .encode(
            x=alt.X("low:Q", bin="binned", title="candidate − baseline"),
            x2="high:Q",
            y=alt.Y("records:Q", title="records"),
            tooltip=["low:Q", "high:Q", "records:Q"],
        )
        .properties(width=WIDTH - 200, height=180)
    )


def _slice_chart(slices: pa.Table):
    import altair as alt

    from .charts import WIDTH, values

    rows = values(slices.slice(0, 15))
    for r in rows:
        r["label"] = f"{r['feature']} ({r['test']})"
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_bar(color="#ff7f0e")
        .encode(
            x=alt.X("statistic:Q", title="KS statistic / chi-square (per feature)"),
            y=alt.Y("label:N", sort=None, title=None),
            tooltip=["feature:N", "test:N", "statistic:Q", "p_value:Q", "where:N"],
        )
        .properties(width=WIDTH - 300, height=max(40, 22 * len(rows)))
    )


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def compare_figures(result: Any) -> list[Figure]:
    """The comparison's report sections: summary, flip matrix, score differences, slices,
    quality, latency and errors, the records that differ most."""
    s = result.summary
    name = f"{result.candidate} vs {result.baseline}"
    cmd = (f"captureq compare TREE --baseline {result.baseline} --candidate {result.candidate}"
           + (f" --endpoint {result.endpoint}" if result.endpoint else ""))
    summary = result.metrics.filter(pc.is_valid(result.metrics["value"]))
    figures = [
        Figure(
            "compare-summary", f"Candidate vs baseline — {name}",
            f"{s['paired_requests']:,} requests answered by both ({s['missing_requests']:,} "
            f"without a candidate answer, {s['ambiguous_requests']:,} whose key repeats); "
            f"{s['records_compared']:,} records compared: agreement {_pct(s['agreement'])}. "
            f"Model: {esc(result.model_type.describe())}.",
            summary, None, cmd + " --format csv",
            "; ".join(result.notes) or None, table=summary,
        ),
    ]
    flips = result.flips
    figures.append(Figure(
        "compare-flips", "Flip matrix — baseline's label × candidate's label",
        "Records per pair of predicted labels; off the diagonal the models disagree"
        + (f" (scores cut at {result.threshold})." if result.problem_type.startswith("Binary")
           else "."),
        flips, _flip_chart(flips) if flips.num_rows else None, cmd,
        None if flips.num_rows else "regression: no labels to flip (see the score differences)",
    ))  # fmt: skip
    hist = result.diff_histogram
    figures.append(Figure(
        "compare-diffs", "Score differences (candidate − baseline)",
        "Distribution of each record's difference; the table holds its mean and quantiles.",
        hist, _diff_chart(hist) if hist.num_rows else None, cmd,
        None if hist.num_rows else "no scores to subtract (multiclass labels)",
        table=result.score_diff,
    ))  # fmt: skip
    sl = result.slices
    figures.append(Figure(
        "compare-slices", "Where they disagree: the slices to look at",
        "Per input feature, how its values differ between records the models agree on and "
        "records they do not (two-sample KS for numbers, chi-square for categories), smallest "
        "p-value first.",
        sl, _slice_chart(sl) if sl.num_rows else None, cmd,
        None if sl.num_rows else "no feature to compare: the models agree everywhere or nowhere",
        table=sl,
    ))  # fmt: skip
    q = result.quality
    labelled = s.get("labelled_records") or 0
    figures.append(Figure(
        "compare-quality", "Quality on the same labelled requests",
        f"Both models on the {labelled:,} labelled records they both answered; the difference's "
        f"{result.confidence:.0%} interval from {result.bootstrap:,} paired bootstrap resamples."
        + (" Below: quality estimated on the records without labels." if result.estimate.num_rows
           else ""),
        q, None, cmd + " --labels LABELS",
        None if labelled else "no labelled records among the pairs",
        table=q if labelled else None,
    ))  # fmt: skip
    if result.estimate.num_rows:
        figures[-1].table = pa.concat_tables([q.select(["metric", "baseline", "candidate", "diff"])
                                              .append_column("kind", pa.array(["measured"] * q.num_rows)),
                                              result.estimate.select(["metric", "baseline", "candidate", "diff"])
                                              .append_column("kind", pa.array(["estimated"] * result.estimate.num_rows))])  # fmt: skip
        figures[-1].note = None
    figures.append(Figure(
        "compare-latency", "Latency and errors",
        "Over the paired requests: the candidate's latency is the replay's (replayLatencyMs); "
        "the baseline's is shown when its captures carry one.",
        result.latency, None, cmd, None, table=result.latency,
    ))  # fmt: skip
    figures.append(Figure(
        "compare-top", "The records that differ most",
        "With their inputs, largest difference first (multiclass: disagreements first).",
        result.top, None, cmd + " --top 50",
        None if result.top.num_rows else "no records compared", table=result.top,
    ))  # fmt: skip
    return figures


def compare_report(result: Any, title: str | None = None) -> Report:
    """A page of its own holding :func:`compare_figures`."""
    s = result.summary
    headline = [
        f"Agreement <b>{_pct(s['agreement'])}</b> over {s['records_compared']:,} records.",
        f"Error rate: baseline {_pct(s['error_rate_baseline'])}, candidate "
        f"{_pct(s['error_rate_candidate'])}.",
    ]
    for m in ("accuracy", "mae"):
        if s.get(f"{m}_diff") is not None:
            lo, hi = s.get(f"{m}_diff_lower"), s.get(f"{m}_diff_upper")
            band = f" ({lo:+.3f} to {hi:+.3f})" if lo is not None else ""
            headline.append(f"{m} difference {s[f'{m}_diff']:+.3f}{band} on "
                            f"{s['labelled_records']:,} labelled records.")
    return Report(
        title=title or f"captureq compare — {result.candidate} vs {result.baseline}",
        subtitle=f"endpoint <b>{esc(result.endpoint)}</b>",
        headline=headline,
        drift_found=False,
        figures=compare_figures(result),
    )
