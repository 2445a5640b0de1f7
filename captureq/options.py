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

#: Type names a user may declare, and the SQL type each means.
TYPE_NAMES = {"VARCHAR": "VARCHAR", "TEXT": "VARCHAR", "STRING": "VARCHAR", "BIGINT": "BIGINT",
              "INTEGER": "BIGINT", "INT": "BIGINT", "DOUBLE": "DOUBLE", "FLOAT": "DOUBLE",
              "BOOLEAN": "BOOLEAN", "BOOL": "BOOLEAN"}


@dataclass(frozen=True)
class DecodeOptions:
    """How to read payloads whose shape captureq cannot guess.

    ``input_names`` / ``output_names``: feature/prediction names for CSV columns (and JSON
    vectors) instead of ``_c0``, ``_c1``, …; ``input_path`` / ``output_path``: dotted path to the
    records inside a JSON document (e.g. ``"payload.rows"``). Each may also be a mapping from
    endpoint name to the value for that endpoint.

    ``input_types`` / ``output_types``: declared column types that win over inference, as
    ``{"zip": "VARCHAR", "age": "BIGINT"}`` (``VARCHAR``, ``BIGINT``, ``DOUBLE``, ``BOOLEAN``),
    or a mapping from endpoint name to such a mapping. A CSV column declared ``VARCHAR`` keeps its
    text exactly as written (``007`` stays ``007``); a value that does not fit a declared type is
    null there and one ``value`` quarantine row.

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
    input_types: Mapping[str, str] | Mapping[str, Mapping[str, str]] | None = None
    output_types: Mapping[str, str] | Mapping[str, Mapping[str, str]] | None = None

    def __post_init__(self):
        for side in ("input", "output"):
            for scope, types in self._declared_as_given(side).items():
                for column, name in types.items():
                    if str(name).upper() not in TYPE_NAMES:
                        from .errors import ConfigError

                        where = f" of endpoint {scope!r}" if scope else ""
                        raise ConfigError(
                            f"{side} column {column!r}{where}: unknown type {name!r}; use one of "
                            f"{', '.join(sorted(set(TYPE_NAMES.values())))}")

    def _declared_as_given(self, side: str) -> dict:
        value = getattr(self, f"{side}_types")
        if not value:
            return {}
        if all(isinstance(v, Mapping) for v in value.values()):
            return dict(value)
        return {None: value}

    def declared(self, side: str) -> dict:
        """``{endpoint or None (every endpoint): {column: SQL type name}}`` for ``side``."""
        return {e: {c: TYPE_NAMES[str(t).upper()] for c, t in v.items()}
                for e, v in self._declared_as_given(side).items()}

    def text_columns(self, side: str, endpoint: str | None) -> frozenset:
        """The columns of ``endpoint`` declared ``VARCHAR`` (read as text exactly as written)."""
        declared = self.declared(side)
        out = set()
        for scope in (None, endpoint):
            out |= {c for c, t in (declared.get(scope) or {}).items() if t == "VARCHAR"}
        return frozenset(out)

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
