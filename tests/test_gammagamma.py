"""Gamma-Gamma: the density against integration over the model's story, the fit against known
parameters, and the expected spend per purchase against what simulated customers then spend."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from models.gammagamma import PARAMS as NAMES
from models.gammagamma import GammaGamma, fit_if_enough, log_likelihood, simulate

PARAMS = (6.25, 3.74, 15.44)  # Fader, Hardie & Lee (2005), CDNOW sample, dollars


def _fitted(params=PARAMS) -> GammaGamma:
    model = GammaGamma()
    model.params_ = dict(zip(NAMES, params))
    return model


@pytest.mark.parametrize("x,m", [(1, 20.0), (3, 35.5), (10, 12.0)])
def test_density_matches_integration_over_the_customers_rate(x, m):
    """The mean of x purchases of Gamma(p, ν) is Gamma(px, xν); ν ~ Gamma(q, γ) integrated out."""
    p, q, gamma = PARAMS
    density = integrate.quad(lambda nu: stats.gamma(p * x, scale=1 / (x * nu)).pdf(m)
                             * stats.gamma(q, scale=1 / gamma).pdf(nu), 0, np.inf, limit=500)[0]
    assert log_likelihood(PARAMS, [x], [m])[0] == pytest.approx(np.log(density), abs=1e-7)


def test_fit_recovers_parameters_and_predicts_future_spend():
    rng = np.random.default_rng(4)
    x = rng.integers(1, 8, size=30_000)
    truth = (4.0, 5.0, 40.0)
    m = simulate(truth, x, rng)
    model = GammaGamma().fit(x, m)
    assert [model.params_[k] for k in NAMES] == pytest.approx(truth, rel=0.1)
    assert model.population_mean() == pytest.approx(4.0 * 40.0 / 4.0, rel=0.03)
    # The next purchase of customers with the same (x, m_x) band, drawn from their own ν: the
    # conditional expectation tracks it where the raw mean m_x overshoots (regression to the mean).
    p, q, gamma = truth
    nu = rng.gamma(q + p * x, 1 / (gamma + x * m))  # ν | x, m_x under the truth
    future = rng.gamma(p, 1 / nu)
    high = m > np.quantile(m, 0.9)
    predicted = model.expected_spend(x[high], m[high]).mean()
    assert predicted == pytest.approx(future[high].mean(), rel=0.03)
    assert m[high].mean() > 1.1 * future[high].mean()


def test_customers_without_repeat_spend_get_the_shop_mean():
    model = _fitted()
    spend = model.expected_spend([0, 2, 2], [np.nan, np.nan, 30.0])
    assert spend[0] == spend[1] == pytest.approx(model.population_mean())
    assert spend[2] != pytest.approx(model.population_mean())


def test_too_few_repeat_buyers_fit_nothing():
    assert fit_if_enough([0, 1, 2], [np.nan, 10.0, 12.0]) is None
    with pytest.raises(ValueError, match="no repeat buyer"):
        GammaGamma().fit([0, 0], [np.nan, np.nan])
