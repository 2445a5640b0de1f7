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


class StorageError(CaptureqError):
    """The storage failed (an error status, a timeout, a dropped connection) on an operation
    that outlived the retry policy; the message names the operation, the object or prefix, the
    status code and what to try."""

    def __init__(self, message: str, *, op: str = "", target: str = "", status: int | None = None):
        super().__init__(message)
        self.op, self.target, self.status = op, target, status

    @classmethod
    def of(cls, op: str, target: str, exc: BaseException, *, attempts: int | None = None,
           seconds: float | None = None) -> StorageError:
        from .storage import describe, status_of

        status, _ = status_of(exc)
        tries = ""
        if attempts is not None:
            tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}"
            if seconds is not None:
                tries += f" in {seconds:.1f}s"
        return cls(
            f"storage error: {op} {target} failed{tries}: {describe(exc)}; the storage is "
            "failing, not captureq — try again later, or allow more time with --storage-option "
            "retries=N / deadline=SECONDS (storage_options in Python)",
            op=op, target=target, status=status,
        )


class UnreadableError(CaptureqError):
    """A strict read (``strict=True``, ``--strict``) met objects it could not read."""

    def __init__(self, message: str, unreadable: list | None = None):
        super().__init__(message)
        self.unreadable = list(unreadable or [])


class UnreadableWarning(UserWarning):
    """A read left out objects it could not read (``Result.unreadable`` lists them)."""
