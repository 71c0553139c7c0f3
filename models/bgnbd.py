"""BG/NBD ("beta-geometric / negative binomial"), the published baseline for repeat purchases.

Fader, Hardie & Lee (2005), "Counting your customers the easy way", Marketing Science 24(2):

- while alive, a customer buys as a Poisson process with rate λ, and λ ~ Gamma(r, alpha) across
  customers;
- right after each repeat purchase the customer drops out for good with probability p, and
  p ~ Beta(a, b) across customers. Dropout can only happen after a purchase: someone who bought once and
  was never seen again is, to the model, alive.

The model sees three numbers per customer: `frequency` x (repeat purchases), `recency` t_x (time of the
last purchase, counted from the first) and `T` (time from the first purchase to the end of observation),
all in one time unit. It is fitted by maximum likelihood on (x, t_x, T) alone: it needs no labels, which
is why it is the baseline every propensity model here has to beat on the same split.

The estimator follows scikit-learn's conventions (parameters in `__init__`, learned state ending in `_`,
`fit` returns self); predictions take the same three arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

PARAMS = ("r", "alpha", "a", "b")
# At least this many buyers (and some repeat buyers) before a fit is trusted; fewer give parameters that
# swing from one snapshot to the next.
MIN_BUYERS = 50
# Log-parameters (time scaled to mean T = 1) stay within ±LOG_BOUND: e^9 ≈ 8,000 is far beyond any
# cohort the model describes, and keeps degenerate fits finite.
LOG_BOUND = 9.0


def log_likelihood(params, frequency, recency, T) -> np.ndarray:
    """Per-customer log-likelihood of (x, t_x, T) under BG/NBD with `params` = (r, alpha, a, b).

    FHL (2005), eq. 6: L = B(a, b+x)/B(a, b) · Γ(r+x) αʳ / (Γ(r) (α+T)^(r+x))
                         + [x > 0] · B(a+1, b+x−1)/B(a, b) · Γ(r+x) αʳ / (Γ(r) (α+t_x)^(r+x)).
    The first term is "still alive at T", the second "dropped out right after the last purchase". Both are
    summed in log space (logaddexp) so customers with many purchases do not underflow.
    """
    r, alpha, a, b = params
    x = np.asarray(frequency, dtype=float)
    t_x = np.asarray(recency, dtype=float)
    T = np.asarray(T, dtype=float)
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    alive = betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + T)
    repeat = x > 0
    dead = np.full_like(x, -np.inf)
    xr = x[repeat]
    dead[repeat] = (betaln(a + 1, b + xr - 1) - betaln(a, b)
                    - (r + xr) * np.log(alpha + t_x[repeat]))
    return common + np.logaddexp(alive, dead)


@dataclass(frozen=True)
class RFSummary:
    """Unique (x, t_x, T) rows with their counts: a cohort of thousands has far fewer distinct triples,
    so the likelihood is evaluated once per triple."""

    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    weight: np.ndarray

    @classmethod
    def of(cls, frequency, recency, T) -> RFSummary:
        frame = pd.DataFrame({"x": np.asarray(frequency, dtype=float),
                              "t_x": np.asarray(recency, dtype=float),
                              "T": np.asarray(T, dtype=float)})
        counts = frame.value_counts(sort=False).reset_index(name="n")
        return cls(counts["x"].to_numpy(), counts["t_x"].to_numpy(), counts["T"].to_numpy(),
                   counts["n"].to_numpy(dtype=float))


def _check(frequency, recency, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(frequency, dtype=float)
    t_x = np.asarray(recency, dtype=float)
    T = np.asarray(T, dtype=float)
    if not (x.shape == t_x.shape == T.shape):
        raise ValueError("frequency, recency and T must have the same length")
    if np.isnan(x).any() or np.isnan(t_x).any() or np.isnan(T).any():
        raise ValueError("frequency, recency and T must not be missing")
    if (x < 0).any() or (t_x < 0).any() or (t_x > T + 1e-9).any():
        raise ValueError("need 0 ≤ frequency and 0 ≤ recency ≤ T for every customer")
    if ((x == 0) & (t_x > 0)).any():
        raise ValueError("a customer without repeat purchases must have recency 0")
    return x, t_x, T


class BTYDModel:
    """What BG/NBD and Pareto/NBD share: maximum-likelihood fitting over (frequency, recency, T) and
    the fitted parameters. A subclass names its parameters (`PARAMS`), its per-customer likelihood, the
    parameters with a time unit and the optimiser's starts.

    `penalizer` adds `penalizer · Σ params²` to the negative mean log-likelihood (0 = plain MLE, as in the
    papers); a small value keeps the optimiser away from degenerate corners on tiny cohorts.
    """

    PARAMS: tuple[str, ...] = ()
    TIME_PARAMS: tuple[int, ...] = ()
    STARTS: tuple[tuple[float, ...], ...] = ()
    SIMPLEX_FIRST = True

    @staticmethod
    def likelihood(params, frequency, recency, T) -> np.ndarray:
        raise NotImplementedError

    def __init__(self, penalizer: float = 0.0, max_iter: int = 2000):
        self.penalizer = penalizer
        self.max_iter = max_iter

    def fit(self, frequency, recency, T):
        """Maximise the log-likelihood (`maximise_likelihood`). On data the model does not fit (everyone
        buying like clockwork) the likelihood keeps rising towards a corner of the parameter space; the
        search stops at `LOG_BOUND` and `at_bound_` says so."""
        x, t_x, T = _check(frequency, recency, T)
        fitted, at_bound = maximise_likelihood(type(self).likelihood, x, t_x, T, time_params=self.TIME_PARAMS,
                                               starts=[np.log(start) for start in self.STARTS],
                                               penalizer=self.penalizer, max_iter=self.max_iter,
                                               simplex_first=self.SIMPLEX_FIRST)
        self.params_ = dict(zip(self.PARAMS, fitted))
        self.log_likelihood_ = float(self.log_likelihood(x, t_x, T).sum())
        self.n_customers_ = int(len(x))
        self.at_bound_ = at_bound
        return self

    def _params(self) -> tuple[float, ...]:
        if not hasattr(self, "params_"):
            raise RuntimeError("fit the model first")
        return tuple(self.params_[k] for k in self.PARAMS)

    def log_likelihood(self, frequency, recency, T) -> np.ndarray:
        """Per-customer log-likelihood under the fitted parameters."""
        return type(self).likelihood(self._params(), *_check(frequency, recency, T))


class BGNBD(BTYDModel):
    """BG/NBD fitted by maximum likelihood; alpha is the parameter with a time unit. On data it does not
    fit the likelihood rises towards r, alpha → ∞ or a, b → 0."""

    PARAMS = PARAMS
    TIME_PARAMS = (1,)
    STARTS = ((1.0, 1.0, 1.0, 1.0), (0.5, 0.5, 0.8, 2.5))
    likelihood = staticmethod(log_likelihood)

    # -- predictions ------------------------------------------------------------------------------------

    def p_alive(self, frequency, recency, T) -> np.ndarray:
        """P(still alive at T | x, t_x, T) (FHL 2005, eq. 11).

        1 / (1 + [x > 0] · a/(b+x−1) · ((α+T)/(α+t_x))^(r+x)). It is 1 for every one-time buyer (they
        cannot have dropped out yet), so it must not be used on its own to rank customers.
        """
        r, alpha, a, b = self._params()
        x, t_x, T = _check(frequency, recency, T)
        odds = np.zeros_like(x)
        repeat = x > 0
        xr = x[repeat]
        odds[repeat] = np.exp(np.log(a) - np.log(b + xr - 1)
                              + (r + xr) * (np.log(alpha + T[repeat]) - np.log(alpha + t_x[repeat])))
        return 1.0 / (1.0 + odds)

    def expected_purchases(self, t: float, frequency, recency, T) -> np.ndarray:
        """E[number of purchases in (T, T+t] | x, t_x, T] (FHL 2005, eq. 10).

        (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) · ₂F₁(r+x, b+x; a+b+x−1; t/(α+T+t))] · P(alive).
        The hypergeometric function is evaluated with scipy's `hyp2f1`; the expression stays valid for
        a < 1 (both factors change sign together).
        """
        r, alpha, a, b = self._params()
        x, t_x, T = _check(frequency, recency, T)
        z = t / (alpha + T + t)
        head = (a + b + x - 1) / (a - 1)
        tail = 1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
        return head * tail * self.p_alive(x, t_x, T)

    def p_any_purchase(self, t: float, frequency, recency, T) -> np.ndarray:
        """P(at least one purchase in (T, T+t] | x, t_x, T) = P(alive) · (1 − ((α+T)/(α+T+t))^(r+x)).

        Why: a customer who is dead at T never buys again. One who is alive at T stays alive at least
        until their next purchase, because dropout only happens right after a purchase; so "any purchase
        in the next t" is exactly "the Poisson clock rings within t", with probability 1 − e^(−λt).
        Given alive at T, the data's likelihood in λ is λˣ e^(−λT) (the alive term of the likelihood), so
        λ | data, alive ~ Gamma(r+x, α+T), and E[e^(−λt)] under that Gamma is ((α+T)/(α+T+t))^(r+x).
        Unlike the expected number of purchases, this is a probability: it can be scored with the Brier
        score and log-loss against "bought in the window" labels.
        """
        r, alpha, a, b = self._params()
        x, t_x, T = _check(frequency, recency, T)
        silent = ((alpha + T) / (alpha + T + t)) ** (r + x)
        return self.p_alive(x, t_x, T) * (1.0 - silent)

    def expected_purchases_new(self, t: float) -> float:
        """E[purchases in (0, t]] for a customer just acquired (FHL 2005, eq. 7)."""
        r, alpha, a, b = self._params()
        z = t / (alpha + t)
        return float((a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, z)))

    def simulate(self, T, rng: np.random.Generator) -> pd.DataFrame:
        """Draw (frequency, recency, T) from the fitted process, for customers observed for `T`."""
        return simulate(self._params(), T, rng)


def maximise_likelihood(
    log_likelihood, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, *, time_params: tuple[int, ...],
    starts, penalizer: float, max_iter: int, simplex_first: bool = True,
) -> tuple[list[float], bool]:
    """Maximum-likelihood parameters of a BTYD model and whether one of them ended at `LOG_BOUND`.

    Shared by BG/NBD and Pareto/NBD, whose fits differ only in their likelihood. The search runs over
    log-parameters, so every parameter stays positive, with time rescaled so that the mean T is 1: the
    parameters at `time_params` are the ones with a time unit (they scale like time), so every start is
    sensible whatever the unit. Each start runs Nelder-Mead (unless `simplex_first` is off: it costs
    hundreds of likelihood evaluations, too many for a slow likelihood), then L-BFGS-B within
    ±`LOG_BOUND`: on data
    a model does not fit (everyone buying like clockwork) the likelihood keeps rising towards a corner,
    and an unbounded optimiser returns parameters whose predictions are not numbers.
    """
    if len(x) == 0:
        raise ValueError("no customers to fit")
    scale = float(np.mean(T)) or 1.0
    data = RFSummary.of(x, t_x / scale, T / scale)
    total = data.weight.sum()

    def objective(log_params: np.ndarray) -> float:
        params = np.exp(log_params)
        with np.errstate(invalid="ignore", over="ignore"):  # far corners are not numbers: scored 1e10
            ll = log_likelihood(params, data.x, data.t_x, data.T)
        value = -(data.weight @ ll) / total + penalizer * float(params @ params)
        return value if np.isfinite(value) else 1e10

    best = None
    for start in starts:
        if simplex_first:
            start = minimize(objective, start, method="Nelder-Mead",
                             options={"maxiter": max_iter, "xatol": 1e-7, "fatol": 1e-10}).x
        result = minimize(objective, np.clip(start, -LOG_BOUND, LOG_BOUND), method="L-BFGS-B",
                          bounds=[(-LOG_BOUND, LOG_BOUND)] * len(start))
        if best is None or result.fun < best.fun:
            best = result
    params = np.exp(best.x)
    params[list(time_params)] *= scale
    return [float(v) for v in params], bool(np.any(np.abs(best.x) > LOG_BOUND - 1e-3))


# A fit reads at most this many buyers, drawn at random (seeded): the four parameters are as precise from
# 100k buyers as from millions, and the fit's time grows with the distinct (x, t_x, T) it sees.
MAX_FIT_BUYERS = 100_000


def fit_sample(frequency, recency, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The buyers a fit reads: all of them up to `MAX_FIT_BUYERS`, else that many drawn at random."""
    x, t_x, T = (np.asarray(a, dtype=float) for a in (frequency, recency, T))
    if len(x) <= MAX_FIT_BUYERS:
        return x, t_x, T
    keep = np.random.default_rng(0).choice(len(x), MAX_FIT_BUYERS, replace=False)
    return x[keep], t_x[keep], T[keep]


