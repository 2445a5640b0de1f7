"""How to read payloads whose shape captureq cannot guess: :class:`DecodeOptions`.

Its own module, free of numpy and pyarrow, because a plan holds one from the moment a tree is
opened, long before a payload is decoded (:mod:`captureq.decode` re-exports it).

>>> from captureq.options import DecodeOptions
>>> DecodeOptions(input_names=["age", "income"]).get("names", "input", "churn")
['age', 'income']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class DecodeOptions:
    """How to read payloads whose shape captureq cannot guess.

    ``input_names`` / ``output_names``: feature/prediction names for CSV columns (and JSON
    vectors) instead of ``_c0``, ``_c1``, …; ``input_path`` / ``output_path``: dotted path to the
    records inside a JSON document (e.g. ``"payload.rows"``). Each may also be a mapping from
    endpoint name to the value for that endpoint.

    ``max_columns``: a record with more columns than this is refused (one quarantine row, the
    capture is kept) before anything wide is built; default ``CAPTUREQ_MAX_COLUMNS`` or 10,000.

    >>> DecodeOptions(max_columns=500).column_limit()
    500
    """

    input_names: Sequence[str] | Mapping[str, Sequence[str]] | None = None
    output_names: Sequence[str] | Mapping[str, Sequence[str]] | None = None
    input_path: str | Mapping[str, str] | None = None
    output_path: str | Mapping[str, str] | None = None
    max_columns: int | None = None

    def column_limit(self) -> int:
        """Columns allowed per record: ``max_columns``, else ``CAPTUREQ_MAX_COLUMNS``, else 10,000."""
        if self.max_columns is not None:
            return int(self.max_columns)
        from .decode.common import max_columns_from_env

        return max_columns_from_env()

    def get(self, what: str, side: str, endpoint: str | None):
        value = getattr(self, f"{side}_{what}")
        if isinstance(value, Mapping):
            return value.get(endpoint)
        return value
