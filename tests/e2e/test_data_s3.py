"""Datasets from a real S3-protocol server (moto's, on 127.0.0.1), through the CLI.

The pin wins: the stage reads the pinned content even after the bucket
changes; drift is reported from one listing (no object GET); `canon data
update` re-pins on purpose; a vanished source with a cached pin still runs;
a dead endpoint and injected 5xx answers are survived or reported, typed.
"""

from __future__ import annotations

import json
import socket
import sys

import boto3
import pytest
import s3fs  # noqa: F401  (the s3 extra; make test installs it)
import yaml

from tests.e2e.conftest import Workspace

COPY = "import pathlib, shutil, sys; src, out = map(pathlib.Path, sys.argv[1:]); " \
       "out.write_text(''.join(sorted(f'{p.relative_to(src)}={p.read_text()}' " \
       "for p in src.rglob('*') if p.is_file())))"


@pytest.fixture
def bucket(s3) -> str:  # type: ignore[no-untyped-def]
    name = s3.new_bucket("canon-data")
    client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")
    for i in range(5):
        client.put_object(Bucket=name, Key=f"weather/part-{i}.csv", Body=f"row {i}\n".encode())
    return name


def project(ws: Workspace, bucket: str) -> None:
    ws.write({"copy.py": COPY})
    doc = {
        "project": "t",
        "data": {"weather": {"source": "${profile.data_root}/weather"}},
        "stages": {"read": {"cmd": [sys.executable, "copy.py", "${data.weather}", "out.txt"],
                            "deps": ["copy.py", "data.weather"], "outs": ["out.txt"]}},
        "default_profile": "cloud",
        "profiles": {"cloud": {"data_root": f"s3://{bucket}"}},
    }
    ws.write({"canon.yaml": yaml.safe_dump(doc, sort_keys=False)})


def env(s3) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {**s3.env, "AWS_ENDPOINT_URL": s3.endpoint}


