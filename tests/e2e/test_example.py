"""The bundled example, end to end, as the README's first command runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import CANON


def canon(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "NO_COLOR": "1"}
    return subprocess.run([CANON, *args], cwd=root, capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.slow
def test_weather_example_runs_end_to_end_and_is_clean(tmp_path: Path) -> None:
    root = tmp_path / "weather"
    init = canon(tmp_path, "init", "weather", "--example", "weather")
    assert init.returncode == 0, init.stderr
    status = canon(root, "status")
    assert status.returncode == 1 and "DATA_NEW" in status.stdout
    applied = canon(root, "apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    metrics = json.loads((root / "build/metrics.json").read_text())
    assert metrics["auc"] > 0.7
    assert canon(root, "status").returncode == 0
    # a hyperparameter change re-runs train and evaluate only, and says why
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("C: 1.0", "C: 0.25"))
    status = canon(root, "status")
    assert "PARAM_CHANGED train.C 1.0 -> 0.25" in status.stdout
    assert "stage.features" not in status.stdout
    assert canon(root, "apply").returncode == 0
    assert canon(root, "status").returncode == 0
