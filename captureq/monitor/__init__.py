"""Monitoring analytics: Model Monitor–compatible baselines and violations, drift, model quality.

The names below are imported on first use, so that ``captureq --help`` (which imports
``captureq.monitor.cli``) does not import polars and the monitoring code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_package

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
    "baseline_by": "split",
    "monitor_by": "split",
    "QualityResult": "quality",
    "model_quality": "quality",
    "QualityBaseline": "quality_files",
    "quality_constraints": "quality_files",
    "quality_statistics": "quality_files",
    "quality_violations": "quality_files",
    "JobConfig": "job",
    "JobResult": "job",
    "run_job": "job",
    "Schedule": "schedule",
    "ScheduleResult": "schedule",
    "run_schedule": "schedule",
    "EstimateResult": "estimate",
    "estimate_quality": "estimate",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from .baseline import Baseline, baseline, constraints, load_data, statistics
    from .check import CHECK_TYPES, MonitorResult, check, monitor
    from .estimate import EstimateResult, estimate_quality
    from .job import JobConfig, JobResult, run_job
    from .quality import QualityResult, model_quality
    from .quality_files import (
        QualityBaseline,
        quality_constraints,
        quality_statistics,
        quality_violations,
    )
    from .schedule import Schedule, ScheduleResult, run_schedule
    from .split import baseline_by, monitor_by


lazy_package(__name__)
