"""Back-test data: another pin of a dataset, swapped under an earlier commit's model.

``--data NAME@REV`` is dataset NAME as REV's ``canon.lock`` pins it; ``--data
NAME`` (no ``@``) as the workspace's ``canon.lock`` pins it now; ``--data
SLOT=OTHER[@REV]`` puts the pin of another dataset (OTHER, of the same shape:
file or directory) where the model's pipeline reads SLOT. Without ``SLOT=``,
the slot is NAME when the model's commit pins a dataset of that name, else the
only dataset it pins.

In the experiment's worktree of the model's commit (``swap_in``):

1. the model is restored: ``canon apply`` of the model stage (and what it
   needs) with the commit's own code, params and pins. Its outputs come from
   the shared cache (the digests the commit's lock records, or the run
   cache), put there from the commit's model image when the cache lacked them
   (``apply/modelimage.py``, before the cells run); only when neither has them
   does the stage re-run — the model is then rebuilt from the commit, and the
   provenance says so (``model_from``);
2. the model stage is taken out of the worktree's canon.yaml and canon.lock,
   so its outputs stay the restored files whatever the new data: the model is
   never retrained on the data it is tested on;
3. the pin of SLOT in the worktree's canon.lock becomes the chosen content; a
   content missing from the local cache is fetched from the project's remote
   (or is an error naming the dataset and the digest).

Then the experiment's ``canon apply`` re-runs what reads the new data
(features, evaluation) against the restored model.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from canon.apply.modelimage import Primed, from_image
from canon.errors import CanonError
from canon.events import Emit
from canon.stores.exprefs import ExperimentError, resolve_commit
from canon.stores.records import DatasetRecord, Lock

RESTORED = "restored from the cache, as its commit recorded it"
REBUILT = "rebuilt from the commit (not in the cache)"
_CHOICE = re.compile(r"^(?:([A-Za-z0-9_\-]+)=)?([A-Za-z0-9_\-]+)(?:@(.+))?$")


@dataclass(frozen=True)
class DataChoice:
    """One ``--data``: which content goes where. ``record`` is the chosen pin."""

    text: str
    name: str
    slot: str | None
    rev: str | None  # None: the workspace's canon.lock
    commit: str | None
    record: DatasetRecord

    @property
    def label(self) -> str:
        return self.text


def parse_data(text: str) -> tuple[str | None, str, str | None]:
    """``[SLOT=]NAME[@REV]`` -> (slot, name, rev)."""
    m = _CHOICE.match(text.strip())
    if m is None:
        raise ExperimentError(
            f"--data {text!r} is not NAME[@REV] or SLOT=NAME[@REV]",
            hint="e.g. --data weather@HEAD~1 (the dataset as that commit pinned it)",
        )
    return m.group(1), m.group(2), m.group(3)


def _lock_at(root: Path, rev: str | None) -> tuple[Lock, str | None]:
    from canon.stores.lockfile import parse_lock, read_lock

    if rev is None:
        return read_lock(root), None
    commit = resolve_commit(root, rev)
    from canon.stores.exprefs import ExperimentRefs

    data = ExperimentRefs(root).show_file(commit, "canon.lock")
    if data is None:
        raise ExperimentError(
            f"{rev} has no canon.lock: it pins no data",
            hint="name a commit whose canon.lock was committed after `canon apply`",
        )
    return parse_lock(data, f"{rev}:canon.lock"), commit


def choose_data(root: Path, text: str, profile: str | None) -> DataChoice:
    """Resolve one ``--data`` to the pin it names (read from REV or the workspace)."""
    slot, name, rev = parse_data(text)
    lock, commit = _lock_at(root, rev)
    pins = lock.state(profile).data
    if name not in pins:
        close = difflib.get_close_matches(name, list(pins), n=1)
        where = f"{rev}'s canon.lock" if rev else "canon.lock"
        raise ExperimentError(
            f"--data {text}: {where} pins no dataset {name!r}",
            hint=f'did you mean "{close[0]}"?'
            if close
            else f"pinned there: {', '.join(sorted(pins)) or 'none'}",
        )
    return DataChoice(text, name, slot, rev, commit, pins[name])


def slot_for(choice: DataChoice, pins: Mapping[str, DatasetRecord], model: str) -> str:
    """Where the model's pipeline reads the chosen content (checked: same shape)."""
    slot = choice.slot
    if slot is None:
        if choice.name in pins:
            slot = choice.name
        elif len(pins) == 1:
            slot = next(iter(pins))
        else:
            raise ExperimentError(
                f"--data {choice.text}: {model} pins no dataset {choice.name!r} and "
                f"{len(pins)} others ({', '.join(sorted(pins)) or 'none'})",
                hint=f"say which one it replaces: --data SLOT={choice.text}",
            )
    if slot not in pins:
        raise ExperimentError(
            f"--data {choice.text}: {model} pins no dataset {slot!r}",
            hint=f"pinned there: {', '.join(sorted(pins)) or 'none'}",
        )
    if pins[slot].content.is_dir != choice.record.content.is_dir:
        kinds = ("a file", "a directory")
        raise ExperimentError(
            f"--data {choice.text}: {choice.name} is {kinds[choice.record.content.is_dir]} "
            f"but {model}'s {slot} is {kinds[pins[slot].content.is_dir]}",
            hint="a back-test swaps a dataset for another of the same shape",
        )
    return slot


