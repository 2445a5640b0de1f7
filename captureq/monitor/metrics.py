"""The metrics Model Monitor publishes to CloudWatch, as one tidy Arrow table.

Names are Model Monitor's: per feature ``feature_baseline_drift_<feature>`` (the baseline-drift
distance), ``feature_non_null_<feature>`` (the share of present values: not null, empty, NaN or
±Infinity), captureq's ``feature_nan_<feature>`` (the share of NaN or ±Infinity values, which
``feature_non_null`` counts as missing) and, for numeric
features, ``feature_data_<feature>`` with the statistics CloudWatch keeps for it (``Average``,
``Minimum``, ``Maximum``, ``Sum``, ``SampleCount``); for model quality one metric per scalar of
the statistics.json (``accuracy``, ``f1``, ``auc``, ``mae``, ``r2`` …). Single numbers have
``statistic`` "Value". Every row has the window it describes (``time`` = its start,
``granularity`` 'window' or 'hour') and the endpoint, so an alerting system can read the table
(``metrics.parquet``, the ``metrics`` view, ``--format json|csv``) without knowing captureq.

>>> stats = {"features": [{"name": "age", "inferred_type": "Integral", "numerical_statistics": {
...     "common": {"num_present": 3, "num_missing": 1}, "mean": 2.0, "sum": 6.0, "min": 1.0, "max": 3.0}}]}
>>> rows = data_quality_rows(stats, [{"feature": "age", "distance": 0.25}], None, "ep", "window")
>>> [(r["metric_name"], r["statistic"], r["value"]) for r in rows][:3]
[('feature_non_null_age', 'Value', 0.75), ('feature_nan_age', 'Value', 0.0), ('feature_data_age', 'Average', 2.0)]
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from .. import schema

METRICS_SCHEMA = pa.schema(
    [
        ("time", schema.TIMESTAMP),
        ("granularity", pa.string()),
        ("endpoint", pa.string()),
        ("metric_name", pa.string()),
        ("statistic", pa.string()),
        ("value", pa.float64()),
    ]
)
FEATURE_DATA_STATS = (
    ("Average", "mean"),
    ("Minimum", "min"),
    ("Maximum", "max"),
    ("Sum", "sum"),
)


def _row(time: Any, granularity: str, endpoint: str | None, name: str, stat: str, value: Any) -> dict:
    return {
        "time": time,
        "granularity": granularity,
        "endpoint": endpoint,
        "metric_name": name,
        "statistic": stat,
        "value": None if value is None else float(value),
    }


def data_quality_rows(
    statistics: dict, drift: list[dict], time: Any, endpoint: str | None, granularity: str
) -> list[dict]:
    """Metric rows of one checked window: its statistics.json and its drift rows."""
    rows = []
    for f in statistics.get("features", []):
        name = f["name"]
        ns, ss = f.get("numerical_statistics") or {}, f.get("string_statistics") or {}
        common = (ns or ss).get("common", {})
        total = common.get("num_present", 0) + common.get("num_missing", 0)
        if total:
            rows.append(
                _row(time, granularity, endpoint, f"feature_non_null_{name}", "Value",
                     common.get("num_present", 0) / total)
            )  # fmt: skip
        if total and ns and f.get("inferred_type") != "String":
            rows.append(
                _row(time, granularity, endpoint, f"feature_nan_{name}", "Value",
                     common.get("num_nan", 0) / total)
            )  # fmt: skip
        if "mean" in ns and common.get("num_present"):
            for stat, key in FEATURE_DATA_STATS:
                rows.append(_row(time, granularity, endpoint, f"feature_data_{name}", stat, ns[key]))
            rows.append(
                _row(time, granularity, endpoint, f"feature_data_{name}", "SampleCount",
                     common["num_present"])
            )  # fmt: skip
    for d in drift:
        if d.get("distance") is not None:
            rows.append(
                _row(time, granularity, endpoint, f"feature_baseline_drift_{d['feature']}", "Value",
                     d["distance"])
            )  # fmt: skip
    return rows


def model_quality_rows(
    statistics: dict, time: Any, endpoint: str | None, granularity: str
) -> list[dict]:
    """Metric rows of one model-quality statistics.json: every ``{"value": …}`` scalar."""
    rows = []
    for key, section in statistics.items():
        if not key.endswith("_metrics") or not isinstance(section, dict):
            continue
        for name, m in section.items():
            if isinstance(m, dict) and isinstance(m.get("value"), (int, float)):
                rows.append(_row(time, granularity, endpoint, name, "Value", m["value"]))
    return rows


def table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=METRICS_SCHEMA)
