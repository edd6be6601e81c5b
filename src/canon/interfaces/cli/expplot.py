"""``canon exp plot``: one metric across experiments, as a PNG or SVG (matplotlib, Agg)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from canon.errors import CanonError
from canon.stores.expquery import value_of
from canon.stores.exprefs import Experiment


def plot_metric(exps: Sequence[Experiment], metric: str, x_key: str | None, out: Path) -> Path:
    points = [(e, value_of(e, metric)) for e in exps]
    points = [(e, v) for e, v in points if isinstance(v, (int, float))]
    if not points:
        raise CanonError(
            f"no experiment has a numeric {metric!r}",
            hint="see the metric names with `canon exp show`",
        )
    if out.suffix.lower() not in (".png", ".svg"):
        raise CanonError(f"cannot write {out.name}", hint="name a .png or .svg file")
    try:
        import matplotlib
    except ImportError as exc:
        raise CanonError("plots need matplotlib", hint="pip install 'canon[plot]'") from exc
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if x_key:
        xy = [(value_of(e, x_key), v) for e, v in points]
        xy = sorted((x, y) for x, y in xy if isinstance(x, (int, float)))
        ax.plot([x for x, _ in xy], [y for _, y in xy], marker="o")
        ax.set_xlabel(x_key)
    else:
        ax.bar(range(len(points)), [v for _, v in points])
        ax.set_xticks(range(len(points)), [e.name for e, _ in points], rotation=45, ha="right")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} over {len(points)} experiment(s)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".plot.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        fig.savefig(tmp)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
