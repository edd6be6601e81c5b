"""Pack format: round trip, every damaged index refused, bounded read windows; and the
transfer engine against the in-package fake remote (retries, nothing re-uploaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from canon.apply.transfer import Transfer
from canon.digest import hash_bytes
from canon.errors import IntegrityError, RemoteMissingError, StateError
from canon.events import discard
from canon.stores.objects import ObjectStore
from canon.stores.packs import PackBuilder, PackEntry, PackIndex, read_windows
from canon.stores.references import Root
from canon.stores.remotes.fake import MemoryRemote


def build(n: int = 5) -> tuple[bytes, PackIndex, list[bytes]]:
    blobs = [f"object {i}".encode() * (i + 1) for i in range(n)]
    b = PackBuilder()
    for blob in blobs:
        b.add(hash_bytes(blob), blob)
    data, idx = b.finish()
    return data, idx, blobs


def test_round_trip() -> None:
    data, idx, blobs = build()
    again = PackIndex.parse(idx.render(), idx.pack)
    assert again == idx
    for e in idx.entries:
        assert hash_bytes(data[e.offset : e.offset + e.length]) == e.digest
    assert {e.digest for e in idx.entries} == {hash_bytes(b) for b in blobs}


@pytest.mark.parametrize(
    ("mangle", "why"),
    [
        (lambda t: t.replace("canon-pack-index 1", "canon-pack-index 2"), "bad header"),
        (lambda t: t.rsplit("end", 1)[0], "truncated"),
        (lambda t: t.replace("end 5", "end 4"), "truncated"),
        (lambda t: t.replace(" 13 ", " 0 ", 1), "outside the pack|overlap"),
        (lambda t: t.replace("pack ", "pack 0", 1), "does not name this pack"),
    ],
)
def test_damaged_indexes_are_refused(mangle: object, why: str) -> None:
    _, idx, _ = build()
    text = idx.render().decode()
    assert callable(mangle)
    with pytest.raises(StateError, match=why):
        PackIndex.parse(mangle(text).encode(), idx.pack)


def test_read_windows_coalesce_and_stay_bounded() -> None:
    entries = [PackEntry(hash_bytes(bytes([i])), 13 + i * 100, 100) for i in range(100)]
    windows = list(read_windows(entries, max_gap=0, max_size=1000))
    assert sum(len(w.entries) for w in windows) == 100
    assert all(w.end - w.start <= 1000 for w in windows) and len(windows) == 10
    sparse = [entries[0], entries[99]]
    assert len(list(read_windows(sparse, max_gap=100))) == 2


def roots_for(store: ObjectStore, blobs: list[bytes]) -> list[Root]:
    return [Root(f"f{i}", store.add_bytes(b), len(b), False) for i, b in enumerate(blobs)]


def test_transfer_with_fake_remote_retries_and_skips_what_is_there(tmp_path: Path) -> None:
    src = ObjectStore(tmp_path / "a")
    blobs = [f"blob {i}".encode() * 50 for i in range(30)]
    roots = roots_for(src, blobs)
    remote = MemoryRemote()
    remote.fail_next(2, "put")  # two 503s on the way: retried
    Transfer(src, remote, tmp_path / "rec-a", discard).push(roots)
    puts = remote.calls["put"]
    assert puts == 2 + 2  # one pack + its index, after two failed attempts
    Transfer(src, remote, tmp_path / "rec-b", discard).push(roots)  # fresh record: full check
    assert remote.calls["put"] == puts  # nothing uploaded again
    dst = ObjectStore(tmp_path / "b")
    Transfer(dst, remote, tmp_path / "rec-c", discard).fetch(roots)
    assert all(dst.verify(r.digest) for r in roots)


def test_fetch_refuses_corrupt_and_reports_missing(tmp_path: Path) -> None:
    src = ObjectStore(tmp_path / "a")
    roots = roots_for(src, [b"one" * 10, b"two" * 10])
    remote = MemoryRemote()
    Transfer(src, remote, tmp_path / "rec", discard).push(roots)
    pack = next(k for k in remote.blobs if k.endswith(".pack"))
    data, t = remote.blobs[pack]
    remote.blobs[pack] = (data[:20] + bytes([data[20] ^ 1]) + data[21:], t)
    dst = ObjectStore(tmp_path / "b")
    with pytest.raises(IntegrityError, match="none of them entered the cache"):
        Transfer(dst, remote, tmp_path / "rec2", discard).fetch(roots)
    present = [r for r in roots if dst.has(r.digest)]
    assert len(present) == 1 and dst.verify(present[0].digest)  # the good one only
    ghost = Root("ghost", hash_bytes(b"never pushed"), 12, False)
    with pytest.raises(RemoteMissingError, match="not on remote"):
        Transfer(dst, remote, tmp_path / "rec3", discard).fetch([ghost])


def test_directory_push_builds_packs_in_worker_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import canon.apply.transfer as transfer_module
    import canon.digest
    import canon.stores.packs
    from canon.stores.remotes.local import LocalRemote

    monkeypatch.setattr(canon.stores.packs, "PACK_TARGET", 300)  # ~3 objects a pack
    monkeypatch.setattr(canon.digest, "PARALLEL_MIN_WORK_NS", 0)  # small work still forks
    calls: list[int] = []
    real = transfer_module.run_on_cores

    def spy(fn, items, weights=None):  # type: ignore[no-untyped-def]
        calls.append(len(items))
        return real(fn, items, weights)

    monkeypatch.setattr(transfer_module, "run_on_cores", spy)
    src = ObjectStore(tmp_path / "a")
    roots = roots_for(src, [f"blob {i}".encode() * 15 for i in range(40)])
    remote = LocalRemote(tmp_path / "remote")
    result = Transfer(src, remote, tmp_path / "rec", discard, jobs=4).push(roots)
    assert result.objects == 40 and len(calls) == 1 and calls[0] > 5
    listing = remote.list("packs/")
    indexes = [k for k in listing if k.endswith(".idx")]
    assert len(indexes) == calls[0] and len(listing) == 2 * len(indexes)
    for key in indexes:
        name = key[len("packs/") : -len(".idx")]
        pack = remote.get_bytes(f"packs/{name}.pack")
        assert hash_bytes(pack) == "sha256:" + name
        PackIndex.parse(remote.get_bytes(key), name)
    dst = ObjectStore(tmp_path / "b")
    Transfer(dst, remote, tmp_path / "rec-b", discard).fetch(roots)
    assert all(dst.read_verified(r.digest) for r in roots)

    bad_store = ObjectStore(tmp_path / "c")
    bad_roots = roots_for(bad_store, [f"other {i}".encode() * 15 for i in range(40)])
    victim = bad_store.path_of(bad_roots[17].digest)
    victim.chmod(0o644)
    victim.write_bytes(b"not what it was")
    other = LocalRemote(tmp_path / "remote-2")
    with pytest.raises(IntegrityError, match="corrupt"):  # raised in a worker, typed here
        Transfer(bad_store, other, tmp_path / "rec-c", discard, jobs=4).push(bad_roots)
    named = {
        e.digest
        for k in other.list("packs/")
        if k.endswith(".idx")
        for e in PackIndex.parse(other.get_bytes(k), k[len("packs/") : -len(".idx")]).entries
    }
    assert bad_roots[17].digest not in named  # a bad object never reaches the remote


def test_directory_fetch_stores_windows_in_worker_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import canon.apply.transfer as transfer_module
    import canon.digest
    import canon.stores.packs
    from canon.stores.remotes.local import LocalRemote

    monkeypatch.setattr(canon.stores.packs, "PACK_TARGET", 300)
    src = ObjectStore(tmp_path / "a")
    roots = roots_for(src, [f"blob {i}".encode() * 15 for i in range(40)])
    remote = LocalRemote(tmp_path / "remote")
    Transfer(src, remote, tmp_path / "rec", discard).push(roots)
    monkeypatch.setattr(canon.digest, "PARALLEL_MIN_WORK_NS", 0)
    calls: list[int] = []
    real = transfer_module.run_on_cores

    def spy(fn, items, weights=None):  # type: ignore[no-untyped-def]
        calls.append(len(items))
        return real(fn, items, weights)

    monkeypatch.setattr(transfer_module, "run_on_cores", spy)
    dst = ObjectStore(tmp_path / "b")
    result = Transfer(dst, remote, tmp_path / "rec-b", discard, jobs=4).fetch(roots)
    assert calls and calls[0] > 5 and result.objects == 40
    assert all(dst.verify(r.digest) for r in roots)

    pack = sorted((tmp_path / "remote" / "packs").glob("*.pack"))[3]
    data = bytearray(pack.read_bytes())
    data[-1] ^= 0x01  # the last object of this pack is damaged on the remote
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    other = ObjectStore(tmp_path / "c")
    with pytest.raises(IntegrityError, match="none of them entered the cache"):
        Transfer(other, remote, tmp_path / "rec-c", discard, jobs=4).fetch(roots)
    present = [r for r in roots if other.has(r.digest)]
    assert len(present) == len(roots) - 1  # every other object arrived, verified
    assert all(other.verify(r.digest) for r in present)
