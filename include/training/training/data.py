"""Data for the example trainer and evaluator: a data window read from a source, and the evaluation
dataset held out from it.

Two sources:

- ``sklearn:<dataset>``, a dataset bundled with scikit-learn, read as an hourly stream. Bundled
  datasets have no timestamps, so each hour since the Unix epoch is given one sample, cycling through
  a fixed shuffle of the dataset. Windows that differ train on different samples, the same window
  always on the same ones, and nothing is downloaded. A sample recurs once the dataset has cycled
  (569 hours for ``breast_cancer``): a demo stream, not a model of real data.
- ``csv:<path>``, a CSV file with a ``timestamp`` column (ISO 8601 with a UTC offset), a ``target``
  column and numeric feature columns; a relative path starts in the working directory.

The evaluation dataset is the most recent ``holdout_fraction`` of the window (or, given a separate
source, that source's rows of the window); no row of it is trained on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import datasets

LOADERS = {
    "breast_cancer": datasets.load_breast_cancer,
    "iris": datasets.load_iris,
    "wine": datasets.load_wine,
    "digits": datasets.load_digits,
}
TARGET = "target"
TIMESTAMP = "timestamp"
_SHUFFLE_SEED = 20260101


class DataError(ValueError):
    """The data source or the window cannot give the data asked for; the message names which."""


@dataclass(frozen=True)
class WindowData:
    """The rows of a data window, oldest first: features, target and the time of each row."""

    frame: pd.DataFrame  # feature columns and ``target``
    times: pd.Series     # UTC timestamps, aligned with ``frame``
    hours: int

    @property
    def features(self) -> np.ndarray:
        return self.frame.drop(columns=[TARGET]).to_numpy(dtype=np.float64)

    @property
    def target(self) -> np.ndarray:
        return self.frame[TARGET].to_numpy()

    @property
    def feature_names(self) -> list[str]:
        return [str(column) for column in self.frame.columns if column != TARGET]

    def subset(self, mask: np.ndarray) -> WindowData:
        return WindowData(frame=self.frame[mask].reset_index(drop=True),
                          times=self.times[mask].reset_index(drop=True), hours=self.hours)


@dataclass(frozen=True)
class Split:
    training: WindowData
    evaluation: WindowData


def load_window(source: str, start: dt.datetime, end: dt.datetime) -> WindowData:
    """The rows of ``[start, end)`` from ``source`` (``sklearn:<dataset>`` or ``csv:<path>``)."""
    if end <= start:
        raise DataError(f"the data window is empty: DATA_WINDOW_END {end} is not after {start}")
    scheme, _, name = source.partition(":")
    if scheme == "sklearn" and name in LOADERS:
        return _bundled(LOADERS[name], start, end)
    if scheme == "csv" and name:
        return _csv(source, Path(name), start, end)
    raise DataError(f"DATA_SOURCE {source!r} is not supported; use csv:<path> or one of "
                    f"{', '.join('sklearn:' + known for known in sorted(LOADERS))}")


def split_window(window: WindowData, *, holdout_fraction: float,
                 evaluation: WindowData | None = None) -> Split:
    """The evaluation dataset (``evaluation`` when it comes from a separate source, else the rows of
    the most recent ``holdout_fraction`` of the window's time) and the rest to train on. A row that
    also appears in the evaluation dataset (a bundled dataset cycles) is not trained on."""
    if evaluation is None:
        first, last = window.times.min(), window.times.max()
        cutoff = last - (last - first) * holdout_fraction
        recent = (window.times >= cutoff).to_numpy() if len(window.times) else np.zeros(0, dtype=bool)
        evaluation = window.subset(recent)
        window = window.subset(~recent)
    held_out = set(map(tuple, evaluation.frame.to_numpy().tolist()))
    unseen = np.array([tuple(row) not in held_out for row in window.frame.to_numpy().tolist()], dtype=bool)
    return Split(training=window.subset(unseen), evaluation=evaluation)


def _bundled(loader, start: dt.datetime, end: dt.datetime) -> WindowData:  # type: ignore[no-untyped-def]
    bunch = loader()
    order = np.random.default_rng(_SHUFFLE_SEED).permutation(len(bunch.target))
    first_hour = int(start.timestamp() // 3600)
    last_hour = int(-(-end.timestamp() // 3600))  # ceiling: the hour in progress at ``end`` counts
    hours = np.arange(first_hour, last_hour)
    rows = order[hours % len(order)]
    # A sample seen twice in the window (the dataset cycles) is kept once, at its latest hour.
    latest = {row: hour for row, hour in zip(rows.tolist(), hours.tolist(), strict=True)}
    kept = sorted(latest, key=latest.__getitem__)
    frame = pd.DataFrame(bunch.data[kept].astype(np.float64),
                         columns=[str(feature) for feature in bunch.feature_names])
    frame[TARGET] = bunch.target[kept]
    times = pd.Series(pd.to_datetime([latest[row] * 3600 for row in kept], unit="s", utc=True))
    return WindowData(frame=frame, times=times, hours=last_hour - first_hour)


def _csv(source: str, path: Path, start: dt.datetime, end: dt.datetime) -> WindowData:
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"DATA_SOURCE {source!r}: no file {path.resolve()}") from None
    for column in (TIMESTAMP, TARGET):
        if column not in table.columns:
            raise DataError(f"DATA_SOURCE {source!r} has no {column!r} column (columns: "
                            f"{', '.join(map(str, table.columns))})")
    try:
        times = pd.to_datetime(table.pop(TIMESTAMP), utc=True, format="ISO8601")
    except (ValueError, TypeError) as error:
        raise DataError(f"DATA_SOURCE {source!r}: column {TIMESTAMP!r} is not ISO 8601: {error}") from None
    inside = ((times >= pd.Timestamp(start)) & (times < pd.Timestamp(end))).to_numpy()
    order = np.argsort(times[inside].to_numpy(), kind="stable")
    frame = table[inside].iloc[order].reset_index(drop=True)
    hours = int(-(-(end - start).total_seconds() // 3600))
    return WindowData(frame=frame, times=times[inside].iloc[order].reset_index(drop=True), hours=hours)
