"""Profile vectors: the behaviour part (scaled feature list) and the content part (recency-weighted
product embeddings), and the collections a feature build writes.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from features.identity.events import ResolvedEvents
from features.profile.feature_lists import PROFILE_VECTOR_V1
from features.profile.wide import CONSENT_CHANNELS
from features.vectors.layout import ITEMS, PROFILES, Collection, profile_matrix
from features.vectors.qdrant import QdrantStore
from features.vectors.snapshot import compact_collections, write_snapshot

RECENCY_HALF_LIFE_DAYS = 30.0
PAYLOAD_FEATURES = ("recency_days", "n_purchases", "monetary_total")


def behaviour_vectors(profiles: pd.DataFrame) -> np.ndarray:
    """log1p of non-negative features, z-scored over the snapshot, unit length."""
    values = profiles[list(PROFILE_VECTOR_V1.features)].astype(float).fillna(0.0)
    values = np.log1p(values.clip(lower=0))
    scaled = (values - values.mean()) / values.std(ddof=0).replace(0, 1)
    matrix = scaled.to_numpy(dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


def products_seen(con: duckdb.DuckDBPyConnection, as_of: datetime) -> pd.DataFrame:
    """Each product seen by `as_of` with its latest name and category, and its text for embedding."""
    frame = con.execute(
        """
        SELECT product_id, arg_max(product_name, ts) AS product_name, arg_max(category, ts) AS category,
               count(*) FILTER (WHERE type = 'purchase') AS purchases
        FROM events WHERE ts <= $as_of AND product_id IS NOT NULL
        GROUP BY product_id ORDER BY product_id
        """,
        {"as_of": as_of},
    ).df()
    frame["text"] = (frame["product_name"].fillna(frame["product_id"]) + " — "
                     + frame["category"].fillna(""))
    return frame


def product_interactions(events: ResolvedEvents) -> pd.DataFrame:
    """Recency-weighted interactions (customer_id, product_id, weight) of the resolved customers."""
    return events.con.execute(
        f"""
        SELECT customer_id, product_id,
               sum(CASE type WHEN 'purchase' THEN 3.0 WHEN 'add_to_cart' THEN 2.0 ELSE 1.0 END
                   * pow(0.5, date_diff('second', ts, $as_of) / 86400.0 / {RECENCY_HALF_LIFE_DAYS}))
                 AS weight
        FROM {events.source} WHERE product_id IS NOT NULL
        GROUP BY customer_id, product_id
        """,
        {"as_of": events.as_of},
    ).df()


def content_vectors(
    customers: pd.Index, interactions: pd.DataFrame, items: pd.DataFrame, item_vectors: np.ndarray
) -> np.ndarray:
    """Weighted mean of product embeddings per customer (zeros for customers who touched none): the
    sparse customers × products weight matrix times the product embeddings."""
    from scipy.sparse import csr_matrix

    dim = item_vectors.shape[1] if item_vectors.size else 384
    if interactions.empty:
        return np.zeros((len(customers), dim), dtype=np.float32)
    row = pd.Series(np.arange(len(customers)), index=customers)
    col = pd.Series(np.arange(len(items)), index=items["product_id"].to_numpy())
    r = row.reindex(interactions["customer_id"]).to_numpy()
    c = col.reindex(interactions["product_id"]).to_numpy()
    ok = ~(np.isnan(r) | np.isnan(c))
    weight = interactions["weight"].to_numpy(dtype=np.float64)[ok]
    weights = csr_matrix((weight, (r[ok].astype(int), c[ok].astype(int))), shape=(len(customers), len(items)))
    out = np.asarray(weights @ item_vectors.astype(np.float64), dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1, norms)


def build_collections(
    profiles: pd.DataFrame, behaviour: np.ndarray, content: np.ndarray, items: pd.DataFrame,
    item_vectors: np.ndarray,
) -> list[Collection]:
    consent = [f"consent_{c}" for c in CONSENT_CHANNELS]
    payload = profiles[[*consent, *PAYLOAD_FEATURES]].reset_index(drop=True).copy()
    payload[consent] = payload[consent].fillna(False).astype(bool)
    payload["has_content"] = np.linalg.norm(content, axis=1) > 0
    for column in PAYLOAD_FEATURES:
        payload[column] = payload[column].astype(float)
    dim = item_vectors.shape[1] if item_vectors.size else content.shape[1]
    item_payload = pd.DataFrame({
        "product_name": items["product_name"].astype(object).to_numpy(),
        "category": items["category"].astype(object).to_numpy(),
        "purchases": items["purchases"].astype(float).to_numpy(),
    })
    return [
        Collection(PROFILES, [str(k) for k in profiles.index],
                   {"profile": profile_matrix(behaviour, content)}, payload),
        Collection(ITEMS, [str(k) for k in items["product_id"]],
                   {"content": item_vectors.reshape(len(items), dim).astype(np.float32)}, item_payload),
    ]


def write_collections(
    client,
    profiles: pd.DataFrame,
    behaviour: np.ndarray,
    content: np.ndarray,
    items: pd.DataFrame,
    item_vectors: np.ndarray,
    stamp: str,
    snapshot_dir: Path | None = None,
) -> dict[str, int]:
    """Write `profiles_<stamp>` and `items_<stamp>` to Qdrant (when `client` is given) and swap the
    aliases; and the snapshot into `snapshot_dir` (a build's `vectors/` folder) when given."""
    collections = build_collections(profiles, behaviour, content, items, item_vectors)
    if client is not None:
        QdrantStore(client).replace(collections, stamp)
    if snapshot_dir is not None:
        write_snapshot(snapshot_dir, compact_collections(collections))
    return {"profiles": len(profiles), "items": len(items)}
