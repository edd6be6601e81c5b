"""The run cache: stage key -> the outputs those exact inputs produced.

When a stage's inputs match a run seen before (a reverted param, a switched
branch) its outputs are restored from the object store instead of running the
command again. Entries are small JSON files written atomically under
``.canon/runs/``; a damaged entry is treated as absent (it is only a cache).
"""

from __future__ import annotations

import json
from pathlib import Path

from canon.digest import Digest, hex_of, is_digest
from canon.stores.atomic import atomic_write
from canon.stores.records import Content, RunRecord


class RunCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: Digest) -> Path:
        h = hex_of(key)
        return self.root / h[:2] / f"{h[2:]}.json"

    def get(self, key: Digest) -> RunRecord | None:
        try:
            raw = json.loads(self._path(key).read_bytes())
            outs = {
                str(path): Content(
                    digest=Digest(c["digest"]),
                    size=int(c["size"]),
                    nfiles=int(c["files"]),
                    is_dir=bool(c["dir"]),
                )
                for path, c in raw["outs"].items()
            }
            if raw.get("key") != key or not all(is_digest(c.digest) for c in outs.values()):
                return None
            return RunRecord(key, outs)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def put(self, record: RunRecord) -> None:
        doc = {
            "key": record.key,
            "outs": {
                p: {"digest": c.digest, "size": c.size, "files": c.nfiles, "dir": c.is_dir}
                for p, c in record.outs.items()
            },
        }
        atomic_write(self._path(record.key), json.dumps(doc, sort_keys=True).encode())
