"""Selecting, sorting and comparing recorded experiments (pure: records in, records out).

``--where`` is a small, safe language — never ``eval``: conditions
``KEY OP VALUE`` joined by ``and`` or ``,``, where KEY is a params key
(``train.C``) or a metric (``auc``), OP one of ``< <= > >= == !=``, and VALUE
a number or a string. An experiment lacking KEY does not match.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from canon.stores.exprefs import Experiment, ExperimentError

_COND = re.compile(r"^\s*([A-Za-z0-9_.:\-/]+)\s*(<=|>=|==|!=|<|>|=)\s*(.+?)\s*$")


@dataclass(frozen=True)
class Condition:
    key: str
    op: str
    value: Any

    def matches(self, exp: Experiment) -> bool:
        have = value_of(exp, self.key)
        if have is None:
            return False
        want = self.value
        try:
            if self.op in ("==", "="):
                return bool(have == want or str(have) == str(want))
            if self.op == "!=":
                return bool(have != want and str(have) != str(want))
            ops = {"<": have < want, "<=": have <= want, ">": have > want, ">=": have >= want}
            return bool(ops[self.op])
        except TypeError:
            return False


def parse_where(text: str) -> list[Condition]:
    parts = [p for p in re.split(r"\s+and\s+|,", text) if p.strip()]
    conditions = []
    for part in parts:
        m = _COND.match(part)
        if m is None:
            raise ExperimentError(
                f"--where: {part.strip()!r} is not KEY OP VALUE",
                hint="e.g. --where 'train.C<0.5 and auc>=0.7' (ops: < <= > >= == !=)",
            )
        try:
            value = yaml.safe_load(m.group(3))
        except yaml.YAMLError:
            value = m.group(3)
        conditions.append(Condition(m.group(1), m.group(2), value))
    return conditions


def value_of(exp: Experiment, key: str) -> Any:
    if key in exp.params:
        return exp.params[key]
    if key in exp.metrics:
        return exp.metrics[key]
    if key in ("name", "commit", "base"):
        return getattr(exp, key)
    return exp.info.get(key)


def check_key(experiments: Sequence[Experiment], key: str, option: str) -> None:
    """Refuse a key no experiment has (a typo would otherwise select or sort nothing)."""
    if not experiments or key in ("name", "commit", "base"):
        return
    keys: dict[str, None] = {}
    for e in experiments:
        keys.update(dict.fromkeys(e.params))
        keys.update(dict.fromkeys(e.metrics))
        keys.update(dict.fromkeys(k for k, v in e.info.items() if isinstance(v, (int, float, str))))
    if key in keys:
        return
    close = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.5)
    shown = ", ".join(sorted(k for k in keys if k not in ("created", "duration"))[:12])
    raise ExperimentError(
        f"{option} {key}: no experiment has a param or metric {key!r}",
        hint=f'did you mean "{close[0]}"?' if close else f"known keys: {shown}",
    )


def select(
    experiments: Sequence[Experiment],
    *,
    where: str | None = None,
    sort: str | None = None,
    desc: bool = False,
) -> list[Experiment]:
    chosen = list(experiments)
    if where:
        conditions = parse_where(where)
        for condition in conditions:
            check_key(experiments, condition.key, "--where")
        chosen = [e for e in chosen if all(c.matches(e) for c in conditions)]
    if sort:
        check_key(experiments, sort, "--sort")
        known = [e for e in chosen if isinstance(value_of(e, sort), (int, float, str))]
        unknown = [e for e in chosen if e not in known]
        try:
            known.sort(key=lambda e: value_of(e, sort), reverse=desc)
        except TypeError:
            known.sort(key=lambda e: str(value_of(e, sort)), reverse=desc)
        chosen = known + unknown  # experiments without the key go last
    else:
        chosen.sort(key=lambda e: (float(e.info.get("created", 0) or 0), e.name))
    return chosen


def columns(
    experiments: Sequence[Experiment], *, all_params: bool = False
) -> tuple[list[str], list[str]]:
    """Params columns (only those that vary, unless ``all_params``) and metrics columns."""
    params: dict[str, set[str]] = {}
    metrics: dict[str, None] = {}
    for e in experiments:
        for k, v in e.params.items():
            params.setdefault(k, set()).add(repr(v))
        for k in e.metrics:
            metrics.setdefault(k, None)
    shown = [
        k
        for k, vs in params.items()
        if all_params or len(vs) > 1 or any(k in e.overrides for e in experiments)
    ]
    return shown, list(metrics)


@dataclass(frozen=True)
class ExperimentDiff:
    a: str
    b: str
    params: Mapping[str, tuple[Any, Any]]
    metrics: Mapping[str, tuple[Any, Any]]
    stages: Mapping[str, tuple[Any, Any]]  # stage -> (key in a, key in b)
    outputs: Mapping[str, tuple[Any, Any]]  # path -> (digest in a, digest in b)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "params": {k: list(v) for k, v in self.params.items()},
            "metrics": {k: list(v) for k, v in self.metrics.items()},
            "stages": {k: list(v) for k, v in self.stages.items()},
            "outputs": {k: list(v) for k, v in self.outputs.items()},
        }


def _differ(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (a.get(k), b.get(k)) for k in sorted({*a, *b}) if a.get(k) != b.get(k)}


def diff(
    a: Experiment,
    b: Experiment,
    outs_a: Mapping[str, str],
    outs_b: Mapping[str, str],
) -> ExperimentDiff:
    keys_a = a.info.get("stage_keys") or {}
    keys_b = b.info.get("stage_keys") or {}
    return ExperimentDiff(
        a.name,
        b.name,
        _differ(a.params, b.params),
        _differ(a.metrics, b.metrics),
        _differ(_short(keys_a), _short(keys_b)),
        _differ(outs_a, outs_b),
    )


def _short(keys: Any) -> dict[str, str]:
    if not isinstance(keys, dict):
        return {}
    return {k: str(v).removeprefix("sha256:")[:12] for k, v in keys.items()}
