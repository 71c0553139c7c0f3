"""Pure steps for the propensity model: choose snapshots, build the dataset, fit, evaluate.

No MLflow here (see training/runner.py): these functions are what notebooks call directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd

from features.identity.events import resolve_events
from features.identity.graph import IdentityConfig
from features.profile.feature_lists import PROPENSITY_V1, WINDOW_FEATURE, FeatureList
from features.profile.repeat_purchases import purchase_summary
from features.profile.training_sets import rolling_as_ofs, training_set
from features.store import event_time_range
from models import bgnbd, paretonbd
from models.answers import ANSWER_COLUMNS, SOURCES, UNSCORED, ScoreGate, answer_propensity
from models.clv import LifetimeModels, answer_clv, fit_lifetime
from models.propensity import PropensityModel
from training.errors import NotEnoughDataError
from training.evaluate import (
    classification_metrics,
    expected_calibration_error,
    ranking_metrics,
)

# What `nhip train propensity` trains on. propensity_v3 (v1 + BG/NBD features) was measured against it
# (benchmarks/propensity_quality.py, benchmarks/cdnow.py): no better on the demo shop (AUC 0.870 vs 0.870),
# +0.001 PR-AUC on CDNOW, and the online profiles do not carry BG/NBD columns yet, so v1 stays.
DEFAULT_FEATURE_LIST = PROPENSITY_V1

# Short-history scheme: besides its longest observable window, each snapshot is labelled over shorter
# windows, `step_days` × WINDOW_RATIO^k. Several windows on the same snapshot are what separates "short
# window" from "late snapshot": with one window per snapshot, the window length and the customers'
# tenure move together and a model cannot tell them apart. Starting at `step_days` makes the training
# rows cover every window the (later) calibration snapshots have, so the calibrator never sees the
# booster outside the windows it was trained on.
WINDOW_RATIO = 2
# Short-history scheme: the latest third of the snapshots calibrates.
CALIBRATION_SHARE = 1 / 3


@dataclass
class SnapshotPlan:
    """Which as-of dates train, calibrate and test a model, and over which label windows.

    Full windows (history ≥ min history + 2 × horizon): train every `step_days` up to
    `test − 2·horizon`, calibrate on `test − horizon`, test on `as_of`, every window `horizon` days. Each
    label window ends before the next snapshot's begins, so the calibrator sees only labels after every
    training label and the test only labels after both.

    Short history (`label_cutoff` set, = the test as_of): there is no room for a full window before the
    test, so every training and calibration window is truncated at the cutoff: labels come from
    purchases strictly after the snapshot and at or before the cutoff, never later. Each snapshot is
    labelled over several windows (`windows`), the window length is a model input
    (`label_window_days`, the booster's output constrained to grow with it), and at the test (and when
    serving) it is the full horizon. The latest third of the snapshots calibrates: a time-later slice the
    booster never saw. Trees do not extrapolate: for a horizon longer than every training window the
    booster answers as for its longest one, so probabilities err low by the purchases of the unobserved
    extra days (on CDNOW the longest training window is 238 of 273 days).
    """

    train: list[datetime]
    calibration: list[datetime]
    test: datetime
    horizon_days: int
    label_cutoff: datetime | None = None
    step_days: int = 14

    @property
    def calibrate(self) -> datetime:
        """The calibration snapshot (the earliest of the slice in the short-history scheme)."""
        return self.calibration[0]

    @property
    def short_history(self) -> bool:
        return self.label_cutoff is not None

    @property
    def scheme(self) -> str:
        return "short history: windows truncated at the test as_of" if self.short_history else "full windows"

    def windows(self, as_of: datetime) -> list[int]:
        """Label windows (days) of a snapshot."""
        if not self.short_history or as_of == self.test:
            return [self.horizon_days]
        available = int((self.label_cutoff - as_of) // timedelta(days=1))
        longest = min(self.horizon_days, available)
        windows, w = {longest}, max(1, self.step_days)
        while w < longest:
            windows.add(w)
            w *= WINDOW_RATIO
        return sorted(windows)


def plan_snapshots(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    horizon_days: int,
    step_days: int = 14,
    min_history_days: int = 30,
    observed_until: datetime | None = None,
) -> SnapshotPlan:
    """Full windows when the history allows it, else the short-history scheme (see `SnapshotPlan`).

    `observed_until` is the end of the observed period (default: the last event). The test's own
    label window must end by then: a test label over a window not yet observed would be wrong, not
    short.
    """
    first, last = event_time_range(con)
    if first is None:
        raise NotEnoughDataError("the event store is empty; run `nhip ingest` first")
    observed_until = observed_until or last
    horizon = timedelta(days=horizon_days)
    if as_of + horizon > observed_until:
        raise NotEnoughDataError(
            f"the label window after as_of {as_of:%Y-%m-%d} ends {as_of + horizon:%Y-%m-%d}, after the "
            f"end of the data ({observed_until:%Y-%m-%d}); choose an as_of at least {horizon_days} days "
            "before it"
        )
    earliest = first + timedelta(days=min_history_days)
    calibrate = as_of - horizon
    train = rolling_as_ofs(earliest, calibrate - horizon, step_days)
    if train:
        return SnapshotPlan(train, [calibrate], as_of, horizon_days, step_days=step_days)
    snapshots = rolling_as_ofs(earliest, as_of - timedelta(days=step_days), step_days)
    if len(snapshots) < 2:
        need = min_history_days + 2 * step_days
        raise NotEnoughDataError(
            f"not enough history before {as_of:%Y-%m-%d}: training needs at least {need} days of events "
            f"before as_of (history {min_history_days} d + two snapshots {step_days} d apart, with label "
            f"windows truncated at as_of); have {(as_of - first).days} d"
        )
    n_cal = max(1, int(len(snapshots) * CALIBRATION_SHARE))
    return SnapshotPlan(snapshots[:-n_cal], snapshots[-n_cal:], as_of, horizon_days, label_cutoff=as_of,
                        step_days=step_days)


@dataclass
class PropensityResult:
    model: PropensityModel
    plan: SnapshotPlan
    metrics: dict[str, float]
    # test rows with `score`, and `bgnbd_score` / `pareto_nbd_score`, those models' P(any purchase)
    test: pd.DataFrame
    row_counts: dict[str, int] = field(default_factory=dict)
    # Every comparison on the same test rows: "recency" (ranking only); "bgnbd" and "pareto_nbd" (P(any
    # purchase in the horizon): probabilities, so Brier/log-loss/ECE too); "bgnbd_expected" and
    # "pareto_nbd_expected" (ranking by expected purchases, the literature's ranking); "rfm_logit".
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    details: dict[str, object] = field(default_factory=dict)
    summary: pd.DataFrame | None = None  # the buyers' (frequency, recency, T) at the test snapshot
    gate: ScoreGate | None = None
    pareto: object | None = None  # Pareto/NBD fitted on `summary` (the blend's input), or None
    # Churn and lifetime value of the test customers as shipped (`models.clv`), and the models behind it
    clv: pd.DataFrame | None = None
    lifetime: LifetimeModels | None = None


def model_features(feature_list: FeatureList, plan: SnapshotPlan) -> tuple[str, ...]:
    """The model's inputs: the list, plus the label window when the windows vary."""
    features = tuple(feature_list.features)
    return (*features, WINDOW_FEATURE) if plan.short_history else features


