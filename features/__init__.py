"""Events → identities → point-in-time profiles and profile vectors.

The notebook-facing API lives here (`profiles`, `training_set`, `lookalike`, `next_products`); each
function opens the workspace's store read-only and closes it.
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd


def profiles(as_of: str | date | datetime, settings=None) -> pd.DataFrame:
    """Customer profiles as they were at `as_of`, indexed by customer_id (a bare date = 00:00 VN time)."""
    from features.profile.wide import build_profiles
    from features.store import open_store
    from nhip.clock import parse_as_of
    from nhip.settings import get_settings

    settings = settings or get_settings()
    with open_store(settings.store_path, read_only=True) as con:
        return build_profiles(con, parse_as_of(as_of))


def training_set(
    as_ofs: list[str | date | datetime], horizon_days: int, feature_list: str = "propensity_v1",
    settings=None,
) -> pd.DataFrame:
    """Features at each as-of date with the purchase label of the `horizon_days` after it."""
    from features.profile.feature_lists import get_feature_list
    from features.profile.training_sets import training_set as build
    from features.store import open_store
    from nhip.clock import parse_as_of
    from nhip.settings import get_settings

    settings = settings or get_settings()
    with open_store(settings.store_path, read_only=True) as con:
        return build(con, [parse_as_of(d) for d in as_ofs], horizon_days, get_feature_list(feature_list))


def lookalike(
    seeds: list[str], k: int = 100, channel: str | None = None, id_type: str | None = None,
    behaviour_weight: float = 0.5, content_weight: float = 0.5, settings=None, store=None,
):
    """The `k` customers most like a seed audience, from the latest feature build.

    `seeds` are customer ids or identifiers (phones and emails in any format; `id_type` = "phone",
    "email", "zalo_user_id", … or "customer_id" to say which). Seeds are excluded; with `channel`
    (e.g. "zalo_oa") only customers consenting to it are returned. Similarity is
    w_b·cos(behaviour) + w_c·cos(content) against the seeds' mean vectors, between -1 and 1.
    Returns `features.vectors.lookalike.Lookalike`: `.customers` (customer_id, similarity), `.seeds`,
    `.unknown_seeds` (seeds matching no customer with a vector, as given).
    """
    from features.store import open_store
    from features.vectors import lookalike as recommend
    from features.vectors.stores import open_vector_store
    from nhip.settings import get_settings

    settings = settings or get_settings()
    with open_store(settings.store_path, read_only=True) as con:
        found, unknown = recommend.resolve_seeds(con, seeds, id_type)
    vectors = store or open_vector_store(settings)
    try:
        return recommend.lookalike(vectors, found, k, channel, behaviour_weight, content_weight, unknown)
    finally:
        if store is None:
            vectors.close()


def next_products(
    customer_id: str, k: int = 10, exclude_days: int = 30, settings=None, store=None,
):
    """The `k` products a customer is likeliest to want next, from the latest feature build.

    Items nearest the customer's content vector, leaving out what they bought in the `exclude_days`
    before the build's as-of (0 keeps everything); a customer who touched no product gets the most
    bought items in the categories of their events, then the most bought overall. Returns
    `features.vectors.next_products.NextProducts`: `.items` (product_id, product_name, category, score),
    `.source` ("vector" | "popular_in_categories" | "popular") and `.excluded`.
    """
    from features.store import open_store
    from features.vectors import next_products as recommend
    from features.vectors.stores import open_vector_store
    from nhip.settings import get_settings

    settings = settings or get_settings()
    with open_store(settings.store_path, read_only=True) as con:
        as_of = con.execute("SELECT max(as_of) FROM profiles").fetchall()[0][0]
        bought = recommend.recent_purchases(con, as_of, exclude_days, [customer_id]) if exclude_days else None
        categories = recommend.customer_categories(con, as_of, customer_id)
    exclude = [] if bought is None else bought["product_id"].tolist()
    vectors = store or open_vector_store(settings)
    try:
        return recommend.next_products(vectors, customer_id, k, exclude, categories)
    finally:
        if store is None:
            vectors.close()
