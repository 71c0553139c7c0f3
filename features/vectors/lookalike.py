"""Lookalike audiences from the profile vectors (see `features.vectors`).

The seeds' behaviour and content parts are averaged separately (each re-normalised), and every other
customer scores w_b·cos(behaviour) + w_c·cos(content). Seeds may be customer ids or any identifier; seeds
that match nobody, or a customer without a vector, come back in `unknown_seeds`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from features.identity.lookup import candidate_identifiers
from features.store import open_store
from features.vectors.layout import PROFILES, VectorStore, split_profile

BEHAVIOUR_WEIGHT = 0.5
CONTENT_WEIGHT = 0.5


@dataclass
class Lookalike:
    customers: pd.DataFrame  # customer_id, similarity (best first)
    seeds: list[str] = field(default_factory=list)  # the seeds' customer ids
    unknown_seeds: list[str] = field(default_factory=list)  # as given


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
        for t, value in candidate_identifiers(seed, id_type):
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


def find_lookalikes(
    store_path: Path, vectors: VectorStore, seeds: Sequence[str], k: int, channel: str | None,
    id_type: str | None, behaviour_weight: float = BEHAVIOUR_WEIGHT, content_weight: float = CONTENT_WEIGHT,
) -> Lookalike:
    """Seeds resolved through the latest build's identity map (the store opened read-only for the moment
    it takes), then the `k` customers most like them in `vectors`."""
    with open_store(store_path, read_only=True) as con:
        found, unknown = resolve_seeds(con, seeds, id_type)
    return lookalike(vectors, found, k, channel, behaviour_weight, content_weight, unknown)
