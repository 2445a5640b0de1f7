"""``make demo``: generate a realistic capture tree, then run captureq's main job on it.

    python -m captureq.demo [DIR]

Writes ``DIR/capture`` (three endpoints, two variants, 48 hours, CSV/JSON/BASE64 payloads) and
``DIR/groundtruth``, then scans it, queries the joined predictions with ground truth, exports
to Parquet (twice, to show the incremental run) and queries the export from the ``duckdb`` CLI.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

import captureq

from .cli import duckdb_cli
from .cli_options import rich_table as _rich_table
from .export import shell_sql
from .generate import generate_tree

console = Console()

HOURLY = """
select endpoint, variant, count(distinct capture_id) as requests, count(*) as records,
       count(ground_truth) as labelled,
       round(avg(coalesce(output_c0, output_score)), 4) as mean_score
from predictions
group by all
order by all
"""

QUALITY = """
-- churn model: predicted label at a 0.8 probability cut-off vs ground truth, per day
select cast(inference_time as date) as day,
       count(*) as labelled_records,
       round(avg(((output_c0 >= 0.8)::int = ground_truth_value)::int), 4) as accuracy,
       sum(((output_c0 >= 0.8) and ground_truth_value = 1)::int) as true_positives
from predictions
where endpoint = 'churn-xgb' and ground_truth is not null
group by all order by all
"""


ESTIMATED = """
select strftime(window_start, '%m-%d %H:00') as hour, records, labelled,
       round(estimated, 3) as estimated, round(lower, 3) || ' – ' || round(upper, 3) as band,
       round(realized, 3) as realized
from estimated_quality
where metric = 'accuracy' and granularity = 'hour'
order by window_start
"""


def write_training_csv(capture: str, path: str, end) -> int:
    """``churn-xgb``'s inputs before ``end`` as a CSV with a header: the demo's training data,
    the file the README's ``captureq baseline demo-data/training.csv ...`` reads. Returns rows."""
    import pyarrow.csv as pcsv

    from . import schema

    inputs = captureq.open(capture, endpoint="churn-xgb", end=end).inputs()
    features = [c for c in inputs.column_names if c not in schema.RECORD_KEY_NAMES]
    pcsv.write_csv(inputs.select(features), path)
    return inputs.num_rows


