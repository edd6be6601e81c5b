"""Train the rain-tomorrow model on every day up to ``--train-until``.

Time order is kept: a day is used for training only if the day it predicts (tomorrow) is
on or before ``--train-until``, so nothing later leaks into the model. Later days are left
for ``weather.evaluate`` to back-test on.

    python -m weather.train --features build/features.csv --spec build/features.json \\
        --C 1.0 --max-iter 1000 --train-until 2014-12-31 --out build/model.json
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from weather import model as model_file
from weather.features import DATE, LABEL, FeatureSpec
from weather.files import read_json

SEED = 0


def training_rows(table: pd.DataFrame, train_until: pd.Timestamp) -> pd.DataFrame:
    """The rows whose label (tomorrow's weather) is known on ``train_until``."""
    return table[table[DATE] + pd.Timedelta(days=1) <= train_until]


def fit(
    table: pd.DataFrame, spec: FeatureSpec, *, C: float, max_iter: int
) -> model_file.LogisticModel:
    names = spec.names()
    x = table[names].to_numpy(dtype="float64")
    y = table[LABEL].to_numpy(dtype="int64")
    scaler = StandardScaler().fit(x)
    classifier = LogisticRegression(C=C, max_iter=max_iter, random_state=SEED)
    classifier.fit(scaler.transform(x), y)

    fitted = model_file.LogisticModel(
        features=tuple(names),
        mean=scaler.mean_,
        scale=scaler.scale_,
        coef=classifier.coef_[0],
        intercept=float(classifier.intercept_[0]),
        feature_spec=spec.to_dict(),
        training={
            "C": C,
            "max_iter": max_iter,
            "n_train": len(table),
            "positive_rate": round(float(y.mean()), 6),
            "first_date": f"{table[DATE].min():%Y-%m-%d}",
            "last_date": f"{table[DATE].max():%Y-%m-%d}",
            "last_label_date": f"{table[DATE].max() + pd.Timedelta(days=1):%Y-%m-%d}",
        },
    )
    # The saved model must predict what scikit-learn predicts (up to the rounding on save).
    exported = model_file.LogisticModel.from_dict(fitted.to_dict())
    expected = classifier.predict_proba(scaler.transform(x))[:, 1]
    if not np.allclose(exported.predict_proba(x), expected, rtol=0, atol=1e-6):
        raise RuntimeError("the exported model disagrees with scikit-learn")
    return exported


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", required=True, help="feature table from weather.features")
    parser.add_argument("--spec", required=True, help="feature spec from weather.features")
    parser.add_argument("--C", type=float, required=True, help="inverse regularisation strength")
    parser.add_argument("--max-iter", type=int, required=True)
    parser.add_argument("--train-until", type=pd.Timestamp, required=True, help="YYYY-MM-DD")
    parser.add_argument("--out", required=True, help="model file (JSON)")
    args = parser.parse_args(argv)

    spec = FeatureSpec.from_dict(read_json(args.spec))
    table = pd.read_csv(args.features, parse_dates=[DATE])
    rows = training_rows(table, args.train_until)
    if rows.empty or rows[LABEL].nunique() < 2:
        raise SystemExit(f"train: no usable training days up to {args.train_until:%Y-%m-%d}")
    fitted = fit(rows, spec, C=args.C, max_iter=args.max_iter)
    model_file.save(fitted, args.out)
    t = fitted.training
    print(
        f"train: {t['n_train']} days ({t['first_date']} .. {t['last_date']}), "
        f"{len(fitted.features)} features, C={args.C} -> {args.out}"
    )


if __name__ == "__main__":
    main()
