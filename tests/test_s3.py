"""captureq over S3: a real S3 server on loopback (moto's server mode) reached through s3fs.

The same tree read from disk and from S3 gives the same tables; a time window lists only the
hours it asks for (counted on the server); the CLI and the Parquet export work on S3 URLs.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from s3util import new_bucket, upload_tree
from trees import capture, write_captures
from typer.testing import CliRunner

import captureq
from captureq.cli import app
from captureq.generate import EndpointSpec, GenerateSummary, generate_tree

pytestmark = pytest.mark.s3

UTC = timezone.utc
TABLES = ("captures", "inputs", "outputs", "labels", "quarantine")


# -- a capture tree on disk and the same tree in a bucket --------------------------------------
@dataclass
class LocalTree:
    capture: Path
    labels: Path
    summary: GenerateSummary  # of the CSV/JSON/BASE64 endpoints
    captures: int  # capture lines that parse, in all
    files: int  # capture files to read (.jsonl and .jsonl.gz)


@pytest.fixture(scope="module")
def local_tree(tmp_path_factory) -> LocalTree:
    """CSV, JSON and BASE64 endpoints with labels (generate_tree), a gzip endpoint, a junk line,
    an undecodable payload, a bad label line and a text file that must be skipped."""
    base = tmp_path_factory.mktemp("tree")
    capture_dir, labels_dir = base / "capture", base / "labels"
    summary = generate_tree(
        str(capture_dir), hours=3, requests_per_hour=8, labels_out=str(labels_dir), seed=7
    )
    gz = generate_tree(
        str(capture_dir),
        hours=2,
        requests_per_hour=3,
        seed=8,
        compress=True,
        endpoints=[EndpointSpec("gz-ep", n_features=3, label_encoding=None)],
    )
    when = summary.start + timedelta(minutes=30)
    bad_payload = {
        "observedContentType": "text/csv",
        "mode": "INPUT",
        "data": "%%%",
        "encoding": "BASE64",
    }
    write_captures(
        capture_dir,
        [
            capture(bad_payload, "0.5", event_id="bad-payload", when=when),
            "{this is not json",
            capture("1,2\n", "0.7", event_id="good", when=when),
        ],
        endpoint="churn-xgb",
        when=when,
        name="planted.jsonl",
    )
    (capture_dir / "churn-xgb/AllTraffic" / f"{when:%Y/%m/%d/%H}" / "notes.txt").write_text(
        "skip me\n"
    )
    label_file = Path(min(summary.label_files))
    label_file.write_text(label_file.read_text() + '{"groundTruthData": 42}\n')
    captures = summary.captures + gz.captures + 2  # the planted file has two good lines
    files = summary.files_written + gz.files_written + 1
    return LocalTree(capture_dir, labels_dir, summary, captures, files)


@pytest.fixture(scope="module")
def s3_tree(local_tree, s3_server) -> tuple[str, str]:
    """The local tree uploaded (over HTTP) to s3://{bucket}/capture and s3://{bucket}/labels."""
    fs = s3_server.filesystem()
    bucket = new_bucket(fs)
    upload_tree(fs, local_tree.capture, f"s3://{bucket}/capture")
    upload_tree(fs, local_tree.labels, f"s3://{bucket}/labels")
    return f"s3://{bucket}/capture", f"s3://{bucket}/labels"


def relative_sources(table: pa.Table, roots: tuple[str, ...]) -> pa.Table:
    """``source_file`` made relative to the tree it came from (every value must be under one);
    ``source_modified`` (when the object was written) differs between copies, so it is dropped
    after checking that both storages report one."""
    if "source_modified" in table.column_names:
        assert table["source_modified"].null_count == 0
        table = table.drop_columns(["source_modified"])
    if "source_file" not in table.column_names:
        return table
    rel = []
    for url in table["source_file"].to_pylist():
        root = next((r for r in roots if url.startswith(r.rstrip("/") + "/")), None)
        assert root is not None, f"{url} is not under {roots}"
        rel.append(f"{roots.index(root)}:{url[len(root.rstrip('/')) + 1 :]}")
    i = table.column_names.index("source_file")
    return table.set_column(i, "source_file", pa.array(rel, pa.string()))


