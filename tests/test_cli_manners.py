"""The CLI's manners: a version, the same options everywhere, progress only on a
terminal, a readable `generate`, helpful help, skip reasons, and errors instead of tracebacks."""

from __future__ import annotations

import gzip
import json
import os
import pty
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

import captureq
from captureq.cli import app
from captureq.generate import generate_tree

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "captureq"]
runner = CliRunner()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("manners")
    summary = generate_tree(
        str(base / "capture"), labels_out=str(base / "labels"), hours=3, requests_per_hour=12
    )
    return base / "capture", base / "labels", summary


def run(*args, env=None, timeout=120, cwd=None) -> subprocess.CompletedProcess:
    merged = {**os.environ, **(env or {})}
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout,
        env={k: v for k, v in merged.items() if v is not None}, cwd=cwd,
    )


# -- version ----------------------------------------------------------------------------------
def test_version_is_one_source_of_truth():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" in project.get("dynamic", []), "pyproject reads the version from captureq"
    r = run("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"captureq {captureq.__version__}"


# -- the same options, with the same names, everywhere ---------------------------------------
WINDOW = {"--start", "--end", "--endpoint", "--variant", "--storage-option"}
READERS = {
    "scan": WINDOW | {"--labels", "--format", "--quiet"},
    "query": WINDOW | {"--labels", "--format", "--quiet"},
    "export": WINDOW | {"--labels", "--quiet"},
    "sql": {"--labels", "--storage-option", "--cache"},
    "shell": {"--labels", "--storage-option", "--cache"},
    "baseline": WINDOW | {"--endpoint", "--format", "--quiet"},
    "monitor": WINDOW | {"--format", "--quiet"},
    "quality": WINDOW | {"--labels", "--format", "--quiet"},
    "report": WINDOW | {"--labels", "--quiet"},
    "compare": (WINDOW - {"--variant"}) | {"--labels", "--format", "--quiet"},  # two variants
}


def _commands():
    return typer.main.get_command(app).commands


def test_every_command_that_reads_a_tree_takes_the_shared_options():
    commands = _commands()
    for name, wanted in READERS.items():
        opts = {o for p in commands[name].params for o in p.opts}
        assert wanted <= opts, f"{name} lacks {sorted(wanted - opts)}"
    shared = {}
    for name in READERS:  # one definition: the same help text for the same option everywhere
        for p in commands[name].params:
            if p.opts[0] in WINDOW | {"--labels", "--format", "--quiet"} and name != "baseline":
                shared.setdefault(p.opts[0], set()).add(p.help)
    assert all(len(helps) == 1 for helps in shared.values()), shared


def test_format_choices_are_the_same_and_unknown_ones_are_refused(tree):
    capture, _, _ = tree
    for name in ("scan", "query", "quality", "monitor"):
        param = next(p for p in _commands()[name].params if "--format" in p.opts)
        assert param.default == "table" and param.metavar == "table|csv|json", name
    r = run("scan", capture, "--format", "yaml")
    assert r.returncode == 2 and "--format" in r.stderr and "Traceback" not in r.stderr


def test_subcommand_modules_do_not_import_the_app():
    """No cycle: the subcommand modules import only the shared options module."""
    code = (
        "import sys, captureq.monitor.cli, captureq.report.cli; "
        "assert 'captureq.cli' not in sys.modules, 'imports the app module'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for path in (ROOT / "captureq").rglob("*.py"):
        if path.name != "cli.py" or path.parent.name == "captureq":
            continue
        text = path.read_text()
        assert "from ..cli import" not in text and "from captureq.cli import" not in text, path


# -- help -----------------------------------------------------------------------------------
def test_every_command_has_an_example_and_no_bool_labels():
    for name in _commands():
        r = runner.invoke(app, [name, "--help"])
        assert r.exit_code == 0, r.output
        assert "Example:" in r.output and f"captureq {name}" in r.output, name
        assert "<bool>" not in r.output and "BOOLEAN" not in r.output, name


def test_engine_spark_says_what_it_needs():
    r = runner.invoke(app, ["export", "--help"], terminal_width=200)
    text = " ".join(r.output.split())
    assert "pip install 'captureq[spark]'" in text and "Java 17" in text


# -- generate -------------------------------------------------------------------------------
def test_generate_prints_a_summary_and_refuses_a_non_empty_folder(tmp_path):
    out = tmp_path / "sample"
    r = runner.invoke(app, ["generate", str(out), "--hours", "2", "--requests-per-hour", "6"])
    assert r.exit_code == 0, r.output
    assert "GenerateSummary(" not in r.output and "EndpointSummary(" not in r.output
    assert "captures" in r.output and "churn-xgb" in r.output and str(out) in r.output
    files = sorted(p for p in out.rglob("*") if p.is_file())
    again = run("generate", out, "--hours", "2", "--requests-per-hour", "6", "--seed", "1")
    assert again.returncode == 2 and "not empty" in again.stderr and "--force" in again.stderr
    assert sorted(p for p in out.rglob("*") if p.is_file()) == files
    assert [p.read_bytes() for p in files] == [p.read_bytes() for p in files]
    forced = runner.invoke(app, ["generate", str(out), "--hours", "2", "--force"])
    assert forced.exit_code == 0, forced.output


# -- progress -------------------------------------------------------------------------------
def test_load_reports_progress_that_adds_up(tree):
    capture, labels, summary = tree
    seen = []
    tables = captureq.open(str(capture), labels=str(labels)).load(progress=seen.append)
    assert seen, "the callback is called per batch"
    assert sum(c.files for c in seen) == tables.counts.files + tables.label_counts.files
    assert sum(c.bytes_read for c in seen) == tables.counts.bytes_read + tables.label_counts.bytes_read


def _on_a_terminal(args, env=None) -> str:
    """Run the CLI with stderr on a pseudo-terminal (stdout piped); what stderr showed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=follower,
                            stdin=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "160", **(env or {})})
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=120)
    os.close(leader)
    assert proc.returncode == 0, seen.decode(errors="replace")
    return seen.decode(errors="replace")


def test_progress_on_a_terminal_only_and_quiet_silences_it(tree):
    capture, labels, _ = tree
    now = {"CAPTUREQ_PROGRESS_AFTER": "0"}  # the tree is small: show it from the start
    shown = _on_a_terminal(["scan", capture, "--labels", labels, "-f", "json"], now)
    assert "files" in shown and "records" in shown, shown
    assert _on_a_terminal(["scan", capture, "--labels", labels, "-f", "json", "--quiet"], now) == ""
    later = {"CAPTUREQ_PROGRESS_AFTER": "60"}
    assert _on_a_terminal(["scan", capture, "--labels", labels, "-f", "json"], later) == "", (
        "work shorter than the delay shows no progress")
    piped = run("scan", capture, "--labels", labels, "-f", "json")
    assert piped.returncode == 0 and piped.stderr == ""


# -- what scan skips, and why -----------------------------------------------------------------
LINE = (
    '{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT",'
    '"data":"1,2","encoding":"CSV"}},"eventMetadata":{"eventId":"e%d",'
    '"inferenceTime":"2026-01-01T06:00:00Z"},"eventVersion":"0"}\n'
)


def test_scan_reads_json_and_upper_case_names_and_counts_skips_by_reason(tmp_path):
    hour = tmp_path / "t" / "ep" / "AllTraffic" / "2026" / "01" / "01" / "06"
    hour.mkdir(parents=True)
    (hour / "a.JSONL").write_text(LINE % 1)
    (hour / "b.json").write_text(LINE % 2)
    (hour / "c.jsonl.gz").write_bytes(gzip.compress((LINE % 3).encode()))
    (hour / "notes.txt").write_text("not data")
    (hour / "old").mkdir()
    (hour / "old" / "d.jsonl").write_text(LINE % 4)  # too deep
    variant = hour.parents[3]
    for bad in ("2026/01/01/24", "2026/13/01/00", "2026/02/30/00", "2026/1/1/6"):
        (variant / bad).mkdir(parents=True)
        (variant / bad / "x.jsonl").write_text(LINE % 5)
    (hour / "gone.jsonl").symlink_to(tmp_path / "nowhere.jsonl")

    result = captureq.scan(str(tmp_path / "t"))
    assert sorted(f.rel.rsplit("/", 1)[1] for f in result.files) == ["a.JSONL", "b.json", "c.jsonl.gz"]
    reasons = {Path(p).name if "old" not in p else "old/d.jsonl": r.split(":")[0]
               for p, r in result.skipped}
    assert reasons.pop("notes.txt") == "not a capture file"
    assert reasons.pop("old/d.jsonl") == "too deep"
    assert reasons.pop("gone.jsonl") == "broken link"
    assert sorted(r.split(":")[0] for p, r in result.skipped if p.endswith("x.jsonl")) == [
        "folder not an hour"] * 4
    assert captureq.open(str(tmp_path / "t")).captures().num_rows == 3

    r = run("scan", tmp_path / "t", "-f", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["skipped"] == {"not a capture file": 1, "too deep": 1, "broken link": 1,
                              "folder not an hour": 4}
    assert doc["counts"]["rows"] == 3 and doc["reconciles"]
    table = " ".join(run("scan", tmp_path / "t", env={"COLUMNS": "300"}).stdout.split())
    assert "7 skipped (1 broken link, 4 folder not an hour, 1 not a capture file, 1 too deep)" in table


# -- errors a person can act on ---------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def auth_s3(tmp_path_factory):
    """A moto server that checks credentials (the session's server accepts any)."""
    exe = Path(sys.executable).parent / "moto_server"
    port = _free_port()
    log = (tmp_path_factory.mktemp("moto") / "log").open("w")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT,
                            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


NO_AWS = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_ACCESS_KEY_ID": None,
    "AWS_SECRET_ACCESS_KEY": None,
    "AWS_SESSION_TOKEN": None,
    "AWS_PROFILE": None,
    "AWS_DEFAULT_PROFILE": None,
}
FAST = ["--storage-option", "config_kwargs.connect_timeout=1",
        "--storage-option", "config_kwargs.retries.max_attempts=0"]


def _not_permitted(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        return locked / "out"
    return Path("/sys/captureq-out")  # root may write anywhere but sysfs


MISTAKES = {
    "missing tree": lambda t, tmp: (["scan", tmp / "no-such-tree"], "no-such-tree"),
    "missing file": lambda t, tmp: (["baseline", tmp / "no-such.csv", tmp / "b"], "no-such.csv"),
    "output is a file": lambda t, tmp: (
        ["export", t[0], _touch(tmp / "taken")], "taken"),
    "output not permitted": lambda t, tmp: (
        ["export", t[0], _not_permitted(tmp)], str(_not_permitted(tmp).parent)),
    "baseline without its files": lambda t, tmp: (
        ["monitor", t[0], "--baseline", _mkdir(tmp / "empty-baseline")], "statistics.json"),
    "malformed baseline JSON": lambda t, tmp: (
        ["monitor", t[0], "--baseline", _bad_baseline(tmp / "bad-baseline")], "statistics.json"),
    "start after end": lambda t, tmp: (
        ["query", t[0], "select 1", "--start", "2026-01-02", "--end", "2026-01-01"], "start"),
    "unknown format": lambda t, tmp: (["query", t[0], "select 1", "-f", "xml"], "--format"),
    "SQL error": lambda t, tmp: (["query", t[0], "select nope from captures"], "nope"),
    "bad storage option": lambda t, tmp: (
        ["scan", t[0], "--storage-option", "endpoint_url"], "KEY=VALUE"),
}


def _touch(path: Path) -> Path:
    path.write_text("a file, not a folder")
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    return path


def _bad_baseline(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    (path / "statistics.json").write_text('{"version": 0.0, "dataset": ')
    (path / "constraints.json").write_text("{}")
    return path


def _assert_user_error(r: subprocess.CompletedProcess, thing: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    assert thing in r.stderr, r.stderr
    assert len([line for line in r.stderr.splitlines() if line.strip()]) <= 6, r.stderr


def _s3_mistake(kind: str, request, tmp_path):
    """The S3 cases: missing credentials (the session's server), refused ones (a server that
    checks them), and an endpoint URL nothing listens on."""
    if kind == "missing credentials":
        server, fs, bucket = (request.getfixturevalue(n) for n in ("s3_server", "s3_fs", "s3_bucket"))
        fs.pipe(f"{bucket}/c/e/v/2026/01/01/00/a.jsonl", (LINE % 1).encode())
        return [f"s3://{bucket}/c", "--storage-option",
                f"client_kwargs.endpoint_url={server.endpoint_url}"], "AWS_PROFILE"
    if kind == "bad credentials":
        url = request.getfixturevalue("auth_s3")
        return ["s3://bucket/capture", "--storage-option", f"client_kwargs.endpoint_url={url}",
                "--storage-option", "key=AKIANOTAKEY", "--storage-option", "secret=wrong"
                ], "InvalidAccessKeyId"
    url = f"http://127.0.0.1:{_free_port()}"
    return ["s3://bucket/capture", "--storage-option", f"client_kwargs.endpoint_url={url}",
            "--storage-option", "key=a", "--storage-option", "secret=b"], url


S3_MISTAKES = ("missing credentials", "bad credentials", "unreachable endpoint")


@pytest.mark.parametrize(
    "mistake",
    sorted(MISTAKES) + [pytest.param(m, marks=pytest.mark.s3) for m in S3_MISTAKES],
)
def test_user_mistakes_exit_2_with_a_message_not_a_traceback(mistake, tree, tmp_path, request):
    if mistake in S3_MISTAKES:
        where, thing = _s3_mistake(mistake, request, tmp_path)
        r = run("scan", *where, *FAST, env={**NO_AWS, "COLUMNS": "200"})
        _assert_user_error(r, thing)
        assert ("credentials" if "credentials" in mistake else "endpoint_url") in r.stderr
        return
    if mistake == "output not permitted" and os.geteuid() == 0 and not Path("/sys").is_dir():
        pytest.skip("running as root without /sys: no folder refuses writes")
    args, thing = MISTAKES[mistake](tree, tmp_path)
    _assert_user_error(run(*args, env={"COLUMNS": "200"}), thing)


def test_debug_shows_the_traceback(tmp_path):
    r = run("scan", tmp_path / "no-such-tree", env={"CAPTUREQ_DEBUG": "1"})
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_python_dash_m_and_console_script_agree():
    exe = shutil.which("captureq", path=str(Path(sys.executable).parent))
    assert exe, "the console script is installed beside this Python"
    assert run("--help").stdout.split("Commands:")[1] == subprocess.run(
        [exe, "--help"], capture_output=True, text=True).stdout.split("Commands:")[1]


def test_a_missing_optional_dependency_names_the_extra():
    from captureq.cli_errors import explain

    missing = ModuleNotFoundError("No module named 'pyspark'", name="pyspark")
    assert explain(missing) == (
        "pyspark is not installed: pip install 'captureq[spark]' and Java 17+ "
        "(java on PATH or JAVA_HOME)")
    assert "captureq[report]" in explain(ModuleNotFoundError("x", name="altair.vegalite"))