def build_rows(
    con: duckdb.DuckDBPyConnection,
    plan: SnapshotPlan,
    feature_list: FeatureList,
    identity: IdentityConfig,
    progress: Callable[[datetime], None] | None = None,
) -> pd.DataFrame:
    """Training, calibration and test rows of a plan, customers resolved with `identity`.

    Training and calibration labels are read with the plan's cutoff as a hard limit (none for full
    windows, whose windows all end by the test as_of anyway); only the test snapshot looks past it.
    """
    known = [*plan.train, *plan.calibration]
    cutoff = plan.label_cutoff or plan.test
    fitted = training_set(con, known, plan.horizon_days, feature_list, identity, progress=progress,
                          label_windows=plan.windows, label_cutoff=cutoff)
    test = training_set(con, [plan.test], plan.horizon_days, feature_list, identity, progress=progress)
    return pd.concat([fitted, test], ignore_index=True)


def btyd_baseline(
    model, summary: pd.DataFrame, horizon_days: int, customers: pd.Index, never_bought_rate: float,
) -> tuple[pd.Series, pd.Series, dict[str, float]]:
    """A BTYD model's P(any purchase) and expected purchase days in the horizon for `customers`, and its
    parameters. `model` (BG/NBD or Pareto/NBD, None when it could not be fitted) was fitted on the
    purchase `summary` of the test snapshot, without labels.

    BTYD models say nothing about customers who never bought: they get `never_bought_rate` (the rate
    observed on the calibration slice) as probability and 0 expected purchases.
    """
    p_any = pd.Series(never_bought_rate, index=customers, dtype=float)
    expected = pd.Series(0.0, index=customers)
    if model is None:
        return p_any, expected, {}
    buyers = summary.index.intersection(customers)
    args = (summary.loc[buyers, "frequency"], summary.loc[buyers, "recency"], summary.loc[buyers, "T"])
    p_any[buyers] = model.p_any_purchase(horizon_days, *args)
    expected[buyers] = model.expected_purchases(horizon_days, *args)
    return p_any, expected, dict(model.params_)


def fit_btyd(summary: pd.DataFrame, kind) -> object | None:
    """`kind.fit_if_enough` (`models.bgnbd` or `models.paretonbd`) on a purchase summary."""
    return kind.fit_if_enough(summary["frequency"], summary["recency"], summary["T"]) if len(summary) else None


