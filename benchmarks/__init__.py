"""captureq's benchmark harness: the same job, side by side with the usual ways of doing it.

Run it with ``python -m benchmarks`` (or ``make bench``); ``python -m benchmarks --help`` lists
the size flags. The job, for every contender: all capture files of a tree → one table, one row
per record, with ``endpoint, variant, event_id, inference_time`` (timestamp), the 69 typed
feature columns ``f0..f68`` and the typed ``score``. Each contender runs in its own subprocess
(so its peak RSS is its own), is warmed up, then timed; its result is checked against
captureq's by row count and per-column checksums — a contender that disagrees does not count.

Modules: :mod:`benchmarks.data` (deterministic trees, reused when present), one module per
contender (``c_*.py``), :mod:`benchmarks.worker` (one contender in one process),
:mod:`benchmarks.harness` (orchestration, targets, the markdown report).
"""
