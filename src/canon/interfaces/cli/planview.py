"""Plain-text rendering of a plan (no rich import: ``canon status`` stays fast)."""

from __future__ import annotations

import click

from canon.plan.change import Action, Plan

_COLOURS = {Action.RUN: "yellow", Action.RESTORE: "cyan", Action.PIN: "magenta"}


def render_plan(plan: Plan, *, verb: str) -> str:
    pending = plan.pending
    profile = f" (profile {plan.profile})" if plan.profile else ""
    if not pending:
        return f"Everything is up to date{profile}."
    lines = []
    for change in pending:
        action = click.style(f"{change.action.value:<8}", fg=_COLOURS.get(change.action))
        lines.append(f"{action}{change.address}")
        for why in change.reasons:
            lines.append(f"          {why.describe()}")
    counts: dict[str, int] = {}
    for change in pending:
        counts[change.action.value] = counts.get(change.action.value, 0) + 1
    summary = ", ".join(f"{n} to {a}" for a, n in counts.items())
    head = "Out of date" if verb == "status" else "Plan"
    return f"{head}{profile}: {summary}\n\n" + "\n".join(lines)
