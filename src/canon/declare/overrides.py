"""Params overrides (``-S key=value``) and sweeps over them.

``-S train.C=0.5`` sets one value (parsed as YAML, so ``0.5`` is a float,
``"0.5"`` a string); ``-S 'train.C=range(0.1,1.0,0.3)'`` and
``-S 'train.kind=choice(a,b)'`` give several, and several ``-S`` make a grid
(their product, in the order given). ``--max N`` refuses a grid larger than N
(or, with ``random=True``, samples N points of it with a seeded RNG, as a
random search does). Everything here is pure: text in, values out, and every
mistake is a ``DeclarationError`` naming the override at fault.

``apply_overrides`` sets values in a params mapping: only keys that exist
(``train.lr`` where ``train`` has no ``lr`` is a typo until proven otherwise,
reported with a did-you-mean), never through a non-mapping.
"""

from __future__ import annotations

import copy
import datetime
import difflib
import itertools
import json
import math
import random as _random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml

from canon.declare.project import Project
from canon.errors import DeclarationError

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*$")
_FUNC = re.compile(r"^(range|choice)\((.*)\)$", re.DOTALL)
MAX_POINTS = 100_000


@dataclass(frozen=True)
class Override:
    key: str
    values: tuple[Any, ...]
    text: str


def _scalar(text: str, where: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DeclarationError(
            f"-S {where}: {text!r} is not a value: {str(exc).splitlines()[0]}",
            hint="quote strings, e.g. -S 'train.kind=\"rbf\"'",
        ) from None
    if isinstance(value, (datetime.date, datetime.datetime)):
        return text.strip()  # 2014-01-01 stays the text written (params hold dates as strings)
    return value


def _range(args: list[str], where: str) -> tuple[Any, ...]:
    if len(args) not in (2, 3):
        raise DeclarationError(
            f"-S {where}: range() takes START, STOP[, STEP]", hint="e.g. range(0.1,1.0,0.3)"
        )
    try:
        nums = [Decimal(a.strip()) for a in args]
    except InvalidOperation:
        raise DeclarationError(
            f"-S {where}: range() takes numbers", hint="e.g. range(1,10,2)"
        ) from None
    start, stop = nums[0], nums[1]
    step = nums[2] if len(nums) == 3 else Decimal(1)
    if step <= 0:
        raise DeclarationError(f"-S {where}: range() needs a positive step")
    count = math.ceil((stop - start) / step)  # STOP excluded, as Python's and Hydra's range
    if count > MAX_POINTS:
        raise DeclarationError(f"-S {where}: range() gives {count} values, more than {MAX_POINTS}")
    integral = all(
        n == n.to_integral_value() and "." not in a for n, a in zip(nums, args, strict=True)
    )
    out: list[Any] = []
    # Decimal arithmetic: range(0.1,1.0,0.3) is 0.1, 0.4, 0.7, never 0.7000000000000001.
    for i in range(max(count, 0)):
        value = start + step * i
        out.append(int(value) if integral else float(value))
    return tuple(out)


def parse_set(text: str) -> Override:
    """One ``-S`` argument."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not _KEY.match(key):
        raise DeclarationError(
            f"-S {text!r} is not KEY=VALUE", hint="e.g. -S train.C=0.5 (KEY is a dotted params key)"
        )
    match = _FUNC.match(raw.strip())
    if match is None:
        return Override(key, (_scalar(raw, text),), text)
    args = [a for a in match.group(2).split(",")]
    if match.group(1) == "range":
        values = _range(args, text)
    else:
        values = tuple(_scalar(a.strip(), text) for a in args if a.strip())
    if not values:
        raise DeclarationError(f"-S {text}: gives no values", hint="check the range bounds")
    return Override(key, values, text)


def expand(
    overrides: Sequence[Override],
    *,
    max_runs: int | None = None,
    random: bool = False,
    seed: int | None = None,
) -> list[dict[str, Any]]:
    """The grid of overrides: one ``{key: value}`` per run, in a stable order."""
    total = math.prod(len(o.values) for o in overrides) if overrides else 1
    keys = [o.key for o in overrides]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise DeclarationError(f"-S {dup} is given more than once", hint="give each key once")
    if random:
        if max_runs is None:
            raise DeclarationError("a random sweep needs --max N", hint="e.g. --random --max 8")
        rng = _random.Random(seed)
        picked = sorted(rng.sample(range(total), min(max_runs, total)))
        return [_point(overrides, i) for i in picked]
    if max_runs is not None and total > max_runs:
        raise DeclarationError(
            f"the sweep would create {total} experiments, more than --max {max_runs}",
            hint="raise --max, narrow the ranges, or sample with --random --max N",
        )
    return [
        dict(zip(keys, combo, strict=True))
        for combo in itertools.product(*(o.values for o in overrides))
    ]


def _point(overrides: Sequence[Override], index: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for o in reversed(overrides):
        index, pos = divmod(index, len(o.values))
        out[o.key] = o.values[pos]
    return {o.key: out[o.key] for o in overrides}


def apply_overrides(
    params: Mapping[str, Any] | None, overrides: Mapping[str, Any], params_file: str
) -> dict[str, Any]:
    """A deep copy of ``params`` with ``overrides`` set; unknown keys are refused."""
    result: dict[str, Any] = copy.deepcopy(dict(params or {}))
    for key, value in overrides.items():
        node: Any = result
        parts = key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, dict):
                at = ".".join(parts[:depth])
                raise DeclarationError(
                    f"-S {key}: {at} in {params_file} is a value, not a section",
                    hint=f"set {at} itself",
                )
            if part not in node:
                close = difflib.get_close_matches(part, [str(k) for k in node], n=1)
                where = ".".join(parts[:depth]) or "the top level"
                hint = (
                    f'did you mean "{".".join([*parts[:depth], close[0]])}"?'
                    if close
                    else (
                        f"add {key} to {params_file} first (an experiment changes values, "
                        "it does not invent keys)"
                    )
                )
                raise DeclarationError(
                    f"-S {key}: {params_file} has no {part!r} under {where}", hint=hint
                )
            if depth == len(parts) - 1:
                node[part] = value
            else:
                node = node[part]
    return result


def overrides_key(overrides: Mapping[str, Any] | None) -> str:
    """A stable text of the overrides (for memo keys and names)."""
    return json.dumps(dict(overrides or {}), sort_keys=True, default=str)


# --- overrides on an already resolved project (the memo's fast path) -------------------------

_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_ESCAPED_DOLLAR = re.compile(r"\\(x24|u0024|U00000024|\$)")


def _kind(value: Any) -> str | None:
    """The type class a value must keep for the fast path: text, number, flag."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "str"
    return None


def _referenced(config: str) -> list[tuple[str, ...]] | None:
    """The params keys ``${params...}`` references in canon.yaml name (read from the
    text, so a reference anywhere counts); None when the text could hide one (a YAML
    escape of ``$``), so the caller takes the full path."""
    if _ESCAPED_DOLLAR.search(config):
        return None
    keys: list[tuple[str, ...]] = []
    for match in _REFERENCE.finditer(config):
        parts = tuple("".join(match.group(1).split()).split("."))
        if parts[0] == "params":
            keys.append(parts[1:])
    return keys


def _overlaps(a: Sequence[str], b: Sequence[str]) -> bool:
    n = min(len(a), len(b))
    return tuple(a[:n]) == tuple(b[:n])


_MISSING = object()


def _lookup(params: Any, keys: Sequence[str]) -> Any:
    """The value a stage's declared params entry names (as ``lookup_param`` finds it,
    without importing the interpolation machinery); ``_MISSING`` if it is not there."""
    node = params
    for key in keys:
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return _MISSING
    return node


def override_resolved(
    project: Project, overrides: Mapping[str, Any], config: bytes
) -> Project | None:
    """``project`` (resolved from the same canon.yaml bytes ``config``, without
    overrides) with ``overrides`` set, or None when only a full load can tell.

    Params are plain data: a value that no ``${params...}`` reference reaches
    changes only ``Project.params`` and, for stages that declare it, their
    ``param_values`` and ``CANON_PARAMS``. So this re-resolves exactly those, when
    every overridden value keeps the type class (text / number / boolean) of the
    value it replaces; anything else (a referenced key, a section replaced, a
    type changed) returns None and the caller loads in full. Unknown keys raise
    the same ``DeclarationError`` as the full load.
    """
    from dataclasses import replace

    params = apply_overrides(project.params, overrides, project.params_file)
    for key in overrides:
        old: Any = project.params
        for part in key.split("."):
            old = old[part]
        if _kind(old) is None or _kind(old) != _kind(overrides[key]):
            return None
    try:
        text = config.decode("utf-8")
    except UnicodeDecodeError:
        return None
    referenced = _referenced(text)
    if referenced is None:
        return None
    changed = [key.split(".") for key in overrides]
    if any(_overlaps(ref, key) for ref in referenced for key in changed):
        return None
    stages = {}
    for name, stage in project.stages.items():
        if not any(_overlaps(p.split("."), key) for p in stage.params for key in changed):
            stages[name] = stage
            continue
        found = [(p, _lookup(params, p.split("."))) for p in stage.params]
        if any(v is _MISSING for _, v in found):
            return None  # the full load reports it
        values = tuple(sorted(found))
        canon_params = json.dumps(
            dict(values), sort_keys=True, separators=(",", ":"), ensure_ascii=True
        )
        env = tuple((k, canon_params if k == "CANON_PARAMS" else v) for k, v in stage.env)
        stages[name] = replace(stage, param_values=values, env=env)
    return replace(project, params=params, stages=stages)
