"""canon.declare.interpolate: ${profile.x}, ${data.NAME}, ${params.a.b}, and sh scripts."""

from __future__ import annotations

import re
import subprocess

import pytest

from canon.declare.interpolate import (
    InterpolationError,
    Scope,
    interpolate,
    lookup_param,
    shell_script,
    unquoted_shell_syntax,
)

SCOPE = Scope(
    profile="local",
    profile_values={"data_root": "data", "workers": 4, "debug": True},
    profiles={"local": {"data_root": "data"}, "prod": {"data_root": "lake", "bucket": "b"}},
    datasets={"transactions": "data/transactions"},
    params={
        "train": {"lr": 0.1, "evil": "0.1; rm -rf /", "layers": [64, 32], "none": None},
        "seed": 7,
    },
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("${profile.data_root}/x", "data/x"),
        ("--workers=${profile.workers}", "--workers=4"),
        ("${profile.debug}", "true"),
        ("${data.transactions}", "data/transactions"),
        ("${params.train.lr}", "0.1"),
        ("${params.seed}${params.seed}", "77"),
        ("${params.train.layers.1}", "32"),
        ("${ params.seed }", "7"),
        ("$${profile.data_root}", "${profile.data_root}"),
        ("$$${params.seed}", "$${params.seed}"),  # "$" then the escape "$${"
        ("cost: $5 and $HOME", "cost: $5 and $HOME"),
        ("${params.train.evil}", "0.1; rm -rf /"),
    ],
)
def test_interpolate(text: str, expected: str) -> None:
    assert interpolate(text, SCOPE) == expected


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        (
            "${profile.data_rot}",
            'profile "local" has no value "data_rot"',
            'did you mean "data_root"?',
        ),
        ("${profile.bucket}", 'no value "bucket"', "it is set in profile prod"),
        ("${data.transaction}", 'unknown dataset "transaction"', 'did you mean "transactions"?'),
        ("${data.zzz}", 'unknown dataset "zzz"', "declared datasets: transactions"),
        ("${params.train.lrr}", 'params.yaml has no "train.lrr"', 'did you mean "lr"?'),
        ("${params.tran.lr}", 'params.yaml has no "tran"', 'did you mean "train"?'),
        ("${params.seed.x}", '"seed" in params.yaml is a number, not a section', None),
        ("${params.train.layers.5}", "the list has 2 items", None),
        ("${params.train}", "is a section (a mapping); only a single value", "name one value"),
        ("${params.train.layers}", "is a list; only a single value", None),
        ("${params.train.none}", "is null", "give it a value"),
        ("${param.seed}", "unknown reference ${param.seed}", 'did you mean "params"?'),
        ("${HOME}", "unknown reference ${HOME}", "write $${ for a literal ${"),
        ("${profile.a.b}", "malformed reference", "${profile.NAME}"),
        ("${params}", "malformed reference", "${params.KEY}"),
        ("${}", "malformed reference", None),
        ("${params..x}", "malformed reference", None),
        ("${a${b}}", "malformed reference", None),
        ("x ${params.seed", "unterminated ${", "$${"),
    ],
)
def test_interpolation_problems(text: str, message: str, hint: str | None) -> None:
    with pytest.raises(InterpolationError, match=re.escape(message)) as info:
        interpolate(text, SCOPE)
    (problem,) = info.value.problems
    assert message in problem.message
    if hint is not None:
        assert problem.hint is not None and hint in problem.hint


def test_all_problems_in_one_string_are_reported() -> None:
    with pytest.raises(InterpolationError, match=r"data_rot.*nope") as info:
        interpolate("${profile.data_rot}/${data.nope}", SCOPE)
    assert len(info.value.problems) == 2


