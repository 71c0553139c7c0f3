"""Purchase labels: who bought in the window after an as-of date, mapped through the identity links
known at that date.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from features.identity.events import ResolvedEvents
from features.schema import IDENTIFIER_FIELDS


def first_purchases(events: ResolvedEvents, until: datetime) -> pd.Series:
    """Each customer's first purchase in (as_of, until], by customer_id (customers as `events` resolved
    them at their as_of).

    A purchase counts for a customer through any identifier it carries that was known by as_of: a link
    made later must not decide who bought, and nothing after `until` is read.
    """
    matches = " UNION ALL ".join(
        f"SELECT m.customer_id, e.ts FROM future e JOIN {events.identity_table} m "
        f"ON m.id_type = '{f}' AND m.id_value = e.{f}"
        for f in IDENTIFIER_FIELDS
    )
    firsts = events.con.execute(
        f"""
        WITH future AS (
            SELECT ts, {", ".join(IDENTIFIER_FIELDS)} FROM events
            WHERE type = 'purchase' AND ts > $as_of AND ts <= $until)
        SELECT customer_id, min(ts) AS first_ts FROM ({matches}) GROUP BY customer_id
        """,
        {"as_of": events.as_of, "until": until},
    ).df()
    return firsts.set_index("customer_id")["first_ts"]


def purchase_labels(events: ResolvedEvents, horizon_days: int) -> pd.Series:
    """1 for customers (as `events` resolved them) with a purchase in (as_of, as_of + horizon]. Customers
    without one are absent.

    The label window reads events after `as_of` but maps them through the identity links known at
    `as_of`: a later link must not decide who bought (see `first_purchases`).
    """
    buyers = first_purchases(events, events.as_of + timedelta(days=horizon_days)).index
    return pd.Series(1, index=buyers, name="label", dtype="int32")
