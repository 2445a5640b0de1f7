"""Find capture (or ground-truth) objects in a tree, listing only the hours a query asks for.

A capture tree is laid out ``{prefix}/{endpoint}/{variant}/yyyy/mm/dd/hh/{file}.jsonl``;
a ground-truth tree ``{prefix}/yyyy/mm/dd/hh/{file}.jsonl``. The URI may point at the prefix,
an endpoint or variant folder, an hour folder or a single file. Paths are literal (``pre[1]``,
``br[a]ck``); a URI holding ``*``, ``?`` or ``[`` is a glob only when no such path exists.
Endpoint/variant filters take names or shell-style patterns; one that matches nothing is a
:class:`~captureq.errors.FilterWarning` (and ``ScanResult.warnings``) listing what exists.

With a time range, the scanner never walks the whole tree: it lists whole days (months, years)
that lie inside the range with one recursive listing each, and the single hours at the range's
ragged ends one by one, so the number of LIST calls grows with the hours asked for, not with the
tree. On an object store those listings (and the endpoints' folders) are requested at once, so
the listing takes a few round trips however many hours it spans, and the root is looked at with
one LIST (whose entries carry sizes and ETags), never a HEAD.

>>> import captureq.scan as s
>>> result = s.scan("../shared/corpus/seed-churn")           # doctest: +SKIP
>>> [(f.endpoint, f.variant, f.hour.hour) for f in result.files]  # doctest: +SKIP
[('xgb-churn-prediction-model', 'AllTraffic', 17)]
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .errors import FilterWarning, ScanError
from .timeutil import HOUR, UTC, floor_hour, listing_bounds, to_utc

CAPTURE = "capture"
LABELS = "labels"

DATA_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")  # any case: .JSONL is read too

# Why a listed object is not read; ``captureq scan`` counts skips by these words (before ":").
NOT_CAPTURE_FILE = "not a capture file"
NOT_AN_HOUR = "folder not an hour"
TOO_DEEP = "too deep"
BROKEN_LINK = "broken link"
NOT_IN_PARTITION = "not in a partition"
_LOOSE_HOUR = re.compile(r"(?:^|/)(\d{4})/(\d{1,2})/(\d{1,2})/(\d{1,2})/(.+)$")
_HOUR_TAIL = re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})/(\d{2})/([^/]+)$")
_GLOB_CHARS = set("*?[")
LIST_THREADS = 16  # listings of an object store made at once (hour folders, endpoints)

if TYPE_CHECKING:  # pragma: no cover
    import fsspec


@dataclass(frozen=True)
class CaptureFile:
    """One object to read: where it is and which partition it belongs to."""

    path: str  # path as the filesystem sees it (no protocol)
    url: str  # full URL, used as ``source_file``
    rel: str  # path relative to the tree root; stable across storage (local vs S3)
    endpoint: str | None
    variant: str | None
    hour: datetime | None
    size: int | None = None
    mtime: float | None = None  # when the object was written (POSIX seconds), if listed
    # what the storage says about this version of the object: "etag:…" (object stores) or
    # "mtime:…" (local files); the export compares it to find files changed since exported
    version: str | None = None

    @property
    def compressed(self) -> bool:
        return self.path.lower().endswith(".gz")


@dataclass
class ScanResult:
    """What a scan found: files to read, and files it skipped with the reason."""

    files: list[CaptureFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    list_calls: int = 0
    #: e.g. "no endpoint matches 'churn-*x'; the tree has: churn, fraud" (also a FilterWarning)
    warnings: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)


def _as_list(value: str | Iterable[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return list(value)


def _matches(name: str | None, patterns: list[str] | None) -> bool:
    """``name`` equals one of ``patterns``, or matches it as a shell-style pattern."""
    if patterns is None:
        return True
    return name is not None and any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


def _unmatched(kind: str, patterns: list[str] | None, seen: set[str]) -> list[str]:
    """A warning per pattern that matches none of the names ``seen``, listing them."""
    if patterns is None:
        return []
    have = ", ".join(sorted(seen)) or "none"
    return [
        f"no {kind} matches {p!r}; the tree has: {have}"
        for p in patterns
        if not any(_matches(name, [p]) for name in seen)
    ]


class Scanner:
    """Lists one tree through fsspec. Counts its listing calls in ``list_calls``."""

    def __init__(
        self,
        uri: str,
        *,
        layout: str = CAPTURE,
        storage_options: dict | None = None,
        fs: fsspec.AbstractFileSystem | None = None,
    ):
        if layout not in (CAPTURE, LABELS):
            raise ValueError(f"layout must be {CAPTURE!r} or {LABELS!r}")
        self.uri = uri
        self.layout = layout
        path = _local_path(uri, storage_options) if fs is None else None
        if path is not None:  # fsspec's local filesystem, imported when first asked for (fs)
            self._fs = None
            self._local = True
        else:
            if fs is None:
                from .storage import filesystem

                try:
                    fs, path = filesystem(uri, storage_options)
                except (ImportError, ValueError) as exc:
                    raise ScanError(f"cannot open {uri!r}: {exc}") from exc
            else:
                path = fs._strip_protocol(uri)
            from fsspec.implementations.local import LocalFileSystem

            self._fs = fs
            self._local = type(fs) is LocalFileSystem and os.sep == "/"
        # local disks: list with os calls directly (fsspec's per-entry path normalising costs
        # more than the stat calls); same entries, same fields as LocalFileSystem.info
        self.root = path.rstrip("/") or "/"
        self.list_calls = 0
        self._count = threading.Lock()  # listings may run on threads (:meth:`_each`)
        self._seen: dict[str, set[str]] = {"endpoint": set(), "variant": set()}

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The tree's fsspec filesystem (for a local path: ``fsspec.filesystem("file")``, the
        one ``url_to_fs`` gives, imported on first use)."""
        if self._fs is None:
            import fsspec

            self._fs = fsspec.filesystem("file")
        return self._fs

    @property
    def local(self) -> bool:
        """Whether the tree is on this machine's disk, listed and read with plain os calls."""
        return self._local

    def _exists(self, path: str) -> bool:
        return os.path.exists(path) if self._local else self._call("HEAD", path, self.fs.exists, path)

    def _call(self, op: str, path: str, fn, *args, **kwargs):
        """A storage request under the filesystem's retry policy (:mod:`captureq.storage`); a
        failure that outlives it is a StorageError naming ``op`` and the prefix."""
        from .storage import policy_of

        return policy_of(self.fs).call(op, self._url(path), fn, *args, **kwargs)

    # -- listing primitives (each is one LIST call on object stores) ------------------------
    def _ls(self, path: str) -> list[dict[str, Any]]:
        with self._count:
            self.list_calls += 1
        if self._local and os.path.isdir(path):
            return _scandir(path)
        try:
            return self._call("LIST", path, self.fs.ls, path, detail=True)
        except FileNotFoundError:
            return []

    def _find(self, path: str) -> dict[str, dict[str, Any]]:
        with self._count:
            self.list_calls += 1
        if self._local and os.path.isdir(path) and not os.path.islink(path):
            out: dict[str, dict[str, Any]] = {}
            todo = [path]
            while todo:
                for info in _scandir(todo.pop()):
                    if info["type"] == "directory":
                        todo.append(info["name"])
                    else:
                        out[info["name"]] = info
            return {name: out[name] for name in sorted(out)}
        try:
            return self._call("LIST", path, self.fs.find, path, detail=True)
        except FileNotFoundError:
            return {}

    def _missing(self, root: str) -> str:
        """Why ``root`` is no tree, and what to do, for its kind of storage: a local path that
        does not exist (or sits below a folder that cannot be entered) is said as such; a
        remote prefix may be missing or hidden by credentials."""
        if not self._local:
            return (f"{self._url(root)} does not exist or is not readable; check the URI "
                    "(and storage_options, e.g. {'anon': True} for public buckets)")
        if os.path.lexists(root):
            return f"{root} is a broken link or cannot be read; check the path"
        parent = os.path.dirname(root.rstrip("/"))
        while parent and not os.path.exists(parent) and parent != os.path.dirname(parent):
            parent = os.path.dirname(parent)
        if parent and os.path.isdir(parent) and not os.access(parent, os.R_OK | os.X_OK):
            return f"{root} cannot be reached: permission denied on {parent}; choose a path you may read"
        return f"{root} does not exist; check the path"

    def _url(self, path: str) -> str:
        if self._local:
            return "file://" + path
        return self.fs.unstrip_protocol(path)

    # -- public ------------------------------------------------------------------------------
    def scan(
        self,
        *,
        start: Any = None,
        end: Any = None,
        endpoint: str | Iterable[str] | None = None,
        variant: str | Iterable[str] | None = None,
        lateness: timedelta | None = None,
    ) -> ScanResult:
        """List the data files of the hours overlapping ``[start, end)`` for the endpoints/variants
        asked for. ``lateness`` widens the listing to the folders ``[start - lateness, end +
        lateness)``, which can hold records of the window when objects lie up to ``lateness``
        from their records' hours either way (what a reader that keeps exact times needs, see
        :mod:`captureq.window`)."""
        start_dt, end_dt = to_utc(start), to_utc(end)
        if start_dt and end_dt and end_dt <= start_dt:
            raise ScanError(
                f"end ({end_dt.isoformat()}) must be after start ({start_dt.isoformat()})"
            )
        if lateness and self.layout == CAPTURE:
            start_dt, end_dt = listing_bounds(start_dt, end_dt, lateness)
        endpoints, variants = _as_list(endpoint), _as_list(variant)
        result = ScanResult()
        self._seen = {"endpoint": set(), "variant": set()}
        self._folders: dict[str, tuple] = {}
        candidates = self._candidates(start_dt, end_dt, endpoints, variants)
        first_hour = floor_hour(start_dt) if start_dt else None
        seen = set()
        for info in candidates:
            path = info["name"]
            if path in seen:
                continue
            seen.add(path)
            f = self._classify(info, result)
            if f is None:
                continue
            self._seen["endpoint"].add(f.endpoint)
            if _matches(f.endpoint, endpoints):
                self._seen["variant"].add(f.variant)
            if not (_matches(f.endpoint, endpoints) and _matches(f.variant, variants)):
                continue
            if f.hour is not None:
                if first_hour and f.hour < first_hour:
                    continue
                if end_dt and f.hour >= end_dt:
                    continue
            result.files.append(f)
        result.files.sort(
            key=lambda f: (
                f.endpoint or "",
                f.variant or "",
                f.hour or datetime.min.replace(tzinfo=UTC),
                f.rel,
            )
        )
        result.list_calls = self.list_calls
        if self.layout == CAPTURE:
            result.warnings = _unmatched("endpoint", endpoints, self._seen["endpoint"] - {None})
            if not result.warnings:
                result.warnings = _unmatched("variant", variants, self._seen["variant"] - {None})
        for message in result.warnings:
            warnings.warn(message, FilterWarning, stacklevel=3)
        return result

    # -- internals ----------------------------------------------------------------------------
    def _classify(self, info: dict[str, Any], result: ScanResult) -> CaptureFile | None:
        """Turn a listing entry into a CaptureFile, or record why it is skipped."""
        if info.get("type") == "directory":
            return None
        path = info["name"]
        folder, _, base = path.rpartition("/")
        known = self._folders.get(folder)  # a folder whose files were classified before
        if known is not None and not info.get("islink") and base.lower().endswith(DATA_SUFFIXES):
            endpoint, variant, hour, prefix = known
            mtime = _mtime(info)
            return CaptureFile(path=path, url=self._url(path), rel=prefix + base, endpoint=endpoint,
                               variant=variant, hour=hour, size=info.get("size"),
                               mtime=mtime, version=_version(info, mtime))
        reason = skip_reason(path, info)
        if reason is not None:
            result.skipped.append((self._url(path), reason))
            return None
        endpoint = variant = hour = None
        m = _HOUR_TAIL.search(path)
        if m:
            y, mo, d, h = (int(x) for x in m.groups()[:4])
            try:
                hour = datetime(y, mo, d, h, tzinfo=UTC)
            except ValueError:
                hour = None
            if self.layout == CAPTURE:
                parts = (
                    path[: m.start() + (1 if path[m.start()] == "/" else 0)].rstrip("/").split("/")
                )
                if len(parts) >= 2:
                    endpoint, variant = parts[-2], parts[-1]
        if self.layout == CAPTURE and (endpoint is None or hour is None):
            result.skipped.append(
                (
                    self._url(path),
                    f"{NOT_IN_PARTITION}: not under {{endpoint}}/{{variant}}/yyyy/mm/dd/hh/; "
                    "cannot tell its partition",
                )
            )
            return None
        root = self.root if self.root != "/" else ""
        rel = path[len(root) :].lstrip("/") if path.startswith(root + "/") else base
        if self.layout == CAPTURE and endpoint and m:
            # Make `rel` storage-independent: endpoint/variant/yyyy/mm/dd/hh/file.
            rel = "/".join([endpoint, variant, *path[m.start() :].lstrip("/").split("/")])
        if m and hour is not None and rel.endswith("/" + base):
            self._folders[folder] = (endpoint, variant, hour, rel[: len(rel) - len(base)])
        mtime = _mtime(info)
        return CaptureFile(
            path=path,
            url=self._url(path),
            rel=rel,
            endpoint=endpoint,
            variant=variant,
            hour=hour,
            size=info.get("size"),
            mtime=mtime,
            version=_version(info, mtime),
        )

    def _candidates(self, start: datetime | None, end: datetime | None, endpoints, variants):
        root = self.root
        # A path that exists is read literally (``pre[1]``, ``br[a]ck``); only a path that does
        # not exist and holds glob characters is a pattern (``tree/*/Canary``).
        if _GLOB_CHARS & set(root) and not self._exists(root):
            self.list_calls += 1
            matches = list(self.fs.glob(root, detail=True).values())
            files = [m for m in matches if m.get("type") != "directory"]
            for d in matches:  # a pattern naming folders (``tree/*/Canary``) means what is in them
                if d.get("type") == "directory":
                    files += self._find(d["name"]).values()
            return files
        if self._local:
            if os.path.isfile(root):
                return [self.fs.info(root)]
            if not os.path.isdir(root):
                raise ScanError(self._missing(root))
            children = None
        else:
            # one LIST says what root is, with sizes and ETags: a folder (what is in it), an
            # object (itself), or nothing; no HEAD request
            children = self._ls(root)
            if not children:
                if "/" not in root and self._exists(root):
                    return []  # an empty bucket
                raise ScanError(self._missing(root))
            if len(children) == 1 and children[0].get("type") != "directory" \
                    and children[0]["name"].rstrip("/") == root:
                return children
        tail = root.split("/")
        # Already inside the time folders (yyyy[/mm[/dd[/hh]]]): walk what is there.
        if _is_time_tail(tail):
            return list(self._find(root).values())
        if children is None:
            children = self._ls(root)
        child_dirs = [c for c in children if c.get("type") == "directory"]
        if self.layout == LABELS or _all_years(child_dirs):
            # root is a variant folder (capture) or the labels prefix: yyyy/ below.
            return self._listed(self._hour_listings(root, start, end)) + [
                c for c in children if c.get("type") != "directory"
            ]
        # root holds endpoints, or is an endpoint holding variants: look one level down.
        files = [c for c in children if c.get("type") != "directory"]
        if not child_dirs:
            return files
        # the first child says whether root is an endpoint (its children hold years); it is
        # listed together with the endpoints the filter keeps, in case root holds endpoints
        ahead = [child_dirs[0]] + [e for e in child_dirs[1:] if _matches(_base(e["name"]), endpoints)]
        listed = dict(zip((e["name"] for e in ahead), self._each(self._ls, [e["name"] for e in ahead])))
        first = listed[child_dirs[0]["name"]]
        if _all_years([c for c in first if c.get("type") == "directory"]):
            # root is an endpoint folder
            self._seen["endpoint"].add(_base(root))
            if not _matches(_base(root), endpoints):
                return files
            variant_dirs = [c["name"] for c in child_dirs]
        else:
            variant_dirs = []
            wanted = []
            for e in child_dirs:
                self._seen["endpoint"].add(_base(e["name"]))
                if _matches(_base(e["name"]), endpoints):
                    wanted.append(e)
            for e in wanted:
                listing = listed[e["name"]]
                files += [c for c in listing if c.get("type") != "directory"]
                variant_dirs += [c["name"] for c in listing if c.get("type") == "directory"]
        listings = []
        for v in variant_dirs:
            self._seen["variant"].add(_base(v))
            if _matches(_base(v), variants):
                listings += self._hour_listings(v, start, end)
        return list(files) + self._listed(listings)

    def _each(self, fn, items: list) -> list:
        """``[fn(item) for item in items]``; on an object store the calls are made at once (each
        a LIST, under the retry policy), up to the ``concurrency`` storage option."""
        if self._local or len(items) < 2:
            return [fn(item) for item in items]
        from concurrent.futures import ThreadPoolExecutor

        from .storage import policy_of

        width = min(len(items), LIST_THREADS, policy_of(self.fs).concurrency)
        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="captureq-list") as pool:
            return list(pool.map(fn, items))

    def _listed(self, listings: list[tuple[str, str]]) -> list[dict]:
        """The files of ``listings`` (``("find", folder)``: every file below it; ``("ls",
        hour folder)``: the files in it), listed at once on an object store."""

        def one(job: tuple[str, str]) -> list[dict]:
            kind, path = job
            if kind == "find":
                return list(self._find(path).values())
            return [c for c in self._ls(path) if c.get("type") != "directory"]

        return [info for files in self._each(one, listings) for info in files]

    def _hour_listings(self, vdir: str, start: datetime | None,
                       end: datetime | None) -> list[tuple[str, str]]:
        """The listings that find the files in the hour folders of ``vdir`` within [start, end),
        for :meth:`_listed`.

        Whole years, months and days inside the range are listed with one recursive listing
        each (``find``), the hours at its ragged ends one by one (``ls``); so an open-ended
        range (``end`` is now) costs a few dozen LIST calls, not one per day since ``start``.
        """
        if start is None:
            return [("find", vdir)]  # no lower bound: walk it all
        if end is None:  # up to now, rounded up to a month so that it is one listing
            end = _next_month(floor_hour(datetime.now(UTC)) + timedelta(days=1))
            years = [int(_base(d["name"])) for d in self._ls(vdir) if d.get("type") == "directory"
                     and re.fullmatch(r"\d{4}", _base(d["name"]))]
            if years and max(years) >= end.year:  # folders dated after now (clock skew, tests)
                end = datetime(max(years) + 1, 1, 1, tzinfo=UTC)
        out: list[tuple[str, str]] = []
        t = floor_hour(start)
        while t < end:
            day = t.replace(hour=0)
            next_day = day + timedelta(days=1)
            if t == day and t.day == 1:
                next_year = t.replace(year=t.year + 1)
                if t.month == 1 and next_year <= end:
                    out.append(("find", f"{vdir}/{t:%Y}"))
                    t = next_year
                    continue
                if _next_month(t) <= end:
                    out.append(("find", f"{vdir}/{t:%Y/%m}"))
                    t = _next_month(t)
                    continue
            hours = []
            h = t
            while h < min(next_day, end):
                hours.append(h)
                h += HOUR
            if len(hours) > 6:  # cheaper to list the day once and filter
                out.append(("find", f"{vdir}/{day:%Y/%m/%d}"))
            else:
                out += [("ls", f"{vdir}/{h:%Y/%m/%d/%H}") for h in hours]
            t = next_day
        return out


