"""Monitoring analytics: Model Monitor–compatible baselines and violations, drift, model quality.

The names below are imported on first use, so that ``captureq --help`` (which imports
``captureq.monitor.cli``) does not import polars and the monitoring code.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

_LAZY = {
    "Baseline": "baseline",
    "baseline": "baseline",
    "constraints": "baseline",
    "load_data": "baseline",
    "statistics": "baseline",
    "CHECK_TYPES": "check",
    "MonitorResult": "check",
    "check": "check",
    "monitor": "check",
    "QualityResult": "quality",
    "model_quality": "quality",
    "QualityBaseline": "quality_files",
    "quality_constraints": "quality_files",
    "quality_statistics": "quality_files",
    "quality_violations": "quality_files",
    "EstimateResult": "estimate",
    "estimate_quality": "estimate",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from .baseline import Baseline, baseline, constraints, load_data, statistics
    from .check import CHECK_TYPES, MonitorResult, check, monitor
    from .estimate import EstimateResult, estimate_quality
    from .quality import QualityResult, model_quality
    from .quality_files import (
        QualityBaseline,
        quality_constraints,
        quality_statistics,
        quality_violations,
    )


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'captureq.monitor' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """Keeps a lazily imported function whose name is also a submodule's (``captureq.monitor.baseline``)
    the function: importing the submodule must not replace the package attribute with it."""

    def __setattr__(self, name, value):
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
