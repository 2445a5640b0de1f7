"""The exit statuses of captureq's commands, defined once.

``OK`` 0: the command did what was asked. ``CRASH`` 1: a bug or an unexpected failure (the
traceback shows with ``CAPTUREQ_DEBUG=1``). ``USAGE`` 2: a user mistake, explained in one line
(:mod:`captureq.cli_errors`). ``VIOLATIONS`` 3: the run completed and found constraint
violations, returned only when ``--fail-on-violations`` asks for it (a scheduler can then tell
"found problems" from "could not run").
"""

from __future__ import annotations

OK = 0
CRASH = 1
USAGE = 2
VIOLATIONS = 3
