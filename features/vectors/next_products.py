"""Next products from the profile vectors (see `features.vectors`).

Items nearest the customer's content vector minus what they bought in the last `exclude_days`; a customer
who touched no product gets the most bought items in the categories of their events, then the most bought
overall. `source` says which path answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from features.store import open_store
from features.vectors.layout import ITEMS, PROFILES, VectorStore, split_profile

EXCLUDE_DAYS = 30


@dataclass
class NextProducts:
    customer_id: str
    source: str  # vector | popular_in_categories | popular
    items: pd.DataFrame  # product_id, product_name, category, score
    excluded: list[str] = field(default_factory=list)  # bought within exclude_days


def recent_purchases(
    con: duckdb.DuckDBPyConnection, as_of: datetime, days: int, customers: Sequence[str] | None = None
) -> pd.DataFrame:
    """(customer_id, product_id) bought in (as_of − days, as_of], customers by the stored identity map."""
    where = "AND m.customer_id IN (SELECT customer_id FROM wanted_df)" if customers is not None else ""
    if customers is not None:
        con.register("wanted_df", pd.DataFrame({"customer_id": list(customers)}))
    frame = con.execute(
        f"""
        SELECT DISTINCT m.customer_id, e.product_id FROM events e
        JOIN identity_map m ON e.pid_type = m.id_type AND e.pid_value = m.id_value
        WHERE e.type = 'purchase' AND e.product_id IS NOT NULL AND e.ts > $start AND e.ts <= $as_of {where}
        """,
        {"start": as_of - timedelta(days=days), "as_of": as_of},
    ).df()
    if customers is not None:
        con.unregister("wanted_df")
    return frame


def customer_categories(con: duckdb.DuckDBPyConnection, as_of: datetime, customer: str) -> list[str]:
    """Categories in the customer's events by `as_of`, most frequent first."""
    rows = con.execute(
        """
        SELECT e.category FROM events e
        JOIN identity_map m ON e.pid_type = m.id_type AND e.pid_value = m.id_value
        WHERE m.customer_id = ? AND e.category IS NOT NULL AND e.ts <= ?
        GROUP BY e.category ORDER BY count(*) DESC, e.category
        """,
        [customer, as_of],
    ).fetchall()
    return [r[0] for r in rows]


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


def suggest_next_products(
    store_path: Path, vectors: VectorStore, customer_id: str, k: int, exclude_days: int
) -> NextProducts:
    """`next_products` for one customer of the latest build, leaving out what they bought in the
    `exclude_days` before the build's as-of (0 keeps everything); the store is opened read-only for
    the moment it takes."""
    with open_store(store_path, read_only=True) as con:
        as_of = con.execute("SELECT max(as_of) FROM profiles").fetchall()[0][0]
        bought = recent_purchases(con, as_of, exclude_days, [customer_id]) if exclude_days else None
        categories = customer_categories(con, as_of, customer_id)
    exclude = [] if bought is None else bought["product_id"].tolist()
    return next_products(vectors, customer_id, k, exclude, categories)
