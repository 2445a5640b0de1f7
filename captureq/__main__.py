"""``python -m captureq``: the ``captureq`` command."""

from captureq.cli import main

main()