def test_s3_and_local_give_identical_tables(local_tree, s3_tree, s3_options):
    local = captureq.open(str(local_tree.capture), labels=str(local_tree.labels)).load()
    remote = captureq.open(s3_tree[0], labels=s3_tree[1], storage_options=s3_options).load()

    # the comparison means something: every encoding, gzip, labels and quarantined rows are there
    encodings = set(local.captures["input_encoding"].to_pylist())
    assert {"CSV", "JSON", "BASE64"} <= encodings
    assert local.captures.num_rows == local_tree.captures
    assert any(s.endswith(".jsonl.gz") for s in remote.captures["source_file"].to_pylist())
    assert local.labels.num_rows > 0
    assert set(local.quarantine["stage"].to_pylist()) >= {"line", "input"}
    assert any("/labels/" in s for s in local.quarantine["source_file"].to_pylist())
    assert remote.quarantine["source_file"][0].as_py().startswith("s3://")

    local_roots = (
        local.scan.files[0].url.split("/capture/")[0] + "/capture",
        local.label_scan.files[0].url.split("/labels/")[0] + "/labels",
    )
    for name in TABLES:
        a = relative_sources(getattr(local, name), local_roots)
        b = relative_sources(getattr(remote, name), s3_tree)
        assert a.schema == b.schema, name
        assert a.equals(b), f"{name}: local and S3 differ"
    assert remote.captures["capture_id"].equals(local.captures["capture_id"])
    assert remote.counts == local.counts
    assert [u for u, _ in remote.scan.skipped] == [
        f"{s3_tree[0]}/{u[len(local_roots[0]) + 1 :]}" for u, _ in local.scan.skipped
    ]


def test_sql_over_s3_matches_the_generator(local_tree, s3_tree, s3_options):
    summary = local_tree.summary
    cq = captureq.open(
        s3_tree[0], labels=s3_tree[1], storage_options=s3_options, endpoint="housing-ll"
    )
    n = cq.sql("select count(*) as n from inputs").to_arrow()["n"][0].as_py()
    assert n == summary.endpoints["housing-ll"].input_records


# -- the CLI with --storage-option --------------------------------------------------------------
def cli_options(s3_server) -> list[str]:
    return [
        "--storage-option",
        "key=testing",
        "--storage-option",
        "secret=testing",
        "--storage-option",
        f"client_kwargs.endpoint_url={s3_server.endpoint_url}",
        "--storage-option",
        "use_listings_cache=false",
    ]


