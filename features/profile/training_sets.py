"""Point-in-time training sets: features at each as-of date, labels strictly after it.

A rolling backfill (a snapshot every `step_days`) lets a model learn from many as-of dates, so a shop
with a short history still yields enough rows.

A snapshot can carry several label windows (`label_windows`): the same customers, the same features,
"bought within w days" for several w. That is what lets a model trained on a history shorter than its
horizon learn how the purchase probability grows with the window, rather than confuse a short window
with a late snapshot (see `training.propensity.plan_snapshots`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import duckdb
import pandas as pd

from features.identity.events import resolve_events
from features.identity.graph import IdentityConfig
from features.profile.feature_lists import WINDOW_FEATURE, FeatureList
from features.profile.labels import first_purchases
from features.profile.repeat_purchases import BGNBD_FEATURES, bgnbd_features
from features.profile.wide import build_profiles

# Profile columns every row carries whatever the feature list: the gate and the fallbacks' inputs.
CONTEXT_COLUMNS = ("n_events", "tenure_days", "n_purchases", "recency_days")


def training_set(
    con: duckdb.DuckDBPyConnection,
    as_ofs: Sequence[datetime],
    horizon_days: int,
    feature_list: FeatureList,
    identity: IdentityConfig,
    *,
    progress: Callable[[datetime], None] | None = None,
    label_windows: Callable[[datetime], Sequence[int]] | None = None,
    label_cutoff: datetime | None = None,
) -> pd.DataFrame:
    """Rows (customer_id, as_of, features…, label_window_days, label) for every customer known at each
    as-of date: one row per customer and label window. Each snapshot resolves identities as of its own
    date with `identity`, the configuration the served build uses.

    `label_windows(as_of)` gives the windows (days) of a snapshot, by default `[horizon_days]`.
    `label_cutoff`, when given, is a hard limit: no purchase after it is read, and a window reaching
    past it is an error rather than a label that silently misses purchases. BG/NBD features of the
    list are fitted on each snapshot's own purchases (`features.profile.repeat_purchases`).
    """
    # Besides the model's inputs, what the answer chain and the baselines read (`models.answers`).
    wanted = list(dict.fromkeys([*feature_list.features, *CONTEXT_COLUMNS]))
    with_bgnbd = [f for f in wanted if f in BGNBD_FEATURES]
    frames = []
    for as_of in as_ofs:
        windows = sorted(set(label_windows(as_of) if label_windows else [horizon_days]))
        ends = [as_of + timedelta(days=w) for w in windows]
        if label_cutoff is not None and max(ends) > label_cutoff:
            raise ValueError(f"a {max(windows)}-day label window after {as_of:%Y-%m-%d %H:%M} ends "
                             f"after the label cutoff {label_cutoff:%Y-%m-%d %H:%M}")
        with resolve_events(con, as_of, identity) as events:
            profiles = build_profiles(events)
            if with_bgnbd:
                profiles = profiles.join(bgnbd_features(events, horizon_days))
            frame = profiles[wanted].copy()
            firsts = first_purchases(events, max(ends)).reindex(frame.index)
        for window, end in zip(windows, ends):
            rows = frame.copy()
            rows[WINDOW_FEATURE] = float(window)
            rows["label"] = (firsts <= end).astype(int).to_numpy()
            rows.insert(0, "as_of", as_of)
            frames.append(rows.reset_index())
        if progress:
            progress(as_of)
    return pd.concat(frames, ignore_index=True)


def rolling_as_ofs(first: datetime, last: datetime, step_days: int) -> list[datetime]:
    """Every `step_days` going back from `last` while on or after `first`, oldest first."""
    dates, current = [], last
    while current >= first:
        dates.append(current)
        current = current - timedelta(days=step_days)
    return dates[::-1]
