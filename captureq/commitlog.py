"""The export's commit log, folded: which parts are live and which source files each holds.

An export folder (and the query cache, which is one) records every commit as one JSON object
under ``_captureq/commits/``; :class:`CommitLog` folds them (a ``snapshot`` record holds all
before it) into the live parts and, per source file, the version and windows it was exported
for. Its own module, free of the export's writing code and of pyarrow, so that a warm query can
look the cache up without importing either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote

from . import window

if TYPE_CHECKING:
    from .scan import CaptureFile

#: The ``kind`` of a commit record that holds the whole state (written by compaction).
SNAPSHOT = "snapshot"


def source_changed(old: dict, f: CaptureFile) -> bool:
    """Whether ``f`` differs from the version ``old`` (a commit's source entry) was exported
    from: another size, or another ETag / mtime of the same kind. A copy of the tree on other
    storage (ETag vs mtime) is compared by size alone, so it shares one export."""
    if old.get("size") is not None and f.size is not None and old["size"] != f.size:
        return True
    before, now = old.get("version"), f.version
    if before and now and before.split(":", 1)[0] == now.split(":", 1)[0]:
        return before != now
    return False


class CommitLog:
    """The commit log folded: live parts (with the source files each may hold) and, per
    ``(kind, rel)``, the source entry it was last exported from. Safe to update from threads."""

    def __init__(self, commits: list[dict]):
        import threading

        self.parts: dict[str, dict] = {}
        self.part_sources: dict[str, set[tuple[str, str]]] = {}
        self.sources: dict[tuple[str, str], dict] = {}
        # files whose last read failed: (kind, rel) → the url of their ``file`` quarantine rows
        self.lost: dict[tuple[str, str], str] = {}
        self.lock = threading.Lock()
        for c in commits:
            self.apply(c)

    def apply(self, commit: dict) -> None:
        kind = commit.get("kind", "captures")
        if kind == SNAPSHOT:  # the whole state as of this record: what came before is folded in it
            self.parts = {p["path"]: p for p in commit["parts"]}
            self.part_sources = {p["path"]: {(k, r) for k, r in p["sources"]} for p in commit["parts"]}
            self.sources = {(s["kind"], s["rel"]): {k: v for k, v in s.items() if k != "kind"}
                            for s in commit["sources"]}
            self.lost = {(u["kind"], u["rel"]): u["url"] for u in commit.get("unreadable", [])}
            return
        for path in commit.get("removes", []):
            self.parts.pop(path, None)
            self.part_sources.pop(path, None)
        lost = {(kind, u["rel"]): u["url"] for u in commit.get("unreadable", [])}
        default = {(kind, s["rel"]) for s in commit["sources"]} | set(lost)
        for p in commit["parts"]:
            self.parts[p["path"]] = p
            self.part_sources[p["path"]] = {(kind, r) for r in p["sources"]} if "sources" in p else default
        for s in commit["sources"]:
            self.sources[(kind, s["rel"])] = s
            self.lost.pop((kind, s["rel"]), None)
        self.lost.update(lost)

    def status(self, kind: str, f: CaptureFile, span: tuple = (None, None)) -> str:
        """``new``, ``changed``, ``partial`` or ``done`` for a run over the time window ``span``
        (``(start, end)``; unbounded by default). ``partial``: unchanged, exported for windows
        that do not hold ``span`` — it has rows left to export."""
        old = self.sources.get((kind, f.rel))
        if old is None:
            return "new"
        if source_changed(old, f):
            return "changed"
        windows = self.windows(kind, f)
        if windows is None or window.covers(windows, *span):
            return "done"
        return "partial"

    def windows(self, kind: str, f: CaptureFile) -> tuple | None:
        """The windows the version of ``f`` last exported was exported for; None: whole."""
        old = self.sources.get((kind, f.rel))
        if old is None or old.get("window") is None:
            return None
        return window.union(window.from_json(pair) for pair in old["window"])

    def holding(self, keys: set[tuple[str, str]]) -> list[str]:
        return [p for p, srcs in self.part_sources.items() if srcs & keys]


def endpoint_of(path: str) -> str | None:
    """The endpoint a part's ``endpoint=E`` folder names (None for parts of every endpoint)."""
    for segment in path.split("/"):
        if segment.startswith("endpoint="):
            return unquote(segment[len("endpoint="):])
    return None


def arrow_type(name: str):
    """The Arrow type a part's recorded type name (``str(type)``) stands for."""
    import pyarrow as pa

    from . import schema

    simple = {
        "string": pa.string(), "large_string": pa.string(), "double": pa.float64(), "float": pa.float64(),
        "int64": pa.int64(), "int32": pa.int32(), "bool": pa.bool_(), "binary": pa.binary(), "null": pa.null(),
        "timestamp[us, tz=UTC]": schema.TIMESTAMP, "timestamp[s]": pa.timestamp("s"), "date32[day]": pa.date32(),
    }
    if name in simple:
        return simple[name]
    if name.startswith("list<") and name.endswith(">"):
        inner = name[len("list<"):-1].split(": ", 1)[-1]
        return pa.list_(arrow_type(inner))
    return pa.string()
