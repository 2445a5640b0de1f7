"""Feature-attribution drift, as SageMaker Clarify's model-explainability monitor measures it.

Per-record SHAP values come from one of two places:

- the captured responses of an endpoint with Clarify online explainability: the response JSON
  has ``explanations.kernel_shap``, one entry per record (``null`` when the record was not
  explained), each a list of features ``{"feature_header", "attributions": [{"attribution":
  [one value per label]}]}`` (text features have several attribution objects, one per unit; they
  are summed), with ``label_headers`` naming the labels (``label0``, ``label1`` … without) and
  ``predictions.data`` holding the model's own output. :func:`capture_attributions` reads them
  from the ``captures`` table's raw ``output_data`` (JSON or BASE64) in one DuckDB query;
- a table the user supplies (:func:`file_attributions`): Parquet or CSV, one row per record, a
  key column ``inference_id`` or ``event_id`` matched to the captures, an optional ``label``
  column, and one numeric column per feature.

Global SHAP values aggregate them per window with Clarify's ``agg_method``: ``mean_abs`` (mean of
|φ|), ``median`` (median of φ) or ``mean_sq`` (mean of φ²). The drift score of a window is the
NDCG of its ranking against the baseline's: with ``a(f)`` the baseline's global SHAP value of
feature ``f`` and ``f′₁ … f′ₘ`` the features ranked by the window's values,
``DCG = Σ a(f′ᵢ) / log₂(i + 1)``, ``iDCG`` the same over the baseline's own ranking, and
``NDCG = DCG / iDCG`` (1 when the rankings agree). Features tied in the window share the
average discount of the positions they occupy (scikit-learn's ``ndcg_score``), so the score
never depends on the order of equal values. Ranks and gains use magnitudes, so a signed
``median`` ranks features by the size of their effect. A feature only in the window has
``a(f) = 0``; a baseline feature absent from the window has the value 0 there.

A score below the threshold (0.9) is a ``feature_attribution_drift_check`` violation in
``constraint_violations.json`` with Clarify's keys and wording. The expected value (the
model's output with no feature known) is ``prediction − Σ φ`` per record (SHAP's additivity),
averaged; it is known when ``predictions.data`` holds numbers.

>>> round(ndcg({"sat": 0.70, "gpa": 0.50, "rank": 0.05}, {"sat": 0.10, "gpa": 0.20, "rank": 0.70}), 4)
0.6876
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import CaptureqError, ConfigError

AGG_METHODS = ("mean_abs", "median", "mean_sq")
EVERY = ("hour", "day")
CHECK_TYPE = "feature_attribution_drift_check"
METRIC_NAME = "shap"
THRESHOLD = 0.9
#: Clarify's description of a violation (its word is "exceeds" although the score is below)
DESCRIPTION = "Feature attribution drift {score} exceeds threshold {threshold}"
NAMESPACE = "aws/sagemaker/Endpoints/explainability-metrics"

#: Long table of per-record attributions: one row per record, label and feature.
RECORDS_SCHEMA = pa.schema(
    [
        ("endpoint", pa.string()),
        ("event_id", pa.string()),
        ("inference_id", pa.string()),
        ("inference_time", pa.timestamp("us", tz="UTC")),
        ("record_index", pa.int64()),
        ("label", pa.string()),
        ("feature", pa.string()),
        ("value", pa.float64()),
        ("prediction", pa.float64()),
    ]
)

_AGG_SQL = {
    "mean_abs": "avg(abs(value))",
    "median": "median(value)",
    "mean_sq": "avg(value * value)",
}

_CAPTURE_SQL = """
with c as (
    select endpoint, event_id, inference_id, inference_time,
        case when upper(output_encoding) = 'BASE64' then decode(from_base64(output_data))
             else output_data end as doc
    from captures
    where output_data is not null and output_data <> ''
), j as (
    select endpoint, event_id, inference_id, inference_time,
        json_extract(doc, '$.explanations.kernel_shap[*]') as recs,
        json_extract(doc, '$.label_headers') as label_headers,
        json_extract_string(doc, '$.predictions.data') as pred_data
    from c
    where json_valid(doc) and json_type(doc) = 'OBJECT'
), r as (
    select endpoint, event_id, inference_id, inference_time, label_headers, pred_data,
        unnest(recs) as rec, generate_subscripts(recs, 1) - 1 as record_index
    from j
    where recs is not null
), f as (
    select endpoint, event_id, inference_id, inference_time, label_headers, pred_data,
        record_index, unnest(json_extract(rec, '$[*]')) as feat,
        generate_subscripts(json_extract(rec, '$[*]'), 1) - 1 as feature_index
    from r
    where json_type(rec) = 'ARRAY'
), u as (
    select endpoint, event_id, inference_id, inference_time, label_headers, pred_data,
        record_index, coalesce(feat ->> 'feature_header', 'feature_' || feature_index) as feature,
        unnest(json_extract(feat, '$.attributions[*].attribution')) as attribution
    from f
), l as (
    select endpoint, event_id, inference_id, inference_time, label_headers, pred_data,
        record_index, feature,
        unnest(try_cast(attribution as double[])) as value,
        generate_subscripts(try_cast(attribution as double[]), 1) - 1 as label_index
    from u
)
select endpoint, event_id, inference_id, inference_time, record_index,
    coalesce(json_extract_string(label_headers, '$[' || label_index || ']'),
             'label' || label_index) as label,
    feature, sum(value) as value,
    try_cast(trim(string_split(
        string_split(rtrim(any_value(pred_data), chr(10) || chr(13)), chr(10))[record_index + 1],
        ',')[label_index + 1]) as double) as prediction
