"""How captureq opens storage, and the one retry policy every request to it follows.

``storage_options`` go to fsspec, except captureq's own keys (:data:`POLICY_KEYS`):

* ``retries`` — retries after a failed attempt (default 2: three attempts);
* ``timeout`` — seconds one request may take (default 20);
* ``deadline`` — seconds one object (or one listing, one write) may take, attempts and the
  pauses between them included (default 60);
* ``concurrency`` — requests to an object store at once (default 64, or
  ``CAPTUREQ_CONCURRENCY``): the GETs of a read share it, and S3's connection pool
  (``config_kwargs.max_pool_connections``) is sized to match unless given;
* ``read_ahead`` — bytes of objects (as listed) a read fetches ahead of the decoders on an
  object store (default 256 MiB, or ``CAPTUREQ_READ_AHEAD``; at most
  :data:`captureq.read.READ_AHEAD_BATCHES` batches; 0 fetches each batch only when it is
  decoded).

Retries stack badly: s3fs retries each call (5 times) around botocore, which retries each
request (5 times, up to 15 s apart), so one stalled object kept a read busy for half an hour.
Here the filesystem makes one attempt per call (s3fs' ``retries`` is 1, botocore's
``max_attempts`` 1 unless ``config_kwargs.retries`` says otherwise), and captureq retries
transient errors itself within the deadline (:meth:`RetryPolicy.call`, and
:func:`captureq.read.fetch` for reads): an object that does not answer ends as unreadable
("timed out after …"), never as a hang. ``config_kwargs`` (``read_timeout``,
``connect_timeout``, ``retries``) still reach botocore.

>>> opts, policy = split_options({"retries": 4, "anon": True})
>>> opts, policy.attempts
({'anon': True}, 5)
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, StorageError

if TYPE_CHECKING:  # pragma: no cover
    import fsspec

DEFAULT_RETRIES = 2
DEFAULT_TIMEOUT = 20.0
DEFAULT_DEADLINE = 60.0
DEFAULT_CONCURRENCY = 64
DEFAULT_READ_AHEAD = 256 * 1024 * 1024
POLICY_KEYS = ("retries", "timeout", "deadline", "concurrency", "read_ahead")
_S3 = ("s3", "s3a")


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts, per-request timeout and per-object deadline (seconds) of storage requests,
    how many of them may be in flight at once (``concurrency``), and how many bytes a read may
    fetch ahead of its decoders (``read_ahead``)."""

    retries: int = DEFAULT_RETRIES
    timeout: float = DEFAULT_TIMEOUT
    deadline: float = DEFAULT_DEADLINE
    concurrency: int = DEFAULT_CONCURRENCY
    read_ahead: int = DEFAULT_READ_AHEAD
    backoff: float = 0.2  # the first pause; each next one doubles (at most 5 s)
    # whose storage this is: "source" (a tree read) or "destination" (an export, the cache);
    # errors raised through call() carry it as ``captureq_side``, so advice names its option
    side: str = "source"

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def pause(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based)."""
        return min(self.backoff * 2**attempt, 5.0)

    def call(self, op: str, target: str, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``, retried on transient errors within the policy; a storage
        error that outlives it becomes a :class:`StorageError` naming ``op`` and ``target``.
        Errors that are answers (not found, exists, refused) are raised as they are."""
        started = time.monotonic()
        for attempt in range(self.attempts):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - sorted below
                if not is_transient(exc):
                    if is_storage_failure(exc):
                        raise StorageError.of(op, target, exc, side=self.side) from exc
                    mark_side(exc, self.side)
                    raise
                left = self.deadline - (time.monotonic() - started)
                wait = self.pause(attempt)
                if attempt + 1 >= self.attempts or wait >= left:
                    raise StorageError.of(op, target, exc, attempts=attempt + 1,
                                          seconds=time.monotonic() - started, side=self.side) from exc
                time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