def make_demo_data(base: Path, hours: int = 48, requests_per_hour: int = 60):
    """The demo's files under ``base``: ``capture/``, ``groundtruth/`` (planted drift in
    churn-xgb's ``_c3`` from hour 30) and ``training.csv`` (churn-xgb's first 24 hours)."""
    from datetime import timedelta

    summary = generate_tree(str(base / "capture"), labels_out=str(base / "groundtruth"),
                            hours=hours, requests_per_hour=requests_per_hour,
                            drift_feature="_c3", drift_from_hour=30)
    write_training_csv(str(base / "capture"), str(base / "training.csv"),
                       summary.start + timedelta(hours=24))
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    base = Path(argv[0] if argv else "demo-data")
    capture, labels, export_dir = base / "capture", base / "groundtruth", base / "parquet"
    if base.exists():
        shutil.rmtree(base)
    # The whole story on one machine: a model served on loopback, captured, labelled, queried.
    from .serve_demo import main as serve_main

    serve_main([str(base / "serve")])

    console.rule("[bold]1. generate a sample capture tree")
    t0 = time.perf_counter()
    summary = make_demo_data(base)
    console.print(f"wrote {summary.captures:,} captures in {summary.files_written} files, "
                  f"{summary.labels_written:,} ground-truth lines and {base / 'training.csv'} "
                  f"(churn-xgb's first 24 hours, the training data) under {base}/ "
                  f"({time.perf_counter() - t0:.1f}s)")

    console.rule("[bold]2. scan")
    t0 = time.perf_counter()
    cq = captureq.open(str(capture), labels=str(labels))
    tables = cq.load()
    c = tables.counts
    console.print(f"{c.files} files, {c.lines_read:,} lines = {c.rows:,} captures + {c.quarantined_lines} "
                  f"quarantined; {c.input_records:,} input / {c.output_records:,} output records; "
                  f"{tables.labels.num_rows:,} labels  ({time.perf_counter() - t0:.2f}s)")

    console.rule("[bold]3. query: predictions joined with ground truth")
    console.print(_rich_table(cq.sql(HOURLY).to_arrow(), title="traffic, labels and mean score"))
    console.print(_rich_table(cq.sql(QUALITY).to_arrow(), title="churn-xgb quality at a 0.8 cut-off"))
    sample = cq.sql("select endpoint, capture_id, record_index, _c0, _c1, output_c0, ground_truth "
                    "from predictions where ground_truth is not null and endpoint = 'churn-xgb' "
                    "order by inference_time limit 5").to_arrow()
    console.print(_rich_table(sample, title="a few labelled churn predictions"))

    console.rule("[bold]4. export to Parquet (incremental)")
    first = cq.export(str(export_dir))
    again = captureq.open(str(capture), labels=str(labels)).export(str(export_dir))
    console.print(f"first run: {first.files_exported} files → {first.rows}")
    console.print(f"second run: {again.files_exported} new files, {again.files_skipped} already exported")

    console.rule("[bold]5. the duckdb shell over the export")
    exe = duckdb_cli()
    if exe:
        init = base / "views.sql"
        init.write_text(shell_sql(str(export_dir)))
        q = "select endpoint, count(*) as records, count(ground_truth) as labelled from predictions group by 1 order by 1;"
        out = subprocess.run([exe, "-init", str(init), "-c", q], capture_output=True, text=True)
        console.print(out.stdout)
        console.print(f"try it: [bold]{exe} -init {init}[/]   (or: captureq shell {capture} --labels {labels})")
    else:
        console.print("duckdb CLI not found (pip install duckdb-cli)")

    console.rule("[bold]6. the monitoring report (baseline: churn-xgb's first 24 hours)")
    t0 = time.perf_counter()
    from datetime import timedelta

    from .report import build_report

    first_day = captureq.open(str(capture), endpoint="churn-xgb", end=summary.start + timedelta(hours=24))
    first_day.baseline(str(base / "baseline"))
    rep = build_report(captureq.open(str(capture), labels=str(labels)), str(base / "baseline"),
                       endpoint="churn-xgb",
                       estimate_reference=(summary.start, summary.start + timedelta(hours=24)))
    report = rep.write(base / "report.html")
    for line in rep.headline_text():
        console.print("  " + line, highlight=False)
    console.print(f"wrote [bold]{report.resolve()}[/] ({report.stat().st_size / 1024:.0f} KiB, "
                  f"{time.perf_counter() - t0:.1f}s) — open it in a browser; "
                  f"again: captureq report {capture} --baseline {base / 'baseline'} --labels {labels} "
                  f"--endpoint churn-xgb -o {base / 'report.html'}")

    console.rule("[bold]7. model quality before the labels arrive (CBPE)")
    # Ground truth lags: say it has arrived for the first 36 inference hours only (label
    # folders are 2 hours after the inference hour). Copy what has arrived so far.
    so_far, cutoff = base / "groundtruth-so-far", summary.start + timedelta(hours=36 + 2)
    for path in sorted(labels.rglob("*.jsonl")):
        folder = datetime.strptime("/".join(path.parent.parts[-4:]), "%Y/%m/%d/%H")
        if folder.replace(tzinfo=summary.start.tzinfo) < cutoff:
            (so_far / path.relative_to(labels)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, so_far / path.relative_to(labels))
    churn = captureq.open(str(capture), labels=str(so_far), endpoint="churn-xgb")
    ref_start, ref_end = summary.start, summary.start + timedelta(hours=24)
    est = churn.estimate_quality(reference_start=ref_start, reference_end=ref_end,
                                 start=ref_end)
    cal = est.calibration
    console.print(f"reference {ref_start:%m-%d %H:00} – {ref_end:%m-%d %H:00} UTC: "
                  f"{est.reference['labelled']:,} labelled records, accuracy "
                  f"{est.reference['accuracy']:.3f}; calibration {cal.method} (ECE {cal.ece_raw:.3f}, "
                  f"a calibrated score reaches {cal.ece_chance:.3f} by chance)")
    console.print(_rich_table(churn.sql(ESTIMATED).to_arrow(), limit=30,
                              title="churn-xgb accuracy per hour: estimated (no labels needed) "
                                    "vs realized (where labels arrived)"))
    console.print(f"again: captureq estimate {capture} --labels {so_far} --endpoint churn-xgb "
                  f"--reference-start {ref_start:%Y-%m-%dT%H} --reference-end {ref_end:%Y-%m-%dT%H} "
                  f"--start {ref_end:%Y-%m-%dT%H}")

    console.rule("[bold]8. replay an hour of traffic against a retrained model")
    hour = summary.start + timedelta(hours=32)
    replay_hour(capture, base / "replay", hour)

    console.rule("[bold]9. compare the retrained model with the one that answered the same requests")
    compare_hour(capture, labels, base / "replay", hour)

    console.rule("[bold]10. Clarify's monitors: bias drift and feature-attribution drift")
    clarify_monitors(base / "loans")
    return 0


