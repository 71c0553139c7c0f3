"""Message fatigue: how hard the shop has been messaging the customer lately, overall and per channel.

Counts `message_sent` events (what the shop did, not what the customer did), so a campaign sent a minute
before `as_of` counts and one sent after it does not.
"""

from __future__ import annotations

from features.profile.windows import days_since, last_ts, n_events, within
from features.schema import MESSAGE_CHANNELS

FATIGUE_WINDOWS: tuple[int, ...] = (7, 30)


def fatigue_columns(channels: tuple[str, ...] = MESSAGE_CHANNELS) -> list[str]:
    """n_messages_sent_7d (the 30-day total is a core column), n_messages_sent_{7,30}d_<ch> and
    message_recency_days: days since the last send on any channel. Aggregates over event cells."""
    sent = "type = 'message_sent'"
    out = [f"{n_events(f'{sent} AND {within(7)}')} AS n_messages_sent_7d"]
    for ch in channels:
        on = f"channel = '{ch}'"
        out += [f"{n_events(f'{sent} AND {on} AND {within(d)}')} AS n_messages_sent_{d}d_{ch}"
                for d in FATIGUE_WINDOWS]
    out.append(f"{days_since(last_ts(sent))} AS message_recency_days")
    return out
