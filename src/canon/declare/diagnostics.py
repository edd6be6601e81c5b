"""Problems found in a declaration, collected so that all are reported at once.

``Problems`` gathers ``Diagnostic``s for one file, locating each through the
file's ``SourceMap``; ``problems_error`` folds every collected diagnostic into
the single ``DeclarationError`` a user sees ("canon.yaml has 3 problems").
``did_you_mean`` is the one spelling-suggestion helper of this layer.

Invariant: a ``DeclarationError`` built here lists each distinct problem once,
sorted by file then line, and never more than ``MAX_REPORTED`` of them (a
hostile file with a million duplicate keys yields a bounded message).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from canon.declare.yamlsource import SourceMap, YamlPath, render_path
from canon.errors import DeclarationError, Diagnostic

__all__ = ["MAX_REPORTED", "Problems", "close_match", "did_you_mean", "problems_error"]

MAX_REPORTED = 200


def close_match(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``word``, if one is close enough to be a typo.

    Edit distance with transpositions decides ("dpes" is one swap from "deps",
    which difflib ranks no better than "desc"); difflib's ratio breaks ties.
    """
    # Imported here: difflib is only needed on the error path, and loading a
    # valid project should not pay for it (DESIGN: `canon status` < 0.3 s).
    import difflib

    pool = sorted({c for c in candidates if c != word})[:1000]
    if not pool or len(word) > 200:
        return None
    budget = 1 if len(word) <= 4 else 2 if len(word) <= 8 else 3
    scored = []
    for candidate in pool:
        distance = _typo_distance(word.casefold(), candidate.casefold(), budget)
        if distance <= budget:
            ratio = difflib.SequenceMatcher(None, word, candidate).ratio()
            scored.append((distance, -ratio, candidate))
    if scored:
        return min(scored)[2]
    matches = difflib.get_close_matches(word, pool, n=1, cutoff=0.8)
    return matches[0] if matches else None


def _typo_distance(a: str, b: str, budget: int) -> int:
    """Optimal-string-alignment distance (edits and adjacent swaps), capped at budget + 1."""
    if abs(len(a) - len(b)) > budget or len(b) > 200:
        return budget + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return min(previous[len(b)], budget + 1)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """``'did you mean "data_root"?'`` or None when nothing is close."""
    match = close_match(word, candidates)
    return f'did you mean "{match}"?' if match is not None else None


def join_hints(*hints: str | None) -> str | None:
    """Join the hints that are present with "; ", or None if there are none."""
    present = [h for h in hints if h]
    return "; ".join(present) if present else None


class Problems:
    """Diagnostics for one file, each located by its YAML path."""

    def __init__(self, source_map: SourceMap) -> None:
        self.source_map = source_map
        self.items: list[Diagnostic] = []

    @property
    def file(self) -> str:
        return self.source_map.file

    def add(self, path: YamlPath, message: str, hint: str | None = None) -> None:
        """Record a problem at ``path`` (the nearest line the source map knows)."""
        self.items.append(
            Diagnostic(
                message,
                file=self.file,
                line=self.source_map.line_of(path),
                path=render_path(path) or None,
                hint=hint,
            )
        )

    def extend(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.items.extend(diagnostics)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)


def problems_error(
    diagnostics: Sequence[Diagnostic], *, hint: str | None = None
) -> DeclarationError:
    """One error carrying every distinct diagnostic, sorted and capped."""
    files: list[str] = []
    unique: dict[Diagnostic, None] = {}
    for diag in diagnostics:
        unique.setdefault(diag, None)
        if diag.file and diag.file not in files:
            files.append(diag.file)
    order = {name: i for i, name in enumerate(files)}
    ranked = sorted(unique, key=lambda d: (order.get(d.file or "", -1), d.line or 0))
    count = len(ranked)
    shown = ranked[:MAX_REPORTED]
    if count > MAX_REPORTED:
        shown.append(Diagnostic(f"… and {count - MAX_REPORTED} more problems"))
    noun = "problem" if count == 1 else "problems"
    if len(files) <= 1:
        where = files[0] if files else "the declaration"
        message = f"{where} has {count} {noun}"
    else:
        message = f"{', '.join(files[:-1])} and {files[-1]} have {count} {noun}"
    if count == 1:
        message += f": {ranked[0].message}"
    return DeclarationError(message, shown, hint=hint)
