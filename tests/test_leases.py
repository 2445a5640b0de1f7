"""The writer lease (object stores) and lock (local disks) recover from a dead writer.

* An export SIGKILLed while it holds the lease (S3, the moto server) or the lock (a local
  folder) is taken over at once by the next run on the same host, lease time untouched.
* ``CAPTUREQ_LEASE_SECONDS`` is read when a lease is judged: a lease older than the current
  lease time is stale, whatever time its writer was given.
* ``--break-lease`` (``break_lease=True``) takes a lease or lock held by a live writer, says
  whose it broke, and that writer stops before its next commit.
* The message of a refused export says who holds the lease, since when, and what breaks it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import captureq
from captureq.cli import app
from captureq.errors import ExportError
from captureq.export import META, _Output
from captureq.generate import generate_benchmark_tree, generate_tree

CLI = [str(Path(sys.executable).parent / "captureq")]


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("tree")
    generate_tree(str(base / "capture"), hours=2, requests_per_hour=5, seed=3)
    return base / "capture"


@pytest.fixture(scope="module")
def mid_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mid") / "capture"
    generate_benchmark_tree(str(root), records=4000, endpoints=2, hours=3, files_per_hour=25)
    return root


def out_options(server) -> list[str]:
    flag = "--out-storage-option"
    return [flag, "key=testing", flag, "secret=testing",
            flag, f"client_kwargs.endpoint_url={server.endpoint_url}", flag, "use_listings_cache=false"]


def kill_while_it_holds(args: list[str], holds, env: dict | None = None) -> int:
    """Start ``args``, wait until ``holds()`` is true (the writer took its lease or lock and has
    committed), SIGKILL it; returns its pid."""
    env = {**os.environ, "CAPTUREQ_BATCH_BYTES": str(48 * 1024), "CAPTUREQ_WORKERS": "1", **(env or {})}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and not holds():
        time.sleep(0.05)
    assert proc.poll() is None, f"the export ended before it could be killed: {proc.stderr.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return proc.pid


def newest_lease(s3_fs, prefix: str) -> dict:
    s3_fs.invalidate_cache()
    return json.loads(s3_fs.cat(max(s3_fs.ls(f"{prefix}/{META}/lease"))))


# -- a dead writer on this host -------------------------------------------------------------------
@pytest.mark.s3
def test_a_sigkilled_export_to_s3_is_taken_over_at_once(mid_tree, s3_server, s3_fs, s3_bucket):
    out = f"s3://{s3_bucket}/export"

    def committed() -> bool:
        s3_fs.invalidate_cache()
        return s3_fs.exists(f"{s3_bucket}/export/{META}/commits")

    pid = kill_while_it_holds([*CLI, "export", str(mid_tree), out, *out_options(s3_server)], committed)
    held = newest_lease(s3_fs, f"{s3_bucket}/export")
    assert held["pid"] == pid and not held.get("released"), "the killed run left its lease"
    assert held["expires"] > time.time() + 60, "the lease time is the default, not a short one"
    began = time.monotonic()
    rerun = subprocess.run([*CLI, "export", str(mid_tree), out, *out_options(s3_server)],
                           capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert time.monotonic() - began < 60
    assert f"pid {pid}" in rerun.stderr and "process is gone" in rerun.stderr, rerun.stderr
    assert newest_lease(s3_fs, f"{s3_bucket}/export")["released"]


def test_a_sigkilled_local_export_is_taken_over_at_once(mid_tree, tmp_path):
    out = tmp_path / "export"
    pid = kill_while_it_holds([*CLI, "export", str(mid_tree), str(out)],
                              lambda: (out / META / "commits").is_dir())
    rerun = subprocess.run([*CLI, "export", str(mid_tree), str(out)], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert pid > 0


# -- the lease time, read when a lease is judged ------------------------------------------------
@pytest.mark.s3
def test_a_lease_older_than_the_current_lease_time_is_stale(small_tree, s3_options, s3_fs, s3_bucket,
                                                             monkeypatch):
    out = f"s3://{s3_bucket}/export"
    holder = _Output(out, s3_options)
    holder.lock()  # a live writer (this process) given the default 600 s
    monkeypatch.setenv("CAPTUREQ_LEASE_SECONDS", "6")  # room for a loaded machine's first try
    with pytest.raises(ExportError, match="another captureq export"):
        captureq.open(str(small_tree)).export(out, out_storage_options=s3_options)
    time.sleep(6.2)
    summary = captureq.open(str(small_tree)).export(out, out_storage_options=s3_options)
    assert summary.files_exported > 0
    assert summary.broken_lease is not None and summary.broken_lease["pid"] == os.getpid()
    assert "older than" in summary.broken_lease["why"]
    with pytest.raises(ExportError, match="lease"):
        holder.check_lease()


@pytest.mark.s3
def test_a_renewed_lease_is_judged_from_its_renewal(s3_options, s3_bucket, monkeypatch):
    out = f"s3://{s3_bucket}/export"
    holder = _Output(out, s3_options)
    holder.lock()
    monkeypatch.setenv("CAPTUREQ_LEASE_SECONDS", "4")
    for _ in range(3):  # a writer that commits more often than the lease time keeps its lease
        time.sleep(2.2)
        holder.check_lease()
        with pytest.raises(ExportError, match="another captureq export"):
            _Output(out, s3_options).lock()
    holder.unlock()


# -- --break-lease --------------------------------------------------------------------------------
@pytest.mark.s3
def test_break_lease_takes_a_live_lease_and_says_whose(small_tree, s3_server, s3_options, s3_fs, s3_bucket):
    out = f"s3://{s3_bucket}/export"
    holder = _Output(out, s3_options)
    holder.lock()
    refused = CliRunner().invoke(app, ["export", str(small_tree), out, *out_options(s3_server)])
    assert refused.exit_code == 2
    message = " ".join(refused.output.split())
    assert f"{socket.gethostname()} pid {os.getpid()}" in message, message
    assert "since 20" in message and "--break-lease" in message and "CAPTUREQ_LEASE_SECONDS" in message
    broke = CliRunner().invoke(app, ["export", str(small_tree), out, "--break-lease", *out_options(s3_server)])
    assert broke.exit_code == 0, broke.output
    said = " ".join(broke.stderr.split())
    assert f"broke the lease of {socket.gethostname()} pid {os.getpid()}" in said, said
    with pytest.raises(ExportError, match="lease"):
        holder.check_lease()


def test_break_lock_on_a_local_folder_takes_it_and_the_holder_stops(small_tree, tmp_path):
    out = str(tmp_path / "export")
    holder = _Output(out, None)
    holder.lock()
    with pytest.raises(ExportError) as refused:
        captureq.open(str(small_tree)).export(out)
    message = str(refused.value)
    assert f"pid {os.getpid()}" in message and "--break-lease" in message, message
    summary = captureq.open(str(small_tree)).export(out, break_lease=True)
    assert summary.files_exported > 0
    assert summary.broken_lease["pid"] == os.getpid()
    with pytest.raises(ExportError, match="broken"):
        holder.check_lease()
    holder.unlock()
    again = captureq.open(str(small_tree)).export(out)  # the lock is free again
    assert again.files_exported == 0 and again.broken_lease is None


def test_break_lease_with_nobody_holding_it_breaks_nothing(small_tree, tmp_path):
    summary = captureq.open(str(small_tree)).export(str(tmp_path / "export"), break_lease=True)
    assert summary.files_exported > 0 and summary.broken_lease is None