def swap_in(
    tree: Path,
    *,
    profile: str | None,
    model_stage: str,
    swaps: Mapping[str, DataChoice],
    emit: Emit,
    primed: Primed | None = None,
    stage_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Steps 1-3 of the module docstring in the worktree ``tree``; the provenance.
    ``primed``: what ``prime_from_image`` put into the cache for the model stage;
    ``stage_env``: the stages' environment (the model commit's rebuilt venv), as the
    experiment's own apply gets it (a model stage that must re-run runs there too)."""
    from canon.apply.outcomes import ApplyOptions
    from canon.apply.session import run_apply
    from canon.stores.lockfile import read_lock, write_lock

    result = run_apply(
        tree,
        profile=profile,
        targets=[model_stage],
        options=ApplyOptions(stage_env=dict(stage_env or {})),
        emit=emit,
        argv=["canon", "backtest"],
    )
    outcome = next((o for o in result.outcomes if o.name == model_stage), None)
    if not result.ok or outcome is None:
        failed = [o for o in result.outcomes if o.status == "failed"]
        detail = "; ".join(f"{o.name}: {o.message}" for o in failed) or "it did not run"
        raise CanonError(
            f"cannot obtain the model (stage {model_stage}): {detail}",
            hint="the model's commit must still run (or be in the run cache)",
        )
    rebuilt = outcome.status == "ran"
    primed = primed or Primed()
    from canon.declare.memo import load_project_memoised

    named = load_project_memoised(tree, profile=profile).profile  # the lock's key
    lock = read_lock(tree)
    state = lock.state(named)
    record = state.stages.get(model_stage)
    outs = {} if record is None else {p: str(c.digest) for p, c in record.outs.items()}
    _drop_stage(tree, model_stage)
    state = replace(state, stages={n: r for n, r in state.stages.items() if n != model_stage})
    data: dict[str, Any] = {}
    for slot, choice in swaps.items():
        old = state.data[slot]
        # keep what the declaration is compared with (source, spec): only the content moves
        state = state.with_dataset(slot, replace(old, content=choice.record.content, index=None))
        data[slot] = {
            "from": choice.text,
            "commit": choice.commit,
            "digest": str(choice.record.content.digest),
            "replaced": str(old.content.digest),
        }
    write_lock(tree, lock.with_state(named, state))
    _ensure_objects(tree, profile, swaps)
    return {
        "backtest": {
            "model_stage": model_stage,
            "model_outputs": outs,
            "model_from": model_from(rebuilt, primed.image, primed.note),
            "data": data,
            **primed.info(),
        }
    }


def model_from(rebuilt: bool, image: str | None, note: str = "") -> str:
    """How the model stage's outputs were obtained, as the provenance says it: rebuilt
    (and why a recorded model image could not give them), from its model image (the
    cache lacked them), or from the cache."""
    if rebuilt:
        return f"{REBUILT}; {note}" if note else REBUILT
    return from_image(image) if image else RESTORED


def _drop_stage(tree: Path, stage: str) -> None:
    path = tree / "canon.yaml"
    doc = yaml.safe_load(path.read_bytes())
    stages = doc.get("stages") if isinstance(doc, dict) else None
    if not isinstance(stages, dict) or stage not in stages:
        raise ExperimentError(f"the model's canon.yaml has no stage {stage!r}")
    del stages[stage]
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def _ensure_objects(tree: Path, profile: str | None, swaps: Mapping[str, DataChoice]) -> None:
    """Every swapped-in content in the (shared) cache: fetched from the remote if need be."""
    from canon.observe.workspace import Workspace

    with Workspace(tree) as ws:
        missing = [s for s, c in swaps.items() if not ws.store.has(c.record.content.digest)]
    if not missing:
        return
    from canon.declare.memo import load_project_memoised

    project = load_project_memoised(tree, profile=profile)
    if not project.remotes:
        slot = missing[0]
        raise ExperimentError(
            f"--data {swaps[slot].text}: its content {swaps[slot].record.content.digest} is "
            "not in the cache and the model's commit declares no remote",
            hint="run `canon pull` at the commit that pinned it, or declare a remote",
        )
    from canon.apply.sync import run_fetch
    from canon.events import discard

    run_fetch(tree, profile=profile, targets=[f"data.{s}" for s in missing], emit=discard)


def model_stage_of(stages: Sequence[str], wanted: str | None, model: str) -> str:
    """The model stage: ``wanted``, else ``train`` when declared."""
    name = wanted or "train"
    if name not in stages:
        close = difflib.get_close_matches(name, list(stages), n=1)
        raise ExperimentError(
            f"{model} declares no stage {name!r} to take the model from",
            hint=f'did you mean "{close[0]}"?'
            if close
            else f"name it with --model-stage (stages: {', '.join(stages)})",
        )
    return name