from l
where value is not null
group by endpoint, event_id, inference_id, inference_time, record_index, label_headers,
    label_index, feature
"""


def _connect():
    import duckdb

    return duckdb.connect()


def _conform(table: pa.Table) -> pa.Table:
    return pa.Table.from_arrays(
        [table[name].cast(RECORDS_SCHEMA.field(name).type) for name in RECORDS_SCHEMA.names],
        schema=RECORDS_SCHEMA,
    )


def capture_attributions(captures: pa.Table) -> pa.Table:
    """Per-record SHAP values from captured Clarify online-explainability responses
    (:data:`RECORDS_SCHEMA`); responses without ``explanations.kernel_shap`` give no rows."""
    con = _connect()
    con.register("captures", captures)
    return _conform(con.sql(_CAPTURE_SQL).to_arrow_table())


def file_attributions(path: str, captures: pa.Table, storage_options: dict | None = None) -> pa.Table:
    """Per-record attributions from a Parquet or CSV file keyed by ``inference_id`` or
    ``event_id`` (joined to ``captures`` for the time and endpoint); other numeric columns
    besides ``label`` and ``record_index`` are features."""
    import fsspec
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    try:
        with fsspec.open(path, "rb", **(storage_options or {})) as fh:
            if path.lower().endswith((".csv", ".csv.gz", ".txt")):
                table = pcsv.read_csv(fh)
            else:
                table = pq.read_table(fh)
    except FileNotFoundError:
        raise ConfigError(f"--attributions {path}: no such file") from None
    except (OSError, pa.ArrowInvalid) as exc:
        raise ConfigError(
            f"--attributions {path}: not a readable Parquet or CSV file ({exc})"
        ) from None
    names = table.column_names
    key = next((k for k in ("inference_id", "event_id") if k in names), None)
    if key is None:
        raise ConfigError(
            f"--attributions {path}: needs a column inference_id or event_id naming each record's "
            f"capture; it has {', '.join(names)}"
        )
    skip = {"inference_id", "event_id", "label", "record_index", "inference_time", "endpoint"}
    features = [
        n for n in names
        if n not in skip and (pa.types.is_integer(table[n].type) or pa.types.is_floating(table[n].type))
    ]
    if not features:
        raise ConfigError(f"--attributions {path}: no numeric feature columns besides {key}")
    con = _connect()
    con.register("attr", table)
    con.register("captures", captures)
    label = "cast(a.label as varchar)" if "label" in names else "'label0'"
    index = "a.record_index" if "record_index" in names else "0"
    cols = ", ".join(f'"{n}"' for n in features)
    sql = f"""
        with a as (select * from attr),
        k as (
            select c.endpoint, c.event_id, c.inference_id, c.inference_time,
                cast({index} as bigint) as record_index, {label} as label,
                {", ".join(f'cast(a."{n}" as double) as "{n}"' for n in features)}
            from a join captures c on cast(a.{key} as varchar) = c.{key}
        )
        select endpoint, event_id, inference_id, inference_time, record_index, label,
            feature, value, cast(null as double) as prediction
        from (unpivot k on {cols} into name feature value value)
    """
    return _conform(con.sql(sql).to_arrow_table())


# -- the score --------------------------------------------------------------------------------


def ndcg(baseline: Mapping[str, float], live: Mapping[str, float]) -> float:
    """The NDCG of ``live``'s feature ranking against ``baseline``'s global SHAP values."""
    rows = [{"window_start": None, "label": "label0", "feature": f, "value": float(v)}
            for f, v in live.items()]
    base = pa.Table.from_pylist(
        [{"label": "label0", "feature": f, "value": float(v)} for f, v in baseline.items()],
        schema=pa.schema([("label", pa.string()), ("feature", pa.string()), ("value", pa.float64())]),
    )
    live_t = pa.Table.from_pylist(
        rows,
        schema=pa.schema([("window_start", pa.timestamp("us", tz="UTC")), ("label", pa.string()),
                          ("feature", pa.string()), ("value", pa.float64())]),
    )
    out = ndcg_table(live_t, base)
    return out["ndcg"][0].as_py() if out.num_rows else math.nan


def ndcg_table(live: pa.Table, baseline: pa.Table) -> pa.Table:
    """NDCG per (``window_start``, ``label``) of ``live`` (``window_start, label, feature,
    value``: global values per window) against ``baseline`` (``label, feature, value``), with
    each feature's live rank, in one query. Returns ``window_start, label, feature, value,
    baseline_value, rank, baseline_rank, ndcg`` (one row per window, label and feature)."""
    con = _connect()
    con.register("live", live)
    con.register("base", baseline)
    sql = """
    with keys as (select distinct window_start, label from live),
    grid as (
        select coalesce(l.window_start, g.window_start) as window_start,
            coalesce(l.label, g.label) as label, coalesce(l.feature, g.feature) as feature,
            coalesce(l.value, 0.0) as value, coalesce(g.value, 0.0) as baseline_value
        from live l
        full join (select k.window_start, b.label, b.feature, b.value
                   from keys k join base b on k.label = b.label) g
            on l.window_start is not distinct from g.window_start and l.label = g.label
               and l.feature = g.feature
        where coalesce(l.label, g.label) in (select label from base)
    ),
    ranked as (
        select *,
            rank() over (partition by window_start, label order by abs(value) desc) as rank_min,
            count(*) over (partition by window_start, label, abs(value)) as ties,
            row_number() over (partition by window_start, label
                               order by abs(baseline_value) desc, feature) as baseline_rank
        from grid
    ),
    positions as (
        select p, sum(1.0 / log2(p + 1.0)) over (order by p) as h
        from range(1, (select count(*) from grid) + 1) t(p)
        union all select 0, 0.0
    ),
    scored as (
        select r.*,
            (hi.h - lo.h) / r.ties as discount,
            abs(r.baseline_value) / log2(r.baseline_rank + 1.0) as ideal
        from ranked r
        join positions lo on lo.p = r.rank_min - 1
        join positions hi on hi.p = r.rank_min + r.ties - 1
    ),
    totals as (
        select window_start, label, sum(abs(baseline_value) * discount) as dcg,
            sum(ideal) as idcg
        from scored group by window_start, label
    )
    select s.window_start, s.label, s.feature, s.value, s.baseline_value,
        cast(s.rank_min as bigint) as rank, cast(s.baseline_rank as bigint) as baseline_rank,
        case when t.idcg > 0 then least(1.0, t.dcg / t.idcg) end as ndcg
    from scored s join totals t
        on s.window_start is not distinct from t.window_start and s.label = t.label
    order by s.window_start, s.label, s.rank_min, s.feature
    """
    return con.sql(sql).to_arrow_table()


# -- global values per window -------------------------------------------------------------------


def _check_agg(agg_method: str) -> str:
    if agg_method not in AGG_METHODS:
        raise ConfigError(f"--agg-method must be one of {', '.join(AGG_METHODS)}, got {agg_method!r}")
    return agg_method


def global_values(records: pa.Table, agg_method: str = "mean_abs", every: str | None = None) -> tuple[pa.Table, pa.Table]:
    """Global SHAP values per window (``every`` ``hour``/``day``, or the whole table when None):
    ``(values, windows)`` with ``values`` = ``window_start, label, feature, value`` and
    ``windows`` = ``window_start, endpoint, label, records, expected_value``."""
    _check_agg(agg_method)
    if every is not None and every not in EVERY:
        raise ConfigError(f"--every must be hour or day, got {every!r}")
    con = _connect()
    con.register("r", records)
    w = f"date_trunc('{every}', inference_time)" if every else "cast(null as timestamptz)"
    con.execute(f"create temp view rw as select *, {w} as window_start from r")
    values = con.sql(
        f"select window_start, label, feature, {_AGG_SQL[agg_method]} as value "
        "from rw group by all order by all"
    ).to_arrow_table()
    windows = con.sql(
        """
        with per_record as (
            select window_start, label, endpoint, event_id, record_index,
                any_value(prediction) - sum(value) as expected
            from rw group by all
        )
        select window_start, min(endpoint) as endpoint, label, count(*) as records,
            avg(expected) as expected_value
        from per_record group by window_start, label order by all
        """
    ).to_arrow_table()
    return values, windows


# -- Clarify's files ----------------------------------------------------------------------------


def analysis_json(values: pa.Table, windows: pa.Table) -> dict:
    """Clarify's ``analysis.json`` explanations for one window."""
    labels: dict[str, dict] = {}
    for row in values.to_pylist():
        labels.setdefault(row["label"], {"global_shap_values": {}})["global_shap_values"][
            row["feature"]
        ] = row["value"]
    for row in windows.to_pylist():
        if row["label"] in labels and row["expected_value"] is not None:
            labels[row["label"]]["expected_value"] = row["expected_value"]
    return {"version": "1.0", "explanations": {"kernel_shap": labels}}


