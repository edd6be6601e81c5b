"""The layer writer: parallel gzip that any gzip reader reads and that is the same
bytes whatever the cores, and tar bytes identical to ``tarfile``'s."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import subprocess
import tarfile
import threading
import zlib
from pathlib import Path

import pytest

from canon.executors.image import pgzip
from canon.executors.image.pgzip import WINDOW, ParallelGzip
from canon.executors.image.tarball import Entry, build_layer, normalised, write_tar
from canon.stores.oci.layout import ImageLayout

SMALL = WINDOW  # the smallest block: many blocks from little data, so the tests stay quick


def noise(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def text(size: int) -> bytes:
    words = [b"alpha", b"beta", b"gamma", b"delta", b"\n", b"epsilon", b"zeta"]
    rnd = random.Random(1)
    out = bytearray()
    while len(out) < size:
        out += rnd.choice(words) + b" "
    return bytes(out[:size])


@pytest.mark.parametrize(
    "size", [0, 1, SMALL - 1, SMALL, SMALL + 1, 5 * SMALL + 17, 3 * pgzip.BLOCK + 5]
)
def test_every_gzip_reader_gets_the_input_back(size: int) -> None:
    data = text(size // 2) + noise(size - size // 2)
    block = pgzip.BLOCK if size > 2 * pgzip.BLOCK else SMALL
    out = pgzip.compress(data, block=block, workers=3)
    assert out[:10] == pgzip.HEADER, "gzip -n's header: no name, mtime 0"
    assert gzip.decompress(out) == data
    assert subprocess.run(["gzip", "-t"], input=out).returncode == 0
    got = subprocess.run(["gzip", "-dc"], input=out, capture_output=True, check=True).stdout
    assert got == data
    d = zlib.decompressobj(31)  # one member, nothing after it
    assert d.decompress(out) == data and d.eof and d.unused_data == b""


def test_bytes_do_not_depend_on_workers_or_how_the_input_was_chunked() -> None:
    data = text(9 * SMALL + 123) + noise(2 * SMALL)
    one = pgzip.compress(data, block=SMALL, workers=1)
    for workers in (2, 5):
        parts: list[bytes] = []
        gz = ParallelGzip(parts.append, block=SMALL, workers=workers)
        rnd, i = random.Random(workers), 0
        while i < len(data):
            step = rnd.choice([1, 511, 4096, SMALL, 3 * SMALL + 7])
            gz.write(data[i : i + step])
            i += step
        gz.close()
        assert b"".join(parts) == one
    assert pgzip.compress(data, block=2 * SMALL) != one, "the block size is part of the format"


def test_each_block_sees_the_previous_blocks_tail_as_its_dictionary() -> None:
    chunk = noise(SMALL // 2)
    data = chunk * 16  # 8 blocks of the same incompressible 16 KiB, twice each
    out = pgzip.compress(data, block=SMALL, workers=2)
    assert gzip.decompress(out) == data
    alone = 8 * len(zlib.compress(chunk * 2, 6))  # blocks deflated without the dictionary
    assert len(out) < len(chunk) + 4096 < alone  # only the first 16 KiB cost their size


def test_a_block_smaller_than_the_window_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        ParallelGzip(lambda b: None, block=WINDOW - 1)


def _tarfile_reference(entries: list[Entry], mtime: int) -> bytes:
    """What ``tarfile`` writes for the same entries (the writer's previous implementation)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for entry in normalised(entries):
            info = tarfile.TarInfo(entry.path)
            info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
            if entry.kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif entry.kind == "symlink":
                info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, entry.target
                tar.addfile(info)
            else:
                data = entry.read() if entry.read else b""
                info.mode = 0o755 if entry.executable else 0o644
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ENTRIES = [
    Entry.data("bin/run", b"#!/bin/sh\necho hi\n", executable=True),
    Entry.data("a/empty", b""),
    Entry.data("a/exact", b"x" * 512),
    Entry.data("a/big.bin", noise(200_000)),  # above SMALL_FILE: written in three calls
    Entry.data("a/" + "long" * 40 + "/name.txt", b"a name over 100 bytes needs a pax header"),
    Entry.data("a/ünïcode.txt", b"non-ASCII name"),
    Entry("a/link", "symlink", target="../" + "t" * 120),
    Entry("z/dir", "dir"),
]


def test_tar_bytes_are_those_tarfile_writes() -> None:
    class Sink:
        def __init__(self) -> None:
            self.buf = bytearray()

        def write(self, data: bytes) -> int:
            self.buf += data
            return len(data)

    sink = Sink()
    count, content = write_tar(ENTRIES, 1_700_000_000, sink)
    assert bytes(sink.buf) == _tarfile_reference(ENTRIES, 1_700_000_000)
    assert len(sink.buf) % tarfile.RECORDSIZE == 0
    assert count == 12 and content == sum(e.size for e in ENTRIES)


def test_build_layer_digest_and_diff_id_match_what_tar_reads(tmp_path: Path) -> None:
    layout = ImageLayout(tmp_path / "images")
    layer = build_layer(layout, ENTRIES, 1_700_000_000)
    blob = layout.read_bytes(layer.descriptor.digest)
    assert len(blob) == layer.descriptor.size
    raw = gzip.decompress(blob)
    assert layer.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    listing = subprocess.run(
        ["tar", "-tzv", "--numeric-owner", "-f", "-"], input=blob, capture_output=True, check=True
    ).stdout.decode()
    assert "-rwxr-xr-x 0/0" in listing and "bin/run" in listing and "a/ünïcode.txt" in listing
    again = build_layer(ImageLayout(tmp_path / "other"), list(reversed(ENTRIES)), 1_700_000_000)
    assert again.descriptor == layer.descriptor and again.diff_id == layer.diff_id


def test_a_failing_read_leaves_no_blob_and_no_gzip_threads(tmp_path: Path) -> None:
    def broken() -> bytes:
        raise OSError("disk went away")

    layout = ImageLayout(tmp_path / "images")
    before = {t.name for t in threading.enumerate()}
    entries = [Entry.data("a", noise(3 * pgzip.BLOCK)), Entry("b", "file", read=broken, size=1)]
    with pytest.raises(OSError, match="disk went away"):
        build_layer(layout, entries, 0)
    assert list((tmp_path / "images/blobs/sha256").iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("canon-gzip")
                and t.name not in before]
