"""Lookalike audiences from the profile vectors (see `features.vectors`).

The seeds' behaviour and content parts are averaged separately (each re-normalised), and every other
customer scores w_b·cos(behaviour) + w_c·cos(content). Seeds may be customer ids or any identifier; seeds
that match nobody, or a customer without a vector, come back in `unknown_seeds`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.builds import Build
from features.identity.lookup import candidate_identifiers
from features.vectors.layout import PROFILES, VectorStore, split_profile

BEHAVIOUR_WEIGHT = 0.5
CONTENT_WEIGHT = 0.5


@dataclass
class Lookalike:
    customers: pd.DataFrame  # customer_id, similarity (best first)
    seeds: list[str] = field(default_factory=list)  # the seeds' customer ids
    unknown_seeds: list[str] = field(default_factory=list)  # as given


def resolve_seeds(
    identity: pd.DataFrame, seeds: Sequence[str], id_type: str | None = None
) -> tuple[dict[str, str], list[str]]:
    """({seed: customer_id}, unknown seeds) through an identity map (id_type, id_value, customer_id); a
    seed is a customer id unless `id_type` names an identifier type, and phones and emails match in
    any format."""
    known_ids = set(identity["customer_id"]) if id_type in (None, "customer_id") else set()
    by_identifier = dict(zip(zip(identity["id_type"], identity["id_value"]), identity["customer_id"]))
    found, unknown = {}, []
    for seed in seeds:
        seed = str(seed)
        if seed in known_ids:
            found[seed] = seed
            continue
        if id_type == "customer_id":
            unknown.append(seed)
            continue
        customer = next((by_identifier[c] for c in candidate_identifiers(seed, id_type) if c in by_identifier),
                        None)
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
    build: Build, vectors: VectorStore, seeds: Sequence[str], k: int, channel: str | None,
    id_type: str | None, behaviour_weight: float = BEHAVIOUR_WEIGHT, content_weight: float = CONTENT_WEIGHT,
) -> Lookalike:
    """Seeds resolved through the build's identity map, then the `k` customers most like them in
    `vectors` (the build's, or the Qdrant server's)."""
    found, unknown = resolve_seeds(build.table("identity"), seeds, id_type)
    return lookalike(vectors, found, k, channel, behaviour_weight, content_weight, unknown)
