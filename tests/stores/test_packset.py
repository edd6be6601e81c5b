"""Small objects of a big tree go into pack files in the cache, and stay as safe as loose ones."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from canon.digest import Digest, hash_bytes, hex_of
from canon.errors import IntegrityError
from canon.observe.cache import scan_cache
from canon.stores.objects import ObjectStore
from canon.stores.packset import PACK_MIN_OBJECTS
from tests.stores.test_objects import make_tree, read_tree, snapshot

BIG = os.urandom(3 * 1024 * 1024)  # over SMALL_OBJECT: stays a loose object


def many(n: int = 150) -> dict[str, bytes]:
    files = {f"d{i % 7}/f{i:04d}.csv": f"id,value\n{i},{i * i}\n".encode() for i in range(n)}
    files["big.bin"] = BIG
    files["dup.csv"] = files["d0/f0000.csv"]  # one object for two paths
    return files


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(tmp_path / ".canon" / "cache")


def loose_objects(store: ObjectStore) -> list[Path]:
    return [p for p in store.objects.glob("*/*")] if store.objects.exists() else []


def add(store: ObjectStore, tmp_path: Path, files: dict[str, bytes]) -> Digest:
    make_tree(tmp_path / "ws" / "data", files)
    return store.add_tree(tmp_path / "ws" / "data", snapshot(tmp_path / "ws", "data"))


def test_many_small_files_go_into_a_pack_and_restore(store: ObjectStore, tmp_path: Path) -> None:
    files = many()
    d = add(store, tmp_path, files)
    packs = sorted(p.suffix for p in store.packs.root.iterdir())
    assert packs == [".idx", ".pack"]
    # Loose: only the big file and the manifest.
    assert sorted(p.stat().st_size for p in loose_objects(store))[-1] == len(BIG)
    assert len(loose_objects(store)) == 2
    for data in files.values():
        assert store.has(hash_bytes(data))
        assert store.read_verified(hash_bytes(data)) == data
    store.restore(d, tmp_path / "out", is_dir=True)
    assert read_tree(tmp_path / "out") == read_tree(tmp_path / "ws" / "data")
    small = hash_bytes(files["d3/f0003.csv"])
    store.restore(small, tmp_path / "one.csv", is_dir=False)
    assert (tmp_path / "one.csv").read_bytes() == files["d3/f0003.csv"]
    assert scan_cache(store).corrupt == ()


def test_a_few_files_stay_loose(store: ObjectStore, tmp_path: Path) -> None:
    add(store, tmp_path, many(PACK_MIN_OBJECTS - 10))
    assert not store.packs.root.exists()


def test_adding_the_same_tree_again_writes_nothing(store: ObjectStore, tmp_path: Path) -> None:
    add(store, tmp_path, many())
    before = sorted(os.listdir(store.packs.root))
    again = ObjectStore(store.root)  # a new process: the index is read from disk
    d = again.add_tree(tmp_path / "ws" / "data", snapshot(tmp_path / "ws", "data"))
    assert sorted(os.listdir(store.packs.root)) == before
    assert again.has(d)


def test_a_flipped_byte_in_a_pack_is_caught_and_repaired_by_drop(
    store: ObjectStore, tmp_path: Path
) -> None:
    files = many()
    d = add(store, tmp_path, files)
    victim = hash_bytes(files["d2/f0002.csv"])
    slot = store.packs.locate(hex_of(victim))
    assert slot is not None
    os.chmod(slot.pack, 0o644)
    with open(slot.pack, "r+b") as f:
        f.seek(slot.offset)
        byte = f.read(1)
        f.seek(slot.offset)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(IntegrityError, match=victim):
        store.read_verified(victim)
    with pytest.raises(IntegrityError, match=victim):
        store.restore(d, tmp_path / "out", is_dir=True)
    assert not (tmp_path / "out").exists()
    assert scan_cache(store).corrupt == (victim,)
    store.drop([victim])
    assert not store.has(victim)
    others = [hash_bytes(v) for k, v in files.items() if k != "d2/f0002.csv"]
    assert all(store.read_verified(o) for o in others)
    assert scan_cache(store).corrupt == ()
    assert len(list(store.packs.root.glob("*.pack"))) == 1  # the old pack is gone


def test_a_truncated_index_hides_its_whole_pack(store: ObjectStore, tmp_path: Path) -> None:
    files = many()
    add(store, tmp_path, files)
    (idx,) = store.packs.root.glob("*.idx")
    os.chmod(idx, 0o644)
    idx.write_bytes(idx.read_bytes()[:-40])
    fresh = ObjectStore(store.root)
    assert not any(fresh.has(hash_bytes(v)) for k, v in files.items() if k != "big.bin")
    assert fresh.packed() == []


def test_a_pack_without_index_is_an_orphan_pruned_later(
    store: ObjectStore, tmp_path: Path
) -> None:
    add(store, tmp_path, many())
    (idx,) = store.packs.root.glob("*.idx")
    idx.unlink()  # as if the writer died between the pack and its index
    assert store.prune_temp(older_than_s=3600) == 0  # young: a writer may be about to index it
    old = time.time() - 7200
    (pack,) = store.packs.root.glob("*.pack")
    os.utime(pack, (old, old))
    assert store.prune_temp(older_than_s=3600) == 1
    assert list(store.packs.root.iterdir()) == []


def test_many_verified_objects_from_a_pull_are_packed(store: ObjectStore) -> None:
    items = [(hash_bytes(b"x%d" % i), b"x%d" % i) for i in range(100)]
    bad = (hash_bytes(b"other"), b"not other")
    assert store.add_verified_many([*items, bad]) == [bad[0]]
    assert not loose_objects(store)
    assert all(store.read_verified(d) == data for d, data in items)
    assert not store.has(bad[0])


def test_drop_removes_loose_and_packed(store: ObjectStore, tmp_path: Path) -> None:
    files = many()
    add(store, tmp_path, files)
    gone = [hash_bytes(files["big.bin"]), *(hash_bytes(files[f"d1/f{i:04d}.csv"]) for i in (1, 8))]
    assert store.drop(gone) > 0
    assert not any(store.has(g) for g in gone)
    assert store.read_verified(hash_bytes(files["d0/f0000.csv"])) == files["d0/f0000.csv"]
    dropped_all = [hash_bytes(v) for v in files.values()]
    store.drop(dropped_all)
    assert list(store.packs.root.iterdir()) == []


def test_pinning_new_data_reads_each_file_once_and_stores_it(tmp_path: Path) -> None:
    """An apply's observation of a never-pinned dataset stages its small files into
    packs as it hashes them; add_tree then finds them stored (nothing loose but the
    big file and the manifest), and an unused staging is discarded on close."""
    from canon.observe.workspace import Workspace

    files = many()
    make_tree(tmp_path / "data", files)
    with Workspace(tmp_path, stage_new_data=True) as ws:
        content = ws.content("data", new_data=True)
        assert content is not None
        staged = list(ws.store.tmp.glob("pack-*"))
        assert staged and not ws.store.packs.root.exists()  # staged, not yet visible
        snap = ws.snapshot("data")
        assert snap is not None and snap[1] is not None
        assert ws.store.add_tree(tmp_path / "data", snap[1]) == content.digest
        assert list(ws.store.tmp.glob("pack-*")) == []
        assert len(loose_objects(ws.store)) == 2
        assert all(ws.store.read_verified(hash_bytes(v)) == v for v in files.values())
    make_tree(tmp_path / "data" / "more", {f"n{i}": b"new %d" % i for i in range(100)})
    with Workspace(tmp_path, stage_new_data=True) as ws:
        assert ws.content("data", new_data=True) is not None
        assert list(ws.store.tmp.glob("pack-*"))  # staged for a pin that never came
    assert list(ObjectStore(tmp_path / ".canon" / "cache").tmp.glob("pack-*")) == []
    with Workspace(tmp_path) as ws:  # status: never writes
        (tmp_path / "data" / "newer.csv").write_bytes(b"y\n")
        assert ws.content("data", new_data=True) is not None
        assert list(ws.store.tmp.glob("pack-*")) == []
