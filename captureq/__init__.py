"""captureq: scan, decode and query ML inference data-capture trees with Arrow and DuckDB.

>>> import captureq
>>> cq = captureq.open("../shared/corpus/seed-churn")                       # doctest: +SKIP
>>> cq.sql("select endpoint, count(*) from captures group by 1")              # doctest: +SKIP
"""

from __future__ import annotations

from .api import CaptureTree, Result, open
from .decode import DecodeOptions
from .errors import CaptureqError, ConfigError, DecodeError, ExportError, ScanError
from .scan import scan

__version__ = "0.1.0"

__all__ = [
    "CaptureTree",
    "CaptureqError",
    "ConfigError",
    "DecodeError",
    "DecodeOptions",
    "ExportError",
    "Result",
    "ScanError",
    "open",
    "scan",
]
