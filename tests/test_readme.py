"""The README's shell commands run as written, on (a small version of) the demo data.

Every line of every ```sh block runs with bash in a folder holding ``demo-data/`` as
``make demo`` writes it, except lines that need what a test cannot give: ``make`` itself
(it installs into the virtualenv), the interactive duckdb shell, and the S3 / Spark cluster
lines (tests/test_s3.py and tests/test_spark.py run those paths against a test server and
Spark in local mode).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from captureq.demo import make_demo_data

pytestmark = pytest.mark.slow  # runs the README's commands on the demo data, each a CLI process

ROOT = Path(__file__).resolve().parents[1]

SKIP = [
    (re.compile(r"^make\b"), "make installs into the virtualenv; the suite runs inside it"),
    (re.compile(r"^captureq shell\b"), "opens the interactive duckdb shell"),
    (re.compile(r"^\S*duckdb -init\b"), "the interactive duckdb shell"),
    (re.compile(r"^D "), "typed inside the duckdb shell"),
    (re.compile(r"s3://"), "S3: tests/test_s3.py runs it against the moto server"),
    (re.compile(r"^captureq replay .*--to http://127\.0\.0\.1:8080/"),
     "a model served on that port: tests/test_replay.py replays to candidates it serves"),
    (re.compile(r"--engine spark|spark-submit|venv-pack|PYSPARK_PYTHON"),
     "a Spark cluster: tests/test_spark.py runs the Spark engine in local mode"),
]


def readme_commands() -> list[str]:
    """Every command of the README's ```sh blocks, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        commands += [line.strip() for line in joined.splitlines() if line.strip()]
    return commands


def skip_reason(command: str) -> str | None:
    for pattern, why in SKIP:
        if pattern.search(command):
            return why
    return None


COMMANDS = readme_commands()
RUNNABLE = [c for c in COMMANDS if skip_reason(c) is None]


def test_the_readme_has_commands_to_run():
    """Not run here: only the kinds of line listed in SKIP (not counted as test skips)."""
    assert len(RUNNABLE) >= 12, RUNNABLE
    assert any(c.startswith("captureq baseline demo-data/training.csv") for c in RUNNABLE)
    not_run = [c for c in COMMANDS if c not in RUNNABLE]
    assert len(not_run) <= 15, not_run  # make, the interactive shells, S3 and Spark lines


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A folder with a small ``demo-data/`` (36 hours; the drift starts at hour 30)."""
    work = tmp_path_factory.mktemp("readme")
    make_demo_data(work / "demo-data", hours=36, requests_per_hour=12)
    return work


@pytest.fixture(scope="session")
def shell_env(demo_dir) -> dict:
    bindir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
        "CAPTUREQ_CACHE": str(demo_dir / "cache"),
        "COLUMNS": "200",
    }


@pytest.mark.parametrize("command", RUNNABLE)
def test_readme_command_runs_as_written(command, demo_dir, shell_env):
    r = subprocess.run(["bash", "-c", "set -o pipefail; " + command], cwd=demo_dir, env=shell_env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{command}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    assert "Traceback" not in r.stderr
