"""Profile vectors and the Qdrant collections that hold them.

A profile vector has two named parts: `behaviour` (scaled profile features) and `content` (the mean
embedding of the products a customer touched, weighted toward recent ones). Products get their own
collection, `items`. Qdrant runs embedded (a folder under NHIP_HOME) unless `NHIP_QDRANT_URL` points at a
server; the code is the same.

A build writes a fresh collection and then moves the alias (`profiles`, `items`) onto it, so readers
never see a half-written collection.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd

from features.feature_lists import PROFILE_VECTOR_V1
from features.profile_features import CONSENT_CHANNELS

RECENCY_HALF_LIFE_DAYS = 30.0
PAYLOAD_FEATURES = ("recency_days", "n_purchases", "monetary_total")


def point_id(key: str) -> str:
    """Qdrant wants an int or a UUID; a name-based UUID keeps the point id stable per customer."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"nhip:{key}"))


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


def product_interactions(con: duckdb.DuckDBPyConnection, as_of: datetime) -> pd.DataFrame:
    """Recency-weighted interactions (customer_id, product_id, weight); needs `resolved_events`."""
    return con.execute(
        f"""
        SELECT customer_id, product_id,
               sum(CASE type WHEN 'purchase' THEN 3.0 WHEN 'add_to_cart' THEN 2.0 ELSE 1.0 END
                   * pow(0.5, date_diff('second', ts, $as_of) / 86400.0 / {RECENCY_HALF_LIFE_DAYS}))
                 AS weight
        FROM resolved_events WHERE product_id IS NOT NULL
        GROUP BY customer_id, product_id
        """,
        {"as_of": as_of},
    ).df()


def content_vectors(
    customers: pd.Index, interactions: pd.DataFrame, items: pd.DataFrame, item_vectors: np.ndarray
) -> np.ndarray:
    """Weighted mean of product embeddings per customer (zeros for customers who touched none)."""
    dim = item_vectors.shape[1] if item_vectors.size else 384
    out = np.zeros((len(customers), dim), dtype=np.float32)
    if interactions.empty:
        return out
    row = pd.Series(np.arange(len(customers)), index=customers)
    col = pd.Series(np.arange(len(items)), index=items["product_id"].to_numpy())
    r = row.reindex(interactions["customer_id"]).to_numpy()
    c = col.reindex(interactions["product_id"]).to_numpy()
    ok = ~(np.isnan(r) | np.isnan(c))
    np.add.at(out, r[ok].astype(int), item_vectors[c[ok].astype(int)] * interactions["weight"].to_numpy()[ok, None])
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1, norms)


def open_qdrant(settings):
    """A qdrant-client for the workspace: embedded on disk by default, a server with NHIP_QDRANT_URL.

    Embedded mode allows one process at a time on a folder; commands open it only while they work.
    """
    from qdrant_client import QdrantClient

    if settings.qdrant_url:
        return QdrantClient(url=settings.qdrant_url)
    settings.qdrant_path.mkdir(parents=True, exist_ok=True)
    return QdrantClient(path=str(settings.qdrant_path))


def collection_behind(client, alias: str) -> str | None:
    """The collection an alias points at (None when there is none yet)."""
    for entry in client.get_aliases().aliases:
        if entry.alias_name == alias:
            return entry.collection_name
    return None


def _swap_in(client, alias: str, collection: str) -> None:
    from qdrant_client import models

    old = [name] if (name := collection_behind(client, alias)) else []
    actions = [models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))] if old else []
    actions.append(models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)))
    client.update_collection_aliases(change_aliases_operations=actions)
    for name in old:
        if name != collection:
            client.delete_collection(name)


def write_collections(
    client,
    profiles: pd.DataFrame,
    behaviour: np.ndarray,
    content: np.ndarray,
    items: pd.DataFrame,
    item_vectors: np.ndarray,
    stamp: str,
) -> dict[str, int]:
    """Write `profiles_<stamp>` and `items_<stamp>`, then point the aliases at them."""
    from qdrant_client import models

    profile_collection = f"profiles_{stamp}"
    client.create_collection(
        profile_collection,
        vectors_config={
            "behaviour": models.VectorParams(size=behaviour.shape[1], distance=models.Distance.COSINE),
            "content": models.VectorParams(size=content.shape[1], distance=models.Distance.COSINE),
        },
    )
    consent = [f"consent_{c}" for c in CONSENT_CHANNELS]
    payload_frame = profiles[[*consent, *PAYLOAD_FEATURES]]
    points = []
    for i, (customer_id, row) in enumerate(payload_frame.iterrows()):
        payload = {"customer_id": customer_id}
        for key, value in row.items():
            payload[key] = bool(value) if key.startswith("consent_") else (
                None if pd.isna(value) else float(value))
        points.append(models.PointStruct(
            id=point_id(customer_id),
            vector={"behaviour": behaviour[i].tolist(), "content": content[i].tolist()},
            payload=payload,
        ))
    client.upload_points(profile_collection, points, batch_size=256)

    item_collection = f"items_{stamp}"
    dim = item_vectors.shape[1] if item_vectors.size else content.shape[1]
    client.create_collection(
        item_collection, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
    )
    client.upload_points(item_collection, [
        models.PointStruct(
            id=point_id(f"item:{row.product_id}"),
            vector=item_vectors[i].tolist(),
            payload={"product_id": row.product_id, "category": row.category, "purchases": int(row.purchases)},
        )
        for i, row in enumerate(items.itertuples(index=False))
    ], batch_size=256)
    _swap_in(client, "profiles", profile_collection)
    _swap_in(client, "items", item_collection)
    return {"profiles": len(points), "items": len(items)}
