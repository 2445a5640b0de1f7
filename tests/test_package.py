"""A package people can install: the sdist and wheel build, `twine check` passes, and the wheel
installed into a fresh virtualenv gives a working `captureq` — its own files (SQL views, report
queries), not this source tree.

Offline: the build runs without isolation (hatchling comes from the test extra), the fresh venv
has no pip of its own (this environment's pip installs the wheel into it with ``--no-deps``), and
the dependencies come from this environment's site-packages through a ``.pth`` line — which adds
the folder to the path without running its own ``.pth`` files, so the editable install of the
source tree is not on the fresh venv's path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

pytestmark = pytest.mark.slow  # builds the sdist and wheel and installs it into a fresh virtualenv

ROOT = Path(__file__).resolve().parents[1]


def _run(args, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kw)
    assert r.returncode == 0, f"{args}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", out,
          ROOT])
    return out


def test_build_and_twine_check(dist):
    wheel, = dist.glob("captureq-*.whl")
    sdist, = dist.glob("captureq-*.tar.gz")
    _run([sys.executable, "-m", "twine", "check", "--strict", wheel, sdist])
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "captureq/sql/captures.sql" in names and "captureq/report/sql/traffic.sql" in names
    meta = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    import captureq

    assert f"Version: {captureq.__version__}" in meta
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    tested = f"{sys.version_info.major}.{sys.version_info.minor}"
    claimed = [c.rsplit(":: ", 1)[1] for c in project["classifiers"]
               if c.startswith("Programming Language :: Python :: 3.")]
    assert tested in claimed, "tests/test_versions.py: the classifiers are what make test-pythons runs"
    line = next(x for x in meta.splitlines() if x.startswith("Requires-Python:"))
    assert set(line.split(":", 1)[1].strip().split(",")) == set(
        project["requires-python"].replace(" ", "").split(","))


def test_the_wheel_installs_and_runs_in_a_fresh_venv(dist, tmp_path):
    wheel, = dist.glob("captureq-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    vpy = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", vpy, "install", "--quiet", "--no-deps",
          "--no-index", wheel])
    site = _run([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout
    (Path(site.strip()) / "deps-from-test-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["CAPTUREQ_CACHE"] = str(tmp_path / "cache")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    where = _run([vpy, "-c", "import captureq; print(captureq.__file__)"], cwd=cwd, env=env)
    assert where.stdout.strip().startswith(str(venv)), where.stdout
    exe = venv / "bin" / "captureq"
    import captureq

    assert _run([exe, "--version"], cwd=cwd, env=env).stdout.strip() == (
        f"captureq {captureq.__version__}")
    _run([exe, "generate", "tree", "--labels", "labels", "--hours", "2",
          "--requests-per-hour", "6"], cwd=cwd, env=env)
    q = _run([exe, "query", "tree", "select count(*) as n from predictions", "-f", "csv",
              "--labels", "labels"], cwd=cwd, env=env)  # the packaged SQL views
    assert int(q.stdout.splitlines()[1]) > 0
    views = _run([exe, "sql", "tree"], cwd=cwd, env=env).stdout
    assert "create or replace view predictions" in views.lower()
    report = _run([vpy, "-c", "from captureq.report.data import sql_text; "
                   "print(sql_text('traffic'))"], cwd=cwd, env=env)  # packaged report queries
    assert "select" in report.stdout.lower()
