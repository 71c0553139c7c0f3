"""Pure steps for the propensity model: choose snapshots, build the dataset, fit, evaluate.

No MLflow here (see training/runner.py): these functions are what notebooks call directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

import duckdb
import numpy as np
import pandas as pd

from features.datasets import rolling_as_ofs, training_set
from features.feature_lists import PROPENSITY_V1, FeatureList
from features.store import event_time_range
from models.propensity import PropensityModel
from training.errors import NotEnoughDataError
from training.evaluate import (
    classification_metrics,
    expected_calibration_error,
    ranking_metrics,
)


@dataclass
class SnapshotPlan:
    """Which as-of dates train, calibrate and test a model, each label window ending before the next.

    train: every `step_days` up to `calibrate - horizon`; calibrate: `test - horizon`; test: `as_of`.
    So the calibrator sees only labels after every training label, and the test only labels after both.
    """

    train: list[datetime]
    calibrate: datetime
    test: datetime


def plan_snapshots(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    horizon_days: int,
    step_days: int = 14,
    min_history_days: int = 30,
) -> SnapshotPlan:
    first, last = event_time_range(con)
    if first is None:
        raise NotEnoughDataError("the event store is empty; run `nhip ingest` first")
    horizon = timedelta(days=horizon_days)
    if as_of + horizon > last:
        raise NotEnoughDataError(
            f"the label window after as_of {as_of:%Y-%m-%d} ends {as_of + horizon:%Y-%m-%d}, after the "
            f"last event ({last:%Y-%m-%d}); choose an as_of at least {horizon_days} days before it"
        )
    calibrate = as_of - horizon
    train = rolling_as_ofs(first + timedelta(days=min_history_days), calibrate - horizon, step_days)
    if not train:
        need = min_history_days + 2 * horizon_days
        raise NotEnoughDataError(
            f"not enough history before {as_of:%Y-%m-%d}: training needs about {need} days of events "
            f"before as_of (history {min_history_days} d + calibration {horizon_days} d + training "
            f"{horizon_days} d); have {(as_of - first).days} d"
        )
    return SnapshotPlan(train, calibrate, as_of)


@dataclass
class PropensityResult:
    model: PropensityModel
    plan: SnapshotPlan
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    test: pd.DataFrame  # test rows with `score`
    row_counts: dict[str, int] = field(default_factory=dict)


def fit_propensity(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    horizon_days: int,
    min_events: int,
    step_days: int = 14,
    feature_list: FeatureList = PROPENSITY_V1,
    progress: Callable[[datetime], None] | None = None,
    **params,
) -> PropensityResult:
    """Train on the rolling snapshots, calibrate on the later one, evaluate on the latest.

    Rows of customers below `min_events` are left out everywhere: they are `unscored` when serving, so
    they must not flatter or drag the metrics.
    """
    plan = plan_snapshots(con, as_of, horizon_days, step_days)
    dates = [*plan.train, plan.calibrate, plan.test]
    data = training_set(con, dates, horizon_days, feature_list, progress=progress)
    data = data[data["n_events"] >= min_events]
    train = data[data["as_of"].isin(plan.train)]
    cal = data[data["as_of"] == plan.calibrate]
    test = data[data["as_of"] == plan.test].copy()
    if train["label"].nunique() < 2 or test["label"].nunique() < 2:
        raise NotEnoughDataError(
            "every training or test row has the same label; more customers or a longer horizon needed"
        )
    features = list(feature_list.features)
    model = PropensityModel(
        features=tuple(features), feature_list=feature_list.name, horizon_days=horizon_days, **params
    )
    model.fit(train[features], train["label"], cal[features], cal["label"])
    test["score"] = model.predict_proba(test[features])[:, 1]
    metrics = classification_metrics(test["label"], test["score"])
    metrics["ece"] = expected_calibration_error(test["label"], test["score"])
    recency = -test["recency_days"].fillna(np.inf).to_numpy()
    baseline = ranking_metrics(test["label"], recency)
    counts = {"train_rows": len(train), "calibration_rows": len(cal), "test_rows": len(test)}
    return PropensityResult(model, plan, metrics, baseline, test, counts)
