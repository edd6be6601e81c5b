"""Declared datasets -> ``DatasetSpec``: sources, subsets and queries, checked.

Pure, like the rest of ``resolve``: every problem goes to ``Problems`` with its
YAML path, so one load reports them all. What a resolved ``DatasetSpec``
guarantees:

- exactly one of ``source`` / ``from`` / ``query`` was declared, and only the
  fields of that kind (``sample`` needs ``from``, ``as_of`` needs ``query``…);
- a local source went through ``normalise_path`` (inside the workspace, not in
  ``.git`` or ``.canon``); a URL source has a scheme canon reads
  (``canon.urls.DATA_SCHEMES``) and carries no credentials, nor do the
  ``database`` URL and ``storage_options`` (refused with the secret redacted);
- a subset's parent is declared, and ``from`` chains have no cycle;
- ``mount`` is ``.canon/data/NAME``, or ``.canon/data/NAME/<basename>`` when
  the source's last segment looks like a file (has a suffix): decided from the
  text alone, so the memoised declaration never depends on the disk.
"""

from __future__ import annotations

from canon.declare.diagnostics import Problems, did_you_mean
from canon.declare.interpolate import InterpolationError, Scope, interpolate
from canon.declare.paths import has_url_scheme, normalise_path
from canon.declare.project import (
    DATA_MOUNT,
    DataKind,
    DatasetSpec,
    QuerySpec,
    SubsetSpec,
)
from canon.declare.schema import Dataset, ProjectFile
from canon.declare.yamlsource import YamlPath
from canon.errors import PathError
from canon.urls import DATA_SCHEMES, SECRET_OPTION_KEYS, credential_problem, redact, scheme_of

__all__ = ["DEFAULT_DATABASE", "resolve_datasets"]

DEFAULT_DATABASE = "warehouse.duckdb"
_CRED_HINT = (
    "credentials never go in canon.yaml: set them in the environment (AWS_ACCESS_KEY_ID, "
    "AWS_PROFILE, PGPASSWORD, …) or the store's standard config file"
)
_SUBSET_FIELDS = ("sample", "filter")
_QUERY_FIELDS = ("database", "as_of", "format")
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def resolve_datasets(
    decl: ProjectFile, scope: Scope, problems: Problems
) -> tuple[dict[str, DatasetSpec], frozenset[str]]:
    """Every dataset resolved, in declaration order, and the names that failed."""
    out: dict[str, DatasetSpec] = {}
    failed: set[str] = set()
    source_scope = scope.only("profile", "params")
    subsets: list[str] = []
    for name, ds in decl.data.items():
        at: YamlPath = ("data", name)
        declared = (("source", ds.source), ("from", ds.from_), ("query", ds.query))
        kinds = [k for k, v in declared if v]
        if len(kinds) != 1:
            problems.add(
                at,
                "a dataset has exactly one of source:, from: or query:"
                + (f" (found {', '.join(kinds)})" if kinds else ""),
                "source: a path or URL; from: another dataset to take a subset of; "
                "query: SQL against database:",
            )
            failed.add(name)
            continue
        if not _fields_fit(ds, kinds[0], at, problems):
            failed.add(name)
            continue
        if ds.from_ is not None:
            subsets.append(name)
            continue
        spec = (
            _source(name, ds, source_scope, at, problems)
            if ds.source is not None
            else _query(name, ds, source_scope, at, problems)
        )
        if spec is None:
            failed.add(name)
        else:
            out[name] = spec
    _subsets(decl, subsets, out, failed, problems)
    ordered = {n: out[n] for n in decl.data if n in out}
    return ordered, frozenset(failed)


def _fields_fit(ds: Dataset, kind: str, at: YamlPath, problems: Problems) -> bool:
    ok = True
    for field in _SUBSET_FIELDS:
        if getattr(ds, field) is not None and kind != "from":
            problems.add((*at, field), f"{field}: only applies to a subset (from: another dataset)")
            ok = False
    for field in _QUERY_FIELDS:
        if getattr(ds, field) is not None and kind != "query":
            problems.add((*at, field), f"{field}: only applies to a query dataset (query:)")
            ok = False
    if ds.storage_options and kind != "source":
        problems.add((*at, "storage_options"), "storage_options: only applies to a URL source")
        ok = False
    if kind == "from" and ds.sample is None and ds.filter is None:
        problems.add(at, "a subset needs sample: or filter: (or both)", "e.g. sample: 0.1")
        ok = False
    return ok


def _interpolate(text: str, scope: Scope, at: YamlPath, problems: Problems) -> str | None:
    try:
        return interpolate(text, scope)
    except InterpolationError as exc:
        for problem in exc.problems:
            problems.add(at, problem.message, problem.hint)
        return None


def _source(
    name: str, ds: Dataset, scope: Scope, at: YamlPath, problems: Problems
) -> DatasetSpec | None:
    where: YamlPath = (*at, "source")
    assert ds.source is not None
    source = _interpolate(ds.source, scope, where, problems)
    if source is None:
        return None
    options = _options(ds, scope, at, problems)
    if options is None:
        return None
    if has_url_scheme(source):
        if not _url_ok(source, where, problems):
            return None
        return DatasetSpec(
            name=name,
            source=source,
            path="",
            kind=DataKind.URL,
            mount=_mount(name, source.split("://", 1)[1]),
            storage_options=options,
        )
    if options:
        problems.add((*at, "storage_options"), "storage_options: only applies to a URL source")
        return None
    try:
        path = normalise_path(source)
    except PathError as exc:
        problems.add(where, exc.message, exc.hint)
        return None
    return DatasetSpec(name=name, source=source, path=path, mount=_mount(name, path))


