"""The report opened in a real headless Chromium (Debian's ``chromium``, driven by Playwright
without downloading a browser): every chart renders, nothing is fetched, no console errors.

A screenshot is kept in ``test-artifacts/report.png``. ``make test`` installs chromium first
(``make browser``); where it cannot be installed these tests skip and say so.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

import captureq
from captureq.cli import app
from captureq.generate import generate_tree
from captureq.monitor import Baseline, monitor
from captureq.report import data

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,  # starts Chromium
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Chromium is not installed: `make browser` installs Debian's chromium (needs apt-get and root)",
    ),
]
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="pip install playwright (no browser download needed)"
)
pytest.importorskip("vl_convert")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The demo's report at a small scale, made with the commands a user types."""
    root = tmp_path_factory.mktemp("browser")
    capture, labels, base = root / "capture", root / "groundtruth", root / "baseline"
    summary = generate_tree(
        str(capture),
        labels_out=str(labels),
        hours=12,
        requests_per_hour=40,
        drift_feature="_c3",
        drift_from_hour=8,
        label_delay_hours=0,
    )
    runner = CliRunner()
    end = (summary.start + timedelta(hours=6)).strftime("%Y-%m-%dT%H")
    made = runner.invoke(
        app, ["baseline", str(capture), str(base), "--endpoint", "churn-xgb", "--end", end]
    )
    assert made.exit_code == 0, made.output
    out = root / "report.html"
    made = runner.invoke(
        app,
        [
            "report",
            str(capture),
            "--baseline",
            str(base),
            "--labels",
            str(labels),
            "--endpoint",
            "churn-xgb",
            "-o",
            str(out),
        ],
    )
    assert made.exit_code == 0, made.output
    inputs = captureq.open(str(capture), endpoint="churn-xgb").inputs()
    heat = pl.from_arrow(data.drift_heatmap(monitor(inputs, Baseline.load(base))))
    return {"path": out, "summary": summary, "violations": int(heat["violation"].sum())}


@pytest.fixture(scope="module")
def page(report):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        pg = browser.new_page(viewport={"width": 1100, "height": 900})
        errors: list[str] = []
        fetched: list[str] = []
        pg.on(
            "console",
            lambda m: (
                errors.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None
            ),
        )
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.on(
            "request",
            lambda r: (
                fetched.append(r.url) if not r.url.startswith(("file:", "data:", "blob:")) else None
            ),
        )
        pg.goto(report["path"].as_uri())
        pg.wait_for_function(
            "document.body.dataset.rendered || document.body.dataset.renderError", timeout=60_000
        )
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        yield {"page": pg, "errors": errors, "fetched": fetched}
        browser.close()


def test_every_chart_renders_without_errors_or_network(page):
    pg = page["page"]
    assert pg.evaluate("document.body.dataset.renderError") is None
    figures = pg.evaluate("""[...document.querySelectorAll('div.figure')].map(d => {
        const svg = d.querySelector('svg');
        const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
        return {id: d.id, width: box.width, height: box.height,
                marks: svg ? svg.querySelectorAll('.mark-rect path, .mark-area path, .mark-line path, .mark-symbol path, .mark-rule line, .mark-text text').length : 0};
    })""")
    assert [f["id"] for f in figures] == [
        "fig-traffic",
        "fig-predictions",
        "fig-drift",
        "fig-histograms",
        "fig-quality",
    ]
    assert pg.evaluate("document.body.dataset.rendered") == str(len(figures))
    for f in figures:
        assert f["width"] > 300 and f["height"] > 100 and f["marks"] > 10, f
    assert page["errors"] == []
    assert page["fetched"] == []
    assert (ARTIFACTS / "report.png").stat().st_size > 20_000


def test_drift_heatmap_marks_each_violation_and_the_onset(page, report):
    pg = page["page"]
    crosses = pg.evaluate(
        "[...document.querySelectorAll('#fig-drift .mark-text text')].filter(t => t.textContent === '✕').length"
    )
    assert crosses == report["violations"] > 0
    onset = f"drift began {report['summary'].drift_start:%m-%d %H:00} UTC: _c3"
    assert onset in pg.inner_text("#fig-drift")
    assert "Drift in _c3 from" in pg.inner_text(".headline")