def fit_if_enough(frequency, recency, T, model: type[BTYDModel] | None = None) -> BTYDModel | None:
    """`model` (default BG/NBD) fitted on the buyers given (`fit_sample` of them), or None when there are
    fewer than `MIN_BUYERS` or no repeat buyer at all (the fit would say nothing about dropout)."""
    x = np.asarray(frequency, dtype=float)
    if len(x) < MIN_BUYERS or not (x > 0).any():
        return None
    return (model or BGNBD)().fit(*fit_sample(frequency, recency, T))


def simulate(params, T, rng: np.random.Generator) -> pd.DataFrame:
    """(frequency, recency, T) of customers following BG/NBD with `params` = (r, alpha, a, b).

    Each customer draws λ and p, then purchase gaps ~ Exponential(λ); after each repeat purchase a coin
    with probability p ends them. Used by the tests to check that `fit` recovers known parameters.
    """
    r, alpha, a, b = params
    T = np.asarray(T, dtype=float)
    lam = rng.gamma(r, 1.0 / alpha, size=len(T))
    p = rng.beta(a, b, size=len(T))
    x = np.zeros(len(T))
    t_x = np.zeros(len(T))
    for i in range(len(T)):
        now, n = 0.0, 0
        while True:
            now += rng.exponential(1.0 / lam[i])
            if now > T[i]:
                break
            n += 1
            t_x[i] = now
            if rng.random() < p[i]:
                break
        x[i] = n
    return pd.DataFrame({"frequency": x, "recency": t_x, "T": T})
