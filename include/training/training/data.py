"""Data for the example trainer: a dataset bundled with scikit-learn, read as an hourly stream.

Bundled datasets have no timestamps, so each hour since the Unix epoch is given one sample, cycling
through a fixed shuffle of the dataset. A data window then selects the samples of its hours: windows
that differ train on different samples, the same window always on the same ones, and nothing is
downloaded.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from sklearn import datasets

LOADERS = {
    "breast_cancer": datasets.load_breast_cancer,
    "iris": datasets.load_iris,
    "wine": datasets.load_wine,
    "digits": datasets.load_digits,
}
_SHUFFLE_SEED = 20260101


@dataclass(frozen=True)
class WindowData:
    features: np.ndarray
    target: np.ndarray
    feature_names: list[str]
    hours: int


def load_window(source: str, start: dt.datetime, end: dt.datetime) -> WindowData:
    """The samples of the hours in ``[start, end)`` from ``source`` (``sklearn:<dataset>``)."""
    scheme, _, name = source.partition(":")
    if scheme != "sklearn" or name not in LOADERS:
        raise ValueError(
            f"DATA_SOURCE {source!r} is not supported; use one of "
            f"{', '.join('sklearn:' + known for known in sorted(LOADERS))}"
        )
    if end <= start:
        raise ValueError(f"the data window is empty: DATA_WINDOW_END {end} is not after {start}")
    bunch = LOADERS[name]()
    order = np.random.default_rng(_SHUFFLE_SEED).permutation(len(bunch.target))
    first_hour = int(start.timestamp() // 3600)
    last_hour = int(-(-end.timestamp() // 3600))  # ceiling: the hour in progress at ``end`` counts
    rows = np.unique(order[np.arange(first_hour, last_hour) % len(order)])
    return WindowData(
        features=bunch.data[rows].astype(np.float64),
        target=bunch.target[rows],
        feature_names=[str(feature) for feature in bunch.feature_names],
        hours=last_hour - first_hour,
    )