def _local_path(uri: str, storage_options: dict | None) -> str | None:
    """The path fsspec's local filesystem gives for ``uri`` (``url_to_fs(uri)[1]``) when ``uri``
    is a plain POSIX path or a ``file://`` URL and no storage options are given; else None
    (fsspec decides). Computed without importing fsspec (~0.07 s): listing a local tree
    needs only os calls.

    >>> _local_path("/data/capture/", None), _local_path("s3://bucket/capture", None)
    ('/data/capture', None)
    """
    if storage_options or not isinstance(uri, str) or os.sep != "/":
        return None
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    if ":" in path:  # another protocol, a chained URL, file:relative: as fsspec says
        return None
    if path.startswith("~"):
        path = os.path.expanduser(path)
    elif not path.startswith("/"):
        path = path[2:] if path.startswith("./") else "" if path == "." else path
        path = f"{os.getcwd()}/{path}"
    return path.rstrip("/") if len(path) > 1 else path


def _scandir(path: str) -> list[dict[str, Any]]:
    """``LocalFileSystem.ls(path, detail=True)`` for a folder, with the same fields per entry
    (a symbolic link: ``islink``, its target's size, its own type and times, ``destination``)."""
    out = []
    try:
        it = os.scandir(path)
    except (FileNotFoundError, NotADirectoryError):
        return out
    with it:
        for entry in it:
            try:
                st = entry.stat(follow_symlinks=False)
                link = stat.S_ISLNK(st.st_mode)
                kind = ("directory" if stat.S_ISDIR(st.st_mode) else
                        "file" if stat.S_ISREG(st.st_mode) else "other")
                size = st.st_size
                info = {"name": entry.path, "size": size, "type": kind,
                        "created": getattr(st, "st_birthtime", st.st_ctime), "islink": link,
                        "mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid,
                        "mtime": st.st_mtime, "ino": st.st_ino, "nlink": st.st_nlink}
                if link:
                    try:
                        info["size"] = entry.stat(follow_symlinks=True).st_size
                    except OSError:
                        info["size"] = 0
                    info["destination"] = os.readlink(entry.path)
            except FileNotFoundError:
                continue
            out.append(info)
    return out


