"""The light S3 listings (``s3list``): botocore's and the self-signed one give the same
answer as the full backend and the same typed errors; the signature is botocore's; a
remote that is only listed imports neither s3fs nor botocore (moto's real server)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from canon.errors import RemoteError, RemoteUnavailableError
from canon.stores.remotes.cloud import FsspecRemote
from canon.stores.remotes.protocol import KeyMissingError
from canon.stores.remotes.s3list import S3Lister, SignedLister, light_lister, sign_v4
from tests.conftest import S3Server

Lister = S3Lister | SignedLister


@pytest.fixture(params=["botocore", "signed"])
def make(request: pytest.FixtureRequest) -> object:
    def build(url: str, endpoint: str, page_size: int = 1000) -> Lister:
        if request.param == "botocore":
            return S3Lister(url, endpoint, None, page_size=page_size)
        lister = light_lister(url, endpoint, None)
        assert isinstance(lister, SignedLister)  # the test environment says everything
        lister.fallback.page_size = page_size
        return lister

    return build


def test_lists_what_the_full_backend_lists(s3: S3Server, make: Any) -> None:
    url = f"s3://{s3.new_bucket()}/some/prefix"
    full = FsspecRemote(url, endpoint_url=s3.endpoint)
    full.put_bytes("packs/a.pack", b"hello")
    full.put_bytes("packs/a.idx", b"idx")
    full.put_bytes("objects/ab/cdef", b"x" * 10)
    FsspecRemote(url + "-sibling", endpoint_url=s3.endpoint).put_bytes("packs/z.pack", b"no")
    lister = make(url, s3.endpoint)
    for prefix in ("packs/", "objects/", "nothing-here/"):
        light = lister.list(prefix, where=url)
        heavy = full.list(prefix)
        assert {k: v.size for k, v in light.items()} == {k: v.size for k, v in heavy.items()}
        assert all(abs(light[k].mtime - heavy[k].mtime) < 1 for k in light)
    assert set(lister.list("packs/", where=url)) == {"packs/a.pack", "packs/a.idx"}


def test_many_keys_are_paginated(s3: S3Server, make: Any) -> None:
    url = f"s3://{s3.new_bucket()}/p"
    full = FsspecRemote(url, endpoint_url=s3.endpoint)
    for i in range(7):
        full.put_bytes(f"objects/{i:04d}", b"")
    before = s3.requests("GET", "list-type=2")
    assert len(make(url, s3.endpoint, 2).list("objects/", where=url)) == 7
    assert s3.requests("GET", "list-type=2") - before == 4


def test_missing_bucket_down_endpoint_and_5xx_are_typed(s3: S3Server, make: Any) -> None:
    with pytest.raises(KeyMissingError, match="does not exist"):
        make("s3://no-such-bucket-here/p", s3.endpoint).list("packs/", where="x")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    dead = make("s3://bucket/p", f"http://127.0.0.1:{port}")
    with pytest.raises(RemoteUnavailableError, match="did not answer") as err:
        dead.list("packs/", where="the remote")
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in err.value.message
    url = f"s3://{s3.new_bucket()}/p"
    s3.fail_next(2, status=503, method="GET")
    assert make(url, s3.endpoint).list("packs/", where=url) == {}
    s3.fail_next(10, status=500, method="GET")
    try:
        with pytest.raises(RemoteError, match="after 4 attempts"):
            make(url, s3.endpoint).list("packs/", where=url)
    finally:
        s3.clear_faults()


def test_a_listed_only_remote_never_imports_s3fs(s3: S3Server, tmp_path: Path) -> None:
    url = f"s3://{s3.new_bucket()}/p"
    FsspecRemote(url, endpoint_url=s3.endpoint).put_bytes("packs/a.idx", b"1")
    code = (
        "import sys; from pathlib import Path\n"
        "from canon.declare.project import RemoteSpec\n"
        "from canon.stores.remotes import LazyRemote\n"
        f"r = LazyRemote(RemoteSpec('s3', {url!r}, {s3.endpoint!r}), Path('.'))\n"
        "from canon.stores.remotes.catalog import Catalog\n"
        "c = Catalog.list_only(r, Path('rec'))  # what a no-op push does\n"
        "print(sorted(c.listing), 's3fs' in sys.modules, 'botocore' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **s3.env},
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["['packs/a.idx']", "False", "False"]


def test_an_unexpected_answer_hands_the_listing_to_botocore(s3: S3Server) -> None:
    url = f"s3://{s3.new_bucket()}/p"
    FsspecRemote(url, endpoint_url=s3.endpoint).put_bytes("packs/a.idx", b"1")
    lister = light_lister(url, s3.endpoint, None)
    assert isinstance(lister, SignedLister)
    s3.fail_next(1, status=403, method="GET")  # e.g. a signature this server does not take
    assert set(lister.list("packs/", where=url)) == {"packs/a.idx"}
    assert lister._use_botocore  # and it stays with botocore


@pytest.mark.parametrize("token", [None, "session/token+=="])
@pytest.mark.parametrize(
    ("host", "path"), [("127.0.0.1:9000", "/my-bucket"), ("b.s3.eu-west-1.amazonaws.com", "/")]
)
def test_the_signature_is_botocores(token: str | None, host: str, path: str) -> None:
    import datetime
    from urllib.parse import quote

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    query = {
        "list-type": "2",
        "prefix": "some dir/pa+cks~/",
        "encoding-type": "url",
        "max-keys": "1000",
        "continuation-token": "1/AbC==",
    }
    qs = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query.items())
    request = AWSRequest(method="GET", url=f"http://{host}{path}?{qs}", headers={})
    S3SigV4Auth(
        Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token), "s3", "eu-west-1"
    ).add_auth(request)
    when = datetime.datetime.strptime(request.context["timestamp"], "%Y%m%dT%H%M%SZ")
    mine = sign_v4(
        "GET",
        host,
        path,
        query,
        region="eu-west-1",
        key="AKIDEXAMPLE",
        secret="wJalrXUtnFEMI/K7MDENG",
        token=token,
        when=when.replace(tzinfo=datetime.UTC),
    )
    assert mine["authorization"] == request.headers["Authorization"]
    assert mine["x-amz-date"] == request.headers["X-Amz-Date"]


def test_the_signed_lister_is_used_only_when_the_environment_says_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "s3://bucket/p"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secretsecret")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    assert isinstance(light_lister(url, "http://127.0.0.1:1", None), SignedLister)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert isinstance(light_lister(url, None, None), S3Lister)  # AWS, region from ~/.aws
    assert isinstance(light_lister(url, None, "eu-west-1"), SignedLister)
    assert isinstance(light_lister("s3://dotted.bucket/p", None, "eu-west-1"), S3Lister)
    monkeypatch.setenv("AWS_PROFILE", "work")
    assert isinstance(light_lister(url, "http://127.0.0.1:1", None), S3Lister)
    monkeypatch.delenv("AWS_PROFILE")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert isinstance(light_lister(url, "http://127.0.0.1:1", None), S3Lister)
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert isinstance(light_lister(url, "http://127.0.0.1:1", None), S3Lister)
