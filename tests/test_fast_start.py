"""A fast start: `captureq --help` imports none of the data libraries, and
`captureq query` reads its first byte before importing polars, DuckDB or the monitoring code.

Modules, not seconds, are asserted (timings depend on the machine's load); the seconds are
measured with ``python -X importtime`` and reported in the README.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from captureq.generate import generate_tree

pytestmark = pytest.mark.slow  # CLI processes traced with python -X importtime

PROBE = r"""
import json, sys
HEAVY = ("polars", "pandas", "duckdb", "pyarrow", "numpy", "rich", "fsspec", "pydantic",
         "captureq.decode", "captureq.parse", "captureq.api", "captureq.export", "captureq.pipeline", "captureq.monitor.baseline", "captureq.monitor.check", "captureq.report.build")
seen = {}
def hook(event, args):
    if event == "open" and "first_read" not in seen and isinstance(args[0], str) \
            and ".jsonl" in args[0]:
        seen["first_read"] = [m for m in HEAVY if m in sys.modules]
sys.addaudithook(hook)
sys.argv = ["captureq", *sys.argv[1:]]
try:
    from captureq.cli import main
    main()
except SystemExit:
    pass
seen["at_exit"] = [m for m in HEAVY if m in sys.modules]
sys.stderr.write("PROBE " + json.dumps(seen) + "\n")
"""


def probe(*args: str) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                       timeout=300)
    line = next(x for x in r.stderr.splitlines() if x.startswith("PROBE "))
    return json.loads(line[len("PROBE "):])


def test_help_imports_no_data_library():
    assert probe("--help")["at_exit"] == []
    assert probe("query", "--help")["at_exit"] == []


def test_query_reads_before_importing_polars_duckdb_or_monitoring(tmp_path):
    generate_tree(str(tmp_path / "capture"), hours=1, requests_per_hour=5)
    seen = probe("query", str(tmp_path / "capture"), "select count(*) from captures", "-f", "csv")
    assert "first_read" in seen
    loaded = set(seen["first_read"])
    assert not loaded & {"polars", "pandas", "duckdb", "rich"}, loaded
    assert not loaded & {"captureq.monitor.baseline", "captureq.monitor.check",
                         "captureq.report.build"}, loaded
    assert "duckdb" in seen["at_exit"]  # the query did run


def test_query_reads_before_importing_numpy_pyarrow_or_the_decoders(tmp_path):
    """Scanning and planning need none of the data libraries: the first batch is being read
    (its first file is in) before numpy, pyarrow, the parser and the decoders are imported, and
    they are imported while the rest of the batch is read. Whatever the query reads."""
    generate_tree(str(tmp_path / "capture"), hours=2, requests_per_hour=5)
    for sql in ("select count(*) from captures", "select * from predictions limit 5"):
        seen = probe("query", str(tmp_path / "capture"), sql, "-f", "csv", "--no-cache")
        assert "first_read" in seen, sql
        loaded = set(seen["first_read"])
        assert not loaded & {"numpy", "pyarrow", "captureq.decode", "captureq.parse"}, (sql, loaded)
        assert "fsspec" not in loaded, sql  # a local tree is listed and read with os calls
        assert {"numpy", "pyarrow", "captureq.parse"} <= set(seen["at_exit"])  # it did parse


def test_with_the_cache_on_a_first_query_reads_before_the_data_libraries_too(tmp_path, monkeypatch):
    """The default path (cache on, nothing cached yet): looking the cache up costs no import of
    numpy, pyarrow, fsspec or the export code before the first read."""
    generate_tree(str(tmp_path / "capture"), hours=2, requests_per_hour=5)
    for i, sql in enumerate(("select count(*) from captures", "select * from predictions limit 5")):
        # a cache of its own each: the first query's fill (detached at its exit) may be done
        monkeypatch.setenv("CAPTUREQ_CACHE", str(tmp_path / f"cache{i}"))
        seen = probe("query", str(tmp_path / "capture"), sql, "-f", "csv")
        assert "first_read" in seen, sql
        loaded = set(seen["first_read"])
        assert not loaded & {"numpy", "pyarrow", "captureq.decode", "captureq.parse", "captureq.export",
                             "captureq.pipeline", "fsspec"}, (sql, loaded)


def test_options_are_parsed_without_pydantic(tmp_path):
    """typer coerces options through pydantic (0.1-0.2 s to import and build): plain values
    (strings, a known --format, repeated strings) skip it; others still get typer's messages."""
    generate_tree(str(tmp_path / "capture"), hours=1, requests_per_hour=5)
    seen = probe("query", str(tmp_path / "capture"), "select count(*) from captures", "-f", "csv",
                 "--endpoint", "churn-*", "--endpoint", "fraud-*", "--no-cache", "--start", "2026-01-01")
    assert "pydantic" not in seen["at_exit"]
    assert "pydantic" not in probe("--version")["at_exit"]