def skip_reason(path: str, info: dict[str, Any]) -> str | None:
    """Why the object at ``path`` is not a capture (or label) file to read, or None.

    >>> skip_reason("t/e/v/2026/01/01/24/a.jsonl", {})
    'folder not an hour: 2026/01/01/24 is not a UTC hour (yyyy/mm/dd/hh, zero-padded)'
    >>> skip_reason("t/e/v/2026/01/01/06/old/a.jsonl", {})
    'too deep: below the hour folder 2026/01/01/06'
    >>> skip_reason("t/e/v/2026/01/01/06/notes.txt", {}).split(":")[0]
    'not a capture file'
    """
    base = path.rsplit("/", 1)[-1]
    if info.get("islink") and info.get("type") not in ("file", "directory"):
        target = info.get("destination")
        return f"{BROKEN_LINK}: points to {target or 'nothing'}, which does not exist"
    if not base.lower().endswith(DATA_SUFFIXES):
        return f"{NOT_CAPTURE_FILE}: not .jsonl, .json or .jsonl.gz"
    tail = _HOUR_TAIL.search(path)
    if tail and _valid_hour(*tail.groups()[:4]):
        return None
    loose = _LOOSE_HOUR.search(path)
    if loose:
        y, mo, d, h, rest = loose.groups()
        folder = f"{y}/{mo}/{d}/{h}"
        if _valid_hour(y, mo, d, h) and all(len(p) == 2 for p in (mo, d, h)):
            if "/" in rest:
                return f"{TOO_DEEP}: below the hour folder {folder}"
        else:
            return f"{NOT_AN_HOUR}: {folder} is not a UTC hour (yyyy/mm/dd/hh, zero-padded)"
    return None


