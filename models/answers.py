"""A propensity answer for every known customer, and where each one came from.

The champion answers where the customer has what it needs; an explicit chain answers the rest, each
answer naming its `source`:

- `model`: the propensity champion, for customers that pass the gate (`ScoreGate`: at least
  NHIP_MIN_EVENTS_TO_SCORE events by the as-of). The gate is this one rule, used by training (which
  rows the model learns and is tested on), `nhip score`, the service and the report. A champion that
  blends in Pareto/NBD (`blend_input`) needs it fitted on the same buyers; where it cannot be, the
  chain below answers.
- `btyd`: BG/NBD's P(any purchase within the horizon) for buyers the model does not answer for (below
  the gate, or no champion yet). It needs no labels, only each buyer's (frequency, recency, T), and
  at least `models.bgnbd.MIN_BUYERS` buyers to fit on.
- `shop`: the shop's own rate for everyone else (people with no purchase, or a shop too small for
  BG/NBD): the share of customers already known one horizon before the as-of, and not buyers by then,
  who made a first purchase within that horizon. One number, read off the history, no model.
- `unscored`: only when none of these can be computed (no purchase in the shop at all, or no customer
  known a whole horizon before the as-of); the answer's `reason` says which.

Percentile and bucket rank every answered customer together, whatever the source, so "High" means the
top quarter of the shop's customers, not of the ones the model happened to answer for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models import paretonbd
from models.bgnbd import fit_if_enough

SOURCES = ("model", "btyd", "shop")
UNSCORED = "unscored"
BUCKETS = (("High", 0.75), ("Medium", 0.50), ("Low", 0.0))
ANSWER_COLUMNS = ("score", "source", "status", "reason", "percentile", "bucket")


@dataclass(frozen=True)
class ScoreGate:
    """Who the propensity model answers for: customers with at least `min_events` events by the as-of
    (NHIP_MIN_EVENTS_TO_SCORE). Below it the fallback chain answers."""

    min_events: int

    def model_answers(self, profiles: pd.DataFrame) -> np.ndarray:
        """A boolean per row of `profiles` (which carry `n_events`)."""
        return profiles["n_events"].to_numpy(dtype=float, na_value=0) >= self.min_events

    def describe(self) -> str:
        return f"at least {self.min_events} event{'s' if self.min_events != 1 else ''} (NHIP_MIN_EVENTS_TO_SCORE)"


def buckets_for(percentiles: np.ndarray) -> np.ndarray:
    """High / Medium / Low per percentile among answered customers (0.75 and 0.50 cut points);
    `UNSCORED` where the percentile is missing."""
    names = [name for name, _ in BUCKETS]
    conditions = [percentiles >= cut for _, cut in BUCKETS]
    return np.select(conditions, names, default=UNSCORED).astype(object)


@dataclass(frozen=True)
class ShopRate:
    """The shop's rate of first purchases within a horizon, and what it was measured on (or why not)."""

    rate: float | None
    customers: int  # non-buyers known one horizon before the as-of: the denominator
    reason: str | None = None


def shop_rate(profiles: pd.DataFrame, summary: pd.DataFrame, horizon_days: float) -> ShopRate:
    """P(first purchase within `horizon_days`) for someone who has not bought, from the history alone.

    Counted one horizon back: the customers known then (`tenure_days` ≥ horizon) who had not bought by
    then (no purchase, or a first purchase less than a horizon ago: summary `T` < horizon), and of
    them the share that bought since. `summary` holds the buyers' (frequency, recency, T) in days.
    """
    if summary.empty:
        return ShopRate(None, 0, "the shop has no purchases yet: nothing to estimate a rate from")
    first_purchase_ago = summary["T"].reindex(profiles.index).to_numpy(dtype=float)
    tenure = profiles["tenure_days"].to_numpy(dtype=float, na_value=np.nan)
    known_then = tenure >= horizon_days
    bought_before = first_purchase_ago >= horizon_days  # NaN (never bought) compares False
    at_risk = known_then & ~bought_before
    converted = at_risk & ~np.isnan(first_purchase_ago)
    n = int(at_risk.sum())
    if n == 0:
        return ShopRate(None, 0, f"no customer who had not bought was known {horizon_days:g} days before the "
                                 "as-of: the shop's history is shorter than the horizon")
    return ShopRate(float(converted.sum()) / n, n)


