from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from canon.declare.loader import load_project
from canon.declare.memo import MEMO, load_project_memoised
from canon.errors import DeclarationError

CONFIG = """\
project: m
params: params.yaml
data:
  raw: {source: "${profile.root}/raw.csv"}
stages:
  train:
    cmd: python train.py --lr ${params.train.lr} --data ${data.raw}
    deps: [data.raw]
    params: [train]
    outs: [model.json]
profiles:
  local: {root: data}
  big: {root: big}
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "canon.yaml").write_text(CONFIG)
    (tmp_path / "params.yaml").write_text("train: {lr: 0.1, layers: [1, 2]}\n")
    return tmp_path


def test_memo_gives_the_same_project_as_the_loader(root: Path) -> None:
    first = load_project_memoised(root, environ={})
    assert (root / MEMO).exists()
    assert load_project_memoised(root, environ={}) == first == load_project(root, environ={})
    big = load_project_memoised(root, profile="big", environ={})
    assert big.datasets["raw"].path == "big/raw.csv"
    assert load_project_memoised(root, environ={"CANON_PROFILE": "big"}) == big


def test_memo_follows_edits_of_either_file(root: Path) -> None:
    load_project_memoised(root, environ={})
    (root / "params.yaml").write_text("train: {lr: 0.2, layers: [1, 2]}\n")
    assert "0.2" in load_project_memoised(root, environ={}).stages["train"].argv
    (root / "canon.yaml").write_text(CONFIG.replace("model.json", "model2.json"))
    assert load_project_memoised(root, environ={}).stages["train"].outs == ("model2.json",)


def test_errors_are_never_memoised(root: Path) -> None:
    load_project_memoised(root, environ={})
    (root / "params.yaml").write_text("other: 1\n")
    with pytest.raises(DeclarationError, match="problem"):
        load_project_memoised(root, environ={})


def test_damaged_memo_is_a_miss(root: Path) -> None:
    load_project_memoised(root, environ={})
    (root / MEMO).write_text("{garbage")
    assert load_project_memoised(root, environ={}).name == "m"


def test_a_memo_hit_does_not_import_pydantic(root: Path) -> None:
    load_project_memoised(root, environ={})
    code = (
        "import sys; from pathlib import Path;"
        "from canon.declare.memo import load_project_memoised;"
        f"load_project_memoised(Path({str(root)!r}), environ={{}});"
        "print('pydantic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_secret_in_a_stage_env_is_refused(root: Path) -> None:
    (root / "canon.yaml").write_text(
        CONFIG.replace(
            "    outs: [model.json]\n",
            "    outs: [model.json]\n    env: {AWS_SECRET_ACCESS_KEY: supersecret123, HF_TOKEN: x}\n",
        )
    )
    with pytest.raises(DeclarationError) as info:
        load_project_memoised(root, environ={})
    text = "\n".join(info.value.details())
    assert (
        "canon.yaml:11 stages.train.env.AWS_SECRET_ACCESS_KEY" in text
        and "AWS_SECRET_ACCESS_KEY looks like a secret" in text
    )
    assert "HF_TOKEN looks like a secret" in text
    assert "supersecret123" not in text
    assert not (root / MEMO).exists()


OVERRIDE_CONFIG = """\
project: o
params: params.yaml
stages:
  prep:
    cmd: python prep.py --rows ${params.prep.rows}
    params: [prep]
    outs: [rows.csv]
  train:
    shell: true
    cmd: python train.py --seed "${params.seed}"
    params: [train, seed]
    deps: [rows.csv]
    outs: [model.json]
  report:
    cmd: python report.py
    params: [train.lr, train.kind]
    deps: [model.json]
    outs: [report.md]
"""
OVERRIDE_PARAMS = "prep: {rows: 100}\nseed: 1\ntrain: {lr: 0.1, kind: rbf, fit: true, n: 3}\n"


@pytest.mark.parametrize(
    "overrides",
    [
        {"train.lr": 0.5},  # fast path: no ${params...} reaches it
        {"train.lr": 1},  # int for a float: still a number
        {"train.kind": "linear", "train.fit": False},
        {"train.n": 7},
        {"prep.rows": 5},  # referenced by ${params.prep.rows}: full load
        {"seed": 9},  # referenced in a shell script (CANON_VAR_n): full load
        {"train.kind": 3},  # a type change: full load
        {"train.lr": None},
    ],
)
def test_overrides_on_the_memo_equal_a_full_load(
    tmp_path: Path, overrides: dict[str, object]
) -> None:
    (tmp_path / "canon.yaml").write_text(OVERRIDE_CONFIG)
    (tmp_path / "params.yaml").write_text(OVERRIDE_PARAMS)
    load_project_memoised(tmp_path, environ={})
    got = load_project_memoised(tmp_path, environ={}, overrides=overrides)
    assert got == load_project(tmp_path, environ={}, overrides=overrides)
    assert got != load_project(tmp_path, environ={})


def test_overrides_on_the_memo_skip_pydantic_only_when_nothing_references_them(
    tmp_path: Path,
) -> None:
    (tmp_path / "canon.yaml").write_text(OVERRIDE_CONFIG)
    (tmp_path / "params.yaml").write_text(OVERRIDE_PARAMS)
    load_project_memoised(tmp_path, environ={})

    def imports_pydantic(overrides: str) -> bool:
        code = (
            "import sys, json; from pathlib import Path;"
            "from canon.declare.memo import load_project_memoised;"
            f"p = load_project_memoised(Path({str(tmp_path)!r}), environ={{}}, "
            f"overrides={overrides});"
            "print('pydantic' in sys.modules, json.dumps(dict(p.stages['report'].env)['CANON_PARAMS']))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split(" ", 1)
        if "train.lr" in overrides:
            assert '\\"train.lr\\":0.25' in out[1]
        return out[0] == "True"

    assert not imports_pydantic("{'train.lr': 0.25}")
    assert imports_pydantic("{'prep.rows': 5}")
    assert imports_pydantic("{'train.kind': 5}")


def test_an_unknown_override_key_fails_the_same_on_the_memo(tmp_path: Path) -> None:
    (tmp_path / "canon.yaml").write_text(OVERRIDE_CONFIG)
    (tmp_path / "params.yaml").write_text(OVERRIDE_PARAMS)
    load_project_memoised(tmp_path, environ={})
    with pytest.raises(DeclarationError, match="has no 'lrr' under train") as err:
        load_project_memoised(tmp_path, environ={}, overrides={"train.lrr": 1.0})
    assert err.value.hint == 'did you mean "train.lr"?'


def test_an_escaped_dollar_in_canon_yaml_takes_the_full_path(tmp_path: Path) -> None:
    # "\x24{params.train.lr}" is ${params.train.lr} once YAML unescapes it
    (tmp_path / "canon.yaml").write_text(
        OVERRIDE_CONFIG.replace("python report.py", '"python report.py \\x24{params.train.lr}"')
    )
    (tmp_path / "params.yaml").write_text(OVERRIDE_PARAMS)
    load_project_memoised(tmp_path, environ={})
    got = load_project_memoised(tmp_path, environ={}, overrides={"train.lr": 0.75})
    assert got.stages["report"].argv[-1] == "0.75"
