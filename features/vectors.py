"""Profile vectors, and the vector stores that hold them: Qdrant and an in-process snapshot.

A profile vector has two parts: `behaviour` (scaled PROFILE_VECTOR_V1 features, unit length) and
`content` (the mean embedding of the products a customer touched, weighted toward recent ones, unit length
or zero for a customer who touched none). Stores keep them concatenated as the named vector `profile`;
a search scores w_b·cos(behaviour) + w_c·cos(content) as a dot product with a weighted query, so the
weights are chosen per query. Products live in `items` (named vector `content`).

Every build writes both stores, each under a new name, and then swaps it in:

- Qdrant (`profiles`, `items` aliases onto `profiles_<stamp>`, `items_<stamp>`): embedded in
  NHIP_HOME/qdrant by default, a server when `NHIP_QDRANT_URL` is set (same code, qdrant-client).
- A snapshot under NHIP_HOME/vectors/<stamp>/ (float32 .npy matrices + a parquet payload), made current by
  rewriting the one-line file NHIP_HOME/vectors/current with `os.replace`. Readers open the snapshot the
  pointer names and keep it; a build or an erasure never waits for them nor they for it.

Which one answers queries (`open_vector_store`): the Qdrant server when `NHIP_QDRANT_URL` is set (it is
then the system of record and serves many processes); otherwise the snapshot, because embedded Qdrant is
neither fast enough nor shareable. Measured at 100k profiles on 2 cores (benchmarks/lookalike_latency.py,
BENCHMARKS.md): qdrant-client's local mode is a brute-force Python scan (~125 ms a search, far more
filtered) and locks its folder to one process, so a running service would lock the feature build out.
A 100k × 392 float32 scan in numpy still takes ~15 ms (memory bound), so the snapshot stores content
vectors in an orthonormal basis of the catalogue's embeddings (`SNAPSHOT_CONTENT_DIMS` = 64 dims): exact
while the catalogue's embeddings span ≤ 64 dimensions (the demo shop has 60 products), a truncated SVD
beyond. 100k × 72 float32 is 29 MB and scans in ~2 ms.

Limits: the snapshot is exact search in memory (≈ 0.3 KB a profile: 1M profiles ≈ 300 MB and ~20 ms a
query); beyond a few hundred thousand profiles, or with several serving processes on several machines,
run a Qdrant server and set NHIP_QDRANT_URL. Embedded Qdrant remains a copy written by each build for
inspection (one process at a time: the build opens it only while writing).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import duckdb
import numpy as np
import pandas as pd

from features.feature_lists import PROFILE_VECTOR_V1
from features.profile_features import CONSENT_CHANNELS

RECENCY_HALF_LIFE_DAYS = 30.0
PAYLOAD_FEATURES = ("recency_days", "n_purchases", "monetary_total")
BEHAVIOUR_DIMS = len(PROFILE_VECTOR_V1.features)
SNAPSHOT_CONTENT_DIMS = 64
PROFILES, ITEMS = "profiles", "items"
KEY_FIELDS = {PROFILES: "customer_id", ITEMS: "product_id"}
ID_PREFIXES = {PROFILES: "", ITEMS: "item:"}


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


def profile_matrix(behaviour: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The stored `profile` vector: both unit-length parts side by side (behaviour first)."""
    return np.hstack([behaviour, content]).astype(np.float32)


