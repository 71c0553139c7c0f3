"""Pareto/NBD: the likelihood and predictions against direct integration of the model's story, the fit
against known parameters, and a one-time buyer's P(alive) falling with silence (what BG/NBD cannot say)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from models.bgnbd import BGNBD
from models.paretonbd import PARAMS as NAMES
from models.paretonbd import ParetoNBD, log_likelihood, simulate

PARAMS = (0.55, 10.58, 0.61, 11.67)  # Fader & Hardie (2005), CDNOW sample, weeks
CUSTOMERS = [(0, 0.0, 38.86), (1, 1.71, 38.86), (2, 30.43, 38.86), (7, 29.0, 32.0), (3, 5.0, 30.0)]


def _fitted(params=PARAMS) -> ParetoNBD:
    model = ParetoNBD()
    model.params_ = dict(zip(NAMES, params))
    return model


def _integrals(params, x, t_x, T, t=None):
    """Over λ ~ Gamma(r, α) and μ ~ Gamma(s, β), straight from the story (alive for an Exponential(μ)
    lifetime, Poisson(λ) purchases while alive): (likelihood, P(alive at T and data), P(alive at T,
    data and a purchase before death within t)).

    Integrated on a grid in (log λ, log μ) by the trapezoid rule, which converges geometrically for a
    smooth integrand that fades at both ends, as these do (≈1e-10 relative with this grid).
    """
    r, alpha, s, beta = params
    u = np.linspace(-60, 5, 2501)
    lam, mu = np.exp(u)[:, None], np.exp(u)[None, :]
    weight = (stats.gamma(r, scale=1 / alpha).pdf(lam) * lam) * (stats.gamma(s, scale=1 / beta).pdf(mu) * mu)

    def over(values):
        return integrate.trapezoid(integrate.trapezoid(values * weight, u, axis=1), u)

    rate = lam + mu
    alive = over(lam ** x * np.exp(-rate * T))
    dead = over(lam ** x * mu / rate * (np.exp(-rate * t_x) - np.exp(-rate * T)))
    buys = None if t is None else over(lam ** x * np.exp(-rate * T) * lam / rate * -np.expm1(-rate * t))
    return alive + dead, alive, buys


@pytest.mark.parametrize("x,t_x,T", CUSTOMERS)
def test_likelihood_p_alive_and_p_any_purchase_match_direct_integration(x, t_x, T):
    total, alive, buys = _integrals(PARAMS, x, t_x, T, t=39.0)
    args = (np.array([x], dtype=float), np.array([t_x]), np.array([T]))
    assert log_likelihood(PARAMS, *args)[0] == pytest.approx(np.log(total), abs=1e-6)
    model = _fitted()
    assert model.p_alive(*args)[0] == pytest.approx(alive / total, rel=1e-6)
    assert model.p_any_purchase(39.0, *args)[0] == pytest.approx(buys / total, rel=1e-6)


def test_likelihood_holds_whichever_of_alpha_and_beta_is_larger():
    """A₀ is written differently for α ≥ β and α < β; both branches must give the integral."""
    swapped = (0.55, 8.0, 0.61, 15.0)
    total, _, _ = _integrals(swapped, 2, 30.43, 38.86)
    ours = log_likelihood(swapped, np.array([2.0]), np.array([30.43]), np.array([38.86]))[0]
    assert ours == pytest.approx(np.log(total), abs=1e-6)


def test_expected_purchases_match_simulation_of_the_process():
    """E[purchases in (T, T+t]] of customers observed for T, averaged within groups of the same
    (x, t_x) summary, against what the simulated customers then actually bought."""
    rng = np.random.default_rng(5)
    n, T, t = 200_000, 30.0, 20.0
    r, alpha, s, beta = PARAMS
    lam = rng.gamma(r, 1 / alpha, size=n)
    mu = rng.gamma(s, 1 / beta, size=n)
    death = rng.exponential(1 / mu)
    x = rng.poisson(lam * np.minimum(death, T)).astype(float)
    future = rng.poisson(lam * np.clip(np.minimum(death, T + t) - T, 0, None))
    model = _fitted()
    # One-time buyers observed for T: recency 0, so the summary is exact for them.
    once = x == 0
    predicted = model.expected_purchases(t, x[once], np.zeros(once.sum()), np.full(once.sum(), T))
    assert predicted[0] == pytest.approx(future[once].mean(), rel=0.03)
    p_any = model.p_any_purchase(t, x[once], np.zeros(once.sum()), np.full(once.sum(), T))
    assert p_any[0] == pytest.approx((future[once] > 0).mean(), rel=0.03)


@pytest.mark.slow
def test_fit_recovers_known_parameters_from_simulated_customers():
    rng = np.random.default_rng(11)
    T = rng.uniform(20, 40, size=10_000)
    truth = (0.8, 6.0, 1.2, 20.0)
    data = simulate(truth, T, rng)
    model = ParetoNBD().fit(data["frequency"], data["recency"], data["T"])
    r, alpha, s, beta = (model.params_[k] for k in NAMES)
    # The shapes are recovered; s and beta are weakly identified one by one (a 20 % error is common at
    # this size) but not their ratio, the mean dropout rate, nor r/alpha, the mean purchase rate.
    assert (r, s) == pytest.approx((truth[0], truth[2]), rel=0.15)
    assert (r / alpha, s / beta) == pytest.approx((truth[0] / truth[1], truth[2] / truth[3]), rel=0.12)
    assert model.log_likelihood_ >= log_likelihood(truth, data["frequency"], data["recency"], data["T"]).sum()
    assert not model.at_bound_
    # Expected purchases for the whole cohort: the fitted model and the truth agree.
    t = 10.0
    ours = model.expected_purchases(t, data["frequency"], data["recency"], data["T"]).sum()
    true = _fitted(truth).expected_purchases(t, data["frequency"], data["recency"], data["T"]).sum()
    assert ours == pytest.approx(true, rel=0.03)


def test_a_one_time_buyer_fades_under_pareto_nbd_but_not_under_bgnbd():
    """Why churn risk uses Pareto/NBD: BG/NBD calls every one-time buyer alive, however long ago."""
    pareto = _fitted()
    bgnbd = BGNBD()
    bgnbd.params_ = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    T = np.array([5.0, 20.0, 60.0])
    zeros = np.zeros(3)
    p = pareto.p_alive(zeros, zeros, T)
    assert p[0] > p[1] > p[2]
    assert np.all(bgnbd.p_alive(zeros, zeros, T) == 1.0)


def test_predictions_refuse_an_unfitted_model_and_impossible_summaries():
    with pytest.raises(RuntimeError, match="fit the model first"):
        ParetoNBD().p_alive([1.0], [1.0], [2.0])
    with pytest.raises(ValueError, match="recency"):
        _fitted().p_alive([1.0], [5.0], [2.0])


def test_predict_computes_each_distinct_summary_once_with_the_same_answers():
    model = _fitted()
    rng = np.random.default_rng(2)
    x = rng.integers(0, 4, 5000).astype(float)
    T = rng.integers(10, 40, 5000).astype(float)
    t_x = np.where(x > 0, np.floor(T * rng.uniform(0, 1, 5000)), 0.0)
    alive, expected, p_any = model.predict(20.0, x, t_x, T)
    np.testing.assert_allclose(alive, model.p_alive(x, t_x, T), rtol=1e-12)
    np.testing.assert_allclose(expected, model.expected_purchases(20.0, x, t_x, T), rtol=1e-12)
    np.testing.assert_allclose(p_any, model.p_any_purchase(20.0, x, t_x, T), rtol=1e-12)
