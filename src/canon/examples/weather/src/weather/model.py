"""The model as plain data: a standardised logistic regression, saved as JSON.

JSON instead of pickle: the file is readable, diffable, safe to load from anywhere, and
byte-identical for identical training. Prediction needs numpy only, not scikit-learn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from weather.files import read_json, rounded, write_json

FORMAT = "weather-logistic/1"


@dataclass(frozen=True)
class LogisticModel:
    """P(rain tomorrow) = sigmoid(((x - mean) / scale) · coef + intercept)."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    feature_spec: Mapping[str, Any] = field(default_factory=dict)  # how to build the features
    training: Mapping[str, Any] = field(default_factory=dict)  # what the model was trained on

    def predict_proba(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Probability of rain tomorrow for each row. A DataFrame is matched by column name."""
        if isinstance(features, pd.DataFrame):
            missing = [name for name in self.features if name not in features.columns]
            if missing:
                raise ValueError(f"features lack column(s): {', '.join(missing)}")
            features = features[list(self.features)].to_numpy(dtype="float64")
        x = np.asarray(features, dtype="float64")
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(f"expected rows of {len(self.features)} features, got shape {x.shape}")
        z = ((x - self.mean) / self.scale) @ self.coef + self.intercept
        return np.exp(-np.logaddexp(0.0, -z))  # a sigmoid that never overflows

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "features": list(self.features),
            "scaler": {
                "mean": [rounded(v) for v in self.mean],
                "scale": [rounded(v) for v in self.scale],
            },
            "coef": [rounded(v) for v in self.coef],
            "intercept": rounded(self.intercept),
            "feature_spec": dict(self.feature_spec),
            "training": dict(self.training),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogisticModel:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} model: format is {data.get('format')!r}")
        model = cls(
            features=tuple(data["features"]),
            mean=np.asarray(data["scaler"]["mean"], dtype="float64"),
            scale=np.asarray(data["scaler"]["scale"], dtype="float64"),
            coef=np.asarray(data["coef"], dtype="float64"),
            intercept=float(data["intercept"]),
            feature_spec=dict(data.get("feature_spec", {})),
            training=dict(data.get("training", {})),
        )
        n = len(model.features)
        if not (model.mean.shape == model.scale.shape == model.coef.shape == (n,)):
            raise ValueError(f"model arrays do not match its {n} features")
        return model


def save(model: LogisticModel, path: str | Path) -> None:
    write_json(path, model.to_dict())


def load(path: str | Path) -> LogisticModel:
    return LogisticModel.from_dict(read_json(path))
