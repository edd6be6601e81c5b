"""Back-test the model on the days from ``--test-from`` to ``--test-until``.

The test period must start after the last day the model learned from, so the score is what
the model would have achieved had it been deployed then. The metrics are compared with a
persistence baseline: "tomorrow will be like today".

    python -m weather.evaluate --model build/model.json --features build/features.csv \\
        --test-from 2015-01-01 --test-until 2015-12-31 --out build/metrics.json
"""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score

from weather import model as model_file
from weather.features import DATE, LABEL
from weather.files import rounded, write_json

THRESHOLD = 0.5


def period_rows(
    table: pd.DataFrame, test_from: pd.Timestamp, test_until: pd.Timestamp
) -> pd.DataFrame:
    return table[(table[DATE] >= test_from) & (table[DATE] <= test_until)]


def score(fitted: model_file.LogisticModel, rows: pd.DataFrame) -> dict[str, Any]:
    y = rows[LABEL].to_numpy(dtype="int64")
    proba = fitted.predict_proba(rows)
    persistence = rows["rain_lag0"].to_numpy() > 0  # it rains tomorrow iff it rained today
    metrics = {
        "auc": roc_auc_score(y, proba),
        "accuracy": accuracy_score(y, proba >= THRESHOLD),
        "log_loss": log_loss(y, proba, labels=[0, 1]),
        "brier": brier_score_loss(y, proba),
        "baseline_accuracy": accuracy_score(y, persistence),
        "positive_rate": y.mean(),
    }
    return {name: rounded(float(value), 6) for name, value in metrics.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model file from weather.train")
    parser.add_argument("--features", required=True, help="feature table from weather.features")
    parser.add_argument("--test-from", type=pd.Timestamp, required=True, help="YYYY-MM-DD")
    parser.add_argument(
        "--test-until",
        type=pd.Timestamp,
        default=pd.Timestamp.max,
        help="YYYY-MM-DD (default: the last day there is)",
    )
    parser.add_argument("--out", required=True, help="metrics file (JSON)")
    args = parser.parse_args(argv)

    fitted = model_file.load(args.model)
    trained = fitted.training
    if args.test_from < pd.Timestamp(trained["last_label_date"]):
        raise SystemExit(
            f"evaluate: --test-from {args.test_from:%Y-%m-%d} overlaps the training "
            f"data (labels up to {trained['last_label_date']})"
        )
    table = pd.read_csv(args.features, parse_dates=[DATE])
    rows = period_rows(table, args.test_from, args.test_until)
    if rows[LABEL].nunique() < 2:
        raise SystemExit("evaluate: the test period needs days with and without rain")

    metrics = {
        **score(fitted, rows),
        "n_train": trained["n_train"],
        "n_test": len(rows),
        "train_from": trained["first_date"],
        "train_until": trained["last_label_date"],
        "test_from": f"{rows[DATE].min():%Y-%m-%d}",
        "test_until": f"{rows[DATE].max():%Y-%m-%d}",
    }
    write_json(args.out, metrics)
    print(
        f"evaluate: auc={metrics['auc']:.3f} accuracy={metrics['accuracy']:.3f} "
        f"(persistence {metrics['baseline_accuracy']:.3f}) on {len(rows)} days "
        f"({metrics['test_from']} .. {metrics['test_until']}) -> {args.out}"
    )


if __name__ == "__main__":
    main()
