"""load_project / load_declaration: files in, a resolved Project (or all problems) out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from canon.declare import (
    DatasetSpec,
    Dep,
    DepKind,
    EnvironmentSpec,
    json_schema,
    load_declaration,
    load_project,
)
from canon.declare.project import DataKind
from canon.declare.schema import ProjectFile
from canon.errors import DeclarationError, ProfileError

from .conftest import VALID_CANON, VALID_PARAMS, Workspace, diag_at, rendered


def test_valid_example_resolves(ws: Workspace) -> None:
    project = ws.write(VALID_CANON, VALID_PARAMS).load()
    assert project.root == ws.root
    assert project.name == "churn"
    assert project.profile == "local"
    assert project.profile_values == {"data_root": "data", "warehouse": "duckdb:///warehouse.db"}
    assert project.environment == EnvironmentSpec(python="3.11", requirements="requirements.lock")
    assert project.datasets == {
        "transactions": DatasetSpec(
            "transactions", "data/transactions", "data/transactions",
            mount=".canon/data/transactions",
        )
    }
    assert project.params == {"features": {"window": 7}, "train": {"lr": 0.1, "epochs": 3}}
    assert project.params_file == "params.yaml"
    assert project.config_file == "canon.yaml"
    assert list(project.stages) == ["features", "train"]  # declaration order

    features = project.stages["features"]
    assert features.argv == (
        "python", "-m", "churn.features", "--in", ".canon/data/transactions",
        "--out", "build/features",
    )  # fmt: skip  (the pin wins: stages read the pinned content, never the source)
    assert features.deps == (
        Dep(DepKind.PATH, "src/churn/features.py", "src/churn/features.py"),
        Dep(DepKind.DATA, "data.transactions", ".canon/data/transactions"),
    )
    assert features.params == ("features.window",)
    assert features.param_values == (("features.window", 7),)
    assert features.outs == ("build/features",)
    assert features.metrics == ()
    assert features.line == 10
    assert dict(features.env) == {
        "CANON_PARAMS": '{"features.window":7}',
        "CANON_STAGE": "features",
    }

    train = project.stages["train"]
    assert train.argv[-2:] == ("--lr", "0.1")
    assert train.param_values == (("train", {"lr": 0.1, "epochs": 3}),)
    assert train.outs == ("build/model.joblib", "build/metrics.json")
    assert train.metrics == ("build/metrics.json",)
    assert train.line == 15
    assert json.loads(dict(train.env)["CANON_PARAMS"]) == {"train": {"lr": 0.1, "epochs": 3}}
    assert train.shell is False and train.deterministic is True


def test_loading_is_deterministic(ws: Workspace) -> None:
    ws.write(VALID_CANON, VALID_PARAMS)
    assert ws.load() == ws.load()


def test_load_declaration_gives_the_raw_model_and_lines(ws: Workspace) -> None:
    ws.write(VALID_CANON)
    decl, lines = load_declaration(ws.root)
    assert isinstance(decl, ProjectFile)
    assert decl.data["transactions"].source == "${profile.data_root}/transactions"
    assert lines.line_of(("stages", "train", "outs", 0)) == 19


def test_json_schema() -> None:
    schema = json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["title"] == "canon.yaml"
    assert "stages" in schema["properties"]


def test_missing_canon_yaml_says_run_init(ws: Workspace) -> None:
    with pytest.raises(DeclarationError, match=r"no canon\.yaml in") as info:
        load_project(ws.root, environ={})
    assert info.value.hint is not None and "canon init" in info.value.hint


def test_canon_yaml_that_is_a_directory(ws: Workspace) -> None:
    (ws.root / "canon.yaml").mkdir()
    with pytest.raises(DeclarationError, match="not a regular file"):
        ws.load()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", r"canon\.yaml is empty"),
        ("# nothing yet\n", r"canon\.yaml is empty"),
        ("- a\n- b\n", "must be a mapping of fields .* not a list"),
        ("just text\n", "must be a mapping of fields .* not a string"),
    ],
)
def test_empty_or_not_a_mapping(ws: Workspace, text: str, match: str) -> None:
    with pytest.raises(DeclarationError, match=match):
        ws.write(text).load()


STAGE_HEAD = "project: p\nstages:\n  train:\n"


@pytest.mark.parametrize(
    ("stage", "path", "line", "message", "hint"),
    [
        (
            "    cmd: x\n    dpes: [a]\n",
            "stages.train.dpes",
            5,
            'unknown field "dpes"',
            'did you mean "deps"?',
        ),
        (
            "    cmd: x\n    shell: yes please\n",
            "stages.train.shell",
            5,
            "expected true or false, got a string",
            None,
        ),
        ("    deps: [a]\n", "stages.train", 3, 'missing required field "cmd"', None),
        (
            "    cmd: 5\n",
            "stages.train.cmd",
            4,
            "expected a string or a list, got an integer (5)",
            "quote the value",
        ),
        ("    cmd: [python, 3]\n", "stages.train.cmd[1]", 4, "expected a string", None),
        (
            "    cmd: x\n    deps:\n",
            "stages.train.deps",
            5,
            "expected a list, got null",
            "{} or []",
        ),
        ('    cmd: x\n    outs: [""]\n', "stages.train.outs[0]", 5, "must not be empty", None),
    ],
)
def test_schema_problems_are_located(
    ws: Workspace, stage: str, path: str, line: int, message: str, hint: str | None
) -> None:
    err = ws.write(STAGE_HEAD + stage).error()
    diag = diag_at(err, path)
    assert diag.file == "canon.yaml"
    assert diag.line == line
    assert message in diag.message
    if hint is not None:
        assert diag.hint is not None and hint in diag.hint
    assert err.message.startswith("canon.yaml has 1 problem")


def test_unknown_top_level_field_suggests(ws: Workspace) -> None:
    err = ws.write("project: p\nstage:\n  a: {cmd: x}\n").error()
    diag = diag_at(err, "stage")
    assert diag.line == 2
    assert diag.hint == 'did you mean "stages"?'
    assert diag.render() == ('canon.yaml:2 stage: unknown field "stage" — did you mean "stages"?')


def test_invalid_stage_name(ws: Workspace) -> None:
    err = ws.write("project: p\nstages:\n  'my stage': {cmd: x}\n").error()
    diag = diag_at(err, 'stages["my stage"]')
    assert diag.line == 3
    assert 'name "my stage" is not valid' in diag.message


def test_python_version_as_number_hints_quoting(ws: Workspace) -> None:
    err = ws.write("project: p\nenvironment:\n  python: 3.10\n").error()
    diag = diag_at(err, "environment.python")
    assert diag.message == "expected a string, got a number (3.1)"
    assert diag.hint is not None and "quote" in diag.hint


def test_all_problems_at_once(ws: Workspace) -> None:
    canon = """\
