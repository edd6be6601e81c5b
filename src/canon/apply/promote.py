"""``canon exp promote``: an experiment becomes a normal commit on the current branch.

The experiment's params file and ``canon.lock`` are written into the working
tree and committed (``git commit --only`` those two paths, so anything else
the user staged stays staged and out of the commit). The outputs need no
re-run: the lock's stage keys are in the shared run cache, so ``canon apply``
restores them. Uncommitted edits to either file are never overwritten: the
promotion is refused and says so.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from canon.stores.atomic import atomic_write
from canon.stores.exprefs import ExperimentError, ExperimentRefs, git


def promote(root: Path, name: str, message: str | None = None) -> str:
    from canon.apply.session import load

    refs = ExperimentRefs(root)
    exp = refs.get(name)
    project, _ = load(root, None)
    paths = [project.params_file, "canon.lock"]
    dirty = subprocess.run(
        ["git", "diff", "--quiet", "HEAD", "--", *paths], cwd=root, check=False
    ).returncode
    if dirty != 0:
        raise ExperimentError(
            f"{' or '.join(paths)} has uncommitted changes",
            hint="commit or discard them first; promote never overwrites your edits",
        )
    contents = {p: refs.show_file(exp.commit, p) for p in paths}
    for path, data in contents.items():
        if data is not None:
            atomic_write(root / path, data)
    present = [p for p, d in contents.items() if d is not None]
    git(root, "add", "--", *present)
    overrides = " ".join(f"{k}={v}" for k, v in exp.overrides.items())
    text = message or f"Promote experiment {name}" + (f" ({overrides})" if overrides else "")
    text += f"\n\nFrom refs/canon/exps/{name} ({exp.commit})\n"
    git(root, "commit", "--quiet", "--only", "-m", text, "--", *present)
    return git(root, "rev-parse", "HEAD").decode().strip()