def test_pin_drift_update_from_s3(ws: Workspace, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    project(ws, bucket)
    e = env(s3)
    status = ws.canon("status", env=e)
    assert status.returncode == 1 and f"DATA_NEW s3://{bucket}/weather" in status.stdout
    applied = ws.canon("apply", env=e)
    assert applied.returncode == 0, applied.stderr
    pinned = ws.read("out.txt")
    assert pinned == "".join(f"part-{i}.csv=row {i}\n" for i in range(5))
    lock = yaml.safe_load(ws.read("canon.lock"))["profiles"]["cloud"]["data"]["weather"]
    assert lock["files"] == 5 and lock["dir"] is True and lock["source"] == f"s3://{bucket}/weather"
    assert lock["index"].startswith("sha256:")
    mount = ws.root / ".canon/data/weather/part-0.csv"
    assert mount.read_text() == "row 0\n" and not mount.stat().st_mode & 0o222  # read-only

    # The bucket changes: one added, one removed, one changed.
    client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")
    client.put_object(Bucket=bucket, Key="weather/part-9.csv", Body=b"new\n")
    client.delete_object(Bucket=bucket, Key="weather/part-0.csv")
    client.put_object(Bucket=bucket, Key="weather/part-1.csv", Body=b"edited\n")
    gets_before = s3.requests("GET", f"/{bucket}/weather/")
    status = ws.canon("status", env=e)
    assert status.returncode == 0, status.stdout  # drift alone is not out of date
    assert "DATA_DRIFT" in status.stdout
    assert "1 added (part-9.csv); 1 removed (part-0.csv); 1 changed (part-1.csv)" in status.stdout
    assert s3.requests("GET", f"/{bucket}/weather/") == gets_before  # one listing, no object GET

    data_status = ws.canon("data", "status", "--json", env=e)
    assert data_status.returncode == 1
    (row,) = json.loads(data_status.stdout)
    assert row["state"] == "drift" and row["drift"]["added"] == 1 and row["drift"]["changed"] == 1

    # The pin wins: a forced re-run still reads the pinned bytes.
    assert ws.canon("apply", "-f", "read", env=e).returncode == 0
    assert ws.read("out.txt") == pinned

    # Re-pin on purpose: the stage is now out of date with DEP_CHANGED data.weather.
    update = ws.canon("data", "update", "weather", env=e)
    assert update.returncode == 0, update.stderr
    status = ws.canon("status", env=e)
    assert status.returncode == 1 and "DEP_CHANGED data.weather" in status.stdout
    assert ws.canon("apply", env=e).returncode == 0
    assert ws.read("out.txt") == "part-1.csv=edited\npart-2.csv=row 2\npart-3.csv=row 3\n" \
                                 "part-4.csv=row 4\npart-9.csv=new\n"
    assert ws.canon("data", "status", env=e).returncode == 0


def test_vanished_source_keeps_running_from_the_cached_pin(ws: Workspace, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    project(ws, bucket)
    e = env(s3)
    assert ws.canon("apply", env=e).returncode == 0
    client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")
    for i in range(5):
        client.delete_object(Bucket=bucket, Key=f"weather/part-{i}.csv")
    status = ws.canon("status", env=e)
    assert "SOURCE_MISSING" in status.stdout and "the pin is cached" in status.stdout
    forced = ws.canon("apply", "-f", "read", env=e)
    assert forced.returncode == 0, forced.stderr
    assert ws.read("out.txt").startswith("part-0.csv=row 0")


def test_never_pinned_missing_source_is_a_typed_error(ws: Workspace, s3) -> None:  # type: ignore[no-untyped-def]
    empty = s3.new_bucket("canon-empty")
    project(ws, empty)
    result = ws.canon("apply", env=env(s3))
    assert result.returncode == 4
    assert f"data.weather: s3://{empty}/weather does not exist" in result.stderr
    assert not (ws.root / "canon.lock").exists()


def test_injected_5xx_is_retried(ws: Workspace, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    project(ws, bucket)
    s3.fail_next(2, status=503, method="GET", contains="list-type")
    try:
        result = ws.canon("apply", env=env(s3))
    finally:
        s3.clear_faults()
    assert result.returncode == 0, result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dead_endpoint_is_reported_redacted_and_bounded(ws: Workspace, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    project(ws, bucket)
    e = env(s3)
    assert ws.canon("apply", env=e).returncode == 0
    lock = ws.read("canon.lock")
    dead = {**e, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    status = ws.canon("data", "status", env=dead, timeout=90)
    assert status.returncode == 1 and "unreachable" in status.stdout
    assert "after 3 attempts" in status.stdout
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in status.stdout + status.stderr
    update = ws.canon("data", "update", "weather", env=dead, timeout=90)
    assert update.returncode == 4 and "data.weather: cannot list" in update.stderr
    assert ws.read("canon.lock") == lock  # untouched on failure


def test_credentials_in_a_source_url_are_refused_redacted(ws: Workspace) -> None:
    ws.write({"canon.yaml": "project: t\ndata:\n  d: {source: 's3://AKIAX:hunter2@b/x'}\n"})
    result = ws.canon("status")
    assert result.returncode == 2
    assert "s3://***@b/x has credentials in it" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


def test_data_add_from_s3_keeps_the_users_text(ws: Workspace, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    text = "# my project\nproject: t   # keep this comment\ndata:\n    old: {source: input.txt}\n" \
           "stages: {}\n"
    ws.write({"canon.yaml": text})
    result = ws.canon("data", "add", "weather", f"s3://{bucket}/weather", env=env(s3))
    assert result.returncode == 0, result.stderr
    assert ws.read("canon.yaml") == text.replace(
        "stages: {}", f'    weather:\n      source: "s3://{bucket}/weather"\nstages: {{}}')
    listed = json.loads(ws.canon("data", "ls", "--json", env=env(s3)).stdout)
    weather = next(r for r in listed if r["name"] == "weather")
    assert weather["files"] == 5 and weather["pinned"]
    assert not next(r for r in listed if r["name"] == "old")["pinned"]
