"""``canon serve`` for real: uvicorn on 127.0.0.1, driven over HTTP."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest

from canon.errors import ServeError
from canon.interfaces.serve.bundle import from_image_root, verify

from .conftest import Server, make_image_root

Start = Callable[..., Server]


def test_predicts_single_and_batch_and_describes_itself(tmp_path: Path, serve: Start) -> None:
    server = serve(make_image_root(tmp_path / "img"), "--image-digest", "sha256:" + "ab" * 32)
    assert server.get("/healthz").json() == {"status": "alive"}
    ready = server.get("/readyz").json()
    assert ready["state"] == "ready" and ready["self_check"] == "passed"

    single = server.post("/predict", json={"inputs": [1, 0, 1]})
    assert single.status_code == 200 and single.json() == {"predictions": {"score": 4.5}}
    batch = server.post("/predict", json={"instances": [[1, 0, 0], [0, 0, 1]]})
    assert batch.json() == {"predictions": [{"score": 1.5}, {"score": 3.5}]}

    prov = server.get("/provenance").json()
    assert prov["verified"] is True
    assert prov["image"] == "sha256:" + "ab" * 32
    assert prov["provenance"]["params"] == {"train": {"C": 1.0}}
    assert set(prov["files"]) == {"build/model.json"}

    text = server.get("/metrics").text
    assert 'canon_requests_total{route="/predict",code="200"} 2' in text
    assert 'canon_request_duration_seconds_bucket{route="/predict",le="+Inf"} 2' in text
    assert 'canon_model_info{artifact="model",commit="0123456789abcdef' in text
    assert "canon_model_ready 1" in text


BAD = [
    # (body bytes, content type, status, message fragment)
    (b"{not json", "application/json", 400, "invalid JSON"),
    (b'{"inputs": [NaN, 1, 2]}', "application/json", 400, "NaN is not valid JSON"),
    (b"\xff\xfe", "application/json", 400, "not UTF-8"),
    (b'{"inputs": [1, 2, 3]}', "text/plain", 415, "application/json"),
    (b'{"inputs": [1, 2, 3]}', "application/json; charset=latin-1", 415, "UTF-8"),
    (b"[1, 2, 3]", "application/json", 422, 'expected {"inputs"'),
    (b'{"inputs": [1], "extra": 1}', "application/json", 422, "unknown field"),
    (b'{"instances": []}', "application/json", 422, "non-empty list"),
    (b'{"inputs": ' + b"[" * 40 + b"]" * 40 + b"}", "application/json", 422, "nested deeper"),
    (b"[" * 200_000 + b"]" * 200_000, "application/json", 413, "limit"),
    (b'{"inputs": ["a", "b", "c"]}', "application/json", 422, "must be a number"),
    (b'{"inputs": [1, 2]}', "application/json", 422, "expected a list of 3"),
    (b'{"inputs": [666, 0, 0]}', "application/json", 500, "prediction failed"),
]


def test_bad_requests_get_4xx_and_good_ones_still_work(tmp_path: Path, serve: Start) -> None:
    server = serve(make_image_root(tmp_path / "img"), "--max-body", "100000")
    for body, content_type, status, fragment in BAD:
        answer = server.post("/predict", content=body, headers={"content-type": content_type})
        assert answer.status_code == status, (body[:40], answer.text)
        assert fragment in answer.json()["error"], (body[:40], answer.text)
    deep = b'{"inputs": ' + b"[" * 40_000 + b"]" * 40_000 + b"}"
    answer = server.post("/predict", content=deep, headers={"content-type": "application/json"})
    assert answer.status_code == 422 and "nested deeper" in answer.json()["error"]

    # a body that lies about its length is cut at the cap while streaming
    def chunks() -> object:
        yield b'{"inputs": ['
        for _ in range(2000):
            yield b"1," * 50
        yield b"1]}"

    answer = server.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert server.post("/predict", json={"inputs": [1, 1, 1]}).json() == {
        "predictions": {"score": 6.5}
    }
    assert server.get("/healthz").status_code == 200
    text = server.get("/metrics").text
    assert 'canon_request_errors_total{route="/predict",kind="bad_request"} 12' in text
    assert 'canon_request_errors_total{route="/predict",kind="rejected"} 2' in text
    assert 'canon_request_errors_total{route="/predict",kind="internal"} 1' in text


def test_a_tampered_model_is_never_ready(tmp_path: Path, serve: Start) -> None:
    root = make_image_root(tmp_path / "img")
    (root / "canon/repo/build/model.json").write_bytes(b'{"w": [9, 9, 9], "b": 0}')
    server = serve(root, ready=False)
    ready = server.get("/readyz")
    assert ready.status_code == 503
    assert "build/model.json: is sha256:" in ready.json()["reason"]
    assert server.get("/healthz").status_code == 200
    answer = server.post("/predict", json={"inputs": [1, 2, 3]})
    assert answer.status_code == 503 and "not ready" in answer.json()["error"]
    assert server.get("/provenance").json()["verified"] is False
    assert "canon_model_ready 0" in server.get("/metrics").text


def test_a_failing_self_check_is_never_ready(tmp_path: Path, serve: Start) -> None:
    source = "def predict(x):\n    raise ValueError('broken on purpose')\n\nEXAMPLE = [1]\n"
    server = serve(make_image_root(tmp_path / "img", handler_source=source), ready=False)
    ready = server.get("/readyz")
    assert ready.status_code == 503
    assert "self-check prediction rejected: ValueError: broken on purpose" in ready.json()["reason"]


def test_pickle_files_are_refused_unless_trusted(tmp_path: Path) -> None:
    blob = pickle.dumps({"w": 1}, protocol=4)
    hidden = make_image_root(tmp_path / "a", extra_files={"build/weights.bin": blob})
    with pytest.raises(ServeError, match=r"build/weights.bin: pickle/joblib files run code"):
        verify(from_image_root(hidden))
    named = make_image_root(tmp_path / "b", extra_files={"build/m.joblib": b"anything"})
    with pytest.raises(ServeError, match=r"build/m.joblib: pickle") as caught:
        verify(from_image_root(named))
    assert caught.value.hint is not None and "trust_pickle: true" in caught.value.hint
    trusted = make_image_root(tmp_path / "c", extra_files={"build/m.pkl": blob}, trust_pickle=True)
    assert set(verify(from_image_root(trusted))) == {"build/model.json", "build/m.pkl"}


def test_not_an_image_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(ServeError, match="is not an extracted model image"):
        from_image_root(tmp_path)
    (tmp_path / "canon").mkdir()
    (tmp_path / "canon" / "provenance.json").write_text(json.dumps({"files": {}}))
    with pytest.raises(ServeError, match="names no handler"):
        from_image_root(tmp_path)
