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


# The last days of 2015: the model server's self-check (``canon serve`` calls ``example()``
# and predicts on it before it says it is ready).
_LAST_DAYS = [
    ("2015-12-23", 6.1, 5.0, 2.8, 7.6, "fog"),
    ("2015-12-24", 2.5, 5.6, 2.2, 4.3, "fog"),
    ("2015-12-25", 5.8, 5.0, 2.2, 1.5, "fog"),
    ("2015-12-26", 0.0, 4.4, 0.0, 2.5, "sun"),
    ("2015-12-27", 8.6, 4.4, 1.7, 2.9, "fog"),
    ("2015-12-28", 1.5, 5.0, 1.7, 1.3, "fog"),
    ("2015-12-29", 0.0, 7.2, 0.6, 2.6, "fog"),
    ("2015-12-30", 0.0, 5.6, -1.0, 3.4, "sun"),
    ("2015-12-31", 0.0, 5.6, -2.1, 3.5, "sun"),
]


def example() -> list[dict[str, Any]]:
    """A valid request: nine consecutive days of observations."""
    keys = ("date", "precipitation", "temp_max", "temp_min", "wind", "weather")
    return [dict(zip(keys, day, strict=True)) for day in _LAST_DAYS]


if __name__ == "__main__":
    json.dump(predict(json.load(sys.stdin)), sys.stdout, indent=2)
    sys.stdout.write("\n")
