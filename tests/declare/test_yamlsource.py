"""canon.declare.yamlsource: safe YAML with positions, and every refusal located."""

from __future__ import annotations

import time

import pytest
import yaml

from canon.declare import yamlsource
from canon.declare.yamlsource import MAX_BYTES, SourceMap, parse_yaml, render_path
from canon.errors import DeclarationError


def parse(text: str | bytes) -> yamlsource.YamlDocument:
    data = text.encode() if isinstance(text, str) else text
    return parse_yaml(data, "canon.yaml")


def fatal(text: str | bytes, match: str) -> DeclarationError:
    with pytest.raises(DeclarationError, match=match) as info:
        parse(text)
    assert all(d.file == "canon.yaml" for d in info.value.diagnostics)
    return info.value


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ((), ""),
        (("stages",), "stages"),
        (("stages", "train", "deps", 2), "stages.train.deps[2]"),
        (("data", "a.b"), 'data["a.b"]'),
        (("env", 'x"y'), 'env["x\\"y"]'),
        ((0, "a"), "[0].a"),
    ],
)
def test_render_path(path: tuple[str | int, ...], text: str) -> None:
    assert render_path(path) == text


def test_values_and_lines() -> None:
    doc = parse(
        "project: x\n"
        "stages:\n"
        "  train:\n"
        "    deps:\n"
        "      - a\n"
        "      - b\n"
        "    n: 3\n"
        "    f: 0.5\n"
        "    on_: true\n"
        "    when: 2025-11-01\n"
        "    none: ~\n"
    )
    assert doc.diagnostics == ()
    train = doc.data["stages"]["train"]
    assert train == {
        "deps": ["a", "b"],
        "n": 3,
        "f": 0.5,
        "on_": True,
        "when": "2025-11-01",  # dates stay the text that was written
        "none": None,
    }
    lines = doc.source_map
    assert lines.line_of(()) == 1
    assert lines.line_of(("stages", "train")) == 3
    assert lines.line_of(("stages", "train", "deps", 1)) == 6
    assert lines.line_of(("stages", "train", "n")) == 7
    # Unknown paths fall back to the nearest known ancestor.
    assert lines.line_of(("stages", "train", "deps", 1, "x", 9)) == 6
    assert SourceMap("f").line_of(("a",)) is None


def test_empty_documents_give_none() -> None:
    for text in ("", "# only a comment\n", "---\n"):
        assert parse(text).data is None


def test_utf8_bom_is_accepted() -> None:
    assert parse(b"\xef\xbb\xbfproject: x\n").data == {"project": "x"}


def test_duplicate_keys_all_reported_with_both_lines() -> None:
    doc = parse("a: 1\nb:\n  x: 1\n  x: 2\na: 2\na: 3\n")
    messages = sorted((d.line, d.path, d.message) for d in doc.diagnostics)
    assert messages == [
        (4, "b.x", 'duplicate key "x": first on line 3, again on line 4'),
        (5, "a", 'duplicate key "a": first on line 1, again on line 5'),
        (6, "a", 'duplicate key "a": first on line 1, again on line 6'),
    ]


@pytest.mark.parametrize(
    ("text", "line", "path", "message"),
    [
        ("a: 1\nb: !!python/object/apply:os.system ['echo hi']\n", 2, "b", "python/object"),
        ("a: !!python/name:os.system\n", 1, "a", "python/name"),
        ("a:\n  - ok\n  - !custom x\n", 3, "a[1]", "!custom is not allowed"),
        ("a: !!binary aGk=\n", 1, "a", "binary"),
        ("a: !!set {x, y}\n", 1, "a", "set"),
        ("a: !!map x\n", 1, "a", "does not fit this scalar"),
        ("a: !!str [1]\n", 1, "a", "does not fit this list"),
        ("a: !!int nope\n", 1, "a", "cannot be read as an integer"),
        ("a: !!bool maybe\n", 1, "a", "cannot be read as a boolean"),
        ("!tagged k: 1\n", 1, "k", "!tagged is not allowed"),
    ],
)
def test_tags_outside_core_schema_are_refused(
    text: str, line: int, path: str, message: str
) -> None:
    doc = parse(text)
    assert [(d.line, d.path) for d in doc.diagnostics] == [(line, path)]
    assert message in doc.diagnostics[0].message


def test_huge_integer_is_a_diagnostic_not_a_crash() -> None:
    doc = parse("a: " + "9" * 5000 + "\n")
    assert doc.data == {"a": None}
    assert "cannot be read as an integer" in doc.diagnostics[0].message


