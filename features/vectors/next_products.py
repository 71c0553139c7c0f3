"""Next products from the profile vectors (see `features.vectors`).

Items nearest the customer's content vector minus what they bought in the last `exclude_days`; a customer
who touched no product gets the most bought items in the categories of their events, then the most bought
overall. `source` says which path answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from features.builds import Build
from features.identity.events import ResolvedEvents
from features.vectors.layout import ITEMS, PROFILES, VectorStore, split_profile

EXCLUDE_DAYS = 30


@dataclass
class NextProducts:
    customer_id: str
    source: str  # vector | popular_in_categories | popular
    items: pd.DataFrame  # product_id, product_name, category, score
    excluded: list[str] = field(default_factory=list)  # bought within exclude_days


def purchases_by_customer(events: ResolvedEvents) -> pd.DataFrame:
    """Every (customer_id, product_id) bought by as_of, with the last time: what a build keeps so that
    next products can leave out recent purchases without reading events."""
    return events.con.execute(
        f"""SELECT customer_id, product_id, max(ts) AS last_ts FROM {events.source}
            WHERE type = 'purchase' AND product_id IS NOT NULL GROUP BY ALL ORDER BY customer_id, product_id"""
    ).df()


def categories_by_customer(events: ResolvedEvents) -> pd.DataFrame:
    """(customer_id, category, n): how many of each customer's events by as_of carry each category."""
    return events.con.execute(
        f"""SELECT customer_id, category, count(*) AS n FROM {events.source}
            WHERE category IS NOT NULL GROUP BY ALL ORDER BY customer_id, n DESC, category"""
    ).df()


def recent_purchases(purchases: pd.DataFrame, as_of: datetime, days: int) -> list[str]:
    """Products of `purchases` (one customer's rows of `purchases_by_customer`) last bought in
    (as_of − days, as_of]."""
    recent = purchases[purchases["last_ts"] > as_of - timedelta(days=days)]
    return sorted(recent["product_id"])


def _popular(catalogue: pd.DataFrame, categories: Sequence[str], exclude: set[str], k: int) -> pd.DataFrame:
    pool = catalogue[~catalogue.index.isin(exclude)]
    if categories:
        pool = pool[pool["category"].isin(categories)]
    pool = pool.sort_values("purchases", ascending=False, kind="stable").head(k)
    return pd.DataFrame({"product_id": pool.index, "product_name": pool["product_name"].to_numpy(),
                         "category": pool["category"].to_numpy(), "score": pool["purchases"].to_numpy()})


def next_products(
    store: VectorStore, customer: str, k: int = 10, exclude: Sequence[str] = (),
    categories: Sequence[str] = (), catalogue: pd.DataFrame | None = None,
) -> NextProducts:
    """The `k` items nearest the customer's content vector, not in `exclude`; popular ones when cold."""
    exclude = set(exclude)
    catalogue = store.scan(ITEMS) if catalogue is None else catalogue
    vector = store.fetch(PROFILES, "profile", [customer]).get(customer)
    content = split_profile(vector)[1] if vector is not None else None
    if content is not None and np.linalg.norm(content) > 0:
        hits = store.search(ITEMS, "content", content, k, exclude=sorted(exclude))
        items = pd.DataFrame({
            "product_id": [h.key for h in hits],
            "product_name": [h.payload.get("product_name") for h in hits],
            "category": [h.payload.get("category") for h in hits],
            "score": [h.score for h in hits],
        })
        return NextProducts(customer, "vector", items, sorted(exclude))
    in_categories = _popular(catalogue, categories, exclude, k) if categories else None
    if in_categories is not None and len(in_categories):
        return NextProducts(customer, "popular_in_categories", in_categories, sorted(exclude))
    return NextProducts(customer, "popular", _popular(catalogue, (), exclude, k), sorted(exclude))


def suggest_next_products(build: Build, vectors: VectorStore, customer_id: str, k: int,
                          exclude_days: int) -> NextProducts:
    """`next_products` for one customer of `build`, leaving out what they bought in the `exclude_days`
    before the build's as-of (0 keeps everything)."""
    purchases = build.table("purchases")
    mine = purchases[purchases["customer_id"] == customer_id]
    exclude = recent_purchases(mine, build.as_of, exclude_days) if exclude_days else []
    categories = build.table("categories")
    ordered = categories[categories["customer_id"] == customer_id]
    return next_products(vectors, customer_id, k, exclude, ordered["category"].tolist())
