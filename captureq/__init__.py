"""captureq: scan, decode and query ML inference data-capture trees with Arrow and DuckDB.

>>> import captureq
>>> cq = captureq.open("tests/data/corpus/seed-churn")
>>> cq.sql("select endpoint, count(*) from captures group by 1")  # doctest: +ELLIPSIS
<captureq.Result 1 rows × 2 columns>...

The names below are imported on first use (``captureq.open`` imports DuckDB and pyarrow), so
that ``import captureq`` — and ``captureq --help`` — stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_package

# The one place the version is written: pyproject.toml reads it (hatch dynamic version).
__version__ = "0.1.0"

_LAZY = {
    "CaptureTree": "api",
    "Result": "api",
    "open": "api",
    "DecodeOptions": "options",
    "CaptureqError": "errors",
    "ConfigError": "errors",
    "DecodeError": "errors",
    "ExportError": "errors",
    "ScanError": "errors",
    "StorageError": "errors",
    "StorageOptionWarning": "errors",
    "Unreadable": "read",
    "UnreadableError": "errors",
    "UnreadableWarning": "errors",
    "scan": "scan",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from .api import CaptureTree, Result, open
    from .errors import (
        CaptureqError,
        ConfigError,
        DecodeError,
        ExportError,
        ScanError,
        StorageError,
        StorageOptionWarning,
        UnreadableError,
        UnreadableWarning,
    )
    from .options import DecodeOptions
    from .read import Unreadable
    from .scan import scan


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


lazy_package(__name__)
