"""Features shared by training (the ``features`` stage) and serving (``weather.serve``).

One row is one day of observations: date, precipitation (mm), temp_max and temp_min (°C)
and wind (m/s). The features of day *t* use only days up to and including *t*; the label
of day *t* is whether it rains (any precipitation) on day *t + 1*.

    python -m weather.features --data data/seattle-weather.csv --lags 3 --window 7 \\
        --out build/features.csv --spec build/features.json
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from weather.files import write_json, write_text

DATE = "date"
LABEL = "rain_tomorrow"
OBSERVED = ("precipitation", "temp_max", "temp_min", "wind")
# Daily series derived from the observations, lagged and averaged into features.
DAILY = ("rain", "log_precip", "temp_max", "temp_min", "wind")


@dataclass(frozen=True)
class FeatureSpec:
    """How features are built. Saved with the model so serving builds exactly the same ones."""

    lags: int = 3  # today and the lags-1 days before it, day by day
    window: int = 7  # days in the rolling means

    def __post_init__(self) -> None:
        if self.lags < 1 or self.window < 1:
            raise ValueError(f"lags and window must be at least 1, got {self.lags}, {self.window}")

    @property
    def history(self) -> int:
        """Consecutive days needed, today included, before a day has all its features."""
        return max(self.lags, self.window)

    def names(self) -> list[str]:
        lagged = [f"{name}_lag{lag}" for lag in range(self.lags) for name in DAILY]
        means = [f"{name}_mean_{self.window}d" for name in DAILY]
        return [*lagged, *means, "season_sin", "season_cos"]

    def to_dict(self) -> dict[str, int]:
        return {"lags": self.lags, "window": self.window}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        return cls(lags=int(data["lags"]), window=int(data["window"]))


Rows = pd.DataFrame | Iterable[Mapping[str, Any]]


def observations(rows: Rows) -> pd.DataFrame:
    """Validate daily observations and return them sorted by date, one row per day.

    Dates may be written ``2015-12-31`` or ``2015/12/31``; other columns are ignored.
    Raises ``ValueError`` for missing columns or values, repeated days or gaps.
    """
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    missing = [c for c in (DATE, *OBSERVED) if c not in frame.columns]
    if missing:
        raise ValueError(f"observations lack column(s): {', '.join(missing)}")
    frame = frame[[DATE, *OBSERVED]].copy()
    if not pd.api.types.is_datetime64_any_dtype(frame[DATE]):
        dates = frame[DATE].astype(str).str.replace("/", "-", regex=False)
        frame[DATE] = pd.to_datetime(dates, format="%Y-%m-%d")
    for name in OBSERVED:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    incomplete = [name for name in frame.columns if frame[name].isna().any()]
    if incomplete:
        raise ValueError(
            f"observations have missing or non-numeric values in: {', '.join(incomplete)}"
        )
    frame = frame.sort_values(DATE, kind="stable").reset_index(drop=True)
    steps = frame[DATE].diff().iloc[1:]
    bad = steps != pd.Timedelta(days=1)
    if bad.any():
        after = frame[DATE].iloc[int(np.argmax(bad.to_numpy()))]
        raise ValueError(
            f"days must be consecutive and unique: gap or repeat after {after:%Y-%m-%d}"
        )
    return frame


def make_features(rows: Rows, spec: FeatureSpec) -> pd.DataFrame:
    """The feature table: a ``date`` column then ``spec.names()``, one row per day that has
    ``spec.history`` days of history. Pure: the same rows and spec give the same table."""
    obs = observations(rows)
    daily = {
        "rain": (obs["precipitation"] > 0).astype("float64"),
        "log_precip": np.log1p(obs["precipitation"]),
        "temp_max": obs["temp_max"],
        "temp_min": obs["temp_min"],
        "wind": obs["wind"],
    }
    columns: dict[str, pd.Series] = {}
    for name, series in daily.items():
        for lag in range(spec.lags):
            columns[f"{name}_lag{lag}"] = series.shift(lag)
        columns[f"{name}_mean_{spec.window}d"] = series.rolling(spec.window).mean()
    angle = 2 * np.pi * obs[DATE].dt.day_of_year / 365.25
    columns["season_sin"] = np.sin(angle)
    columns["season_cos"] = np.cos(angle)

    table = pd.DataFrame({DATE: obs[DATE], **{name: columns[name] for name in spec.names()}})
    return table.iloc[spec.history - 1 :].reset_index(drop=True)


def make_labels(rows: Rows) -> pd.DataFrame:
    """``date`` and ``rain_tomorrow`` (1 if day t + 1 has any precipitation), for every day
    whose next day is known."""
    obs = observations(rows)
    tomorrow = obs["precipitation"].shift(-1)
    labels = pd.DataFrame({DATE: obs[DATE], LABEL: (tomorrow > 0).astype("int64")})
    return labels[tomorrow.notna()].reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CSV of daily observations")
    parser.add_argument("--lags", type=int, required=True)
    parser.add_argument("--window", type=int, required=True)
    parser.add_argument("--out", required=True, help="feature table (CSV)")
    parser.add_argument("--spec", required=True, help="feature spec and summary (JSON)")
    args = parser.parse_args(argv)

    spec = FeatureSpec(lags=args.lags, window=args.window)
    obs = observations(pd.read_csv(args.data))
    table = make_features(obs, spec).merge(make_labels(obs), on=DATE, how="inner")
    write_text(
        args.out,
        table.to_csv(
            index=False, date_format="%Y-%m-%d", float_format="%.10g", lineterminator="\n"
        ),
    )
    first, last = table[DATE].iloc[[0, -1]].dt.strftime("%Y-%m-%d")
    write_json(
        args.spec,
        {
            **spec.to_dict(),
            "features": spec.names(),
            "label": LABEL,
            "rows": len(table),
            "first_date": first,
            "last_date": last,
        },
    )
    print(
        f"features: {len(table)} days x {len(spec.names())} features "
        f"({first} .. {last}) -> {args.out}"
    )


if __name__ == "__main__":
    main()
