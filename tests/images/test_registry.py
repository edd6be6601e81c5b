"""Push and pull against the real CNCF distribution registry; skopeo as the independent client."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from canon.errors import ImageError, IntegrityError, RegistryError
from canon.stores.oci.layout import ImageLayout
from canon.stores.oci.registry import Reference, RegistryClient
from canon.stores.oci.spec import LAYER_GZIP, Descriptor

from .conftest import Project, Registry, make_project, need


def skopeo(*args: str) -> str:
    return subprocess.run([need("skopeo"), *args], capture_output=True, text=True, check=True,
                          timeout=120).stdout


@pytest.fixture
def built(tmp_path: Path) -> Project:
    p = make_project(tmp_path / "p")
    p.canon("apply")
    p.canon("build")
    return p


def test_push_base_then_model_uploads_only_the_model_layer(built: Project,
                                                           registry: Registry) -> None:
    ns = f"{registry.host}/only-model"
    base = json.loads(built.canon("push-image", "base", "--registry", ns, "--json").stdout)
    assert base["event"] == "ImagePushed" and base["skipped"] == 0
    model = json.loads(built.canon("push-image", "model", "--registry", ns, "--json").stdout)
    # the base's layers are already there: one layer + the config are uploaded
    assert model["uploaded"] == 2 and model["skipped"] == base["uploaded"] - 1
    layout = ImageLayout(built.root / ".canon/images")
    images = json.loads(built.canon("images", "--json").stdout)
    model_layer = [l for l in images[1]["layers"] if not l["shared"]]  # noqa: E741
    config_size = len(layout.read_bytes(json.loads(layout.read_bytes(built.digest("model")))["config"]["digest"]))
    assert model["bytes_uploaded"] == model_layer[0]["size"] + config_size


def test_skopeo_sees_the_same_digests_and_copies_them_back(built: Project, registry: Registry,
                                                           tmp_path: Path) -> None:
    ns = f"{registry.host}/skopeo"
    built.canon("push-image", "--registry", ns)
    commit = built.git("rev-parse", "HEAD")[:12]
    for name in ("base", "model"):
        ref = f"docker://{ns}/{name}:{commit}"
        info = json.loads(skopeo("inspect", "--tls-verify=false", ref))
        assert info["Digest"] == built.digest(name)
        assert info["Labels"]["org.opencontainers.image.revision"] == built.git("rev-parse", "HEAD")
        raw = skopeo("inspect", "--raw", "--tls-verify=false", ref)
        assert "sha256:" + __import__("hashlib").sha256(raw.encode()).hexdigest() == built.digest(name)
        out = tmp_path / f"copy-{name}"
        skopeo("copy", "--src-tls-verify=false", ref, f"oci:{out}:{name}")
        index = json.loads((out / "index.json").read_text())
        assert index["manifests"][0]["digest"] == built.digest(name)
    # and skopeo reads canon's own layout directly
    local = json.loads(skopeo("inspect", f"oci:{built.root / '.canon/images'}:model"))
    assert local["Digest"] == built.digest("model")


def test_pull_image_verifies_and_the_pin_wins_over_a_moved_tag(built: Project,
                                                               registry: Registry,
                                                               tmp_path: Path) -> None:
    ns = f"{registry.host}/pin"
    built.canon("push-image", "--registry", ns)
    # move the model's tag to the base image (with skopeo, an independent client)
    commit = built.git("rev-parse", "HEAD")[:12]
    skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false",
           f"docker://{ns}/base:{commit}", f"docker://{ns}/model:{commit}")
    done = built.canon("pull-image", f"{ns}/model:{commit}")
    assert f"canon.lock pins {built.digest('model')}" in done.stderr
    assert built.digest("model") in done.stdout


def test_chunked_upload_and_pull_into_a_fresh_layout(built: Project, registry: Registry,
                                                     tmp_path: Path) -> None:
    layout = ImageLayout(built.root / ".canon/images")
    manifest = json.loads(layout.read_bytes(built.digest("base")))  # type: ignore[arg-type]
    layer = manifest["layers"][-1]
    d = Descriptor(LAYER_GZIP, layer["digest"], layer["size"])
    with RegistryClient(registry.host) as client:
        assert client.push_blob("chunked/x", d, layout.blob_path(d.digest).open, chunk=100,
                                monolithic_max=50)
        assert not client.push_blob("chunked/x", d, layout.blob_path(d.digest).open)
        fresh = ImageLayout(tmp_path / "fresh")
        client.pull_blob("chunked/x", d, fresh)
        assert fresh.read_bytes(d.digest) == layout.read_bytes(d.digest)
        wrong = Descriptor(LAYER_GZIP, d.digest, d.size + 1)
        with pytest.raises(RegistryError, match="does not match its descriptor"):
            client.pull_blob("chunked/x", wrong, ImageLayout(tmp_path / "other"))
        assert not ImageLayout(tmp_path / "other").has_blob(d.digest)


def test_credentials_are_not_sent_to_another_host_after_a_redirect() -> None:
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("authorization")))
        if request.url.host == "reg.example":
            if "authorization" not in request.headers:
                return httpx.Response(401, headers={"www-authenticate":
                    'Bearer realm="https://auth.example/token",service="reg"'})
            return httpx.Response(307, headers={"location": "https://cdn.example/blob"})
        if request.url.host == "auth.example":
            return httpx.Response(200, json={"token": "T0KEN"})
        return httpx.Response(200, content=b"data")

    from canon.stores.oci.auth import Credentials

    client = RegistryClient("reg.example", credentials=Credentials("u", "p"),
                            transport=httpx.MockTransport(handler))
    response = client.request("GET", "/v2/x/blobs/sha256:" + "0" * 64, scope="repository:x:pull")
    assert response.content == b"data"
    assert ("reg.example", "Bearer T0KEN") in seen
    assert ("cdn.example", None) in seen, "the CDN must not get the registry's token"
    assert seen[1][0] == "auth.example" and seen[1][1] and seen[1][1].startswith("Basic ")


def test_a_manifest_whose_bytes_do_not_match_its_digest_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'{"schemaVersion": 2}',
                              headers={"content-type": "application/vnd.oci.image.manifest.v1+json"})

    client = RegistryClient("reg.example", transport=httpx.MockTransport(handler))
    with pytest.raises(RegistryError, match="hashes to"):
        client.get_manifest("x", "sha256:" + "1" * 64)


def test_reference_parsing() -> None:
    assert Reference.parse("python:3.11") == Reference("docker.io", "library/python", "3.11")
    r = Reference.parse("127.0.0.1:5000/ns/model:abc@sha256:" + "a" * 64)
    assert (r.registry, r.repository, r.tag) == ("127.0.0.1:5000", "ns/model", "abc")
    with pytest.raises(ImageError, match="not a sha256 digest"):
        Reference.parse("x/y@md5:00")


def test_blob_writer_refuses_wrong_bytes(tmp_path: Path) -> None:
    layout = ImageLayout(tmp_path / "l")
    with pytest.raises(IntegrityError, match="wrong content"):
        layout.put_bytes(b"abc", "sha256:" + "0" * 64)  # type: ignore[arg-type]
    assert list((tmp_path / "l/blobs/sha256").iterdir()) == []
