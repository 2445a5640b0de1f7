"""Advice that is right: each error names the option that helps for the side that failed.

* Credentials missing for the destination of ``export`` name ``--out-storage-option``; for the
  source, ``--storage-option`` (S3 through the moto server, no credentials anywhere).
* A missing local path says the path does not exist, with no bucket or ``anon`` hint.
* Storage options that cannot apply to a local source or destination are a warning on stderr
  (and a ``StorageOptionWarning`` in Python), not silently ignored.
* ``generate --requests-per-hour`` says it is per endpoint.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from s3util import upload_tree
from typer.testing import CliRunner

import captureq
from captureq.cli import app
from captureq.errors import StorageOptionWarning
from captureq.generate import generate_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("advice")
    generate_tree(str(base / "capture"), hours=1, requests_per_hour=4, seed=1)
    return base / "capture"


def one_line(result) -> str:
    return " ".join(result.output.split())


def endpoint_only(server, flag: str) -> list[str]:
    """The server's address and nothing else: no key, no secret (none in the environment)."""
    return [flag, f"client_kwargs.endpoint_url={server.endpoint_url}"]


# -- credentials: the option of the side that failed ---------------------------------------------
@pytest.mark.s3
def test_missing_credentials_for_the_destination_name_out_storage_option(tree, s3_server, s3_bucket):
    result = CliRunner().invoke(app, ["export", str(tree), f"s3://{s3_bucket}/export",
                                      *endpoint_only(s3_server, "--out-storage-option")])
    assert result.exit_code == 2, result.output
    said = one_line(result)
    assert "credentials" in said and "--out-storage-option profile=NAME" in said, said
    assert "--storage-option profile" not in said, said


@pytest.mark.s3
def test_missing_credentials_for_the_source_name_storage_option(tree, s3_server, s3_fs, s3_bucket, tmp_path):
    upload_tree(s3_fs, tree, f"s3://{s3_bucket}/capture")
    result = CliRunner().invoke(app, ["export", f"s3://{s3_bucket}/capture", str(tmp_path / "out"),
                                      *endpoint_only(s3_server, "--storage-option")])
    assert result.exit_code == 2, result.output
    said = one_line(result)
    assert "credentials" in said and "--storage-option profile=NAME" in said, said
    assert "--out-storage-option" not in said, said


@pytest.mark.s3
def test_an_unreachable_destination_names_out_storage_option(tree, tmp_path):
    result = CliRunner().invoke(app, ["export", str(tree), "s3://bucket/export",
                                      "--out-storage-option", "client_kwargs.endpoint_url=http://127.0.0.1:9",
                                      "--out-storage-option", "key=k", "--out-storage-option", "secret=s",
                                      "--out-storage-option", "retries=0"])
    assert result.exit_code == 2, result.output
    said = one_line(result)
    assert "--out-storage-option" in said and "--storage-option " not in said.replace("--out-storage-option", ""), said


# -- local paths: no bucket advice ----------------------------------------------------------------
@pytest.mark.parametrize("command", [["scan"], ["export", "--dry-run"]])
def test_a_missing_local_path_says_it_does_not_exist(command, tmp_path):
    missing = tmp_path / "no-such-tree"
    args = [command[0], str(missing)]
    if command[0] == "export":
        args += [str(tmp_path / "out"), *command[1:]]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    said = one_line(result)
    assert f"{missing} does not exist" in said, said
    assert "anon" not in said and "bucket" not in said and "storage_options" not in said, said


def test_a_missing_local_path_in_python_has_no_bucket_hint(tmp_path):
    with pytest.raises(captureq.CaptureqError) as err:
        captureq.open(str(tmp_path / "nope")).scan()
    assert "does not exist" in str(err.value) and "anon" not in str(err.value)


# -- options that cannot apply --------------------------------------------------------------------
def test_s3_options_with_a_local_source_are_a_warning(tree, tmp_path):
    result = CliRunner().invoke(app, ["scan", str(tree), "--storage-option", "profile=ml"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert "warning" in said and "--storage-option profile" in said and "local" in said, said


def test_s3_options_with_a_local_destination_are_a_warning(tree, tmp_path):
    result = CliRunner().invoke(app, ["export", str(tree), str(tmp_path / "out"),
                                      "--out-storage-option", "key=x", "--out-storage-option", "retries=3"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert "warning" in said and "--out-storage-option key" in said and "local" in said, said
    assert "retries" not in said, "retries applies to every storage"


def test_s3_options_with_a_local_source_warn_in_python(tree):
    with pytest.warns(StorageOptionWarning, match="anon"):
        captureq.open(str(tree), storage_options={"anon": True})
    with warnings.catch_warnings():
        warnings.simplefilter("error", StorageOptionWarning)
        captureq.open(str(tree), storage_options={"retries": 1})  # captureq's own: applies


# -- generate ---------------------------------------------------------------------------------------
def test_generate_help_says_requests_are_per_endpoint():
    result = CliRunner().invoke(app, ["generate", "--help"], terminal_width=200)
    said = one_line(result)
    assert "per endpoint" in said and "split among endpoints" not in said, said


def test_refused_credentials_on_the_destination_name_out_storage_option():
    from botocore.exceptions import ClientError

    from captureq.cli_errors import explain
    from captureq.storage import RetryPolicy

    def refused():
        raise ClientError({"Error": {"Code": "InvalidAccessKeyId", "Message": "no such key"}}, "PutObject")

    for side, flag, other in (("destination", "--out-storage-option", "--storage-option profile"),
                              ("source", "--storage-option", "--out-storage-option")):
        with pytest.raises(ClientError) as err:
            RetryPolicy(retries=0, side=side).call("PUT", "s3://bucket/export/x", refused)
        said = explain(err.value)
        assert "refused the credentials" in said and f"{flag} profile=NAME" in said, said
        assert other not in said, said
