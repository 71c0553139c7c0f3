"""Send time: for a customer and channel, 168 hour-of-week scores of P(open or click | sent then).

Learned from `message_sent` events and whether each was opened or clicked. Customers have few sends, so
their curve is pooled toward the shop's curve for the channel (empirical-Bayes shrinkage): with no data a
customer gets the shop curve and says so (`source = "shop"`); every own send moves the curve toward what
the customer did. Opens are attributed to the hour the message was sent, which is what a send decision
controls; separating "we sent at 9:00" from "reads at 20:00" further is the job of a later model version.
"""

from __future__ import annotations

from datetime import time

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

HOURS_PER_WEEK = 168
_KERNEL = np.array([0.25, 0.5, 1.0, 0.5, 0.25])  # neighbouring hours of day share evidence


def hour_of_week(local: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Monday 00:00 = 0 … Sunday 23:00 = 167, from local (Vietnam) times."""
    local = pd.DatetimeIndex(local)
    return (local.dayofweek * 24 + local.hour).to_numpy()


def _circular_smooth(counts: np.ndarray) -> np.ndarray:
    """Smooth the last axis (24 hours of day) with a small circular kernel."""
    half = len(_KERNEL) // 2
    padded = np.concatenate([counts[..., -half:], counts, counts[..., :half]], axis=-1)
    out = np.zeros_like(counts, dtype=float)
    for i, w in enumerate(_KERNEL):
        out += w * padded[..., i : i + counts.shape[-1]]
    return out


def _in_quiet_hours(t: time, start: time, end: time) -> bool:
    if start <= end:
        return start <= t < end
    return t >= start or t < end


class SendTimeModel(BaseEstimator):
    """Hierarchically smoothed open rates per hour of week.

    `prior_strength` is the number of pseudo-sends, spread like the shop curve, that a customer's curve
    starts from: small values trust little data, large values stay close to the shop.
    """

    def __init__(self, prior_strength: float = 8.0, shop_prior_strength: float = 20.0):
        self.prior_strength = prior_strength
        self.shop_prior_strength = shop_prior_strength

    def fit(self, sends: pd.DataFrame):
        """`sends`: one row per message sent, columns customer_id, channel, how (0–167), opened (0/1)."""
        required = {"customer_id", "channel", "how", "opened"}
        if missing := required - set(sends.columns):
            raise ValueError(f"sends lack columns {sorted(missing)}")
        if sends.empty:
            raise ValueError("no message_sent events to learn send times from")
        sends = sends.assign(hod=sends["how"] % 24, opened=sends["opened"].astype(float))
        self.overall_rate_ = float(sends["opened"].mean())
        self.channels_ = tuple(sorted(sends["channel"].unique()))
        self.shop_hod_, self.shop_how_ = {}, {}
        k = self.shop_prior_strength
        for channel, group in sends.groupby("channel"):
            base = float(group["opened"].mean())
            n_hod = np.bincount(group["hod"], minlength=24).astype(float)
            o_hod = np.bincount(group["hod"], weights=group["opened"], minlength=24)
            hod = (_circular_smooth(o_hod) + k * base) / (_circular_smooth(n_hod) + k)
            n_how = np.bincount(group["how"], minlength=HOURS_PER_WEEK).astype(float)
            o_how = np.bincount(group["how"], weights=group["opened"], minlength=HOURS_PER_WEEK)
            prior = np.tile(hod, 7)
            self.shop_hod_[channel] = hod
            self.shop_how_[channel] = (o_how + k * prior) / (n_how + k)
        counts = sends.groupby(["customer_id", "channel", "hod"]).agg(
            sends=("opened", "size"), opens=("opened", "sum")
        )
        self.customer_counts_ = counts
        self.n_sends_ = int(len(sends))
        return self

    def _shop(self, channel: str) -> tuple[np.ndarray, np.ndarray]:
        if channel in self.shop_how_:
            return self.shop_how_[channel], self.shop_hod_[channel]
        flat = np.full(24, self.overall_rate_)
        return np.tile(flat, 7), flat

    def curve(self, customer_id: str, channel: str) -> tuple[np.ndarray, str]:
        """168 scores and where they came from: `customer` (own history, pooled) or `shop`."""
        shop_how, shop_hod = self._shop(channel)
        try:
            own = self.customer_counts_.loc[(customer_id, channel)]
        except KeyError:
            return shop_how.copy(), "shop"
        n = np.zeros(24)
        o = np.zeros(24)
        n[own.index.to_numpy()] = own["sends"].to_numpy()
        o[own.index.to_numpy()] = own["opens"].to_numpy()
        k = self.prior_strength
        hod = (_circular_smooth(o) + k * shop_hod) / (_circular_smooth(n) + k)
        weekly = shop_how / np.tile(shop_hod, 7)
        return np.clip(np.tile(hod, 7) * weekly, 0.0, 1.0), "customer"

    def best_time(
        self,
        customer_id: str,
        channel: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        quiet_start: time = time(21, 30),
        quiet_end: time = time(8, 0),
    ) -> tuple[pd.Timestamp | None, float | None, str]:
        """The best whole local hour in [start, end] outside quiet hours, its score and the source.

        `start` and `end` are tz-aware local times. Returns (None, None, source) when every hour of the
        window is quiet.
        """
        curve, source = self.curve(customer_id, channel)
        slots = pd.date_range(start.ceil("h"), end, freq="h")
        slots = [s for s in slots if not _in_quiet_hours(s.time(), quiet_start, quiet_end)]
        if not slots:
            return None, None, source
        scores = curve[hour_of_week(pd.DatetimeIndex(slots))]
        best = int(np.argmax(scores))
        return slots[best], float(scores[best]), source
