"""Build small capture and ground-truth trees for tests, with captureq's own writer.

Records are made by :mod:`captureq.records` (the same code ``captureq generate`` uses), so a
test tree has exactly the bytes SageMaker writes. Raw ``str``/``bytes`` lines can be mixed in
to plant junk.

>>> import tempfile
>>> root = tempfile.mkdtemp()
>>> path = write_captures(root, [capture("1,2.5\\n", "0.25")])
>>> path.read_text().count("\\n")
1
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from captureq.records import (
    capture_path,
    capture_record,
    dumps,
    encode_payload,
    ground_truth_record,
    label_path,
)

T0 = datetime(2024, 5, 1, 12, 30, 15, tzinfo=timezone.utc)
ENDPOINT = "ep"
VARIANT = "AllTraffic"

Line = dict | str | bytes


def payload(
    data: str | bytes,
    content_type: str = "text/csv",
    *,  # noqa: A002
    mode: str = "INPUT",
    csv_types: Sequence[str] = ("text/csv",),
    json_types: Sequence[str] = ("application/json", "application/jsonlines"),
) -> dict[str, str]:
    """An ``endpointInput``/``endpointOutput`` object (``encode_payload`` with test defaults)."""
    return encode_payload(data, content_type, csv_types=csv_types, json_types=json_types, mode=mode)


def capture(
    input: str | bytes | dict | None = None,
    output: str | bytes | dict | None = None,
    *,
    input_type: str = "text/csv",
    output_type: str = "text/csv",
    event_id: str = "event-1",
    inference_id: str | None = None,
    when: datetime = T0,
    base64: bool = False,
) -> dict[str, Any]:
    """One capture record. ``input``/``output`` are payload text/bytes (or a ready payload dict);
    ``base64=True`` stores text payloads base64-encoded, as for unlisted content types."""

    def side(data, ctype, mode):
        if data is None or isinstance(data, dict):
            return data
        if base64:
            return payload(data, ctype, mode=mode, csv_types=(), json_types=())
        return payload(data, ctype, mode=mode)

    return capture_record(
        input=side(input, input_type, "INPUT"),
        output=side(output, output_type, "OUTPUT"),
        event_id=event_id,
        inference_id=inference_id,
        inference_time=when,
    )


def label(event_id: str, data: str, encoding: str = "CSV") -> dict[str, Any]:
    """One ground-truth record."""
    return ground_truth_record(event_id=event_id, data=data, encoding=encoding)


def _bytes(lines: Iterable[Line], newline: bytes = b"\n") -> bytes:
    out = []
    for line in lines:
        if isinstance(line, dict):
            out.append(dumps(line).encode("utf-8"))
        elif isinstance(line, str):
            out.append(line.encode("utf-8"))
        else:
            out.append(bytes(line))
    return b"".join(x + newline for x in out)


def _write(path: str, data: bytes, compress: bool) -> Path:
    p = Path(path + (".gz" if compress else ""))
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(gzip.compress(data) if compress else data)
    return p


def write_captures(
    root: str | Path,
    lines: Iterable[Line] = (),
    *,
    endpoint: str = ENDPOINT,
    variant: str = VARIANT,
    when: datetime = T0,
    name: str | None = None,
    raw: bytes | None = None,
    compress: bool = False,
) -> Path:
    """Write one capture file under ``root`` (``{endpoint}/{variant}/yyyy/mm/dd/hh/{name}``).

    ``lines`` are records (dicts) or raw lines; ``raw`` writes exact bytes instead.
    ``compress=True`` writes ``{name}.gz``. Returns the file's path.
    """
    data = raw if raw is not None else _bytes(lines)
    return _write(capture_path(str(root), endpoint, variant, when, name), data, compress)


def write_labels(
    root: str | Path,
    lines: Iterable[Line] = (),
    *,
    when: datetime = T0,
    name: str | None = None,
    raw: bytes | None = None,
) -> Path:
    """Write one ground-truth file under ``root`` (``yyyy/mm/dd/hh/{name}``)."""
    data = raw if raw is not None else _bytes(lines)
    return _write(label_path(str(root), when, name), data, False)


def write_tree(
    root: str | Path, files: dict[tuple[str, str, datetime, str], Sequence[Line]]
) -> list[Path]:
    """Write several capture files: ``{(endpoint, variant, hour, name): lines}``."""
    return [
        write_captures(root, lines, endpoint=e, variant=v, when=w, name=n)
        for (e, v, w, n), lines in files.items()
    ]
