"""``python -m captureq``: the ``captureq`` command."""

from captureq.cli import run

run()
