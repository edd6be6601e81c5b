from __future__ import annotations

from pathlib import Path

import pytest

from canon.digest import hash_bytes
from canon.errors import StateError
from canon.stores.lockfile import parse_lock, read_lock, render_lock, write_lock
from canon.stores.records import Content, DatasetRecord, Lock, ProfileState, StageRecord

D = hash_bytes(b"x")
LOCK = Lock({
    "local": ProfileState(
        environment=D,
        data={"raw": DatasetRecord("data/raw", Content(D, 10, 3, True))},
        stages={"train": StageRecord(key=D, cmd=("python", "t.py"), environment=D,
                                     deps={"data.raw": D}, params={"train": {"lr": 0.1}},
                                     outs={"m.json": Content(D, 5, 1, False)},
                                     env={"PYTHONPATH": "src"})},
    )
})


def test_round_trip_is_byte_stable(tmp_path: Path) -> None:
    write_lock(tmp_path, LOCK)
    assert read_lock(tmp_path) == LOCK
    assert render_lock(read_lock(tmp_path)) == (tmp_path / "canon.lock").read_bytes()


def test_missing_lock_is_empty(tmp_path: Path) -> None:
    assert read_lock(tmp_path) == Lock()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b"version: 0\n", "unsupported lock version 0"),
        (b"", "empty or truncated"),
        (b"version: 1\nprofiles: {p: {stages: {s: {key: nope}}}}\n", "not a sha256 digest"),
        (b"version: 1\nprofiles: [1]\n", "expected a mapping"),
        (b"\xff\xfe", "damaged"),
        (b"version: 1\nprofiles: {p: {stages: {s: {key: " + D.encode() + b", cmd: 3}}}}\n",
         "cmd: expected a list"),
    ],
)
def test_damaged_lock_is_a_state_error_with_a_hint(text: bytes, match: str) -> None:
    with pytest.raises(StateError, match=match) as info:
        parse_lock(text)
    assert info.value.hint and "git checkout" in info.value.hint


def test_merge_conflict_and_newer_versions_say_what_to_do() -> None:
    conflicted = b"version: 1\n<<<<<<< HEAD\nprofiles: {}\n=======\nprofiles: {a: {}}\n>>>>>>> other\n"
    with pytest.raises(StateError, match="merge conflict markers") as info:
        parse_lock(conflicted)
    assert info.value.hint and "--ours" in info.value.hint
    with pytest.raises(StateError, match="written by a newer canon") as newer:
        parse_lock(b"version: 99\n")
    assert newer.value.hint == "upgrade canon to read it"


def test_a_memoised_lock_is_read_without_yaml_and_follows_every_edit(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / ".canon").mkdir()
    write_lock(tmp_path, LOCK)
    assert read_lock(tmp_path) == LOCK  # loads the YAML, writes the memo
    memo = tmp_path / ".canon" / "lock.json"
    assert memo.is_file()
    probe = (
        "import sys; from pathlib import Path; from canon.stores.lockfile import read_lock; "
        f"lock = read_lock(Path({str(tmp_path)!r})); "
        "print('yaml' in sys.modules, sorted(lock.profiles))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "['local']"], out.stdout + out.stderr
    edited = Lock({"other": ProfileState(environment=hash_bytes(b"e2"))})
    write_lock(tmp_path, edited)  # new bytes: the memo no longer matches them
    assert read_lock(tmp_path) == edited
    memo.write_text("{not json")  # a damaged memo is only a cache miss
    assert read_lock(tmp_path) == edited
    (tmp_path / "canon.lock").write_bytes(b"version: [unclosed\n")
    with pytest.raises(StateError, match="damaged"):
        read_lock(tmp_path)
