"""Point-in-time customer profiles: a pure function of (events, as_of), computed in DuckDB SQL.

Only events with `ts <= as_of` are read, identities are resolved with links known by `as_of`, and a
customer with no event by then does not exist. Appending later events therefore changes nothing here —
tests/test_profiles.py proves it.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import pandas as pd

from features.identity import register_resolved_events
from features.schema import IDENTIFIER_FIELDS, MESSAGE_CHANNELS

# Channels a shop can message; each gets a `consent_<channel>` column: the latest consent event wins
# (subscribe / consent_granted / follow grant, unsubscribe / consent_revoked / unfollow revoke), and no
# consent event at all means no consent.
CONSENT_CHANNELS: tuple[str, ...] = MESSAGE_CHANNELS
# What the customer did, as opposed to what the shop did to them: a campaign sent yesterday is not
# activity, so it must not make a silent customer look recent or give them enough history to score.
ACTIVE = "type NOT IN ('message_sent', 'message_delivered')"
_GRANT = ("subscribe", "consent_granted", "follow")
_REVOKE = ("unsubscribe", "consent_revoked", "unfollow")


def _days_since(expr: str) -> str:
    return f"date_diff('second', {expr}, $as_of) / 86400.0"


def _consent_sql(channel: str) -> str:
    kinds = ", ".join(f"'{k}'" for k in _GRANT + _REVOKE)
    grants = ", ".join(f"'{k}'" for k in _GRANT)
    latest = f"arg_max(type, ts) FILTER (WHERE channel = '{channel}' AND type IN ({kinds}))"
    return f"coalesce({latest} IN ({grants}), false) AS consent_{channel}"


def _profile_sql() -> str:
    purchase = "type = 'purchase'"
    window = lambda d: f"ts > $as_of - INTERVAL {d} DAY"  # noqa: E731
    columns = [
        f"{_days_since('min(ts)')} AS tenure_days",
        f"{_days_since(f'max(ts) FILTER (WHERE {ACTIVE})')} AS recency_days",
        f"{_days_since(f'max(ts) FILTER (WHERE {purchase})')} AS purchase_recency_days",
        f"count(*) FILTER (WHERE {purchase}) AS n_purchases",
        f"count(*) FILTER (WHERE {purchase} AND {window(30)}) AS n_purchases_30d",
        f"count(*) FILTER (WHERE {purchase} AND {window(90)}) AS n_purchases_90d",
        f"coalesce(sum(amount) FILTER (WHERE {purchase}), 0) AS monetary_total",
        f"avg(amount) FILTER (WHERE {purchase}) AS monetary_avg",
        "CASE WHEN count(*) FILTER (WHERE {p}) > 1 THEN date_diff('second', "
        "min(ts) FILTER (WHERE {p}), max(ts) FILTER (WHERE {p})) / 86400.0 "
        "/ (count(*) FILTER (WHERE {p}) - 1) END AS purchase_interval_days".format(p=purchase),
        f"count(*) FILTER (WHERE {ACTIVE}) AS n_events",
        f"count(*) FILTER (WHERE {ACTIVE} AND {window(7)}) AS n_events_7d",
        f"count(*) FILTER (WHERE {ACTIVE} AND {window(30)}) AS n_events_30d",
        f"count(*) FILTER (WHERE type = 'page_view' AND {window(30)}) AS n_page_views_30d",
        f"count(*) FILTER (WHERE type = 'product_view' AND {window(30)}) AS n_product_views_30d",
        f"count(*) FILTER (WHERE type = 'add_to_cart' AND {window(7)}) AS n_add_to_cart_7d",
        f"count(*) FILTER (WHERE type = 'add_to_cart' AND {window(30)}) AS n_add_to_cart_30d",
        _days_since("max(ts) FILTER (WHERE type = 'add_to_cart')") + " AS cart_recency_days",
        f"count(*) FILTER (WHERE type = 'message_sent' AND {window(30)}) AS n_messages_sent_30d",
        f"count(*) FILTER (WHERE type = 'message_opened' AND {window(30)}) AS n_messages_opened_30d",
        f"count(*) FILTER (WHERE type = 'message_clicked' AND {window(30)}) "
        "AS n_messages_clicked_30d",
        # Distinct messages, capped at 1: a message opened twice, or sent just before the window and
        # opened inside it, must not push the rate past 100%.
        f"least(1.0, (count(DISTINCT message_id) FILTER (WHERE type = 'message_opened' AND {window(90)}))"
        f"::DOUBLE / nullif(count(DISTINCT message_id) FILTER (WHERE type = 'message_sent' "
        f"AND {window(90)}), 0)) AS open_rate_90d",
        "count(DISTINCT channel) FILTER (WHERE type NOT LIKE 'message_%') AS n_channels",
        "count(DISTINCT product_id) AS n_distinct_products",
        *(_consent_sql(c) for c in CONSENT_CHANNELS),
    ]
    return (
        "SELECT customer_id, " + ",\n  ".join(columns)
        + "\nFROM resolved_events GROUP BY customer_id ORDER BY customer_id"
    )


def build_profiles(
    con: duckdb.DuckDBPyConnection, as_of: datetime, identity: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per customer known at `as_of`, indexed by customer_id.

    `as_of` is naive UTC (see `features.asof.parse_as_of`). Pass `identity` to reuse a resolution
    already computed for the same `as_of`.
    """
    register_resolved_events(con, as_of, identity)
    frame = con.execute(_profile_sql(), {"as_of": as_of}).df()
    return frame.set_index("customer_id")


def purchase_labels(
    con: duckdb.DuckDBPyConnection, as_of: datetime, horizon_days: int
) -> pd.Series:
    """1 for customers (as resolved at `as_of`) with a purchase in (as_of, as_of + horizon].

    The label window reads events after `as_of` but maps them through the identity links known at
    `as_of`: a later link must not decide who bought.
    """
    register_resolved_events(con, as_of)
    # A purchase counts for a customer through any identifier it carries that was known by as_of.
    matches = " UNION ".join(
        f"SELECT m.customer_id FROM future e JOIN identity_map m "
        f"ON m.id_type = '{f}' AND m.id_value = e.{f}"
        for f in IDENTIFIER_FIELDS
    )
    labels = con.execute(
        f"""
        WITH future AS (
            SELECT * FROM events WHERE type = 'purchase' AND ts > $as_of
              AND ts <= $as_of + to_days(CAST($horizon AS INTEGER)))
        SELECT DISTINCT customer_id, 1 AS label FROM ({matches})
        """,
        {"as_of": as_of, "horizon": horizon_days},
    ).df()
    return labels.set_index("customer_id")["label"]
