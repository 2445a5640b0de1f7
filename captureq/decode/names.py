r"""Column names of JSON key paths: one name per path, the same in every batch, window and engine.

A record that is a JSON object becomes one column per leaf value, named from the keys on the way
to it — and from nothing else, so which other keys a batch holds can never move a value to
another column:

- keys are joined with ``.``: ``{"user": {"age": 20}}`` → ``user.age``;
- inside a key, ``\`` is written ``\\`` and ``.`` is written ``\.``: the literal key
  ``"user.age"`` → ``user\.age``, never the nested ``user.age``;
- an upper-case letter gets a ``\`` in front, a run of them is wrapped in ``\{…}``
  (``predictedLabel`` → ``predicted\Label``, ``userID`` → ``user\{ID}``): DuckDB and Spark
  compare names case-insensitively, and this keeps ``upper``, ``Upper`` and ``UPPER`` three
  columns in every engine;
- an empty key is ``\_``, and a top-level key that is a name captureq gives columns itself
  (``capture_id``, ``record_index``, ``event_id``, … ``_row``, ``_c0``, ``_c1``, …, and the
  export's folder keys ``date`` and ``hour``) gets ``\_`` in front: ``event_id`` →
  ``\_event_id``, ``_c0`` → ``\__c0``, ``date`` → ``\_date``;
- NUL, and the rare cased characters whose lower case does not map back to them (``K``, ``ǅ``),
  are written ``\#<hex code point>;``.

Two different key paths never get names that are equal ignoring case, and :func:`key_path`
turns a name back into its path.

>>> column_name(("user", "age")), column_name(("user.age",)), column_name(("Age",))
('user.age', 'user\\.age', '\\Age')
>>> key_path("user\\.age")
('user.age',)
"""

from __future__ import annotations

import re
from functools import lru_cache

from .. import schema

#: Names of columns captureq makes itself: a top-level key never takes one of them.
GENERATED = frozenset({"_row", *schema.RECORD_KEY_NAMES, *schema.FOLDER_KEYS})
_VECTOR = re.compile(r"_c[0-9]+")
_PLAIN = re.compile(r"[^\\.\x00A-Z\u0080-\U0010ffff]*")


def _generated(key: str) -> bool:
    return key in GENERATED or _VECTOR.fullmatch(key) is not None


def _upper(c: str) -> bool:
    """An upper-case character that its lower case maps back to (``A``, ``Ä``; not the Kelvin sign)."""
    low = c.lower()
    return low != c and len(low) == 1 and low.upper() == c


def _char(c: str) -> str:
    if c in "\\.":
        return "\\" + c
    if c != "\x00" and c.lower() == c:
        return c
    if _upper(c):
        return "\\" + c
    return f"\\#{ord(c):x};"


def _escaped(key: str) -> str:
    out, run = [], []
    for c in (*key, ""):
        if c and _upper(c):
            run.append(c)
            continue
        if len(run) > 1:
            out.append("\\{" + "".join(run) + "}")
        elif run:
            out.append("\\" + run[0])
        run = []
        if c:
            out.append(_char(c))
    return "".join(out)


def _segment(key: str, top: bool) -> str:
    text = key if _PLAIN.fullmatch(key) is not None else _escaped(key)
    if not key or (top and _generated(key)):
        return "\\_" + text
    return text


@lru_cache(maxsize=65536)
def column_name(path: tuple[str, ...]) -> str:
    r"""The column name of the JSON key path ``path`` (keys from the record down to the value).

    >>> column_name(("inputs", "")), column_name(("event_id",))
    ('inputs.\\_', '\\_event_id')
    """
    if not path:
        raise ValueError("a key path has at least one key")
    only = len(path) == 1
    return ".".join(_segment(k, only) for k in path)


_TOKEN = re.compile(r"\\#([0-9a-f]+);|\\\{([^}]*)\}|\\(.)|([^\\])", re.S)


@lru_cache(maxsize=65536)
def key_path(name: str) -> tuple[str, ...] | None:
    r"""The JSON key path whose column is ``name``, or None when no key path is named so (a CSV
    or vector column such as ``_c0``, a key column, a name from ``DecodeOptions(names=…)``).

    >>> key_path("user.age"), key_path("\\_"), key_path("_c0")
    (('user', 'age'), ('',), None)
    """
    keys, key, pos = [], [], 0
    for m in _TOKEN.finditer(name):
        if m.start() != pos:
            return None
        pos = m.end()
        code, run, escaped, plain = m.groups()
        if plain == ".":
            keys.append("".join(key))
            key = []
        elif plain is not None:
            key.append(plain)
        elif code is not None:
            if int(code, 16) > 0x10FFFF:
                return None
            key.append(chr(int(code, 16)))
        elif run is not None:
            key.append(run)
        elif escaped == "_":
            if key:
                return None
        else:
            key.append(escaped)
    if pos != len(name):
        return None
    keys.append("".join(key))
    path = tuple(keys)
    # only the one spelling column_name writes names a path
    return path if column_name(path) == name else None