project: p
data:
  raw: {source: data/raw}
  raw: {source: data/raw2}
stages:
  prep:
    cmd: python prep.py
    deps: [data.rwa]
    outz: [build/x]
  train:
    cmd: python train.py --x ${profile.data_rot}
    deps: [../outside]
    params: [train.lrr]
  ok:
    cmd: !shell echo
profiles:
  local: {data_root: data}
"""
    err = ws.write(canon, "train: {lr: 0.1}\n").error()
    expected = {
        ("data.raw", 4): "duplicate key",
        ("stages.prep.outz", 9): 'unknown field "outz"',
        ("stages.train.cmd", 11): 'profile "local" has no value "data_rot"',
        ("stages.train.deps[0]", 12): "contains '..'",
        ("stages.train.params[0]", 13): 'has no "train.lrr"',
        ("stages.ok.cmd", 15): "tag !shell is not allowed",
    }
    got = {(d.path, d.line): d.message for d in err.diagnostics}
    for where, message in expected.items():
        assert where in got, rendered(err)
        assert message in got[where]
    assert ("stages.prep.deps[0]", 8) not in got  # stage prep was dropped: no cascade
    assert len(err.diagnostics) == len(expected)
    assert err.message == f"canon.yaml has {len(expected)} problems"
    lines = [d.line or 0 for d in err.diagnostics]
    assert lines == sorted(lines)


def test_did_you_mean_for_a_dataset_dep(ws: Workspace) -> None:
    canon = VALID_CANON.replace("deps: [src/churn/features.py, data.transactions]",
                                "deps: [src/churn/features.py, data.transaction]")  # fmt: skip
    err = ws.write(canon, VALID_PARAMS).error()
    diag = diag_at(err, "stages.features.deps[1]")
    assert diag.line == 12
    assert diag.message == 'unknown dataset "transaction"'
    assert diag.hint == 'did you mean "transactions"?'


def test_did_you_mean_for_a_params_key(ws: Workspace) -> None:
    canon = VALID_CANON.replace("params: [features.window]", "params: [features.windw]")
    err = ws.write(canon, VALID_PARAMS).error()
    diag = diag_at(err, "stages.features.params[0]")
    assert diag.line == 13
    assert diag.message == 'params.yaml has no "features.windw"'
    assert diag.hint == 'did you mean "window"?'


def test_did_you_mean_for_a_profile_value(ws: Workspace) -> None:
    canon = VALID_CANON.replace("${profile.data_root}", "${profile.data_rot}")
    err = ws.write(canon, VALID_PARAMS).error()
    diag = diag_at(err, "data.transactions.source")
    assert diag.line == 7
    assert diag.message == 'profile "local" has no value "data_rot"'
    assert diag.hint == 'did you mean "data_root"?'


def test_a_broken_dataset_does_not_cascade(ws: Workspace) -> None:
    canon = VALID_CANON.replace("source: ${profile.data_root}/transactions", "source: 42")
    err = ws.write(canon, VALID_PARAMS).error()
    assert [d.path for d in err.diagnostics] == ["data.transactions.source"]


# --- profiles --------------------------------------------------------------

PROFILES = """\
project: p
{default}profiles:
  local: {{root: l}}
  prod: {{root: p}}
  staging: {{root: s}}
