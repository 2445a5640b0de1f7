"""User mistakes as one or two lines on stderr and exit status 2, never a Python traceback.

:func:`explain` turns an exception into what is wrong and what to do, or ``None`` for an
exception that is not a user mistake (a bug: the CLI prints a short note and exits 1).
``CAPTUREQ_DEBUG=1`` re-raises instead, so the traceback shows.

>>> explain(FileNotFoundError(2, "No such file or directory", "missing.csv"))
'missing.csv: no such file or folder; check the path'
"""

from __future__ import annotations

import errno
import json
import os

from .errors import CaptureqError

_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "ExpiredToken",
    "InvalidToken",
    "UnrecognizedClientException",
    "AuthorizationHeaderMalformed",
}
CREDENTIALS_HINT = (
    "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or pass "
    "--storage-option profile=NAME (--storage-option anon=true for public buckets)"
)


def debug() -> bool:
    """True when ``CAPTUREQ_DEBUG`` asks for tracebacks."""
    return os.environ.get("CAPTUREQ_DEBUG", "").lower() not in ("", "0", "false", "no")


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _named(exc: BaseException) -> str:
    return type(exc).__name__


def explain(exc: BaseException) -> str | None:
    """What went wrong and what to do, for an exception caused by how captureq was called."""
    for e in _chain(exc):
        name, module = _named(e), type(e).__module__ or ""
        if name == "NoCredentialsError" or name == "PartialCredentialsError":
            return f"no AWS credentials found; {CREDENTIALS_HINT}"
        code = getattr(e, "response", None)
        code = code.get("Error", {}).get("Code") if isinstance(code, dict) else None
        if code in _CREDENTIAL_CODES:
            return f"S3 refused the credentials ({code}); {CREDENTIALS_HINT}"
        if name in ("EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError",
                    "ServerDisconnectedError", "ConnectionClosedError"):
            return (
                f"cannot reach the storage endpoint ({e}); check the URL in "
                "--storage-option client_kwargs.endpoint_url and that the server is running"
            )
        if isinstance(e, CaptureqError):
            return str(e)
        if module.startswith("duckdb") or module.startswith("_duckdb"):
            return f"SQL: {str(e).strip()}"
        if isinstance(e, json.JSONDecodeError):
            return f"malformed JSON ({e}); check the file"
        if isinstance(e, OSError) and not isinstance(e, ConnectionError):
            what = e.filename or ""
            if isinstance(e, FileNotFoundError):
                return f"{what}: no such file or folder; check the path"
            if isinstance(e, (NotADirectoryError, FileExistsError)):
                return f"{what}: a file is in the way where a folder is needed; choose another path"
            if isinstance(e, IsADirectoryError):
                return f"{what}: is a folder, a file is needed; give a file path"
            if isinstance(e, PermissionError):
                return f"{what}: permission denied; choose a path you may read or write"
            if e.errno == errno.EROFS:
                return f"{what}: read-only file system; choose a writable folder"
            if e.errno == errno.ENOSPC:
                return f"{what}: no space left on the device; free space or choose another folder"
        if isinstance(e, ConnectionError):
            return (
                f"cannot reach the storage endpoint ({e}); check the URL in "
                "--storage-option client_kwargs.endpoint_url and that the server is running"
            )
    return None
