"""Purchase labels: who bought in the window after an as-of date, mapped through the identity links
known at that date.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pandas as pd

from features.identity.events import register_resolved_events
from features.schema import IDENTIFIER_FIELDS


def first_purchases(con: duckdb.DuckDBPyConnection, as_of: datetime, until: datetime) -> pd.Series:
    """Each customer's first purchase in (as_of, until], by customer_id (customers as resolved at as_of).

    Expects the `identity_map` of `as_of` to be registered (`register_resolved_events`, which
    `build_profiles` calls). A purchase counts for a customer through any identifier it carries that was
    known by as_of: a link made later must not decide who bought, and nothing after `until` is read.
    """
    matches = " UNION ALL ".join(
        f"SELECT m.customer_id, e.ts FROM future e JOIN identity_map m "
        f"ON m.id_type = '{f}' AND m.id_value = e.{f}"
        for f in IDENTIFIER_FIELDS
    )
    firsts = con.execute(
        f"""
        WITH future AS (
            SELECT ts, {", ".join(IDENTIFIER_FIELDS)} FROM events
            WHERE type = 'purchase' AND ts > $as_of AND ts <= $until)
        SELECT customer_id, min(ts) AS first_ts FROM ({matches}) GROUP BY customer_id
        """,
        {"as_of": as_of, "until": until},
    ).df()
    return firsts.set_index("customer_id")["first_ts"]


def purchase_labels(
    con: duckdb.DuckDBPyConnection, as_of: datetime, horizon_days: int
) -> pd.Series:
    """1 for customers (as resolved at `as_of`) with a purchase in (as_of, as_of + horizon].

    The label window reads events after `as_of` but maps them through the identity links known at
    `as_of`: a later link must not decide who bought (see `first_purchases`).
    """
    register_resolved_events(con, as_of)
    buyers = first_purchases(con, as_of, as_of + timedelta(days=horizon_days)).index
    return pd.Series(1, index=buyers, name="label", dtype="int32")