stages:
  s: {{cmd: "echo ${{profile.root}}"}}
"""


@pytest.mark.parametrize(
    ("argument", "env", "default", "chosen"),
    [
        ("prod", "staging", "staging", "prod"),  # the argument wins
        (None, "staging", "prod", "staging"),  # then CANON_PROFILE
        (None, "", "prod", "prod"),  # empty CANON_PROFILE counts as unset
        (None, None, "prod", "prod"),  # then default_profile
        (None, None, None, "local"),  # then "local", if declared
    ],
)
def test_profile_selection_order(
    ws: Workspace, argument: str | None, env: str | None, default: str | None, chosen: str
) -> None:
    ws.write(PROFILES.format(default=f"default_profile: {default}\n" if default else ""))
    environ = {} if env is None else {"CANON_PROFILE": env}
    project = ws.load(argument, environ)
    assert project.profile == chosen
    assert project.stages["s"].argv == ("echo", chosen[0])


def test_no_profile_when_local_is_not_declared(ws: Workspace) -> None:
    ws.write("project: p\nprofiles:\n  prod: {root: p}\nstages:\n  s: {cmd: echo hi}\n")
    assert ws.load().profile is None
    ws.write(
        "project: p\nprofiles:\n  prod: {root: p}\nstages:\n  s: {cmd: 'echo ${profile.root}'}\n"
    )
    diag = diag_at(ws.error(), "stages.s.cmd")
    assert diag.message == "${profile.root} is used but no profile is selected"
    assert diag.hint is not None and "--profile" in diag.hint and "declared: prod" in diag.hint


def test_environ_defaults_to_os_environ(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ws.write(PROFILES.format(default=""))
    monkeypatch.setitem(os.environ, "CANON_PROFILE", "prod")
    assert load_project(ws.root).profile == "prod"


@pytest.mark.parametrize(
    ("argument", "environ", "match", "hint"),
    [
        ("prdo", {}, r'unknown profile "prdo" \(from --profile\)', 'did you mean "prod"?'),
        (None, {"CANON_PROFILE": "stagin"}, r"from CANON_PROFILE=stagin", '"staging"'),
        ("qa", {}, 'unknown profile "qa"', "declared profiles: local, prod, staging"),
    ],
)
def test_unknown_profile_is_a_profile_error(
    ws: Workspace, argument: str | None, environ: dict[str, str], match: str, hint: str
) -> None:
    ws.write(PROFILES.format(default=""))
    with pytest.raises(ProfileError, match=match) as info:
        ws.load(argument, environ)
    assert info.value.hint is not None and hint in info.value.hint


def test_undeclared_default_profile_is_located(ws: Workspace) -> None:
    err = ws.write(PROFILES.format(default="default_profile: prd\n")).error()
    diag = diag_at(err, "default_profile")
    assert diag.line == 2
    assert diag.hint is not None and 'did you mean "prod"?' in diag.hint


def test_profile_values_cannot_be_templates(ws: Workspace) -> None:
    ws.write("project: p\nprofiles:\n  local:\n    a: x\n    b: ${profile.a}\n")
    diag = diag_at(ws.error(), "profiles.local.b")
    assert diag.line == 5
    assert "cannot contain ${...}" in diag.message


# --- commands, shell and env ----------------------------------------------

EVIL = "0.1; rm -rf / #"


def stage_project(stage: str, params: str = f'train: {{lr: "{EVIL}"}}\n') -> tuple[str, str]:
    return f"project: p\nstages:\n  s:\n{stage}", params


@pytest.mark.parametrize(
    ("stage", "argv"),
    [
        ("    cmd: python t.py --lr ${params.train.lr}\n", ("python", "t.py", "--lr", EVIL)),
        ("    cmd: python t.py --lr=${params.train.lr}\n", ("python", "t.py", f"--lr={EVIL}")),
        (
            "    cmd: \"python 't x.py' --lr '${params.train.lr}'\"\n",
            ("python", "t x.py", "--lr", EVIL),
        ),
        ("    cmd: [python, t.py, '${params.train.lr} x']\n", ("python", "t.py", f"{EVIL} x")),
        ("    cmd: [echo, '$${params.train.lr}']\n", ("echo", "${params.train.lr}")),
    ],
)
def test_values_stay_one_argument(ws: Workspace, stage: str, argv: tuple[str, ...]) -> None:
    assert ws.write(*stage_project(stage)).load().stages["s"].argv == argv


def test_shell_true_keeps_values_out_of_the_script(ws: Workspace) -> None:
    stage = "    shell: true\n    cmd: echo ${params.train.lr} > out.txt && cat out.txt\n"
    spec = ws.write(*stage_project(stage)).load().stages["s"]
    assert spec.shell is True
    assert spec.argv == ("sh", "-c", 'echo "${CANON_VAR_1}" > out.txt && cat out.txt')
    assert dict(spec.env)["CANON_VAR_1"] == EVIL
    assert "rm -rf" not in spec.argv[2]


@pytest.mark.parametrize(
    ("stage", "path", "line", "match"),
    [
        ("    cmd: python 'unbalanced\n", "stages.s.cmd", 4, "a quote is not closed"),
        ("    cmd: python a.py && python b.py\n", "stages.s.cmd", 4, "shell syntax '&&'"),
        ("    cmd: python a.py > log\n", "stages.s.cmd", 4, "shell syntax '>'"),
        ("    cmd: '   '\n", "stages.s.cmd", 4, "cmd is empty"),
        ("    cmd: []\n", "stages.s.cmd", 4, "cmd is empty"),
        ("    shell: true\n    cmd: [a, b]\n", "stages.s.cmd", 5, "must be one string"),
        (
            "    shell: true\n    cmd: echo '${params.train.lr}'\n",
            "stages.s.cmd",
            5,
            "single quotes",
        ),
        ("    cmd: [a, '${params.train}']\n", "stages.s.cmd[1]", 4, "is a section"),
        ('    cmd: "echo \\0"\n', "stages.s.cmd", 4, "NUL"),
    ],
)
def test_command_problems(ws: Workspace, stage: str, path: str, line: int, match: str) -> None:
    diag = diag_at(ws.write(*stage_project(stage)).error(), path)
    assert diag.line == line
    assert match in diag.message


def test_values_too_long_for_exec_are_refused(ws: Workspace) -> None:
    stage = "    cmd: [run, '${params.big}']\n    params: [big]\n"
    err = ws.write(*stage_project(stage, f"big: {'x' * 140_000}\n")).error()
    assert "longer than 128 KiB" in diag_at(err, "stages.s.cmd").message
    assert (
        "CANON_PARAMS is longer than 128 KiB" in diag_at(err, "stages.s.env.CANON_PARAMS").message
    )


def test_env_is_interpolated_sorted_and_carries_params(ws: Workspace) -> None:
    stage = (
        "    cmd: run\n"
        "    params: [train.lr, train]\n"
        "    env: {ZED: '${params.train.lr}', ALPHA: 1, FLAG: true, RATE: 0.5}\n"
    )
    spec = ws.write(*stage_project(stage)).load().stages["s"]
    names = [name for name, _ in spec.env]
    assert names == sorted(names)
    env = dict(spec.env)
    assert env["ZED"] == EVIL
    assert (env["ALPHA"], env["FLAG"], env["RATE"]) == ("1", "true", "0.5")
    assert env["CANON_STAGE"] == "s"
    assert env["CANON_PARAMS"] == json.dumps(
        {"train": {"lr": EVIL}, "train.lr": EVIL}, sort_keys=True, separators=(",", ":")
    )
    assert spec.param_values == (("train", {"lr": EVIL}), ("train.lr", EVIL))


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ("{'1BAD': x}", "not a valid environment variable name"),
        ("{CANON_PARAMS: x}", "set by canon itself"),
        ("{CANON_VAR_1: x}", "set by canon itself"),
    ],
)
def test_env_name_problems(ws: Workspace, env: str, match: str) -> None:
    err = ws.write(*stage_project(f"    cmd: run\n    env: {env}\n")).error()
    assert match in err.diagnostics[0].message
    assert err.diagnostics[0].line == 5


# --- params file ------------------------------------------------------------


def test_params_file_may_be_missing_when_unused(ws: Workspace) -> None:
    project = ws.write("project: p\nstages:\n  s: {cmd: run}\n").load()
    assert project.params == {}


def test_params_file_missing_but_used(ws: Workspace) -> None:
    canon = "project: p\nstages:\n  s:\n    cmd: run ${params.lr}\n    params: [lr]\n"
    err = ws.write(canon).error()
    assert "params.yaml does not exist" in diag_at(err, "stages.s.cmd").message
    assert "params.yaml does not exist" in diag_at(err, "stages.s.params[0]").message


def test_params_file_problems_are_located_in_the_params_file(ws: Workspace) -> None:
    canon = "project: p\nparams: conf/params.yaml\nstages:\n  s: {cmd: run, params: [a]}\n"
    err = ws.write(canon, files={"conf/params.yaml": "a: 1\nb: 2\na: 3\n"}).error()
    (diag,) = err.diagnostics
    assert (diag.file, diag.line, diag.path) == ("conf/params.yaml", 3, "a")
    assert err.message.startswith("conf/params.yaml has 1 problem")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("- 1\n- 2\n", "must be a mapping of names to values, not a list"),
        ("a: [1\n", "YAML syntax error at line 2"),
        (b"a: \xff\n", "not UTF-8"),
    ],
)
def test_bad_params_files(ws: Workspace, content: str | bytes, match: str) -> None:
    err = ws.write("project: p\nstages:\n  s: {cmd: run}\n", content).error()
    assert err.diagnostics[0].file == "params.yaml"
    assert match in err.diagnostics[0].message


def test_empty_params_file_is_no_params(ws: Workspace) -> None:
    assert ws.write("project: p\n", "").load().params == {}


@pytest.mark.parametrize("name", ["../params.yaml", "/etc/passwd", ".git/config"])
def test_params_file_name_is_a_checked_path(ws: Workspace, name: str) -> None:
    diag = diag_at(ws.write(f"project: p\nparams: {name}\n").error(), "params")
    assert diag.line == 2


def test_params_symlink_out_of_the_project_is_refused(ws: Workspace, tmp_path: Path) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside.yaml"
    outside.write_text("secret: 1\n")
    ws.write("project: p\n")
    (ws.root / "params.yaml").symlink_to(outside)
    diag = diag_at(ws.error(), "params")
    assert "leads outside the project" in diag.message


# --- paths ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("deps", "[/etc/passwd]", "absolute path"),
        ("deps", "['~/x']", "home directory"),
        ("deps", "['a/%2e%2e/b']", "percent-encoded"),
        ("outs", "[.]", "project root itself"),
        ("outs", "[.git/hooks/post-checkout]", "inside .git"),
        ("outs", "[.canon/cache]", "inside .canon"),
        ("metrics", "['a\\\\b']", "backslash"),
        ("outs", "['${profile.x}/o']", "paths cannot use ${...}"),
    ],
)
def test_stage_paths_are_checked(ws: Workspace, field: str, value: str, match: str) -> None:
    err = ws.write(f"project: p\nstages:\n  s:\n    cmd: run\n    {field}: {value}\n").error()
    diag = diag_at(err, f"stages.s.{field}[0]")
    assert diag.line == 5
    assert match in diag.message


def test_outs_and_metrics_are_normalised_and_deduplicated(ws: Workspace) -> None:
    stage = (
        "    cmd: run\n    deps: [a, ./a, b//c]\n    outs: [m.json, ./o/]\n    metrics: [m.json]\n"
    )
    spec = ws.write(*stage_project(stage)).load().stages["s"]
    assert spec.outs == ("m.json", "o")
    assert spec.metrics == ("m.json",)
    assert [d.address for d in spec.deps] == ["a", "b/c"]


def test_url_dataset_source_resolves_to_a_mount(ws: Workspace) -> None:
    canon = VALID_CANON.replace("{data_root: data,", '{data_root: "s3://bucket/churn",')
    project = ws.write(canon, VALID_PARAMS).load()
    ds = project.datasets["transactions"]
    assert (ds.kind, ds.source, ds.path) == (DataKind.URL, "s3://bucket/churn/transactions", "")
    assert ds.mount == ".canon/data/transactions"


@pytest.mark.parametrize(
    ("root", "message"),
    [
        ("s3://AKIAXXX:hunter2@bucket/churn", "s3://***@bucket/churn/transactions has credentials"),
        ("https://h.example/x?X-Amz-Signature=hunter2", "has a credential in its query"),
        ("ftp://host/churn", "unknown scheme ftp://"),
        ("file://relative/x", "is not an absolute file:// URL"),
    ],
)
def test_bad_url_sources_are_refused_redacted(ws: Workspace, root: str, message: str) -> None:
    canon = VALID_CANON.replace("{data_root: data,", f'{{data_root: "{root}",')
    err = ws.write(canon, VALID_PARAMS).error()
    diag = diag_at(err, "data.transactions.source")
    assert message in diag.message
    assert "hunter2" not in diag.render() and "hunter2" not in str(err.details())


def test_subset_and_query_datasets(ws: Workspace) -> None:
    ws.write(
        "project: p\n"
        "data:\n"
        "  full: {source: data/w.csv}\n"
        "  small: {from: full, sample: 0.2, seed: 1}\n"
        "  dry: {from: small, filter: 'precipitation = 0'}\n"
        "  q: {query: 'SELECT 1 AS x', database: wh.db, as_of: '2025-01-01', format: parquet}\n"
    )
    p = ws.load()
    assert p.datasets["small"].mount == ".canon/data/small/w.csv"
    assert p.datasets["dry"].subset is not None and p.datasets["dry"].subset.parent == "small"
    q = p.datasets["q"].query
    assert q is not None and q.database == "sqlite:///wh.db" and q.as_of == "2025-01-01"
    assert p.datasets["q"].mount == ".canon/data/q/q.parquet"


@pytest.mark.parametrize(
    ("data", "where", "message"),
    [
        ("  a: {source: x.csv, query: 'SELECT 1'}", "data.a", "exactly one of source:, from: or query:"),
        ("  a: {from: b, sample: 0.1}", "data.a.from", 'unknown dataset "b"'),
        ("  a: {from: a, sample: 0.1}", "data.a.from", "from: itself"),
        ("  a: {source: x.csv, sample: 0.1}", "data.a.sample", "only applies to a subset"),
        ("  a: {source: s3://b/x, storage_options: {secret: s}}", "data.a.storage_options.secret",
         "is a credential"),
        ("  a: {query: 'SELECT 1', database: 'postgresql://u:pw@h/db'}", "data.a.database",
         "postgresql://***@h/db has credentials"),
        ("  a: {source: ../outside.csv}", "data.a.source", "contains '..'"),
    ],
)
def test_dataset_problems_are_located(ws: Workspace, data: str, where: str, message: str) -> None:
    err = ws.write(f"project: p\ndata:\n{data}\n").error()
    assert message in diag_at(err, where).message


def test_requirements_path_is_checked(ws: Workspace) -> None:
    err = ws.write("project: p\nenvironment:\n  requirements: /abs/req.lock\n").error()
    assert diag_at(err, "environment.requirements").line == 3


def test_hundred_stages_load_in_milliseconds(ws: Workspace) -> None:
    lines = ["project: big", "data:", "  raw: {source: data/raw}", "stages:"]
    for i in range(100):
        lines += [
            f"  s{i}:",
            f"    cmd: python -m pkg.s{i} --in ${{data.raw}} --lr ${{params.s{i}.lr}}",
            f"    deps: [src/s{i}.py, data.raw]",
            f"    params: [s{i}]",
            f"    outs: [build/s{i}]",
            f"    metrics: [build/m{i}.json]",
        ]
    params = "".join(f"s{i}: {{lr: 0.{i}, epochs: {i}}}\n" for i in range(100))
    ws.write("\n".join(lines) + "\n", params)
    project = ws.load()
    # load time is measured in bench/, not asserted here
    assert len(project.stages) == 100
