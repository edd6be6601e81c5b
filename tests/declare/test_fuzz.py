"""Property-based fuzz of the loader (RELIABILITY.md, "Declarations").

Every input — arbitrary bytes, arbitrary YAML documents, mutations of a valid
project — must yield a ``Project`` or a ``CanonError``, never another
exception, within the deadline. A returned ``Project`` must hold this layer's
invariants (normalised paths, argv/env without NUL, env sorted).
"""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canon.declare import Project, load_project
from canon.declare.paths import normalise_path
from canon.declare.project import DataKind, DepKind
from canon.errors import CanonError, DeclarationError

from .conftest import VALID_CANON, VALID_PARAMS

# CANON_FUZZ_EXAMPLES=5000 for a longer hunt than CI's.
FUZZ = settings(
    deadline=1000,
    max_examples=int(os.environ.get("CANON_FUZZ_EXAMPLES", "150")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("fuzz")


def attempt(
    root: Path,
    canon: bytes,
    params: bytes | None,
    profile: str | None = None,
    environ: dict[str, str] | None = None,
) -> Project | CanonError:
    (root / "canon.yaml").write_bytes(canon)
    params_path = root / "params.yaml"
    if params is None:
        params_path.unlink(missing_ok=True)
    else:
        params_path.write_bytes(params)
    try:
        project = load_project(root, profile=profile, environ=environ or {})
    except CanonError as exc:
        assert exc.message
        for line in exc.details():
            assert isinstance(line, str)
        return exc
    check_invariants(project)
    return project


def check_invariants(project: Project) -> None:
    for stage in project.stages.values():
        for path in (*stage.outs, *stage.metrics,
                     *(d.path for d in stage.deps if d.kind is DepKind.PATH)):
            assert normalise_path(path) == path
        for dep in stage.deps:  # data.NAME: the pinned content's mount, never the source
            if dep.kind is DepKind.DATA:
                assert dep.path.startswith(".canon/data/")
                assert normalise_path(dep.path[len(".canon/"):]) == dep.path[len(".canon/"):]
        assert stage.argv and all(isinstance(a, str) and "\x00" not in a for a in stage.argv)
        names = [name for name, _ in stage.env]
        assert names == sorted(names)
        assert all("\x00" not in value for _, value in stage.env)
    for dataset in project.datasets.values():
        if dataset.kind is DataKind.PATH:
            assert normalise_path(dataset.path) == dataset.path
        else:
            assert dataset.path == ""


PROFILE_ARGS = st.sampled_from([None, "local", "prod", "nope"])
ENVIRONS = st.sampled_from([{}, {"CANON_PROFILE": "prod"}, {"CANON_PROFILE": "x"}])


@FUZZ
@given(canon=st.binary(max_size=3000), params=st.none() | st.binary(max_size=500))
def test_arbitrary_bytes(root: Path, canon: bytes, params: bytes | None) -> None:
    attempt(root, canon, params)


KEYS = st.sampled_from(
    [
        "project", "stages", "data", "params", "profiles", "environment", "default_profile",
        "cmd", "deps", "outs", "metrics", "env", "shell", "source", "local", "train", "lr",
        "python", "requirements", "<<", "on", "1", "", "x.y", "data.raw",
    ]
) | st.text(max_size=8)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "${profile.data_root}", "${params.train.lr}", "${data.raw}", "$${x}", "${", "..",
            "/etc/passwd", "s3://b/k", "%2e%2e/x", ".git/hooks", "a; rm -rf /", "'", "data.raw",
        ]
    )
)  # fmt: skip
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=40,
)


def dump(value: Any) -> bytes:
    return yaml.safe_dump(value, allow_unicode=True, sort_keys=False).encode("utf-8")


@FUZZ
@given(doc=DOCUMENTS, params=DOCUMENTS, profile=PROFILE_ARGS, environ=ENVIRONS)
def test_arbitrary_documents(
    root: Path, doc: Any, params: Any, profile: str | None, environ: dict[str, str]
) -> None:
    attempt(root, dump(doc), dump(params), profile, environ)


@FUZZ
@given(
    stages=st.dictionaries(
        st.sampled_from(["a", "b", "train", "bad name", "1x"]),
        st.fixed_dictionaries(
            {"cmd": SCALARS | st.lists(SCALARS, max_size=4)},
            optional={
                "deps": st.lists(SCALARS, max_size=3),
                "outs": st.lists(SCALARS, max_size=3),
                "params": st.lists(st.sampled_from(["train", "train.lr", "nope", "a..b"])),
                "env": st.dictionaries(st.sampled_from(["A", "1B", "CANON_STAGE"]), SCALARS),
                "shell": st.booleans(),
            },
        ),
        max_size=3,
    ),
    profiles=st.dictionaries(
        st.sampled_from(["local", "prod"]), st.dictionaries(st.sampled_from(["data_root"]), SCALARS)
    ),
    profile=PROFILE_ARGS,
)
def test_structured_projects(
    root: Path, stages: dict[str, Any], profiles: dict[str, Any], profile: str | None
) -> None:
    doc = {"project": "p", "data": {"raw": {"source": "data/raw"}}, "stages": stages}
    if profiles:
        doc["profiles"] = profiles
    attempt(root, dump(doc), VALID_PARAMS.encode(), profile)


SNIPPETS = st.sampled_from(
    [
        "&a ", "*a", "!!python/object/apply:os.system ['id']", "!x ", "<<: *a\n", "${", "}",
        "$${", ": ", "- ", "\n", "\t", "'", '"', "{", "[", "]", "..", "/", "~", "%2e", "\\",
        "\x00", "\x85", "\ufeff", "? ", "---\n", "# ", "|\n", ">-\n", "s3://", "9" * 5000,
    ]
)  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, text: str) -> bytes:
    data = text
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "duplicate"]))
        if action == "insert":
            data = data[:at] + draw(SNIPPETS | st.text(max_size=5)) + data[at:]
        elif action == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 20)) :]
        else:
            end = min(len(data), at + draw(st.integers(1, 80)))
            data = data[:end] + data[at:end] + data[end:]
    raw = data.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(max_size=3)) + raw[at:]
    return raw


@FUZZ
@given(canon=mutated(VALID_CANON), params=mutated(VALID_PARAMS), profile=PROFILE_ARGS)
def test_mutations_of_a_valid_project(
    root: Path, canon: bytes, params: bytes, profile: str | None
) -> None:
    attempt(root, canon, params, profile)


def test_the_valid_project_itself_loads(root: Path) -> None:
    result = attempt(root, VALID_CANON.encode(), VALID_PARAMS.encode())
    assert isinstance(result, Project)


def billion_laughs() -> bytes:
    lines = ["project: p", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("stages:\n  s: {cmd: [*a9]}")
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize(
    ("canon", "match"),
    [
        (billion_laughs(), "alias bomb"),
        (b"project: p\nx: " + b"[" * 10_000 + b"]" * 10_000 + b"\n", "nesting"),
        (
            b"project: p\nx:\n" + b"".join(b"  " * i + b"- \n" for i in range(1, 2000)),
            "deeper|nesting",
        ),
        (b"project: p\nx: " + b"{a: " * 10_000 + b"1" + b"}" * 10_000 + b"\n", "nesting"),
    ],
)
def test_bombs_fail_fast_in_bounded_memory(root: Path, canon: bytes, match: str) -> None:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = attempt(root, canon, None)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, DeclarationError)
    with pytest.raises(DeclarationError, match=match):
        raise result
    assert elapsed < 1.0
    assert peak < 64 * 1024 * 1024