def mark_side(exc: BaseException, side: str) -> None:
    """Note on ``exc`` whose storage raised it (``captureq_side``), unless a closer call did."""
    if getattr(exc, "captureq_side", None) is None:
        try:
            exc.captureq_side = side
        except (AttributeError, TypeError):  # an exception type without a __dict__
            pass


def side_of(exc: BaseException) -> str | None:
    """The side (``"source"``, ``"destination"``) whose storage raised ``exc`` or a cause of it."""
    for e in causes(exc):
        side = getattr(e, "captureq_side", None)
        if side:
            return side
    return None


def warn_unused(uri: str | None, storage_options: dict | None, side: str = "source") -> None:
    """A :class:`~captureq.errors.StorageOptionWarning` when ``storage_options`` were given for a
    local path, where only captureq's own (:data:`POLICY_KEYS`) apply: fsspec's local
    filesystem takes any other option and ignores it.

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as seen:
    ...     warnings.simplefilter("always")
    ...     warn_unused("data/capture", {"anon": True, "retries": 4})
    >>> seen[0].message.keys
    ('anon',)
    """
    if not uri or not storage_options:
        return  # nothing to warn about, and fsspec stays unimported (the CLI's fast start)
    from fsspec.utils import get_protocol

    if get_protocol(uri) not in ("file", "local"):
        return
    keys = tuple(k for k in storage_options if k not in POLICY_KEYS)
    if keys:
        import warnings

        from .errors import OPTIONS_OF_SIDE, StorageOptionWarning

        argument = OPTIONS_OF_SIDE.get(side, OPTIONS_OF_SIDE["source"])[1]
        warnings.warn(StorageOptionWarning(
            f"{argument} {', '.join(keys)} do not apply to the local {side} {uri} and are ignored "
            "(they are for object stores such as s3://)", side=side, keys=keys, uri=uri), stacklevel=3)


def split_options(storage_options: dict | None) -> tuple[dict, RetryPolicy]:
    """fsspec's options and captureq's :class:`RetryPolicy` from one ``storage_options``."""
    opts = dict(storage_options or {})
    given = {k: opts.pop(k) for k in POLICY_KEYS if k in opts}
    try:
        policy = RetryPolicy(
            retries=int(given.get("retries", DEFAULT_RETRIES)),
            timeout=float(given.get("timeout", DEFAULT_TIMEOUT)),
            deadline=float(given.get("deadline", DEFAULT_DEADLINE)),
            concurrency=int(given.get("concurrency",
                                      os.environ.get("CAPTUREQ_CONCURRENCY") or DEFAULT_CONCURRENCY)),
            read_ahead=int(float(given.get("read_ahead",
                                           os.environ.get("CAPTUREQ_READ_AHEAD") or DEFAULT_READ_AHEAD))),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError("storage options retries, timeout, deadline, concurrency and read_ahead "
                          f"must be numbers ({exc})") from exc
    if policy.retries < 0 or policy.timeout <= 0 or policy.deadline <= 0:
        raise ConfigError("storage options: retries must be >= 0, timeout and deadline > 0 seconds")
    if policy.concurrency < 1 or policy.read_ahead < 0:
        raise ConfigError("storage options: concurrency must be >= 1 and read_ahead >= 0 bytes "
                          "(also CAPTUREQ_CONCURRENCY, CAPTUREQ_READ_AHEAD)")
    return opts, policy


def filesystem(uri: str, storage_options: dict | None = None,
               side: str = "source") -> tuple[fsspec.AbstractFileSystem, str]:
    """``fsspec.core.url_to_fs(uri, **storage_options)`` with captureq's retry policy: the
    filesystem makes one attempt per call and carries the policy (:func:`policy_of`), which
    notes ``side`` on the errors it raises (:func:`side_of`)."""
    from dataclasses import replace

    from fsspec.core import url_to_fs
    from fsspec.utils import get_protocol

    opts, policy = split_options(storage_options)
    policy = replace(policy, side=side)
    own_retries = False
    if get_protocol(uri) in _S3:
        config = dict(opts.get("config_kwargs") or {})
        config.setdefault("retries", {"total_max_attempts": 1, "mode": "standard"})
        # one connection per concurrent request: botocore's default pool (10) would queue them
        config.setdefault("max_pool_connections", policy.concurrency)
        if "timeout" in (storage_options or {}):
            config.setdefault("read_timeout", policy.timeout)
            config.setdefault("connect_timeout", min(policy.timeout, 10.0))
        opts["config_kwargs"] = config
        own_retries = True
    if own_retries or _retrying_class(uri):
        # an instance of its own: its retries are set below, others' are left as they are
        opts["skip_instance_cache"] = True
    fs, path = url_to_fs(uri, **opts)
    if isinstance(getattr(fs, "retries", None), int):
        fs.retries = 1  # s3fs, gcsfs: one attempt per call; the policy retries
    fs._captureq_policy = policy
    return fs, path


def _retrying_class(uri: str) -> bool:
    from fsspec import get_filesystem_class
    from fsspec.utils import get_protocol

    try:
        cls = get_filesystem_class(get_protocol(uri))
    except (ImportError, ValueError):
        return False
    return isinstance(getattr(cls, "retries", None), int)


def policy_of(fs: Any) -> RetryPolicy:
    """The retry policy a filesystem was opened with (:func:`filesystem`), else the default."""
    policy = getattr(fs, "_captureq_policy", None)
    return policy if isinstance(policy, RetryPolicy) else RetryPolicy()


# -- what failed, and whether to try again ---------------------------------------------------------
_ANSWERS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
            PermissionError)