def clarify_monitors(base: Path) -> None:
    """A loan-approval endpoint whose model, from hour 12, approves ``sex=1`` less often and
    leans on ``region``: baselines of hours 0–11, then both monitors over every hour."""
    from datetime import timedelta

    import polars as pl

    from .generate import LOANS_BIAS_CONFIG, generate_loans
    from .monitor.attribution import attribution_baseline, attribution_monitor
    from .monitor.bias import bias

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    capture, labels = generate_loans(str(base / "capture"), str(base / "labels"), hours=24,
                                     requests_per_hour=200, shift_from_hour=12, start=start)
    import json

    (base / "bias-config.json").write_text(json.dumps(LOANS_BIAS_CONFIG, indent=2) + "\n")
    cq = captureq.open(capture, labels=labels)
    first_half = cq.where(end=start + timedelta(hours=12))
    base_bias = bias(first_half, LOANS_BIAS_CONFIG)
    base_bias.write(base / "bias-baseline")
    drift = bias(cq, LOANS_BIAS_CONFIG, baseline=base / "bias-baseline" / "analysis.json", every="hour")
    found = [v for v in drift.violations if v["window"] != "window"]
    if found:
        first = (pl.DataFrame(found).group_by("facet", "facet_value", "metric_name")
                 .agg(pl.col("window").min().alias("from"), pl.len().alias("hours")).sort("from", "metric_name"))
        console.print(_rich_table(first.to_arrow(), title="bias drift (baseline: hours 0-11; the shift starts at 12:00)"))
    else:
        console.print("[green]no bias metric drifted[/]")
    attribution_baseline(first_half, base / "attribution-baseline")
    scores = attribution_monitor(cq, base / "attribution-baseline" / "analysis.json", every="hour").scores
    hours = pl.from_arrow(scores).filter(pl.col("granularity") == "hour")
    low = hours.filter(pl.col("violation"))
    console.print(f"feature attribution: NDCG below 0.9 in {low.height} of {hours.height} hours"
                  + (f", from {low['window_start'].min():%Y-%m-%d %H:%M} UTC (top feature now: "
                     f"{low['top_features'][0].split(',')[0]})" if low.height else ""), highlight=False)
    console.print(f"again: captureq bias monitor {capture} --labels {labels} --config "
                  f"{base / 'bias-config.json'} --baseline {base / 'bias-baseline' / 'analysis.json'} "
                  f"--out {base / 'bias-drift'}; captureq attribution "
                  f"monitor {capture} --baseline {base / 'attribution-baseline' / 'analysis.json'}",
                  highlight=False)


def compare_hour(capture: Path, labels: Path, replayed: Path, hour) -> None:
    """Compare the replayed answers (variant ``retrained``) with the served model's on the same
    requests of ``hour``, with the ground truth that has arrived."""
    from datetime import timedelta

    import pyarrow.compute as pc

    from .cli_options import fmt
    from .compare import compare

    served = captureq.open(str(capture), labels=str(labels)).where(
        endpoint="churn-xgb", start=hour, end=hour + timedelta(hours=1))
    [variant] = served.sql("select variant from captures group by 1 order by count(*) desc, 1 "
                           "limit 1").to_arrow().column(0).to_pylist()  # the variant serving most
    result = compare(served, baseline=variant, candidate="retrained",
                     candidate_tree=captureq.open(str(replayed)), bootstrap=200)
    s = result.summary
    console.print(f"{s['paired_requests']:,} requests paired, {s['records_compared']:,} records: "
                  f"agreement {s['agreement']:.3f}", highlight=False)
    console.print(_rich_table(result.flips, title="flips (served × retrained)"))
    q = result.quality.select(["metric", "baseline", "candidate", "diff", "diff_lower", "diff_upper",
                               "labelled"]).rename_columns(
        ["metric", "served", "retrained", "diff", "low", "high", "labelled"])
    console.print(_rich_table(q.filter(pc.is_valid(q["served"])), cell=fmt,
                              title="quality on the same labelled requests (95 % paired bootstrap)"))
    console.print(f"again: captureq compare {capture} --labels {labels} --endpoint churn-xgb "
                  f"--baseline {variant} --candidate retrained --candidate-tree {replayed} "
                  f"--start {hour:%Y-%m-%dT%H} --end {hour + timedelta(hours=1):%Y-%m-%dT%H}",
                  highlight=False)


def replay_hour(capture: Path, out: Path, hour) -> None:
    """Serve the retrained churn model on loopback and replay churn-xgb's requests of ``hour``
    to it, into ``out`` (variant ``retrained``)."""
    from datetime import timedelta

    from .replay import replay
    from .serve_demo import RETRAINED_INTERCEPT, RETRAINED_WEIGHTS, LoopbackServer, create_app

    app = create_app(weights=RETRAINED_WEIGHTS, intercept=RETRAINED_INTERCEPT)
    with LoopbackServer(app) as server:
        r = replay(str(capture), f"{server.url}/invocations", str(out), name="retrained",
                   endpoint="churn-xgb", start=hour, end=hour + timedelta(hours=1),
                   concurrency=4)
    console.print(f"{hour:%Y-%m-%d %H:00} UTC of churn-xgb → {server.url}/invocations (retrained: "
                  f"_c3 weighs half): {r.summary()}; answers in {out}/churn-xgb/retrained/",
                  highlight=False)
    console.print(f"again: captureq replay {capture} --to URL --out {out} --endpoint churn-xgb "
                  f"--start {hour:%Y-%m-%dT%H} --end {hour + timedelta(hours=1):%Y-%m-%dT%H} "
                  "--name retrained", highlight=False)


if __name__ == "__main__":
    raise SystemExit(main())
