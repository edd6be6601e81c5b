"""``canon.lock``: read verified, written atomically.

The lock is YAML (users commit it and read its diffs), keys sorted so the same
state always gives the same bytes. Reading checks every field's type and every
digest's form; a damaged lock is a ``StateError`` that says how to recover,
never a traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from canon.digest import Digest, is_digest
from canon.errors import StateError
from canon.stores.atomic import atomic_write
from canon.stores.records import (
    LOCK_VERSION,
    Content,
    DatasetRecord,
    ImageRecord,
    Lock,
    ProfileState,
    StageRecord,
    SubsetOf,
)

LOCK_NAME = "canon.lock"
_HEADER = b"# canon.lock: the recorded state of this project. Written by canon; commit it.\n"

_MEMO = ".canon/lock.json"  # the parsed lock, keyed by the sha256 of its bytes


class _Damaged(Exception):
    pass


def _digest(value: object, where: str) -> Digest:
    if not isinstance(value, str) or not is_digest(value):
        raise _Damaged(f"{where}: not a sha256 digest: {value!r}")
    return Digest(value)


def _map(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _Damaged(f"{where}: expected a mapping")
    return value


def _int(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Damaged(f"{where}: expected a non-negative integer")
    return value


def _content(raw: object, where: str) -> Content:
    m = _map(raw, where)
    return Content(
        digest=_digest(m.get("digest"), f"{where}.digest"),
        size=_int(m.get("size", 0), f"{where}.size"),
        nfiles=_int(m.get("files", 1), f"{where}.files"),
        is_dir=bool(m.get("dir", False)),
    )


def _content_out(c: Content) -> dict[str, Any]:
    out: dict[str, Any] = {"digest": c.digest, "size": c.size}
    if c.is_dir:
        out.update(dir=True, files=c.nfiles)
    return out


def _stage(raw: object, where: str) -> StageRecord:
    m = _map(raw, where)
    key = _digest(m.get("key"), f"{where}.key")
    cmd = m.get("cmd")
    if not isinstance(cmd, list) or not all(isinstance(a, str) for a in cmd):
        raise _Damaged(f"{where}.cmd: expected a list of strings")
    env = _map(m.get("env"), f"{where}.env")
    return StageRecord(
        key=key,
        cmd=tuple(cmd),
        environment=_digest(m.get("environment"), f"{where}.environment"),
        deps={k: _digest(v, f"{where}.deps.{k}") for k, v in _map(m.get("deps"), where).items()},
        params=dict(_map(m.get("params"), f"{where}.params")),
        outs={k: _content(v, f"{where}.outs.{k}") for k, v in _map(m.get("outs"), where).items()},
        env={k: str(v) for k, v in env.items()},
    )


def _dataset(raw: object, where: str) -> DatasetRecord:
    m = _map(raw, where)
    index = m.get("index")
    subset = m.get("subset_of")
    subset_of = None
    if subset is not None:
        sm = _map(subset, f"{where}.subset_of")
        subset_of = SubsetOf(
            str(sm.get("name", "")), _digest(sm.get("digest"), f"{where}.subset_of")
        )
    source = m.get("source")
    return DatasetRecord(
        path=str(m.get("path", "")),
        content=_content(m, where),
        source=None if source is None else str(source),
        index=None if index is None else _digest(index, f"{where}.index"),
        subset_of=subset_of,
        spec=dict(_map(m.get("spec"), f"{where}.spec")),
    )


def _dataset_out(r: DatasetRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"path": r.path, **_content_out(r.content)}
    if r.source is not None:
        out["source"] = r.source
    if r.index is not None:
        out["index"] = r.index
    if r.subset_of is not None:
        out["subset_of"] = {"name": r.subset_of.name, "digest": r.subset_of.digest}
    if r.spec:
        out["spec"] = dict(r.spec)
    return out


def _image(raw: object, where: str) -> ImageRecord:
    m = _map(raw, where)
    commit = m.get("commit")
    if not isinstance(commit, str):
        raise _Damaged(f"{where}.commit: expected a commit id")
    base = m.get("base")
    return ImageRecord(
        digest=_digest(m.get("digest"), f"{where}.digest"),
        key=_digest(m.get("key"), f"{where}.key"),
        commit=commit,
        size=_int(m.get("size", 0), f"{where}.size"),
        base=None if base is None else _digest(base, f"{where}.base"),
        pushed={k: str(v) for k, v in _map(m.get("pushed"), f"{where}.pushed").items()},
    )


def _image_out(r: ImageRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"digest": r.digest, "key": r.key, "commit": r.commit, "size": r.size}
    if r.base is not None:
        out["base"] = r.base
    if r.pushed:
        out["pushed"] = dict(r.pushed)
    return out


def parse_lock(data: bytes, source: str = LOCK_NAME, raw: object = None) -> Lock:
    """The lock in ``data``; ``raw``: its YAML already loaded (from the memo)."""
    if re.search(rb"^(<<<<<<<|>>>>>>>) ", data, re.MULTILINE):
        raise StateError(
            f"{source} has merge conflict markers",
            hint=f"take one side (`git checkout --ours {source}` or `--theirs`), then "
            "`canon apply` brings it up to date with the merged declaration",
        )
    try:
        if raw is None:
            raw = _load_yaml(data)
        top = _map(raw, "top level")
        version = top.get("version")
        if isinstance(version, int) and version > LOCK_VERSION:
            raise StateError(
                f"{source} was written by a newer canon (lock version {version})",
                hint="upgrade canon to read it",
            )
        if version is None:
            raise _Damaged("it is empty or truncated (no version)")
        if version != LOCK_VERSION:
            raise _Damaged(f"unsupported lock version {version!r}")
        profiles: dict[str, ProfileState] = {}
        for name, praw in _map(top.get("profiles"), "profiles").items():
            where = f"profiles.{name}"
            p = _map(praw, where)
            env = p.get("environment")
            data_ = {
                k: _dataset(v, f"{where}.data.{k}")
                for k, v in _map(p.get("data"), f"{where}.data").items()
            }
            stages = {
                k: _stage(v, f"{where}.stages.{k}")
                for k, v in _map(p.get("stages"), f"{where}.stages").items()
            }
            profiles[name] = ProfileState(
                environment=None if env is None else _digest(env, f"{where}.environment"),
                data=data_,
                stages=stages,
                images={
                    k: _image(v, f"{where}.images.{k}")
                    for k, v in _map(p.get("images"), f"{where}.images").items()
                },
            )
        return Lock(profiles)
    except (_Damaged, UnicodeDecodeError) as exc:
        raise StateError(
            f"{source} is damaged: {exc}",
            hint=f"restore it from Git (`git checkout -- {source}`) and run `canon status`",
        ) from exc


def render_lock(lock: Lock) -> bytes:
    profiles: dict[str, Any] = {}
    for name, state in lock.profiles.items():
        p: dict[str, Any] = {}
        if state.environment:
            p["environment"] = state.environment
        if state.data:
            p["data"] = {k: _dataset_out(r) for k, r in state.data.items()}
        if state.stages:
            p["stages"] = {
                k: {
                    "key": r.key,
                    "cmd": list(r.cmd),
                    "environment": r.environment,
                    "deps": dict(r.deps),
                    **({"params": dict(r.params)} if r.params else {}),
                    **({"env": dict(r.env)} if r.env else {}),
                    "outs": {o: _content_out(c) for o, c in r.outs.items()},
                }
                for k, r in state.stages.items()
            }
        if state.images:
            p["images"] = {k: _image_out(r) for k, r in state.images.items()}
        profiles[name] = p
    import yaml  # here, not at the top: reading a memoised lock needs no YAML

    body = yaml.dump(
        {"version": LOCK_VERSION, "profiles": profiles},
        Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper),
        sort_keys=True,
        default_flow_style=None,
        allow_unicode=True,
        width=1000,
    )
    return _HEADER + body.encode()


def read_lock(root: Path) -> Lock:
    path = root / LOCK_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Lock()
    except OSError as exc:
        raise StateError(f"cannot read {LOCK_NAME}: {exc.strerror}") from exc
    return parse_lock(data, raw=_memoised(root / _MEMO, data))


def _load_yaml(data: bytes) -> object:
    import yaml

    try:
        return yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise _Damaged(str(exc)) from exc


def _memoised(memo: Path, data: bytes) -> object:
    """The YAML of ``data`` loaded, from ``memo`` when it was made from these very bytes
    (so a no-op ``canon status`` does not import PyYAML). Only a cache: anything odd
    about it means loading the YAML; a lock that does not survive JSON is not memoised."""
    digest = hashlib.sha256(data).hexdigest()
    with contextlib.suppress(OSError, ValueError):
        doc = json.loads(memo.read_bytes())
        if isinstance(doc, dict) and doc.get("sha256") == digest:
            return doc.get("raw")
    if re.search(rb"^(<<<<<<<|>>>>>>>) ", data, re.MULTILINE):
        return None  # parse_lock names the conflict
    try:
        raw = _load_yaml(data)
    except _Damaged:
        return None  # parse_lock loads it again and says what is wrong
    with contextlib.suppress(OSError, TypeError, ValueError):
        text = json.dumps({"sha256": digest, "raw": raw}, sort_keys=True)
        if json.loads(text)["raw"] == raw and memo.parent.is_dir():
            tmp = memo.with_name(f".{memo.name}.{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, memo)
    return raw


def write_lock(root: Path, lock: Lock) -> None:
    atomic_write(root / LOCK_NAME, render_lock(lock))