# -- a baseline from a training CSV with a header: feature names instead of _c0… --------------
@pytest.fixture(scope="module")
def header_report(report, tmp_path_factory):
    import re

    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    root = tmp_path_factory.mktemp("browser-header")
    capture = report["path"].parent / "capture"
    summary = report["summary"]
    inputs = captureq.open(
        str(capture), endpoint="churn-xgb", end=summary.start + timedelta(hours=6)
    ).inputs()
    cols = [c for c in inputs.column_names if re.fullmatch(r"_c\d+", c)]
    names = [f"feature_{i}_name" for i in range(len(cols))]
    pcsv.write_csv(inputs.select(cols).rename_columns(names), root / "train.csv")
    runner = CliRunner()
    made = runner.invoke(app, ["baseline", str(root / "train.csv"), str(root / "baseline")])
    assert made.exit_code == 0, made.output
    out = root / "report.html"
    made = runner.invoke(
        app,
        ["report", str(capture), "--baseline", str(root / "baseline"), "--labels",
         str(report["path"].parent / "groundtruth"), "--endpoint", "churn-xgb", "-o", str(out)],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert pc.sum(pc.is_valid(inputs["_c3"])).as_py() > 0
    return out


def test_header_named_baseline_draws_every_figure(page, header_report):
    browser = page["page"].context.browser  # one playwright per module: reuse its browser
    pg = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(header_report.as_uri())
    pg.wait_for_function(
        "document.body.dataset.rendered || document.body.dataset.renderError", timeout=60_000
    )
    marks = pg.evaluate(
        "document.querySelectorAll('#fig-histograms svg .mark-rect path').length"
    )
    ids = pg.evaluate("[...document.querySelectorAll('div.figure')].map(d => d.id)")
    sections = pg.evaluate("""[...document.querySelectorAll('h2')].map(h => {
        let n = h.nextElementSibling, drawn = false, said = false;
        while (n && n.tagName !== 'H2') {
            if (n.classList.contains('figure') && n.querySelector('svg')) drawn = true;
            if (n.classList.contains('features') && n.querySelector('tbody tr')) drawn = true;
            if (n.classList.contains('note') && n.textContent.trim()) said = true;
            n = n.nextElementSibling;
        }
        return {id: h.id, drawn, said};
    })""")
    pg.close()
    assert errors == []
    assert "fig-histograms" in ids and marks > 10
    for s in sections:  # every section draws its figure or says in words why there is none
        assert s["drawn"] or s["said"], s
    assert "feature_3_name" in header_report.read_text()


# -- a wide endpoint: 3,000 features ---------------------------------------------------------
WIDE, WIDE_DRIFT = 3000, "_c7"


def _open_page(browser, path):
    """A page of ``browser`` at ``path`` once every figure is drawn, with its console errors
    and page errors."""
    pg = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    pg.on(
        "console",
        lambda m: errors.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None,
    )
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(path.as_uri())
    pg.wait_for_function(
        "document.body.dataset.rendered || document.body.dataset.renderError", timeout=120_000
    )
    return pg, errors


DRAWN = """[...document.querySelectorAll('div.figure')].map(d => {
    const svg = d.querySelector('svg');
    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    return {id: d.id, width: box.width, height: box.height,
            marks: svg ? svg.querySelectorAll('.role-mark path, .role-mark text, .role-mark line').length : 0};
})"""


@pytest.fixture(scope="module")
def wide_report(tmp_path_factory):
    """A 3,000-feature endpoint drifting in one feature, reported with the commands a user types."""
    from captureq.generate import EndpointSpec

    root = tmp_path_factory.mktemp("browser-wide")
    capture, base = root / "capture", root / "baseline"
    summary = generate_tree(
        str(capture),
        endpoints=[EndpointSpec("wide", n_features=WIDE, decimals=2)],
        hours=6,
        requests_per_hour=40,
        files_per_hour=1,
        drift_feature=WIDE_DRIFT,
        drift_from_hour=3,
        repeated_event_id_count=0,
    )
    runner = CliRunner()
    end = (summary.start + timedelta(hours=3)).strftime("%Y-%m-%dT%H")
    made = runner.invoke(app, ["baseline", str(capture), str(base), "--end", end])
    assert made.exit_code == 0, made.output
    out = root / "report.html"
    made = runner.invoke(app, ["report", str(capture), "--baseline", str(base), "-o", str(out)])
    assert made.exit_code == 0, made.output
    return out


@pytest.mark.slow
def test_a_3000_feature_report_draws_every_section(page, wide_report):
    size = wide_report.stat().st_size
    assert size < 1_500_000, f"{size:,} bytes: the README promises less"
    pg, errors = _open_page(page["page"].context.browser, wide_report)
    try:
        assert pg.evaluate("document.body.dataset.renderError") is None
        assert pg.evaluate("document.body.dataset.failed") is None
        figures = pg.evaluate(DRAWN)
        assert [f["id"] for f in figures] == ["fig-traffic", "fig-predictions", "fig-drift", "fig-histograms"]
        for f in figures:  # the traffic figure: one bar per hour and variant
            assert f["width"] > 300 and f["height"] > 100 and f["marks"] >= 6, f
        # the heat map holds the worst 20 features, not 3,000 rows
        assert pg.evaluate("document.querySelector('#fig-drift svg').getBoundingClientRect().height") < 900
        headline = pg.inner_text(".headline")
        assert f"Drift in {WIDE_DRIFT} from" in headline and "No feature drifted" not in headline
        # every feature in the table, the drifted one first
        rows = pg.evaluate("[...document.querySelectorAll('#feature-table tbody tr')].map(r => r.dataset.feature)")
        assert len(rows) == WIDE and rows[0] == WIDE_DRIFT
        # the search box filters the table
        pg.fill("#feature-table input[type=search]", WIDE_DRIFT)
        rows = pg.evaluate("[...document.querySelectorAll('#feature-table tbody tr')].map(r => r.dataset.feature)")
        expected = [f"_c{i}" for i in range(WIDE) if WIDE_DRIFT in f"_c{i}"]
        assert sorted(rows) == sorted(expected) and len(rows) < WIDE
        # a click on a number's heading sorts largest first, a second click smallest first
        pg.fill("#feature-table input[type=search]", "")
        heading = pg.locator("#feature-table th", has_text="max PSI")
        psi = "[...document.querySelectorAll('#feature-table tbody tr')].map(r => parseFloat(r.cells[5].textContent))"
        heading.click()
        largest = pg.evaluate(psi)
        assert len(largest) == WIDE and largest == sorted(largest, reverse=True)
        heading.click()
        assert pg.evaluate(psi) == sorted(largest)
        # a feature outside the top 20 is drawn on demand
        pg.click("#feature-table tbody tr[data-feature='_c2999']")
        pg.wait_for_function("document.querySelector('.feature-detail .figure svg')", timeout=30_000)
        marks = pg.evaluate("document.querySelectorAll('.feature-detail .figure svg .role-mark path').length")
        assert marks > 10
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / "report-wide.png"), full_page=True)
    finally:
        pg.close()
    assert errors == []


