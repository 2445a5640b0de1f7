"""Write the capture format: the one place that builds capture and ground-truth records.

Everything that *produces* capture trees (test fixtures, :mod:`captureq.generate`, a
serving-side writer) goes through these functions, so the bytes match what SageMaker writes
(see ``FORMAT.md``): compact one-line JSON, keys in SageMaker's order, payloads stored as text
when their media type is listed in the endpoint's capture content types and base64 otherwise,
inference times in UTC to the second with a ``Z``.

>>> from datetime import datetime, timezone
>>> rec = capture_record(
...     input=encode_payload("1,2.5\\n", "text/csv", mode="INPUT"),
...     output=encode_payload("0.25", "text/csv; charset=utf-8", mode="OUTPUT"),
...     event_id="e-1",
...     inference_time=datetime(2022, 2, 14, 17, 25, 49, tzinfo=timezone.utc),
... )
>>> rec["eventMetadata"]
{'eventId': 'e-1', 'inferenceTime': '2022-02-14T17:25:49Z'}
>>> dumps(rec)[:81]
'{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT",'
"""

from __future__ import annotations

import base64
import json
import numbers
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "BASE64",
    "CSV",
    "DEFAULT_CSV_TYPES",
    "DEFAULT_JSON_TYPES",
    "JSON",
    "capture_path",
    "capture_record",
    "csv_line",
    "dumps",
    "encode_payload",
    "format_time",
    "ground_truth_record",
    "label_path",
    "media_type",
    "object_name",
]

CSV = "CSV"
JSON = "JSON"
BASE64 = "BASE64"

DEFAULT_CSV_TYPES: tuple[str, ...] = ("text/csv",)
DEFAULT_JSON_TYPES: tuple[str, ...] = (
    "application/json",
    "application/jsonlines",
    "application/x-jsonlines",
)

_UTC = timezone.utc


def media_type(content_type: str) -> str:
    """The lower-cased media type of a Content-Type header, without its parameters.

    >>> media_type("Text/CSV; charset=utf-8")
    'text/csv'
    >>> media_type("application/json")
    'application/json'
    """
    return content_type.split(";", 1)[0].strip().lower()


def encode_payload(
    data: bytes | str,
    content_type: str,
    *,
    csv_types: Iterable[str] = DEFAULT_CSV_TYPES,
    json_types: Iterable[str] = DEFAULT_JSON_TYPES,
    mode: str,
) -> dict[str, str]:
    """Build an ``endpointInput``/``endpointOutput`` object as SageMaker stores the payload.

    ``csv_types``/``json_types`` are the endpoint's ``CaptureContentTypeHeader`` lists. A payload
    whose media type is listed is stored as text (``CSV`` or ``JSON``); anything else, and any
    bytes that are not valid UTF-8, is stored base64-encoded (``BASE64``). ``content_type`` is
    kept verbatim as ``observedContentType``, parameters included.

    >>> encode_payload("1,2", "text/csv", mode="INPUT")["encoding"]
    'CSV'
    >>> encode_payload("1,2", "text/csv", csv_types=(), mode="INPUT")
    {'observedContentType': 'text/csv', 'mode': 'INPUT', 'data': 'MSwy', 'encoding': 'BASE64'}
    >>> encode_payload(b"\\x89PNG", "image/png", mode="INPUT")["data"]
    'iVBORw=='
    """
    if isinstance(data, str):
        raw = None
        text: str | None = data
    else:
        raw = bytes(data)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    mtype = media_type(content_type)
    encoding = BASE64
    if text is not None:
        if mtype in {media_type(t) for t in csv_types}:
            encoding = CSV
        elif mtype in {media_type(t) for t in json_types}:
            encoding = JSON
    if encoding == BASE64:
        if raw is None:
            raw = data.encode("utf-8")  # type: ignore[union-attr]
        stored = base64.b64encode(raw).decode("ascii")
    else:
        stored = text  # type: ignore[assignment]
    return {"observedContentType": content_type, "mode": mode, "data": stored, "encoding": encoding}


def _utc(when: datetime) -> datetime:
    """An aware UTC datetime; naive values are taken to be UTC already."""
    if when.tzinfo is None:
        return when.replace(tzinfo=_UTC)
    return when.astimezone(_UTC)


def format_time(when: datetime) -> str:
    """Format an inference time as SageMaker writes it: UTC, whole seconds, ``Z``.

    >>> from datetime import timedelta
    >>> format_time(datetime(2022, 2, 14, 19, 25, 49, 999999, tzinfo=timezone(timedelta(hours=2))))
    '2022-02-14T17:25:49Z'
    """
    return _utc(when).strftime("%Y-%m-%dT%H:%M:%SZ")


