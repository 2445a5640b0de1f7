"""A real S3 server on loopback for the tests: moto's server mode, as s3fs's own tests use it.

captureq talks HTTP to the server through s3fs exactly as it talks to AWS; nothing in boto or
s3fs is patched. Credentials are dummies passed in ``storage_options``, and the fixture points
the AWS config files at nothing so that a developer's ``~/.aws`` is never read.

The server's WSGI app is wrapped in a :class:`RequestLog`, so a test can count the LIST requests
that actually reached the server (and how many keys each returned) — a counter, not a fake.

>>> server = S3Server().start()                                   # doctest: +SKIP
>>> opts = server.storage_options()                              # doctest: +SKIP
>>> captureq.open("s3://bucket/capture", storage_options=opts)   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote

import s3fs
from moto.server import ThreadedMotoServer

# Query parameters of ListObjects / ListObjectsV2; any other (``?location``, ``?uploads``, …)
# makes a bucket-level GET a different operation.
_LIST_PARAMS = {
    "list-type",
    "prefix",
    "delimiter",
    "max-keys",
    "continuation-token",
    "start-after",
    "marker",
    "encoding-type",
    "fetch-owner",
}


@dataclass(frozen=True)
class Request:
    """One HTTP request the server answered."""

    method: str
    bucket: str | None
    key: str | None
    query: dict[str, str]
    status: int
    contents: int  # <Contents> entries in the response (objects listed)
    common_prefixes: int  # <CommonPrefixes> entries (folders listed)

    @property
    def is_list(self) -> bool:
        """A ListObjects or ListObjectsV2 call."""
        return (
            self.method == "GET"
            and self.bucket is not None
            and self.key is None
            and set(self.query) <= _LIST_PARAMS
        )

    @property
    def prefix(self) -> str:
        return self.query.get("prefix", "")


class RequestLog:
    """WSGI middleware that records every request reaching the wrapped app."""

    def __init__(self, app):
        self.app = app
        self.requests: list[Request] = []
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        status: list[int] = []

        def _start(code, headers, exc_info=None):
            status.append(int(code.split()[0]))
            return start_response(code, headers, exc_info)

        body = b"".join(self.app(environ, _start))
        parts = unquote(environ.get("PATH_INFO", "")).lstrip("/").split("/", 1)
        query = {
            k: v[0]
            for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()
        }
        request = Request(
            method=environ["REQUEST_METHOD"],
            bucket=parts[0] or None,
            key=parts[1] if len(parts) > 1 and parts[1] else None,
            query=query,
            status=status[0] if status else 0,
            contents=len(re.findall(rb"<Contents>", body)),
            common_prefixes=len(re.findall(rb"<CommonPrefixes>", body)),
        )
        with self._lock:
            self.requests.append(request)
        return [body]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def lists(self, bucket: str | None = None) -> list[Request]:
        """The LIST requests so far (for ``bucket`` only, if given)."""
        with self._lock:
            return [
                r for r in self.requests if r.is_list and (bucket is None or r.bucket == bucket)
            ]


class S3Server:
    """moto's ThreadedMotoServer on a free loopback port, with a :class:`RequestLog`."""

    def __init__(self):
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.log: RequestLog | None = None
        self.endpoint_url = ""

    def start(self) -> S3Server:
        # werkzeug logs every request at INFO; keep test output readable.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        # werkzeug's request handler calls `server.app` on every request: wrap it to log them.
        wsgi = self._server._server
        self.log = wsgi.app = RequestLog(wsgi.app)
        return self

    def stop(self) -> None:
        self._server.stop()

    def storage_options(self) -> dict:
        """fsspec storage_options for this server, with dummy credentials.

        Listing caches are off so that every scan's LISTs reach the server (and a tree that
        changes between scans is seen as it is); a long-lived filesystem may list even less.
        """
        return {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": self.endpoint_url},
            "use_listings_cache": False,
        }

    def filesystem(self) -> s3fs.S3FileSystem:
        return s3fs.S3FileSystem(**self.storage_options())

    def seed(self, bucket: str, objects: dict[str, bytes]) -> None:
        """Put many objects into ``bucket`` straight into the server's store.

        PUTting thousands of objects over HTTP takes ~10 ms each; this fills moto's in-process
        store in a blink. Only setup goes this way: everything captureq does is HTTP.
        """
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        for key, data in objects.items():
            backend.put_object(bucket, key, data)


def new_bucket(fs: s3fs.S3FileSystem) -> str:
    """Create a bucket with a fresh name (so tests never see each other's objects)."""
    name = f"captureq-{uuid.uuid4().hex[:12]}"
    fs.mkdir(name)
    return name


def upload_tree(fs: s3fs.S3FileSystem, local: str | Path, url: str) -> list[str]:
    """Upload every file under ``local`` to ``url`` (``s3://bucket/prefix``) over HTTP."""
    local = Path(local)
    files = {
        str(p): f"{url.rstrip('/')}/{p.relative_to(local).as_posix()}"
        for p in sorted(local.rglob("*"))
        if p.is_file()
    }
    fs.put(list(files), list(files.values()))
    fs.invalidate_cache()
    return list(files.values())