@pytest.mark.parametrize(
    ("text", "path", "message", "hint"),
    [
        ("1: x\n", "1", "key 1 is read as an integer", 'quote it: "1"'),
        ("on: x\n", "on", "read as a boolean", "yes/no/on/off"),
        ("~: x\n", '["~"]', "read as null", None),
        ("1.5: x\n", '["1.5"]', "read as a number", None),
        ("? [a]\n: x\n", "", "not a list", None),
        ("? {a: 1}\n: x\n", "", "not a mapping", None),
    ],
)
def test_mapping_keys_must_be_strings(text: str, path: str, message: str, hint: str | None) -> None:
    doc = parse(text)
    assert doc.data == {}
    (diag,) = doc.diagnostics
    assert diag.line == 1
    assert (diag.path or "") == path
    assert message in diag.message
    if hint:
        assert diag.hint is not None and hint in diag.hint


def test_merge_keys_work_and_explicit_keys_win() -> None:
    doc = parse(
        "base: &b {cmd: run, deps: [a]}\n"
        "other: &o {deps: [z], outs: [o]}\n"
        "train:\n"
        "  <<: [*b, *o]\n"
        "  cmd: train\n"
    )
    assert doc.diagnostics == ()
    assert doc.data["train"] == {"cmd": "train", "deps": ["a"], "outs": ["o"]}


def test_merge_of_a_scalar_is_refused() -> None:
    doc = parse("a:\n  <<: 3\n  b: 1\n")
    assert [(d.line, d.path) for d in doc.diagnostics] == [(2, "a")]
    assert "<< must merge a mapping" in doc.diagnostics[0].message


def test_billion_laughs_fails_fast() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    started = time.perf_counter()
    err = fatal("\n".join(lines) + "\n", match="alias bomb")
    assert time.perf_counter() - started < 0.5
    assert err.diagnostics[0].line is not None


def test_aliases_of_a_huge_string_count_its_text() -> None:
    text = "a: &a " + "x" * 100_000 + "\nb: [" + ", ".join(["*a"] * 200) + "]\n"
    fatal(text, match="too much text")


def test_aliases_within_budget_are_expanded() -> None:
    doc = parse("a: &a [1, 2]\nb: [*a, *a]\n")
    assert doc.data == {"a": [1, 2], "b": [[1, 2], [1, 2]]}


def test_recursive_alias_is_refused() -> None:
    fatal("a: &x [1, *x]\n", match="refers to a node that contains it")


def test_nesting_limit() -> None:
    ok = "a: " + "[" * 63 + "]" * 63 + "\n"  # root mapping + 63 lists = depth 64
    assert parse(ok).diagnostics == ()
    err = fatal("a: " + "[" * 64 + "]" * 64 + "\n", match="deeper than 64")
    assert err.diagnostics[0].line == 1


def test_nesting_limit_counts_aliased_subtrees() -> None:
    deep = "[" * 40 + "1" + "]" * 40
    fatal(f"a: &d {deep}\nb: " + "[" * 30 + "*d" + "]" * 30 + "\n", match="deeper than 64")


@pytest.mark.parametrize("opener", ["[", "{a: ", "- "])
def test_ten_thousand_deep_nesting_fails_fast(opener: str) -> None:
    closer = {"[": "]", "{a: ": "}", "- ": ""}[opener]
    text = opener * 10_000 + "x" + closer * 10_000
    started = time.perf_counter()
    fatal(text, match="deeper|nesting|syntax")
    assert time.perf_counter() - started < 1.0


def test_pure_python_loader_fallback_is_also_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlsource, "_Loader", yaml.SafeLoader)
    assert parse("a: [1, {b: c}]\n").data == {"a": [1, {"b": "c"}]}
    fatal("[" * 10_000 + "]" * 10_000, match="deeper|nesting")


def test_file_over_the_size_limit() -> None:
    err = fatal(b"a: 1\n" + b"#" * MAX_BYTES, match="limit is 10,485,760")
    assert err.hint is not None


def test_non_utf8_says_where() -> None:
    err = fatal(b"project: x\nname: caf\xe9\n", match=r"byte 0xe9 at offset 20 \(line 2\)")
    assert err.diagnostics[0].line == 2


def test_non_utf8_after_bom_counts_the_bom() -> None:
    fatal(b"\xef\xbb\xbfa: \xff\n", match="offset 6")


@pytest.mark.parametrize(
    ("text", "line", "match"),
    [
        ("a: [1\nb: 2\n", 2, r"line 2, column 2"),
        ("a: 1\n  b: 2\n", 2, r"syntax error at line 2"),
        ("a: 'open\n", 2, r"syntax error"),
        ("a: 1\n---\nb: 2\n", 2, r"single document"),
        ("a:\n\tb: 1\n", 2, r"syntax error at line 2"),
        ("a: *nope\n", 1, r"undefined alias"),
    ],
)
def test_syntax_errors_are_located(text: str, line: int, match: str) -> None:
    err = fatal(text, match=match)
    assert err.diagnostics[0].line == line


def test_control_characters_are_located() -> None:
    err = fatal("a: 1\nb: x\x01y\n", match=r"U\+0001 is not allowed in YAML \(line 2\)")
    assert err.diagnostics[0].line == 2
