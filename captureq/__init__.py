"""captureq: scan, decode and query ML inference data-capture trees with Arrow and DuckDB.

>>> import captureq
>>> cq = captureq.open("tests/data/corpus/seed-churn")                      # doctest: +SKIP
>>> cq.sql("select endpoint, count(*) from captures group by 1")              # doctest: +SKIP

The names below are imported on first use (``captureq.open`` imports DuckDB and pyarrow), so
that ``import captureq`` — and ``captureq --help`` — stay fast.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

# The one place the version is written: pyproject.toml reads it (hatch dynamic version).
__version__ = "0.1.0"

_LAZY = {
    "CaptureTree": "api",
    "Result": "api",
    "open": "api",
    "DecodeOptions": "decode",
    "CaptureqError": "errors",
    "ConfigError": "errors",
    "DecodeError": "errors",
    "ExportError": "errors",
    "ScanError": "errors",
    "scan": "scan",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from .api import CaptureTree, Result, open
    from .decode import DecodeOptions
    from .errors import CaptureqError, ConfigError, DecodeError, ExportError, ScanError
    from .scan import scan


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'captureq' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


class _Package(types.ModuleType):
    """Keeps a lazily imported function whose name is also a submodule's (``captureq.scan``)
    the function: importing the submodule must not replace the package attribute with it."""

    def __setattr__(self, name, value):
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