def test_a_section_that_fails_in_the_browser_says_so_in_the_headline(page, report, tmp_path):
    """Bad data planted in the heat map: vega fails on it (on the console, without throwing);
    the section shows the error and the headline says the section failed, never "no drift"."""
    import altair as alt

    from captureq.report import build_report

    capture = report["path"].parent / "capture"
    quiet = captureq.open(str(capture), end=report["summary"].drift_start)
    rep = build_report(quiet, Baseline.load(report["path"].parent / "baseline"), endpoint="churn-xgb")
    assert any("No feature drifted" in line for line in rep.headline_text())

    class Broken:  # a spec whose data makes vega's dataflow throw
        def to_dict(self):
            return {
                "$schema": alt.SCHEMA_URL,
                "data": {"values": [{"x": 1}, {"x": 2}]},
                "transform": [{"calculate": "datum.x.y.z", "as": "w"}],
                "mark": "bar",
                "encoding": {"x": {"field": "w", "type": "quantitative"}},
            }

    rep.figure("drift").chart = Broken()
    out = rep.write(tmp_path / "broken.html")
    pg, errors = _open_page(page["page"].context.browser, out)
    try:
        assert pg.evaluate("document.body.dataset.failed") == "drift"
        assert "could not draw this figure" in pg.inner_text("#fig-drift")
        headline = pg.inner_text(".headline")
        assert "failed to draw" in headline and "Drift per feature and hour" in headline
        assert "No feature drifted" not in headline
        assert "ok" not in pg.get_attribute(".headline", "class")
        drawn = {f["id"]: f["marks"] for f in pg.evaluate(DRAWN)}
        assert all(n > 10 for k, n in drawn.items() if k != "fig-drift"), drawn
    finally:
        pg.close()
    assert errors == []


