"""Named, versioned feature lists: the one definition shared by training and serving.

A model records the name of the list it was trained on; serving builds exactly those columns with the same
functions. Changing a list means a new version, never an edit in place.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeatureList:
    name: str
    features: tuple[str, ...]


PROPENSITY_V1 = FeatureList(
    "propensity_v1",
    (
        "tenure_days",
        "recency_days",
        "purchase_recency_days",
        "n_purchases",
        "n_purchases_30d",
        "n_purchases_90d",
        "monetary_total",
        "monetary_avg",
        "purchase_interval_days",
        "n_events",
        "n_events_7d",
        "n_events_30d",
        "n_page_views_30d",
        "n_product_views_30d",
        "n_add_to_cart_7d",
        "n_add_to_cart_30d",
        "cart_recency_days",
        "n_messages_sent_30d",
        "n_messages_opened_30d",
        "n_messages_clicked_30d",
        "open_rate_90d",
        "n_channels",
        "n_distinct_products",
    ),
)

# The profile vector's behaviour part: scaled, so that no single feature dominates a cosine distance.
PROFILE_VECTOR_V1 = FeatureList(
    "profile_vector_v1",
    (
        "recency_days",
        "tenure_days",
        "n_purchases",
        "monetary_total",
        "n_events_30d",
        "n_product_views_30d",
        "open_rate_90d",
        "n_channels",
    ),
)

FEATURE_LISTS = {fl.name: fl for fl in (PROPENSITY_V1, PROFILE_VECTOR_V1)}


def get_feature_list(name: str) -> FeatureList:
    try:
        return FEATURE_LISTS[name]
    except KeyError:
        raise KeyError(f"unknown feature list {name!r}; known: {sorted(FEATURE_LISTS)}") from None
