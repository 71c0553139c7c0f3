"""Churn and lifetime value over a horizon, for every known customer, and where each answer came from.

Per customer: P(alive), expected purchase days and expected spend in the next `horizon_days`, and a
churn risk (High / Medium / Low). Built from three parts, all fitted on the same purchase summary
(`features.profile.repeat_purchases.purchase_summary`) and needing no labels:

- **Pareto/NBD** (`models.paretonbd`) for P(alive) and for how many purchase days a buyer makes in the
  horizon. Pareto/NBD, not BG/NBD, because its P(alive) falls with silence for one-time buyers too;
  to BG/NBD a customer who bought once, years ago, is certainly alive.
- **Gamma-Gamma** (`models.gammagamma`) for the spend per purchase day.
- **The propensity answer** (`models.answers.answer_propensity`) for whether a customer buys at all.
  Where the propensity model answers, expected purchases are P_model(any purchase) × E[purchase days |
  at least one], the second factor from Pareto/NBD. Why: the learned model ranks "buys at all" better
  than Pareto/NBD does (BENCHMARKS.md, CDNOW), and that is most of who spends; how much someone buys
  once they buy is what Pareto/NBD and Gamma-Gamma describe well.

`source` says who answered expected purchases and spend, as for propensity:

- `model`: the propensity champion × Pareto/NBD's purchases given any × Gamma-Gamma's spend;
- `btyd`: Pareto/NBD × Gamma-Gamma alone (buyers the model does not answer for, or no champion);
- `shop`: people who never bought, answered by the shop's first-purchase rate (`models.answers`) ×
  the purchase days new buyers make in their first horizon × the shop's mean spend.
- `unscored`: nothing usable (no propensity answer for a non-buyer, or too few buyers to fit Pareto/NBD
  on); `reason` says which.

P(alive) and churn risk are Pareto/NBD's whatever the source, and exist for buyers only: someone who
never bought cannot churn, and their churn risk is missing with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models import gammagamma, paretonbd
from models.answers import UNSCORED

CLV_COLUMNS = ("p_alive", "expected_purchases", "expected_spend", "churn_risk", "source", "status", "reason")
# Churn risk from P(alive): below 0.5 the customer is more likely gone than not (High); below 0.8, a
# real chance of it (Medium); otherwise Low.
CHURN_RISK = (("High", 0.5), ("Medium", 0.8))
AT_RISK = "High"
NEVER_BOUGHT = "never bought: churn risk applies to buyers"


@dataclass(frozen=True)
class LifetimeModels:
    """Pareto/NBD and Gamma-Gamma fitted on one purchase summary (None where too few buyers), and the
    purchase days new buyers made in their first horizon (for customers who have not bought yet)."""

    pareto: paretonbd.ParetoNBD | None
    spend: gammagamma.GammaGamma | None
    new_buyer_days: float
    horizon_days: float

    def params(self) -> dict[str, dict[str, float] | None]:
        """The fitted parameters (no customer data), as a feature build records them and MLflow logs them."""
        return {"pareto_nbd": dict(self.pareto.params_) if self.pareto else None,
                "gamma_gamma": dict(self.spend.params_) if self.spend else None}


def _new_buyer_days(summary: pd.DataFrame, horizon_days: float) -> float:
    """Purchase days so far of the customers whose first purchase is less than a horizon old: what a
    new buyer does in a first horizon (1 when there is none)."""
    recent = summary[summary["T"] <= horizon_days] if len(summary) else summary
    return float((1 + recent["frequency"]).mean()) if len(recent) else 1.0


def fit_lifetime(summary: pd.DataFrame, horizon_days: float,
                 pareto: paretonbd.ParetoNBD | None = None) -> LifetimeModels:
    """Fit both models on `summary` (frequency, recency, T in days, and monetary); `pareto`, when given,
    is Pareto/NBD already fitted on this summary (the propensity blend's)."""
    if pareto is None and len(summary):
        pareto = paretonbd.fit_if_enough(summary["frequency"], summary["recency"], summary["T"])
    spend = gammagamma.fit_if_enough(summary["frequency"], summary["monetary"]) if len(summary) else None
    return LifetimeModels(pareto, spend, _new_buyer_days(summary, horizon_days), float(horizon_days))


def lifetime_params(summary: pd.DataFrame) -> dict[str, dict[str, float] | None]:
    """Both models fitted on `summary`, as parameters (what a feature build records); the horizon
    plays no part in the fits."""
    return fit_lifetime(summary, horizon_days=1.0).params()


def lifetime_from_params(params: dict, summary: pd.DataFrame, horizon_days: float) -> LifetimeModels:
    """The models a feature build fitted (`LifetimeModels.params`), without fitting again."""
    pareto = spend = None
    if params.get("pareto_nbd"):
        pareto = paretonbd.ParetoNBD()
        pareto.params_ = dict(params["pareto_nbd"])
    if params.get("gamma_gamma"):
        spend = gammagamma.GammaGamma()
        spend.params_ = dict(params["gamma_gamma"])
    return LifetimeModels(pareto, spend, _new_buyer_days(summary, horizon_days), float(horizon_days))


def churn_risk_for(p_alive: np.ndarray) -> np.ndarray:
    """High / Medium / Low per P(alive) (`CHURN_RISK`); None where P(alive) is missing."""
    high, medium = (cut for _, cut in CHURN_RISK)
    risk = np.select([p_alive < high, p_alive < medium, p_alive >= medium], ["High", "Medium", "Low"],
                     default="")
    return np.where(risk == "", None, risk).astype(object)


def answer_clv(propensity: pd.DataFrame, summary: pd.DataFrame, lifetime: LifetimeModels) -> pd.DataFrame:
    """`CLV_COLUMNS` for every customer of `propensity` (an `answer_propensity` frame for the same
    customers and instant, indexed by customer_id); `summary` is the buyers' purchase summary."""
    n = len(propensity)
    h = lifetime.horizon_days
    p_alive = np.full(n, np.nan)
    purchases = np.full(n, np.nan)
    spend = np.full(n, np.nan)
    source = np.full(n, None, dtype=object)
    reason = np.full(n, None, dtype=object)

    position = summary.index.get_indexer(propensity.index) if len(summary) else np.full(n, -1)
    buyer = position >= 0
    score = propensity["score"].to_numpy(dtype=float)
    by_model = (propensity["source"] == "model").to_numpy()
    mean_spend = lifetime.spend.population_mean() if lifetime.spend else np.nan

    if buyer.any() and lifetime.pareto is not None:
        rows = summary.iloc[position[buyer]]
        args = (rows["frequency"].to_numpy(), rows["recency"].to_numpy(), rows["T"].to_numpy())
        p_alive[buyer], expected, p_any = lifetime.pareto.predict(h, *args)
        # E[purchase days | at least one]: ≥ 1 by definition; where P(any) underflows, one.
        given_any = np.where(p_any > 1e-12, expected / np.maximum(p_any, 1e-12), 1.0)
        model_rows = by_model[buyer]
        purchases[buyer] = np.where(model_rows, score[buyer] * np.maximum(given_any, 1.0), expected)
        source[buyer] = np.where(model_rows, "model", "btyd")
        if lifetime.spend is not None:
            spend[buyer] = purchases[buyer] * lifetime.spend.expected_spend(rows["frequency"], rows["monetary"])
    elif buyer.any():
        reason[buyer] = "too few buyers (or no repeat buyer) to fit Pareto/NBD"

    never = ~buyer & np.isfinite(score)
    purchases[never] = score[never] * lifetime.new_buyer_days
    spend[never] = purchases[never] * mean_spend
    source[never] = np.where(by_model[never], "model", "shop")
    reason[never] = NEVER_BOUGHT
    lost = ~buyer & ~np.isfinite(score)
    reason[lost] = propensity["reason"].to_numpy(dtype=object)[lost]

    answered = np.isfinite(purchases)
    if lifetime.spend is None:
        reason[answered & buyer] = "too few repeat buyers with a spend to fit Gamma-Gamma: spend unknown"
    return pd.DataFrame({
        "p_alive": p_alive,
        "expected_purchases": purchases,
        "expected_spend": spend,
        "churn_risk": churn_risk_for(p_alive),
        "source": source,
        "status": np.where(answered, "scored", UNSCORED).astype(object),
        "reason": reason,
    }, index=propensity.index)


def at_risk(answers: pd.DataFrame) -> pd.DataFrame:
    """The "at risk" audience: buyers whose churn risk is High, most valuable first (by expected spend).

    Expected spend is over the horizon, so an at-risk customer with a high value is one who used to buy
    a lot: the first to win back."""
    risky = answers[answers["churn_risk"] == AT_RISK]
    return risky.sort_values("expected_spend", ascending=False, na_position="last")