# -- Clarify's two monitors: the bias and feature-attribution sections ------------------------
@pytest.mark.slow
def test_bias_and_attribution_sections_are_drawn(page, tmp_path):
    import json

    from clarify_trees import BIAS_CONFIG, START, write_clarify_tree

    capture, labels = write_clarify_tree(tmp_path, hours=12, per_hour=80, shift_at=8)
    end = (START + timedelta(hours=6)).strftime("%Y-%m-%dT%H")
    (tmp_path / "config.json").write_text(json.dumps(BIAS_CONFIG))
    runner = CliRunner()
    for args in (
        ["baseline", str(capture), str(tmp_path / "baseline"), "--end", end],
        ["bias", "baseline", str(capture), "--labels", str(labels), "--end", end, "--config",
         str(tmp_path / "config.json"), str(tmp_path / "bias")],
        ["attribution", "baseline", str(capture), str(tmp_path / "shap"), "--end", end],
        ["report", str(capture), "--baseline", str(tmp_path / "baseline"), "--labels",
         str(labels), "--bias-config", str(tmp_path / "config.json"),
         "--bias-baseline", str(tmp_path / "bias" / "analysis.json"),
         "--attribution-baseline", str(tmp_path / "shap" / "analysis.json"),
         "-o", str(tmp_path / "report.html")],
    ):
        made = runner.invoke(app, args)
        assert made.exit_code == 0, made.output
    pg, errors = _open_page(page["page"].context.browser, tmp_path / "report.html")
    try:
        assert pg.evaluate("document.body.dataset.renderError") is None
        assert pg.evaluate("document.body.dataset.failed") is None
        drawn = {f["id"]: f for f in pg.evaluate(DRAWN)}
        for key in ("fig-bias", "fig-attribution"):
            f = drawn[key]
            assert f["width"] > 300 and f["height"] > 100 and f["marks"] > 20, f
        # the bias panels: DPPL and DI of the facet, their violating hours in red
        text = pg.inner_text("#fig-bias")
        assert "DPPL" in text and "DI" in text
        assert pg.evaluate("[...document.querySelectorAll('#fig-bias .mark-symbol path')].filter(p => p.getAttribute('fill') === '#d62728' && p.getAttribute('opacity') !== '0').length") > 0
        violations = pg.evaluate("""(() => { let n = document.getElementById('bias');
            while (n && !(n.tagName === 'TABLE')) n = n.nextElementSibling;
            return n ? n.querySelectorAll('tr').length - 1 : 0; })()""")
        assert violations > 0
        # the attribution bars name the features; the NDCG panel has its threshold rule
        assert "region" in pg.inner_text("#fig-attribution")
        assert pg.evaluate("document.querySelectorAll('#fig-attribution .mark-rule line').length") >= 1
        headline = pg.inner_text(".headline")
        assert "Bias drift: violations" in headline and "Feature-attribution drift in" in headline
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / "report-clarify.png"), full_page=True)
    finally:
        pg.close()
    assert errors == []
