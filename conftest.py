"""The doctests of ``captureq/`` (``make test`` collects them with ``--doctest-modules``): each
runs from the repository root, so an example can open ``tests/data/corpus/...``, and queries
fill a temporary Parquet cache, never the developer's ``~/.cache``. tests/conftest.py sets up
the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _doctest_at_the_root(request, monkeypatch, tmp_path_factory):
    if type(request.node).__name__ != "DoctestItem":
        yield
        return
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CAPTUREQ_CACHE", str(tmp_path_factory.mktemp("doctest-cache")))
    yield
    from captureq import cache

    cache.wait()
