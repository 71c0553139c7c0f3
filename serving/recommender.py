"""Lookalike audiences and next products for the HTTP service, answered from one feature build.

Everything comes from the build: its identity map resolves seeds given as phones or emails, its
purchases and categories tables say what to leave out and what a cold customer browsed, its snapshot
(or the Qdrant server when `NHIP_QDRANT_URL` is set) holds the vectors. The event store is never opened,
so a request never waits for a writer and no writer waits for a request.
"""

from __future__ import annotations

from features.builds import Build
from features.vectors.layout import ITEMS, PROFILES, VectorStore


class Recommender:
    def __init__(self, build: Build, vectors: VectorStore):
        self.build, self.vectors = build, vectors

    def warm(self) -> None:
        """Load the snapshot's matrices and the build's tables now, not on the first request."""
        for name in (PROFILES, ITEMS):
            self.vectors.scan(name)
        for name in ("identity", "purchases", "categories"):
            self.build.table(name)

    def lookalike(self, seeds: list[str], k: int, channel: str | None, id_type: str | None) -> dict:
        from features.vectors.lookalike import find_lookalikes

        if not seeds:
            raise ValueError("seeds is empty: give customer ids, phones, emails or other identifiers")
        if k < 1:
            raise ValueError("k must be at least 1")
        found = find_lookalikes(self.build, self.vectors, seeds, k, channel, id_type)
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
        picks = suggest_next_products(self.build, self.vectors, customer_id, k, exclude_days)
        items = picks.items.astype(object).where(picks.items.notna(), None)
        return {
            "customer_id": customer_id,
            "source": picks.source,
            "items": items.to_dict(orient="records"),
            "excluded": list(picks.excluded),
        }