@dataclass
class AttributionBaseline:
    """A Clarify ``analysis.json``'s ``explanations.kernel_shap``: per label its
    ``global_shap_values`` and ``expected_value``."""

    labels: dict[str, dict]
    source: str = ""

    @classmethod
    def load(cls, path: str | Path) -> AttributionBaseline:
        p = Path(path)
        if p.is_dir():
            p = p / "analysis.json"
        try:
            doc = json.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{p}: no such file; give Clarify's analysis.json or the folder "
                              "`captureq attribution baseline` wrote") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{p}: not JSON ({exc})") from None
        return cls.from_doc(doc, str(p))

    @classmethod
    def from_doc(cls, doc: Any, source: str = "") -> AttributionBaseline:
        """The baseline in an ``analysis.json`` already read (``source`` names it in errors)."""
        p = source or "the baseline"
        shap = (doc.get("explanations") or {}).get("kernel_shap") if isinstance(doc, dict) else None
        labels = {
            k: v for k, v in (shap or {}).items()
            if isinstance(v, dict) and isinstance(v.get("global_shap_values"), dict)
            and v["global_shap_values"]
        }
        if not labels:
            raise ConfigError(
                f"{p}: not a Clarify analysis.json with explanations.kernel_shap.<label>."
                "global_shap_values; write one with `captureq attribution baseline`"
            )
        return cls(labels, source)

    def table(self) -> pa.Table:
        rows = [
            {"label": label, "feature": f, "value": float(v)}
            for label, d in self.labels.items()
            for f, v in d["global_shap_values"].items()
            if isinstance(v, (int, float))
        ]
        return pa.Table.from_pylist(
            rows,
            schema=pa.schema([("label", pa.string()), ("feature", pa.string()), ("value", pa.float64())]),
        )


