"""declare/yamledit.py: scalars changed in place, everything around them kept."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from canon.declare.yamledit import set_scalars

TEXT = """\
# the model's knobs
train:
  C: 1.0               # inverse regularisation
  until: "2014-12-31"  # last day of training data
  name: plain          # a plain scalar
  quote: 'it''s'
evaluate: {from: '2015-01-01', n: 3}

shared: &s 5
again: *s
block: |
  line one
"""


@pytest.mark.parametrize(
    ("changes", "lines"),
    [
        ({("train", "C"): 0.25}, {3: "  C: 0.25               # inverse regularisation"}),
        ({("train", "until"): "2013-12-31"},
         {4: '  until: "2013-12-31"  # last day of training data'}),
        ({("train", "name"): "a: b"}, {5: "  name: 'a: b'          # a plain scalar"}),
        ({("train", "quote"): "don't"}, {6: "  quote: 'don''t'"}),
        ({("evaluate", "n"): 7, ("train", "C"): True},
         {3: "  C: true               # inverse regularisation",
          7: "evaluate: {from: '2015-01-01', n: 7}"}),
        ({("train", "name"): None}, {5: "  name: null          # a plain scalar"}),
    ],
)
def test_only_the_changed_scalars_change(changes: dict[Any, Any], lines: dict[int, str]) -> None:
    out = set_scalars(TEXT, changes)
    assert out is not None
    before, after = TEXT.splitlines(), out.splitlines()
    assert len(before) == len(after)
    for i, (old, new) in enumerate(zip(before, after, strict=True), start=1):
        assert new == lines.get(i, old)
    data = yaml.safe_load(out)
    for path, value in changes.items():
        node = data
        for key in path:
            node = node[key]
        assert node == value


@pytest.mark.parametrize(
    "changes",
    [
        {("train", "missing"): 1},  # not in the file
        {("train",): 2},  # a mapping
        {("train", "C"): [1, 2]},  # a list for a scalar
        {("block",): "x"},  # a block scalar
        {("shared",): 6, ("again",): 7},  # one scalar through an alias
    ],
)
def test_what_cannot_be_done_in_place_is_none(changes: dict[Any, Any]) -> None:
    assert set_scalars(TEXT, changes) is None


def test_text_that_does_not_compose_is_none() -> None:
    assert set_scalars("a: [1,\n", {("a",): 1}) is None
