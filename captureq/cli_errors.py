"""User mistakes as one or two lines on stderr and exit status 2, never a Python traceback.

:func:`explain` turns an exception into what is wrong and what to do, or ``None`` for an
exception that is not a user mistake (a bug: the CLI prints a short note and exits 1).
``CAPTUREQ_DEBUG=1`` re-raises instead, so the traceback shows. Advice about storage names the
option of the side whose storage failed (:func:`captureq.storage.side_of`): ``--storage-option``
for the tree read, ``--out-storage-option`` for the export's destination or the cache.

>>> explain(FileNotFoundError(2, "No such file or directory", "missing.csv"))
'missing.csv: no such file or folder; check the path'
"""

from __future__ import annotations

import errno
import json
import os

from .errors import OPTIONS_OF_SIDE, CaptureqError
from .storage import causes, describe, is_storage_failure, side_of

_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "ExpiredToken",
    "InvalidToken",
    "UnrecognizedClientException",
    "AuthorizationHeaderMalformed",
}
_EXTRAS = {  # optional dependencies: the extra that installs each
    "pyspark": "spark",
    "pandas": "spark",
    "altair": "report",
    "vl_convert": "report",
    "fastapi": "serve",
    "uvicorn": "serve",
    "starlette": "serve",
    "httpx": "serve",
}


def flag_of(side: str | None) -> str:
    """The CLI option that carries the storage options of ``side`` (default: the source's)."""
    return OPTIONS_OF_SIDE.get(side or "source", OPTIONS_OF_SIDE["source"])[0]


def credentials_hint(flag: str) -> str:
    """What to do about missing or refused S3 credentials, with the option of that side."""
    public = " (--storage-option anon=true for public buckets)" if flag == "--storage-option" else ""
    return ("set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or pass "
            f"{flag} profile=NAME{public}")


def debug() -> bool:
    """True when ``CAPTUREQ_DEBUG`` asks for tracebacks."""
    return os.environ.get("CAPTUREQ_DEBUG", "").lower() not in ("", "0", "false", "no")


def _named(exc: BaseException) -> str:
    return type(exc).__name__


def _storage(e: BaseException, flag: str) -> str | None:
    """Credentials and connection problems, wherever they are in the exception chain; ``flag``
    is the option of the side that failed."""
    name = _named(e)
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return f"no AWS credentials found; {credentials_hint(flag)}"
    if name == "ProfileNotFound":
        return f"{e}; name a profile in ~/.aws/config (AWS_PROFILE or {flag} profile=NAME)"
    response = getattr(e, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    if code in _CREDENTIAL_CODES or (
        code is None and any(c in str(e) for c in _CREDENTIAL_CODES)
    ):
        return f"S3 refused the credentials ({code or e}); {credentials_hint(flag)}"
    if name in _CONNECTION_ERRORS:
        return (
            f"cannot reach the storage endpoint ({e}); check the URL in "
            f"{flag} client_kwargs.endpoint_url and that the server is running"
        )
    return None


_CONNECTION_ERRORS = {
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ClientConnectorError",
    "ServerDisconnectedError",
    "ConnectionClosedError",
}


def explain(exc: BaseException) -> str | None:
    """What went wrong and what to do, for an exception caused by how captureq was called."""
    chain = list(causes(exc))
    flag = flag_of(side_of(exc))
    for e in chain:
        message = _storage(e, flag)
        if message:
            return message
    for e in chain:
        module = type(e).__module__ or ""
        if isinstance(e, CaptureqError):
            return str(e)
        if module.startswith("duckdb") or module.startswith("_duckdb"):
            return f"SQL: {str(e).strip()}"
        if isinstance(e, ImportError) and e.name:
            top = e.name.split(".")[0]
            extra = _EXTRAS.get(top)
            hint = f"pip install 'captureq[{extra}]'" if extra else f"pip install {top}"
            needs = " and Java 17+ (java on PATH or JAVA_HOME)" if extra == "spark" else ""
            return f"{top} is not installed: {hint}{needs}"
        if _named(e) == "PySparkRuntimeError" and "JAVA" in str(e).upper():
            return f"Spark could not start Java ({e}); install Java 17+ (java on PATH or JAVA_HOME)"
        if isinstance(e, json.JSONDecodeError):
            return f"malformed JSON ({e}); check the file"
        if isinstance(e, TypeError) and "unexpected keyword argument" in str(e):
            return (
                f"the filesystem does not take an option given ({e}); check {flag}"
            )
        if isinstance(e, OSError) and not isinstance(e, ConnectionError):
            what = f"{e.filename}: " if e.filename else ""
            detail = "" if e.filename else f" ({e})"
            if isinstance(e, FileNotFoundError):
                return f"{what}no such file or folder{detail}; check the path"
            if isinstance(e, (NotADirectoryError, FileExistsError)):
                return (
                    f"{what}a file is in the way where a folder is needed{detail}; "
                    "choose another path"
                )
            if isinstance(e, IsADirectoryError):
                return f"{what}is a folder, a file is needed{detail}; give a file path"
            if isinstance(e, PermissionError):
                return f"{what}permission denied{detail}; choose a path you may read or write"
            if e.errno == errno.EROFS:
                return f"{what}read-only file system{detail}; choose a writable folder"
            if e.errno == errno.ENOSPC:
                return f"{what}no space left on the device{detail}; free space or choose another"
        if isinstance(e, ConnectionError):
            return (
                f"cannot reach the storage endpoint ({e}); check the URL in "
                f"{flag} client_kwargs.endpoint_url and that the server is running"
            )
    for e in chain:  # the storage failing on a request captureq did not name (a StorageError does)
        if isinstance(e, Exception) and is_storage_failure(e):
            return (f"storage error: {describe(e)}; the storage is failing, not captureq — try "
                    f"again later, or allow more time with {flag} retries=N / "
                    "deadline=SECONDS")
    return None
