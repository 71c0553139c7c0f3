"""Repeat-purchase summaries (frequency, recency, T) and the BG/NBD features built on them.

Like every feature here, a pure function of (events, as_of): only purchases with `ts <= as_of` are read,
through the identities known at `as_of`, and the BG/NBD parameters are fitted on that same snapshot, so
adding later events changes nothing (tests/test_propensity_horizon.py checks it).

Purchase days, not purchase events, are the transactions: two orders on one (Vietnam-time) calendar day
count once, as the BTYD literature does for CDNOW, because a basket split into several orders is one
visit. Times are in days.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.identity.events import ResolvedEvents
from models.bgnbd import BGNBD, fit_if_enough
from nhip.clock import LOCAL_OFFSET_HOURS, sql_local

SUMMARY_COLUMNS = ("frequency", "recency", "T", "monetary")
BGNBD_FEATURES = ("bgnbd_p_alive", "bgnbd_expected_h", "bgnbd_p_any_h")



def purchase_summary(events: ResolvedEvents) -> pd.DataFrame:
    """One row per customer with a purchase by `events.as_of`, indexed by customer_id, in days:

    - `frequency`: purchase days after the first one (repeat transactions, x);
    - `recency`: days from the first purchase day to the last (t_x; 0 for one-time buyers);
    - `T`: days from the start of the first purchase day to `as_of`;
    - `monetary`: the mean spend of the repeat purchase days (missing for one-time buyers, and where no
      repeat purchase carried an amount). The first day is left out, as Gamma-Gamma's convention is:
      a first order is often unlike the later ones (a welcome offer, a starter kit).
    """
    return events.con.execute(
        f"""
        WITH days AS (
            SELECT customer_id,
                   CAST({sql_local('ts')} AS DATE) AS day,
                   sum(amount) AS spend
            FROM {events.source} WHERE type = 'purchase' AND ts <= $as_of
            GROUP BY ALL
        ), numbered AS (
            SELECT *, row_number() OVER (PARTITION BY customer_id ORDER BY day) AS nth FROM days
        )
        SELECT customer_id,
               (count(*) - 1)::DOUBLE AS frequency,
               date_diff('day', min(day), max(day))::DOUBLE AS recency,
               date_diff('second', CAST(min(day) AS TIMESTAMP) - INTERVAL {LOCAL_OFFSET_HOURS} HOUR,
                         $as_of) / 86400.0 AS T,
               avg(CASE WHEN nth > 1 THEN spend END)::DOUBLE AS monetary
        FROM numbered GROUP BY customer_id ORDER BY customer_id
        """,
        {"as_of": events.as_of},
    ).df().set_index("customer_id")


def fit_bgnbd(summary: pd.DataFrame) -> BGNBD | None:
    """BG/NBD fitted on a summary, or None when there are too few buyers or no repeat buyer at all."""
    return fit_if_enough(summary["frequency"], summary["recency"], summary["T"])


def bgnbd_scores(model: BGNBD, summary: pd.DataFrame, horizon_days: float) -> pd.DataFrame:
    """P(alive), expected purchase days and P(any purchase) in the next `horizon_days`, per customer."""
    args = (summary["frequency"], summary["recency"], summary["T"])
    return pd.DataFrame(
        {
            "bgnbd_p_alive": model.p_alive(*args),
            "bgnbd_expected_h": model.expected_purchases(horizon_days, *args),
            "bgnbd_p_any_h": model.p_any_purchase(horizon_days, *args),
        },
        index=summary.index,
    )


def bgnbd_features(events: ResolvedEvents, horizon_days: float) -> pd.DataFrame:
    """The BG/NBD features of every buyer known at `events.as_of`, from a fit on the buyers as of then.

    Customers who never bought have no BG/NBD state: their rows are absent (missing after a join), which
    the gradient-boosted model treats as its own branch.
    """
    summary = purchase_summary(events)
    model = fit_bgnbd(summary)
    if model is None:
        return pd.DataFrame(index=summary.index, columns=list(BGNBD_FEATURES), dtype=float)
    return bgnbd_scores(model, summary, horizon_days).astype(np.float64)
