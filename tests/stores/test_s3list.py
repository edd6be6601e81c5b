"""The light S3 listing (``s3list``): the same answer as the full backend, the same
typed errors, and no s3fs import for a remote that is only listed (moto's real server)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from canon.errors import RemoteError, RemoteUnavailableError
from canon.stores.remotes.cloud import FsspecRemote
from canon.stores.remotes.protocol import KeyMissingError
from canon.stores.remotes.s3list import S3Lister, light_lister
from tests.conftest import S3Server


def test_lists_what_the_full_backend_lists(s3: S3Server, tmp_path: Path) -> None:
    url = f"s3://{s3.new_bucket()}/some/prefix"
    full = FsspecRemote(url, endpoint_url=s3.endpoint)
    full.put_bytes("packs/a.pack", b"hello")
    full.put_bytes("packs/a.idx", b"idx")
    full.put_bytes("objects/ab/cdef", b"x" * 10)
    FsspecRemote(url + "-sibling", endpoint_url=s3.endpoint).put_bytes("packs/z.pack", b"no")
    lister = light_lister(url, s3.endpoint, None)
    assert lister is not None
    for prefix in ("packs/", "objects/", "nothing-here/"):
        light = lister.list(prefix, where=url)
        heavy = full.list(prefix)
        assert {k: v.size for k, v in light.items()} == {k: v.size for k, v in heavy.items()}
        assert all(abs(light[k].mtime - heavy[k].mtime) < 1 for k in light)
    assert set(lister.list("packs/", where=url)) == {"packs/a.pack", "packs/a.idx"}


def test_many_keys_are_paginated(s3: S3Server) -> None:
    url = f"s3://{s3.new_bucket()}/p"
    full = FsspecRemote(url, endpoint_url=s3.endpoint)
    for i in range(7):
        full.put_bytes(f"objects/{i:04d}", b"")
    before = s3.requests("GET", "list-type=2")
    assert len(S3Lister(url, s3.endpoint, None, page_size=2).list("objects/", where=url)) == 7
    assert s3.requests("GET", "list-type=2") - before == 4


def test_missing_bucket_down_endpoint_and_5xx_are_typed(s3: S3Server) -> None:
    with pytest.raises(KeyMissingError, match="does not exist"):
        S3Lister("s3://no-such-bucket-here/p", s3.endpoint, None).list("packs/", where="x")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    dead = S3Lister("s3://bucket/p", f"http://127.0.0.1:{port}", None)
    with pytest.raises(RemoteUnavailableError, match="did not answer") as err:
        dead.list("packs/", where="the remote")
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in err.value.message
    url = f"s3://{s3.new_bucket()}/p"
    s3.fail_next(2, status=503, method="GET")
    assert S3Lister(url, s3.endpoint, None).list("packs/", where=url) == {}
    s3.fail_next(10, status=500, method="GET")
    try:
        with pytest.raises(RemoteError, match="after 4 attempts"):
            S3Lister(url, s3.endpoint, None).list("packs/", where=url)
    finally:
        s3.clear_faults()


def test_a_listed_only_remote_never_imports_s3fs(s3: S3Server) -> None:
    url = f"s3://{s3.new_bucket()}/p"
    FsspecRemote(url, endpoint_url=s3.endpoint).put_bytes("packs/a.idx", b"1")
    code = (
        "import sys; from pathlib import Path\n"
        "from canon.declare.project import RemoteSpec\n"
        "from canon.stores.remotes import LazyRemote\n"
        f"r = LazyRemote(RemoteSpec('s3', {url!r}, {s3.endpoint!r}), Path('.'))\n"
        "print(sorted(r.list('packs/')), 's3fs' in sys.modules, 'aiobotocore' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **s3.env}
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["['packs/a.idx']", "False", "False"]
