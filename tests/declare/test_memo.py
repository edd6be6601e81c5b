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
    (root / "canon.yaml").write_text(CONFIG.replace(
        "    outs: [model.json]\n",
        "    outs: [model.json]\n    env: {AWS_SECRET_ACCESS_KEY: supersecret123, HF_TOKEN: x}\n"))
    with pytest.raises(DeclarationError) as info:
        load_project_memoised(root, environ={})
    text = "\n".join(info.value.details())
    assert "canon.yaml:11 stages.train.env.AWS_SECRET_ACCESS_KEY" in text and "AWS_SECRET_ACCESS_KEY looks like a secret" in text
    assert "HF_TOKEN looks like a secret" in text
    assert "supersecret123" not in text
    assert not (root / MEMO).exists()
