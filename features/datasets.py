"""Point-in-time training sets: features at each as-of date, labels strictly after it.

A rolling backfill (a snapshot every `step_days`) lets a model learn from many as-of dates, so a shop
with a short history still yields enough rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable, Sequence

import duckdb
import pandas as pd

from features.feature_lists import FeatureList
from features.identity import register_resolved_events
from features.profile_features import build_profiles, purchase_labels
from features.store import LOCAL_OFFSET_HOURS


def training_set(
    con: duckdb.DuckDBPyConnection,
    as_ofs: Sequence[datetime],
    horizon_days: int,
    feature_list: FeatureList,
    progress: Callable[[datetime], None] | None = None,
) -> pd.DataFrame:
    """Rows (customer_id, as_of, features…, label) for every customer known at each as-of date."""
    frames = []
    for as_of in as_ofs:
        profiles = build_profiles(con, as_of)
        labels = purchase_labels(con, as_of, horizon_days)
        frame = profiles[list(feature_list.features)].copy()
        frame["label"] = labels.reindex(frame.index).fillna(0).astype(int)
        frame.insert(0, "as_of", as_of)
        frames.append(frame.reset_index())
        if progress:
            progress(as_of)
    return pd.concat(frames, ignore_index=True)


def message_sends(con: duckdb.DuckDBPyConnection, as_of: datetime, since: datetime | None = None):
    """One row per message sent in (since, as_of]: customer, channel, local hour of week, opened.

    A send counts as opened when an open or click with the same `message_id` happened by `as_of`, so an
    open that came later never leaks into a model fitted at `as_of`.
    """
    register_resolved_events(con, as_of)
    since = since or datetime(1970, 1, 1)
    return con.execute(
        f"""
        WITH sent AS (
            SELECT customer_id, channel, message_id, ts FROM resolved_events
            WHERE type = 'message_sent' AND ts > $since
        ), reacted AS (
            SELECT DISTINCT message_id FROM resolved_events
            WHERE type IN ('message_opened', 'message_clicked') AND message_id IS NOT NULL
        )
        SELECT s.customer_id, s.channel, s.ts,
               (isodow(s.ts + INTERVAL {LOCAL_OFFSET_HOURS} HOUR) - 1) * 24
                 + hour(s.ts + INTERVAL {LOCAL_OFFSET_HOURS} HOUR) AS how,
               (r.message_id IS NOT NULL)::INTEGER AS opened
        FROM sent s LEFT JOIN reacted r USING (message_id)
        ORDER BY s.ts
        """,
        {"since": since},
    ).df()


def rolling_as_ofs(first: datetime, last: datetime, step_days: int) -> list[datetime]:
    """Every `step_days` going back from `last` while on or after `first`, oldest first."""
    dates, current = [], last
    while current >= first:
        dates.append(current)
        current = current - timedelta(days=step_days)
    return dates[::-1]
