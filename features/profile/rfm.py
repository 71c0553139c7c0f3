"""Recency, frequency and monetary value per channel (the overall ones are the profile's core columns).

One column per channel of `schema.KNOWN_CHANNELS`, whatever the data holds, so the profile's columns are
the same for every shop: a channel the customer never used gives NULL recency and zero counts.
"""

from __future__ import annotations

from features.profile.windows import ACTIVE, days_since, last_ts, n_events, total_amount
from features.schema import KNOWN_CHANNELS

RFM_CHANNELS: tuple[str, ...] = KNOWN_CHANNELS


def rfm_columns(channels: tuple[str, ...] = RFM_CHANNELS) -> list[str]:
    """Aggregates over one customer's event cells (`features.profile.windows.cells_sql`).

    recency_days_<ch>: days since the customer's last own event there (an open of an email counts for
    email; a send does not). n_events_<ch>: those events. purchase_recency_days_<ch>, n_purchases_<ch>,
    monetary_total_<ch>: purchases made on the channel.
    """
    out = []
    for ch in channels:
        on = f"channel = '{ch}'"
        bought = f"{on} AND type = 'purchase'"
        out += [
            f"{days_since(last_ts(f'{on} AND {ACTIVE}'))} AS recency_days_{ch}",
            f"{n_events(f'{on} AND {ACTIVE}')} AS n_events_{ch}",
            f"{days_since(last_ts(bought))} AS purchase_recency_days_{ch}",
            f"{n_events(bought)} AS n_purchases_{ch}",
            f"{total_amount(bought)} AS monetary_total_{ch}",
        ]
    return out


def rfm_names(channels: tuple[str, ...] = RFM_CHANNELS) -> list[str]:
    return [c.rsplit(" AS ", 1)[1] for c in rfm_columns(channels)]
