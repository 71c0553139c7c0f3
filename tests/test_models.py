from datetime import time

import numpy as np
import pandas as pd
import pytest

from models.answers import buckets_for
from models.propensity import PropensityModel
from models.send_time import SendTimeModel
from nhip.clock import hour_of_week
from tests.conftest import QUIET
from training.evaluate import expected_calibration_error

TZ = "Asia/Ho_Chi_Minh"


def _synthetic(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"recency_days": rng.exponential(60, n), "n_events": rng.poisson(8, n) + 1.0})
    true_p = 1 / (1 + np.exp(0.04 * X["recency_days"] - 0.1 * X["n_events"] + 0.5))
    return X, true_p.to_numpy(), (rng.random(n) < true_p).astype(int)


def test_propensity_is_calibrated_on_unseen_data():
    X, _, y = _synthetic(6000, 1)
    X_cal, _, y_cal = _synthetic(3000, 2)
    X_test, true_p, y_test = _synthetic(6000, 3)
    model = PropensityModel(features=("recency_days", "n_events"), n_estimators=100).fit(X, y, X_cal, y_cal)
    p = model.predict_proba(X_test)[:, 1]
    assert model.calibrated_
    assert abs(p.mean() - y_test.mean()) < 0.02
    # Over ten equal-count bins, predicted and observed rates differ by under 3 points on average.
    assert expected_calibration_error(y_test, p) < 0.03
    assert np.corrcoef(p, true_p)[0, 1] > 0.8


def test_propensity_refuses_one_class_labels():
    X, _, _ = _synthetic(100, 1)
    with pytest.raises(ValueError, match="one class"):
        PropensityModel(features=("recency_days",)).fit(X, np.zeros(100))


@pytest.mark.parametrize("pct,bucket", [(0.99, "High"), (0.75, "High"), (0.6, "Medium"), (0.1, "Low")])
def test_buckets(pct, bucket):
    assert buckets_for(np.array([pct]))[0] == bucket


def _sends() -> pd.DataFrame:
    """The shop sends at 9:00 and 20:00; `evening` opens only the 20:00 ones, `morning` only the 9:00."""
    rows = []
    days = pd.date_range("2026-03-02", periods=28, freq="D", tz=TZ)
    for day in days:
        for hour in (9, 20):
            how = hour_of_week(pd.DatetimeIndex([day + pd.Timedelta(hours=hour)]))[0]
            rows.append(("evening", "zalo_oa", how, int(hour == 20)))
            rows.append(("morning", "zalo_oa", how, int(hour == 9)))
            rows.append(("random", "zalo_oa", how, int(day.day % 3 == 0)))
    return pd.DataFrame(rows, columns=["customer_id", "channel", "hour_of_week", "opened"])


def test_send_time_learns_each_customers_hour():
    model = SendTimeModel().fit(_sends())
    start = pd.Timestamp("2026-04-01 08:00", tz=TZ)
    end = start + pd.Timedelta(hours=24)
    evening, _, source = model.best_time("evening", "zalo_oa", start, end, QUIET)
    morning, _, _ = model.best_time("morning", "zalo_oa", start, end, QUIET)
    assert source == "customer"
    assert abs(evening.hour - 20) <= 1
    assert abs(morning.hour - 9) <= 1


def test_send_time_falls_back_to_the_shop_curve():
    model = SendTimeModel().fit(_sends())
    curve, source = model.curve("never-seen", "zalo_oa")
    assert source == "shop"
    assert curve.shape == (168,)
    # A channel with no sends at all: what the customer did elsewhere (reading Zalo at 20:00) decides.
    other, other_source = model.curve("evening", "email")
    assert other_source == "activity"
    assert abs(int(np.argmax(other)) % 24 - 20) <= 1


