"""Deterministic parallel gzip: one standard gzip member, deflated on all cores.

The idea is pigz's. The uncompressed stream is cut into fixed-size blocks
(``BLOCK`` bytes; only the last is shorter). Each block is deflated on its own,
on a thread pool (zlib releases the GIL), by a raw deflate stream primed with
the last 32 KiB of the previous block as its dictionary, so matches still reach
back across the cut and the ratio stays that of one stream. A block ends with
``Z_SYNC_FLUSH`` (an empty stored block: byte-aligned, not final), so the
blocks' outputs concatenate into one valid deflate stream; an empty final
fixed-Huffman block (``03 00``) closes it. Around it: the RFC 1952 header
``gzip -n`` writes (no FNAME, MTIME 0, OS unix) and the CRC-32 / ISIZE trailer.

Deterministic: the bytes depend only on the input bytes, ``BLOCK`` and the
level — not on how the input was chunked by the caller, the number of worker
threads or their timing (blocks are written in input order). ``gzip -t``,
``zcat``, Python's ``gzip`` module and ``tar -xz`` read it like any gzip file.
"""

from __future__ import annotations

import os
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

LEVEL = 6
BLOCK = 1 << 20  # changing it changes every layer's bytes (bump observe.images.IMAGE_FORMAT)
WINDOW = 1 << 15  # deflate's window: the dictionary carried from block to block
MEM_LEVEL = 9
HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"  # magic, deflate, no flags, mtime 0, unix
FINAL = b"\x03\x00"  # an empty final block with fixed Huffman codes


def _deflate(block: bytes, dictionary: bytes, level: int) -> bytes:
    if dictionary:
        z = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, MEM_LEVEL, zdict=dictionary)
    else:
        z = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, MEM_LEVEL)
    return z.compress(block) + z.flush(zlib.Z_SYNC_FLUSH)


MAX_WORKERS = 16  # 2 * 16 + 2 MiB in flight at most


def default_workers() -> int:
    """The cores this process may run on (at most ``MAX_WORKERS``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


class ParallelGzip:
    """``write`` uncompressed bytes, ``close`` once; the gzip bytes go to ``out`` in order.

    At most ``2 * workers + 2`` blocks are in flight, so memory stays bounded
    (a few MiB) whatever the size of the stream. ``close`` must be called (it
    also stops the threads); after an error, ``abort`` stops them without
    finishing the stream.
    """

    def __init__(
        self,
        out: Callable[[bytes], object],
        *,
        level: int = LEVEL,
        block: int = BLOCK,
        workers: int | None = None,
    ) -> None:
        if block < WINDOW:
            raise ValueError(f"block must be at least {WINDOW} bytes")
        self.out = out
        self.level = level
        self.block = block
        self.workers = workers or default_workers()
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="canon-gzip")
        self.in_flight: deque[Future[bytes]] = deque()
        self.pending = bytearray()
        self.dictionary = b""
        self.crc = 0
        self.size = 0
        self.closed = False
        self.out(HEADER)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        self.pending += data
        while len(self.pending) >= self.block:
            chunk = bytes(self.pending[: self.block])
            del self.pending[: self.block]
            self._submit(chunk)
        return len(data)

    def _submit(self, chunk: bytes) -> None:
        self.in_flight.append(self.pool.submit(_deflate, chunk, self.dictionary, self.level))
        self.dictionary = chunk[-WINDOW:]
        while len(self.in_flight) > 2 * self.workers + 2:
            self.out(self.in_flight.popleft().result())

    def close(self) -> None:
        """Deflate what is left, write the final block and the trailer."""
        if self.closed:
            return
        try:
            if self.pending:
                self._submit(bytes(self.pending))
                self.pending.clear()
            while self.in_flight:
                self.out(self.in_flight.popleft().result())
            self.out(FINAL)
            self.out(
                (self.crc & 0xFFFFFFFF).to_bytes(4, "little")
                + (self.size & 0xFFFFFFFF).to_bytes(4, "little")
            )
        finally:
            self.abort()

    def abort(self) -> None:
        self.closed = True
        for future in self.in_flight:
            future.cancel()
        self.in_flight.clear()
        self.pool.shutdown(wait=True)


def compress(data: bytes, *, level: int = LEVEL, block: int = BLOCK, workers: int = 1) -> bytes:
    """The gzip of ``data`` as ``ParallelGzip`` writes it (small layers, tests)."""
    parts: list[bytes] = []
    gz = ParallelGzip(parts.append, level=level, block=block, workers=workers)
    gz.write(data)
    gz.close()
    return b"".join(parts)
