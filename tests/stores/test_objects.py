from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import canon.digest as digest_mod
import canon.stores.fsops as fsops
import canon.stores.objectio as objectio
import canon.stores.objects as objects_mod
from canon.digest import Digest, hash_bytes, hex_of
from canon.errors import IntegrityError, PathError, StateError
from canon.observe.content import ContentReader
from canon.stores.manifest import Manifest
from canon.stores.objects import ObjectStore
from canon.stores.statcache import StatCache

FILES = {
    "a.csv": b"a,b\n1,2\n",
    "sub/deep/b.bin": os.urandom(3 * 1024 * 1024 + 5),  # > one 1 MiB buffer
    "sub/c": b"",
    "run.sh": b"#!/bin/sh\necho hi\n",
    "same-as-a.csv": b"a,b\n1,2\n",  # dedup: one object for two paths
}


def make_tree(root: Path, files: dict[str, bytes] = FILES) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    if (root / "run.sh").exists():
        os.chmod(root / "run.sh", 0o755)
    return root


def snapshot(ws: Path, rel: str) -> Manifest:
    with StatCache(None) as cache:
        snap = ContentReader(ws, cache).snapshot(rel)
    assert snap is not None and snap[1] is not None
    return snap[1]


def read_tree(top: Path) -> dict[str, tuple[bytes, int]]:
    out = {}
    for dirpath, _, names in os.walk(top):
        for n in names:
            p = Path(dirpath) / n
            out[str(p.relative_to(top))] = (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
    return out


def flip_bit(path: Path, offset: int = 0) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(tmp_path / ".canon" / "cache")


# -- adding ---------------------------------------------------------------------------


def test_add_bytes_layout_and_read_back(store: ObjectStore) -> None:
    d = store.add_bytes(b"hello")
    assert d == hash_bytes(b"hello")
    h = hex_of(d)
    path = store.root / "sha256" / h[:2] / h[2:]
    assert store.path_of(d) == path
    assert store.has(d)
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert store.read_verified(d) == b"hello"
    assert store.verify(d)
    assert list(store.tmp.iterdir()) == []


def test_path_of_refuses_non_digests(store: ObjectStore) -> None:
    with pytest.raises(StateError, match="not a digest"):
        store.path_of(Digest("sha256:../../../../etc/passwd"))
    assert not store.has(Digest("garbage"))


def test_add_file_checks_expected_digest(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"actual bytes")
    claimed = hash_bytes(b"what the observer saw")
    with pytest.raises(IntegrityError, match=f"{src} hashes to .* not {claimed}"):
        store.add_file(src, claimed)
    assert not store.has(claimed)
    assert not store.has(hash_bytes(b"actual bytes"))
    assert list(store.tmp.iterdir()) == []
    assert store.add_file(src, hash_bytes(b"actual bytes")) == hash_bytes(b"actual bytes")
    assert store.add_file(src) == hash_bytes(b"actual bytes")


def test_add_file_skips_copy_when_present(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x" * 10)
    d = store.add_file(src)

    def no_copy(*a: object) -> None:
        raise AssertionError("copied an object that was already present")

    monkeypatch.setattr(objects_mod, "copy_hashing", no_copy)
    assert store.add_file(src, d) == d


def test_add_file_refuses_symlinks_and_special_files(store: ObjectStore, tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to("/etc/passwd")
    with pytest.raises(PathError, match="link is a symbolic link"):
        store.add_file(tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(PathError, match="fifo is not a regular file"):
        store.add_file(tmp_path / "fifo")
    assert list(store.tmp.iterdir()) == []


def test_add_tree_and_restore_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    make_tree(tmp_path / "ws" / "data")
    manifest = snapshot(tmp_path / "ws", "data")
    d = store.add_tree(tmp_path / "ws" / "data", manifest)
    assert d == manifest.digest
    assert store.manifest(d) == manifest
    assert all(store.verify(e.digest) for e in manifest)
    dest = tmp_path / "restored" / "data"
    store.restore(d, dest, is_dir=True)
    assert read_tree(dest) == read_tree(tmp_path / "ws" / "data")
    assert read_tree(dest)["run.sh"][1] == 0o755
    assert read_tree(dest)["a.csv"][1] == 0o644
    assert [p.name for p in dest.parent.iterdir()] == ["data"]  # no temp siblings left


def test_add_tree_in_parallel(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"d{i % 5}/f{i}": os.urandom(i * 50) for i in range(200)}
    make_tree(tmp_path / "ws" / "data", files)
    manifest = snapshot(tmp_path / "ws", "data")
    monkeypatch.setattr(digest_mod, "PARALLEL_MIN_WORK_NS", 0)
    monkeypatch.setattr(digest_mod, "cores", lambda: 2)
    d = store.add_tree(tmp_path / "ws" / "data", manifest)
    store.restore(d, tmp_path / "out", is_dir=True)
    assert read_tree(tmp_path / "out") == read_tree(tmp_path / "ws" / "data")


def test_add_tree_detects_a_file_changed_since_observed(store: ObjectStore, tmp_path: Path) -> None:
    make_tree(tmp_path / "ws" / "data")
    manifest = snapshot(tmp_path / "ws", "data")
    (tmp_path / "ws" / "data" / "sub" / "c").write_bytes(b"now different")
    with pytest.raises(IntegrityError, match=r"data/sub/c changed after canon looked at it"):
        store.add_tree(tmp_path / "ws" / "data", manifest)
    assert not store.has(manifest.digest)
    assert not store.has(hash_bytes(b"now different"))
    assert list(store.tmp.iterdir()) == []


# -- corruption -------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["flip", "truncate", "extend"])
def test_damaged_object_is_detected_everywhere(
    store: ObjectStore, tmp_path: Path, damage: str
) -> None:
    data = os.urandom(100_000)
    d = store.add_bytes(data)
    path = store.path_of(d)
    os.chmod(path, 0o644)
    if damage == "flip":
        flip_bit(path, 54_321)
    elif damage == "truncate":
        os.truncate(path, 99_999)
    else:
        with open(path, "ab") as f:
            f.write(b"\0")
    assert store.has(d)  # present...
    assert not store.verify(d)  # ...but not what it claims
    with pytest.raises(IntegrityError, match=f"object {d} is corrupt"):
        store.read_verified(d)
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"previous")
    with pytest.raises(IntegrityError, match=f"object {d} is corrupt"):
        store.restore(d, dest, is_dir=False)
    assert dest.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_restore_tree_with_a_corrupt_file_leaves_dest_alone(
    store: ObjectStore, tmp_path: Path
) -> None:
    make_tree(tmp_path / "ws" / "data")
    manifest = snapshot(tmp_path / "ws", "data")
    d = store.add_tree(tmp_path / "ws" / "data", manifest)
    bad = next(e.digest for e in manifest if e.path == "sub/deep/b.bin")
    flip_bit(store.path_of(bad), 2_000_000)
    dest = tmp_path / "out"
    make_tree(dest, {"old": b"old content"})
    with pytest.raises(IntegrityError, match=f"object {bad} is corrupt"):
        store.restore(d, dest, is_dir=True)
    assert read_tree(dest) == {"old": (b"old content", 0o644)}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".canon", "out", "ws"]


def test_restore_missing_object(store: ObjectStore, tmp_path: Path) -> None:
    make_tree(tmp_path / "ws" / "data")
    manifest = snapshot(tmp_path / "ws", "data")
    d = store.add_tree(tmp_path / "ws" / "data", manifest)
    gone = manifest.entries[0].digest
    store.path_of(gone).unlink()
    with pytest.raises(StateError, match=f"object {gone} is not in the cache"):
        store.restore(d, tmp_path / "out", is_dir=True)
    assert not (tmp_path / "out").exists()
    with pytest.raises(StateError, match="is not in the cache"):
        store.restore(hash_bytes(b"never stored"), tmp_path / "f", is_dir=False)


@pytest.mark.parametrize(
    "line",
    ["../escaped", "/abs/olute", "a/../../escaped", ".//x"],
)
def test_restore_refuses_hostile_manifest_objects(
    store: ObjectStore, tmp_path: Path, line: str
) -> None:
    obj = store.add_bytes(b"pwned")
    d = store.add_bytes(f"644 5 {hex_of(obj)} {line}\n".encode())
    dest = tmp_path / "work" / "out"
    with pytest.raises(StateError, match="manifest line 1"):
        store.restore(d, dest, is_dir=True)
    assert not (tmp_path / "escaped").exists()
    assert not (tmp_path / "work").exists() or list((tmp_path / "work").iterdir()) == []


# -- restore shapes ---------------------------------------------------------------------


@pytest.mark.parametrize("before", ["nothing", "file", "dir", "symlink"])
@pytest.mark.parametrize("is_dir", [False, True])
def test_restore_replaces_whatever_was_there(
    store: ObjectStore, tmp_path: Path, before: str, is_dir: bool
) -> None:
    make_tree(tmp_path / "ws" / "data", {"x": b"x", "y/z": b"z"})
    d = (
        store.add_tree(tmp_path / "ws" / "data", snapshot(tmp_path / "ws", "data"))
        if is_dir
        else store.add_bytes(b"file content")
    )
    dest = tmp_path / "dest"
    if before == "file":
        dest.write_bytes(b"old")
    elif before == "dir":
        make_tree(dest, {"old/deep": b"old"})
    elif before == "symlink":
        (tmp_path / "target").mkdir()
        dest.symlink_to(tmp_path / "target")
    store.restore(d, dest, is_dir=is_dir, mode=0o755)
    if is_dir:
        assert read_tree(dest) == {"x": (b"x", 0o644), "y/z": (b"z", 0o644)}
    else:
        assert dest.read_bytes() == b"file content"
        assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert not dest.is_symlink()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".dest")]
    assert leftovers == []
    if before == "symlink":
        assert list((tmp_path / "target").iterdir()) == []  # nothing written through the link


