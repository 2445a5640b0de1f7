"""The monitoring report: one self-contained HTML file with Vega-Lite figures.

:func:`build_report` runs the monitoring analyses and returns a :class:`Report`
(``.to_html()``, ``.write(path)``, ``.charts()`` for notebooks); :mod:`.data` holds the data
behind each figure, :mod:`.charts` the altair builders. Needs ``pip install 'captureq[report]'``
(altair, vl-convert-python); importing this package does not import them until used.
"""

from __future__ import annotations

__all__ = ["Figure", "Report", "build_report", "pick_endpoint"]


def __getattr__(name: str):
    if name in __all__:
        from . import build

        return getattr(build, name)
    raise AttributeError(name)
