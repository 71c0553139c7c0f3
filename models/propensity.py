"""Purchase propensity: P(purchase within `horizon_days` after as_of), calibrated.

The estimator follows scikit-learn's contract and carries its own preprocessing (the feature list and
column order), so the artifact logged to MLflow is the one thing serving loads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from models.compiled import COMPILER, CompiledTrees


class PropensityModel(ClassifierMixin, BaseEstimator):
    """LightGBM ranking, calibrated on a later time slice.

    Platt scaling (`sigmoid`) is the default: isotonic regression on a few thousand rows gives the top
    customers exactly 1.0, a certainty no marketer should be shown; `isotonic` stays available.

    Calibration must be fitted on rows the booster has not seen and that come later in time: the caller
    passes them as `X_cal, y_cal` (see `training.propensity.SnapshotPlan`). Without them the raw booster
    probabilities are used and `calibrated_` is False, which the report states.

    `window_feature` names an input that is the length (days) of a training row's label window, when
    the rows come with windows of several lengths (a history shorter than the horizon): the score only
    grows with it, and a prediction is made for the full `horizon_days`.

    `blend_feature` names a BTYD input that the calibration step uses beside the booster's logit:
    Pareto/NBD's expected purchase days in the window (`models.paretonbd.BLEND_FEATURE`). The Platt
    scaling becomes a two-input logistic regression, σ(a + b·logit(booster) + c·log(E + `BLEND_FLOOR`)),
    fitted on the calibration slice: a stacked blend of the learned ranking and the BTYD model, which
    on CDNOW beats either alone (BENCHMARKS.md). The booster never sees it, so it is not a tree input.
    """

    def __init__(
        self,
        features: tuple[str, ...] = (),
        feature_list: str = "",
        horizon_days: int = 30,
        window_feature: str | None = None,
        n_estimators: int = 300,
        learning_rate: float = 0.03,
        num_leaves: int = 15,
        min_child_samples: int = 40,
        calibration: str = "sigmoid",
        random_state: int = 0,
        blend_feature: str | None = None,
    ):
        self.features = features
        self.feature_list = feature_list
        self.horizon_days = horizon_days
        self.window_feature = window_feature
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.calibration = calibration
        self.random_state = random_state
        self.blend_feature = blend_feature

    def _matrix(self, X: pd.DataFrame) -> pd.DataFrame:
        window = self.window_feature
        if window in self.features_ and window not in X.columns:
            # Trained on label windows of several lengths: a prediction is for the full horizon.
            X = X.assign(**{window: float(self.horizon_days)})
        missing = [f for f in self.features_ if f not in X.columns]
        if missing:
            raise ValueError(f"missing feature columns: {missing}")
        return X[list(self.features_)].astype("float64")

    def fit(self, X: pd.DataFrame, y, X_cal: pd.DataFrame | None = None, y_cal=None):
        self.trees_ = self.compile_error_ = None  # a refit model scores with its new booster
        self.features_ = tuple(self.features) or tuple(X.columns)
        y = np.asarray(y).astype(int)
        if len(np.unique(y)) < 2:
            raise ValueError("training labels hold one class only; widen the window or add data")
        # P(a purchase within w days) can only grow with w: said to the booster, it also keeps the window
        # from standing in for other features where the two move together.
        monotone = ([int(f == self.window_feature) for f in self.features_]
                    if self.window_feature in self.features_ else None)
        self.booster_ = LGBMClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            random_state=self.random_state,
            monotone_constraints=monotone,
            n_jobs=2,
            verbose=-1,
        ).fit(self._matrix(X), y)
        self.classes_ = np.array([0, 1])
        self.calibrator_ = None
        if X_cal is not None and len(X_cal):
            raw = self._booster_proba(self._array(X_cal))
            y_cal = np.asarray(y_cal).astype(int)
            if self.calibration == "isotonic" and self.blend_feature:
                raise ValueError("the BTYD blend is a Platt step: use calibration='sigmoid' with blend_feature")
            if self.calibration == "isotonic":
                self.calibrator_ = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1)
                self.calibrator_.fit(raw, y_cal)
            elif self.calibration == "sigmoid":
                inputs = self._calibration_inputs(raw, X_cal)
                self.calibrator_ = LogisticRegression().fit(inputs, y_cal)
            else:
                raise ValueError(f"calibration must be 'isotonic' or 'sigmoid', not {self.calibration!r}")
        self.calibrated_ = self.calibrator_ is not None
        return self

    @property
    def inputs_(self) -> tuple[str, ...]:
        """Every column the model reads: the booster's features, then the blend's input if any."""
        return (*self.features_, *([self.blend_feature] if self.blend_feature else []))

    def _calibration_inputs(self, raw: np.ndarray, X: pd.DataFrame | None, rows: np.ndarray | None = None,
                            blend: np.ndarray | None = None) -> np.ndarray:
        """The Platt step's inputs: logit(booster), and log(E + floor) of the blend input when there is
        one (`blend`, one value per row of `X`, or else the column of `X`)."""
        if not self.blend_feature:
            return _logit(raw)[:, None]
        if blend is None:
            if X is None or self.blend_feature not in X.columns:
                raise ValueError(f"missing feature columns: [{self.blend_feature!r}] (the BTYD blend input)")
            blend = X[self.blend_feature].to_numpy(dtype=np.float64)
        blend = blend if rows is None else blend[rows]
        return np.column_stack([_logit(raw), np.log(np.clip(blend, 0, None) + BLEND_FLOOR)])

    # -- compiled scoring ---------------------------------------------------------------------------------

    def compile_trees(self, cache_dir: Path | None) -> str:
        """Score with the booster compiled to machine code from now on (`models.compiled`), cached in
        `cache_dir`; stays on the booster when that cannot be done here. Returns `scorer`."""
        self.trees_, self.compile_error_ = CompiledTrees.load(self.booster_.booster_.model_to_string(), cache_dir)
        return self.scorer

    @property
    def scorer(self) -> str:
        """What scores: `lleaves` (compiled trees) or `booster` (with why, when compiling failed)."""
        if getattr(self, "trees_", None) is not None:
            return COMPILER
        error = getattr(self, "compile_error_", None)
        return f"booster ({error})" if error else "booster"

    def __setstate__(self, state):
        state.setdefault("blend_feature", None)  # pickled before the blend existed
        super().__setstate__(state)

    def __getstate__(self):
        # Machine code is not pickled: a loaded model compiles (or loads its cache) again.
        state = super().__getstate__()
        state.pop("trees_", None)
        state.pop("compile_error_", None)
        return state

    def _array(self, X: pd.DataFrame, rows: np.ndarray | None = None) -> np.ndarray:
        """The model's inputs as one C-ordered float64 matrix, built column by column (a whole shop's
        profiles hold ~140 columns; only these are copied), for the rows of the boolean mask `rows`."""
        n = len(X) if rows is None else int(rows.sum())
        out = np.empty((n, len(self.features_)))
        for j, name in enumerate(self.features_):
            if name == self.window_feature and name not in X.columns:
                out[:, j] = float(self.horizon_days)  # a prediction is for the full horizon
                continue
            if name not in X.columns:
                raise ValueError(f"missing feature columns: {[f for f in self.features_ if f not in X.columns]}")
            column = X[name].to_numpy(dtype=np.float64, na_value=np.nan)
            out[:, j] = column if rows is None else column[rows]
        return out

    def _booster_proba(self, matrix: np.ndarray) -> np.ndarray:
        trees = getattr(self, "trees_", None)
        if trees is not None:
            return trees.predict(matrix)
        return self.booster_.booster_.predict(matrix)  # the raw Booster: P(class 1) for a binary model

    def predict_proba(self, X: pd.DataFrame, rows: np.ndarray | None = None,
                      blend: np.ndarray | None = None) -> np.ndarray:
        """[P(0), P(1)] per row of `X`, or per row of the boolean mask `rows`. `blend` gives the blend
        input per row of `X` when it is not a column of `X` (see the class docstring)."""
        raw = self._booster_proba(self._array(X, rows))
        if isinstance(self.calibrator_, IsotonicRegression):
            p = self.calibrator_.predict(raw)
        elif self.calibrator_ is not None:
            p = self.calibrator_.predict_proba(self._calibration_inputs(raw, X, rows, blend))[:, 1]
        else:
            p = raw
        p = np.clip(p, 0.0, 1.0)
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def feature_importance(self) -> pd.Series:
        """Total gain per feature, the 'top drivers' of the report."""
        gains = self.booster_.booster_.feature_importance(importance_type="gain")
        return pd.Series(gains, index=list(self.features_)).sort_values(ascending=False)


# Added to the blend's expected purchases before the log: non-buyers have 0, and 1e-3 purchase days
# puts them below every buyer without an infinite input.
BLEND_FLOOR = 1e-3


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))
