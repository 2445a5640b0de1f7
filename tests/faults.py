"""Fault injection for the reliability tests: hostile bytes and a flaky S3 server.

:func:`mutations` turns one real capture file into many hostile variants (each a name and the
bytes of a whole file). :class:`FaultyS3` wraps the loopback S3 server's WSGI app (the same
server, the same HTTP, see ``s3util.py``) and misbehaves on GETs of chosen keys: 503 SlowDown,
connection resets mid-body, slow answers, a different object than the one listed, any error
status (a permanent 500), a stalled answer (released when the proxy is removed, so a test stays
bounded), and a request that is carried out but whose response is lost (the connection drops).
Rules name a key (``bucket/key``, or a shell pattern such as ``bucket/out/_captureq/lease/*``)
and an HTTP method (GET by default); :meth:`FaultyS3.list_error` breaks the LISTs of a bucket.
Or answers 503 to every request under a prefix (an outage, PUTs included).

>>> faults = FaultyS3(server)                                  # doctest: +SKIP
>>> with faults.installed():                                   # doctest: +SKIP
...     faults.slowdown("bucket/key", times=2)
...     captureq.open("s3://bucket", storage_options=opts).load()
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import gzip
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote

# -- hostile bytes -------------------------------------------------------------------------------


def _records(blob: bytes) -> list[dict]:
    return [json.loads(line) for line in blob.splitlines() if line.strip()]


def _dump(doc) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _lines(blob: bytes) -> list[bytes]:
    return [line for line in blob.split(b"\n") if line.strip()]


def _set(doc: dict, path: str, value) -> dict:
    doc = json.loads(json.dumps(doc))
    *head, last = path.split(".")
    node = doc
    for key in head:
        node = node[key]
    if value is _DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return doc


_DELETE = object()
HUGE = 11 * 1024 * 1024  # bytes of payload in the "huge line" cases (> 10 MB)


def mutations(blob: bytes) -> Iterator[tuple[str, bytes]]:
    """Hostile variants of one capture file (``blob`` holds valid JSON Lines records).

    Every variant is a whole file; most keep the good lines around the bad one, so a test can
    check that the good lines survive. Huge variants are left out (see :func:`huge_mutations`).
    """
    lines = _lines(blob)
    docs = _records(blob)
    first, doc = lines[0], docs[0]
    rest = b"\n".join(lines[1:])
    joined = b"\n".join(lines) + b"\n"

    def around(bad: bytes) -> bytes:
        return first + b"\n" + bad + b"\n" + rest + b"\n"

    yield "as-is", joined
    yield "empty-file", b""
    yield "only-newlines", b"\n\n\r\n"
    yield "no-final-newline", joined.rstrip(b"\n")
    yield "crlf", joined.replace(b"\n", b"\r\n")
    yield "bom", b"\xef\xbb\xbf" + joined
    yield "bom-crlf", b"\xef\xbb\xbf" + joined.replace(b"\n", b"\r\n")
    yield "blank-lines-between", joined.replace(b"\n", b"\n\n \t\n")
    for cut in (1, 10, len(first) // 3, len(first) // 2, len(first) - 2, len(first) - 1):
        yield f"truncated-at-{cut}", around(first[:cut])
    yield "truncated-last-line", joined[: len(joined) - len(lines[-1]) // 2 - 1]
    yield "invalid-utf8-in-data", around(first.replace(b'"data":"', b'"data":"\xff\xfe', 1))
    yield "invalid-utf8-in-key", around(first.replace(b'"eventId"', b'"event\xc3Id"', 1))
    yield "lone-surrogate-escape", around(first.replace(b'"data":"', b'"data":"\\ud800', 1))
    yield "latin1-bytes", around(first.decode().replace("e", "\xe9").encode("latin-1"))
    yield "nul-bytes", around(first[:20] + b"\x00" + first[20:])
    yield "nul-line", around(b"\x00" * 64)
    yield "nul-escaped-in-data", around(first.replace(b'"data":"', b'"data":"\\u0000', 1))
    yield "bom-mid-file", around(b"\xef\xbb\xbf" + first)
    yield "cr-only-line-ends", joined.replace(b"\n", b"\r")
    yield "form-feeds", around(b"\x0c" + first)
    for path, value, tag in [
        ("captureData.endpointInput.data", 12, "data-number"),
        ("captureData.endpointInput.data", None, "data-null"),
        ("captureData.endpointInput.data", ["1", "2"], "data-list"),
        ("captureData.endpointInput.encoding", 7, "encoding-number"),
        ("captureData.endpointInput.encoding", "UTF-7", "encoding-unknown"),
        ("captureData.endpointInput.observedContentType", {"a": 1}, "content-type-object"),
        ("captureData.endpointOutput", "0.5", "output-string"),
        ("captureData", [], "capture-data-list"),
        ("eventMetadata", "x", "metadata-string"),
        ("eventMetadata.eventId", 123, "event-id-number"),
        ("eventMetadata.eventId", {"id": 1}, "event-id-object"),
        ("eventMetadata.inferenceTime", 1650000000, "time-number"),
        ("eventMetadata.inferenceTime", "2022-02-14T17:25:06+05:30", "time-non-utc"),
        ("eventMetadata.inferenceTime", "2022-02-14T12:25:06-05:00", "time-negative-offset"),
        ("eventMetadata.inferenceTime", "2022-02-14T17:25:06.123456789Z", "time-nanoseconds"),
        ("eventMetadata.inferenceTime", "2022-02-14T17:25:06.5Z", "time-fraction"),
        ("eventMetadata.inferenceTime", "2022-02-14 17:25:06", "time-no-zone"),
        ("eventMetadata.inferenceTime", "2022-02-30T17:25:06Z", "time-impossible"),
        ("eventMetadata.inferenceTime", "9999-12-31T23:59:59Z", "time-far-future"),
        ("eventMetadata.inferenceTime", "0001-01-01T00:00:00Z", "time-year-one"),
        ("eventMetadata.inferenceTime", "", "time-empty"),
        ("eventVersion", 0, "version-number"),
        ("captureData.endpointInput", _DELETE, "missing-input"),
        ("captureData.endpointOutput", _DELETE, "missing-output"),
        ("captureData.endpointInput.data", _DELETE, "missing-input-data"),
        ("captureData.endpointInput.encoding", _DELETE, "missing-encoding"),
        ("captureData.endpointInput.observedContentType", _DELETE, "missing-content-type"),
        ("eventMetadata.eventId", _DELETE, "missing-event-id"),
        ("eventMetadata.inferenceTime", _DELETE, "missing-time"),
        ("eventMetadata", _DELETE, "missing-metadata"),
        ("captureData", _DELETE, "missing-capture-data"),
    ]:
        yield tag, around(_dump(_set(doc, path, value)))
    text = doc["captureData"]["endpointInput"]["data"]
    b64 = base64.b64encode(text.encode()).decode()
    for tag, data in [("b64-ok", b64), ("b64-no-padding", b64.rstrip("=")), ("b64-extra-padding", b64 + "=="),
                      ("b64-bad-length", b64[:-1]), ("b64-bad-chars", "!!" + b64), ("b64-urlsafe", b64.replace("+", "-")),
                      ("b64-empty", ""), ("b64-binary", base64.b64encode(b"\x89PNG\r\n\x1a\n\xff\x00").decode())]:
        d = _set(doc, "captureData.endpointInput.data", data)
        yield tag, around(_dump(_set(d, "captureData.endpointInput.encoding", "BASE64")))
    yield "duplicate-line", around(first)
    yield "duplicate-file-content", joined + joined
    yield "extra-keys", around(_dump({**doc, "x": [1, {"y": None}], "eventMetadata": {**doc["eventMetadata"], "z": 1}}))
    yield "deeply-nested", around(b'{"a":' * 200 + b"1" + b"}" * 200)
    yield "json-array-line", around(b"[" + first + b"]")
    yield "two-records-one-line", around(first + first)
    yield "json-scalars", around(b"null\ntrue\n42\n\"s\"")
    yield "single-quotes", around(first.replace(b'"', b"'"))
    yield "trailing-garbage", around(first + b" garbage")
    yield "control-chars-in-strings", around(first.replace(b'"data":"', b'"data":"\x01\x1f', 1))
    yield "very-long-key", around(_dump({**doc, "k" * 100_000: 1}))


def huge_mutations(blob: bytes) -> Iterator[tuple[str, bytes]]:
    """Variants whose one line carries a payload larger than 10 MB."""
    lines = _lines(blob)
    doc = _records(blob)[0]
    first = lines[0]
    tail = b"\n".join(lines[1:]) + b"\n"
    row = doc["captureData"]["endpointInput"]["data"].rstrip("\n")
    rows = (row + "\n") * (HUGE // (len(row) + 1) + 1)
    yield "huge-csv-payload", first + b"\n" + _dump(_set(doc, "captureData.endpointInput.data", rows)) + b"\n" + tail
    png = base64.b64encode(b"\x89PNG" + bytes(HUGE)).decode()
    d = _set(_set(doc, "captureData.endpointInput.data", png), "captureData.endpointInput.encoding", "BASE64")
    d = _set(d, "captureData.endpointInput.observedContentType", "image/png")
    yield "huge-base64-image", first + b"\n" + _dump(d) + b"\n" + tail
    big = _dump(_set(doc, "captureData.endpointInput.data", rows))
    yield "huge-truncated-line", first + b"\n" + big[: len(big) // 2] + b"\n" + tail
    yield "huge-junk-line", first + b"\n" + b"x" * HUGE + b"\n" + tail


def gzip_variants(name: str, blob: bytes) -> Iterator[tuple[str, bytes]]:
    """A file gzipped whole, in two members, and cut short (a corrupt gzip)."""
    base = name.removesuffix(".jsonl")
    yield f"{base}.jsonl.gz", gzip.compress(blob)
    half = len(blob) // 2
    yield f"{base}-members.jsonl.gz", gzip.compress(blob[:half]) + gzip.compress(blob[half:])
    yield f"{base}-cut.jsonl.gz", gzip.compress(blob)[: max(10, len(gzip.compress(blob)) // 2)]


# -- a flaky S3 server ---------------------------------------------------------------------------

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")
INTERNAL = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
            b"<Message>We encountered an internal error. Please try again.</Message></Error>")
_REASONS = {500: "Internal Server Error", 503: "Service Unavailable", 403: "Forbidden"}


@dataclass
class _Rule:
    kind: str  # slowdown | reset | slow | swap | status | stall | lose
    times: int  # how many requests it hits (-1: all)
    seconds: float = 0.0
    body: bytes = b""
    method: str = "GET"
    status: int = 0


class FaultyS3:
    """WSGI middleware over the loopback S3 server that breaks GETs of chosen keys.

    ``gets`` counts the GETs of each ``bucket/key`` that reached the server (faulty or not),
    ``requests`` every request by ``(method, bucket/key)``. Only requests a rule names are
    touched; the others pass through.
    """

    def __init__(self, server):
        self.server = server
        self.rules: dict[str, list[_Rule]] = {}
        self.list_rules: dict[str, list[_Rule]] = {}
        self.gets: Counter[str] = Counter()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.down: set[str] = set()  # prefixes in an outage
        self.refused: Counter[str] = Counter()  # requests answered 503 by an outage, by method
        self._lock = threading.Lock()
        self._release = threading.Event()  # ends every stall
        self.app = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[FaultyS3]:
        wsgi = self.server._server._server
        self.app = wsgi.app
        wsgi.app = self
        self._release.clear()
        try:
            yield self
        finally:
            self._release.set()
            wsgi.app = self.app

    # -- rules -------------------------------------------------------------------------------
    def slowdown(self, key: str, times: int = -1) -> None:
        """Answer ``503 SlowDown`` to the first ``times`` GETs of ``key``."""
        self.rules.setdefault(key, []).append(_Rule("slowdown", times))

    def reset(self, key: str, times: int = -1) -> None:
        """Send half the body under the full Content-Length, then drop the connection."""
        self.rules.setdefault(key, []).append(_Rule("reset", times))

    def slow(self, key: str, seconds: float, times: int = -1) -> None:
        """Wait ``seconds`` before answering."""
        self.rules.setdefault(key, []).append(_Rule("slow", times, seconds=seconds))

    def swap(self, key: str, body: bytes, times: int = -1) -> None:
        """Answer with ``body`` (another size than listed: an object rewritten since the LIST)."""
        self.rules.setdefault(key, []).append(_Rule("swap", times, body=body))

    def error(self, key: str, status: int = 500, times: int = -1, method: str = "GET") -> None:
        """Answer ``status`` (an S3 error document) to the first ``times`` requests."""
        self.rules.setdefault(key, []).append(_Rule("status", times, method=method, status=status))

    def stall(self, key: str, seconds: float = 60.0, times: int = -1, method: str = "GET") -> None:
        """Hold the request for ``seconds`` (or until the proxy is removed), then answer it."""
        self.rules.setdefault(key, []).append(_Rule("stall", times, seconds=seconds, method=method))

    def lose(self, key: str, times: int = 1, method: str = "PUT") -> None:
        """Carry the request out, then drop the connection instead of answering (the client
        never learns that it succeeded)."""
        self.rules.setdefault(key, []).append(_Rule("lose", times, method=method))

    def list_error(self, bucket: str, status: int = 500, times: int = -1) -> None:
        """Answer ``status`` to the first ``times`` LISTs of ``bucket``."""
        self.list_rules.setdefault(bucket, []).append(_Rule("status", times, status=status))

    @staticmethod
    def _take(rules: list[_Rule], method: str) -> _Rule | None:
        for rule in rules:
            if rule.method == method and rule.times != 0:
                rule.times -= 1 if rule.times > 0 else 0
                return rule
        return None

    def outage(self, prefix: str) -> None:
        """Answer ``503 SlowDown`` to every request (GET, PUT, LIST, ...) under ``prefix``."""
        self.down.add(prefix)

    def restore(self, prefix: str) -> None:
        """End the outage of ``prefix``."""
        self.down.discard(prefix)

    def _rule(self, key: str, method: str = "GET") -> _Rule | None:
        with self._lock:
            if method == "GET":
                self.gets[key] += 1
            self.requests[(method, key)] += 1
            for pattern, rules in self.rules.items():
                if pattern == key or fnmatch.fnmatchcase(key, pattern):
                    rule = self._take(rules, method)
                    if rule is not None:
                        return rule
        return None

    # -- WSGI --------------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        path = unquote(environ.get("PATH_INFO", "")).lstrip("/")
        method = environ["REQUEST_METHOD"]
        if any(path.startswith(p) for p in list(self.down)):
            with self._lock:
                self.refused[method] += 1
            start_response("503 Slow Down", [("Content-Type", "application/xml"),
                                             ("Content-Length", str(len(SLOWDOWN)))])
            return [SLOWDOWN]
        if "/" not in path.rstrip("/"):  # a bucket: LIST (and bucket operations)
            bucket = path.rstrip("/")
            with self._lock:
                rule = self._take(self.list_rules.get(bucket, []), "GET") if method == "GET" else None
            if rule is None:
                return self.app(environ, start_response)
            return self._status(rule.status, start_response)
        if path.endswith("/"):
            return self.app(environ, start_response)
        rule = self._rule(path, method)
        if rule is None:
            return self.app(environ, start_response)
        if rule.kind == "status":
            return self._status(rule.status, start_response)
        if rule.kind == "stall":
            self._release.wait(rule.seconds)
            return self.app(environ, start_response)
        if rule.kind == "lose":
            for _ in self.app(environ, lambda *a, **k: lambda data: None):
                pass  # carried out: the object is stored
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            raise ConnectionResetError("injected: response lost")
        if rule.kind == "slowdown":
            start_response("503 Slow Down", [("Content-Type", "application/xml"),
                                             ("Content-Length", str(len(SLOWDOWN)))])
            return [SLOWDOWN]
        if rule.kind == "slow":
            time.sleep(rule.seconds)
            return self.app(environ, start_response)
        captured: dict = {}

        def _start(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        body = b"".join(self.app(environ, _start))
        headers = [(k, v) for k, v in captured["headers"] if k.lower() not in ("content-length", "etag",
                                                                                  "content-md5")]
        if rule.kind == "swap":
            start_response(captured["status"], [*headers, ("Content-Length", str(len(rule.body)))])
            return [rule.body]
        # reset: promise the whole body, deliver half, then break the connection
        start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
        return _Broken(body[: len(body) // 2])

    @staticmethod
    def _status(status: int, start_response):
        body = SLOWDOWN if status == 503 else INTERNAL
        start_response(f"{status} {_REASONS.get(status, 'Error')}",
                       [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
        return [body]


class _Broken:
    """A response body that fails after its first chunk (the server drops the connection)."""

    def __init__(self, head: bytes):
        self.head = head

    def __iter__(self):
        yield self.head
        raise ConnectionResetError("injected connection reset")
