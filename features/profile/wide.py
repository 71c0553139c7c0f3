"""Point-in-time customer profiles: a pure function of (events, as_of), computed in DuckDB SQL.

Only events with `ts <= as_of` are read, identities are resolved with links known by `as_of`, and a
customer with no event by then does not exist. Appending later events therefore changes nothing here —
tests/test_profiles.py and tests/test_feature_themes.py prove it.

The wide profile is the core columns below (overall recency/frequency/monetary, tenure, browsing, message
counts, consent) followed by the themes, each in its own module: per-channel RFM (`features.profile.rfm`),
per-channel engagement (`features.profile.engagement`), message fatigue (`features.profile.fatigue`) and
affinities (`features.profile.affinities`). Activity by hour of week is too wide for it:
`features.profile.activity.activity_by_hour`.
The resolved events are materialised once per build and every theme reads that table. Most columns come
from one aggregate pass over its event cells (`features.profile.windows.cells_sql`: one row per customer, type,
channel and time-window bucket, ~7× fewer rows than events); the distinct counts, the per-message and the
per-category themes read the events themselves.
"""

from __future__ import annotations

import pandas as pd

from features.identity.events import ResolvedEvents
from features.profile.affinities import affinity_sql
from features.profile.engagement import engagement_count_columns, engagement_rates_sql
from features.profile.fatigue import fatigue_columns
from features.profile.rfm import rfm_columns
from features.profile.windows import (
    ACTIVE,
    cells_sql,
    days_since,
    first_ts,
    last_ts,
    mean_amount,
    n_events,
    total_amount,
    within,
)
from features.schema import MESSAGE_CHANNELS

# Channels a shop can message; each gets a `consent_<channel>` column: the latest consent event wins
# (subscribe / consent_granted / follow grant, unsubscribe / consent_revoked / unfollow revoke), and no
# consent event at all means no consent.
CONSENT_CHANNELS: tuple[str, ...] = MESSAGE_CHANNELS
_GRANT = ("subscribe", "consent_granted", "follow")
_REVOKE = ("unsubscribe", "consent_revoked", "unfollow")
_days_since = days_since
# The columns of the resolved events that the themes read.
_PROFILE_EVENT_COLUMNS = ("customer_id", "ts", "channel", "type", "amount", "product_id", "category",
                          "message_id")


def _consent_sql(channel: str) -> str:
    # Over cells: the type of the cell holding the latest consent event on the channel.
    kinds = ", ".join(f"'{k}'" for k in _GRANT + _REVOKE)
    grants = ", ".join(f"'{k}'" for k in _GRANT)
    revokes = ", ".join(f"'{k}'" for k in _REVOKE)
    # Latest wins; at the same instant a revocation wins, so a tie never sends to someone who said no.
    latest = (f"arg_max(type, (ts, type IN ({revokes}))) "
              f"FILTER (WHERE channel = '{channel}' AND type IN ({kinds}))")
    return f"coalesce({latest} IN ({grants}), false) AS consent_{channel}"


def _core_columns() -> list[str]:
    """The core aggregates over one customer's event cells (`features.profile.windows.cells_sql`); the two
    that need single events (distinct products, open rate) come from `_distinct_sql`."""
    purchase = "type = 'purchase'"
    window = within
    count = lambda kind, days: n_events(f"type = '{kind}' AND {window(days)}")  # noqa: E731
    columns = [
        f"{_days_since(first_ts())} AS tenure_days",
        f"{_days_since(last_ts(ACTIVE))} AS recency_days",
        f"{_days_since(last_ts(purchase))} AS purchase_recency_days",
        f"{n_events(purchase)} AS n_purchases",
        f"{n_events(f'{purchase} AND {window(30)}')} AS n_purchases_30d",
        f"{n_events(f'{purchase} AND {window(90)}')} AS n_purchases_90d",
        f"{total_amount(purchase)} AS monetary_total",
        f"{mean_amount(purchase)} AS monetary_avg",
        "CASE WHEN {n} > 1 THEN date_diff('second', {first}, {last}) / 86400.0 / ({n} - 1) END "
        "AS purchase_interval_days".format(n=n_events(purchase), first=first_ts(purchase),
                                          last=last_ts(purchase)),
        f"{n_events(ACTIVE)} AS n_events",
        f"{n_events(f'{ACTIVE} AND {window(7)}')} AS n_events_7d",
        f"{n_events(f'{ACTIVE} AND {window(30)}')} AS n_events_30d",
        f"{count('page_view', 30)} AS n_page_views_30d",
        f"{count('product_view', 30)} AS n_product_views_30d",
        f"{count('add_to_cart', 7)} AS n_add_to_cart_7d",
        f"{count('add_to_cart', 30)} AS n_add_to_cart_30d",
        _days_since(last_ts("type = 'add_to_cart'")) + " AS cart_recency_days",
        f"{count('message_sent', 30)} AS n_messages_sent_30d",
        f"{count('message_opened', 30)} AS n_messages_opened_30d",
        f"{count('message_clicked', 30)} AS n_messages_clicked_30d",
        # open_rate_90d and n_distinct_products come here, from `_distinct_sql`
        "count(DISTINCT channel) FILTER (WHERE type NOT LIKE 'message_%') AS n_channels",
        *(_consent_sql(c) for c in CONSENT_CHANNELS),
    ]
    return columns