def test_an_empty_table_does_not_import_pandas():
    """``Schema.empty_table()`` imports pandas (0.2-0.3 s) through ``pa.array([])``; every parsed
    batch builds empty quarantine tables, so captureq builds them without it."""
    code = ("import sys; from captureq import schema; schema.empty(schema.QUARANTINE); "
            "schema.empty(schema.CAPTURES); print('pandas' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "False", r.stderr


def test_the_command_skips_interpreter_teardown_once_its_duties_are_done(tmp_path):
    """The console script ends with os._exit after atexit handlers ran and output was flushed:
    the interpreter's teardown with Arrow, DuckDB and polars loaded costs ~0.3 s and does
    nothing a CLI needs. Its exit status and output are the normal ones."""
    tree = tmp_path / "capture"
    generate_tree(str(tree), hours=1, requests_per_hour=5)
    import captureq

    n = captureq.open(str(tree), cache=False).sql("select count(*) from captures").to_arrow()[0][0].as_py()
    code = (
        "import atexit, sys; from captureq import cli; "
        "atexit.register(lambda: sys.stdout.write('handler ran\\n')); "
        "sys.argv = ['captureq', *sys.argv[1:]]; cli.run(); print('not reached')"
    )
    r = subprocess.run([sys.executable, "-c", code, "query", str(tree), "select count(*) as n from captures",
                        "--format", "csv", "--no-cache"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["n", str(n), "handler ran"]
    r = subprocess.run([sys.executable, "-c", code, "query", str(tmp_path / "nope"), "select 1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "not reached" not in r.stdout and "Traceback" not in r.stderr


def test_the_prefetched_first_batch_is_the_batch_fetch_reads(tmp_path):
    """Prefetch reads the first file alone, then the rest: the same FileBatch as one fetch,
    unreadable files included, in file order; a group other than its own is not its to give."""
    import gzip

    import fsspec

    from captureq.read import Prefetch, fetch, plan_batches
    from captureq.scan import scan

    tree = tmp_path / "capture"
    generate_tree(str(tree), hours=2, requests_per_hour=5)
    hour = tree / "churn-model" / "AllTraffic" / "2026" / "01" / "01" / "00"
    hour.mkdir(parents=True, exist_ok=True)
    (hour / "z.jsonl.gz").write_bytes(gzip.compress(b'{"x": 1}\n'))
    (hour / "zz.jsonl.gz").write_bytes(b"not gzip")
    files = scan(str(tree)).files
    assert len(files) > 3
    fs = fsspec.filesystem("file")
    for broken in (None, files[0], files[2]):
        if broken is not None:
            import os

            os.remove(broken.path)  # listed, then gone: a failed file, as fetch reports it
        for local in (fs, None):  # None: the local disk, fsspec not imported
            first = Prefetch.start(local, files, batch_bytes=10**9)
            group = plan_batches(files, 10**9)[0]
            assert first.take(group[1:]) is None
            got = first.take(group)
            want = fetch(fs, group)
            assert (got.files, got.blobs, got.failed) == (want.files, want.blobs, want.failed)
            assert first.take(group) is None  # given once
    assert Prefetch.start(fs, [], 10**9) is None


def test_a_local_uri_resolves_to_the_path_fsspec_gives(tmp_path, monkeypatch):
    """The scanner lists a plain local path (or file:// URL) without importing fsspec; the path
    it reads, and the filesystem it hands on, are the ones ``fsspec.core.url_to_fs`` gives."""
    from fsspec.core import url_to_fs

    from captureq.scan import Scanner, _local_path

    (tmp_path / "tree" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for uri in (str(tmp_path / "tree"), str(tmp_path / "tree") + "/", "tree", "./tree", ".",
                "tree/sub/", "~/tree", "~", "/", "file://" + str(tmp_path / "tree"),
                "file://" + str(tmp_path / "tree") + "//", "tree/../tree/./sub", "a b/c"):
        fs, path = url_to_fs(uri)
        assert _local_path(uri, None) == path, uri
        scanner = Scanner(uri)
        assert scanner.root == (path.rstrip("/") or "/") and scanner.fs is fs, uri
    for uri in ("s3://bucket/x", "memory://x", "simplecache::file:///tmp", "file:tree", "local://x",
                "c:/x", "data:,x"):
        assert _local_path(uri, None) is None, uri
    assert _local_path(str(tmp_path), {"auto_mkdir": True}) is None


TTY_PROBE = r"""
import json, sys
seen = {}
def hook(event, args):
    if event == "open" and "first_read" not in seen and isinstance(args[0], str) \
            and ".jsonl" in args[0]:
        seen["first_read"] = [m for m in ("rich", "numpy", "pyarrow", "polars") if m in sys.modules]
sys.addaudithook(hook)
import captureq.plan as plan
real = plan.ScanPlan._read
def _read(self, needs, progress=None):
    seen.setdefault("reads", []).append(sorted(needs.parts))
    return real(self, needs, progress)
plan.ScanPlan._read = _read
sys.argv = ["captureq", *sys.argv[1:]]
try:
    from captureq.cli import main
    main()
except SystemExit:
    pass
sys.stdout.write("PROBE " + json.dumps(seen) + "\n")
"""


def test_on_a_terminal_the_query_reads_what_it_needs_before_importing_rich(tmp_path):
    """With stderr a terminal the command draws a progress display: it follows the reads the
    statement needs (``count(*)`` on captures decodes no payload there either), and rich is
    imported for it only once a batch is in (the display shows after a second anyway)."""
    import os
    import pty

    generate_tree(str(tmp_path / "capture"), hours=2, requests_per_hour=5)
    import captureq

    n = captureq.open(str(tmp_path / "capture"), cache=False).captures().num_rows
    master, slave = pty.openpty()
    try:
        r = subprocess.run([sys.executable, "-c", TTY_PROBE, "query", str(tmp_path / "capture"),
                            "select count(*) as n from captures", "-f", "csv", "--no-cache"],
                           stdout=subprocess.PIPE, stderr=slave, text=True, timeout=300,
                           env={**os.environ, "CAPTUREQ_PROGRESS_AFTER": "0"})
    finally:
        os.close(slave)
        os.close(master)
    lines = r.stdout.splitlines()
    assert lines[:2] == ["n", str(n)], r.stdout
    seen = json.loads(lines[-1][len("PROBE "):])
    assert seen["reads"] == [["captures"]]
    assert seen["first_read"] == []
