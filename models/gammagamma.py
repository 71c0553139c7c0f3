"""Gamma-Gamma, the spend-per-purchase model paired with BG/NBD or Pareto/NBD for lifetime value.

Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves for customer base analysis", and
Fader & Hardie (2013), "The Gamma-Gamma model of monetary value":

- each purchase of a customer is worth z ~ Gamma(p, ν), with mean p/ν fixed for that customer;
- ν ~ Gamma(q, γ) across customers, so the mean spend per purchase varies between customers.

A customer's observed mean spend m_x over x repeat purchases then has a closed-form marginal likelihood,
and their expected spend per future purchase is a weighted mean of the shop's mean and their own:
E[M | x, m_x] = p(γ + x m_x) / (px + q − 1). With few purchases it leans on the shop, with many on the
customer. It assumes spend is independent of purchase frequency, the usual caveat; it is fitted on
repeat buyers only (x ≥ 1 repeat day with a positive mean), the first purchase left out.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln

from models.bgnbd import LOG_BOUND, MAX_FIT_BUYERS

PARAMS = ("p", "q", "gamma")
# Repeat buyers with a spend before a fit is trusted.
MIN_REPEAT_BUYERS = 20


def log_likelihood(params, frequency, monetary) -> np.ndarray:
    """Per-customer log density of the mean spend m_x of x purchases (Fader & Hardie 2013, eq. 3):

    Γ(px+q) / (Γ(px) Γ(q)) · γ^q · m_x^(px−1) · x^(px) / (γ + x m_x)^(px+q).
    """
    p, q, gamma = params
    x = np.asarray(frequency, dtype=float)
    m = np.asarray(monetary, dtype=float)
    px = p * x
    return (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(gamma)
            + (px - 1) * np.log(m) + px * np.log(x) - (px + q) * np.log(gamma + x * m))


def _usable(frequency, monetary) -> tuple[np.ndarray, np.ndarray]:
    """The repeat buyers with a positive mean spend: the rows Gamma-Gamma describes."""
    x = np.asarray(frequency, dtype=float)
    m = np.asarray(monetary, dtype=float)
    keep = (x > 0) & np.isfinite(m) & (m > 0)
    return x[keep], m[keep]


class GammaGamma:
    """Gamma-Gamma fitted by maximum likelihood on (frequency, monetary) of repeat buyers."""

    def fit(self, frequency, monetary) -> GammaGamma:
        """Maximise the likelihood over log(p, q, γ), money rescaled to a mean spend of 1 (γ carries the
        money unit), within ±`LOG_BOUND`. Rows that are not repeat buyers with a spend are ignored."""
        x, m = _usable(frequency, monetary)
        if len(x) == 0:
            raise ValueError("no repeat buyer with a spend to fit Gamma-Gamma on")
        scale = float(m.mean())

        def objective(log_params: np.ndarray) -> float:
            value = -log_likelihood(np.exp(log_params), x, m / scale).mean()
            return value if np.isfinite(value) else 1e10

        best = None
        for start in (np.log([1.0, 3.0, 2.0]), np.log([5.0, 4.0, 10.0])):
            result = minimize(objective, start, method="L-BFGS-B", bounds=[(-LOG_BOUND, LOG_BOUND)] * 3)
            if best is None or result.fun < best.fun:
                best = result
        p, q, gamma = np.exp(best.x)
        self.params_ = {"p": float(p), "q": float(q), "gamma": float(gamma * scale)}
        self.n_customers_ = int(len(x))
        self.at_bound_ = bool(np.any(np.abs(best.x) > LOG_BOUND - 1e-3))
        return self

    def _params(self) -> tuple[float, float, float]:
        if not hasattr(self, "params_"):
            raise RuntimeError("fit the model first")
        return tuple(self.params_[k] for k in PARAMS)  # type: ignore[return-value]

    def population_mean(self) -> float:
        """The shop's mean spend per purchase, E[p/ν] = pγ / (q − 1) (infinite when q ≤ 1)."""
        p, q, gamma = self._params()
        return p * gamma / (q - 1) if q > 1 else float("inf")

    def expected_spend(self, frequency, monetary) -> np.ndarray:
        """E[spend per future purchase | x, m_x] = p(γ + x m_x) / (px + q − 1).

        For a customer with no repeat spend (x = 0 or m_x missing) that is the shop's mean.
        """
        p, q, gamma = self._params()
        x = np.asarray(frequency, dtype=float)
        m = np.asarray(monetary, dtype=float)
        known = (x > 0) & np.isfinite(m) & (m > 0)
        x, m = np.where(known, x, 0.0), np.where(known, m, 0.0)
        return p * (gamma + x * m) / (p * x + q - 1)


def fit_if_enough(frequency, monetary) -> GammaGamma | None:
    """Gamma-Gamma on the repeat buyers with a spend, or None when there are fewer than
    `MIN_REPEAT_BUYERS` of them, or the fit has no finite mean (q ≤ 1)."""
    x, m = _usable(frequency, monetary)
    if len(x) < MIN_REPEAT_BUYERS:
        return None
    if len(x) > MAX_FIT_BUYERS:  # as for BG/NBD: a seeded sample is as precise, and bounded in time
        keep = np.random.default_rng(0).choice(len(x), MAX_FIT_BUYERS, replace=False)
        x, m = x[keep], m[keep]
    model = GammaGamma().fit(x, m)
    return model if np.isfinite(model.population_mean()) else None


def simulate(params, frequency, rng: np.random.Generator) -> np.ndarray:
    """Mean spend of `frequency` purchases per customer under Gamma-Gamma `params` = (p, q, γ)."""
    p, q, gamma = params
    x = np.asarray(frequency, dtype=int)
    nu = rng.gamma(q, 1.0 / gamma, size=len(x))
    # The sum of x Gamma(p, ν) purchases is Gamma(px, ν).
    return rng.gamma(p * x, 1.0 / nu) / x
