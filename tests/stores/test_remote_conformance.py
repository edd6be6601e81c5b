"""One conformance suite for every Remote backend (Terraform's statemgr.TestFull idea):
a directory, the in-package fake, fsspec's memory filesystem and real S3 (moto's server)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from canon.errors import RemoteError, RemoteUnavailableError
from canon.stores.remotes.fake import MemoryRemote
from canon.stores.remotes.local import LocalRemote
from canon.stores.remotes.protocol import KeyMissingError, Remote
from tests.conftest import S3Server

_n = itertools.count()


@pytest.fixture(params=["local", "fake", "fsspec-memory", "s3"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Remote]:
    kind = request.param
    if kind == "local":
        yield LocalRemote(tmp_path / "remote")
    elif kind == "fake":
        yield MemoryRemote()
    elif kind == "fsspec-memory":
        from canon.stores.remotes.cloud import FsspecRemote

        yield FsspecRemote(f"memory://conformance-{next(_n)}/prefix")
    else:
        s3: S3Server = request.getfixturevalue("s3")
        from canon.stores.remotes.cloud import FsspecRemote

        yield FsspecRemote(f"s3://{s3.new_bucket()}/some/prefix", endpoint_url=s3.endpoint)


def test_put_get_list_delete(remote: Remote, tmp_path: Path) -> None:
    assert dict(remote.list("packs/")) == {}
    remote.put_bytes("packs/a.pack", b"hello world")
    remote.put_bytes("objects/ab/cdef", b"x" * 10)
    src = tmp_path / "big.bin"
    src.write_bytes(bytes(range(256)) * 5000)
    remote.put_file("objects/cd/big", src)
    assert remote.get_bytes("packs/a.pack") == b"hello world"
    assert remote.get_bytes("packs/a.pack", 6, 11) == b"world"
    assert remote.get_bytes("packs/a.pack", 0, 5) == b"hello"
    listing = remote.list("objects/")
    assert sorted(listing) == ["objects/ab/cdef", "objects/cd/big"]
    assert listing["objects/cd/big"].size == src.stat().st_size
    assert set(remote.list("packs/")) == {"packs/a.pack"}
    chunks: list[bytes] = []
    remote.get_file("objects/cd/big", chunks.append)
    assert b"".join(chunks) == src.read_bytes()
    assert max(len(c) for c in chunks) <= 8 << 20  # streamed, not one buffer
    remote.delete(["objects/ab/cdef", "objects/never-there"])
    assert set(remote.list("objects/")) == {"objects/cd/big"}


def test_put_is_idempotent_and_replaces_whole(remote: Remote) -> None:
    remote.put_bytes("packs/x.idx", b"one")
    remote.put_bytes("packs/x.idx", b"one")
    assert remote.get_bytes("packs/x.idx") == b"one"
    assert list(remote.list("packs/")) == ["packs/x.idx"]


def test_missing_key_is_a_typed_error(remote: Remote) -> None:
    with pytest.raises(KeyMissingError, match="not on the remote"):
        remote.get_bytes("objects/00/missing")
    with pytest.raises(KeyMissingError):
        remote.get_file("objects/00/missing", lambda _b: None)


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/./b", "x\\y", ""])
def test_hostile_keys_are_refused(remote: Remote, key: str) -> None:
    with pytest.raises(ValueError, match="bad remote key"):
        remote.put_bytes(key, b"x")


def test_fake_retries_transient_failures_then_gives_up() -> None:
    r = MemoryRemote()
    r.fail_next(2, "put")
    r.put_bytes("packs/a.pack", b"a")  # two 503s, then success
    assert r.calls["put"] == 3
    r.down = True
    with pytest.raises(RemoteUnavailableError, match="after 4 attempts"):
        r.get_bytes("packs/a.pack")
    assert r.calls["get"] == 4  # bounded


def test_local_remote_never_shows_a_partial_put(tmp_path: Path) -> None:
    r = LocalRemote(tmp_path / "remote")

    class Boom(Exception):
        pass

    def fill(fd: int) -> None:
        import os

        os.write(fd, b"partial")
        raise Boom

    with pytest.raises(Boom):
        r._put("packs/p.pack", fill)
    assert dict(r.list("packs/")) == {}
    assert not any((tmp_path / "remote" / "tmp").iterdir())


def test_s3_down_is_a_typed_error_without_secrets(s3: S3Server) -> None:
    import os
    import socket

    from canon.stores.remotes.cloud import FsspecRemote

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    r = FsspecRemote("s3://bucket/p", endpoint_url=f"http://127.0.0.1:{port}")
    with pytest.raises(RemoteUnavailableError, match="did not answer") as err:
        r.list("packs/")
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in str(err.value.message)


def test_s3_5xx_is_retried_then_succeeds(s3: S3Server) -> None:
    from canon.stores.remotes.cloud import FsspecRemote

    r = FsspecRemote(f"s3://{s3.new_bucket()}/p", endpoint_url=s3.endpoint)
    s3.fail_next(2, status=503, method="PUT")
    r.put_bytes("packs/a.idx", b"abc")
    assert r.get_bytes("packs/a.idx") == b"abc"
    s3.fail_next(10, status=500, method="GET")
    try:
        with pytest.raises(RemoteError, match="after 4 attempts"):
            r.get_bytes("packs/a.idx")
    finally:
        s3.clear_faults()


Factory = Callable[[], Remote]


@pytest.mark.parametrize(
    ("url", "package"), [("gs://bucket/p", "gcsfs"), ("az://box/p", "adlfs")]
)
def test_a_remote_whose_backend_is_not_installed_is_the_users_to_fix(
    url: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fsspec

    from canon.errors import RemoteConfigError
    from canon.stores.remotes.cloud import FsspecRemote

    def missing(protocol: str, **_: object) -> None:
        raise ImportError(f"Install {package} to access this storage")

    monkeypatch.setattr(fsspec, "filesystem", missing)
    with pytest.raises(RemoteConfigError, match=f"cannot open remote {url}") as err:
        FsspecRemote(url)
    assert err.value.exit_code == 2
    assert err.value.hint == f"{url[:2]}:// remotes need the {package} package: pip install {package}"
