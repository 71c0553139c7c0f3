"""Events → identities → point-in-time profiles and profile vectors.

The notebook-facing API lives here; each function opens the workspace's store read-only and closes it.
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd


def profiles(as_of: str | date | datetime, settings=None) -> pd.DataFrame:
    """Customer profiles as they were at `as_of`, indexed by customer_id (a bare date = 00:00 VN time)."""
    from features.asof import parse_as_of
    from features.profile_features import build_profiles
    from features.store import open_store
    from nhip.settings import get_settings

    settings = settings or get_settings()
    with open_store(settings.store_path, read_only=True) as con:
        return build_profiles(con, parse_as_of(as_of))


def training_set(
    as_ofs: list[str | date | datetime], horizon_days: int, feature_list: str = "propensity_v1",
    settings=None,
) -> pd.DataFrame:
    """Features at each as-of date with the purchase label of the `horizon_days` after it."""
    from features.asof import parse_as_of
    from features.datasets import training_set as build
    from features.feature_lists import get_feature_list
    from features.store import open_store
    from nhip.settings import get_settings

    settings = settings or get_settings()
    with open_store(settings.store_path, read_only=True) as con:
        return build(con, [parse_as_of(d) for d in as_ofs], horizon_days, get_feature_list(feature_list))
