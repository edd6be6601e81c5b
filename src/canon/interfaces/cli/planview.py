"""Plain-text rendering of a plan (no rich import: ``canon status`` stays fast)."""

from __future__ import annotations

import click

from canon.plan.change import Action, Plan

_COLOURS = {
    Action.RUN: "yellow",
    Action.RESTORE: "cyan",
    Action.PIN: "magenta",
    Action.UPDATE: "red",
    Action.DEPLOY: "green",
}


def render_plan(plan: Plan, *, verb: str) -> str:
    text = _render_pending(plan, verb=verb)
    reports = plan.reports
    if reports:
        lines = ["", "Data sources differ from their pins (stages use the pins; "
                 "`canon data update NAME` re-pins on purpose):"]
        for change in reports:
            lines.append(click.style(f"{'drift':<8}", fg="red") + change.address)
            lines += [f"          {why.describe()}" for why in change.reasons]
        text += "\n" + "\n".join(lines)
    return text


def _render_pending(plan: Plan, *, verb: str) -> str:
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