def capture_record(
    *,
    input: dict[str, Any] | None,  # noqa: A002 - the name SageMaker's docs use
    output: dict[str, Any] | None,
    event_id: str,
    inference_time: datetime,
    inference_id: str | None = None,
    event_version: str = "0",
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build one capture record (a line of a capture file).

    ``input``/``output`` are :func:`encode_payload` results; either is left out of
    ``captureData`` when ``None`` (capture mode Input-only or Output-only), and ``inferenceId``
    is left out when ``inference_id`` is ``None``. ``metadata`` adds keys of its own to
    ``eventMetadata`` after the standard ones (readers keep them in ``captures.event_metadata``);
    it cannot replace ``eventId``, ``inferenceId`` or ``inferenceTime``.

    >>> rec = capture_record(input=None, output=encode_payload("0.5", "text/csv", mode="OUTPUT"),
    ...                      event_id="e", inference_id="req-7",
    ...                      inference_time=datetime(2026, 1, 1, 0, 0, 5, 250000))
    >>> list(rec["captureData"])
    ['endpointOutput']
    >>> rec["eventMetadata"]["inferenceId"], rec["eventMetadata"]["inferenceTime"]
    ('req-7', '2026-01-01T00:00:05Z')
    """
    capture: dict[str, Any] = {}
    if input is not None:
        capture["endpointInput"] = input
    if output is not None:
        capture["endpointOutput"] = output
    meta: dict[str, Any] = {"eventId": event_id}
    if inference_id is not None:
        meta["inferenceId"] = inference_id
    meta["inferenceTime"] = format_time(inference_time)
    for key, value in (metadata or {}).items():
        if key in meta:
            raise ValueError(f"metadata cannot replace eventMetadata.{key}")
        meta[key] = value
    return {"captureData": capture, "eventMetadata": meta, "eventVersion": event_version}


def ground_truth_record(
    *, event_id: str, data: str, encoding: str = CSV, event_version: str = "0"
) -> dict[str, Any]:
    """Build one ground-truth (label) record.

    ``event_id`` is the captured event's ``inferenceId`` when the request had one, else its
    ``eventId``.

    >>> dumps(ground_truth_record(event_id="req-7", data="1"))
    '{"groundTruthData":{"data":"1","encoding":"CSV"},"eventMetadata":{"eventId":"req-7"},"eventVersion":"0"}'
    """
    return {
        "groundTruthData": {"data": data, "encoding": encoding},
        "eventMetadata": {"eventId": event_id},
        "eventVersion": event_version,
    }


def dumps(record: dict[str, Any]) -> str:
    """Serialize a record as one compact JSON line (no trailing newline).

    >>> dumps({"a": "é", "b": [1, 2]})
    '{"a":"é","b":[1,2]}'
    """
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def object_name(when: datetime, uid: str | None = None, *, suffix: str = ".jsonl") -> str:
    """SageMaker's capture object name: ``{mm}-{ss}-{mmm}-{uuid}.jsonl`` of the first record.

    >>> object_name(datetime(2022, 2, 14, 17, 25, 6, 12000), "abc")
    '25-06-012-abc.jsonl'
    """
    when = _utc(when)
    uid = uid if uid is not None else str(uuid.uuid4())
    return f"{when:%M-%S}-{when.microsecond // 1000:03d}-{uid}{suffix}"


def _hour_dir(when: datetime) -> str:
    return f"{_utc(when):%Y/%m/%d/%H}"


def capture_path(
    prefix: str, endpoint: str, variant: str, when: datetime, name: str | None = None
) -> str:
    """Where a capture object for ``when`` goes.

    The path is ``{prefix}/{endpoint}/{variant}/yyyy/mm/dd/hh/{name}`` (UTC hour folders).

    Without ``name`` the file is named as SageMaker names it (:func:`object_name`, random uuid).

    >>> capture_path("s3://b/capture/", "ep", "AllTraffic",
    ...              datetime(2022, 2, 14, 17, 25, 6), name="x.jsonl")
    's3://b/capture/ep/AllTraffic/2022/02/14/17/x.jsonl'
    """
    name = name if name is not None else object_name(when)
    return f"{prefix.rstrip('/')}/{endpoint}/{variant}/{_hour_dir(when)}/{name}"


def label_path(prefix: str, when: datetime, name: str | None = None) -> str:
    """Where a ground-truth object for hour ``when`` goes: ``{prefix}/yyyy/mm/dd/hh/{name}``.

    >>> label_path("labels", datetime(2022, 2, 14, 19), name="l.jsonl")
    'labels/2022/02/14/19/l.jsonl'
    """
    name = name if name is not None else object_name(when)
    return f"{prefix.rstrip('/')}/{_hour_dir(when)}/{name}"


def _csv_field(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        if any(c in value for c in ',"\n\r'):
            return '"' + value.replace('"', '""') + '"'
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, numbers.Integral):  # int and numpy integers
        return str(int(value))
    if isinstance(value, numbers.Real):  # float and numpy floats (whose repr is not a number)
        return repr(float(value))
    return _csv_field(str(value))


def csv_line(values: Sequence[Any]) -> str:
    """Format one CSV row (no newline): floats by ``repr`` so they read back exactly.

    Ints stay ints, ``None`` is an empty field, strings are quoted only when they must be.

    >>> csv_line([69, 0, 153.7, 194.0, None, 0.1 + 0.2, "a,b"])
    '69,0,153.7,194.0,,0.30000000000000004,"a,b"'
    """
    return ",".join(_csv_field(v) for v in values)
