"""Lookalike audiences and next products from the profile vectors (see features.vectors).

Lookalike: the seeds' behaviour and content parts are averaged separately (each re-normalised), and every
other customer scores w_b·cos(behaviour) + w_c·cos(content). Seeds may be customer ids or any identifier;
seeds that match nobody, or a customer without a vector, come back in `unknown_seeds`.

Next products: items nearest the customer's content vector minus what they bought in the last
`exclude_days`; a customer who touched no product gets the most bought items in the categories of their
events, then the most bought overall. `source` says which path answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd

from features.emails import normalize_email
from features.phones import normalize_phone
from features.schema import IDENTIFIER_FIELDS
from features.vectors import ITEMS, PROFILES, VectorStore, split_profile

BEHAVIOUR_WEIGHT = 0.5
CONTENT_WEIGHT = 0.5
EXCLUDE_DAYS = 30


@dataclass
class Lookalike:
    customers: pd.DataFrame  # customer_id, similarity (best first)
    seeds: list[str] = field(default_factory=list)  # the seeds' customer ids
    unknown_seeds: list[str] = field(default_factory=list)  # as given


@dataclass
class NextProducts:
    customer_id: str
    source: str  # vector | popular_in_categories | popular
    items: pd.DataFrame  # product_id, product_name, category, score
    excluded: list[str] = field(default_factory=list)  # bought within exclude_days


def _candidates(seed: str, id_type: str | None) -> list[tuple[str, str]]:
    types = [id_type] if id_type else list(IDENTIFIER_FIELDS)
    out = []
    for t in types:
        value = normalize_phone(seed) if t == "phone" else normalize_email(seed) if t == "email" else seed.strip()
        if value:
            out.append((t, value))
    return out


def resolve_seeds(
    con: duckdb.DuckDBPyConnection, seeds: Sequence[str], id_type: str | None = None
) -> tuple[dict[str, str], list[str]]:
    """({seed: customer_id}, unknown seeds); a seed is a customer id unless `id_type` names a type."""
    known_ids: set[str] = set()
    if id_type in (None, "customer_id"):
        con.register("seed_df", pd.DataFrame({"s": [str(s) for s in seeds]}))
        known_ids = {r[0] for r in con.execute(
            "SELECT DISTINCT customer_id FROM identity_map WHERE customer_id IN (SELECT s FROM seed_df)"
        ).fetchall()}
        con.unregister("seed_df")
    found, unknown = {}, []
    for seed in seeds:
        seed = str(seed)
        if seed in known_ids:
            found[seed] = seed
            continue
        if id_type == "customer_id":
            unknown.append(seed)
            continue
        customer = None
        for t, value in _candidates(seed, id_type):
            rows = con.execute("SELECT customer_id FROM identity_map WHERE id_type=? AND id_value=?",
                               [t, value]).fetchall()
            if rows:
                customer = rows[0][0]
                break
        if customer is None:
            unknown.append(seed)
        else:
            found[seed] = customer
    return found, unknown


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


def lookalike_query(
    seed_vectors: Sequence[np.ndarray], behaviour_weight: float = BEHAVIOUR_WEIGHT,
    content_weight: float = CONTENT_WEIGHT,
) -> np.ndarray:
    """The query whose dot product with a stored profile is w_b·cos_behaviour + w_c·cos_content."""
    behaviour, content = split_profile(np.vstack(seed_vectors))
    total = behaviour_weight + content_weight
    return np.concatenate([
        behaviour_weight / total * _unit(behaviour.mean(axis=0)),
        content_weight / total * _unit(content.mean(axis=0)),
    ]).astype(np.float32)


def lookalike(
    store: VectorStore, seed_customers: dict[str, str], k: int = 100, channel: str | None = None,
    behaviour_weight: float = BEHAVIOUR_WEIGHT, content_weight: float = CONTENT_WEIGHT,
    unknown_seeds: Sequence[str] = (),
) -> Lookalike:
    """Top `k` customers like the seeds (seeds excluded), only those consenting to `channel` if given."""
    customers = sorted(set(seed_customers.values()))
    vectors = store.fetch(PROFILES, "profile", customers)
    unknown = list(unknown_seeds) + [s for s, c in seed_customers.items() if c not in vectors]
    empty = pd.DataFrame({"customer_id": pd.Series(dtype=object), "similarity": pd.Series(dtype=float)})
    if not vectors:
        return Lookalike(empty, [], unknown)
    query = lookalike_query(list(vectors.values()), behaviour_weight, content_weight)
    require = {f"consent_{channel}": True} if channel else None
    hits = store.search(PROFILES, "profile", query, k, require=require, exclude=customers)
    frame = pd.DataFrame({"customer_id": [h.key for h in hits], "similarity": [h.score for h in hits]})
    return Lookalike(frame if len(frame) else empty, sorted(vectors), unknown)


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
