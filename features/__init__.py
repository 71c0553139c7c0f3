"""Events → identities → point-in-time profiles and profile vectors: the first half of the data flow.

The stages are subpackages, in the order data passes through them: `ingest` (files and webhooks into the
event store), `identity` (which identifiers are one customer, as of a date), `profile` (point-in-time
profiles, labels and training sets) and `vectors` (profile vectors, lookalikes, next products).
`build` runs identity → profiles → vectors as one feature build; `erasure` removes a person from all
of them.

This module is the notebook API. Each function reads the workspace's settings (`NHIP_*`, or the
`settings` passed in) and reads a snapshot of the store (`features.store.open_store`), so a notebook
never holds up an import, the collector or a build, however long it keeps its results.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from features.builds import Build
    from features.vectors.layout import VectorStore
    from features.vectors.lookalike import Lookalike
    from features.vectors.next_products import NextProducts
    from nhip.settings import Settings

__all__ = ["profiles", "training_set", "lookalike", "next_products"]

AsOf = str | date | datetime


def _settings(settings: Settings | None) -> Settings:
    from nhip.settings import get_settings

    return settings or get_settings()


@contextmanager
def _vector_store(settings: Settings, build: Build, store: VectorStore | None) -> Iterator[VectorStore]:
    """`store` when the caller has one open; otherwise the build's, opened here and closed after."""
    if store is not None:
        yield store
        return
    from features.vectors.stores import open_vector_store

    opened = open_vector_store(settings.vectors, build)
    try:
        yield opened
    finally:
        opened.close()


def profiles(as_of: AsOf, settings: Settings | None = None) -> pd.DataFrame:
    """Customer profiles as they were at `as_of`.

    Parameters
    ----------
    as_of : str, date or datetime
        The point in time; a bare date means 00:00 Vietnam time that day, a time without an offset is
        Vietnam time. Only events up to it are read, and identities are resolved with the links known by
        then under the workspace's identity configuration.
    settings : Settings, optional
        The workspace; by default read from the `NHIP_*` environment.

    Returns
    -------
    pandas.DataFrame
        One row per customer known at `as_of`, indexed by `customer_id`: the wide profile of
        `features.profile.wide`.
    """
    from features.identity.events import resolve_events
    from features.profile.wide import build_profiles
    from features.store import open_store
    from nhip.clock import parse_as_of

    settings = _settings(settings)
    with open_store(settings.store_path) as con:
        with resolve_events(con, parse_as_of(as_of), settings.identity) as events:
            return build_profiles(events)


def training_set(
    as_ofs: list[AsOf], horizon_days: int, feature_list: str = "propensity_v1",
    settings: Settings | None = None,
) -> pd.DataFrame:
    """Features at each as-of date with the purchase label of the `horizon_days` after it.

    Parameters
    ----------
    as_ofs : list of str, date or datetime
        Snapshot dates (read as in `profiles`).
    horizon_days : int
        Length of the label window: `label` is 1 when the customer bought within this many days after
        the snapshot.
    feature_list : str, default "propensity_v1"
        A named feature list of `features.profile.feature_lists`.
    settings : Settings, optional
        The workspace; by default read from the `NHIP_*` environment.

    Returns
    -------
    pandas.DataFrame
        One row per customer and snapshot: `customer_id`, `as_of` (naive UTC), the list's features,
        `label_window_days` and `label`.
    """
    from features.profile.feature_lists import get_feature_list
    from features.profile.training_sets import training_set as build
    from features.store import open_store
    from nhip.clock import parse_as_of

    settings = _settings(settings)
    with open_store(settings.store_path) as con:
        return build(con, [parse_as_of(d) for d in as_ofs], horizon_days, get_feature_list(feature_list),
                     settings.identity)


def lookalike(
    seeds: list[str], k: int = 100, channel: str | None = None, id_type: str | None = None,
    behaviour_weight: float = 0.5, content_weight: float = 0.5, settings: Settings | None = None,
    store: VectorStore | None = None,
) -> Lookalike:
    """The `k` customers most like a seed audience, from the latest feature build.

    Parameters
    ----------
    seeds : list of str
        Customer ids or identifiers: phones and emails in any format, Zalo, Facebook or POS ids.
    k : int, default 100
        How many customers to return; the seeds themselves are never among them.
    channel : str, optional
        Only customers consenting to this channel (e.g. "zalo_oa").
    id_type : str, optional
        What the seeds are ("phone", "email", "zalo_user_id", …, or "customer_id"); by default each seed
        is tried as a customer id, then as every identifier type.
    behaviour_weight, content_weight : float, default 0.5
        Similarity is w_b·cos(behaviour) + w_c·cos(content) against the seeds' mean vectors.
    settings : Settings, optional
        The workspace; by default read from the `NHIP_*` environment.
    store : VectorStore, optional
        An open vector store to query; by default the workspace's, opened and closed here.

    Returns
    -------
    features.vectors.lookalike.Lookalike
        `.customers` (customer_id, similarity, best first), `.seeds` (the seeds' customer ids) and
        `.unknown_seeds` (seeds matching no customer with a vector, as given).
    """
    from features.builds import Builds
    from features.vectors.lookalike import find_lookalikes

    settings = _settings(settings)
    build = Builds(settings.builds).open()
    with _vector_store(settings, build, store) as vectors:
        return find_lookalikes(build, vectors, seeds, k, channel, id_type, behaviour_weight, content_weight)


def next_products(
    customer_id: str, k: int = 10, exclude_days: int = 30, settings: Settings | None = None,
    store: VectorStore | None = None,
) -> NextProducts:
    """The `k` products a customer is likeliest to want next, from the latest feature build.

    Parameters
    ----------
    customer_id : str
        A customer of the latest build.
    k : int, default 10
        How many products.
    exclude_days : int, default 30
        Leave out what the customer bought in this many days before the build's as-of; 0 keeps
        everything.
    settings : Settings, optional
        The workspace; by default read from the `NHIP_*` environment.
    store : VectorStore, optional
        An open vector store to query; by default the workspace's, opened and closed here.

    Returns
    -------
    features.vectors.next_products.NextProducts
        `.items` (product_id, product_name, category, score), `.source` ("vector": the items nearest the
        customer's content vector; "popular_in_categories" or "popular" for a customer who touched no
        product) and `.excluded`.
    """
    from features.builds import Builds
    from features.vectors.next_products import suggest_next_products

    settings = _settings(settings)
    build = Builds(settings.builds).open()
    with _vector_store(settings, build, store) as vectors:
        return suggest_next_products(build, vectors, customer_id, k, exclude_days)
