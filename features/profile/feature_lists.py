"""Named, versioned feature lists: the one definition shared by training and serving.

A model records the name of the list it was trained on; serving builds exactly those columns with the same
functions. Changing a list means a new version, never an edit in place.
"""

from __future__ import annotations

from dataclasses import dataclass

# Not a profile column: the length (days) of a training row's label window. Models trained on a history
# shorter than their horizon take it as an input (see `training.propensity.SnapshotPlan`); when
# serving, it is the model's horizon.
WINDOW_FEATURE = "label_window_days"


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

# Version 2 lists spell their channels out rather than import them: adding a channel to the schema must
# make a new version, not change what a trained model reads. tests/test_feature_themes.py checks that
# every name exists in the profile.
_V2_CHANNELS = ("web", "app", "zalo_oa", "zalo_mini_app", "facebook", "email", "sms", "pos")
_V2_MESSAGE_CHANNELS = ("zalo_oa", "email", "sms", "facebook", "zalo_mini_app", "app")
_V2_CONSENT = tuple(f"consent_{c}" for c in _V2_MESSAGE_CHANNELS)
_V2_RFM = tuple(
    f"{name}_{c}" for c in _V2_CHANNELS
    for name in ("recency_days", "n_events", "purchase_recency_days", "n_purchases", "monetary_total")
)
_V2_ENGAGEMENT = (
    *(f"n_messages_{kind}_90d_{c}" for c in _V2_MESSAGE_CHANNELS
      for kind in ("sent", "opened", "clicked", "replied")),
    *(f"{name}_{c}" for c in _V2_MESSAGE_CHANNELS
      for name in ("open_rate_90d", "click_rate_90d", "reply_rate_90d", "hours_to_open")),
    "hours_to_open",
)
_V2_FATIGUE = (
    "n_messages_sent_7d",
    *(f"n_messages_sent_{d}d_{c}" for c in _V2_MESSAGE_CHANNELS for d in (7, 30)),
    "message_recency_days",
)
_V2_AFFINITY = ("n_categories", "top_category_share_1", "top_category_share_2", "top_category_share_3",
                "top_product_share")

# The next propensity model's inputs: v1 plus how each channel is engaged with and how hard it is pushed.
PROPENSITY_V2 = FeatureList(
    "propensity_v2", (*PROPENSITY_V1.features, *_V2_ENGAGEMENT, *_V2_FATIGUE)
)

# Every numeric column of the wide profile (consent as 0/1); the category names are not in it.
PROFILE_V2 = FeatureList(
    "profile_v2",
    (*PROPENSITY_V1.features, *_V2_CONSENT, *_V2_RFM, *_V2_ENGAGEMENT, *_V2_FATIGUE, *_V2_AFFINITY),
)

# v1 plus the BG/NBD view of each buyer (P(alive), expected purchase days and P(any purchase) in the
# model's horizon), from a BG/NBD fitted on the buyers as of the same snapshot
# (`features.profile.repeat_purchases`); missing for customers who never bought.
PROPENSITY_V3 = FeatureList(
    "propensity_v3", (*PROPENSITY_V1.features, "bgnbd_p_alive", "bgnbd_expected_h", "bgnbd_p_any_h")
)

FEATURE_LISTS = {fl.name: fl for fl in (PROPENSITY_V1, PROFILE_VECTOR_V1, PROPENSITY_V2, PROFILE_V2,
                                        PROPENSITY_V3)}


def get_feature_list(name: str) -> FeatureList:
    try:
        return FEATURE_LISTS[name]
    except KeyError:
        raise KeyError(f"unknown feature list {name!r}; known: {sorted(FEATURE_LISTS)}") from None