def _url_ok(url: str, at: YamlPath, problems: Problems) -> bool:
    problem = credential_problem(url)
    if problem is not None:
        problems.add(at, problem, _CRED_HINT)
        return False
    scheme = scheme_of(url) or ""
    if scheme not in DATA_SCHEMES:
        problems.add(
            at,
            f"unknown scheme {scheme}:// in {redact(url)}",
            "canon reads " + ", ".join(f"{s}://" for s in sorted(DATA_SCHEMES)),
        )
        return False
    rest = url.split("://", 1)[1]
    if scheme == "file" and not rest.startswith("/"):
        problems.add(at, f"{url} is not an absolute file:// URL", "write file:///absolute/path")
        return False
    if any(ord(c) < 32 for c in url):
        problems.add(at, "the URL contains a control character")
        return False
    if not rest.strip("/"):
        problems.add(at, f"{redact(url)} names no bucket or path")
        return False
    return True


def _options(
    ds: Dataset, scope: Scope, at: YamlPath, problems: Problems
) -> tuple[tuple[str, str | int | float | bool], ...] | None:
    out: list[tuple[str, str | int | float | bool]] = []
    ok = True
    for key, value in sorted(ds.storage_options.items()):
        where: YamlPath = (*at, "storage_options", key)
        if key.lower() in SECRET_OPTION_KEYS:
            problems.add(where, f"storage option {key} is a credential", _CRED_HINT)
            ok = False
            continue
        if isinstance(value, str):
            text = _interpolate(value, scope, where, problems)
            if text is None:
                ok = False
                continue
            problem = credential_problem(text)
            if problem is not None:
                problems.add(where, problem, _CRED_HINT)
                ok = False
                continue
            out.append((key, text))
        else:
            out.append((key, value))
    return tuple(out) if ok else None


def _query(
    name: str, ds: Dataset, scope: Scope, at: YamlPath, problems: Problems
) -> DatasetSpec | None:
    assert ds.query is not None
    raw = ds.database or DEFAULT_DATABASE
    database = _interpolate(raw, scope, (*at, "database"), problems)
    if database is None:
        return None
    if has_url_scheme(database):
        problem = credential_problem(database)
        if problem is not None:
            problems.add((*at, "database"), problem, _CRED_HINT)
            return None
    else:
        try:
            path = normalise_path(database)
        except PathError as exc:
            problems.add((*at, "database"), exc.message, exc.hint)
            return None
        engine = "sqlite" if path.endswith(_SQLITE_SUFFIXES) else "duckdb"
        database = f"{engine}:///{path}"
    fmt = ds.format or "csv"
    return DatasetSpec(
        name=name,
        source="",
        path="",
        kind=DataKind.QUERY,
        mount=f"{DATA_MOUNT}/{name}/{name}.{fmt}",
        query=QuerySpec(text=ds.query, database=database, as_of=ds.as_of, format=fmt),
    )


def _subsets(
    decl: ProjectFile,
    names: list[str],
    out: dict[str, DatasetSpec],
    failed: set[str],
    problems: Problems,
) -> None:
    """Resolve subsets parents-first; report unknown parents and cycles."""
    pending = list(names)
    while pending:
        progressed = False
        for name in list(pending):
            ds = decl.data[name]
            parent = ds.from_
            assert parent is not None
            at: YamlPath = ("data", name, "from")
            if parent not in decl.data or parent == name:
                what = "itself" if parent == name else f'unknown dataset "{parent}"'
                hint = did_you_mean(parent, [n for n in decl.data if n != name])
                problems.add(at, f"from: {what}", hint or "name another dataset under data:")
                failed.add(name)
                pending.remove(name)
                progressed = True
            elif parent in failed:
                failed.add(name)  # already reported where the parent is declared
                pending.remove(name)
                progressed = True
            elif parent in out:
                out[name] = DatasetSpec(
                    name=name,
                    source="",
                    path="",
                    kind=DataKind.SUBSET,
                    mount=_subset_mount(name, out[parent]),
                    subset=SubsetSpec(parent, ds.sample, ds.filter, ds.seed),
                )
                pending.remove(name)
                progressed = True
        if not progressed:  # what is left points in a circle
            for name in pending:
                problems.add(("data", name, "from"), f"from: chain of subsets loops ({name})")
                failed.add(name)
            return


def _mount(name: str, path: str) -> str:
    """Where a source's pinned content is materialised (see the module docstring)."""
    base = path.rstrip("/").rsplit("/", 1)[-1] if not path.endswith("/") else ""
    if base and "." in base.lstrip("."):
        try:
            return f"{DATA_MOUNT}/{name}/{normalise_path(base)}"
        except PathError:
            pass
    return f"{DATA_MOUNT}/{name}"


def _subset_mount(name: str, parent: DatasetSpec) -> str:
    prefix = f"{DATA_MOUNT}/{parent.name}/"
    if parent.mount.startswith(prefix):  # the parent is file-shaped: keep its basename
        return f"{DATA_MOUNT}/{name}/{parent.mount[len(prefix) :]}"
    return f"{DATA_MOUNT}/{name}"
