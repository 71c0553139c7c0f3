"""Lookalike query latency at 100k profiles: the in-process snapshot vs embedded Qdrant.

    python benchmarks/lookalike_latency.py --profiles 100000 --queries 500 --qdrant-queries 50

Synthetic vectors of the real shape: behaviour = 8 unit-length dims (PROFILE_VECTOR_V1), content = a
random non-negative mix of 60 random unit "product embeddings" in 384 dims (as a real content vector is
a weighted mean of the catalogue's MiniLM embeddings), consent flags true for ~half. Latency does not
depend on the values, only on the shapes; the snapshot's 64-dim basis is exact here, as for the demo shop.

A query is what `features.lookalike` does after resolving seeds: fetch the 20 seeds' vectors, build the
weighted centroid, search the top 100 excluding the seeds (filtered: only `consent_zalo_oa`).
Pass --qdrant-profiles 0 to skip embedded Qdrant (it takes minutes at 100k).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from features.vectors.layout import ITEMS, PROFILES, Collection, profile_matrix
from features.vectors.lookalike import lookalike
from features.vectors.qdrant import QdrantStore
from features.vectors.snapshot import SnapshotStore

N_ITEMS, CONTENT_DIMS, BEHAVIOUR_DIMS = 60, 384, 8


def unit(m: np.ndarray) -> np.ndarray:
    return (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)


def synthetic(n: int, seed: int) -> list[Collection]:
    rng = np.random.default_rng(seed)
    items = unit(rng.standard_normal((N_ITEMS, CONTENT_DIMS)))
    mix = rng.gamma(0.3, 1.0, (n, N_ITEMS)).astype(np.float32)
    content = unit(mix @ items)
    behaviour = unit(rng.standard_normal((n, BEHAVIOUR_DIMS)))
    payload = pd.DataFrame({f"consent_{c}": rng.random(n) < 0.5 for c in ("zalo_oa", "email", "sms")})
    payload["has_content"] = True
    keys = [f"c{i:07d}" for i in range(n)]
    item_payload = pd.DataFrame({"product_name": [f"p{i}" for i in range(N_ITEMS)], "category": "x",
                                 "purchases": 1.0})
    return [Collection(PROFILES, keys, {"profile": profile_matrix(behaviour, content)}, payload),
            Collection(ITEMS, [f"p{i}" for i in range(N_ITEMS)], {"content": items}, item_payload)]


def measure(store, keys: list[str], queries: int, channel: str | None, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    times = []
    for _ in range(queries):
        seeds = {keys[i]: keys[i] for i in rng.choice(len(keys), 20, replace=False)}
        started = time.perf_counter()
        result = lookalike(store, seeds, k=100, channel=channel)
        times.append(time.perf_counter() - started)
        assert len(result.customers) == 100
    ms = np.array(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--qdrant-profiles", type=int, default=100_000)
    parser.add_argument("--qdrant-queries", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        collections = synthetic(args.profiles, args.seed)
        keys = collections[0].keys
        started = time.perf_counter()
        writer = object.__new__(SnapshotStore)
        writer.root = Path(tmp) / "vectors"
        writer.root.mkdir()
        writer.replace(collections, "20260101000000000000")
        write_s = time.perf_counter() - started
        started = time.perf_counter()
        store = SnapshotStore(writer.root)
        store.fetch(PROFILES, "profile", keys[:1])
        load_s = time.perf_counter() - started
        for channel in (None, "zalo_oa"):
            rows.append({"store": "snapshot (numpy, 72 dims)", "profiles": args.profiles,
                         "filter": channel or "-", "write_s": write_s, "load_s": load_s,
                         **measure(store, keys, args.queries, channel, args.seed)})
        print(pd.DataFrame(rows).round(2).to_string(index=False), flush=True)

        if args.qdrant_profiles:
            from qdrant_client import QdrantClient

            collections = synthetic(args.qdrant_profiles, args.seed)
            keys = collections[0].keys
            client = QdrantClient(path=str(Path(tmp) / "qdrant"))
            store = QdrantStore(client)
            started = time.perf_counter()
            store.replace(collections, "20260101000000000000")
            write_s = time.perf_counter() - started
            client.close()
            started = time.perf_counter()
            store = QdrantStore(QdrantClient(path=str(Path(tmp) / "qdrant")))
            store.fetch(PROFILES, "profile", keys[:1])
            load_s = time.perf_counter() - started
            for channel in (None, "zalo_oa"):
                rows.append({"store": "embedded Qdrant (qdrant-client local, 392 dims)",
                             "profiles": args.qdrant_profiles, "filter": channel or "-",
                             "write_s": write_s, "load_s": load_s,
                             **measure(store, keys, args.qdrant_queries, channel, args.seed)})
            store.close()
    print()
    print(pd.DataFrame(rows).round(2).to_string(index=False))


if __name__ == "__main__":
    main()
