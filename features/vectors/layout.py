"""What a vector store holds: the collections, the layout of a stored profile vector
(behaviour part, then content part) and the store interface every backend implements.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from features.profile.feature_lists import PROFILE_VECTOR_V1

BEHAVIOUR_DIMS = len(PROFILE_VECTOR_V1.features)
PROFILES, ITEMS = "profiles", "items"
KEY_FIELDS = {PROFILES: "customer_id", ITEMS: "product_id"}
ID_PREFIXES = {PROFILES: "", ITEMS: "item:"}


def point_id(key: str) -> str:
    """Qdrant wants an int or a UUID; a name-based UUID keeps the point id stable per customer."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"nhip:{key}"))


def profile_matrix(behaviour: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The stored `profile` vector: both unit-length parts side by side (behaviour first)."""
    return np.hstack([behaviour, content]).astype(np.float32)


def split_profile(vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return vector[..., :BEHAVIOUR_DIMS], vector[..., BEHAVIOUR_DIMS:]




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
    """What the lookalike and next-product queries need from a vector store; scores are dot products."""

    def search(self, name: str, using: str, vector: np.ndarray, limit: int,
               require: dict[str, bool] | None = None, exclude: Sequence[str] = ()) -> list[Hit]:
        """The `limit` best keys by dot product, with payload equal to `require`, keys not in `exclude`."""

    def fetch(self, name: str, using: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors of the keys that exist."""

    def scan(self, name: str) -> pd.DataFrame:
        """Every key's payload, indexed by key."""

    def close(self) -> None: ...
