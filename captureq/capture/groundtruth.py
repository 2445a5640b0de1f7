"""Write ground-truth (label) records for captured inferences, in SageMaker's layout.

Labels go to ``{destination}/yyyy/mm/dd/hh/{mm}-{ss}-{mmm}-{uuid}.jsonl`` (the hour they are
uploaded for), one ``groundTruthData`` record per line, keyed by the capture's ``inferenceId``:

>>> import tempfile, json, fsspec
>>> out = tempfile.mkdtemp()
>>> [path] = write_ground_truth(out, {"req-1": 1, "req-2": 0}, when=0)
>>> path.endswith(".jsonl") and "/1970/01/01/00/" in path
True
>>> fsspec.open(path).open().read().decode().splitlines()[0]
'{"groundTruthData":{"data":"1","encoding":"CSV"},"eventMetadata":{"eventId":"req-1"},"eventVersion":"0"}'
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from fsspec.core import url_to_fs

from .. import records as rec

__all__ = ["GroundTruthWriter", "write_ground_truth"]


def _label(value: Any, encoding: str | None) -> tuple[str, str]:
    """(data, encoding) for a label: scalars as one CSV field, lists and dicts as JSON."""
    if encoding is None:
        encoding = rec.JSON if isinstance(value, (list, dict)) else rec.CSV
    if encoding == rec.JSON and not isinstance(value, str):
        return json.dumps(value, separators=(",", ":")), encoding
    if isinstance(value, str):
        return value, encoding
    return rec.csv_line([value]), encoding


class GroundTruthWriter:
    """Collect labels with :meth:`add`; :meth:`flush` writes one object per upload hour."""

    def __init__(
        self,
        destination: str,
        *,
        storage_options: dict | None = None,
        clock: Callable[[], float | datetime] = time.time,
    ):
        self.fs, root = url_to_fs(destination, **(storage_options or {}))
        self.root = root.rstrip("/")
        self.clock = clock
        self.paths: list[str] = []
        self._pending: dict[datetime, list[str]] = {}
        self._first: dict[datetime, datetime] = {}

    def __enter__(self) -> GroundTruthWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.flush()

    def add(
        self,
        event_id: str,
        label: Any,
        *,
        encoding: str | None = None,
        when: float | datetime | None = None,
    ) -> None:
        """Queue the label of one captured inference (``event_id``: its inferenceId)."""
        when = self.clock() if when is None else when
        at = (
            when.astimezone(timezone.utc)
            if isinstance(when, datetime)
            else datetime.fromtimestamp(when, timezone.utc)
        )
        data, enc = _label(label, encoding)
        hour = at.replace(minute=0, second=0, microsecond=0)
        self._pending.setdefault(hour, []).append(
            rec.dumps(rec.ground_truth_record(event_id=event_id, data=data, encoding=enc))
        )
        self._first.setdefault(hour, at)

    def flush(self) -> list[str]:
        """Write the queued labels; returns the paths written."""
        written = []
        for hour, lines in sorted(self._pending.items()):
            path = rec.label_path(self.root, self._first[hour], rec.object_name(self._first[hour]))
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            self.fs.pipe_file(path, ("\n".join(lines) + "\n").encode("utf-8"))
            written.append(path)
        self._pending.clear()
        self._first.clear()
        self.paths.extend(written)
        return written


def write_ground_truth(
    destination: str,
    labels: Mapping[str, Any] | Iterable[tuple[str, Any]],
    *,
    when: float | datetime | None = None,
    encoding: str | None = None,
    storage_options: dict | None = None,
) -> list[str]:
    """Write labels ``{inference_id: label}`` (or pairs) for hour ``when`` (default: now)."""
    items = labels.items() if isinstance(labels, Mapping) else labels
    w = GroundTruthWriter(destination, storage_options=storage_options)
    for event_id, label in items:
        w.add(event_id, label, encoding=encoding, when=when)
    return w.flush()
