"""Lookalike audiences and next products for the HTTP service, answered from the latest feature build.

The vector store (the snapshot, or the Qdrant server when `NHIP_QDRANT_URL` is set) is opened once
and read for every request. The DuckDB event store is opened read-only per request and closed at
once: it resolves seeds given as phones or emails and finds recent purchases. Holding it open would
stop every `nhip ingest` and feature build, since DuckDB admits one writing process per file and no
writer while another process has it open.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from features.vectors.config import VectorConfig
from features.vectors.layout import VectorStore


class StoreBusy(RuntimeError):
    """The event store is being written by another process (an import or a feature build)."""


class Recommender:
    """Lookalikes and next products over the vector store of `vectors` (or an open `store`) and the
    event store at `store_path`."""

    def __init__(self, store_path: Path, vectors: VectorConfig, store: VectorStore | None = None):
        from features.vectors.stores import open_vector_store

        self.store_path = store_path
        self.vectors = store or open_vector_store(vectors)

    def lookalike(self, seeds: list[str], k: int, channel: str | None, id_type: str | None) -> dict:
        from features.vectors.lookalike import find_lookalikes

        if not seeds:
            raise ValueError("seeds is empty: give customer ids, phones, emails or other identifiers")
        if k < 1:
            raise ValueError("k must be at least 1")
        found = _while_readable(lambda: find_lookalikes(self.store_path, self.vectors, seeds, k, channel, id_type))
        return {
            "customers": [{"customer_id": c, "similarity": round(float(s), 6)} for c, s in
                          zip(found.customers["customer_id"], found.customers["similarity"])],
            "seed_customers": found.seeds,
            "unknown_seeds": found.unknown_seeds,
        }

    def next_products(self, customer_id: str, k: int, exclude_days: int) -> dict:
        from features.vectors.next_products import suggest_next_products

        if k < 1:
            raise ValueError("k must be at least 1")
        if exclude_days < 0:
            raise ValueError("exclude_days must be 0 (keep everything) or more")
        picks = _while_readable(lambda: suggest_next_products(self.store_path, self.vectors, customer_id, k,
                                                              exclude_days))
        items = picks.items.astype(object).where(picks.items.notna(), None)
        return {
            "customer_id": customer_id,
            "source": picks.source,
            "items": items.to_dict(orient="records"),
            "excluded": list(picks.excluded),
        }

    def close(self) -> None:
        self.vectors.close()


def _while_readable(call):
    """Run `call`, turning DuckDB's lock conflict into StoreBusy so the API can answer 503."""
    try:
        return call()
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StoreBusy("the event store is busy (an import or feature build is writing); retry shortly") from exc
        raise