def violations_json(scores: list[dict], threshold: float) -> dict:
    """``constraint_violations.json`` for one window's per-label scores."""
    return {
        "version": "1.0",
        "violations": [
            {
                "label": s["label"],
                "metric_name": METRIC_NAME,
                "constraint_check_type": CHECK_TYPE,
                "description": DESCRIPTION.format(score=s["ndcg"], threshold=threshold),
            }
            for s in scores
            if s["ndcg"] is not None and s["ndcg"] < threshold
        ],
    }


def _stamp(t: datetime | None) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if t else ""


def cloudwatch_rows(values: pa.Table, windows: pa.Table, schedule: str, when: datetime | None = None) -> list[dict]:
    """Clarify's CloudWatch metrics, one PutMetricData datum each: ``feature_<name>`` (the
    window's global SHAP value) and ``ExpectedValue``, with the dimensions Endpoint,
    MonitoringSchedule, ExplainabilityMethod, Label and ValueType."""
    endpoints = {(r["window_start"], r["label"]): r for r in windows.to_pylist()}

    def datum(name, t, endpoint, label, kind, value):
        return {
            "MetricName": name,
            "Timestamp": _stamp(t or when),
            "Dimensions": [
                {"Name": "Endpoint", "Value": endpoint or ""},
                {"Name": "MonitoringSchedule", "Value": schedule},
                {"Name": "ExplainabilityMethod", "Value": "KernelShap"},
                {"Name": "Label", "Value": label},
                {"Name": "ValueType", "Value": kind},
            ],
            "Value": value,
            "Unit": "None",
        }

    out = []
    for r in values.to_pylist():
        w = endpoints.get((r["window_start"], r["label"]), {})
        out.append(datum(f"feature_{r['feature']}", r["window_start"], w.get("endpoint"),
                         r["label"], "GlobalShapValues", r["value"]))
    for w in windows.to_pylist():
        if w["expected_value"] is not None:
            out.append(datum("ExpectedValue", w["window_start"], w["endpoint"], w["label"],
                             "ExpectedValue", w["expected_value"]))
    return out


