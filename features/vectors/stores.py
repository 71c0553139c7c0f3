"""Profile vectors, and the vector stores that hold them: Qdrant and an in-process snapshot.

A profile vector has two parts: `behaviour` (scaled PROFILE_VECTOR_V1 features, unit length) and
`content` (the mean embedding of the products a customer touched, weighted toward recent ones, unit length
or zero for a customer who touched none). Stores keep them concatenated as the named vector `profile`;
a search scores w_b·cos(behaviour) + w_c·cos(content) as a dot product with a weighted query, so the
weights are chosen per query. Products live in `items` (named vector `content`).

Every build writes both stores, each under a new name, and then swaps it in:

- Qdrant (`profiles`, `items` aliases onto `profiles_<stamp>`, `items_<stamp>`): embedded in
  NHIP_HOME/qdrant by default, a server when `NHIP_QDRANT_URL` is set (same code, qdrant-client).
- A snapshot in the feature build's `vectors/` folder (float32 .npy matrices + a parquet payload), which
  becomes current with its build (`features.builds`). Readers open the snapshot of the build they read
  and keep it; a build or an erasure never waits for them nor they for it.

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

from collections.abc import Sequence

from features.builds import Build
from features.vectors.config import VectorConfig
from features.vectors.layout import PROFILES, VectorStore
from features.vectors.qdrant import QdrantStore, open_qdrant
from features.vectors.snapshot import SnapshotStore


def open_vector_store(config: VectorConfig, build: Build | None, kind: str | None = None) -> VectorStore:
    """The store queries read: the Qdrant server when NHIP_QDRANT_URL is set, else `build`'s snapshot.

    `kind` = "qdrant" or "snapshot" forces one (embedded Qdrant only from a single process).
    """
    kind = kind or ("qdrant" if config.qdrant_url else "snapshot")
    if kind == "qdrant":
        return QdrantStore(open_qdrant(config))
    if kind == "snapshot":
        return SnapshotStore(build.vectors if build is not None else None)
    raise ValueError(f"unknown vector store {kind!r}; use 'qdrant' or 'snapshot'")


def erase_from_qdrant(config: VectorConfig, customers: Sequence[str]) -> int:
    """Remove customers from Qdrant (server, or the embedded copy when one was written); returns points
    removed. Snapshots are erased with their builds (`features.erasure`)."""
    if not (config.qdrant_url or config.qdrant_path.exists()):
        return 0
    store = QdrantStore(open_qdrant(config))
    try:
        return store.delete(PROFILES, customers)
    finally:
        store.close()