def btyd_scores(summary: pd.DataFrame, horizon_days: float) -> tuple[pd.Series | None, str | None]:
    """BG/NBD's P(any purchase in the next `horizon_days`) per buyer of `summary`, or None and why."""
    model = fit_if_enough(summary["frequency"], summary["recency"], summary["T"])
    if model is None:
        return None, "too few buyers (or no repeat buyer) to fit BG/NBD"
    p = model.p_any_purchase(horizon_days, summary["frequency"], summary["recency"], summary["T"])
    return pd.Series(p, index=summary.index, dtype=float), None


def blend_input(model, profiles: pd.DataFrame, summary: pd.DataFrame, horizon_days: float,
                pareto: paretonbd.ParetoNBD | None = None) -> tuple[np.ndarray | None, str | None]:
    """The model's BTYD blend input for every customer of `profiles` (None when it has no blend), or
    None and why it cannot be computed. `pareto` is Pareto/NBD fitted on `summary` (fitted here when
    not given)."""
    if model is None or not getattr(model, "blend_feature", None):
        return None, None
    if pareto is None and len(summary):
        pareto = paretonbd.fit_if_enough(summary["frequency"], summary["recency"], summary["T"])
    if pareto is None:
        return None, "too few buyers to fit Pareto/NBD, which the propensity model blends in"
    return paretonbd.expected_for(pareto, summary, profiles.index, horizon_days), None


def answer_propensity(
    model, profiles: pd.DataFrame, summary: pd.DataFrame, horizon_days: float, gate: ScoreGate,
    pareto: paretonbd.ParetoNBD | None = None,
) -> pd.DataFrame:
    """`ANSWER_COLUMNS` for every customer of `profiles` (indexed by customer_id).

    `model` is the propensity champion's estimator, or None (no champion yet: the chain answers for
    everyone). `summary` is the buyers' purchase summary as of the same instant as `profiles`; `pareto`
    the Pareto/NBD fitted on it, when the caller has one (the model's blend input, `blend_input`). A
    model whose blend input cannot be computed leaves every customer to the chain.
    Written for a whole shop at once (a million customers in about three seconds): numpy arrays
    throughout, and the summary looked up only for the customers the model leaves.
    """
    n = len(profiles)
    score = np.full(n, np.nan)
    source = np.zeros(n, dtype=np.int8)  # 0: none yet, else 1 + index in SOURCES
    reason = None
    blend, blend_missing = blend_input(model, profiles, summary, horizon_days, pareto) if n else (None, None)
    if model is not None and n and blend_missing is None:
        by_model = gate.model_answers(profiles)
        if by_model.any():
            score[by_model] = model.predict_proba(profiles, rows=None if by_model.all() else by_model,
                                                  blend=blend)[:, 1]
            source[by_model] = 1
    todo = np.isnan(score)
    if todo.any():
        # Each customer's row in the summary (-1: never bought); looked up only for those still to answer.
        position = np.full(n, -1)
        if len(summary):
            position[todo] = summary.index.get_indexer(profiles.index[todo])
        is_buyer = position >= 0
        if (todo & is_buyer).any():
            btyd, _ = btyd_scores(summary, horizon_days)
            if btyd is not None:
                use = todo & is_buyer
                score[use] = btyd.to_numpy()[position[use]]
                source[use] = 2
                todo &= ~use
        if todo.any():
            rate = shop_rate(profiles, summary, horizon_days)  # counted over everyone, not only these
            if rate.rate is not None:
                score[todo], source[todo] = rate.rate, 3
            else:
                reason = np.where(todo, rate.reason, None).astype(object)
    answered = ~np.isnan(score)
    percentile = pd.Series(score).rank(pct=True, method="average").to_numpy()
    return pd.DataFrame({
        "score": score,
        "source": pd.Categorical.from_codes(source.astype(int) - 1, categories=list(SOURCES)),
        "status": np.where(answered, "scored", UNSCORED).astype(object),
        "reason": reason if reason is not None else np.full(n, None, dtype=object),
        "percentile": percentile,
        "bucket": buckets_for(percentile),
    }, index=profiles.index)