def test_restore_without_renameat2_still_swaps(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fsops, "exchange", lambda a, b: False)
    make_tree(tmp_path / "ws" / "data", {"x": b"x"})
    d = store.add_tree(tmp_path / "ws" / "data", snapshot(tmp_path / "ws", "data"))
    make_tree(tmp_path / "dest", {"old": b"old"})
    store.restore(d, tmp_path / "dest", is_dir=True)
    assert read_tree(tmp_path / "dest") == {"x": (b"x", 0o644)}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".canon", "dest", "ws"]


def test_restore_of_empty_tree(store: ObjectStore, tmp_path: Path) -> None:
    d = store.add_tree(tmp_path, Manifest.build([]))
    store.restore(d, tmp_path / "out", is_dir=True)
    assert (tmp_path / "out").is_dir() and list((tmp_path / "out").iterdir()) == []


# -- concurrency ------------------------------------------------------------------------


def test_many_threads_adding_the_same_object(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024)
    src = tmp_path / "src"
    src.write_bytes(data)
    results: list[Digest] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def add(i: int) -> None:
        try:
            barrier.wait()
            results.append(store.add_file(src) if i % 2 else store.add_bytes(data))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(results) == {hash_bytes(data)}
    assert store.verify(hash_bytes(data))
    assert list(store.tmp.iterdir()) == []
    assert [p.name for p in store.objects.rglob("*") if p.is_file()] == [hex_of(results[0])[2:]]


