"""Pause capture while the local disk is too full, as SageMaker does — never block inference.

:class:`DiskGuard` answers one question on the request path, ``allow()``: is there room to
capture? It reads disk usage at most once per ``interval`` seconds (so the answer costs an
attribute read almost always), pauses at or above ``threshold`` percent used, resumes below
it, and counts the requests it turned away. Pausing and resuming are logged (warning level, logger
``captureq.capture``), the resume with the number of requests skipped while paused.

>>> readings = iter([50.0, 80.0, 74.0])
>>> guard = DiskGuard("/", threshold=75, usage=lambda path: next(readings), interval=0)
>>> [guard.allow(), guard.allow(), guard.allow()], guard.skipped, guard.pauses
([True, False, True], 1, 1)
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable

__all__ = ["DiskGuard", "disk_usage_percent"]

log = logging.getLogger("captureq.capture")


def disk_usage_percent(path: str) -> float:
    """Percentage of the disk holding ``path`` that is used."""
    usage = shutil.disk_usage(path)
    return 100.0 * usage.used / usage.total if usage.total else 0.0


class DiskGuard:
    """Allow capture while the disk at ``path`` is below ``threshold`` percent used.

    ``usage(path) -> percent`` is injectable for tests; a reading that fails (the folder is
    gone, a permission error) lets capture go on rather than failing the request.
    """

    def __init__(
        self,
        path: str,
        *,
        threshold: float = 75.0,
        usage: Callable[[str], float] = disk_usage_percent,
        interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.path = path
        self.threshold = float(threshold)
        self.usage = usage
        self.interval = float(interval)
        self.monotonic = monotonic
        self.paused = False
        self.skipped = 0  # requests sampled for capture but dropped while paused
        self.pauses = 0  # times capture went from running to paused
        self.last_usage: float | None = None
        self._skipped_at_pause = 0
        self._next_check = float("-inf")
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "paused" if self.paused else "capturing"
        return (
            f"DiskGuard({self.path!r}, threshold={self.threshold}, {state}, "
            f"last_usage={self.last_usage}, skipped={self.skipped})"
        )

    def check(self) -> bool:
        """Read usage now and update the paused state; True when capture may go on."""
        try:
            used = float(self.usage(self.path))
        except OSError:
            used = None
        self.last_usage = used
        paused = used is not None and used >= self.threshold
        if paused and not self.paused:
            self.pauses += 1
            self._skipped_at_pause = self.skipped
            log.warning(
                "captureq: capture paused: the disk holding %s is %.1f %% used (threshold %g %%); "
                "sampled requests are skipped and counted until it drops below",
                self.path,
                used,
                self.threshold,
            )
        elif self.paused and not paused:
            log.warning(
                "captureq: capture resumed: the disk holding %s is %s used; %d requests skipped "
                "while paused (%d in all)",
                self.path,
                "unknown" if used is None else f"{used:.1f} %",
                self.skipped - self._skipped_at_pause,
                self.skipped,
            )
        self.paused = paused
        return not paused

    def allow(self) -> bool:
        """True when a sampled request may be captured; counts it as skipped otherwise."""
        now = self.monotonic()
        if now >= self._next_check and self._lock.acquire(blocking=False):
            try:
                self._next_check = now + self.interval
                self.check()
            finally:
                self._lock.release()
        if self.paused:
            self.skipped += 1
            return False
        return True