_TRANSIENT_STATUS = {429, 500, 502, 503, 504}
_TRANSIENT_NAMES = {"ReadTimeoutError", "ConnectTimeoutError", "EndpointConnectionError",
                    "ConnectionClosedError", "ServerDisconnectedError", "ClientConnectorError",
                    "ClientPayloadError", "ResponseStreamingError", "IncompleteReadError"}


def causes(exc: BaseException):
    """``exc`` and the exceptions behind it (``__cause__``, else ``__context__``), each once."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def status_of(exc: BaseException) -> tuple[int | None, str | None]:
    """The HTTP status and the service's error code behind ``exc``, when it says them."""
    for e in causes(exc):
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            meta = response.get("ResponseMetadata", {}) or {}
            code = (response.get("Error", {}) or {}).get("Code")
            status = meta.get("HTTPStatusCode")
            if status is None and isinstance(code, str) and code.isdigit():
                status = int(code)
            return (int(status) if status is not None else None), code
        status = getattr(e, "status", None)  # aiohttp's answer to an HTTP request (http://)
        if type(e).__name__ == "ClientResponseError" and isinstance(status, int):
            return status, None
    return None, None


def is_transient(exc: BaseException) -> bool:
    """Whether trying again may succeed: a timeout, a dropped connection, a 5xx or a 429."""
    if isinstance(exc, _ANSWERS):
        return False
    status, _ = status_of(exc)
    if status is not None:
        return status in _TRANSIENT_STATUS
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if any(type(e).__name__ in _TRANSIENT_NAMES for e in causes(exc)):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.EBUSY, getattr(errno, "EREMOTEIO", -1),
                                                  errno.EIO, errno.ETIMEDOUT):
        return True
    return False


def is_storage_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the storage failing (not an answer such as "not found")."""
    if isinstance(exc, _ANSWERS):
        return False
    return is_transient(exc) or status_of(exc)[0] is not None


def describe(exc: BaseException) -> str:
    """``exc`` in a few words, with the status code when the storage gave one."""
    status, code = status_of(exc)
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, TimeoutError) and not str(exc):
        text = "no answer within the request timeout"
    if status is not None and str(status) not in text:
        text = f"HTTP {status}{' ' + code if code and code != str(status) else ''}: {text}"
    return text