# -- the monitor --------------------------------------------------------------------------------

SCORES_SCHEMA = pa.schema(
    [
        ("window_start", pa.timestamp("us", tz="UTC")),
        ("granularity", pa.string()),
        ("endpoint", pa.string()),
        ("label", pa.string()),
        ("records", pa.int64()),
        ("ndcg", pa.float64()),
        ("threshold", pa.float64()),
        ("violation", pa.bool_()),
        ("expected_value", pa.float64()),
        ("top_features", pa.string()),
        ("baseline_top_features", pa.string()),
    ]
)


@dataclass
class AttributionResult:
    """Scores per window and label (``scores``), each window's global values and ranks
    (``ranks``), Clarify's files per window, and CloudWatch metric data."""

    scores: pa.Table
    ranks: pa.Table
    analysis: dict
    constraint_violations: dict
    windows: dict[str, dict] = field(default_factory=dict)  # stamp -> {analysis, violations}
    cloudwatch: list[dict] = field(default_factory=list)
    every: str = "hour"

    @property
    def violated(self) -> bool:
        return bool(self.scores.num_rows) and bool(pc.any(self.scores["violation"]).as_py())

    def write(self, out: str | Path | None = None, cloudwatch_dir: str | Path | None = None) -> None:
        """``out``: analysis.json and constraint_violations.json for the whole range, the same
        under ``<every>/<window start>/``, and scores.parquet / ranks.parquet;
        ``cloudwatch_dir``: the metrics as JSON lines (``feature-attribution-drift.jsonl``)."""
        import pyarrow.parquet as pq

        if out is not None:
            out = Path(out)
            out.mkdir(parents=True, exist_ok=True)
            (out / "analysis.json").write_text(json.dumps(self.analysis, indent=2) + "\n")
            (out / "constraint_violations.json").write_text(
                json.dumps(self.constraint_violations, indent=2) + "\n"
            )
            for stamp, files in self.windows.items():
                d = out / self.every / stamp
                d.mkdir(parents=True, exist_ok=True)
                (d / "analysis.json").write_text(json.dumps(files["analysis"], indent=2) + "\n")
                (d / "constraint_violations.json").write_text(
                    json.dumps(files["violations"], indent=2) + "\n"
                )
            pq.write_table(self.scores, out / "scores.parquet")
            pq.write_table(self.ranks, out / "ranks.parquet")
        if cloudwatch_dir is not None:
            d = Path(cloudwatch_dir)
            d.mkdir(parents=True, exist_ok=True)
            with open(d / "feature-attribution-drift.jsonl", "w") as fh:
                for row in self.cloudwatch:
                    fh.write(json.dumps(row) + "\n")


