"""Product and category affinities: which categories and products a customer's interest goes to.

An interaction is a product_view, add_to_cart or purchase carrying the category (or product) by
`as_of`. Category names depend on the shop, so the full picture is a long table (`category_affinity`,
`product_affinity`); the wide profile keeps stable column names and carries the top three category
names as values (`top_category_1..3`) with their shares, plus how spread the interest is.
"""

from __future__ import annotations

import pandas as pd

from features.identity.events import ResolvedEvents
from features.profile.windows import quoted

INTERACTIONS: tuple[str, ...] = ("product_view", "add_to_cart", "purchase")
TOP_CATEGORIES = 3


def _affinity_sql(source: str, item: str) -> str:
    """customer_id, <item>, n_interactions, share (of the customer's interactions with any <item>),
    rank (1 = most; ties by name)."""
    return f"""
        WITH counts AS (
            SELECT customer_id, {item}, count(*) AS n_interactions FROM {source}
            WHERE type IN ({quoted(INTERACTIONS)}) AND {item} IS NOT NULL
            GROUP BY customer_id, {item}
        )
        SELECT customer_id, {item}, n_interactions,
               n_interactions / sum(n_interactions) OVER (PARTITION BY customer_id) AS share,
               row_number() OVER (PARTITION BY customer_id ORDER BY n_interactions DESC, {item}) AS rank
        FROM counts
    """


def _affinity(events: ResolvedEvents, item: str) -> pd.DataFrame:
    return events.con.execute(_affinity_sql(events.source, item) + " ORDER BY customer_id, rank").df()


def category_affinity(events: ResolvedEvents) -> pd.DataFrame:
    """Long table: customer_id, category, n_interactions, share, rank — every category per customer."""
    return _affinity(events, "category")


def product_affinity(events: ResolvedEvents) -> pd.DataFrame:
    """Long table: customer_id, product_id, n_interactions, share, rank — every product per customer."""
    return _affinity(events, "product_id")


def affinity_sql(source: str) -> str:
    """Wide, per customer: n_categories, top_category_{1,2,3} (names), top_category_share_{1,2,3}
    (NULL past the customer's last category) and top_product_share (the share of product interactions
    that went to the customer's favourite product: 1.0 is a one-product customer)."""
    tops = []
    for k in range(1, TOP_CATEGORIES + 1):
        tops += [f"any_value(category) FILTER (WHERE rank = {k}) AS top_category_{k}",
                 f"any_value(share) FILTER (WHERE rank = {k}) AS top_category_share_{k}"]
    return f"""
        WITH categories AS ({_affinity_sql(source, "category")}),
        products AS ({_affinity_sql(source, "product_id")}),
        by_category AS (
            SELECT customer_id, count(*) AS n_categories, {", ".join(tops)}
            FROM categories GROUP BY customer_id
        ),
        by_product AS (SELECT customer_id, max(share) AS top_product_share FROM products GROUP BY customer_id)
        SELECT * FROM by_category FULL JOIN by_product USING (customer_id)
    """