def split_profile(vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return vector[..., :BEHAVIOUR_DIMS], vector[..., BEHAVIOUR_DIMS:]


# ---------------------------------------------------------------------------------------------------------
# the store interface
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Collection:
    """Points to write: one key per row, named float32 matrices with one row per key, and a payload."""

    name: str  # PROFILES or ITEMS: the alias readers use
    keys: list[str]
    vectors: dict[str, np.ndarray]
    payload: pd.DataFrame  # one row per key, same order; bool and float columns (str for items)


@dataclass
class Hit:
    key: str
    score: float
    payload: dict = field(default_factory=dict)


class VectorStore(Protocol):
    """What features.recommend needs from a vector store; scores are dot products."""

    def replace(self, collections: Sequence[Collection], stamp: str) -> None:
        """Write the collections under new names, then make readers see them (old ones are dropped)."""

    def search(self, name: str, using: str, vector: np.ndarray, limit: int,
               require: dict[str, bool] | None = None, exclude: Sequence[str] = ()) -> list[Hit]:
        """The `limit` best keys by dot product, with payload equal to `require`, keys not in `exclude`."""

    def fetch(self, name: str, using: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors of the keys that exist."""

    def scan(self, name: str) -> pd.DataFrame:
        """Every key's payload, indexed by key."""

    def delete(self, name: str, keys: Sequence[str]) -> int:
        """Remove keys; returns how many were present."""

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------------------
# Qdrant (embedded or server)
# ---------------------------------------------------------------------------------------------------------


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


def _plain(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return None if pd.isna(value) else float(value)
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


class QdrantStore:
    """Collections behind aliases in Qdrant; searches go through the alias, so a swap is atomic."""

    def __init__(self, client):
        self.client = client

    def _id(self, name: str, key: str) -> str:
        return point_id(f"{ID_PREFIXES[name]}{key}")

    def replace(self, collections: Sequence[Collection], stamp: str) -> None:
        from qdrant_client import models

        for coll in collections:
            target = f"{coll.name}_{stamp}"
            self.client.create_collection(target, vectors_config={
                using: models.VectorParams(size=matrix.shape[1], distance=models.Distance.DOT)
                for using, matrix in coll.vectors.items()
            })
            key_field = KEY_FIELDS[coll.name]
            records = coll.payload.to_dict("records")
            points = [
                models.PointStruct(
                    id=self._id(coll.name, key),
                    vector={using: matrix[i].tolist() for using, matrix in coll.vectors.items()},
                    payload={key_field: key, **{k: _plain(v) for k, v in records[i].items()}},
                )
                for i, key in enumerate(coll.keys)
            ]
            self.client.upload_points(target, points, batch_size=256)
        for coll in collections:
            _swap_in(self.client, coll.name, f"{coll.name}_{stamp}")

    def search(self, name, using, vector, limit, require=None, exclude=()):
        from qdrant_client import models

        must = [models.FieldCondition(key=k, match=models.MatchValue(value=v)) for k, v in (require or {}).items()]
        must_not = [models.HasIdCondition(has_id=[self._id(name, k) for k in exclude])] if exclude else []
        result = self.client.query_points(
            name, query=np.asarray(vector, dtype=np.float32).tolist(), using=using, limit=limit,
            query_filter=models.Filter(must=must, must_not=must_not) if (must or must_not) else None,
            with_payload=True,
        )
        key_field = KEY_FIELDS[name]
        return [Hit(p.payload[key_field], float(p.score), p.payload) for p in result.points]

    def fetch(self, name, using, keys):
        points = self.client.retrieve(name, ids=[self._id(name, k) for k in keys], with_vectors=[using],
                                      with_payload=[KEY_FIELDS[name]])
        return {p.payload[KEY_FIELDS[name]]: np.asarray(p.vector[using], dtype=np.float32) for p in points}

    def scan(self, name):
        rows, offset = [], None
        while True:
            points, offset = self.client.scroll(name, limit=1024, offset=offset, with_payload=True)
            rows += [p.payload for p in points]
            if offset is None:
                break
        return pd.DataFrame(rows).set_index(KEY_FIELDS[name]) if rows else pd.DataFrame()

    def delete(self, name, keys):
        from qdrant_client import models

        collection = collection_behind(self.client, name)
        if collection is None:
            return 0
        ids = [self._id(name, k) for k in keys]
        present = len(self.client.retrieve(collection, ids=ids, with_payload=False))
        self.client.delete(collection, points_selector=models.PointIdsList(points=ids), wait=True)
        return present

    def close(self) -> None:
        self.client.close()


# ---------------------------------------------------------------------------------------------------------
# the in-process snapshot
# ---------------------------------------------------------------------------------------------------------


def snapshot_root(settings) -> Path:
    return settings.workspace / "vectors"


def current_snapshot(root: Path) -> Path | None:
    pointer = root / "current"
    if not pointer.exists():
        return None
    folder = root / pointer.read_text(encoding="utf-8").strip()
    return folder if folder.is_dir() else None


def _write_snapshot(root: Path, collections: Sequence[Collection], stamp: str, keep_previous: bool) -> None:
    folder = root / stamp
    folder.mkdir(parents=True, exist_ok=False)
    for coll in collections:
        payload = coll.payload.copy()
        payload.insert(0, KEY_FIELDS[coll.name], coll.keys)
        payload.reset_index(drop=True).to_parquet(folder / f"{coll.name}.parquet", index=False)
        for using, matrix in coll.vectors.items():
            np.save(folder / f"{coll.name}.{using}.npy", np.ascontiguousarray(matrix, dtype=np.float32))
    (folder / "manifest.json").write_text(json.dumps(
        {"stamp": stamp, "collections": {c.name: sorted(c.vectors) for c in collections}}), encoding="utf-8")
    temp = root / f"current.{stamp}.tmp"
    temp.write_text(stamp, encoding="utf-8")
    os.replace(temp, root / "current")
    # Keep the previous snapshot for readers that read the pointer just before the swap (not after an
    # erasure: its bytes must go).
    previous = sorted((p for p in root.iterdir() if p.is_dir() and p.name != stamp), reverse=True)
    for old in previous[1 if keep_previous else 0:]:
        shutil.rmtree(old, ignore_errors=True)


def content_basis(item_vectors: np.ndarray, dims: int = SNAPSHOT_CONTENT_DIMS) -> np.ndarray:
    """Orthonormal rows spanning the catalogue's embeddings (top `dims` right singular vectors)."""
    if item_vectors.size == 0:
        return np.eye(dims, 384, dtype=np.float32)
    _, s, vt = np.linalg.svd(item_vectors.astype(np.float64), full_matrices=False)
    basis = np.zeros((dims, item_vectors.shape[1]))
    keep = min(dims, int((s > 1e-6 * s[0]).sum()))
    basis[:keep] = vt[:keep]
    return basis.astype(np.float32)


def _project(matrix: np.ndarray, basis: np.ndarray) -> np.ndarray:
    projected = matrix @ basis.T
    norms = np.linalg.norm(projected, axis=1, keepdims=True)
    return (projected / np.where(norms == 0, 1, norms)).astype(np.float32)


def compact_collections(collections: Sequence[Collection]) -> list[Collection]:
    """The snapshot's form: content parts expressed in the catalogue basis (exact while rank ≤ 64)."""
    items = next(c for c in collections if c.name == ITEMS)
    basis = content_basis(items.vectors["content"])
    out = []
    for coll in collections:
        vectors = {}
        for using, matrix in coll.vectors.items():
            if using == "content":
                vectors[using] = _project(matrix, basis)
            elif using == "profile":
                behaviour, content = split_profile(matrix)
                vectors[using] = profile_matrix(behaviour, _project(content, basis))
            else:
                vectors[using] = matrix
        out.append(Collection(coll.name, coll.keys, vectors, coll.payload))
    return out


class _Loaded:
    def __init__(self, folder: Path, name: str):
        self.payload = pd.read_parquet(folder / f"{name}.parquet")
        self.keys = self.payload[KEY_FIELDS[name]].to_numpy(dtype=object)
        self.payload = self.payload.set_index(KEY_FIELDS[name])
        self.row = dict(zip(self.keys, range(len(self.keys))))
        self.vectors = {p.name.split(".")[1]: np.load(p, mmap_mode="r")
                        for p in folder.glob(f"{name}.*.npy")}
        self.flags = {(c, v): self.payload[c].to_numpy(dtype=bool) != v for c in self.payload.columns
                      if self.payload[c].dtype == bool for v in (True, False)}  # rows a filter drops
        self.columns = {c: self.payload[c].to_numpy() for c in self.payload.columns}

    def record(self, i: int) -> dict:
        return {c: values[i].item() if hasattr(values[i], "item") else values[i]
                for c, values in self.columns.items()}


def _one_blas_thread():
    """A context that keeps BLAS on one thread: a 30 MB scan gains nothing from a second thread, and on
    a busy 2-core machine waiting for it tripled the p99 (BENCHMARKS.md)."""
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        except ImportError:
            _BLAS = False
    return _BLAS.limit(limits=1, user_api="blas") if _BLAS else contextlib.nullcontext()


_BLAS = None


class SnapshotStore:
    """Exact search over the current snapshot, loaded once; a later build does not disturb it."""

    def __init__(self, root: Path):
        self.root = root
        self.folder = current_snapshot(root)
        if self.folder is None:
            raise LookupError("no profile vectors built yet; run `nhip features build --as-of DATE`")
        self._loaded: dict[str, _Loaded] = {}

    def _get(self, name: str) -> _Loaded:
        if name not in self._loaded:
            loaded = _Loaded(self.folder, name)
            loaded.vectors = {k: np.ascontiguousarray(v) for k, v in loaded.vectors.items()}
            self._loaded[name] = loaded
        return self._loaded[name]

    def replace(self, collections, stamp):
        _write_snapshot(self.root, compact_collections(collections), stamp, keep_previous=True)

    def search(self, name, using, vector, limit, require=None, exclude=()):
        data = self._get(name)
        with _one_blas_thread():
            scores = data.vectors[using] @ np.asarray(vector, dtype=np.float32)
        for column, value in (require or {}).items():
            np.copyto(scores, -np.inf, where=data.flags[(column, bool(value))])
        rows = [i for i in (data.row.get(k) for k in exclude) if i is not None]
        scores[rows] = -np.inf
        n, limit = len(scores), min(limit, len(scores))
        if limit <= 0:
            return []
        top = np.argpartition(scores, n - limit)[n - limit:]
        top = top[np.argsort(-scores[top], kind="stable")]
        top = top[np.isfinite(scores[top])]
        return [Hit(data.keys[i], float(scores[i]), data.record(i)) for i in top]

    def fetch(self, name, using, keys):
        data = self._get(name)
        rows = ((key, data.row.get(key)) for key in keys)
        return {key: np.array(data.vectors[using][i]) for key, i in rows if i is not None}

    def scan(self, name):
        return self._get(name).payload

    def delete(self, name, keys):
        """Write a new snapshot without the keys and drop every older one (used by erasure)."""
        present = set(keys) & set(self._get(name).keys)
        if not present:
            return 0
        collections = []
        manifest = json.loads((self.folder / "manifest.json").read_text(encoding="utf-8"))
        for coll_name in manifest["collections"]:
            data = _Loaded(self.folder, coll_name)
            keep = ~np.isin(data.keys.astype(str), list(present)) if coll_name == name else np.ones(len(data.keys), bool)
            collections.append(Collection(
                coll_name, list(data.keys[keep]), {k: np.asarray(v)[keep] for k, v in data.vectors.items()},
                data.payload.iloc[keep].reset_index(drop=True)))
        self._loaded.clear()
        stamp = datetime.now().strftime("%Y%m%d%H%M%S%f")
        _write_snapshot(self.root, collections, stamp, keep_previous=False)
        self.folder = current_snapshot(self.root)
        return len(present)

    def close(self) -> None:
        self._loaded.clear()


def open_vector_store(settings, kind: str | None = None) -> VectorStore:
    """The store queries read: the Qdrant server when NHIP_QDRANT_URL is set, else the snapshot.

    `kind` = "qdrant" or "snapshot" forces one (embedded Qdrant only from a single process).
    """
    kind = kind or ("qdrant" if settings.qdrant_url else "snapshot")
    if kind == "qdrant":
        return QdrantStore(open_qdrant(settings))
    if kind == "snapshot":
        return SnapshotStore(snapshot_root(settings))
    raise ValueError(f"unknown vector store {kind!r}; use 'qdrant' or 'snapshot'")


# ---------------------------------------------------------------------------------------------------------
# what a build writes
# ---------------------------------------------------------------------------------------------------------


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
    """Write `profiles_<stamp>` and `items_<stamp>` to Qdrant and swap the aliases; also the snapshot."""
    collections = build_collections(profiles, behaviour, content, items, item_vectors)
    QdrantStore(client).replace(collections, stamp)
    if snapshot_dir is not None:
        snapshot_dir.mkdir(parents=True, exist_ok=True)
        _write_snapshot(snapshot_dir, compact_collections(collections), stamp, keep_previous=True)
    return {"profiles": len(profiles), "items": len(items)}


def erase_customers(settings, customers: Sequence[str]) -> int:
    """Remove customers from every vector store (Qdrant and the snapshot); returns points removed."""
    removed = 0
    if settings.qdrant_url or settings.qdrant_path.exists():
        store = QdrantStore(open_qdrant(settings))
        try:
            removed = store.delete(PROFILES, customers)
        finally:
            store.close()
    if current_snapshot(snapshot_root(settings)) is not None:
        removed = max(removed, SnapshotStore(snapshot_root(settings)).delete(PROFILES, customers))
    return removed
