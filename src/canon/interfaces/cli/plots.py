"""Plots for a person: ``canon exp plot`` (one metric across experiments) and the
``canon backtest`` matrix (each model's metric across the columns), written as PNG,
SVG or HTML (matplotlib, Agg; the HTML page holds the SVG and the numbers as a
table, no script). Written atomically: a temp file in the same folder, renamed."""

from __future__ import annotations

import html
import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from canon.errors import CanonError
from canon.stores.expquery import value_of
from canon.stores.exprefs import Experiment

FORMATS = (".png", ".svg", ".html")


def plot_metric(exps: Sequence[Experiment], metric: str, x_key: str | None, out: Path) -> Path:
    points = [(e, value_of(e, metric)) for e in exps]
    points = [(e, v) for e, v in points if isinstance(v, (int, float))]
    if not points:
        raise CanonError(
            f"no experiment has a numeric {metric!r}",
            hint="see the metric names with `canon exp show`",
        )
    _check(out)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    rows: list[list[Any]] = []
    if x_key:
        xy = [(value_of(e, x_key), v, e.name) for e, v in points]
        xy = sorted((x, y, n) for x, y, n in xy if isinstance(x, (int, float)))
        ax.plot([x for x, _, _ in xy], [y for _, y, _ in xy], marker="o")
        ax.set_xlabel(x_key)
        rows = [[n, x, y] for x, y, n in xy]
        header = ["experiment", x_key, metric]
    else:
        ax.bar(range(len(points)), [v for _, v in points])
        ax.set_xticks(range(len(points)), [e.name for e, _ in points], rotation=45, ha="right")
        rows = [[e.name, v] for e, v in points]
        header = ["experiment", metric]
    ax.set_ylabel(metric)
    title = f"{metric} over {len(points)} experiment(s)"
    ax.set_title(title)
    return _write(plt, fig, out, title, header, rows)


def plot_backtest(
    models: Sequence[str],
    columns: Sequence[str],
    values: dict[tuple[str, str], Any],
    metric: str,
    out: Path,
) -> Path | None:
    """One line per model across the columns (windows / data, in the order asked);
    a failed or missing cell is a gap. None when no cell has a numeric value."""
    if not any(isinstance(v, (int, float)) for v in values.values()):
        return None
    _check(out)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(columns) + 2), 4))
    for model in models:
        ys = [values.get((model, c)) for c in columns]
        ax.plot(
            range(len(columns)),
            [y if isinstance(y, (int, float)) else float("nan") for y in ys],
            marker="o",
            label=model,
        )
    ax.set_xticks(range(len(columns)), list(columns), rotation=20, ha="right")
    ax.margins(x=0.15)
    ax.set_ylabel(metric)
    ax.legend(title="model")
    title = f"back-test: {metric}, {len(models)} model(s) x {len(columns)} column(s)"
    ax.set_title(title)
    rows = [[m, *(values.get((m, c), "") for c in columns)] for m in models]
    return _write(plt, fig, out, title, ["model", *columns], rows)


def _check(out: Path) -> None:
    if out.suffix.lower() not in FORMATS:
        raise CanonError(f"cannot write {out.name}", hint="name a .png, .svg or .html file")


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise CanonError("plots need matplotlib", hint="pip install 'canon[plot]'") from exc
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _write(
    plt: Any, fig: Any, out: Path, title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]
) -> Path:
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".plot.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        if out.suffix.lower() == ".html":
            svg = io.StringIO()
            fig.savefig(svg, format="svg")
            Path(tmp).write_text(_page(title, svg.getvalue(), header, rows), encoding="utf-8")
        else:
            fig.savefig(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 is for secrets; a plot is for sharing
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _page(title: str, svg: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    svg = svg[svg.index("<svg") :]  # the figure, without its XML prolog
    cells = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_text(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
        "td:first-child,th:first-child{text-align:left}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{svg}<table><thead><tr>{head}</tr></thead>"
        f"<tbody>{cells}</tbody></table></body></html>\n"
    )


def _text(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
