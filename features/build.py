"""The feature build job: identities, profiles and what serving needs of them, as of a date, into a new
immutable build (`features.builds`); vectors into its snapshot and, when asked, into Qdrant.

A build reads the store through `open_store`, a snapshot of one store version that no writer waits for,
and first stores whatever a stopped collector left in the spool, so every event acknowledged before it
started is in it. Builds run one at a time (`Builds.lock`); a refresh that finds one running skips.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from features.builds import Build, Builds, BuildsConfig
from features.identity.changes import identity_changes
from features.identity.events import ResolvedEvents, resolved_events
from features.identity.graph import IdentityConfig, resolve_graph
from features.identity.reports import customer_attributes
from features.ingest.spool import LocalSpool, drain_spool
from features.profile.repeat_purchases import purchase_summary
from features.profile.wide import build_profiles
from features.store import fingerprint, open_store
from features.vectors.config import VectorConfig
from features.vectors.next_products import categories_by_customer, purchases_by_customer
from models.clv import lifetime_params
from nhip.clock import utcnow

BUILD_STEPS = ("resolving identities", "computing profiles", "writing the build")
VECTOR_STEPS = ("embedding products", "writing vectors")
# Product text embeddings of earlier builds, reused while the catalogue does not change.
EMBEDDINGS_CACHE = "embeddings.parquet"
# Spooled batches older than this belong to a collector that is not draining them (stopped or dead).
STALE_SPOOL_SECONDS = 10.0


@dataclass(frozen=True)
class BuildConfig:
    """Everything a feature build reads and writes: the store, the spool a stopped collector may have
    left batches in, where builds go, and the identity configuration every path shares."""

    store_path: Path
    spool_path: Path
    builds: BuildsConfig
    identity: IdentityConfig


@dataclass
class BuildSummary:
    build_id: str
    as_of: datetime
    customers: int
    identifiers: int
    items: int
    vectors: int


def build_features(
    config: BuildConfig,
    as_of: datetime,
    vectors: VectorConfig | None,
    to_qdrant: bool,
    step: Callable[[str], None] | None = None,
    wait: float = 3600.0,
) -> BuildSummary:
    """Build as of `as_of` and make it current. With `vectors`, embed products and write the snapshot
    (and Qdrant when `to_qdrant`). `step` is told each step's name (`BUILD_STEPS`, then `VECTOR_STEPS`);
    `wait` bounds the wait for another build (`BuildBusy` after it)."""
    step = step or (lambda _: None)
    drain_spool(LocalSpool(config.spool_path), config.store_path, older_than=STALE_SPOOL_SECONDS, wait=60)
    builds = Builds(config.builds)
    with builds.lock(wait):
        previous = builds.current()
        draft = builds.draft()
        with open_store(config.store_path) as con:
            step(BUILD_STEPS[0])
            resolution = resolve_graph(con, as_of, config.identity)
            step(BUILD_STEPS[1])
            with resolved_events(con, resolution) as events:
                profiles = build_profiles(events)
                summary = purchase_summary(events)
                tables = {
                    "profiles": profiles.reset_index().assign(as_of=as_of),
                    "identity": resolution.identity,
                    "set_aside": resolution.set_aside,
                    "attributes": customer_attributes(events),
                    "purchases": purchases_by_customer(events),
                    "categories": categories_by_customer(events),
                    "repeat": summary.reset_index(),
                }
                step(BUILD_STEPS[2])
                for name, frame in tables.items():
                    frame.to_parquet(draft / f"{name}.parquet", index=False)
                items = written = 0
                if vectors is not None and len(profiles):
                    items, written = _write_vectors(con, events, profiles, vectors, to_qdrant, draft, step,
                                                    embeddings_cache=builds.root / EMBEDDINGS_CACHE)
            data = fingerprint(con)
        meta = {"as_of": as_of.isoformat(), "built_at": utcnow().isoformat(), "identity": config.identity.params(),
                "events": data, "customers": len(profiles), "identifiers": len(resolution.identity),
                "items": items, "vectors": written,
                # Pareto/NBD and Gamma-Gamma, fitted once per build on its buyers (label-free): the
                # propensity blend's input and the lifetime answers, without a refit at every load.
                "lifetime": lifetime_params(summary)}
        build = builds.publish(draft, meta)
        previous_identity = previous.table("identity") if previous is not None else None
        builds.record_changes(build.build_id, identity_changes(
            previous_identity, resolution, previous.as_of if previous is not None else None))
    return BuildSummary(build.build_id, as_of, len(profiles), len(resolution.identity), items, written)


def _write_vectors(con: duckdb.DuckDBPyConnection, events: ResolvedEvents, profiles, config: VectorConfig,
                   to_qdrant: bool, draft: Path, step, embeddings_cache: Path) -> tuple[int, int]:
    from features.vectors.embeddings import embed_texts
    from features.vectors.profile_vectors import (
        behaviour_vectors,
        content_vectors,
        product_interactions,
        products_seen,
        write_collections,
    )
    from features.vectors.qdrant import open_qdrant

    step(VECTOR_STEPS[0])
    items = products_seen(con, events.as_of)
    item_vectors = embed_texts(items["text"].tolist(), config.embedding_model, cache=embeddings_cache)
    content = content_vectors(profiles.index, product_interactions(events), items, item_vectors)
    step(VECTOR_STEPS[1])
    client = open_qdrant(config) if to_qdrant else None
    try:
        written = write_collections(client, profiles, behaviour_vectors(profiles), content, items, item_vectors,
                                    stamp=draft.name.removeprefix(".draft-").replace("-", ""),
                                    snapshot_dir=draft / "vectors")
    finally:
        if client is not None:
            client.close()
    return written["items"], written["profiles"]


def last_build_events(build: Build | None) -> dict | None:
    """The store fingerprint a build was made from (None before the first build)."""
    return None if build is None else build.meta.get("events")
