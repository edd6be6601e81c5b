"""A damaged cache object met while restoring, through the real ``canon`` CLI.

A stage output that must be restored from a damaged object is run again instead
(its inputs are present), and the ledger says why; a damaged dataset pin fails
the stage with what to do (``canon cache verify --repair`` / ``canon pull``).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Workspace

MARKER = b"canon-damaged-object-marker;" * 64


def damage(ws: Workspace, marker: bytes) -> int:
    """Flip one byte of every copy of ``marker`` under .canon/ (wherever the store
    keeps it: a loose object or inside a pack); how many copies were hit."""
    hit = 0
    for path in (ws.root / ".canon").rglob("*"):
        if not path.is_file() or path.is_symlink() or path.parent.name == "data":
            continue
        data = path.read_bytes()
        at = data.find(marker)
        if at < 0:
            continue
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
        with open(path, "r+b") as f:
            f.seek(at + len(marker) // 2)
            f.write(bytes([data[at + len(marker) // 2] ^ 0x01]))
        hit += 1
    return hit


@pytest.mark.parametrize("out", ["o.bin", "outdir"])
def test_a_damaged_output_object_makes_the_stage_run_again(ws: Workspace, out: str) -> None:
    # the command builds the marker: canon.yaml and canon's memo of it never hold it whole
    make = (
        "import pathlib; p = pathlib.Path('outdir'); p.mkdir(); (p / 'a.txt').write_text('a');"
        "(p / 'm.bin').write_bytes(b'canon-damaged-object-marker;' * 64)"
        if out == "outdir"
        else "import pathlib; pathlib.Path('o.bin').write_bytes(b'canon-damaged-object-marker;' * 64)"
    )
    ws.declare({"s": {"cmd": [sys.executable, "-c", make], "outs": [out]}})
    assert ws.canon("apply").returncode == 0
    shutil.rmtree(ws.root / out) if out == "outdir" else (ws.root / out).unlink()
    assert damage(ws, MARKER) >= 1
    assert ws.canon("cache", "verify").returncode == 1

    done = ws.canon("apply")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"s: ran instead of restoring: cannot restore {out} from the cache" in done.stdout
    assert f"CACHE_DAMAGED {out}" in done.stdout and "is corrupt" in done.stdout
    data = ws.root / ("outdir/m.bin" if out == "outdir" else out)
    assert data.read_bytes() == MARKER
    [last, *_] = json.loads(ws.canon("log", "--json").stdout)
    [run] = last["stages"]
    assert (run["stage"], run["action"], run["status"]) == ("s", "run", "ran")
    assert run["reason"].startswith(f"ran instead of restoring: cannot restore {out}")
    assert "ran instead of restoring" in ws.canon("log").stdout
    assert ws.canon("status").returncode == 0
    assert ws.canon("cache", "verify").returncode == 0  # the damaged object was replaced


def test_a_damaged_dataset_pin_fails_the_stage_with_what_to_do(ws: Workspace) -> None:
    ws.write({"raw.bin": MARKER})
    read = "import os, pathlib; pathlib.Path('o').write_bytes(pathlib.Path(os.environ['D']).read_bytes())"
    ws.declare(
        {"s": {"cmd": [sys.executable, "-c", read], "deps": ["data.raw"], "outs": ["o"],
               "env": {"D": "${data.raw}"}}},
        data={"raw": {"source": "raw.bin"}},
    )
    first = ws.canon("apply")
    assert first.returncode == 0, first.stdout + first.stderr
    os.remove(ws.root / "raw.bin")  # the pin is all there is now
    shutil.rmtree(ws.root / ".canon" / "data")
    assert damage(ws, MARKER) >= 1

    done = ws.canon("apply", "-f", "s")
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "data.raw: its pinned content in the cache is damaged" in out
    assert "canon cache verify --repair" in out and "Traceback" not in out
    assert "s" not in [r["stage"] for r in json.loads(ws.canon("log", "--json").stdout)[0]["stages"]
                       if r["status"] == "ran"]


def test_pull_over_a_damaged_cached_object_says_how_to_repair(ws: Workspace, tmp_path: Path) -> None:
    make = "import pathlib; pathlib.Path('o.bin').write_bytes(b'canon-damaged-object-marker;' * 64)"
    ws.declare({"s": {"cmd": [sys.executable, "-c", make], "outs": ["o.bin"]}},
               remotes={"r": {"url": str(tmp_path / "remote")}}, default_remote="r")
    assert ws.canon("apply").returncode == 0
    assert ws.canon("push").returncode == 0
    (ws.root / "o.bin").unlink()
    assert damage(ws, MARKER) >= 1

    pulled = ws.canon("pull")
    assert pulled.returncode == 2, pulled.stdout + pulled.stderr
    assert "error: cannot restore o.bin: object sha256:" in pulled.stderr
    assert "hint: `canon cache verify --repair` removes damaged objects" in pulled.stderr
    assert not (ws.root / "o.bin").exists() and "Traceback" not in pulled.stderr
    repaired = ws.canon("cache", "verify", "--repair")  # what the hint says works
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert ws.canon("pull").returncode == 0
    assert (ws.root / "o.bin").read_bytes() == MARKER
