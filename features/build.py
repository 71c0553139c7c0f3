"""The feature build job: profiles and identities as of a date into the store, vectors into Qdrant.

The stored `profiles` table is the online copy that serving reads; it is derived and can always be
rebuilt from `events`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from features.identity.changes import stored_identity_map, write_identity_tables
from features.identity.graph import resolve_graph
from features.identity.reports import customer_attributes
from features.profile.wide import build_profiles
from features.store import open_store


@dataclass
class BuildSummary:
    as_of: datetime
    customers: int
    identifiers: int
    items: int
    vectors: int


def build_features(
    settings, as_of: datetime, with_vectors: bool = True, step: Callable[[str], None] | None = None
) -> BuildSummary:
    step = step or (lambda _: None)
    with open_store(settings.store_path) as con:
        step("resolving identities")
        # The previous build's map, to record merges, splits and renames in `identity_merges`.
        previous, previous_as_of = stored_identity_map(con)
        resolution = resolve_graph(con, as_of, settings.identity_max_links)
        identity = resolution.identity
        step("computing profiles")
        profiles = build_profiles(con, as_of, identity, resolution.set_aside)
        attributes = customer_attributes(con, as_of, identity)
        step("writing profiles")
        con.register("profiles_df", profiles.reset_index())
        con.execute("BEGIN TRANSACTION")
        con.execute("CREATE OR REPLACE TABLE profiles AS SELECT *, $as_of AS as_of FROM profiles_df",
                    {"as_of": as_of})
        write_identity_tables(con, resolution, previous, previous_as_of, attributes)
        con.execute("COMMIT")
        items_count = vectors = 0
        if with_vectors and len(profiles):
            from features.vectors.embeddings import embed_texts
            from features.vectors.profile_vectors import (
                behaviour_vectors,
                content_vectors,
                product_interactions,
                products_seen,
                write_collections,
            )
            from features.vectors.qdrant import open_qdrant
            from features.vectors.snapshot import snapshot_root

            step("embedding products")
            items = products_seen(con, as_of)
            item_vectors = embed_texts(items["text"].tolist(), settings.embedding_model)
            interactions = product_interactions(con, as_of)
            content = content_vectors(profiles.index, interactions, items, item_vectors)
            step("writing vectors to Qdrant")
            client = open_qdrant(settings)
            try:
                written = write_collections(
                    client, profiles, behaviour_vectors(profiles), content, items, item_vectors,
                    stamp=datetime.now().strftime("%Y%m%d%H%M%S%f"),
                    snapshot_dir=snapshot_root(settings),
                )
            finally:
                client.close()
            items_count, vectors = written["items"], written["profiles"]
    return BuildSummary(as_of, len(profiles), len(identity), items_count, vectors)


def load_online_profiles(settings):
    """The latest built profiles and identity map, read once and the store closed again.

    Serving calls this at start-up: holding no DuckDB handle lets the CLI keep writing to the store.
    """
    with open_store(settings.store_path, read_only=True) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "profiles" not in tables:
            raise LookupError("no profiles built yet; run `nhip features build --as-of DATE`")
        profiles = con.execute("SELECT * FROM profiles").df().set_index("customer_id")
        identity = con.execute("SELECT * FROM identity_map").df()
    return profiles, identity