def _top(ranks: pa.Table, column: str, n: int = 3) -> dict[tuple, str]:
    con = _connect()
    con.register("r", ranks)
    rows = con.sql(
        f"""select window_start, label,
               string_agg(feature, ', ' order by {column}, feature) filter ({column} <= {n}) as top
            from r group by window_start, label"""
    ).fetchall()
    return {(w, label): top for w, label, top in rows}


def _records(source: Any, attributions: str | None, storage_options: dict | None) -> pa.Table:
    from ..plan import ScanPlan, open_plan

    if isinstance(source, pa.Table):
        if "feature" in source.column_names:
            return _conform(source)
        captures = source
    else:
        tree = source if isinstance(source, ScanPlan) else open_plan(str(source))
        captures = tree.captures()
    if attributions:
        records = file_attributions(attributions, captures, storage_options)
        if not records.num_rows:
            raise CaptureqError(
                f"--attributions {attributions}: no row's id matches a capture in the window "
                f"({captures.num_rows:,} captures); check the key column and --start/--end"
            )
        return records
    records = capture_attributions(captures)
    if not records.num_rows:
        raise CaptureqError(
            f"no captured output in the window ({captures.num_rows:,} captures) carries "
            "explanations.kernel_shap (SageMaker Clarify online explainability); pass "
            "--attributions FILE with per-record attributions keyed by inference_id or event_id"
        )
    endpoints = set(records["endpoint"].to_pylist())
    if len(endpoints) > 1:
        raise ConfigError(
            f"the window holds attributions of {len(endpoints)} endpoints "
            f"({', '.join(sorted(e or '' for e in endpoints))}); pass --endpoint NAME"
        )
    return records


