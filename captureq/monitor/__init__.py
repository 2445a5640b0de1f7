"""Monitoring analytics: Model Monitor–compatible baselines and violations, drift, model quality."""

from __future__ import annotations

from .baseline import Baseline, baseline, constraints, load_data, statistics
from .check import CHECK_TYPES, MonitorResult, check, monitor

__all__ = [
    "CHECK_TYPES",
    "Baseline",
    "MonitorResult",
    "baseline",
    "check",
    "constraints",
    "load_data",
    "monitor",
    "statistics",
]
from .quality import QualityResult, model_quality
from .quality_files import (
    QualityBaseline,
    quality_constraints,
    quality_statistics,
    quality_violations,
)

__all__ += [
    "QualityBaseline",
    "QualityResult",
    "model_quality",
    "quality_constraints",
    "quality_statistics",
    "quality_violations",
]
