"""push / pull / fetch / cache verify / gc through the real CLI, against a directory
remote and a real S3-protocol server (moto), checked with an independent client (awscli)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import S3Server
from tests.e2e.conftest import Workspace

# A stage that writes N small files (salted) and one 3 MiB file (pushed whole).
GEN = textwrap.dedent('''
    import os, pathlib, random, sys
    out, n, salt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rng = random.Random(salt)
    for i in range(n):
        p = pathlib.Path(out, f"d{i % 7}", f"f{i}.bin")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(salt.encode() + rng.randbytes(rng.randint(100, 6000)))
    pathlib.Path(out, "big.bin").write_bytes(salt.encode() + rng.randbytes(3 << 20))
''')

SMALL_PACKS = {"CANON_PACK_TARGET": str(64 * 1024)}


def declare(ws: Workspace, remote: dict[str, object], n: int = 120, salt: str = "a") -> None:
    ws.write({"gen.py": GEN, ".gitignore": ".canon/\n/build/\nran.log\n"})
    ws.declare(
        {"gen": {"cmd": [sys.executable, "gen.py", "build/tree", str(n), salt],
                 "deps": ["gen.py"], "outs": ["build/tree"]}},
        remotes={"store": remote},
    )


def commit(ws: Workspace, message: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "add", "-A"], cwd=ws.root, check=True)
    subprocess.run(["git", "commit", "-qm", message], cwd=ws.root, check=True, env=env)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def clone(ws: Workspace, tmp_path: Path, name: str = "clone") -> Workspace:
    dest = tmp_path / name
    subprocess.run(["git", "clone", "-q", str(ws.root), str(dest)], check=True)
    return Workspace(dest)


def cache_is_sound(ws: Workspace) -> None:
    for obj in (ws.root / ".canon" / "cache" / "sha256").rglob("*"):
        if obj.is_file():
            assert hashlib.sha256(obj.read_bytes()).hexdigest() == obj.parent.name + obj.name


def test_push_then_pull_into_a_fresh_clone_local_remote(ws: Workspace, tmp_path: Path) -> None:
    declare(ws, {"url": str(tmp_path / "remote")})
    ok(ws.canon("apply"))
    out = ok(ws.canon("push", env=SMALL_PACKS))
    assert "pushed 122 object(s)" in out  # 120 files + big.bin + the manifest
    assert "Everything is up to date" in ok(ws.canon("push"))
    keys = sorted(str(p.relative_to(tmp_path / "remote")) for p in (tmp_path / "remote").rglob("*")
                  if p.is_file())
    assert any(k.startswith("objects/") for k in keys)  # big.bin, whole
    assert len([k for k in keys if k.endswith(".pack")]) > 3  # small files in several packs
    assert len([k for k in keys if k.endswith(".idx")]) == len([k for k in keys if k.endswith(".pack")])
    commit(ws, "v1")
    other = clone(ws, tmp_path)
    out = ok(other.canon("pull"))
    assert "restored build/tree" in out
    assert tree_bytes(other.root / "build") == tree_bytes(ws.root / "build")
    assert "Everything is up to date" in ok(other.canon("pull"))
    assert ok(other.canon("status")).startswith("Everything is up to date")
    cache_is_sound(other)


def test_pull_keeps_a_modified_output_unless_forced(ws: Workspace, tmp_path: Path) -> None:
    declare(ws, {"url": str(tmp_path / "remote")}, n=5)
    ok(ws.canon("apply"))
    ok(ws.canon("push"))
    (ws.root / "build/tree/d0/f0.bin").write_bytes(b"mine")
    kept = ws.canon("pull")
    assert kept.returncode == 1 and "differs from the lock; kept" in kept.stdout
    assert (ws.root / "build/tree/d0/f0.bin").read_bytes() == b"mine"
    ok(ws.canon("pull", "--force"))
    assert (ws.root / "build/tree/d0/f0.bin").read_bytes() != b"mine"


def s3_remote(s3: S3Server) -> tuple[dict[str, object], str]:
    bucket = s3.new_bucket()
    return {"url": f"s3://{bucket}/proj", "endpoint_url": s3.endpoint}, bucket


def aws_ls(s3: S3Server, bucket: str) -> list[str]:
    aws = shutil.which("aws", path=str(Path(sys.executable).parent)) or "aws"
    out = subprocess.run(
        [aws, "s3", "ls", "--recursive", "--endpoint-url", s3.endpoint, f"s3://{bucket}/"],
        capture_output=True, text=True, env={**os.environ, **s3.env}, check=True,
    ).stdout
    return [line.split()[-1] for line in out.splitlines() if line.strip()]


def test_push_pull_s3_checked_with_awscli(ws: Workspace, tmp_path: Path, s3: S3Server) -> None:
    remote, bucket = s3_remote(s3)
    declare(ws, remote)
    ok(ws.canon("apply"))
    out = ok(ws.canon("push", "-j", "4", env={**s3.env, **SMALL_PACKS}))
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in out
    keys = aws_ls(s3, bucket)
    packs = [k for k in keys if k.endswith(".pack")]
    assert packs and all(k.startswith("proj/packs/") for k in packs)
    assert {k[:-5] for k in packs} == {k[:-4] for k in keys if k.endswith(".idx")}
    assert any(k.startswith("proj/objects/") for k in keys)
    before = len(s3.log)
    assert "Everything is up to date" in ok(ws.canon("push", env=s3.env))
    assert [m for m, _ in s3.log[before:]] == ["GET", "GET"]  # one listing each of packs/, objects/
    commit(ws, "v1")
    other = clone(ws, tmp_path)
    ok(other.canon("pull", env=s3.env))
    assert tree_bytes(other.root / "build") == tree_bytes(ws.root / "build")
    before = len(s3.log)
    assert "Everything is up to date" in ok(other.canon("pull", env=s3.env))
    assert len(s3.log) == before  # the cache is complete: the remote is not contacted
    fetched = clone(ws, tmp_path, "fetch-only")
    ok(fetched.canon("fetch", "gen", env=s3.env))
    assert not (fetched.root / "build").exists()  # fetch fills the cache only


def remote_is_consistent(s3: S3Server, bucket: str) -> None:
    """Every index names a complete pack whose objects hash to their digests."""
    import boto3

    from canon.stores.packs import PackIndex

    client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")
    keys = aws_ls(s3, bucket)
    for idx_key in [k for k in keys if k.endswith(".idx")]:
        name = idx_key.rsplit("/", 1)[1][:-4]
        pack = client.get_object(Bucket=bucket, Key=idx_key[:-4] + ".pack")["Body"].read()
        assert hashlib.sha256(pack).hexdigest() == name
        idx = PackIndex.parse(client.get_object(Bucket=bucket, Key=idx_key)["Body"].read(), name)
        for e in idx.entries:
            assert "sha256:" + hashlib.sha256(pack[e.offset:e.offset + e.length]).hexdigest() == e.digest


@pytest.mark.parametrize("how", ["failpoint", "timed"])
def test_interrupted_push_resumes_without_reuploading(
    ws: Workspace, s3: S3Server, how: str
) -> None:
    remote, bucket = s3_remote(s3)
    declare(ws, remote, n=400)
    ok(ws.canon("apply"))
    env = {**s3.env, **SMALL_PACKS}
    if how == "failpoint":  # killed right after its 5th pack, before that pack's index
        killed = ws.canon("push", "-j", "1", env={**env, "CANON_FAILPOINTS": "push.after_pack=kill:5"})
        assert killed.returncode == -signal.SIGKILL
    else:
        puts0 = s3.requests("PUT")
        proc = ws.popen("push", "-j", "2", env=env)
        deadline = time.monotonic() + 60
        while s3.requests("PUT") - puts0 < 6 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)  # mid-transfer: packs and indexes in flight
        assert proc.wait() == -signal.SIGKILL
    remote_is_consistent(s3, bucket)
    complete = [k for k in aws_ls(s3, bucket) if k.endswith(".idx")]
    assert complete  # some packs made it
    before = len(s3.log)
    ok(ws.canon("push", "-j", "2", env=env))
    puts = [p for m, p in s3.log[before:] if m == "PUT"]
    for idx in complete:  # nothing complete was uploaded again
        assert not any(idx[:-4] in p for p in puts), idx
    remote_is_consistent(s3, bucket)
    assert "Everything is up to date" in ok(ws.canon("push", env=env))


@pytest.mark.parametrize("n", [20, 120], ids=["loose", "packed"])
def test_corrupt_cache_object_is_found_and_repaired(ws: Workspace, tmp_path: Path, n: int) -> None:
    declare(ws, {"url": str(tmp_path / "remote")}, n=n)
    ok(ws.canon("apply"))
    ok(ws.canon("push"))
    if n < 64:
        victim = sorted((ws.root / ".canon/cache/sha256").rglob("*"))[-1]
        victim.chmod(0o644)
        victim.write_bytes(victim.read_bytes()[:-1])  # truncated
        name = victim.parent.name
    else:  # a byte flipped inside a pack: one object of many is bad
        from canon.stores.objects import ObjectStore

        packed = ObjectStore(ws.root / ".canon/cache").packed()
        assert len(packed) >= n
        slot = packed[len(packed) // 2].slot
        name = packed[len(packed) // 2].digest[7:9]
        os.chmod(slot.pack, 0o644)
        with open(slot.pack, "r+b") as f:
            f.seek(slot.offset + slot.length - 1)
            last = f.read(1)
            f.seek(slot.offset + slot.length - 1)
            f.write(bytes([last[0] ^ 0xFF]))
    found = ws.canon("cache", "verify")
    assert found.returncode == 1 and "corrupt  sha256:" + name in found.stdout
    assert found.stdout.count("corrupt  sha256:") == 1
    repaired = ok(ws.canon("cache", "verify", "--repair"))
    assert "(removed)" in repaired and "re-fetched 1 object(s)" in repaired
    assert ws.canon("cache", "verify").returncode == 0
    cache_is_sound(ws)


def test_corrupt_object_on_the_remote_never_enters_the_cache(ws: Workspace, tmp_path: Path) -> None:
    declare(ws, {"url": str(tmp_path / "remote")}, n=20)
    ok(ws.canon("apply"))
    ok(ws.canon("push"))
    commit(ws, "v1")
    pack = next((tmp_path / "remote" / "packs").glob("*.pack"))
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit flipped on the remote
    pack.write_bytes(bytes(data))
    other = clone(ws, tmp_path)
    pulled = other.canon("pull")
    assert pulled.returncode == 2, pulled.stdout + pulled.stderr
    assert "do not match their digest" in pulled.stderr and "none of them entered the cache" in pulled.stderr
    assert not (other.root / "build").exists()  # nothing restored from a bad fetch
    cache_is_sound(other)


def test_remote_down_is_a_typed_bounded_error_without_secrets(ws: Workspace, s3: S3Server) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    declare(ws, {"url": "s3://nobucket/p", "endpoint_url": f"http://127.0.0.1:{port}"}, n=3)
    ok(ws.canon("apply"))
    t0 = time.monotonic()
    r = ws.canon("push", env=s3.env)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "did not answer" in r.stderr and "hint:" in r.stderr
    assert time.monotonic() - t0 < 30
    text = r.stdout + r.stderr
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in text and "Traceback" not in text


def test_s3_5xx_is_retried(ws: Workspace, tmp_path: Path, s3: S3Server) -> None:
    remote, _ = s3_remote(s3)
    declare(ws, remote, n=10)
    ok(ws.canon("apply"))
    s3.fail_next(3, status=503, method="PUT")
    try:
        ok(ws.canon("push", "-j", "1", env=s3.env))
    finally:
        s3.clear_faults()
    commit(ws, "v1")
    other = clone(ws, tmp_path)
    ok(other.canon("pull", env=s3.env))
    assert tree_bytes(other.root / "build") == tree_bytes(ws.root / "build")


def git(ws: Workspace, *args: str) -> None:
    subprocess.run(["git", *args], cwd=ws.root, check=True, capture_output=True)


@pytest.mark.parametrize("n", [10, 100], ids=["loose", "packed"])
def test_gc_keeps_what_any_ref_references(ws: Workspace, tmp_path: Path, n: int) -> None:
    from canon.stores.objects import ObjectStore

    commit(ws, "base")
    git(ws, "checkout", "-q", "-b", "exp")  # v1 lives on only through this branch
    declare(ws, {"url": str(tmp_path / "remote")}, n=n, salt="one")
    ok(ws.canon("apply"))
    ok(ws.canon("push"))
    commit(ws, "v1")
    git(ws, "checkout", "-q", "-")
    declare(ws, {"url": str(tmp_path / "remote")}, n=n, salt="two")
    ok(ws.canon("apply"))
    ok(ws.canon("push"))
    commit(ws, "v2")
    git(ws, "tag", "v2")
    junk = ObjectStore(ws.root / ".canon/cache").add_bytes(b"nothing references me")

    def objects() -> set[str]:
        loose = {p.parent.name + p.name for p in (ws.root / ".canon/cache/sha256").rglob("*")
                 if p.is_file()}
        return loose | {p.digest[7:] for p in ObjectStore(ws.root / ".canon/cache").packed()}

    everything = objects()
    dry = ok(ws.canon("gc", "--dry-run"))
    assert "would remove 1 object" in dry and objects() == everything
    ok(ws.canon("gc"))
    assert objects() == everything - {junk[7:]}
    assert ok(ws.canon("gc", "-r", "store", "--min-age", "0", "--dry-run")).startswith("would remove 0")
    git(ws, "branch", "-D", "exp")  # v1 is now unreachable
    gone = ok(ws.canon("gc"))
    assert f"removed {n + 2} object" in gone  # v1's n files, big.bin and manifest
    assert len(objects()) == len(everything) - 1 - (n + 2)
    assert ws.canon("cache", "verify").returncode == 0
    assert "1 run-cache entr" in gone
    packs_before = {p.name for p in (tmp_path / "remote/packs").iterdir()}
    ok(ws.canon("gc", "-r", "store", "--min-age", "0"))
    packs_after = {p.name for p in (tmp_path / "remote/packs").iterdir()}
    assert packs_after < packs_before
    other = clone(ws, tmp_path)  # v2 is still complete on the remote
    ok(other.canon("pull"))
    assert tree_bytes(other.root / "build") == tree_bytes(ws.root / "build")
