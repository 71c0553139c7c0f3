"""The propensity answer chain: model, then BG/NBD, then the shop's rate, and `unscored` only with a reason."""

import numpy as np
import pandas as pd
import pytest

from models.answers import ScoreGate, answer_propensity, shop_rate
from models.bgnbd import MIN_BUYERS
from models.propensity import PropensityModel

HORIZON = 30


def _shop(n_buyers: int, n_browsers: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Profiles (n_events, tenure_days, recency_days) and the buyers' purchase summary, in days."""
    rng = np.random.default_rng(seed)
    n = n_buyers + n_browsers
    ids = [f"c{i:04d}" for i in range(n)]
    tenure = rng.uniform(1, 200, n)
    profiles = pd.DataFrame({"n_events": rng.integers(1, 12, n).astype(float), "tenure_days": tenure,
                             "recency_days": tenure * rng.uniform(0, 1, n)}, index=ids)
    buyers = ids[:n_buyers]
    T = tenure[:n_buyers] * rng.uniform(0.3, 1.0, n_buyers)
    frequency = rng.poisson(1.5, n_buyers).astype(float)
    recency = np.where(frequency > 0, T * rng.uniform(0, 1, n_buyers), 0.0)
    summary = pd.DataFrame({"frequency": frequency, "recency": recency, "T": T}, index=buyers)
    return profiles, summary


def _model(seed: int = 1) -> PropensityModel:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"recency_days": rng.exponential(50, 3000), "n_events": rng.integers(1, 12, 3000) * 1.0})
    y = (rng.random(3000) < 1 / (1 + np.exp(0.03 * X["recency_days"] - 0.2 * X["n_events"]))).astype(int)
    return PropensityModel(features=("recency_days", "n_events"), n_estimators=30).fit(X, y)


def test_every_customer_is_answered_and_says_by_whom():
    profiles, summary = _shop(n_buyers=300, n_browsers=200)
    gate = ScoreGate(3)
    answers = answer_propensity(_model(), profiles, summary, HORIZON, gate)

    assert (answers["status"] == "scored").all() and answers["score"].between(0, 1).all()
    by_model = gate.model_answers(profiles)
    assert (answers.loc[by_model, "source"] == "model").all()
    below = answers[~by_model]
    buyer = below.index.isin(summary.index)
    assert (below.loc[buyer, "source"] == "btyd").all()
    assert (below.loc[~buyer, "source"] == "shop").all()
    # Everyone who never bought and is below the gate gets the same number: the shop's rate.
    assert below.loc[~buyer, "score"].nunique() == 1
    assert below.loc[~buyer, "score"].iloc[0] == pytest.approx(shop_rate(profiles, summary, HORIZON).rate)
    # Percentiles rank everyone answered together.
    assert answers["percentile"].max() > 0.99 and answers["percentile"].notna().all()
    assert set(answers["bucket"]) == {"High", "Medium", "Low"}


def test_without_a_champion_the_fallbacks_answer_everyone():
    profiles, summary = _shop(n_buyers=300, n_browsers=200)
    answers = answer_propensity(None, profiles, summary, HORIZON, ScoreGate(1))
    assert set(answers["source"]) == {"btyd", "shop"}
    assert (answers.loc[summary.index, "source"] == "btyd").all()
    # BG/NBD ranks buyers: a repeat buyer seen yesterday above one last seen long ago, same frequency.
    assert answers.loc[summary.index, "score"].nunique() > 10


def test_too_few_buyers_for_bgnbd_fall_to_the_shop_rate():
    profiles, summary = _shop(n_buyers=MIN_BUYERS - 1, n_browsers=200)
    answers = answer_propensity(None, profiles, summary, HORIZON, ScoreGate(1))
    assert set(answers["source"]) == {"shop"}


def test_a_shop_without_purchases_is_unscored_and_says_why():
    profiles, _ = _shop(n_buyers=0, n_browsers=50)
    empty = pd.DataFrame(columns=["frequency", "recency", "T"], dtype=float)
    answers = answer_propensity(None, profiles, empty, HORIZON, ScoreGate(1))
    assert (answers["status"] == "unscored").all() and answers["score"].isna().all()
    assert answers["reason"].str.contains("no purchases").all()
    assert (answers["bucket"] == "unscored").all()


def test_the_shop_rate_counts_first_purchases_among_people_known_a_horizon_ago():
    profiles = pd.DataFrame({"n_events": 1.0, "tenure_days": [100, 100, 100, 100, 10, 100]},
                            index=["old_buyer", "new_buyer", "browser_a", "browser_b", "too_new", "new_buyer_2"])
    # old_buyer bought 80 days ago (a buyer a horizon ago: not at risk); new_buyer and new_buyer_2 bought
    # for the first time within the last 30 days; too_new was not known 30 days ago.
    summary = pd.DataFrame({"frequency": 0.0, "recency": 0.0, "T": [80.0, 5.0, 20.0]},
                           index=["old_buyer", "new_buyer", "new_buyer_2"])
    rate = shop_rate(profiles, summary, HORIZON)
    assert rate.customers == 4 and rate.rate == pytest.approx(2 / 4)


def test_a_history_shorter_than_the_horizon_has_no_shop_rate():
    profiles = pd.DataFrame({"n_events": 1.0, "tenure_days": [5.0, 8.0]}, index=["a", "b"])
    summary = pd.DataFrame({"frequency": [0.0], "recency": [0.0], "T": [3.0]}, index=["a"])
    answers = answer_propensity(None, profiles, summary, HORIZON, ScoreGate(1))
    assert (answers["status"] == "unscored").all()
    assert answers["reason"].str.contains("shorter than the horizon").all()