def attribution_baseline(
    source: Any,
    out: str | Path | None = None,
    *,
    agg_method: str = "mean_abs",
    attributions: str | None = None,
    storage_options: dict | None = None,
) -> dict:
    """Clarify's ``analysis.json`` (global SHAP values and expected value per label) of a
    window's attributions; written to ``out/analysis.json`` when ``out`` is given."""
    _check_agg(agg_method)
    values, windows = global_values(_records(source, attributions, storage_options), agg_method)
    doc = analysis_json(values, windows)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "analysis.json").write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def attribution_monitor(
    source: Any,
    baseline: AttributionBaseline | str | Path,
    out: str | Path | None = None,
    *,
    every: str = "hour",
    threshold: float = THRESHOLD,
    agg_method: str = "mean_abs",
    attributions: str | None = None,
    storage_options: dict | None = None,
    cloudwatch_dir: str | Path | None = None,
    schedule: str = "captureq",
) -> AttributionResult:
    """Score every ``every`` window (and the whole range) of ``source`` — a capture tree, its
    URI, a ``captures`` table or a table of :data:`RECORDS_SCHEMA` — against ``baseline``."""
    base = baseline if isinstance(baseline, AttributionBaseline) else AttributionBaseline.load(baseline)
    _check_agg(agg_method)
    if every not in EVERY:
        raise ConfigError(f"--every must be hour or day, got {every!r}")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold is an NDCG between 0 and 1, got {threshold}")
    records = _records(source, attributions, storage_options)
    base_t = base.table()
    parts = []
    for granularity, step in (("window", None), (every, every)):
        values, windows = global_values(records, agg_method, step)
        parts.append((granularity, values, windows, ndcg_table(values, base_t)))

    score_rows: list[dict] = []
    rank_tables = []
    window_files: dict[str, dict] = {}
    cloudwatch: list[dict] = []
    whole_analysis: dict = {}
    whole_violations: dict = {}
    w_start = pc.min(records["inference_time"]).as_py() if records.num_rows else None
    for granularity, values, windows, ranks in parts:
        scores = {(r["window_start"], r["label"]): r["ndcg"] for r in
                  ranks.select(["window_start", "label", "ndcg"]).to_pylist()}
        top, base_top = _top(ranks, "rank"), _top(ranks, "baseline_rank")
        rows = []
        for w in windows.to_pylist():
            key = (w["window_start"], w["label"])
            if key not in scores:
                continue  # a label the baseline does not have
            s = scores[key]
            rows.append({
                "window_start": w["window_start"] if granularity != "window" else w_start,
                "granularity": granularity,
                "endpoint": w["endpoint"],
                "label": w["label"],
                "records": w["records"],
                "ndcg": s,
                "threshold": threshold,
                "violation": s is not None and s < threshold,
                "expected_value": w["expected_value"],
                "top_features": top.get(key),
                "baseline_top_features": base_top.get(key),
            })
        score_rows += rows
        rank_tables.append(
            ranks.append_column("granularity", pa.array([granularity] * ranks.num_rows, pa.string()))
        )
        if granularity == "window":
            whole_analysis = analysis_json(values, windows)
            whole_violations = violations_json(rows, threshold)
            continue
        by_window: dict[Any, list[dict]] = {}
        for r in rows:
            by_window.setdefault(r["window_start"], []).append(r)
        for start, rs in sorted(by_window.items()):
            stamp = start.strftime("%Y-%m-%dT%H" if every == "hour" else "%Y-%m-%d")
            keep_v = pc.equal(values["window_start"], pa.scalar(start, values.schema.field("window_start").type))
            keep_w = pc.equal(windows["window_start"], pa.scalar(start, windows.schema.field("window_start").type))
            window_files[stamp] = {
                "analysis": analysis_json(values.filter(keep_v), windows.filter(keep_w)),
                "violations": violations_json(rs, threshold),
            }
        cloudwatch = cloudwatch_rows(values, windows, schedule)
    result = AttributionResult(
        scores=pa.Table.from_pylist(score_rows, schema=SCORES_SCHEMA),
        ranks=pa.concat_tables(rank_tables),
        analysis=whole_analysis,
        constraint_violations=whole_violations,
        windows=window_files,
        cloudwatch=cloudwatch,
        every=every,
    )
    if out is not None or cloudwatch_dir is not None:
        result.write(out, cloudwatch_dir)
    return result
