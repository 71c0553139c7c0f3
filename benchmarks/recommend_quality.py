"""Lookalike precision and next-product recall@10 against the synthetic shop's ground truth.

    python benchmarks/recommend_quality.py --customers 2000 --days 240 --seed 7

Generates the demo data, ingests it into a temporary workspace and builds features (vectors included)
as of `--holdout-days` (30) before the last event. Customers map to persons through identities.csv (a
customer's person is the owner of most of its identifiers).

- Lookalike precision: for each latent segment, `--trials` seed audiences of 20 customers of that
  segment; the share of the top 100 lookalikes (seeds excluded) in the same segment, against the
  segment's share of all customers (what a random audience would get). Several behaviour/content weights.
- Next products: for every customer who buys in the 30 days after as_of, recall@10 of the products they
  buy then (share of bought products in their list), averaged over customers. Baselines: the 10 most
  bought products overall, and "buy again" (the customer's own most bought products, padded with
  popular ones). Recent purchases are not excluded for this measurement (exclude_days = 0), since
  re-buying is common in the generator; the blend adds the customer's own purchases to the vector score.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.identity_quality import customer_persons  # noqa: E402
from features.build import build_features
from features.builds import Builds
from features.ingest.importer import ingest_file
from features.store import open_store
from features.vectors.layout import ITEMS, PROFILES, split_profile
from features.vectors.lookalike import lookalike
from features.vectors.stores import open_vector_store
from synthetic.demo_shop import generate, write


def purchases(con, start, end) -> pd.DataFrame:
    """Products bought per customer in (start, end]; the build's identity map is registered as
    `identity_map` on `con`."""
    return con.execute(
        """
        SELECT m.customer_id, e.product_id, count(*) AS n FROM events e
        JOIN identity_map m ON e.pid_type = m.id_type AND e.pid_value = m.id_value
        WHERE e.type = 'purchase' AND e.product_id IS NOT NULL AND e.ts > $start AND e.ts <= $end
        GROUP BY ALL ORDER BY customer_id, product_id  -- "buy again" breaks ties by product, every run
        """, {"start": start, "end": end}).df()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--holdout-days", type=int, default=30)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["NHIP_HOME"] = str(Path(tmp) / "home")
        os.environ.pop("NHIP_QDRANT_URL", None)
        from nhip.settings import get_settings

        settings = get_settings()
        data = generate(args.customers, args.days, args.seed)
        paths = write(data, Path(tmp) / "demo")
        ingest_file(paths["events"], settings.store_path)
        with open_store(settings.store_path) as con:
            last = con.execute("SELECT max(ts) FROM events").fetchall()[0][0]
        as_of = last - timedelta(days=args.holdout_days)
        started = time.perf_counter()
        build_features(settings.build, as_of, settings.vectors, to_qdrant=False)
        build_s = time.perf_counter() - started
        build = Builds(settings.builds).open()
        identity = build.table("identity")
        person = customer_persons(identity, data.identities)
        with open_store(settings.store_path) as con:
            con.register("identity_map", identity)
            before = purchases(con, last - timedelta(days=10_000), as_of)
            after = purchases(con, as_of, last)
        store = open_vector_store(settings.vectors, build)
        keys = pd.Index(store.scan(PROFILES).index)
        segment_of = data.truth.set_index("person_id")["segment"]
        segment = person.reindex(keys).map(segment_of).dropna()
        print(f"as_of {as_of} UTC, {len(keys)} customers with vectors, {len(segment)} mapped to a person; "
              f"build {build_s:.1f} s")

        rng = np.random.default_rng(args.seed)
        rows = []
        for wb, wc in ((1.0, 0.0), (0.5, 0.5), (0.0, 1.0)):
            for name in sorted(segment.unique()):
                members = segment.index[segment == name]
                if len(members) < 40:
                    continue
                shares = []
                for _ in range(args.trials):
                    seeds = {c: c for c in rng.choice(members, 20, replace=False)}
                    found = lookalike(store, seeds, k=100, behaviour_weight=wb, content_weight=wc)
                    got = segment.reindex(found.customers["customer_id"]).dropna()
                    shares.append(float((got == name).mean()))
                rows.append({"weights b/c": f"{wb}/{wc}", "segment": name, "customers": len(members),
                             "base rate": len(members) / len(segment), "precision@100": np.mean(shares)})
        table = pd.DataFrame(rows)
        print(table.round(3).to_string(index=False))
        summary = table.assign(lift=table["precision@100"] / table["base rate"]).groupby("weights b/c")[
            ["precision@100", "base rate", "lift"]].mean()
        print(summary.round(3).to_string())

        # next products
        catalogue = store.scan(ITEMS)
        item_keys = list(catalogue.index)
        popular = catalogue["purchases"].sort_values(ascending=False, kind="stable").index.tolist()
        item_matrix = np.vstack([store.fetch(ITEMS, "content", item_keys)[k] for k in item_keys])
        vectors = store.fetch(PROFILES, "profile", list(keys))
        own = before.groupby("customer_id").apply(lambda g: dict(zip(g["product_id"], g["n"])))
        pop_score = np.log1p(catalogue["purchases"].to_numpy()) / np.log1p(catalogue["purchases"].max())
        truth_items = after.groupby("customer_id")["product_id"].agg(set)
        results = {"most popular": [], "buy again": [], "vector": [], "blend": []}
        for customer, bought in truth_items.items():
            mine = own.get(customer, {})
            again = sorted(mine, key=lambda p: -mine[p])
            lists = {"most popular": popular[:10],
                     "buy again": (again + [p for p in popular if p not in mine])[:10]}
            vector = vectors.get(customer)
            content = split_profile(vector)[1] if vector is not None else None
            if content is not None and np.linalg.norm(content) > 0:
                sim = item_matrix @ content
                lists["vector"] = [item_keys[i] for i in np.argsort(-sim)[:10]]
                bought_before = np.array([np.log1p(mine.get(k, 0)) for k in item_keys])
                blend = sim + 0.3 * pop_score + 0.5 * bought_before
                lists["blend"] = [item_keys[i] for i in np.argsort(-blend)[:10]]
            else:
                lists["vector"] = lists["blend"] = popular[:10]
            for name, recommended in lists.items():
                results[name].append(len(bought & set(recommended)) / len(bought))
        recall = pd.Series({k: np.mean(v) for k, v in results.items()}, name="recall@10")
        print(f"\nnext products: {len(truth_items)} customers buying in the {args.holdout_days} days after as_of, "
              f"{len(item_keys)} products")
        print(recall.round(3).to_string())


if __name__ == "__main__":
    main()
