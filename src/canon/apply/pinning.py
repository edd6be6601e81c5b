"""Pin a dataset: store its content in the object store, return its lock record.

The pin is what every stage reads from then on (the pin wins). Per kind:

- a workspace path: its files are stored (the manifest last) and the index
  records each file's sha256 as its version;
- a URL: one listing pass, then every file is downloaded in parallel,
  streamed and hashed into the store (``canon.executors.fetch``); the index
  records each file's ETag / mtime, for drift reports without downloads;
- a subset: made from the parent's *pinned* content (``canon.executors.subsets``);
  the record names the parent and the digest it was made from;
- a query: run, sorted by all columns, stored (``canon.executors.queries``).

Nothing is written to the lock here: the caller saves the returned record
(objects first, then the lock — a crash in between leaves only unreferenced
objects). A failure raises a ``DataError`` naming the dataset; the lock is
untouched.
"""

from __future__ import annotations

from collections.abc import Callable

from canon.declare.project import DataKind, DatasetSpec
from canon.errors import DataError, SourceMissingError
from canon.executors.fetch import fetch
from canon.executors.queries import run_query
from canon.executors.subsets import make_subset
from canon.observe.sources import list_source
from canon.observe.workspace import Workspace
from canon.plan.data import pin_spec, source_label
from canon.stores.records import DatasetRecord, ProfileState, SubsetOf
from canon.stores.sourceindex import IndexEntry, SourceIndex

__all__ = ["Progress", "pin_dataset"]

Progress = Callable[[str, int, int], None]  # (dataset, files done, bytes done)


def pin_dataset(
    ds: DatasetSpec, ws: Workspace, state: ProfileState, progress: Progress | None = None
) -> DatasetRecord:
    """Store ``ds``'s content now; the record to put in the lock."""
    label = source_label(ds)
    if ds.kind is DataKind.PATH:
        return _workspace(ds, ws, label)
    if ds.kind is DataKind.URL:
        listing = list_source(ds)
        tick = None if progress is None else (lambda n, b: progress(ds.name, n, b))
        fetched = fetch(ds, listing, ws.store, progress=tick)
        index = ws.store.add_bytes(listing.index.to_bytes())
        return DatasetRecord("", fetched.content, source=label, index=index)
    scratch = ws.state / "tmp"
    if ds.subset is not None:
        parent = state.data.get(ds.subset.parent)
        if parent is None:
            raise DataError(
                f"data.{ds.name}: its parent data.{ds.subset.parent} is not pinned",
                hint=f"run `canon apply` or `canon data update {ds.subset.parent}` first",
            )
        if not ws.store.has(parent.content.digest):
            raise DataError(
                f"data.{ds.name}: the pinned content of data.{ds.subset.parent} "
                "is not in the cache",
                hint="`canon pull` it from a remote, or re-pin the parent",
            )
        basename = ds.where.rsplit("/", 1)[-1]
        content = make_subset(ds.name, ds.subset, parent.content, basename, ws.store, scratch)
        return DatasetRecord(
            "",
            content,
            source=label,
            subset_of=SubsetOf(ds.subset.parent, parent.content.digest),
            spec=pin_spec(ds),
        )
    assert ds.query is not None
    content = run_query(ds.name, ds.query, ws.root, ws.store, scratch)
    return DatasetRecord("", content, source=label, spec=pin_spec(ds))


def _workspace(ds: DatasetSpec, ws: Workspace, label: str) -> DatasetRecord:
    snap = ws.snapshot(ds.path)
    if snap is None:
        raise SourceMissingError(
            f'data.{ds.name}: its source "{ds.source}" does not exist',
            hint=f"put the data at {ds.path} or point the profile at it",
        )
    content, manifest = snap
    abs_path = ws.root / ds.path
    if manifest is not None:
        ws.store.add_tree(abs_path, manifest)
        index = SourceIndex.of_manifest(manifest)
    else:
        ws.store.add_file(abs_path, content.digest)
        base = ds.path.rsplit("/", 1)[-1]
        index = SourceIndex.build([IndexEntry(base, content.size, content.digest[7:])])
    digest = ws.store.add_bytes(index.to_bytes())
    return DatasetRecord(ds.path, content, source=label, index=digest)