def test_send_time_never_picks_quiet_hours():
    model = SendTimeModel().fit(_sends())
    start = pd.Timestamp("2026-04-01 00:00", tz=TZ)
    for hours in (6, 24, 72):
        when, _, _ = model.best_time("evening", "zalo_oa", start, start + pd.Timedelta(hours=hours), QUIET)
        if when is not None:
            assert time(8, 0) <= when.time() < time(21, 30)
    night = pd.Timestamp("2026-04-01 22:00", tz=TZ)
    assert model.best_time("evening", "zalo_oa", night, night + pd.Timedelta(hours=9), QUIET)[0] is None


def test_compiled_trees_score_as_the_booster_and_are_cached(tmp_path):
    import pickle

    X, _, y = _synthetic(4000, 7)
    X.loc[X.index[::7], "recency_days"] = np.nan  # missing values take the booster's default branches
    X_cal, _, y_cal = _synthetic(2000, 8)
    model = PropensityModel(features=("recency_days", "n_events"), n_estimators=120).fit(X, y, X_cal, y_cal)
    X_test, _, _ = _synthetic(5000, 9)
    X_test.loc[X_test.index[::5], "n_events"] = np.nan
    booster = model.predict_proba(X_test)[:, 1]
    assert model.scorer == "booster"

    assert model.compile_trees(tmp_path / "compiled") == "lleaves"
    np.testing.assert_allclose(model.predict_proba(X_test)[:, 1], booster, rtol=0, atol=1e-6)
    assert len(list((tmp_path / "compiled").glob("*.so"))) == 1
    # A loaded champion carries no machine code; it compiles again, from the cache.
    loaded = pickle.loads(pickle.dumps(model))
    assert loaded.scorer == "booster"
    assert loaded.compile_trees(tmp_path / "compiled") == "lleaves"
    np.testing.assert_allclose(loaded.predict_proba(X_test)[:, 1], booster, rtol=0, atol=1e-6)
    assert len(list((tmp_path / "compiled").glob("*.so"))) == 1


def test_without_lleaves_the_booster_scores_and_says_why(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_lleaves(name, *args, **kwargs):
        if name == "lleaves":
            raise ImportError("No module named 'lleaves'")
        return real_import(name, *args, **kwargs)

    X, _, y = _synthetic(1000, 3)
    model = PropensityModel(features=("recency_days", "n_events"), n_estimators=20).fit(X, y)
    expected = model.predict_proba(X)[:, 1]
    monkeypatch.setattr(builtins, "__import__", no_lleaves)
    assert model.compile_trees(tmp_path) == "booster (lleaves is not installed (No module named 'lleaves'))"
    np.testing.assert_array_equal(model.predict_proba(X)[:, 1], expected)


def test_the_btyd_blend_calibrates_on_both_inputs_and_needs_its_input():
    """With `blend_feature`, the Platt step reads logit(booster) and log(E + floor); the input comes as a
    column or as an array, with the same answer, and a frame without it is a clear error."""
    rng = np.random.default_rng(0)
    n = 4000
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    expected = rng.gamma(0.5, 1.0, size=n) * (rng.random(n) < 0.7)  # 0 for "never bought"
    # The label depends on the booster's input and on the blend input, which the booster never sees.
    y = (rng.random(n) < 1 / (1 + np.exp(-(X["a"] + 1.5 * np.log(expected + 1e-3) / 3)))).astype(int)
    X_cal = X.assign(e=expected)
    model = PropensityModel(features=("a", "b"), blend_feature="e", n_estimators=50)
    model.fit(X.iloc[:2000], y.iloc[:2000], X_cal.iloc[2000:], y.iloc[2000:])
    assert model.inputs_ == ("a", "b", "e") and model.calibrator_.coef_.shape == (1, 2)
    assert model.calibrator_.coef_[0, 1] > 0  # more expected purchases, higher propensity
    by_column = model.predict_proba(X_cal)[:, 1]
    np.testing.assert_allclose(model.predict_proba(X, blend=expected)[:, 1], by_column)
    rows = np.arange(n) % 3 == 0
    np.testing.assert_allclose(model.predict_proba(X, rows=rows, blend=expected)[:, 1], by_column[rows])
    with pytest.raises(ValueError, match="blend input"):
        model.predict_proba(X)