def test_cli_query_over_s3_prints_csv_with_a_header(local_tree, s3_tree, s3_server):
    summary = local_tree.summary
    sql = "select endpoint, count(*) as captures from captures where endpoint <> 'gz-ep' group by 1 order by 1"
    result = CliRunner().invoke(
        app, ["query", s3_tree[0], sql, "--format", "csv", *cli_options(s3_server)]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    planted = {"churn-xgb": 2}
    assert rows == [["endpoint", "captures"]] + [
        [name, str(e.captures + planted.get(name, 0))]
        for name, e in sorted(summary.endpoints.items())
    ]


def test_cli_storage_options_are_checked():
    result = CliRunner().invoke(
        app, ["query", "s3://bucket/capture", "select 1", "--storage-option", "endpoint_url"]
    )
    assert result.exit_code == 2
    assert "KEY=VALUE" in result.output


def test_cli_storage_options_nest_and_parse_values():
    from captureq.cli_options import storage_options

    assert storage_options(
        [
            "anon=false",
            "default_block_size=1024",
            "client_kwargs.region_name=eu-west-1",
            "config_kwargs.connect_timeout=2.5",
            "client_kwargs.endpoint_url=http://h:9000",
        ]
    ) == {
        "anon": False,
        "default_block_size": 1024,
        "client_kwargs": {"region_name": "eu-west-1", "endpoint_url": "http://h:9000"},
        "config_kwargs": {"connect_timeout": 2.5},
    }
    assert storage_options(None) is None


# -- export from S3 to a local folder -------------------------------------------------------------
def parquet_files(out: Path) -> set[Path]:
    return {p for p in out.rglob("*.parquet") if "_captureq" not in p.parts}


def test_export_from_s3_is_incremental(local_tree, s3_tree, s3_options, s3_server, tmp_path):
    summary, files = local_tree.summary, local_tree.files
    out = tmp_path / "out"
    cq = captureq.open(s3_tree[0], labels=s3_tree[1], storage_options=s3_options)
    first = cq.export(str(out))
    assert first.files_exported == files
    assert first.label_files_exported == summary.label_files_written
    captures = duckdb.execute(
        f"select count(*) from read_parquet('{out}/captures/**/*.parquet')"
    ).fetchone()[0]
    assert captures == first.rows["captures"] == cq.captures().num_rows
    written = parquet_files(out)

    # a second run, through the CLI: nothing new
    again = CliRunner().invoke(
        app, ["export", s3_tree[0], str(out), "--labels", s3_tree[1], *cli_options(s3_server)]
    )
    assert again.exit_code == 0, again.output
    assert re.search(
        rf"exported 0 new files \({files} already done, 0 label files\)", again.stdout
    ), again.stdout
    assert parquet_files(out) == written
    # the local copy of the tree shares the manifest (sources are keyed by their tree-relative path)
    local = captureq.open(str(local_tree.capture), labels=str(local_tree.labels)).export(str(out))
    assert (local.files_exported, local.label_files_exported, local.files_skipped) == (0, 0, files)


def test_a_missing_s3_prefix_is_a_scan_error(s3_bucket, s3_options):
    with pytest.raises(captureq.ScanError, match=rf"s3://{s3_bucket}/nothing-here does not exist"):
        captureq.open(f"s3://{s3_bucket}/nothing-here", storage_options=s3_options).captures()


# -- time windows prune the listing: LIST requests counted on the server ------------------------
ENDPOINTS = ("churn", "fraud", "housing")
VARIANTS = ("AllTraffic", "Canary")
DAY0 = datetime(2026, 1, 1, tzinfo=UTC)


def hourly_objects(days: range) -> dict[str, bytes]:
    """One tiny object per endpoint, variant and hour of each day in ``days``."""
    return {
        f"capture/{e}/{v}/{DAY0 + timedelta(days=d, hours=h):%Y/%m/%d/%H}/00-00-000-x.jsonl": b"{}\n"
        for e in ENDPOINTS
        for v in VARIANTS
        for d in days
        for h in range(24)
    }


@pytest.fixture
def hourly_bucket(s3_server, s3_bucket) -> str:
    """3 endpoints x 2 variants x 10 days x 24 hours = 1,440 objects."""
    s3_server.seed(s3_bucket, hourly_objects(range(10)))
    return s3_bucket


def listed(s3_server, bucket, **window):
    """Scan ``s3://bucket/capture`` with a fresh client; the LIST requests that reached the server."""
    s3_server.log.clear()
    result = captureq.scan(
        f"s3://{bucket}/capture", storage_options=s3_server.storage_options(), **window
    )
    return result, s3_server.log.lists(bucket)


def is_discovery(request) -> bool:
    """A LIST of the root or an endpoint folder, one level deep: it returns folder names only."""
    return re.fullmatch(r"capture/([^/]+/)?", request.prefix) is not None and request.contents == 0


HOUR_PREFIX = re.compile(r"capture/[^/]+/[^/]+/\d{4}/\d\d/\d\d/\d\d/")
MAX_DISCOVERY = 3 + len(ENDPOINTS)  # the root (s3fs checks isfile/isdir on it too), each endpoint


def test_three_hours_list_each_hour_folder_of_each_variant_once(s3_server, hourly_bucket):
    result, lists = listed(
        s3_server, hourly_bucket, start="2026-01-05T10:00Z", end="2026-01-05T13:00Z"
    )
    assert len(result.files) == 3 * len(ENDPOINTS) * len(VARIANTS)
    hour_lists = sorted(r.prefix for r in lists if HOUR_PREFIX.fullmatch(r.prefix))
    assert hour_lists == sorted(
        f"capture/{e}/{v}/2026/01/05/{h}/"
        for e in ENDPOINTS
        for v in VARIANTS
        for h in ("10", "11", "12")
    )
    assert all(is_discovery(r) for r in lists if not HOUR_PREFIX.fullmatch(r.prefix))
    assert len(lists) <= MAX_DISCOVERY + 3 * len(ENDPOINTS) * len(VARIANTS)
    # no object outside the window was listed
    assert sum(r.contents for r in lists) == len(result.files)
    assert len(hour_lists) <= result.list_calls <= len(lists)  # the scanner's own count agrees


def test_a_windows_lateness_lists_one_hour_folder_more_on_each_side(s3_server, hourly_bucket):
    """What every reader lists for an hourly window (lateness one hour): the hour folder
    before, the window's own, and the one after: one LIST each, nothing else."""
    result, lists = listed(s3_server, hourly_bucket, start="2026-01-05T10:00Z",
                           end="2026-01-05T11:00Z", lateness=timedelta(hours=1))
    hour_lists = sorted(r.prefix for r in lists if HOUR_PREFIX.fullmatch(r.prefix))
    assert hour_lists == sorted(f"capture/{e}/{v}/2026/01/05/{h}/"
                                for e in ENDPOINTS for v in VARIANTS for h in ("09", "10", "11"))
    assert all(is_discovery(r) for r in lists if not HOUR_PREFIX.fullmatch(r.prefix))
    assert len(lists) <= MAX_DISCOVERY + 3 * len(ENDPOINTS) * len(VARIANTS)
    assert sum(r.contents for r in lists) == len(result.files) == 3 * len(ENDPOINTS) * len(VARIANTS)
    # the plan (Python API, CLI, cache, export) lists exactly the same
    s3_server.log.clear()
    tree = captureq.open(f"s3://{hourly_bucket}/capture", storage_options=s3_server.storage_options(),
                         start="2026-01-05T10:00Z", end="2026-01-05T11:00Z")
    assert [f.rel for f in tree.scan().files] == [f.rel for f in result.files]
    assert sorted(r.prefix for r in s3_server.log.lists(hourly_bucket)
                  if HOUR_PREFIX.fullmatch(r.prefix)) == hour_lists


def test_one_day_lists_nothing_from_other_days(s3_server, hourly_bucket):
    result, lists = listed(s3_server, hourly_bucket, start="2026-01-05", end="2026-01-06")
    assert {f.hour.date() for f in result.files} == {datetime(2026, 1, 5).date()}
    assert len(result.files) == 24 * len(ENDPOINTS) * len(VARIANTS)
    for r in lists:
        assert is_discovery(r) or r.prefix.endswith("/2026/01/05/"), r.prefix
    assert len(lists) <= MAX_DISCOVERY + len(ENDPOINTS) * len(VARIANTS)  # one listing per variant
    assert sum(r.contents for r in lists) == len(result.files)


def test_a_two_hour_query_costs_the_same_when_the_tree_doubles(s3_server, hourly_bucket):
    window = {"start": "2026-01-03T22:00Z", "end": "2026-01-04T00:00Z"}
    unpruned = {"endpoint": "churn", "variant": "Canary"}

    def cost(**kw):
        result, lists = listed(s3_server, hourly_bucket, **kw)
        return len(result.files), len(lists), sum(r.contents for r in lists), result.list_calls

    before, walk_before = cost(**window), cost(**unpruned)
    s3_server.seed(hourly_bucket, hourly_objects(range(10, 20)))  # 20 days now
    after, walk_after = cost(**window), cost(**unpruned)
    assert after == before
    assert before[0] == 2 * len(ENDPOINTS) * len(VARIANTS)
    # the counter does see the tree grow: a scan without a window lists every object
    assert (walk_before[0], walk_after[0]) == (240, 480)
    assert (walk_before[2], walk_after[2]) == (240, 480)
