"""``canon status`` on a tree big enough to be walked by two processes, the second
one started before canon's imports (``walk.begin_known``): the answer must be the
one a single walk gives, for changes in any part of the tree."""

from __future__ import annotations

import yaml

from canon.observe.walk import SPLIT_AT
from tests.e2e.conftest import Workspace

FOLDERS = 40


def test_status_of_a_big_tree_sees_every_change(ws: Workspace) -> None:
    per = SPLIT_AT // FOLDERS + 5
    for i in range(FOLDERS):
        folder = ws.root / "data" / f"d{i:02d}"
        folder.mkdir(parents=True)
        for j in range(per):
            (folder / f"f{j}").write_bytes(b"%d-%d" % (i, j))
    doc = {"project": "t", "data": {"files": {"source": "data"}}}
    ws.write({"canon.yaml": yaml.safe_dump(doc, sort_keys=False)})
    assert ws.canon("apply").returncode == 0
    clean = ws.canon("status")
    assert clean.returncode == 0 and "Everything is up to date" in clean.stdout
    assert "DATA_DRIFT" not in clean.stdout
    # one change at each end of the queue: the first folders go to one process,
    # the last ones to whichever is free
    (ws.root / "data" / "d00" / "f0").write_bytes(b"changed first")
    (ws.root / "data" / f"d{FOLDERS - 1:02d}" / "f1").write_bytes(b"changed last")
    (ws.root / "data" / "d20" / "f2").unlink()
    out = ws.canon("status").stdout
    assert "DATA_DRIFT data: 1 removed (d20/f2); 2 changed (d00/f0, d39/f1)" in out, out
    (ws.root / "data" / "zz").mkdir()  # a new top folder: the early walk is dropped
    (ws.root / "data" / "zz" / "new").write_text("new")
    out = ws.canon("status").stdout
    assert "1 added (zz/new); 1 removed (d20/f2); 2 changed (d00/f0, d39/f1)" in out, out