def add_blend_input(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame, plan: SnapshotPlan,
                    identity: IdentityConfig) -> pd.DataFrame | None:
    """`rows` with the model's BTYD blend input (`models.paretonbd.BLEND_FEATURE`): per snapshot,
    Pareto/NBD fitted on the buyers as of that snapshot (never later), and each row's expected purchase
    days over its own label window. None when a snapshot has too few buyers to fit it."""
    out = pd.Series(np.nan, index=rows.index)
    for as_of, group in rows.groupby("as_of"):
        with resolve_events(con, as_of, identity) as events:
            summary = purchase_summary(events)
        pareto = fit_btyd(summary, paretonbd)
        if pareto is None:
            return None
        windows = group[WINDOW_FEATURE].to_numpy() if WINDOW_FEATURE in group else plan.horizon_days
        out[group.index] = paretonbd.expected_for(pareto, summary, pd.Index(group["customer_id"]), windows)
    return rows.assign(**{paretonbd.BLEND_FEATURE: out})


# The RFM logistic regression: the classic baseline a data scientist fits first.
RFM_COLUMNS = ("recency_days", "purchase_recency_days", "n_purchases", "monetary_total", "tenure_days")


def rfm_logistic_baseline(cal: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
    """A logistic regression on log-scaled recency, frequency, monetary value and tenure, fitted on the
    calibration snapshot (earlier than the test, its own labels; in the short-history scheme its
    longest label windows), scored on the test rows: the bar any learned model must clear."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    columns = [c for c in RFM_COLUMNS if c in cal.columns and c in test.columns]
    rows = cal[cal[WINDOW_FEATURE] == cal[WINDOW_FEATURE].max()] if WINDOW_FEATURE in cal else cal
    if not columns or rows["label"].nunique() < 2:
        return {}

    def matrix(frame: pd.DataFrame) -> np.ndarray:
        values = frame[columns].astype(float)
        # A customer who never bought has no purchase recency: as long ago as the longest seen, plus one.
        values = values.fillna(rows[columns].astype(float).max() + 1).fillna(0)
        return np.log1p(values.clip(lower=0)).to_numpy()

    fitted = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(matrix(rows), rows["label"])
    p = fitted.predict_proba(matrix(test))[:, 1]
    metrics = classification_metrics(test["label"], p)
    metrics["ece"] = expected_calibration_error(test["label"], p)
    return metrics


def _never_bought_rate(cal: pd.DataFrame) -> float:
    never = cal[cal["n_purchases"] == 0] if "n_purchases" in cal else cal
    longest = never[never[WINDOW_FEATURE] == never[WINDOW_FEATURE].max()] if len(never) else never
    return float(longest["label"].mean()) if len(longest) else float(cal["label"].mean())


def answer_test(model: PropensityModel, test: pd.DataFrame, summary: pd.DataFrame, horizon_days: int,
                gate: ScoreGate, pareto=None) -> pd.DataFrame:
    """The test rows with every customer's answer as shipped: score, source, status, percentile, bucket.
    `pareto` is Pareto/NBD fitted on `summary` (the blend's input; fitted when needed if not given)."""
    answers = answer_propensity(model, test.set_index("customer_id"), summary, horizon_days, gate, pareto)
    out = test.drop(columns=[c for c in ANSWER_COLUMNS if c in test.columns])
    return out.assign(**{c: answers[c].to_numpy() for c in ANSWER_COLUMNS})


def metrics_by_source(test: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Customers, buyers and the ranking metrics among the customers each source answered (a source
    whose customers all share one label, or one score, has customers and buyers only)."""
    out = {}
    for source, rows in test[test["status"] != UNSCORED].groupby("source", observed=True):
        entry = {"customers": float(len(rows)), "buyers": float(rows["label"].sum()),
                 "mean_score": float(rows["score"].mean())}
        if rows["label"].nunique() == 2 and rows["score"].nunique() > 1:
            entry |= ranking_metrics(rows["label"], rows["score"].to_numpy())
        out[str(source)] = entry
    return out


def fit_propensity(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    horizon_days: int,
    min_events: int,
    identity: IdentityConfig,
    step_days: int = 14,
    feature_list: FeatureList = DEFAULT_FEATURE_LIST,
    progress: Callable[[datetime], None] | None = None,
    observed_until: datetime | None = None,
    blend: bool = True,
    **params,
) -> PropensityResult:
    """Train on the rolling snapshots, calibrate on the later ones, evaluate on the latest, next to the
    recency rule and BG/NBD on the same test rows.

    The model learns and is calibrated on the rows that pass the gate (`models.answers.ScoreGate`,
    `min_events`): the customers it will answer for. The test snapshot is the product as shipped: every
    customer, answered by the model or by the fallback chain (`models.answers.answer_propensity`), as
    `nhip score` and the service answer them; `metrics` are over all of them, `details["by_source"]` per
    source. Every snapshot resolves customers with `identity`. With `blend` (the default) the model's
    calibration blends in Pareto/NBD's expected purchases (`PropensityModel.blend_feature`) when every
    calibration snapshot has enough buyers to fit it.
    """
    gate = ScoreGate(min_events)
    plan = plan_snapshots(con, as_of, horizon_days, step_days, observed_until=observed_until)
    data = build_rows(con, plan, feature_list, identity, progress)
    fitted = data[gate.model_answers(data)]
    train = fitted[fitted["as_of"].isin(plan.train)]
    cal = fitted[fitted["as_of"].isin(plan.calibration)]
    test = data[data["as_of"] == plan.test].copy()
    if train["label"].nunique() < 2 or test["label"].nunique() < 2:
        raise NotEnoughDataError(
            "every training or test row has the same label; more customers or a longer horizon needed"
        )
    features = model_features(feature_list, plan)
    # The BTYD blend (see `PropensityModel`): Platt scaling with Pareto/NBD's expected purchases beside
    # the booster, where every calibration snapshot has enough buyers to fit Pareto/NBD on.
    blended = add_blend_input(con, cal, plan, identity) if blend else None
    blend_feature = paretonbd.BLEND_FEATURE if blended is not None else None
    model = PropensityModel(
        features=features, feature_list=feature_list.name, horizon_days=horizon_days,
        window_feature=WINDOW_FEATURE if plan.short_history else None, blend_feature=blend_feature, **params
    )
    cal_inputs = blended[[*features, blend_feature]] if blended is not None else cal[list(features)]
    model.fit(train[list(features)], train["label"], cal_inputs, cal["label"])
    with resolve_events(con, plan.test, identity) as events:
        summary = purchase_summary(events)
    pareto = fit_btyd(summary, paretonbd)
    test = answer_test(model, test, summary, horizon_days, gate, pareto)
    if pareto is not None:
        test[paretonbd.BLEND_FEATURE] = paretonbd.expected_for(pareto, summary, pd.Index(test["customer_id"]),
                                                               horizon_days)
    # Unscored customers (nothing usable known: rare) have no score to measure; they are counted.
    unscored = int((test["status"] == UNSCORED).sum())
    test = test[test["status"] != UNSCORED].copy()
    metrics = classification_metrics(test["label"], test["score"])
    metrics["ece"] = expected_calibration_error(test["label"], test["score"])

    # Never active themselves (only messaged): ranked last by the rule, below the longest-silent customer.
    days = test["recency_days"]
    recency = ranking_metrics(test["label"], -days.fillna(days.max() + 1 if days.notna().any() else 0).to_numpy())
    customers, never_rate = pd.Index(test["customer_id"]), _never_bought_rate(cal)
    baselines = {"recency": recency}
    params_btyd = {}
    for name, fitted_btyd in (("bgnbd", fit_btyd(summary, bgnbd)), ("pareto_nbd", pareto)):
        p_any, expected, params_btyd[name] = btyd_baseline(fitted_btyd, summary, horizon_days, customers,
                                                           never_rate)
        test[f"{name}_score"] = p_any.to_numpy()
        baselines[name] = classification_metrics(test["label"], test[f"{name}_score"])
        baselines[name]["ece"] = expected_calibration_error(test["label"], test[f"{name}_score"])
        baselines[f"{name}_expected"] = ranking_metrics(test["label"], expected.to_numpy())
    baselines["rfm_logit"] = rfm_logistic_baseline(cal, test)
    baselines = {name: metrics for name, metrics in baselines.items() if metrics}
    counts = {"train_rows": len(train), "calibration_rows": len(cal), "test_rows": len(test),
              **{f"test_rows_{source}": int((test["source"] == source).sum()) for source in SOURCES},
              "test_rows_unscored": unscored}
    details = {"scheme": plan.scheme, "bgnbd_params": params_btyd["bgnbd"],
               "pareto_nbd_params": params_btyd["pareto_nbd"], "gate": gate.describe(),
               "by_source": metrics_by_source(test),
               "label_windows": sorted({w for d in [*plan.train, *plan.calibration]
                                        for w in plan.windows(d)})}
    # Churn and lifetime value ride with the propensity model: built on its answers, with Pareto/NBD and
    # Gamma-Gamma fitted on the test snapshot's buyers (label-free), logged in the same run.
    lifetime = fit_lifetime(summary, horizon_days, pareto)
    clv = answer_clv(test.set_index("customer_id")[list(ANSWER_COLUMNS)], summary, lifetime)
    return PropensityResult(model, plan, metrics, test, counts, baselines, details, summary, gate, pareto,
                            clv, lifetime)
