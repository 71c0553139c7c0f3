"""Pareto/NBD, the original BTYD model (Schmittlein, Morrison & Colombo 1987).

- while alive, a customer buys as a Poisson process with rate λ, λ ~ Gamma(r, alpha) across customers;
- each customer's lifetime is Exponential(μ), μ ~ Gamma(s, beta) across customers: dropout can happen at
  any moment, not only right after a purchase as in BG/NBD.

That difference is why it is here beside BG/NBD: to BG/NBD a one-time buyer is alive for ever, so its
P(alive) cannot rank them; under Pareto/NBD the longer someone stays silent, the likelier they are gone,
purchases or not. Churn risk (`models.clv`) is read off this model for that reason.

The formulas follow Fader & Hardie (2005), "A note on deriving the Pareto/NBD model and related
expressions". Like BG/NBD it sees (frequency x, recency t_x, T) only, is fitted by maximum likelihood
(`models.bgnbd.maximise_likelihood`) and needs no labels; predictions take the same three arrays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit, gammaln, hyp2f1

from models import bgnbd
from models.bgnbd import BTYDModel, _check

PARAMS = ("r", "alpha", "s", "beta")
# Nodes of the Gauss-Legendre rule for P(any purchase) (an integral over the next t days of a smooth,
# decreasing integrand): 48 nodes agree with adaptive quadrature to 1e-9 on the published CDNOW fit.
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(48)


def _log_hyp2f1_shifted(a: np.ndarray, b: np.ndarray, z: np.ndarray) -> np.ndarray:
    """log ₂F₁(a, b; a+1; z) for 0 ≤ z < 1, through Euler's transformation.

    ₂F₁(a, b; a+1; z) = (1−z)^(1−b) · ₂F₁(1, a+1−b; a+1; z). The second factor's series has positive
    terms whose ratio stays below z, so it is finite and accurate even where the first diverges
    (b = r+x large, z near 1); the diverging part is then taken in logs.
    """
    return (1.0 - b) * np.log1p(-z) + np.log(hyp2f1(1.0, a + 1.0 - b, a + 1.0, z))


def _log_terms(params, x: np.ndarray, t_x: np.ndarray, T: np.ndarray):
    """The log of the likelihood's two terms, without their common factor Γ(r+x) αʳ βˢ / Γ(r).

    `alive`: λˣ e^(−(λ+μ)T) integrated: 1 / ((α+T)^(r+x) (β+T)^s), the customer is alive at T.
    `dead`: log(s/(r+s+x) · A₀), the customer died between t_x and T (A₀ = 0 when t_x = T).
    A₀ is the difference of one function at t_x and at T, with the hypergeometric arguments written in
    whichever of α, β is larger so that z stays in [0, 1).
    """
    r, alpha, s, beta = params
    rsx = r + s + x
    alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    if alpha >= beta:
        big, b, gap = alpha, s + 1.0, alpha - beta
    else:
        big, b, gap = beta, r + x, beta - alpha

    def term(t):
        return _log_hyp2f1_shifted(rsx, b, gap / (big + t)) - rsx * np.log(big + t)

    at_tx, at_T = term(t_x), term(T)
    with np.errstate(divide="ignore"):
        log_a0 = at_tx + np.log(-np.expm1(np.minimum(at_T - at_tx, 0.0)))
    dead = np.log(s) - np.log(rsx) + log_a0
    return alive, dead


def log_likelihood(params, frequency, recency, T) -> np.ndarray:
    """Per-customer log-likelihood of (x, t_x, T) under Pareto/NBD with `params` = (r, alpha, s, beta)
    (Fader & Hardie 2005, eq. 22), summed in log space so that many purchases do not underflow."""
    r, alpha, s, beta = params
    x = np.asarray(frequency, dtype=float)
    alive, dead = _log_terms(params, x, np.asarray(recency, dtype=float), np.asarray(T, dtype=float))
    return gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta) + np.logaddexp(alive, dead)


class ParetoNBD(BTYDModel):
    """Pareto/NBD fitted by maximum likelihood; the same interface as `models.bgnbd.BGNBD`.

    alpha and beta carry the time unit. The likelihood is slow (two hypergeometric functions per
    customer), so the search skips the simplex and goes straight to L-BFGS-B from two starts: the same
    optimum on CDNOW, in 2 s instead of 30. `at_bound_` says a parameter ended at the search's bound: on
    CDNOW-like data that is usually s, beta → ∞ together (lifetimes of one common length), a degenerate
    but usable fit.
    """

    PARAMS = PARAMS
    TIME_PARAMS = (1, 3)
    STARTS = ((1.0, 1.0, 1.0, 1.0), (0.5, 1.0, 0.5, 1.0))
    SIMPLEX_FIRST = False
    likelihood = staticmethod(log_likelihood)

    def predict(self, t: float, frequency, recency, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(P(alive), expected purchases in t, P(any purchase in t)) per customer, each computed once per
        distinct (x, t_x, T): a shop's million buyers in whole days hold far fewer distinct summaries,
        and each prediction costs two hypergeometric functions and a quadrature."""
        x, t_x, T = _check(frequency, recency, T)
        # A group number per row (in order of first appearance), and each group's first row.
        codes = pd.DataFrame({"x": x, "t_x": t_x, "T": T}).groupby(["x", "t_x", "T"], sort=False).ngroup()
        codes = codes.to_numpy()
        first = np.unique(codes, return_index=True)[1]
        ux, ut, uT = x[first], t_x[first], T[first]
        alive = self.p_alive(ux, ut, uT)
        expected = self._expected(t, ux, uT, alive)
        p_any = self._any_given_alive(t, ux, uT) * alive
        return alive[codes], expected[codes], p_any[codes]

    def p_alive(self, frequency, recency, T) -> np.ndarray:
        """P(alive at T | x, t_x, T) (Fader & Hardie 2005, eq. 18): the alive term's share of the
        likelihood. Unlike BG/NBD's, it falls with silence for one-time buyers too."""
        x, t_x, T = _check(frequency, recency, T)
        alive, dead = _log_terms(self._params(), x, t_x, T)
        return expit(alive - dead)

    def expected_purchases(self, t: float, frequency, recency, T) -> np.ndarray:
        """E[purchases in (T, T+t] | x, t_x, T] (Fader & Hardie 2005, eq. 19):

        (r+x)(β+T) / ((α+T)(s−1)) · [1 − ((β+T)/(β+T+t))^(s−1)] · P(alive).
        Written as −expm1((s−1)·log q)/(s−1), q = (β+T)/(β+T+t), which has the limit −log q at s = 1.
        """
        x, t_x, T = _check(frequency, recency, T)
        return self._expected(t, x, T, self.p_alive(x, t_x, T))

    def _expected(self, t: float, x: np.ndarray, T: np.ndarray, alive: np.ndarray) -> np.ndarray:
        r, alpha, s, beta = self._params()
        log_q = np.log(beta + T) - np.log(beta + T + t)
        factor = -log_q if abs(s - 1.0) < 1e-9 else -np.expm1((s - 1.0) * log_q) / (s - 1.0)
        return (r + x) * (beta + T) / (alpha + T) * factor * alive

    def p_any_purchase(self, t: float, frequency, recency, T) -> np.ndarray:
        """P(at least one purchase in (T, T+t] | x, t_x, T).

        Why this form: given alive at T, the data's likelihood is λˣ e^(−λT) · e^(−μT), so λ ~ Gamma(r+x,
        α+T) and μ ~ Gamma(s, β+T), independently. For given λ and μ the next purchase comes before both
        death and t with probability ∫₀ᵗ λ e^(−(λ+μ)u) du, so averaging inside the integral,

            P(any | alive) = ∫₀ᵗ (r+x)/(α+T+u) · ((α+T)/(α+T+u))^(r+x) · ((β+T)/(β+T+u))^s du,

        evaluated by Gauss-Legendre quadrature, times P(alive).
        """
        x, t_x, T = _check(frequency, recency, T)
        return self._any_given_alive(t, x, T) * self.p_alive(x, t_x, T)

    def _any_given_alive(self, t: float, x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, s, beta = self._params()
        u = (t / 2.0) * (_NODES + 1.0)  # nodes on (0, t)
        k, a, b = (r + x)[:, None], (alpha + T)[:, None], (beta + T)[:, None]
        integrand = k / (a + u) * np.exp(k * (np.log(a) - np.log(a + u)) + s * (np.log(b) - np.log(b + u)))
        return (integrand @ _WEIGHTS) * (t / 2.0)


# The propensity model's BTYD input (`models.propensity.PropensityModel`, its `blend_feature`): Pareto/NBD's
# expected purchase days in the label window, fitted on the snapshot's own buyers; 0 for non-buyers.
BLEND_FEATURE = "pareto_nbd_expected_h"


def expected_for(model: ParetoNBD, summary, customers, window_days) -> np.ndarray:
    """E[purchase days in the next `window_days`] for each of `customers` (an index of customer ids),
    from their row of the purchase `summary` (frequency, recency, T); 0 for a customer not in it, who
    never bought. `window_days` is one number or one per customer."""
    out = np.zeros(len(customers))
    position = summary.index.get_indexer(customers) if len(summary) else np.full(len(customers), -1)
    buyer = position >= 0
    if not buyer.any():
        return out
    rows = summary.iloc[position[buyer]]
    windows = np.broadcast_to(np.asarray(window_days, dtype=float), (len(customers),))[buyer]
    args = (rows["frequency"].to_numpy(), rows["recency"].to_numpy(), rows["T"].to_numpy())
    values = np.empty(len(rows))
    for window in np.unique(windows):  # a handful of label windows at most
        same = windows == window
        values[same] = model.predict(window, *(a[same] for a in args))[1]
    out[buyer] = values
    return out


def fit_if_enough(frequency, recency, T) -> ParetoNBD | None:
    """Pareto/NBD fitted on the buyers given, under the same rule and sample as BG/NBD's
    (`models.bgnbd.fit_if_enough`)."""
    return bgnbd.fit_if_enough(frequency, recency, T, model=ParetoNBD)


def simulate(params, T, rng: np.random.Generator):
    """(frequency, recency, T) of customers following Pareto/NBD with `params` = (r, alpha, s, beta):
    each draws λ and a lifetime τ ~ Exponential(μ), then buys as a Poisson process until min(τ, T)."""
    r, alpha, s, beta = params
    T = np.asarray(T, dtype=float)
    lam = rng.gamma(r, 1.0 / alpha, size=len(T))
    mu = rng.gamma(s, 1.0 / beta, size=len(T))
    end = np.minimum(rng.exponential(1.0 / mu), T)
    x = rng.poisson(lam * end).astype(float)
    # The clock starts at the first purchase; given the number of repeat purchases in (0, end], their
    # times are uniform there, and recency is the latest.
    t_x = np.zeros(len(T))
    for i in np.flatnonzero(x > 0):
        t_x[i] = rng.uniform(0, end[i], size=int(x[i])).max()
    return pd.DataFrame({"frequency": x, "recency": t_x, "T": T})
