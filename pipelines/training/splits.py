"""Splitting a training set by time, and which of its columns are features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.errors import ConfigurationError


@dataclass(frozen=True)
class TimeSplit:
    """Train, validation and holdout rows, each a contiguous range of prediction days."""

    train: pd.DataFrame
    validation: pd.DataFrame
    holdout: pd.DataFrame


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns of a training set are features, and which of those are categorical."""

    categorical: list[str]
    numeric: list[str]

    @property
    def columns(self) -> list[str]:
        return [*self.categorical, *self.numeric]


def feature_spec(frame: pd.DataFrame, excluded: list[str]) -> FeatureSpec:
    """Features are every column but the keys and the label; text columns are categorical."""
    features = [column for column in frame.columns if column not in excluded]
    categorical = [
        c
        for c in features
        if pd.api.types.is_object_dtype(frame[c])
        or isinstance(frame[c].dtype, pd.CategoricalDtype | pd.StringDtype)
    ]
    return FeatureSpec(categorical, [c for c in features if c not in categorical])


def split_by_time(
    frame: pd.DataFrame, timestamp: str, validation_share: float, holdout_share: float
) -> TimeSplit:
    """Split by prediction day: the oldest days train, then validation, the latest are holdout."""
    days = np.sort(frame[timestamp].unique())
    holdout_days = max(1, round(len(days) * holdout_share))
    validation_days = max(1, round(len(days) * validation_share))
    train_days = len(days) - holdout_days - validation_days
    if train_days < 1:
        raise ConfigurationError(
            f"{len(days)} labelled days cannot be split into train, validation and holdout"
        )
    validation_start = days[train_days]
    holdout_start = days[train_days + validation_days]
    stamps = frame[timestamp]
    return TimeSplit(
        train=frame[stamps < validation_start],
        validation=frame[(stamps >= validation_start) & (stamps < holdout_start)],
        holdout=frame[stamps >= holdout_start],
    )