def _valid_hour(y: str, mo: str, d: str, h: str) -> bool:
    try:
        datetime(int(y), int(mo), int(d), int(h), tzinfo=UTC)
    except ValueError:
        return False
    return True


def _version(info: dict[str, Any], mtime: float | None = None) -> str | None:
    """``etag:…`` when the storage gives an ETag, else ``mtime:…``, else None (``mtime``:
    :func:`_mtime` of ``info``, when the caller has it)."""
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return f"etag:{str(etag).strip(chr(34))}"
    if mtime is None:
        mtime = _mtime(info)
    return None if mtime is None else f"mtime:{mtime!r}"


def _mtime(info: dict[str, Any]) -> float | None:
    """The write time a listing entry carries: ``mtime`` (local files, POSIX seconds) or
    ``LastModified`` (s3fs, a datetime); None when the filesystem gives neither."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, datetime):
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return to_utc(value).timestamp()
        except (TypeError, ValueError):
            continue
    return None


def _next_month(t: datetime) -> datetime:
    """Midnight of the first day of the month after ``t``'s."""
    return (t.replace(day=1, hour=0) + timedelta(days=32)).replace(day=1)


def _base(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _all_years(dirs: list[dict]) -> bool:
    return bool(dirs) and all(re.fullmatch(r"\d{4}", _base(d["name"])) for d in dirs)


def _is_time_tail(parts: list[str]) -> bool:
    """True when the path ends in yyyy, yyyy/mm, yyyy/mm/dd or yyyy/mm/dd/hh."""
    widths = [4, 2, 2, 2]
    for n in range(4, 0, -1):
        if len(parts) >= n and all(
            re.fullmatch(rf"\d{{{w}}}", p) for p, w in zip(parts[-n:], widths[:n])
        ):
            # for n == 1 the year must not be an endpoint named like a year: require a parent
            return n > 1 or len(parts) > 3
    return False


def scan(
    uri: str,
    *,
    layout: str = CAPTURE,
    storage_options: dict | None = None,
    start: Any = None,
    end: Any = None,
    endpoint: str | Iterable[str] | None = None,
    variant: str | Iterable[str] | None = None,
    lateness: timedelta | None = None,
) -> ScanResult:
    """List the files of a capture tree (or a ground-truth tree with ``layout="labels"``).

    Lists the hour folders overlapping ``[start, end)`` (UTC; with ``lateness``, the folders
    ``[start - lateness, end + lateness)``); readers keep exact times (:mod:`captureq.window`).
    ``endpoint``/``variant`` take names or shell-style patterns.
    """
    return Scanner(uri, layout=layout, storage_options=storage_options).scan(
        start=start, end=end, endpoint=endpoint, variant=variant, lateness=lateness
    )
