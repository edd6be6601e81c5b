"""Serve the model: ``predict(records)`` is the handler a model server calls.

Send the last days of observations (at least the model's history, consecutive, any order);
get back, for each day that has enough history before it, the probability that it rains the
next day. The features are built by the same ``make_features`` the training used, with the
feature spec saved in the model, so serving cannot drift from training.

    echo '[{"date": "2015-12-25", "precipitation": 0.0, ...}, ...]' | python -m weather.serve
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from weather import model as model_file
from weather.features import DATE, FeatureSpec, make_features

PROJECT = Path(__file__).resolve().parents[2]
MODEL = Path(os.environ.get("WEATHER_MODEL", PROJECT / "build" / "model.json"))
THRESHOLD = 0.5


@functools.cache
def loaded_model() -> model_file.LogisticModel:
    return model_file.load(MODEL)


def predict(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One prediction per day that has enough history: the day, the day predicted, the
    probability of rain on it and the yes/no answer at a 0.5 threshold."""
    fitted = loaded_model()
    spec = FeatureSpec.from_dict(fitted.feature_spec)
    if len(records) < spec.history:
        raise ValueError(f"need at least {spec.history} consecutive days, got {len(records)}")
    features = make_features(records, spec)
    proba = fitted.predict_proba(features)
    return [
        {
            "date": f"{day:%Y-%m-%d}",
            "for_date": f"{day + pd.Timedelta(days=1):%Y-%m-%d}",
            "rain_probability": round(float(p), 6),
            "rain": bool(p >= THRESHOLD),
        }
        for day, p in zip(features[DATE], proba, strict=True)
    ]


if __name__ == "__main__":
    json.dump(predict(json.load(sys.stdin)), sys.stdout, indent=2)
    sys.stdout.write("\n")
