from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import pytest

import canon.digest as digest_mod
from canon.digest import (
    Digest,
    hash_bytes,
    hash_file,
    hash_files,
    hex_of,
    is_digest,
    parse_digest,
    run_on_cores,
)
from canon.errors import StateError

ABC = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_hash_bytes_is_oci_sha256() -> None:
    assert hash_bytes(b"abc") == ABC
    assert hash_bytes(memoryview(b"abc")) == ABC


@pytest.mark.parametrize("size", [0, 1, 4096, (1 << 20) - 1, 1 << 20, (5 << 19) + 7])
def test_hash_file_matches_hash_bytes(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    p = tmp_path / "f"
    p.write_bytes(data)
    assert hash_file(p) == "sha256:" + hashlib.sha256(data).hexdigest()


def test_hash_file_missing_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        hash_file(tmp_path / "nope")


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (ABC, True),
        (ABC.upper(), False),
        (ABC[:-1], False),
        (ABC + "0", False),
        ("sha512:" + "0" * 64, False),
        ("0" * 64, False),
        (ABC + "\n", False),
        ("sha256:" + "g" * 64, False),
        (None, False),
        (123, False),
    ],
)
def test_is_digest(text: object, ok: bool) -> None:
    assert is_digest(text) is ok


def test_parse_digest_rejects_garbage() -> None:
    assert parse_digest(ABC) == ABC
    with pytest.raises(StateError, match=r"not a digest: '\.\./\.\./etc/passwd'"):
        parse_digest("../../etc/passwd")


def test_hex_of() -> None:
    assert hex_of(Digest(ABC)) == ABC[len("sha256:") :]


def test_hash_files_in_parallel_matches_serial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = []
    for i in range(40):
        p = tmp_path / f"f{i}"
        p.write_bytes(os.urandom(100 + 997 * i))
        paths.append(str(p))
    paths.append(str(tmp_path / "missing"))
    serial = hash_files(paths)
    monkeypatch.setattr(digest_mod, "PARALLEL_MIN_WORK_NS", 0)
    monkeypatch.setattr(digest_mod, "cores", lambda: 2)
    assert hash_files(paths) == serial
    assert os.getpid() not in run_on_cores(_pids, list(range(20)))  # the pool really ran
    assert serial[-1] is None
    assert serial[0] == hash_file(paths[0])


def _double(xs: object) -> list[int]:
    assert isinstance(xs, list)
    return [2 * x for x in xs]


def test_run_on_cores_falls_back_when_the_pool_cannot_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Broken:
        def __init__(self, *a: object, **k: object) -> None:
            raise OSError("no processes for you")

    monkeypatch.setattr(digest_mod, "PARALLEL_MIN_WORK_NS", 0)
    monkeypatch.setattr(digest_mod, "cores", lambda: 2)
    import concurrent.futures

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Broken)
    assert run_on_cores(_double, list(range(10))) == [2 * x for x in range(10)]


def test_run_on_cores_keeps_order_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digest_mod, "PARALLEL_MIN_WORK_NS", 0)
    monkeypatch.setattr(digest_mod, "cores", lambda: 2)
    items = list(range(1000))
    assert run_on_cores(_double, items, [i % 7 for i in items]) == [2 * x for x in items]


def test_hash_file_refuses_a_fifo_without_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(OSError, match="not a regular file"):
        hash_file(tmp_path / "pipe")


def test_threaded_callers_get_a_pool_that_does_not_fork_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With other threads running, a plain fork could copy a held lock into the
    child; the pool then starts from a fork server instead, and still works."""
    paths = []
    for i in range(20):
        (tmp_path / f"f{i}").write_bytes(bytes([i]) * 3000)
        paths.append(str(tmp_path / f"f{i}"))
    monkeypatch.setattr(threading, "active_count", lambda: 3)
    assert digest_mod._context().get_start_method() != "fork"
    monkeypatch.setattr(digest_mod, "PARALLEL_MIN_WORK_NS", 0)
    monkeypatch.setattr(digest_mod, "cores", lambda: 2)
    assert hash_files(paths) == [hash_file(p) for p in paths]
    assert os.getpid() not in run_on_cores(_pids, list(range(20)))  # the pool really ran


def _pids(xs: object) -> list[int]:
    assert isinstance(xs, list)
    return [os.getpid() for _ in xs]


def _in_a_daemon(queue: Any) -> None:
    digest_mod.PARALLEL_MIN_WORK_NS = 0
    digest_mod.cores = lambda: 2  # type: ignore[assignment]
    try:
        result: object = run_on_cores(_double, list(range(50)))
    except BaseException as exc:  # what the parent asserts on
        result = f"{type(exc).__name__}: {exc}"
    queue.put(result)


def test_run_on_cores_in_a_daemonic_process_works_here() -> None:
    """A default `dask worker` runs tasks in daemonic processes, which may not start a
    pool ("daemonic processes are not allowed to have children"): work in-process."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    proc = context.Process(target=_in_a_daemon, args=(queue,), daemon=True)
    proc.start()
    try:
        assert queue.get(timeout=60) == [2 * x for x in range(50)]
    finally:
        proc.join(timeout=10)
