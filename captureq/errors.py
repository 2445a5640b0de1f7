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
