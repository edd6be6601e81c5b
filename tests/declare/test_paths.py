"""canon.declare.paths.normalise_path: the one gate for declared paths."""

from __future__ import annotations

import pytest

from canon.declare.paths import has_url_scheme, normalise_path
from canon.errors import PathError


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("build/model.joblib", "build/model.joblib"),
        ("./build//features/", "build/features"),
        ("a/./b/.", "a/b"),
        ("src/churn/features.py", "src/churn/features.py"),
        ("data", "data"),
        (".github/workflows/ci.yml", ".github/workflows/ci.yml"),  # only .git itself is refused
        ("sub/.canon/x", "sub/.canon/x"),  # only the top-level .canon is canon's own
        ("données/été.csv", "données/été.csv"),
        ("my file.txt", "my file.txt"),
        ("a%20b", "a%20b"),  # percent-encodings of ordinary characters are just characters
        ("file.git", "file.git"),
        ("...", "..."),
    ],
)
def test_accepted(raw: str, normal: str) -> None:
    assert normalise_path(raw) == normal


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("/etc/passwd", "absolute path"),
        ("//server/share", "absolute path"),
        ("~/data", "home directory"),
        ("~root/x", "home directory"),
        ("..", r"contains '\.\.'"),
        ("../secrets", r"contains '\.\.'"),
        ("a/../../b", r"contains '\.\.'"),
        ("a/b/..", r"contains '\.\.'"),
        ("a\x00b", "NUL"),
        ("a\nb", "control character"),
        ("a\\b", "backslash"),
        ("..\\..\\x", "backslash"),
        ("C:/Windows", "Windows"),
        ("c:foo", "Windows"),
        ("s3://bucket/key", "is a URL"),
        ("file:///etc/passwd", "is a URL"),
        ("https://example.com/x", "is a URL"),
        ("%2e%2e/x", "percent-encoded"),
        ("a/%2E%2E/b", "percent-encoded"),
        ("a%2fb", "percent-encoded"),
        ("a%5cb", "percent-encoded"),
        ("%252e%252e/x", "percent-encoded"),
        ("a%00", "percent-encoded"),
        (".git", r"inside \.git"),
        (".git/hooks/pre-commit", r"inside \.git"),
        (".GIT/config", r"inside \.git"),
        ("vendor/lib/.git/hooks", r"inside \.git"),
        (".canon/cache/x", r"inside \.canon"),
        ("./.Canon", r"inside \.canon"),
        (".", "project root itself"),
        ("./", "project root itself"),
        ("a" * 5000, "longer than 4096"),
    ],
)
def test_rejected(raw: str, match: str) -> None:
    with pytest.raises(PathError, match=match) as info:
        normalise_path(raw)
    assert info.value.code == "path.rejected"


def test_messages_quote_values_and_never_echo_control_characters() -> None:
    with pytest.raises(PathError, match=r'^"/\\"x" is an absolute path$'):
        normalise_path('/"x')
    with pytest.raises(PathError, match="control character") as info:
        normalise_path("../\x1b[31mred")
    assert "\x1b" not in info.value.message
    with pytest.raises(PathError, match="…") as info:
        normalise_path("/" + "a" * 500)
    assert len(info.value.message) < 200


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("s3://b/k", True),
        ("gs://b", True),
        ("a+b.c-d://x", True),
        ("data/x", False),
        ("x:y", False),
    ],
)
def test_has_url_scheme(raw: str, expected: bool) -> None:
    assert has_url_scheme(raw) is expected
