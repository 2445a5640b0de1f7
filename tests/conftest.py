from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Real capture files, copied from the project's shared corpus into the repository so that a
# fresh clone runs every test (tests/data/corpus/SOURCES.md says where each came from).
CORPUS = ROOT / "tests" / "data" / "corpus"
# Test data, not tests: scripts there (tests/data/clarify/make_reference.py) run in a virtualenv
# of their own and are never collected, not even by --doctest-modules.
collect_ignore_glob = ["data/*"]


def pytest_collection_modifyitems(items):
    """A test that starts a JVM (``spark``) or uses the loopback S3 server is ``slow``: ``make
    test-fast`` (``-m 'not slow'``) leaves it out, ``make test`` runs it."""
    for item in items:
        if item.get_closest_marker("spark") or "s3_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _private_query_cache(tmp_path_factory):
    """Queries fill a Parquet cache (captureq.cache): keep the tests' in a temporary folder,
    never the developer's ~/.cache (CLI subprocesses inherit the variable)."""
    import os

    from captureq import cache

    old = os.environ.get("CAPTUREQ_CACHE")
    os.environ["CAPTUREQ_CACHE"] = str(tmp_path_factory.mktemp("captureq-cache"))
    yield
    cache.wait()
    if old is None:
        os.environ.pop("CAPTUREQ_CACHE", None)
    else:
        os.environ["CAPTUREQ_CACHE"] = old


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The real capture files in ``tests/data/corpus``: missing data is a failure, not a skip."""
    if not any(CORPUS.rglob("*.jsonl")):
        raise FileNotFoundError(f"the test corpus is missing from {CORPUS}: restore it with git checkout")
    return CORPUS


# -- S3: a real S3 server on loopback (moto's server mode), see s3util.py ---------------------
@pytest.fixture(scope="session")
def s3_server():
    """moto's ThreadedMotoServer on a free port, for the whole session.

    Dummy credentials travel in ``storage_options``; the AWS config files point at nothing and
    no profile is set, so a developer's real credentials are never read.
    """
    from s3util import S3Server

    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_CONFIG_FILE", str(ROOT / "tests" / "no-such-aws-config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(ROOT / "tests" / "no-such-aws-credentials"))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        server = S3Server().start()
        yield server
        server.stop()


@pytest.fixture
def s3_options(s3_server) -> dict:
    """``storage_options`` that reach the loopback S3 server."""
    return s3_server.storage_options()


@pytest.fixture
def s3_fs(s3_server):
    """An s3fs filesystem on the loopback server (for setting up and inspecting buckets)."""
    return s3_server.filesystem()


@pytest.fixture
def s3_bucket(s3_server, s3_fs) -> str:
    """A fresh, empty bucket (unique name, so tests never see each other's objects)."""
    from s3util import new_bucket

    name = new_bucket(s3_fs)
    s3_server.log.clear()
    return name


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the modules that ask Spark too (two cores, UTC, loopback)."""
    pytest.importorskip("pyspark")
    import os
    import sys

    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers run this Python
    return (SparkSession.builder.master("local[2]").appName("captureq-tests")
            .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC")
            .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
            .getOrCreate())
