"""The feature build job: identities, profiles and attributes as of a date into the store, vectors into
Qdrant and the snapshot.

The stored `profiles` table is the online copy that serving reads; it is derived and can always be
rebuilt from `events`. Each build appends a row to `feature_builds` with its as-of and the identity
configuration it resolved with, so serving can refuse a champion trained under another one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from features.identity.changes import stored_identity_map, write_identity_tables
from features.identity.events import resolved_events
from features.identity.graph import IdentityConfig, resolve_graph
from features.identity.reports import customer_attributes
from features.profile.wide import build_profiles
from features.store import open_store, table_names
from features.vectors.config import VectorConfig
from nhip.clock import utcnow

BUILD_STEPS = ("resolving identities", "computing profiles", "writing profiles")
VECTOR_STEPS = ("embedding products", "writing vectors to Qdrant")


@dataclass
class BuildSummary:
    as_of: datetime
    customers: int
    identifiers: int
    items: int
    vectors: int


@dataclass
class OnlineBuild:
    """The latest feature build as serving reads it: profiles, identity map and what made them."""

    profiles: pd.DataFrame  # indexed by customer_id, with the build's `as_of` column
    identity: pd.DataFrame  # id_type, id_value, customer_id, first_seen
    as_of: datetime | None
    config: IdentityConfig | None  # None for a build made before builds recorded it
    built_at: datetime | None


def build_features(
    store_path: Path,
    as_of: datetime,
    identity: IdentityConfig,
    vectors: VectorConfig | None,
    step: Callable[[str], None] | None = None,
) -> BuildSummary:
    """Resolve identities as of `as_of` with `identity`, compute and store profiles; with `vectors`,
    also embed products and write profile vectors. `step` is told each step's name (`BUILD_STEPS`,
    then `VECTOR_STEPS`)."""
    step = step or (lambda _: None)
    with open_store(store_path) as con:
        step(BUILD_STEPS[0])
        # The previous build's map, to record merges, splits and renames in `identity_merges`.
        previous, previous_as_of = stored_identity_map(con)
        resolution = resolve_graph(con, as_of, identity)
        step(BUILD_STEPS[1])
        with resolved_events(con, resolution) as events:
            profiles = build_profiles(events)
            attributes = customer_attributes(events)
            step(BUILD_STEPS[2])
            con.register("profiles_df", profiles.reset_index())
            con.execute("BEGIN TRANSACTION")
            con.execute("CREATE OR REPLACE TABLE profiles AS SELECT *, $as_of AS as_of FROM profiles_df",
                        {"as_of": as_of})
            con.unregister("profiles_df")
            write_identity_tables(con, resolution, previous, previous_as_of, attributes)
            _record_build(con, as_of, identity, len(profiles), len(resolution.identity))
            con.execute("COMMIT")
            items_count = written = 0
            if vectors is not None and len(profiles):
                items_count, written = _write_vectors(con, events, profiles, vectors, step)
    return BuildSummary(as_of, len(profiles), len(resolution.identity), items_count, written)


def _write_vectors(con, events, profiles: pd.DataFrame, config: VectorConfig, step) -> tuple[int, int]:
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
    item_vectors = embed_texts(items["text"].tolist(), config.embedding_model)
    content = content_vectors(profiles.index, product_interactions(events), items, item_vectors)
    step(VECTOR_STEPS[1])
    client = open_qdrant(config)
    try:
        written = write_collections(
            client, profiles, behaviour_vectors(profiles), content, items, item_vectors,
            stamp=datetime.now().strftime("%Y%m%d%H%M%S%f"), snapshot_dir=config.snapshot_dir,
        )
    finally:
        client.close()
    return written["items"], written["profiles"]


def _record_build(con, as_of: datetime, identity: IdentityConfig, customers: int, identifiers: int) -> None:
    con.execute("CREATE TABLE IF NOT EXISTS feature_builds (built_at TIMESTAMP, as_of TIMESTAMP, "
                "identity VARCHAR, customers BIGINT, identifiers BIGINT)")
    con.execute("INSERT INTO feature_builds VALUES (?, ?, ?, ?, ?)",
                [utcnow(), as_of, json.dumps(identity.params(), sort_keys=True), customers, identifiers])


def load_online_build(store_path: Path) -> OnlineBuild:
    """The latest built profiles and identity map, read once and the store closed again.

    Serving calls this at start-up: holding no DuckDB handle lets the CLI keep writing to the store.
    """
    with open_store(store_path, read_only=True) as con:
        tables = table_names(con)
        if "profiles" not in tables:
            raise LookupError("no profiles built yet; run `nhip features build --as-of DATE`")
        profiles = con.execute("SELECT * FROM profiles").df().set_index("customer_id")
        identity = con.execute("SELECT * FROM identity_map").df()
        latest = None
        if "feature_builds" in tables:
            latest = con.execute("SELECT built_at, identity FROM feature_builds "
                                 "ORDER BY built_at DESC LIMIT 1").fetchone()
    as_of = profiles["as_of"].iloc[0] if len(profiles) else None
    config = IdentityConfig.from_params(json.loads(latest[1])) if latest else None
    return OnlineBuild(profiles, identity, as_of, config, latest[0] if latest else None)
