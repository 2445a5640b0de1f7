"""Deterministic sample and benchmark capture trees.

:func:`generate_tree` writes a small, realistic capture tree (several endpoints, variants,
CSV / JSON / base64 payloads, multi-record requests, inference ids, optional ground-truth labels
and an optional drifting feature) through the project's own writer, :mod:`captureq.records`.
:func:`generate_benchmark_tree` writes large trees fast: rows are built with numpy in bulk and
assembled byte-for-byte as :mod:`captureq.records` would write them.

Both are deterministic: the same arguments (and seed) give the same bytes. Both return a
:class:`GenerateSummary` with exact counts, so tests can check a scan against it.

>>> import tempfile
>>> out = tempfile.mkdtemp()
>>> summary = generate_tree(out, hours=2, requests_per_hour=10, labels_out=out + "-labels")
>>> summary.captures, sorted(summary.endpoints)
(60, ['churn-xgb', 'fraud-json', 'housing-ll'])
>>> summary.files_written == len(summary.files)
True
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
from fsspec.core import url_to_fs

from . import records as rec
from .errors import ConfigError

__all__ = [
    "EndpointSpec",
    "EndpointSummary",
    "GenerateSummary",
    "default_endpoints",
    "generate_benchmark_tree",
    "generate_tree",
]

UTC = timezone.utc
_HOUR_MS = 3_600_000

INPUT_KINDS = ("csv", "base64-csv", "json-instances", "json-features", "jsonlines")
OUTPUT_KINDS = ("csv", "json-predictions", "json-label-score")
TASKS = ("binary", "regression")
_DEFAULT_INPUT_TYPES = {
    "csv": "text/csv",
    "base64-csv": "text/csv",
    "json-instances": "application/json",
    "json-features": "application/json",
    "jsonlines": "application/jsonlines",
}
_DEFAULT_OUTPUT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json-predictions": "application/json",
    "json-label-score": "application/json",
}


# ---------------------------------------------------------------------------------------------
# Endpoint description and results
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EndpointSpec:
    """One endpoint of a generated tree: its traffic, payload shapes and a small model.

    Payload kinds:

    - ``input_kind``: ``"csv"`` (rows, trailing newline), ``"base64-csv"`` (CSV sent as
      ``text/csv`` but *not* listed in the endpoint's CSV capture types, so stored BASE64),
      ``"json-instances"`` (``{"instances": [[...], ...]}``), ``"json-features"``
      (``{"features": [...]}``; several records as ``{"instances": [{"features": ...}]}``),
      ``"jsonlines"`` (one JSON list per line).
    - ``output_kind``: ``"csv"`` (one value per record, newline-separated),
      ``"json-predictions"`` (``{"predictions": [{"score": x}, ...]}``), ``"json-label-score"``
      (``{"label": 0|1, "score": p}``, a list of them for several records).

    The model is ``intercept + scale * (z @ w)`` over standardized features ``z`` with fixed
    weights derived from the endpoint name; ``task="binary"`` passes it through the logistic
    function (the score is a probability and labels are drawn as Bernoulli(score)),
    ``task="regression"`` uses it as the predicted value (labels add noise).

    Requests carry ``records_per_request[0]`` records, except a ``multi_record_fraction`` share
    that carries between ``records_per_request[0] + 1`` and ``records_per_request[1]``.
    ``label_encoding`` is the ground-truth encoding (``"CSV"``, ``"JSON"``) or ``None`` for no
    labels. ``drift`` says whether ``generate_tree(drift_feature=...)`` applies here.

    >>> EndpointSpec("ep", n_features=3, integer_features=(0,)).input_content_type
    'text/csv'
    """

    name: str
    variants: tuple[tuple[str, float], ...] = (("AllTraffic", 1.0),)
    n_features: int = 12
    input_kind: str = "csv"
    output_kind: str = "csv"
    task: str = "binary"
    records_per_request: tuple[int, int] = (1, 1)
    multi_record_fraction: float = 0.0
    capture_input: bool = True
    capture_output: bool = True
    feature_means: tuple[float, ...] | None = None
    feature_stds: tuple[float, ...] | None = None
    integer_features: tuple[int, ...] = ()
    decimals: int = 4
    inference_id_fraction: float = 0.0
    label_encoding: str | None = rec.CSV
    csv_types: tuple[str, ...] = rec.DEFAULT_CSV_TYPES
    json_types: tuple[str, ...] = rec.DEFAULT_JSON_TYPES
    input_content_type: str = ""
    output_content_type: str = ""
    intercept: float = -1.0
    scale: float = 1.0
    traffic: float = 1.0
    drift: bool = True

    def __post_init__(self) -> None:
        if self.input_kind not in INPUT_KINDS:
            raise ConfigError(
                f"{self.name}: input_kind must be one of {INPUT_KINDS}, got {self.input_kind!r}"
            )
        if self.output_kind not in OUTPUT_KINDS:
            raise ConfigError(
                f"{self.name}: output_kind must be one of {OUTPUT_KINDS}, got {self.output_kind!r}"
            )
        if self.task not in TASKS:
            raise ConfigError(f"{self.name}: task must be one of {TASKS}, got {self.task!r}")
        if self.output_kind == "json-label-score" and self.task != "binary":
            raise ConfigError(f"{self.name}: output_kind 'json-label-score' needs task='binary'")
        if self.n_features < 1:
            raise ConfigError(f"{self.name}: n_features must be at least 1")
        if (
            not self.variants
            or any(w < 0 for _, w in self.variants)
            or sum(w for _, w in self.variants) <= 0
        ):
            raise ConfigError(
                f"{self.name}: variants need names with non-negative weights summing > 0"
            )
        lo, hi = self.records_per_request
        if lo < 1 or hi < lo:
            raise ConfigError(
                f"{self.name}: records_per_request must be (lo, hi) with 1 <= lo <= hi"
            )
        for attr in ("feature_means", "feature_stds"):
            values = getattr(self, attr)
            if values is not None and len(values) != self.n_features:
                raise ConfigError(
                    f"{self.name}: {attr} needs {self.n_features} values, got {len(values)}"
                )
        if any(not 0 <= i < self.n_features for i in self.integer_features):
            raise ConfigError(
                f"{self.name}: integer_features must be column indices below n_features"
            )
        if self.label_encoding not in (None, rec.CSV, rec.JSON):
            raise ConfigError(f"{self.name}: label_encoding must be 'CSV', 'JSON' or None")
        if not self.input_content_type:
            object.__setattr__(self, "input_content_type", _DEFAULT_INPUT_TYPES[self.input_kind])
        if not self.output_content_type:
            object.__setattr__(self, "output_content_type", _DEFAULT_OUTPUT_TYPES[self.output_kind])

    @property
    def capture_csv_types(self) -> tuple[str, ...]:
        """The CSV content types the endpoint captures as text (``base64-csv`` drops its own)."""
        if self.input_kind == "base64-csv":
            own = rec.media_type(self.input_content_type)
            return tuple(t for t in self.csv_types if rec.media_type(t) != own)
        return tuple(self.csv_types)


def default_endpoints() -> list[EndpointSpec]:
    """The mixed demo of :func:`generate_tree`: churn (CSV, canary), housing (JSON), fraud (BASE64).

    >>> [(e.name, [v for v, _ in e.variants], e.input_kind) for e in default_endpoints()]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('churn-xgb', ['AllTraffic', 'Canary'], 'csv'),
     ('housing-ll', ['AllTraffic'], 'json-instances'),
     ('fraud-json', ['AllTraffic'], 'base64-csv')]
    """
    churn = EndpointSpec(
        name="churn-xgb",
        variants=(("AllTraffic", 0.8), ("Canary", 0.2)),
        n_features=12,
        input_kind="csv",
        output_kind="csv",
        task="binary",
        records_per_request=(1, 3),
        multi_record_fraction=0.1,
        # account length, vmail msgs, day mins, day calls, eve mins, eve calls, night mins,
        # night calls, intl mins, intl calls, service calls, monthly charge
        feature_means=(100, 8, 180, 100, 200, 100, 200, 100, 10, 4.5, 1.6, 60),
        feature_stds=(40, 13, 54, 20, 50, 20, 50, 20, 2.8, 2.5, 1.3, 10),
        integer_features=(0, 1, 3, 5, 7, 9, 10),
        decimals=1,
        inference_id_fraction=0.7,
        label_encoding=rec.CSV,
        intercept=-1.3,
        scale=1.5,
    )
    housing = EndpointSpec(
        name="housing-ll",
        n_features=8,
        input_kind="json-instances",
        output_kind="json-predictions",
        task="regression",
        records_per_request=(1, 3),
        multi_record_fraction=0.4,
        # median income, house age, rooms, bedrooms, population, occupancy, latitude, longitude
        feature_means=(3.9, 28.6, 5.4, 1.1, 1425.0, 3.1, 35.6, -119.6),
        feature_stds=(1.9, 12.6, 2.5, 0.47, 1132.0, 0.8, 2.1, 2.0),
        decimals=4,
        label_encoding=rec.CSV,
        intercept=2.07,
        scale=1.15,
        drift=False,
    )
    fraud = EndpointSpec(
        name="fraud-json",
        n_features=10,
        input_kind="base64-csv",
        output_kind="json-label-score",
        task="binary",
        # amount, hour of day, merchant category, card age (years), then anonymized scores
        feature_means=(80.0, 12, 3, 4, 0, 0, 0, 0, 0, 0),
        feature_stds=(50.0, 6, 2, 3, 1, 1, 1, 1, 1, 1),
        integer_features=(1, 2, 3),
        decimals=2,
        inference_id_fraction=1.0,
        label_encoding=rec.JSON,
        intercept=-2.5,
        scale=1.5,
        drift=False,
    )
    return [churn, housing, fraud]


@dataclass
class EndpointSummary:
    """Counts for one endpoint of a generated tree."""

    captures: int = 0
    input_records: int = 0
    output_records: int = 0
    labels: int = 0
    label_records: int = 0
    files: int = 0
    label_files: int = 0
    variants: dict[str, int] = field(default_factory=dict)


@dataclass
class GenerateSummary:
    """What a generator wrote, exactly.

    ``captures`` counts capture lines; ``input_records``/``output_records`` count the records
    inside captured payloads (CSV rows / JSON instances; predictions), zero for a side that is
    not captured. ``labels_written`` counts label lines (one per labelled request) and
    ``label_records`` the individual labels in them. ``files`` and ``label_files`` list the
    paths written (without protocol). ``repeated_event_id`` is an eventId deliberately shared by
    ``repeated_event_id_count`` captures (real trees repeat ids); those captures all carry
    distinct inferenceIds, so labels stay unambiguous. ``start``/``end`` bound the inference
    hours (``end`` exclusive).
    """

    out: str
    labels_out: str | None
    start: datetime
    end: datetime
    captures: int = 0
    input_records: int = 0
    output_records: int = 0
    labels_written: int = 0
    label_records: int = 0
    files_written: int = 0
    label_files_written: int = 0
    endpoints: dict[str, EndpointSummary] = field(default_factory=dict)
    captures_per_hour: dict[datetime, int] = field(default_factory=dict)
    first_inference_time: datetime | None = None
    last_inference_time: datetime | None = None
    repeated_event_id: str | None = None
    repeated_event_id_count: int = 0
    drift_feature: str | None = None
    drift_start: datetime | None = None
    files: list[str] = field(default_factory=list, repr=False)
    label_files: list[str] = field(default_factory=list, repr=False)


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------
def _utc_hour(when: datetime) -> datetime:
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.replace(minute=0, second=0, microsecond=0)


def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    entropy = [int(seed)] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng(entropy)


def _uuid4(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


class _Writer:
    """Writes whole objects through fsspec, creating folders as needed.

    On object stores ``makedirs`` only checks the bucket (s3fs creates it if it is missing).
    """

    def __init__(self, url: str, storage_options: dict | None, compress: bool):
        self.fs, path = url_to_fs(url, **(storage_options or {}))
        self.root = path.rstrip("/")
        self.compress = compress
        self.suffix = ".jsonl.gz" if compress else ".jsonl"
        self._dirs: set[str] = set()

    def write(self, path: str, data: bytes) -> None:
        parent = path.rsplit("/", 1)[0]
        if parent not in self._dirs:
            self.fs.makedirs(parent, exist_ok=True)
            self._dirs.add(parent)
        if self.compress:
            data = gzip.compress(data, compresslevel=6, mtime=0)
        self.fs.pipe_file(path, data)


def _feature_index(feature: str | int) -> int:
    if isinstance(feature, int):
        return feature
    text = feature.strip()
    if text.startswith("_c"):
        text = text[2:]
    if not text.isdigit():
        raise ConfigError(
            f"drift_feature must look like '_c3' (or be a column index), got {feature!r}"
        )
    return int(text)


def _model_weights(spec: EndpointSpec) -> np.ndarray:
    # Fixed per endpoint name (not per seed): the "model" stays the same across samples.
    w = np.random.default_rng(zlib.crc32(spec.name.encode())).normal(0.0, 1.0, spec.n_features)
    return w / np.sqrt((w**2).sum())


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------------------------------------
# generate_tree: realistic, small, through the reference writer
# ---------------------------------------------------------------------------------------------
@dataclass
class _Request:
    endpoint: str
    variant: str
    hour: datetime
    time: datetime
    event_id: str
    inference_id: str | None
    rows: list[list[int | float]]
    predictions: list[float]
    truth: list[float]
    labelled: bool


def _requests_for_hour(
    spec: EndpointSpec,
    rng: np.random.Generator,
    weights: np.ndarray,
    hour: datetime,
    n: int,
    seq_start: int,
    shift: np.ndarray | None,
    label_fraction: float,
) -> list[_Request]:
    names = [v for v, _ in spec.variants]
    p = np.array([w for _, w in spec.variants], dtype=float)
    ms = np.sort(rng.integers(0, _HOUR_MS, n))
    variant = rng.choice(len(names), size=n, p=p / p.sum())
    lo, hi = spec.records_per_request
    counts = np.full(n, lo)
    if hi > lo:
        multi = rng.random(n) < spec.multi_record_fraction
        counts = np.where(multi, rng.integers(lo + 1, hi + 1, n), lo)
    has_id = rng.random(n) < spec.inference_id_fraction
    labelled = rng.random(n) < label_fraction
    total = int(counts.sum())
    means = np.array(
        spec.feature_means if spec.feature_means is not None else [0.0] * spec.n_features
    )
    stds = np.array(spec.feature_stds if spec.feature_stds is not None else [1.0] * spec.n_features)
    x = means + stds * rng.standard_normal((total, spec.n_features))
    if shift is not None:
        x += shift
    ints = np.zeros(spec.n_features, dtype=bool)
    ints[list(spec.integer_features)] = True
    x[:, ints] = np.maximum(np.rint(x[:, ints]), 0)
    x[:, ~ints] = np.round(x[:, ~ints], spec.decimals)
    linear = spec.intercept + spec.scale * (((x - means) / stds) @ weights)
    if spec.task == "binary":
        pred = _sigmoid(linear)
        truth = (rng.random(total) < pred).astype(float)
    else:
        pred = linear
        truth = np.round(pred + rng.normal(0.0, 0.3 * spec.scale, total), 3)
    event_ids = [_uuid4(rng) for _ in range(n)]

    out = []
    bounds = np.concatenate([[0], np.cumsum(counts)])
    for i in range(n):
        a, b = int(bounds[i]), int(bounds[i + 1])
        rows = [
            [int(v) if ints[j] else float(v) for j, v in enumerate(row)] for row in x[a:b].tolist()
        ]
        out.append(
            _Request(
                endpoint=spec.name,
                variant=names[int(variant[i])],
                hour=hour,
                time=hour + timedelta(milliseconds=int(ms[i])),
                event_id=event_ids[i],
                inference_id=f"{spec.name}-{seq_start + i:07d}" if has_id[i] else None,
                rows=rows,
                predictions=pred[a:b].tolist(),
                truth=truth[a:b].tolist(),
                labelled=bool(labelled[i]),
            )
        )
    return out


def _input_text(spec: EndpointSpec, rows: list[list[int | float]]) -> str:
    kind = spec.input_kind
    compact = (",", ":")
    if kind in ("csv", "base64-csv"):
        return "".join(rec.csv_line(r) + "\n" for r in rows)
    if kind == "json-instances":
        return json.dumps({"instances": rows}, separators=compact)
    if kind == "json-features":
        if len(rows) == 1:
            return json.dumps({"features": rows[0]}, separators=compact)
        return json.dumps({"instances": [{"features": r} for r in rows]}, separators=compact)
    return "\n".join(json.dumps(r, separators=compact) for r in rows)  # jsonlines


def _output_text(spec: EndpointSpec, preds: list[float]) -> str:
    kind = spec.output_kind
    compact = (",", ":")
    if kind == "csv":
        return "\n".join(repr(p) for p in preds)
    if kind == "json-predictions":
        return json.dumps({"predictions": [{"score": p} for p in preds]}, separators=compact)
    items = [{"label": int(p >= 0.5), "score": p} for p in preds]
    return json.dumps(items[0] if len(items) == 1 else items, separators=compact)


def _label_text(spec: EndpointSpec, truth: list[float]) -> str:
    if spec.task == "binary":
        return "\n".join(str(int(t)) for t in truth)
    return "\n".join(repr(t) for t in truth)


def _capture_line(spec: EndpointSpec, req: _Request) -> str:
    csv_types, json_types = spec.capture_csv_types, spec.json_types
    inp = out = None
    if spec.capture_input:
        inp = rec.encode_payload(
            _input_text(spec, req.rows),
            spec.input_content_type,
            csv_types=csv_types,
            json_types=json_types,
            mode="INPUT",
        )
    if spec.capture_output:
        out = rec.encode_payload(
            _output_text(spec, req.predictions),
            spec.output_content_type,
            csv_types=csv_types,
            json_types=json_types,
            mode="OUTPUT",
        )
    return rec.dumps(
        rec.capture_record(
            input=inp,
            output=out,
            event_id=req.event_id,
            inference_time=req.time,
            inference_id=req.inference_id,
        )
    )


def _repeat_one_event_id(
    requests: list[_Request], rng: np.random.Generator, count: int
) -> tuple[str | None, int]:
    """Give ``count`` requests (all with inference ids) the same eventId, as real trees do."""
    candidates = [i for i, r in enumerate(requests) if r.inference_id is not None]
    if count < 2 or len(candidates) < count:
        return None, 0
    chosen = sorted(rng.choice(len(candidates), size=count, replace=False).tolist())
    shared = requests[candidates[chosen[0]]].event_id
    for c in chosen[1:]:
        requests[candidates[c]].event_id = shared
    return shared, count


def generate_tree(
    out: str,
    *,
    endpoints: Sequence[EndpointSpec] | None = None,
    hours: int = 48,
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
    requests_per_hour: int = 50,
    files_per_hour: int = 2,
    label_fraction: float = 0.6,
    labels_out: str | None = None,
    label_delay_hours: int = 2,
    drift_feature: str | int | None = None,
    drift_from_hour: int | None = None,
    drift_shift: float = 3.0,
    seed: int = 0,
    storage_options: dict | None = None,
    compress: bool = False,
    repeated_event_id_count: int = 3,
) -> GenerateSummary:
    """Write a deterministic sample capture tree under ``out`` (a local path or any fsspec URL).

    Each endpoint gets ``round(requests_per_hour * spec.traffic)`` requests in every one of
    ``hours`` UTC hours from ``start``, at random times, split among its variants by weight and
    written as up to ``files_per_hour`` objects per variant and hour, named as SageMaker names
    them. ``endpoints=None`` uses :func:`default_endpoints`.

    With ``labels_out``, ``label_fraction`` of the requests of endpoints that have a
    ``label_encoding`` get a ground-truth line (one per request; several records give
    newline-separated labels) keyed by the request's inferenceId, else its eventId, in the hour
    folder ``label_delay_hours`` after the inference hour — one object per endpoint and hour,
    all endpoints in the one flat ``{labels_out}/yyyy/mm/dd/hh/`` tree.

    ``drift_feature`` (``"_c3"`` or ``3``) shifts that input column by ``drift_shift`` standard
    deviations from hour index ``drift_from_hour`` (default ``hours // 2``) on, in endpoints
    whose spec has ``drift=True`` (in the default demo only ``churn-xgb``). Model scores and
    labels follow the shifted inputs.

    ``repeated_event_id_count`` captures share one eventId (see
    :attr:`GenerateSummary.repeated_event_id`); 0 turns that off. ``compress`` writes
    ``.jsonl.gz`` objects.

    >>> import tempfile
    >>> s = generate_tree(tempfile.mkdtemp(), hours=1, requests_per_hour=5,
    ...                   endpoints=[EndpointSpec("ep", n_features=2)])
    >>> s.captures, s.input_records, s.files_written
    (5, 5, 2)
    """
    if hours < 1:
        raise ConfigError(f"hours must be at least 1, got {hours}")
    if requests_per_hour < 0:
        raise ConfigError(f"requests_per_hour must be >= 0, got {requests_per_hour}")
    if files_per_hour < 1:
        raise ConfigError(f"files_per_hour must be at least 1, got {files_per_hour}")
    if not 0.0 <= label_fraction <= 1.0:
        raise ConfigError(f"label_fraction must be between 0 and 1, got {label_fraction}")
    specs = list(endpoints) if endpoints is not None else default_endpoints()
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"endpoint names must be unique, got {names}")
    start = _utc_hour(start)
    drift_index = _feature_index(drift_feature) if drift_feature is not None else None
    drift_hour = (
        (hours // 2 if drift_from_hour is None else drift_from_hour)
        if drift_index is not None
        else None
    )

    writer = _Writer(out, storage_options, compress)
    label_writer = _Writer(labels_out, storage_options, compress) if labels_out else None
    summary = GenerateSummary(
        out=out, labels_out=labels_out, start=start, end=start + timedelta(hours=hours)
    )
    if drift_index is not None:
        summary.drift_feature = f"_c{drift_index}"
        summary.drift_start = start + timedelta(hours=drift_hour)

    all_requests: list[_Request] = []
    by_spec: dict[str, list[_Request]] = {}
    for spec in specs:
        rng = _rng(seed, spec.name)
        weights = _model_weights(spec)
        n = round(requests_per_hour * spec.traffic)
        stds = np.array(
            spec.feature_stds if spec.feature_stds is not None else [1.0] * spec.n_features
        )
        reqs: list[_Request] = []
        for h in range(hours):
            shift = None
            if (
                drift_index is not None
                and spec.drift
                and drift_index < spec.n_features
                and h >= drift_hour
            ):
                shift = np.zeros(spec.n_features)
                shift[drift_index] = drift_shift * stds[drift_index]
            reqs += _requests_for_hour(
                spec, rng, weights, start + timedelta(hours=h), n, len(reqs), shift, label_fraction
            )
        by_spec[spec.name] = reqs
        all_requests += reqs
    summary.repeated_event_id, summary.repeated_event_id_count = _repeat_one_event_id(
        all_requests, _rng(seed, "repeat-event-id"), repeated_event_id_count
    )

    for spec in specs:
        names_rng = _rng(seed, spec.name, "object-names")
        es = summary.endpoints[spec.name] = EndpointSummary(
            variants={v: 0 for v, _ in spec.variants}
        )
        reqs = by_spec[spec.name]
        groups: dict[tuple[datetime, str], list[_Request]] = {}
        for r in reqs:
            groups.setdefault((r.hour, r.variant), []).append(r)
        for (hour, variant), group in sorted(groups.items()):
            for chunk in np.array_split(np.arange(len(group)), min(files_per_hour, len(group))):
                part = [group[i] for i in chunk]
                name = rec.object_name(part[0].time, _uuid4(names_rng), suffix=writer.suffix)
                path = rec.capture_path(writer.root, spec.name, variant, hour, name=name)
                writer.write(path, "".join(_capture_line(spec, r) + "\n" for r in part).encode())
                summary.files.append(path)
                es.files += 1
            es.variants[variant] += len(group)
            summary.captures_per_hour[hour] = summary.captures_per_hour.get(hour, 0) + len(group)
        es.captures = len(reqs)
        es.input_records = sum(len(r.rows) for r in reqs) if spec.capture_input else 0
        es.output_records = sum(len(r.predictions) for r in reqs) if spec.capture_output else 0

        if label_writer is not None and spec.label_encoding is not None:
            by_hour: dict[datetime, list[_Request]] = {}
            for r in reqs:
                if r.labelled:
                    by_hour.setdefault(r.hour + timedelta(hours=label_delay_hours), []).append(r)
            for hour, group in sorted(by_hour.items()):
                lines = [
                    rec.dumps(
                        rec.ground_truth_record(
                            event_id=r.inference_id if r.inference_id is not None else r.event_id,
                            data=_label_text(spec, r.truth),
                            encoding=spec.label_encoding,
                        )
                    )
                    + "\n"
                    for r in group
                ]
                name = f"{spec.name}-{_uuid4(names_rng)}{label_writer.suffix}"
                path = rec.label_path(label_writer.root, hour, name=name)
                label_writer.write(path, "".join(lines).encode())
                summary.label_files.append(path)
                es.label_files += 1
                es.labels += len(group)
                es.label_records += sum(len(r.truth) for r in group)

    for es in summary.endpoints.values():
        summary.captures += es.captures
        summary.input_records += es.input_records
        summary.output_records += es.output_records
        summary.labels_written += es.labels
        summary.label_records += es.label_records
    summary.files_written = len(summary.files)
    summary.label_files_written = len(summary.label_files)
    summary.captures_per_hour = dict(sorted(summary.captures_per_hour.items()))
    if all_requests:
        times = [r.time.replace(microsecond=0) for r in all_requests]
        summary.first_inference_time, summary.last_inference_time = min(times), max(times)
    return summary


# ---------------------------------------------------------------------------------------------
# generate_benchmark_tree: large trees, assembled with numpy
# ---------------------------------------------------------------------------------------------
# The first 11 columns of SageMaker's churn example (ints and one-decimal floats), then one-hot
# groups (state, area code, intl plan, vmail plan) as 0/1 columns: 11 + 51 + 3 + 2 + 2 = 69.
_BENCH_NUMERIC = (
    ("int", 100.0, 40.0),
    ("int", 8.0, 13.0),
    ("float", 180.0, 54.0),
    ("int", 100.0, 20.0),
    ("float", 200.0, 50.0),
    ("int", 100.0, 20.0),
    ("float", 200.0, 50.0),
    ("int", 100.0, 20.0),
    ("float", 10.0, 2.8),
    ("int", 4.5, 2.5),
    ("int", 1.6, 1.3),
)
_BENCH_GROUPS = (51, 3, 2, 2)
_VOCAB_SIZE = 10_000  # ints 0..9999 and one-decimal floats 0.0..999.9
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_ROW_END = b"\x00"  # never inside a row: marks where rows are split apart


class _Vocabulary:
    """Number tokens, plain and with a trailing comma, that CSV rows are concatenated from.

    Token ``i`` is the int ``i``; token ``_VOCAB_SIZE + k`` the float ``k / 10`` as ``repr``
    writes it; add :attr:`comma` for the variant followed by ``,``. :attr:`row_end` and
    :attr:`newline_row_end` end a row.
    """

    def __init__(self) -> None:
        plain = [str(i).encode() for i in range(_VOCAB_SIZE)]
        plain += [repr(k / 10).encode() for k in range(_VOCAB_SIZE)]
        tokens = plain + [t + b"," for t in plain] + [_ROW_END, b"\n" + _ROW_END]
        self.comma = len(plain)
        self.row_end = len(tokens) - 2
        self.newline_row_end = len(tokens) - 1
        self.lens = np.fromiter(map(len, tokens), dtype=np.int32, count=len(tokens))
        self.starts = (np.cumsum(self.lens) - self.lens).astype(np.int32)
        self.table = np.frombuffer(b"".join(tokens), dtype=np.uint8)

    def rows(self, ids: np.ndarray, block: int = 32_768) -> list[bytes]:
        """Concatenate the tokens of each row of ``ids`` (each row must end with a row end)."""
        out: list[bytes] = []
        for first in range(0, len(ids), block):  # bounded memory: ~4 bytes per output byte
            flat = ids[first : first + block].ravel()
            token_lens = self.lens[flat]
            dtype = np.int32 if int(token_lens.sum(dtype=np.int64)) < 2**31 else np.int64
            out_pos = np.cumsum(token_lens, dtype=dtype) - token_lens
            src = np.repeat(self.starts[flat].astype(dtype) - out_pos, token_lens)
            src += np.arange(src.size, dtype=src.dtype)
            out += self.table[src].tobytes().split(_ROW_END)[:-1]
        return out


_VOCAB: list[_Vocabulary] = []


def _vocabulary() -> _Vocabulary:
    if not _VOCAB:
        _VOCAB.append(_Vocabulary())
    return _VOCAB[0]


def _bench_columns(features: int) -> tuple[list[tuple[str, float, float]], list[int]]:
    numeric = list(_BENCH_NUMERIC[: min(features, len(_BENCH_NUMERIC))])
    rest = features - len(numeric)
    groups: list[int] = []
    for g in (*_BENCH_GROUPS, *[2] * rest):
        if rest <= 0:
            break
        groups.append(min(g, rest))
        rest -= groups[-1]
    return numeric, groups


def _bench_rows(
    rng: np.random.Generator,
    n: int,
    numeric: list[tuple[str, float, float]],
    groups: list[int],
    weights: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Vocabulary ids (n, features) and model scores for ``n`` churn-like rows."""
    ids = np.empty((n, len(numeric) + sum(groups)), dtype=np.int32)
    z = np.empty((n, len(numeric)))
    normals = rng.standard_normal((n, len(numeric)))
    for j, (kind, mean, std) in enumerate(numeric):
        x = mean + std * normals[:, j]
        if kind == "int":
            v = np.clip(np.rint(x), 0, _VOCAB_SIZE - 1).astype(np.int32)
            ids[:, j] = v
            z[:, j] = (v - mean) / std
        else:
            k = np.clip(np.rint(x * 10), 0, _VOCAB_SIZE - 1).astype(np.int32)
            ids[:, j] = _VOCAB_SIZE + k
            z[:, j] = (k / 10 - mean) / std
    col = len(numeric)
    onehot_signal = np.zeros(n)
    for g in groups:
        if g == 1:  # a lone 0/1 flag
            block = rng.integers(0, 2, (n, 1), dtype=np.int32)
        else:  # one-hot: exactly one 1 per row
            block = np.zeros((n, g), dtype=np.int32)
            block[np.arange(n), rng.integers(0, g, n)] = 1
        ids[:, col : col + g] = block
        onehot_signal += 0.3 * (block[:, 0] - (block[:, -1] if g > 1 else 0))
        col += g
    logit = -1.5 + 1.5 * (z @ weights) + onehot_signal
    return ids, _sigmoid(logit)


def _uuids(rng: np.random.Generator, n: int) -> list[bytes]:
    """``n`` random version-4 UUIDs (``str(uuid.UUID(...))`` form) as ASCII bytes."""
    b = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    b[:, 6] = (b[:, 6] & 0x0F) | 0x40
    b[:, 8] = (b[:, 8] & 0x3F) | 0x80
    hexes = np.empty((n, 32), dtype=np.uint8)
    hexes[:, 0::2] = _HEX[b >> 4]
    hexes[:, 1::2] = _HEX[b & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for src, dst, width in ((0, 0, 8), (8, 9, 4), (12, 14, 4), (16, 19, 4), (20, 24, 12)):
        out[:, dst : dst + width] = hexes[:, src : src + width]
    return out.view("S36").ravel().tolist()


def _floats(values: np.ndarray) -> list[bytes]:
    """``repr`` of each float, as bytes (one C call for the lot, not one per value)."""
    if values.size == 0:
        return []
    return repr(values.tolist())[1:-1].encode().split(b", ")


_PLACEHOLDERS = ("@@DATA@@", "@@SCORE@@", "@@EVENT@@", "@@TIME@@")
_TEMPLATE_TIME = datetime(1999, 9, 9, 9, 9, 9, tzinfo=UTC)


def _bench_template(encoding: str) -> list[str]:
    """The constant pieces of a benchmark line, cut out of the reference writer's output."""
    if encoding == rec.CSV:
        inp = rec.encode_payload("@@DATA@@\n", "text/csv", mode="INPUT")
    elif encoding == rec.JSON:
        inp = rec.encode_payload('{"features":[@@DATA@@]}', "application/json", mode="INPUT")
    else:
        inp = rec.encode_payload("x", "text/csv", csv_types=(), mode="INPUT")
        inp["data"] = "@@DATA@@"
    out = rec.encode_payload("@@SCORE@@", "text/csv; charset=utf-8", mode="OUTPUT")
    record = rec.capture_record(
        input=inp, output=out, event_id="@@EVENT@@", inference_time=_TEMPLATE_TIME
    )
    line = rec.dumps(record).replace(rec.format_time(_TEMPLATE_TIME), "@@TIME@@") + "\n"
    pieces = []
    for ph in _PLACEHOLDERS:
        head, line = line.split(ph)
        pieces.append(head)
    pieces.append(line)
    return pieces


def generate_benchmark_tree(
    out: str,
    *,
    records: int = 1_000_000,
    features: int = 69,
    endpoints: int = 2,
    hours: int = 48,
    files_per_hour: int = 20,
    encoding: str = "CSV",
    seed: int = 0,
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
    storage_options: dict | None = None,
    compress: bool = False,
) -> GenerateSummary:
    """Write a large capture tree fast: ``records`` captures of one churn-like row each.

    Endpoints ``bench-0`` … ``bench-{endpoints-1}`` (variant ``AllTraffic``) share the records
    evenly over ``hours`` hours, ``files_per_hour`` objects per endpoint and hour. Inputs are
    ``features`` numeric columns like SageMaker's churn sample (``69,0,153.7,109,194.0,...``),
    outputs a CSV probability. ``encoding`` picks how the input is stored: ``"CSV"`` (text/csv),
    ``"JSON"`` (``{"features": [...]}`` as application/json) or ``"BASE64"`` (the same CSV text,
    base64-encoded, ``observedContentType`` text/csv). The feature values, times and ids do not
    depend on ``encoding``, only on ``seed``. Lines are byte-identical to what
    :mod:`captureq.records` writes; rows are assembled from number tokens with numpy.

    >>> import tempfile
    >>> s = generate_benchmark_tree(tempfile.mkdtemp(), records=1000, hours=2, files_per_hour=3)
    >>> s.captures, s.files_written, s.endpoints["bench-0"].captures
    (1000, 12, 500)
    """
    n_records = records
    encoding = encoding.upper()
    if encoding not in (_CSV, _JSON, _BASE64):
        raise ConfigError(f"encoding must be 'CSV', 'JSON' or 'BASE64', got {encoding!r}")
    if n_records < 0 or features < 1 or endpoints < 1 or hours < 1 or files_per_hour < 1:
        raise ConfigError("records must be >= 0; features, endpoints, hours, files_per_hour >= 1")
    start = _utc_hour(start)
    writer = _Writer(out, storage_options, compress)
    summary = GenerateSummary(
        out=out, labels_out=None, start=start, end=start + timedelta(hours=hours)
    )
    numeric, groups = _bench_columns(features)
    weights = np.random.default_rng(20220214).normal(0.0, 1.0, len(numeric))
    weights /= np.sqrt((weights**2).sum())

    vocab = _vocabulary()
    before_data, before_score, before_event, before_time, line_end = (
        p.encode() for p in _bench_template(encoding)
    )
    # "MM:SSZ" + the line's end, for every second of an hour; the hour's prefix ends before_time.
    clock = [
        rec.format_time(_TEMPLATE_TIME.replace(minute=0, second=0) + timedelta(seconds=s))[14:]
        for s in range(3600)
    ]
    clock_end = [c.encode() + line_end for c in clock]
    row_end = vocab.newline_row_end if encoding == _BASE64 else vocab.row_end
    rng = np.random.default_rng(seed)
    per_slot, extra = divmod(n_records, endpoints * hours)
    times: list[datetime] = []
    for h in range(hours):
        hour = start + timedelta(hours=h)
        hour_time = before_time + rec.format_time(hour)[:14].encode()
        for e in range(endpoints):
            name = f"bench-{e}"
            es = summary.endpoints.setdefault(name, EndpointSummary(variants={"AllTraffic": 0}))
            n = per_slot + (1 if h * endpoints + e < extra else 0)
            if n == 0:
                continue
            ms = np.sort(rng.integers(0, _HOUR_MS, n))
            ids, scores = _bench_rows(rng, n, numeric, groups, weights)
            events = _uuids(rng, n)
            n_files = min(files_per_hour, n)
            file_uids = [_uuid4(rng) for _ in range(n_files)]

            ids[:, :-1] += vocab.comma
            rows = vocab.rows(np.concatenate([ids, np.full((n, 1), row_end, np.int32)], axis=1))
            if encoding == _BASE64:
                rows = [base64.b64encode(r) for r in rows]
            parts: list[bytes] = [before_data] * (8 * n)
            parts[1::8] = rows
            parts[2::8] = [before_score] * n
            parts[3::8] = _floats(scores)
            parts[4::8] = [before_event] * n
            parts[5::8] = events
            parts[6::8] = [hour_time] * n
            parts[7::8] = [clock_end[s] for s in (ms // 1000).tolist()]

            for k, chunk in enumerate(np.array_split(np.arange(n), n_files)):
                a, b = int(chunk[0]), int(chunk[-1]) + 1
                when = hour + timedelta(milliseconds=int(ms[a]))
                fname = rec.object_name(when, file_uids[k], suffix=writer.suffix)
                path = rec.capture_path(writer.root, name, "AllTraffic", hour, name=fname)
                writer.write(path, b"".join(parts[8 * a : 8 * b]))
                summary.files.append(path)
                es.files += 1
            es.captures += n
            es.input_records += n
            es.output_records += n
            es.variants["AllTraffic"] += n
            summary.captures_per_hour[hour] = summary.captures_per_hour.get(hour, 0) + n
            times += [hour + timedelta(seconds=int(ms[i] // 1000)) for i in (0, -1)]
    summary.captures = summary.input_records = summary.output_records = n_records
    summary.files_written = len(summary.files)
    if times:
        summary.first_inference_time, summary.last_inference_time = min(times), max(times)
    return summary


_CSV, _JSON, _BASE64 = rec.CSV, rec.JSON, rec.BASE64


#: The loan-approval endpoint of :func:`generate_loans`: Clarify's analysis configuration for it.
LOANS_BIAS_CONFIG = {
    "label": "approved",
    "label_values_or_threshold": [1],
    "headers": ["sex", "income", "region"],
    "facet": [{"name_or_index": "sex", "value_or_threshold": [1]}],
    "group_variable": "region",
    "probability_threshold": 0.5,
}
LOANS_FEATURES = ("income", "sex", "age", "tenure", "region")


def generate_loans(
    out: str,
    labels_out: str,
    *,
    hours: int = 24,
    requests_per_hour: int = 200,
    shift_from_hour: int | None = 12,
    start: datetime = datetime(2026, 1, 1, tzinfo=timezone.utc),
    seed: int = 7,
) -> tuple[str, str]:
    """A loan-approval endpoint (``loans``) for Clarify's two monitors: CSV inputs ``sex, income,
    region``, a JSON response ``{"score": …, "explanations": {"kernel_shap": …}}`` per record
    (as SageMaker Clarify's online explainability answers), and the ground truth an hour later.
    From ``shift_from_hour`` the scores of ``sex=1`` fall by 40 % (bias drift) and ``region``'s
    attributions grow from the least to the most important (feature-attribution drift).

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> generate_loans(f"{d}/capture", f"{d}/labels", hours=1, requests_per_hour=2)[0].endswith("capture")
    True
    """
    rng = np.random.default_rng(seed)
    fs, _ = url_to_fs(out)
    scales = np.array([1.0, 0.6, 0.3, 0.15, 0.05])
    for h in range(hours):
        when = start + timedelta(hours=h)
        n = requests_per_hour
        sex = rng.integers(0, 2, n)
        income = np.round(rng.normal(60, 15, n), 1)
        region = rng.integers(1, 4, n)
        score = 1 / (1 + np.exp(-(0.04 * (income - 60) + 0.3 * (region - 2))))
        approved = (rng.random(n) < score).astype(int)
        hour_scales = scales.copy()
        if shift_from_hour is not None and h >= shift_from_hour:
            score = np.where(sex == 1, score * 0.6, score)
            hour_scales[-1] = 1.5
        phis = rng.normal(0, 1, (n, len(LOANS_FEATURES))) * hour_scales
        lines, truth = [], []
        for i in range(n):  # sample data, written once: not a hot path
            iid = f"loan-{h}-{i}"
            body = {"score": round(float(score[i]), 5), "explanations": {"kernel_shap": [[
                {"feature_header": f, "attributions": [{"attribution": [round(float(v), 6)]}]}
                for f, v in zip(LOANS_FEATURES, phis[i])]]}}
            lines.append(rec.dumps(rec.capture_record(
                input=rec.encode_payload(f"{sex[i]},{income[i]},{region[i]}\n", "text/csv", mode="INPUT"),
                output=rec.encode_payload(json.dumps(body), "application/json", mode="OUTPUT"),
                event_id=iid, inference_id=iid, inference_time=when + timedelta(seconds=15 * i))))
            truth.append(rec.dumps(rec.ground_truth_record(event_id=iid, data=str(approved[i]))))
        for path, text in ((rec.capture_path(out, "loans", "AllTraffic", when, f"loans-{h:03d}.jsonl"), lines),
                           (rec.label_path(labels_out, when + timedelta(hours=1), f"loans-{h:03d}.jsonl"), truth)):
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            with fs.open(path, "w") as f:
                f.write("\n".join(text) + "\n")
    return out, labels_out