def _distinct_sql(source: str) -> str:
    """Per customer, from single events: n_distinct_products, and open_rate_90d — distinct messages,
    capped at 1: a message opened twice, or sent just before the window and opened inside it, must not
    push the rate past 100%. No send means no rate (NULL), not 1.0 — which is why this is a CASE and not
    least(), which skips NULLs. Each counts deduplicated (customer, value) pairs."""
    rate = ("count(*) FILTER (WHERE type = 'message_opened')::DOUBLE "
            "/ nullif(count(*) FILTER (WHERE type = 'message_sent'), 0)")
    return f"""
        products AS (
            SELECT customer_id, count(*) AS n_distinct_products
            FROM (SELECT DISTINCT customer_id, product_id FROM {source} WHERE product_id IS NOT NULL)
            GROUP BY customer_id
        ),
        opens AS (
            SELECT customer_id, CASE WHEN {rate} > 1 THEN 1.0 ELSE {rate} END AS open_rate_90d
            FROM (SELECT DISTINCT customer_id, type, message_id FROM {source}
                  WHERE message_id IS NOT NULL AND type IN ('message_opened', 'message_sent')
                    AND {within(90)})
            GROUP BY customer_id
        )"""


def _name(column: str) -> str:
    return column.rsplit(" AS ", 1)[1]


def _profile_sql(source: str, cells: str) -> str:
    """One aggregate pass over `cells` (the event cells of `source`, `cells_sql`) for the core, RFM,
    engagement-count and fatigue columns, joined with the distinct counts and the two themes that need
    their own grouping (per message, per category)."""
    columns = [*_core_columns(), *rfm_columns(), *engagement_count_columns(), *fatigue_columns()]
    names = [_name(c) for c in columns]
    at = names.index("n_channels")
    names[at:at + 1] = ["open_rate_90d", "n_channels",
                        "coalesce(n_distinct_products, 0)::BIGINT AS n_distinct_products"]
    return f"""
        WITH one_pass AS (SELECT customer_id, {", ".join(columns)} FROM {cells} GROUP BY customer_id),
        {_distinct_sql(source)},
        rates AS ({engagement_rates_sql(source)}),
        affinity AS ({affinity_sql(source)})
        SELECT customer_id, {", ".join(names)},
               rates.* EXCLUDE (customer_id),
               affinity.* EXCLUDE (customer_id) REPLACE (coalesce(n_categories, 0) AS n_categories)
        FROM one_pass
        LEFT JOIN opens USING (customer_id)
        LEFT JOIN products USING (customer_id)
        LEFT JOIN rates USING (customer_id)
        LEFT JOIN affinity USING (customer_id)
        ORDER BY customer_id
    """


def build_profiles(events: ResolvedEvents) -> pd.DataFrame:
    """One row per customer known at `events.as_of`, indexed by customer_id.

    The resolved events are materialised once, narrowed to the columns the themes read.
    """
    con, as_of = events.con, events.as_of
    con.execute("CREATE OR REPLACE TEMP TABLE profile_events AS SELECT "
                + ", ".join(_PROFILE_EVENT_COLUMNS) + f" FROM {events.source}")
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE profile_cells AS {cells_sql('profile_events')}",
                    {"as_of": as_of})
        frame = con.execute(_profile_sql("profile_events", "profile_cells"), {"as_of": as_of}).df()
    finally:
        con.execute("DROP TABLE IF EXISTS profile_cells")
        con.execute("DROP TABLE IF EXISTS profile_events")
    names = [c for c in frame.columns if c.startswith("top_category_") and "share" not in c]
    frame[names] = frame[names].astype("str")  # the same dtype whether or not any customer has one
    return frame.set_index("customer_id")
