"""How the demo shop's send channels reach people and how people answer them: the simulator's response model.

`synthetic.demo_shop` draws every delivery and open from these constants and this formula. A benchmark that
scores a contact plan (which channel and which hour, per customer) against the simulator's ground truth must
use exactly the same ones, so they live here once and both import them.

A message sent at local time h (in hours) to a person whose reading hour on that channel is r is opened
with probability

    P(open | delivered) = open_base × CHANNEL_FACTOR[channel] × exp(−d² / (2 · RESPONSE_WIDTH²)) + OPEN_FLOOR

where d is the circular distance between h and r + READING_OFFSET: a reading hour r stands for r:00–r:59,
so the peak is at r:30. `open_base` and the reading hours are per person (truth.csv).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "CHANNEL_FACTOR",
    "DELIVERY_RATE",
    "OPEN_FLOOR",
    "PLAN_CHANNELS",
    "READING_OFFSET",
    "RESPONSE_WIDTH",
    "open_probability",
    "response_probability",
]

# The channels a plan can send on. ZNS (Zalo template messages) is addressed by phone and arrives only
# for people who have a Zalo account.
PLAN_CHANNELS: tuple[str, ...] = ("zalo_oa", "email", "sms", "zalo_zns")
# Zalo pushes a notification and people read it; an SMS among bank OTPs and spam is often ignored.
CHANNEL_FACTOR: dict[str, float] = {"zalo_oa": 1.0, "email": 0.8, "sms": 0.6, "zalo_zns": 0.9}
# Share of sends delivered; for ZNS, of the sends to people with a Zalo account (the others get nothing).
DELIVERY_RATE: dict[str, float] = {"zalo_oa": 0.96, "email": 0.92, "sms": 0.97, "zalo_zns": 0.98}
RESPONSE_WIDTH = 2.0  # hours: the standard deviation of the fall-off around the reading hour
OPEN_FLOOR = 0.03  # opened at some odd moment whatever the send hour
READING_OFFSET = 0.5


def circular_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hours between two times of day, the short way round the clock."""
    d = np.abs(a - b) % 24
    return np.minimum(d, 24 - d)


def open_probability(open_base: np.ndarray, channel_factor: np.ndarray | float, distance: np.ndarray) -> np.ndarray:
    """P(open | delivered) for a send `distance` hours from the reading hour + READING_OFFSET."""
    return open_base * channel_factor * np.exp(-distance ** 2 / (2 * RESPONSE_WIDTH ** 2)) + OPEN_FLOOR


def response_probability(truth: pd.DataFrame, channel: str, local_hour: np.ndarray | int) -> np.ndarray:
    """P(delivered) × P(opened by the person | sent at `local_hour`), one value per row of `truth`.

    `truth` is the demo shop's truth table (`DemoData.truth` or truth.csv). `local_hour` is the Vietnamese
    local time of the send in hours, a scalar or one per row; fractions are minutes (9.5 is 9:30), and an
    integer hour h means a send at h:00. The value is conditional on the message being sent: whether it
    may be sent (consent, an address on that channel) is the planner's business. For `zalo_zns` delivery
    needs a Zalo account (`has_zalo`). Machine opens (mail clients that fetch every image) are not
    responses and are not counted.
    """
    if channel not in PLAN_CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; expected one of {PLAN_CHANNELS}")
    reading = truth[f"preferred_hour_{channel}"].to_numpy(dtype=float)
    hour = np.broadcast_to(np.asarray(local_hour, dtype=float), reading.shape)
    distance = circular_distance(hour, reading + READING_OFFSET)
    opened = open_probability(truth["open_base"].to_numpy(dtype=float), CHANNEL_FACTOR[channel], distance)
    delivered = np.full(len(truth), DELIVERY_RATE[channel])
    if channel == "zalo_zns":
        delivered *= truth["has_zalo"].to_numpy(dtype=bool)
    return delivered * opened
