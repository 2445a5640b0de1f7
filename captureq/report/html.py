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
(async function () {
  const specs = JSON.parse(await captureqUnpack("captureq-specs"));
  const code = await captureqUnpack("captureq-vega");
  const script = document.createElement("script");
  script.textContent = code;
  document.head.appendChild(script);
  let rendered = 0;
  for (const [id, spec] of Object.entries(specs)) {
    await vegaEmbed("#" + id, spec, { renderer: "svg", actions: false });
    rendered += 1;
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
"""


def pack(data: bytes) -> str:
    """gzip + base64: how the page carries its specs and JavaScript."""
    return base64.b64encode(gzip.compress(data, compresslevel=9, mtime=0)).decode("ascii")


def unpack(text: str) -> bytes:
    return gzip.decompress(base64.b64decode(text))


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def page(title: str, body: str, specs: dict[str, dict]) -> str:
    """The whole document: ``body`` (HTML with a ``<div id=KEY>`` per spec) and the specs."""
    packed = base64.b64encode(vega_bundle_gz()).decode("ascii") if specs else ""
    spec_json = json.dumps(specs, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    scripts = (
        f'<script type="application/octet-stream" id="captureq-specs">{pack(spec_json)}</script>\n'
        f'<script type="application/octet-stream" id="captureq-vega">{packed}</script>\n'
        f"<script>{LOADER}</script>\n"
        if specs
        else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"{body}\n{scripts}</body>\n</html>\n"
    )
