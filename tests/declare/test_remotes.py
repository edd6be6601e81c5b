"""Declared remotes: the schema, the checks (credentials redacted), the profile's choice, the memo."""

from __future__ import annotations

from pathlib import Path

import pytest

from canon.declare.loader import load_project
from canon.declare.memo import load_project_memoised
from canon.declare.project import RemoteSpec
from canon.errors import DeclarationError

BASE = """\
project: r
remotes:
  store: {url: /srv/canon-store}
  s3: {url: "s3://bucket/prefix", endpoint_url: "http://127.0.0.1:9000", region: eu-west-1, jobs: 16}
profiles:
  local: {remote: store}
  cloud: {remote: s3}
  other: {x: 1}
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "canon.yaml").write_text(text)
    return tmp_path


def test_remotes_resolve_and_the_profile_picks_one(tmp_path: Path) -> None:
    root = write(tmp_path, BASE)
    local = load_project(root, environ={})
    assert local.remote == "store"
    assert local.remotes["s3"] == RemoteSpec("s3", "s3://bucket/prefix", "http://127.0.0.1:9000",
                                             "eu-west-1", 16)
    assert load_project(root, profile="cloud", environ={}).remote == "s3"
    assert load_project(root, profile="other", environ={}).remote is None  # two remotes, no default


@pytest.mark.parametrize(
    ("extra", "chosen"),
    [("default_remote: s3\n", "s3"), ("", None)],
)
def test_default_remote(tmp_path: Path, extra: str, chosen: str | None) -> None:
    root = write(tmp_path, BASE + extra)
    assert load_project(root, profile="other", environ={}).remote == chosen


def test_a_single_remote_is_the_default(tmp_path: Path) -> None:
    root = write(tmp_path, "project: r\nremotes:\n  only: {url: ../store}\n")
    assert load_project(root, environ={}).remote == "only"


def test_memo_round_trips_remotes(tmp_path: Path) -> None:
    root = write(tmp_path, BASE)
    first = load_project_memoised(root, profile="cloud", environ={})
    again = load_project_memoised(root, profile="cloud", environ={})
    assert again == first == load_project(root, profile="cloud", environ={})
    assert again.remotes["s3"].jobs == 16


def test_every_problem_is_located_and_secrets_are_redacted(tmp_path: Path) -> None:
    root = write(tmp_path, """\
project: r
remotes:
  leaky: {url: "s3://AKIAEXAMPLE:hunter2secret@bucket/p"}
  ep: {url: "s3://b/p", endpoint_url: "http://user:pw9secret@127.0.0.1:9000"}
  ftp: {url: "ftp://host/x"}
  templ: {url: "s3://b/${profile.x}"}
default_remote: lekay
profiles:
  local: {remote: nope}
""")
    with pytest.raises(DeclarationError, match="6 problems") as err:
        load_project(root, environ={})
    text = "\n".join(err.value.details())
    assert "hunter2secret" not in text and "pw9secret" not in text and "AKIAEXAMPLE" not in text
    assert "canon.yaml:3 remotes.leaky.url: remote URL s3://***@bucket/p has credentials in it" in text
    assert "canon.yaml:4 remotes.ep.endpoint_url" in text
    assert "canon.yaml:5 remotes.ftp.url: unknown remote scheme ftp://" in text
    assert "remotes.templ.url: remote URLs cannot use ${...}" in text
    assert 'default_remote: default_remote "lekay" is not a declared remote — did you mean "leaky"?' in text
    assert "profiles.local.remote: profile local names remote 'nope', which is not declared" in text


def test_unknown_remote_field_is_reported(tmp_path: Path) -> None:
    root = write(tmp_path, "project: r\nremotes:\n  a: {url: /x, password: p}\n")
    with pytest.raises(DeclarationError, match="problem") as err:
        load_project(root, environ={})
    assert 'remotes.a.password: unknown field "password"' in "\n".join(err.value.details())
