"""Data-quality checks against a baseline: Model Monitor's ``constraint_violations.json``.

:func:`check` evaluates one dataset against a :class:`~captureq.monitor.baseline.Baseline`
with Model Monitor's check types:

``data_type_check``       the share of values of the baseline's type (Integral ⊂ Fractional ⊂
                          String) is below ``datatype_check_threshold`` (1.0: every value)
``completeness_check``    fewer values present than the baseline's ``completeness`` allows
                          (with a 3-sigma binomial tolerance when the baseline was incomplete)
``baseline_drift_check``  the distribution distance (see :mod:`.drift`) exceeds
                          ``comparison_threshold`` (``categorical_comparison_threshold`` for
                          strings); with ``comparison_method: Robust`` the feature's test must
                          also be significant (p < ``robust_alpha``, 0.001): KS for numbers,
                          chi-square of the category counts for strings, so small hourly
                          windows do not raise noise
``missing_column_check``  a baseline feature is not in the data
``extra_column_check``    the data has a feature the baseline does not
``categorical_values_check``  the share of a string feature's values inside
                          ``string_constraints.domains`` is below ``domain_content_threshold``

Descriptions are Model Monitor's texts, kept in :mod:`.messages`.

:func:`monitor` runs it for a whole window and for every hour in it, and collects the drift
metrics of every feature and hour in one Arrow table (the ``drift`` view).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema
from .baseline import (
    FRACTIONAL,
    INTEGRAL,
    STRING,
    UNKNOWN,
    Baseline,
    column_of,
    feature_columns,
    feature_statistics,
    single_endpoint,
    tree_inputs,
)
from .drift import feature_drift
from .messages import describe
from .metrics import data_quality_rows
from .metrics import table as metric_table
from .texttypes import evidence_name

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
DATA_TYPE, COMPLETENESS, DRIFT = "data_type_check", "completeness_check", "baseline_drift_check"
MISSING_COLUMN, EXTRA_COLUMN, CATEGORICAL = (
    "missing_column_check",
    "extra_column_check",
    "categorical_values_check",
)
CHECK_TYPES = (DATA_TYPE, COMPLETENESS, DRIFT, MISSING_COLUMN, EXTRA_COLUMN, CATEGORICAL)

DRIFT_SCHEMA = pa.schema(
    [
        ("window_start", schema.TIMESTAMP),
        ("window_end", schema.TIMESTAMP),
        ("granularity", pa.string()),
        ("feature", pa.string()),
        ("inferred_type", pa.string()),
        ("n", pa.int64()),
        ("psi", pa.float64()),
        ("ks_statistic", pa.float64()),
        ("ks_pvalue", pa.float64()),
        ("chi2_pvalue", pa.float64()),
        ("js_distance", pa.float64()),
        ("distance", pa.float64()),
        ("threshold", pa.float64()),
        ("drift", pa.bool_()),
    ]
)
VIOLATION_SCHEMA = pa.schema(
    [
        ("window_start", schema.TIMESTAMP),
        ("window_end", schema.TIMESTAMP),
        ("granularity", pa.string()),
        ("feature_name", pa.string()),
        ("constraint_check_type", pa.string()),
        ("description", pa.string()),
    ]
)


def _enabled(value: Any) -> bool:
    return str(value).lower() not in ("disabled", "false", "0", "none")


def _texts(col) -> pa.Array | None:
    """A column's present values as text, for ``string_constraints.domains``.

    A String baseline feature can meet numbers (captureq decodes CSV numbers to DOUBLE): they
    are checked as their shortest text (``9.0`` → ``"9"``), as Model Monitor checks every value
    against the domain whatever it looks like.
    """
    if col.strings is not None:
        return col.strings
    if col.values is not None:
        return pc.cast(pa.array(col.values, pa.float64()), pa.string())
    return None


def align_names(table: pa.Table, baseline: Baseline) -> pa.Table:
    """Name CSV columns ``_c0…`` after a header-named baseline, by position (as Model Monitor does)."""
    names = [f["name"] for f in baseline.constraints["features"]]
    cols = feature_columns(table)
    if not cols or set(names) & set(cols) or not all(re.fullmatch(r"_c\d+", c) for c in cols):
        return table
    mapping = {c: names[int(c[2:])] for c in cols if int(c[2:]) < len(names)}
    mapping.update({evidence_name(c): evidence_name(n) for c, n in list(mapping.items())})
    return table.rename_columns([mapping.get(c, c) for c in table.column_names])


@dataclass
class CheckResult:
    """One evaluated window: its statistics.json, its violations and per-feature drift rows."""

    statistics: dict
    violations: list[dict]
    drift: list[dict]

    @property
    def constraint_violations(self) -> dict:
        return {"violations": self.violations}


def monitoring_config(constraints: dict, feature: dict | None = None) -> dict:
    """The effective settings of a constraints.json, for the whole file or one feature.

    Reads today's keys and the older ones Model Monitor files carry: ``comparion_method`` (its
    typo), ``enable_comparisons``, ``min_domain_mass`` (the old name of
    ``domain_content_threshold``) and ``monitoring_config_overrides`` on a feature or inside its
    ``string_constraints``. Defaults are what Model Monitor's baselining job writes.

    >>> cfg = monitoring_config({"monitoring_config": {"distribution_constraints": {"comparion_method": "Simple"}}})
    >>> cfg["comparison_method"], cfg["datatype_check_threshold"], cfg["domain_content_threshold"]
    ('Simple', 1.0, 1.0)
    """
    from .baseline import DEFAULT_MONITORING_CONFIG

    def flat(cfg: dict | None) -> dict:
        out: dict[str, Any] = {}
        if not cfg:
            return out
        for key, value in cfg.items():
            if key == "distribution_constraints" and isinstance(value, dict):
                out.update(flat(value))
            elif key == "comparion_method":
                out["comparison_method"] = value
            elif key == "enable_comparisons":
                out["perform_comparison"] = value
            elif key == "min_domain_mass":
                out["domain_content_threshold"] = value
            else:
                out[key] = value
        return out

    cfg = flat(DEFAULT_MONITORING_CONFIG)
    cfg.update(flat(constraints.get("monitoring_config")))
    if feature:
        cfg.update(flat(feature.get("monitoring_config_overrides")))
        cfg.update(flat((feature.get("string_constraints") or {}).get("monitoring_config_overrides")))
    return cfg


def check(table: pa.Table, baseline: Baseline, *, robust_alpha: float = 0.001) -> CheckResult:
    """Evaluate ``table``'s feature columns against ``baseline`` (statistics + constraints).

    ``datatype_check_threshold`` and ``domain_content_threshold`` are the required share of
    matching values (Model Monitor's meaning: 1.0 allows no mismatch).
    """
    table = align_names(table, baseline)
    base_stats = {f["name"]: f for f in baseline.statistics["features"]}
    cons = baseline.constraints["features"]
    names = feature_columns(table)
    present = set(names)
    columns = {n: column_of(table, n) for n in names}
    stats = {
        "version": 0.0,
        "dataset": {"item_count": table.num_rows},
        "features": [feature_statistics(columns[n]) for n in names],
    }

    violations: list[dict] = []
    drift: list[dict] = []
    n_base = len(cons)
    top = monitoring_config(baseline.constraints)

    def violate(feature: str, check_type: str, **values: Any) -> None:
        violations.append(
            {
                "feature_name": feature,
                "constraint_check_type": check_type,
                "description": describe(check_type, **values),
            }
        )

    for c in cons:
        cfg = monitoring_config(baseline.constraints, c)
        evaluate = _enabled(cfg.get("evaluate_constraints", "Enabled"))
        compare = _enabled(cfg.get("perform_comparison", "Enabled"))
        type_share = float(cfg["datatype_check_threshold"])
        domain_share = float(cfg["domain_content_threshold"])
        num_threshold = float(cfg.get("comparison_threshold", 0.1))
        cat_threshold = float(cfg.get("categorical_comparison_threshold", 0.1))
        robust = str(cfg.get("comparison_method", "Robust")).lower() == "robust"
        name, expected = c["name"], c.get("inferred_type", UNKNOWN)
        if name not in present:
            if evaluate:
                violate(name, MISSING_COLUMN, current=len(names), baseline=n_base)
            continue
        col = columns[name]
        if evaluate and col.present and expected in (INTEGRAL, FRACTIONAL, STRING):
            ratio = col.match_ratio(expected)
            if ratio < type_share:
                violate(
                    name, DATA_TYPE, expected=expected, expected_match=type_share, observed=ratio
                )
        if evaluate and "completeness" in c and col.count:
            want = float(c["completeness"])
            got = col.present / col.count
            tol = 0.0 if want >= 1.0 else 3.0 * math.sqrt(want * (1.0 - want) / col.count)
            if got < want - tol - 1e-12:
                violate(name, COMPLETENESS, expected=want, observed=got)
        domains = (c.get("string_constraints") or {}).get("domains")
        texts = _texts(col)
        if evaluate and domains and texts is not None and col.present:
            inside = pc.sum(pc.is_in(texts, value_set=pa.array(domains, pa.string()))).as_py() or 0
            ratio = inside / col.present
            if ratio < domain_share:
                violate(name, CATEGORICAL, expected=domain_share, observed=ratio)
        base = base_stats.get(name)
        if base is None:
            continue
        m = feature_drift(base, col, robust_alpha=robust_alpha)
        # the distance is computed on the baseline's statistics (a KLL sketch or categorical
        # buckets), so its kind, threshold and wording follow them, not the constraints' type
        categorical = base.get("inferred_type", expected) == STRING
        threshold = cat_threshold if categorical else num_threshold
        drifted = bool(
            compare
            and m["distance"] is not None
            and m["distance"] > threshold
            and (m["significant"] or not robust)
        )
        if drifted:
            violate(
                name,
                DRIFT,
                kind="Categorical" if categorical else "Numerical",
                distance=m["distance"],
                threshold=threshold,
            )
        drift.append(
            {
                "feature": name,
                "inferred_type": expected,
                "n": m["n"],
                "psi": m["psi"],
                "ks_statistic": m["ks_statistic"],
                "ks_pvalue": m["ks_pvalue"],
                "chi2_pvalue": m["chi2_pvalue"],
                "js_distance": m["js_distance"],
                "distance": m["distance"],
                "threshold": threshold,
                "drift": drifted,
            }
        )
    if _enabled(top.get("evaluate_constraints", "Enabled")):
        known = {c["name"] for c in cons}
        for name in names:
            if name not in known:
                violate(name, EXTRA_COLUMN, current=len(names), baseline=n_base)
    return CheckResult(stats, violations, drift)


@dataclass
class MonitorResult:
    """A monitoring run: the window's files plus hourly violations and drift as Arrow tables.

    ``statistics`` and ``constraint_violations`` are the window's statistics.json and
    constraint_violations.json; ``violations`` and ``drift`` hold a row per window (the whole
    window, ``granularity='window'``, and every hour, ``'hour'``).
    """

    statistics: dict
    constraint_violations: dict
    violations: pa.Table
    drift: pa.Table
    hourly: dict[str, dict] = field(default_factory=dict)
    metrics: pa.Table = field(default_factory=lambda: metric_table([]))

    def first_drift(self) -> pa.Table:
        """Per feature: the first hour whose drift check failed, and its largest distance."""
        import polars as pl

        d = pl.from_arrow(self.drift).filter(pl.col("granularity") == "hour")
        out = (
            d.group_by("feature")
            .agg(
                pl.col("window_start").filter(pl.col("drift")).min().alias("first_drift_hour"),
                pl.col("drift").sum().alias("drifted_hours"),
                pl.len().alias("hours"),
                pl.col("distance").max().alias("max_distance"),
                pl.col("psi").max().alias("max_psi"),
            )
            .sort(["drifted_hours", "max_distance"], descending=True, nulls_last=True)
        )
        return out.to_arrow()

    def write(self, out: str | Path) -> Path:
        """statistics.json, constraint_violations.json, drift.parquet, metrics.parquet and
        hourly/<hour>/constraint_violations.json."""
        import pyarrow.parquet as pq

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "statistics.json").write_text(json.dumps(self.statistics, indent=2) + "\n")
        (out / "constraint_violations.json").write_text(
            json.dumps(self.constraint_violations, indent=2) + "\n"
        )
        (out / "drift.json").write_text(
            json.dumps(self.drift.to_pylist(), default=str, indent=1) + "\n"
        )
        pq.write_table(self.drift, out / "drift.parquet")
        pq.write_table(self.metrics, out / "metrics.parquet")
        for hour, files in self.hourly.items():
            d = out / "hourly" / hour
            d.mkdir(parents=True, exist_ok=True)
            (d / "constraint_violations.json").write_text(json.dumps(files, indent=2) + "\n")
        return out


def _utc(value: np.datetime64) -> datetime:
    return EPOCH + timedelta(microseconds=int(value.astype("datetime64[us]").astype("int64")))


def _hours(table: pa.Table) -> np.ndarray:
    t = table["inference_time"]
    return (
        pc.floor_temporal(t, unit="hour").to_numpy(zero_copy_only=False)
        if len(t)
        else np.empty(0, "M8[us]")
    )


def monitor(
    source: Any,
    baseline: Baseline | str | Path,
    out: str | Path | None = None,
    *,
    endpoint: str | None = None,
    start: Any = None,
    end: Any = None,
    hourly: bool = True,
    robust_alpha: float = 0.001,
) -> MonitorResult:
    """Check a capture tree's window (or any table with ``inference_time``) against a baseline.

    ``source`` is a :class:`~captureq.CaptureTree`, a capture-tree URI or an Arrow table of
    inputs. ``baseline`` is a :class:`Baseline` or the folder holding its two files.
    """
    from ..plan import ScanPlan as CaptureTree
    from ..plan import open_plan as open_tree

    base = baseline if isinstance(baseline, Baseline) else Baseline.load(baseline)
    base.require_features()  # before anything is read or written
    if isinstance(source, pa.Table):
        inputs = source
    else:
        tree = source if isinstance(source, CaptureTree) else open_tree(str(source))
        inputs = tree_inputs(tree._narrow({"start": start, "end": end, "endpoint": endpoint}))
    inputs = single_endpoint(inputs)
    whole = check(inputs, base, robust_alpha=robust_alpha)

    viol_rows: list[dict] = []
    drift_rows: list[dict] = []
    hourly_files: dict[str, dict] = {}
    has_time = "inference_time" in inputs.column_names and inputs.num_rows
    if has_time:
        times = inputs["inference_time"]
        w_start = pc.floor_temporal(pc.min(times), unit="hour").as_py()
        w_end = pc.ceil_temporal(pc.max(times), unit="hour", ceil_is_strictly_greater=True).as_py()
    else:
        w_start = w_end = None
    for v in whole.violations:
        viol_rows.append(
            {"window_start": w_start, "window_end": w_end, "granularity": "window", **v}
        )
    for d in whole.drift:
        drift_rows.append(
            {"window_start": w_start, "window_end": w_end, "granularity": "window", **d}
        )
    ep = (
        inputs["endpoint"][0].as_py()
        if "endpoint" in inputs.column_names and inputs.num_rows
        else endpoint
    )
    metric_rows = data_quality_rows(whole.statistics, whole.drift, w_start, ep, "window")

    if hourly and has_time:
        hours = _hours(inputs)
        order = np.argsort(hours, kind="stable")
        sorted_hours = hours[order]
        uniq, first = np.unique(sorted_hours, return_index=True)
        bounds = list(first) + [len(order)]
        ordered = inputs.take(pa.array(order))
        one_hour = np.timedelta64(1, "h")
        for i, h in enumerate(uniq):
            part = ordered.slice(int(bounds[i]), int(bounds[i + 1] - bounds[i]))
            r = check(part, base, robust_alpha=robust_alpha)
            hs = _utc(h)
            he = _utc(h + one_hour)
            hourly_files[hs.strftime("%Y-%m-%dT%H")] = r.constraint_violations
            viol_rows += [
                {"window_start": hs, "window_end": he, "granularity": "hour", **v}
                for v in r.violations
            ]
            drift_rows += [
                {"window_start": hs, "window_end": he, "granularity": "hour", **d} for d in r.drift
            ]
            metric_rows += data_quality_rows(r.statistics, r.drift, hs, ep, "hour")

    result = MonitorResult(
        statistics=whole.statistics,
        constraint_violations=whole.constraint_violations,
        violations=pa.Table.from_pylist(viol_rows, schema=VIOLATION_SCHEMA),
        drift=pa.Table.from_pylist(drift_rows, schema=DRIFT_SCHEMA),
        hourly=hourly_files,
        metrics=metric_table(metric_rows),
    )
    if out is not None:
        result.write(out)
    return result
