"""Subsets and queries through the CLI, on generated workspaces."""

from __future__ import annotations

import json
import sys

import duckdb
import yaml

from tests.e2e.conftest import Workspace

CSV = "day,rain\n" + "".join(f"2015-01-{i % 28 + 1:02},{i % 4}\n" for i in range(400))
COUNT = "import sys; rows = open(sys.argv[1]).read().splitlines(); open(sys.argv[2], 'w').write(str(len(rows) - 1))"


def declare(ws: Workspace, data: dict[str, object], reads: str) -> None:
    ws.write({"count.py": COUNT})
    doc = {"project": "t", "data": data,
           "stages": {"count": {"cmd": [sys.executable, "count.py", f"${{data.{reads}}}", "n.txt"],
                                "deps": ["count.py", f"data.{reads}"], "outs": ["n.txt"]}}}
    ws.write({"canon.yaml": yaml.safe_dump(doc, sort_keys=False)})


def test_subset_is_labelled_and_reproducible(ws: Workspace) -> None:
    ws.write({"data/w.csv": CSV})
    declare(ws, {"weather": {"source": "data/w.csv"},
                 "small": {"from": "weather", "sample": 0.25, "seed": 1}}, reads="small")
    assert ws.canon("apply").returncode == 0
    n = int(ws.read("n.txt"))
    assert 60 < n < 140
    pins = yaml.safe_load(ws.read("canon.lock"))["profiles"]["default"]["data"]
    assert pins["small"]["subset_of"] == {"name": "weather", "digest": pins["weather"]["digest"]}
    assert pins["small"]["spec"] == {"sample": 0.25, "seed": 1}
    # Reproducible from the full data: a fresh cache gives the same subset digest.
    import shutil
    shutil.rmtree(ws.root / ".canon")
    (ws.root / "canon.lock").unlink()
    assert ws.canon("apply").returncode == 0
    again = yaml.safe_load(ws.read("canon.lock"))["profiles"]["default"]["data"]["small"]
    assert again["digest"] == pins["small"]["digest"]


def make_warehouse(path: str, rows: list[tuple[int, str]]) -> None:
    con = duckdb.connect(path)
    con.execute("CREATE OR REPLACE TABLE t (id INTEGER, day VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", rows)
    con.close()


def test_query_pin_and_not_immutable_detection(ws: Workspace) -> None:
    make_warehouse(str(ws.root / "warehouse.duckdb"), [(2, "2025-01-02"), (1, "2025-01-01")])
    q = {"query": "SELECT * FROM t WHERE day <= :as_of", "as_of": "2025-01-31"}
    declare(ws, {"q": q}, reads="q")
    result = ws.canon("apply")
    assert result.returncode == 0, result.stderr
    assert ws.read("n.txt") == "2"
    assert (ws.root / ".canon/data/q/q.csv").read_text() == "id,day\n1,2025-01-01\n2,2025-01-02\n"
    pin = yaml.safe_load(ws.read("canon.lock"))["profiles"]["default"]["data"]["q"]
    assert pin["spec"]["as_of"] == "2025-01-31" and pin["spec"]["database"] == "duckdb:///warehouse.duckdb"
    assert ws.canon("data", "status").returncode == 0

    # Someone rewrites history inside the as_of window: the query is not immutable.
    make_warehouse(str(ws.root / "warehouse.duckdb"), [(1, "2025-01-01"), (2, "2025-01-02"), (3, "2025-01-03")])
    status = ws.canon("data", "status", "--json")
    assert status.returncode == 1
    (row,) = json.loads(status.stdout)
    assert row["state"] == "not-immutable" and "the query is not immutable" in row["detail"]
    assert ws.canon("status").returncode == 0  # never silently accepted, never silently re-run
    assert ws.canon("apply", "-f").returncode == 0 and ws.read("n.txt") == "2"  # the pin wins

    # Changing the declared as_of needs `canon data update`.
    q["as_of"] = "2025-02-28"
    declare(ws, {"q": q}, reads="q")
    status = ws.canon("status")
    assert status.returncode == 1 and "QUERY_CHANGED as_of" in status.stdout
    assert ws.canon("data", "update", "q").returncode == 0
    assert ws.canon("apply").returncode == 0 and ws.read("n.txt") == "3"
