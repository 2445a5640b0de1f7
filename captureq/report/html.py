"""One self-contained HTML file: Vega-Lite specs plus the Vega/Vega-Lite/vega-embed JavaScript,
inlined, so the report opens with no network.

The Vega-Lite specs (with their data) and the JavaScript travel gzip-compressed and
base64-encoded in ``<script type="application/octet-stream">`` elements. The JavaScript comes from ``vl-convert-python`` (``vl_convert.javascript_bundle()``, ~0.9 MB),
is stored gzip-compressed and base64-encoded (~0.4 MB) and unpacked in the browser with the
standard ``DecompressionStream``; it is built once and cached under
``$XDG_CACHE_HOME/captureq/``.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import os
from functools import cache
from pathlib import Path

from ..errors import ConfigError


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "captureq"


@cache
def vega_bundle_gz() -> bytes:
    """gzip of the vega + vega-lite + vega-embed bundle that vl-convert ships (cached on disk)."""
    try:
        import vl_convert as vlc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "the report needs vl-convert-python for its inlined JavaScript: "
            "pip install 'captureq[report]'"
        ) from exc
    path = cache_dir() / f"vega-bundle-vlconvert-{vlc.__version__}.js.gz"
    if path.exists():
        return path.read_bytes()
    data = gzip.compress(vlc.javascript_bundle().encode("utf-8"), compresslevel=9, mtime=0)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError:
        pass  # a read-only home: build it again next time
    return data


LOADER = """
async function captureqUnpack(id) {
  const packed = document.getElementById(id).textContent.trim();
  const bytes = Uint8Array.from(atob(packed), (c) => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return await new Response(stream).text();
}
const DRIFT_SECTIONS = ["drift", "histograms", "features"];
function captureqFailed(key, title, message, where) {
  // the section shows the error and the headline says the section failed; a drift section
  // that failed voids the headline's "no feature drifted"
  const p = document.createElement("p");
  p.className = "note error";
  p.textContent = "could not draw this figure: " + message;
  where.replaceChildren(p);
  const headline = document.querySelector(".headline");
  headline.classList.remove("ok");
  if (DRIFT_SECTIONS.includes(key)) {
    for (const claim of headline.querySelectorAll("[data-claim=no-drift]")) {
      claim.textContent = "Drift is not shown: a drift section failed to draw.";
      claim.removeAttribute("data-claim");
    }
  }
  const li = document.createElement("li");
  const b = document.createElement("b");
  b.textContent = "The section “" + title + "” failed to draw";
  li.append(b, ": " + message);
  headline.querySelector("ul").appendChild(li);
  const failed = document.body.dataset.failed;
  document.body.dataset.failed = failed ? failed + "," + key : key;
}
function captureqMarks(el) {
  return el.querySelectorAll(".role-mark path, .role-mark line, .role-mark text, .role-mark rect").length;
}
async function captureqEmbed(el, spec) {
  // vega reports some errors (a dataflow that throws) on the console instead of rejecting:
  // they are caught here too, and a chart that drew no mark counts as failed
  const errors = [];
  const original = console.error;
  console.error = (...args) => { errors.push(args.map(String).join(" ")); };
  try {
    await vegaEmbed(el, spec, { renderer: "svg", actions: false });
  } finally {
    console.error = original;
  }
  if (errors.length) throw new Error(errors.join("; "));
  if (!captureqMarks(el)) throw new Error("the chart drew nothing");
}
let captureqVega = null;
function captureqFormat(v) {
  if (v === null || v === undefined) return "";
  return typeof v === "number" ? String(+v.toPrecision(4)) : String(v);
}
function captureqFeatureTable(data) {
  const root = document.getElementById("feature-table");
  if (!root) return;
  const labels = {rank: "#", feature: "feature", drifted_hours: "drifted hours", hours: "hours",
                  first_drift_hour: "first drifted hour (UTC)", max_psi: "max PSI",
                  max_distance: "max distance"};
  const search = document.createElement("input");
  search.type = "search";
  search.placeholder = "filter features by name";
  search.className = "feature-search";
  const count = document.createElement("span");
  count.className = "feature-count";
  const box = document.createElement("div");
  box.className = "feature-scroll";
  const table = document.createElement("table");
  table.className = "data features";
  const head = table.createTHead().insertRow();
  const body = table.createTBody();
  const detail = document.createElement("div");
  detail.className = "feature-detail";
  let sortBy = 0, ascending = true;
  data.columns.forEach((c, i) => {
    const th = document.createElement("th");
    th.textContent = labels[c] || c;
    th.addEventListener("click", () => {
      ascending = sortBy === i ? !ascending : c === "rank" || c === "feature";
      sortBy = i;
      render();
    });
    head.appendChild(th);
  });
  function compare(a, b) {
    const x = a[sortBy], y = b[sortBy];
    if (x === y) return a[0] - b[0];
    if (x === null) return 1;
    if (y === null) return -1;
    return (x < y ? -1 : 1) * (ascending ? 1 : -1);
  }
  function render() {
    const needle = search.value.trim().toLowerCase();
    const shown = data.rows.filter((r) => !needle || String(r[1]).toLowerCase().includes(needle));
    shown.sort(compare);
    const rows = document.createDocumentFragment();
    for (const r of shown) {
      const tr = document.createElement("tr");
      tr.dataset.feature = r[1];
      if (r[2] > 0) tr.className = "drifted";
      for (const v of r) tr.insertCell().textContent = captureqFormat(v);
      tr.addEventListener("click", () => draw(r[1]));
      rows.appendChild(tr);
    }
    body.replaceChildren(rows);
    count.textContent = shown.length + " of " + data.rows.length + " features";
  }
  async function draw(name) {
    const h = data.hist[name];
    const holder = document.createElement("div");
    holder.className = "figure on-demand";
    holder.dataset.feature = name;
    detail.prepend(holder);
    if (!h) {
      holder.textContent = name + ": no values in the window to compare with the baseline";
      return;
    }
    const bins = [];
    const labels = h.labels || h.edges.slice(0, -1).map(
      (lo, i) => captureqFormat(lo) + "–" + captureqFormat(h.edges[i + 1]));
    data.series.forEach((s, si) => {
      (h.shares[si] || []).forEach((v, bi) => bins.push({series: s, bin: labels[bi], share: v / 1000}));
    });
    const psi = [];
    (data.psi && data.psi[name] || []).forEach((v, i) => {
      if (v !== null) psi.push({hour: data.hours[i], psi: v / 100});
    });
    const spec = JSON.parse(JSON.stringify(data.spec));
    spec.title = name + " (" + h.binning + " bins)";
    spec.datasets = {bins, psi};
    spec.vconcat[0].encoding.color.scale = {domain: data.series, range: data.colors};
    if (!psi.length) spec.vconcat.pop();
    try {
      await captureqVega;
      await captureqEmbed(holder, spec);
    } catch (error) {
      captureqFailed("features", name, String(error), holder);
    }
  }
  search.addEventListener("input", render);
  const bar = document.createElement("div");
  bar.className = "feature-bar";
  bar.append(search, count);
  box.appendChild(table);
  root.append(bar, box, detail);
  render();
}
(async function () {
  const packed = document.getElementById("captureq-features");
  if (packed) {
    try {
      captureqFeatureTable(JSON.parse(await captureqUnpack("captureq-features")));
    } catch (error) {
      const root = document.getElementById("feature-table");
      captureqFailed("features", "Every feature, ranked", String(error), root);
    }
  }
  const specs = JSON.parse(await captureqUnpack("captureq-specs"));
  captureqVega = captureqUnpack("captureq-vega").then((code) => {
    const script = document.createElement("script");
    script.textContent = code;
    document.head.appendChild(script);
  });
  await captureqVega;
  let rendered = 0;
  for (const [id, spec] of Object.entries(specs)) {
    const el = document.getElementById(id);
    try {
      await captureqEmbed(el, spec);
      rendered += 1;
    } catch (error) {
      captureqFailed(el.dataset.key, el.dataset.title, String(error), el);
    }
  }
  document.body.dataset.rendered = String(rendered);
})().catch((error) => {
  document.body.dataset.renderError = String(error);
  console.error(error);
});
"""

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1000px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin: 28px 0 4px; }
.meta { color: #555; } .meta code { font-size: 12px; }
.headline { border-left: 4px solid #d62728; background: #fff5f5; padding: 8px 14px; margin: 16px 0; }
.headline.ok { border-color: #2ca02c; background: #f3fbf3; }
.headline li { margin: 2px 0; }
.desc { color: #444; margin: 2px 0 8px; } .note { color: #777; font-style: italic; }
details { margin: 6px 0 0; } summary { cursor: pointer; color: #1f5fa8; }
pre { background: #f6f8fa; padding: 8px 10px; overflow-x: auto; font-size: 12px; }
table.data { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
table.data th, table.data td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; }
.figure { min-height: 40px; }
.note.error { color: #b00020; font-style: normal; font-weight: 600; }
.feature-bar { display: flex; gap: 12px; align-items: center; margin: 6px 0; }
.feature-search { width: 280px; padding: 3px 6px; }
.feature-count { color: #555; }
.feature-scroll { max-height: 420px; overflow-y: auto; border: 1px solid #ddd; }
table.features { margin: 0; width: 100%; }
table.features th { position: sticky; top: 0; background: #f6f8fa; cursor: pointer; }
table.features tr { cursor: pointer; } table.features tr:hover { background: #eef4fb; }
table.features tr.drifted td:nth-child(2) { color: #b00020; font-weight: 600; }
.feature-detail .figure { border-top: 1px solid #eee; padding-top: 6px; }
"""


def pack(data: bytes) -> str:
    """gzip + base64: how the page carries its specs and JavaScript."""
    return base64.b64encode(gzip.compress(data, compresslevel=9, mtime=0)).decode("ascii")


def unpack(text: str) -> bytes:
    return gzip.decompress(base64.b64decode(text))


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def page(title: str, body: str, specs: dict[str, dict], extra: dict[str, object] | None = None) -> str:
    """The whole document: ``body`` (HTML with a ``<div id=KEY>`` per spec), the specs and
    ``extra`` data for the page's script (packed, one element per id)."""
    packed = base64.b64encode(vega_bundle_gz()).decode("ascii") if specs or extra else ""
    spec_json = json.dumps(specs, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    more = "".join(
        f'<script type="application/octet-stream" id="{esc(key)}">'
        f"{pack(json.dumps(value, separators=(',', ':'), ensure_ascii=False).encode('utf-8'))}"
        "</script>\n"
        for key, value in (extra or {}).items()
    )
    scripts = (
        f'<script type="application/octet-stream" id="captureq-specs">{pack(spec_json)}</script>\n'
        + more
        + f'<script type="application/octet-stream" id="captureq-vega">{packed}</script>\n'
        f"<script>{LOADER}</script>\n"
        if specs or extra
        else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"{body}\n{scripts}</body>\n</html>\n"
    )
