"""-S overrides and sweeps: parsing, grids, random search, unknown keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from canon.declare.loader import load_project
from canon.declare.overrides import apply_overrides, expand, parse_set
from canon.errors import DeclarationError


@pytest.mark.parametrize(
    ("text", "key", "values"),
    [
        ("train.C=0.5", "train.C", (0.5,)),
        ("train.C='0.5'", "train.C", ("0.5",)),
        ("train.C=range(0.1,1.0,0.3)", "train.C", (0.1, 0.4, 0.7)),
        ("n=range(1,10,3)", "n", (1, 4, 7)),
        ("n=range(0,3)", "n", (0, 1, 2)),
        ("kind=choice(a, 2, true)", "kind", ("a", 2, True)),
        ("cmd=$(rm -rf /)", "cmd", ("$(rm -rf /)",)),  # a value, never code
    ],
)
def test_parse_set(text: str, key: str, values: tuple[object, ...]) -> None:
    o = parse_set(text)
    assert (o.key, o.values) == (key, values)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("novalue", "is not KEY=VALUE"),
        ("../x=1", "is not KEY=VALUE"),
        ("a=range(1)", "takes START, STOP"),
        ("a=range(1,2,0)", "positive step"),
        ("a=range(x,2)", "takes numbers"),
        ("a=range(3,1)", "gives no values"),
        ("a=[1,", "is not a value"),
    ],
)
def test_parse_set_refuses(text: str, match: str) -> None:
    with pytest.raises(DeclarationError, match=match):
        parse_set(text)


def test_grid_is_the_product_in_order_and_max_refuses() -> None:
    grid = expand([parse_set("a=choice(1,2)"), parse_set("b=choice(x,y,z)")])
    assert grid[:4] == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 1, "b": "z"},
        {"a": 2, "b": "x"},
    ]
    assert len(grid) == 6
    with pytest.raises(DeclarationError, match="would create 6 experiments, more than --max 5"):
        expand([parse_set("a=choice(1,2)"), parse_set("b=choice(x,y,z)")], max_runs=5)
    with pytest.raises(DeclarationError, match="more than once"):
        expand([parse_set("a=1"), parse_set("a=2")])


def test_random_search_is_seeded_and_bounded() -> None:
    sets = [parse_set("a=range(0,100)"), parse_set("b=choice(x,y)")]
    one = expand(sets, max_runs=5, random=True, seed=7)
    assert one == expand(sets, max_runs=5, random=True, seed=7)
    assert len(one) == 5 and len({str(p) for p in one}) == 5
    assert one != expand(sets, max_runs=5, random=True, seed=8)
    with pytest.raises(DeclarationError, match="needs --max"):
        expand(sets, random=True)


def test_apply_overrides_sets_known_keys_only() -> None:
    params = {"train": {"lr": 0.1, "layers": {"n": 2}}, "seed": 1}
    out = apply_overrides(params, {"train.layers.n": 3, "seed": 2}, "params.yaml")
    assert out == {"train": {"lr": 0.1, "layers": {"n": 3}}, "seed": 2}
    assert params["seed"] == 1  # a copy
    with pytest.raises(DeclarationError, match="no 'lrr' under train") as err:
        apply_overrides(params, {"train.lrr": 1}, "params.yaml")
    assert err.value.hint == 'did you mean "train.lr"?'
    with pytest.raises(DeclarationError, match=r"seed in params\.yaml is a value, not a section"):
        apply_overrides(params, {"seed.x": 1}, "params.yaml")


def test_load_project_with_overrides(tmp_path: Path) -> None:
    (tmp_path / "canon.yaml").write_text(
        "project: t\nparams: params.yaml\nstages:\n  s:\n    cmd: echo ${params.a.b}\n"
        "    params: [a.b]\n    outs: [o]\n"
    )
    (tmp_path / "params.yaml").write_text("a: {b: 1}\n")
    project = load_project(tmp_path, overrides={"a.b": 5})
    assert project.stages["s"].argv == ("echo", "5")
    assert dict(project.stages["s"].param_values) == {"a.b": 5}
    assert load_project(tmp_path).stages["s"].argv == ("echo", "1")
    with pytest.raises(DeclarationError, match="has no 'c'"):
        load_project(tmp_path, overrides={"a.c": 5})