# -- crashes ----------------------------------------------------------------------------

ADD_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from canon.stores.objects import ObjectStore
    from canon.stores.manifest import Manifest
    store = ObjectStore(Path(sys.argv[1]))
    if sys.argv[2] == "file":
        print(store.add_file(Path(sys.argv[3])))
    else:
        src = Path(sys.argv[3])
        print(store.add_tree(src, Manifest.parse(Path(sys.argv[4]).read_bytes())))
    """
)


def run_add(
    store: ObjectStore, *args: str, failpoint: str = ""
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CANON_FAILPOINTS=failpoint)
    return subprocess.run(
        [sys.executable, "-c", ADD_SCRIPT, str(store.root), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def visible_objects(store: ObjectStore) -> list[Path]:
    return [p for p in store.objects.rglob("*") if p.is_file()] if store.objects.exists() else []


def test_kill_before_rename_leaves_no_partial_object(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "big"
    src.write_bytes(os.urandom(5 * 1024 * 1024))
    died = run_add(store, "file", str(src), failpoint="objects.before_rename=kill")
    assert died.returncode == -signal.SIGKILL
    assert visible_objects(store) == []
    assert len(list(store.tmp.iterdir())) == 1  # the temp file, invisible under sha256/
    done = run_add(store, "file", str(src))
    assert done.returncode == 0, done.stderr
    d = Digest(done.stdout.strip())
    assert d == hash_bytes(src.read_bytes()) and store.verify(d)
    assert store.prune_temp(older_than_s=0) == 1
    assert list(store.tmp.iterdir()) == []


MANY = {**FILES, **{f"many/{i:03d}.txt": f"row {i}\n".encode() for i in range(100)}}


@pytest.mark.parametrize("files", [FILES, MANY], ids=["loose", "packed"])
@pytest.mark.parametrize("point", ["objects.tree_before_rename", "objects.tree_before_manifest"])
def test_kill_during_add_tree_never_shows_the_manifest_early(
    store: ObjectStore, tmp_path: Path, point: str, files: dict[str, bytes]
) -> None:
    make_tree(tmp_path / "ws" / "data", files)
    manifest = snapshot(tmp_path / "ws", "data")
    mpath = tmp_path / "manifest"
    mpath.write_bytes(manifest.to_bytes())
    died = run_add(
        store, "tree", str(tmp_path / "ws" / "data"), str(mpath), failpoint=f"{point}=kill"
    )
    assert died.returncode == -signal.SIGKILL
    assert not store.has(manifest.digest)
    assert all(
        store.verify(Digest("sha256:" + p.parent.name + p.name)) for p in visible_objects(store)
    )
    assert all(store.verify(p.digest) for p in store.packed())
    done = run_add(store, "tree", str(tmp_path / "ws" / "data"), str(mpath))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == manifest.digest
    store.restore(manifest.digest, tmp_path / "out", is_dir=True)
    assert read_tree(tmp_path / "out") == read_tree(tmp_path / "ws" / "data")


def test_sigkill_mid_copy_leaves_no_visible_object(store: ObjectStore, tmp_path: Path) -> None:
    """A real kill at an arbitrary moment of a long copy (no fail point)."""
    src = tmp_path / "sparse"
    with open(src, "wb") as f:
        f.truncate(512 * 1024 * 1024)  # 512 MiB of zeros: fast to read, slow enough to copy
    env = dict(os.environ, CANON_FAILPOINTS="")
    proc = subprocess.Popen(
        [sys.executable, "-c", ADD_SCRIPT, str(store.root), "file", str(src)], env=env
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        temps = list(store.tmp.iterdir()) if store.tmp.exists() else []
        if temps and temps[0].stat().st_size > 0:
            break
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the copy finished before it could be killed"
    assert visible_objects(store) == []
    done = run_add(store, "file", str(src))
    assert done.returncode == 0, done.stderr
    d = Digest(done.stdout.strip())
    assert visible_objects(store) == [store.path_of(d)]
    assert store.verify(d)


def test_reflinked_copies_are_read_back_and_verified(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ext4 has no reflinks; pretend it does, to check the clone is what gets hashed."""

    def fake_reflink(src_fd: int, dst_fd: int) -> bool:
        os.copy_file_range(src_fd, dst_fd, os.fstat(src_fd).st_size)
        return True

    monkeypatch.setattr(objectio, "_reflink", fake_reflink)
    make_tree(tmp_path / "ws" / "data")
    manifest = snapshot(tmp_path / "ws", "data")
    d = store.add_tree(tmp_path / "ws" / "data", manifest)
    store.restore(d, tmp_path / "out", is_dir=True)
    assert read_tree(tmp_path / "out") == read_tree(tmp_path / "ws" / "data")
    big = next(e.digest for e in manifest if e.path == "sub/deep/b.bin")

    def lying_reflink(src_fd: int, dst_fd: int) -> bool:
        os.write(dst_fd, b"not what was cloned")
        return True

    monkeypatch.setattr(objectio, "_reflink", lying_reflink)
    with pytest.raises(IntegrityError, match=f"object {big} is corrupt"):
        store.restore(big, tmp_path / "f", is_dir=False)
    assert not (tmp_path / "f").exists()
    src = tmp_path / "new"
    src.write_bytes(b"fresh")
    with pytest.raises(IntegrityError, match=r"hashes to sha256:[0-9a-f]+, not sha256:"):
        store.add_file(src, hash_bytes(b"fresh"))
    assert not store.has(hash_bytes(b"fresh"))
