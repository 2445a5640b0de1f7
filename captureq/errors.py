"""One exception hierarchy for everything captureq raises.

Bad *records* are never exceptions: they become rows of the ``quarantine`` table.
Exceptions are for problems the caller must fix (a wrong URI, a bad option).
"""

from __future__ import annotations


class CaptureqError(Exception):
    """Base class of every error captureq raises on purpose."""


class ScanError(CaptureqError):
    """The capture tree could not be found or listed."""


class DecodeError(CaptureqError):
    """A payload could not be decoded with the options given."""


class ConfigError(CaptureqError):
    """An option or configuration value is invalid."""


class ExportError(CaptureqError):
    """A Parquet export could not run (for example, another export holds the lock)."""


class QueryError(CaptureqError):
    """User SQL was refused (for example, it reads or writes files without the opt-in)."""


class FilterWarning(UserWarning):
    """An endpoint/variant filter matched nothing in the tree (the message lists what exists)."""


class HeaderWarning(UserWarning):
    """A training CSV's first row could be a header or data; the message names the option
    (``--header``/``--no-header``, ``header=``) that says which."""


# The option that carries a side's storage options: (CLI flag, Python argument). The source's
# (and the labels') is --storage-option; the destination's (export, the cache) --out-storage-option.
OPTIONS_OF_SIDE = {
    "source": ("--storage-option", "storage_options"),
    "destination": ("--out-storage-option", "out_storage_options"),
}


class StorageError(CaptureqError):
    """The storage failed (an error status, a timeout, a dropped connection) on an operation
    that outlived the retry policy; the message names the operation, the object or prefix, the
    status code and what to try."""

    def __init__(self, message: str, *, op: str = "", target: str = "", status: int | None = None):
        super().__init__(message)
        self.op, self.target, self.status = op, target, status

    @classmethod
    def of(cls, op: str, target: str, exc: BaseException, *, attempts: int | None = None,
           seconds: float | None = None, side: str = "source") -> StorageError:
        from .storage import describe, status_of

        status, _ = status_of(exc)
        tries = ""
        if attempts is not None:
            tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}"
            if seconds is not None:
                tries += f" in {seconds:.1f}s"
        flag, argument = OPTIONS_OF_SIDE.get(side, OPTIONS_OF_SIDE["source"])
        error = cls(
            f"storage error: {op} {target} failed{tries}: {describe(exc)}; the storage is "
            f"failing, not captureq — try again later, or allow more time with {flag} "
            f"retries=N / deadline=SECONDS ({argument} in Python)",
            op=op, target=target, status=status,
        )
        error.captureq_side = side
        return error


class UnreadableError(CaptureqError):
    """A strict read (``strict=True``, ``--strict``) met objects it could not read."""

    def __init__(self, message: str, unreadable: list | None = None):
        super().__init__(message)
        self.unreadable = list(unreadable or [])


class StorageOptionWarning(UserWarning):
    """Storage options were given for a storage they cannot apply to (S3 options for a local
    folder): they are ignored. ``side`` is ``"source"`` or ``"destination"``, ``keys`` the
    options left unused, ``uri`` the local path."""

    def __init__(self, message: str, side: str = "source", keys: tuple = (), uri: str = ""):
        super().__init__(message)
        self.side, self.keys, self.uri = side, tuple(keys), uri


class UnreadableWarning(UserWarning):
    """A read left out objects it could not read (``Result.unreadable`` lists them)."""
