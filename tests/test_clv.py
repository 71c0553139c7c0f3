"""Churn and lifetime value: every customer answered with a source, the model's answers built on its
propensity, churn risk from Pareto/NBD for buyers only, and the shop too small to fit anything."""

import numpy as np
import pandas as pd

from models import paretonbd
from models.answers import ScoreGate, answer_propensity
from models.clv import (
    NEVER_BOUGHT,
    answer_clv,
    at_risk,
    churn_risk_for,
    fit_lifetime,
    lifetime_from_params,
    lifetime_params,
)
from models.gammagamma import simulate as simulate_spend
from tests.test_answers import _model

HORIZON = 30.0


def _shop(n_buyers: int = 600, n_browsers: int = 200, seed: int = 3):
    """Profiles and a purchase summary whose buyers follow Pareto/NBD, with Gamma-Gamma spend."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(20, 300, n_buyers)
    summary = paretonbd.simulate((0.7, 30.0, 0.6, 60.0), T, rng)
    spend = np.full(n_buyers, np.nan)
    repeat = summary["frequency"].to_numpy() > 0
    spend[repeat] = simulate_spend((4.0, 5.0, 400_000.0), summary["frequency"].to_numpy()[repeat], rng)
    summary["monetary"] = spend
    ids = [f"c{i:04d}" for i in range(n_buyers + n_browsers)]
    summary.index = ids[:n_buyers]
    tenure = np.concatenate([T, rng.uniform(31, 300, n_browsers)])
    profiles = pd.DataFrame({"n_events": rng.integers(1, 12, len(ids)).astype(float), "tenure_days": tenure,
                             "recency_days": tenure * rng.uniform(0, 1, len(ids))}, index=ids)
    return profiles, summary


def test_every_customer_gets_lifetime_answers_with_a_source():
    profiles, summary = _shop()
    lifetime = fit_lifetime(summary, HORIZON)
    assert lifetime.pareto is not None and lifetime.spend is not None
    propensity = answer_propensity(None, profiles, summary, HORIZON, ScoreGate(1))
    clv = answer_clv(propensity, summary, lifetime)
    assert (clv["status"] == "scored").all()
    buyers = clv.index.isin(summary.index)
    # Buyers: Pareto/NBD × Gamma-Gamma, with P(alive) and a churn risk.
    assert (clv.loc[buyers, "source"] == "btyd").all()
    assert clv.loc[buyers, "p_alive"].between(0, 1).all()
    assert set(clv.loc[buyers, "churn_risk"]) <= {"High", "Medium", "Low"}
    rows = summary.loc[clv.index[buyers]]
    np.testing.assert_allclose(clv.loc[buyers, "expected_purchases"],
                               lifetime.pareto.expected_purchases(HORIZON, rows["frequency"], rows["recency"],
                                                                  rows["T"]))
    per_purchase = lifetime.spend.expected_spend(rows["frequency"], rows["monetary"])
    np.testing.assert_allclose(clv.loc[buyers, "expected_spend"],
                               clv.loc[buyers, "expected_purchases"] * per_purchase)
    # People who never bought: the shop's first-purchase rate, no P(alive), and the answer says why.
    never = clv[~buyers]
    assert (never["source"] == "shop").all() and never["p_alive"].isna().all()
    assert never["churn_risk"].isna().all() and (never["reason"] == NEVER_BOUGHT).all()
    rate = propensity.loc[never.index, "score"]
    np.testing.assert_allclose(never["expected_purchases"], rate * lifetime.new_buyer_days)
    np.testing.assert_allclose(never["expected_spend"],
                               never["expected_purchases"] * lifetime.spend.population_mean())


def test_model_answers_scale_pareto_purchases_given_any_by_the_models_propensity():
    profiles, summary = _shop()
    lifetime = fit_lifetime(summary, HORIZON)
    propensity = answer_propensity(_model(), profiles, summary, HORIZON, ScoreGate(1))
    clv = answer_clv(propensity, summary, lifetime)
    assert (clv["source"] == "model").all()
    buyers = summary.index
    rows = summary.loc[buyers]
    args = (rows["frequency"], rows["recency"], rows["T"])
    given_any = (lifetime.pareto.expected_purchases(HORIZON, *args)
                 / lifetime.pareto.p_any_purchase(HORIZON, *args))
    assert np.all(given_any >= 1 - 1e-9)  # at least one purchase day, given any
    np.testing.assert_allclose(clv.loc[buyers, "expected_purchases"],
                               propensity.loc[buyers, "score"] * np.maximum(given_any, 1.0))


def test_churn_risk_levels_and_the_at_risk_audience():
    assert list(churn_risk_for(np.array([0.1, 0.49, 0.5, 0.79, 0.8, 1.0, np.nan]))) == [
        "High", "High", "Medium", "Medium", "Low", "Low", None]
    profiles, summary = _shop()
    clv = answer_clv(answer_propensity(None, profiles, summary, HORIZON, ScoreGate(1)), summary,
                     fit_lifetime(summary, HORIZON))
    audience = at_risk(clv)
    assert len(audience) == (clv["churn_risk"] == "High").sum() > 0
    assert (audience["p_alive"] < 0.5).all()
    assert audience["expected_spend"].is_monotonic_decreasing
    # Silence is what puts a one-time buyer at risk under Pareto/NBD.
    once = summary[summary["frequency"] == 0]
    long_silent = once["T"].idxmax()
    recent = once["T"].idxmin()
    assert clv.loc[long_silent, "p_alive"] < clv.loc[recent, "p_alive"]


def test_a_build_records_the_fits_and_serving_rebuilds_them_unchanged():
    profiles, summary = _shop()
    params = lifetime_params(summary)
    assert set(params) == {"pareto_nbd", "gamma_gamma"} and all(params.values())
    again = lifetime_from_params(params, summary, HORIZON)
    fitted = fit_lifetime(summary, HORIZON)
    propensity = answer_propensity(None, profiles, summary, HORIZON, ScoreGate(1))
    pd.testing.assert_frame_equal(answer_clv(propensity, summary, again), answer_clv(propensity, summary, fitted))


def test_a_shop_too_small_to_fit_says_why():
    profiles, summary = _shop(n_buyers=20, n_browsers=5)
    lifetime = fit_lifetime(summary, HORIZON)
    assert lifetime.pareto is None and lifetime.spend is None
    clv = answer_clv(answer_propensity(None, profiles, summary, HORIZON, ScoreGate(1)), summary, lifetime)
    buyers = clv.index.isin(summary.index)
    assert (clv.loc[buyers, "status"] == "unscored").all()
    assert clv.loc[buyers, "reason"].str.contains("too few buyers").all()
    assert clv.loc[buyers, "expected_purchases"].isna().all()  # nobody is silently given numbers