def test_no_profile_selected_says_how_to_choose() -> None:
    scope = Scope(profiles={"local": {}, "prod": {}})
    with pytest.raises(InterpolationError, match="no profile is selected") as info:
        interpolate("${profile.x}", scope)
    hint = info.value.problems[0].hint or ""
    assert "--profile" in hint and "CANON_PROFILE" in hint and "local, prod" in hint
    with pytest.raises(InterpolationError, match="no profile is selected") as info:
        interpolate("${profile.x}", Scope())
    assert "declares no profiles" in (info.value.problems[0].hint or "")


def test_missing_params_file() -> None:
    with pytest.raises(InterpolationError, match=r"params\.yaml does not exist"):
        interpolate("${params.lr}", Scope(params=None))


def test_namespaces_can_be_restricted() -> None:
    with pytest.raises(InterpolationError, match="cannot be used here") as info:
        interpolate("${data.transactions}", SCOPE.only("profile", "params"))
    assert "${profile.…}" in (info.value.problems[0].hint or "")


def test_broken_things_are_not_reported_twice() -> None:
    scope = Scope(profile_broken=True, params_broken=True, datasets_broken=frozenset({"d"}))
    assert interpolate("${profile.x}${params.y}${data.d}", scope) == ""


def test_lookup_param_returns_sections_as_is() -> None:
    params = SCOPE.params
    assert params is not None
    assert lookup_param(params, ["train", "layers"], "params.yaml") == [64, 32]
    with pytest.raises(InterpolationError, match=r'params\.yaml has no "xyz"') as info:
        lookup_param(params, ["xyz"], "params.yaml")
    assert info.value.problems[0].hint == "top-level keys: seed, train"


@pytest.mark.parametrize(
    ("script", "expected", "env"),
    [
        ("echo ${params.train.evil}", 'echo "${CANON_VAR_1}"', {"CANON_VAR_1": "0.1; rm -rf /"}),
        (
            'echo "lr=${params.train.lr} again ${params.train.lr}" ${params.seed}',
            'echo "lr=${CANON_VAR_1} again ${CANON_VAR_1}" "${CANON_VAR_2}"',
            {"CANON_VAR_1": "0.1", "CANON_VAR_2": "7"},
        ),
        ("echo $${HOME} '$x'", "echo ${HOME} '$x'", {}),
        ("echo 'it''s' ${params.seed}", "echo 'it''s' \"${CANON_VAR_1}\"", {"CANON_VAR_1": "7"}),
        ('echo "a\\"b" ${params.seed}', 'echo "a\\"b" "${CANON_VAR_1}"', {"CANON_VAR_1": "7"}),
    ],
)
def test_shell_script_passes_values_as_variables(
    script: str, expected: str, env: dict[str, str]
) -> None:
    assert shell_script(script, SCOPE) == (expected, env)


def test_shell_script_values_never_run_as_code() -> None:
    script, env = shell_script('printf "%s|" ${params.train.evil} "x ${params.train.evil}"', SCOPE)
    out = subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out == "0.1; rm -rf /|x 0.1; rm -rf /|"


@pytest.mark.parametrize(
    ("script", "match"),
    [
        ("echo '${params.seed}'", "inside single quotes"),
        ("echo \\${params.seed}", "backslash"),
        ("echo ${HOME}", "unknown reference"),
    ],
)
def test_shell_script_problems(script: str, match: str) -> None:
    with pytest.raises(InterpolationError, match=match):
        shell_script(script, SCOPE)


@pytest.mark.parametrize(
    ("cmd", "found"),
    [
        ("python train.py", None),
        ("python train.py && python eval.py", "&&"),
        ("python train.py > log.txt", ">"),
        ("a | b", "|"),
        ("a; b", ";"),
        ("a `date`", "`"),
        ("a $(date)", "$("),
        ('python -c "print(1 > 2)"', None),
        ("grep 'a|b' f", None),
        ("find . -exec rm {} \\;", None),
        ('echo "$(date)"', "$("),
        ("echo ${params.x}", None),
    ],
)
def test_unquoted_shell_syntax(cmd: str, found: str | None) -> None:
    assert unquoted_shell_syntax(cmd) == found
