"""Send time: for a customer and channel, 168 hour-of-week scores of P(open or click | sent then).

Why two steps. A shop sends at a few habitual hours, so "opens by send hour" mostly re-learns the shop's
own schedule: a message sent at 9:00 and read at 20:10 counts as a 9:00 success. Version 2 therefore
first estimates *when the customer reads* (the reading-hour profile), from the local time of their opens
and clicks and from what they do on every channel, and only then asks how the chance of an open depends on
the gap between the send hour and the reading hours (the response kernel), calibrated on the
message_sent → opened/clicked pairs. Version 1 (`SendHourModel`, opens attributed to the send hour) stays
importable for comparison and so that a champion trained with it still loads.

The reading-hour profile of a customer on a channel is pooled level by level, each level shrunk toward the
next (Dirichlet–multinomial smoothing with pseudo-counts):

1. `customer` – the hours at which they opened or clicked this channel's messages (machine opens excluded
   upstream, see `features.profile.activity.message_responses`);
2. `activity` – what they did on all other channels (`features.profile.activity.activity_by_hour`);
3. `segment` – customers whose activity peaks in the same part of the day (morning, midday, …): how those
   customers read this channel;
4. `shop` – how all customers read this channel.

The level that carries the most weight is reported as the customer's `source`, so a caller can tell a
personal answer from a fallback. A habit is a daily rhythm: the profile has 24 hours; the 168 scores take
their day-of-week shape from the shop, where there is enough data to see one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import time
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.base import BaseEstimator

from nhip.clock import HOURS_PER_DAY, HOURS_PER_WEEK, LOCAL_OFFSET_HOURS, LOCAL_TZ

SOURCES = ("customer", "activity", "segment", "shop")  # the fallback chain, most personal first
# Parts of the day for the `segment` level, by local hour; a customer belongs to the part holding most of
# their activity. Generic day parts, not tuned to any data set.
DAY_PARTS = {"night": (23, 5), "morning": (5, 10), "midday": (10, 14), "afternoon": (14, 18),
             "evening": (18, 23)}
_SPREAD = np.array([0.25, 0.5, 0.25])  # an open at 20:10 says a little about 19:xx and 21:xx too
_KERNEL = np.array([0.25, 0.5, 1.0, 0.5, 0.25])  # v1: neighbouring hours of day share evidence
_MAX_P = 0.99
# A channel with fewer sends (or only opens, or none) borrows the calibration fitted on all channels.
_MIN_SENDS_TO_CALIBRATE = 100
_MIN_GAIN = 1e-3
_CHUNK = 20_000  # customers whose 168-hour curves are held at once


@dataclass(frozen=True)
class QuietHours:
    """Local times at which no message may be sent: from `start` up to `end`, across midnight when
    `start` is later than `end` (21:30–08:00). Equal times mean no quiet hours."""

    start: time
    end: time

    @classmethod
    def parse(cls, start: str, end: str) -> QuietHours:
        """From `HH:MM` texts, as NHIP_QUIET_START / NHIP_QUIET_END are written."""
        return cls(_clock(start, "quiet start"), _clock(end, "quiet end"))

    def __contains__(self, t: time) -> bool:
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def describe(self) -> str:
        return f"{self.start:%H:%M}–{self.end:%H:%M}"


def _clock(text: str, what: str) -> time:
    try:
        hours, minutes = str(text).strip().split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(f"{what} must be a time of day written HH:MM, not {text!r}") from None


@dataclass(frozen=True)
class SendTimeConfig:
    """The send-time settings: the pooling strength training uses (NHIP_SEND_TIME_PRIOR_STRENGTH), whether
    answers explore by default (NHIP_SEND_TIME_EXPLORE) and the quiet hours (NHIP_QUIET_START/END)."""

    prior_strength: float
    explore: bool
    quiet: QuietHours


def allowed_slots(start: pd.Timestamp, end: pd.Timestamp, quiet: QuietHours) -> list:
    """Whole local hours in [start, end] whose start lies outside quiet hours."""
    return [_slot_time(h) for h in slot_hours(start, end, quiet)[0]]


def slot_hours(start: pd.Timestamp, end: pd.Timestamp, quiet: QuietHours) -> tuple[np.ndarray, np.ndarray]:
    """The allowed slots of [start, end] as (hours since the epoch, local hours of week).

    Integer arithmetic rather than a pandas date range: a request's window starts at "now", which is
    never the same twice, so nothing can be cached, and this is asked before every message. Vietnam has
    one offset all year (UTC+7, no daylight saving), which is what makes the arithmetic exact.
    """
    first = math.ceil(start.timestamp() / 3600)  # the first whole hour at or after start
    last = math.floor(end.timestamp() / 3600)
    hours = np.arange(first, last + 1, dtype=np.int64)
    local = hours + LOCAL_OFFSET_HOURS
    hod = local % HOURS_PER_DAY
    hours = hours[~_quiet_mask(quiet)[hod]]
    local = hours + LOCAL_OFFSET_HOURS
    # 1970-01-01 was a Thursday: day 3 of a week that starts on Monday (as `nhip.clock.hour_of_week`).
    how = ((local // HOURS_PER_DAY + 3) % 7) * HOURS_PER_DAY + local % HOURS_PER_DAY
    return hours, how


@lru_cache(maxsize=16)
def _quiet_mask(quiet: QuietHours) -> np.ndarray:
    """24 booleans: whether a slot starting at that whole local hour lies in quiet hours."""
    return np.array([time(h) in quiet for h in range(HOURS_PER_DAY)])


def _slot_time(hour: int) -> pd.Timestamp:
    return pd.Timestamp(int(hour) * 3600, unit="s", tz="UTC").tz_convert(LOCAL_TZ)


def _circular_smooth(counts: np.ndarray, kernel: np.ndarray = _KERNEL) -> np.ndarray:
    """Smooth the last axis (24 hours of day) with a small circular kernel."""
    half = len(kernel) // 2
    padded = np.concatenate([counts[..., -half:], counts, counts[..., :half]], axis=-1)
    out = np.zeros(counts.shape, dtype=float)
    for i, w in enumerate(kernel):
        out += w * padded[..., i : i + counts.shape[-1]]
    return out


def _day_part(hours_of_day: np.ndarray) -> np.ndarray:
    """(n, 24) activity → index into DAY_PARTS of the part holding most of it; -1 without activity."""
    masses = []
    for lo, hi in DAY_PARTS.values():
        hours = np.arange(lo, hi) if lo < hi else np.r_[np.arange(lo, 24), np.arange(0, hi)]
        masses.append(hours_of_day[:, hours].sum(axis=1))
    part = np.argmax(np.stack(masses, axis=1), axis=1)
    return np.where(hours_of_day.sum(axis=1) > 0, part, -1)


@dataclass(frozen=True)
class SendTimeChoice:
    """One answer of `choose`: the slot (None when the window is all quiet hours), the model's P(open) for
    it, the source of the curve, and whether exploration picked a slot other than the best-scored one."""

    when: pd.Timestamp | None
    score: float | None
    source: str
    explored: bool = False


@dataclass
class SendTimeInputs:
    """What `SendTimeModel.fit` learns from, all as of one point in time.

    `sends`: one row per message sent – customer_id, channel, hour_of_week (local hour of week 0–167 of
    the send), opened (0/1) and, optionally, open_hour_of_week (local hour of week of the first open or
    click, a float; NaN when unopened) – as `features.profile.activity.message_responses` returns them.
    `activity`: `features.profile.activity.activity_by_hour` rows (customer_id, channel, counts of 168).
    When None, the opens in `sends` are the only activity known.
    """

    sends: pd.DataFrame
    activity: pd.DataFrame | None = None


@dataclass(frozen=True)
class SendTimeChoices:
    """`choose_many`'s answer, one entry per customer asked: the slot as hours since the epoch (-1 when
    the window is all quiet hours), the model's P(open) there (NaN then), the source of the curve and
    whether exploration moved the pick off the best-scored slot."""

    hours: np.ndarray
    scores: np.ndarray
    sources: list[str]
    explored: np.ndarray

    def __getitem__(self, i: int) -> SendTimeChoice:
        hour = int(self.hours[i])
        if hour < 0:
            return SendTimeChoice(None, None, self.sources[i])
        return SendTimeChoice(_slot_time(hour), float(self.scores[i]), self.sources[i], bool(self.explored[i]))


class _HourCurveModel(BaseEstimator):
    """What both versions share: choosing a slot from a 168-hour curve, greedily or by Thompson sampling."""

    def curve(self, customer_id: str, channel: str) -> tuple[np.ndarray, str]:
        raise NotImplementedError

    def sample_curve(self, customer_id: str, channel: str, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def curves(self, customer_ids, channel: str) -> tuple[np.ndarray, list[str]]:
        """(n × 168 curves, n sources); one `curve` per customer here, a version may do them at once."""
        pairs = [self.curve(c, channel) for c in customer_ids]
        return np.array([c for c, _ in pairs]).reshape(len(pairs), HOURS_PER_WEEK), [s for _, s in pairs]

    def sample_curves(self, customer_ids, channel: str, rng: np.random.Generator) -> np.ndarray:
        """n × 168: one posterior draw per customer."""
        return np.array([self.sample_curve(c, channel, rng) for c in customer_ids]).reshape(
            len(customer_ids), HOURS_PER_WEEK)

    def choose(
        self,
        customer_id: str,
        channel: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        quiet: QuietHours,
        *,
        explore: bool = False,
        rng: np.random.Generator | None = None,
    ) -> SendTimeChoice:
        """The whole local hour in [start, end] to send at, never one that starts in quiet hours.

        Greedy: the hour with the highest P(open). With `explore`, Thompson sampling: draw one plausible
        curve from the posterior and take its best hour, so customers we know little about are tried at
        hours we are unsure of and future sends keep teaching the model; the score stays the posterior
        mean at the chosen hour. `rng` makes the draw reproducible.
        """
        return self.choose_many([customer_id], channel, start, end, quiet, explore=explore, rng=rng)[0]

    def choose_many(
        self,
        customer_ids,
        channel: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        quiet: QuietHours,
        *,
        explore: bool = False,
        rng: np.random.Generator | None = None,
    ) -> SendTimeChoices:
        """`choose` for many customers at once, as arrays: the service asks for a whole campaign in one
        request, and a customer at a time would spend its time in Python rather than in the model."""
        n = len(customer_ids)
        hours, how = slot_hours(start, end, quiet)
        curves, sources = self.curves(customer_ids, channel)
        if not len(hours):
            return SendTimeChoices(np.full(n, -1), np.full(n, np.nan), sources, np.zeros(n, dtype=bool))
        in_window = curves[:, how]
        best = np.argmax(in_window, axis=1)
        pick = best
        if explore:
            sampled = self.sample_curves(customer_ids, channel, rng or np.random.default_rng())
            pick = np.argmax(sampled[:, how], axis=1)
        rows = np.arange(n)
        return SendTimeChoices(hours[pick], in_window[rows, pick], sources, pick != best)

    def best_time(
        self,
        customer_id: str,
        channel: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        quiet: QuietHours,
        *,
        explore: bool = False,
        rng: np.random.Generator | None = None,
    ) -> tuple[pd.Timestamp | None, float | None, str]:
        """(slot, score, source) of `choose`; `start` and `end` are tz-aware local times. Returns
        (None, None, source) when every hour of the window is quiet."""
        choice = self.choose(customer_id, channel, start, end, quiet, explore=explore, rng=rng)
        return choice.when, choice.score, choice.source

    def predict_rows(self, rows: pd.DataFrame) -> np.ndarray:
        """P(open) for each row of customer_id, channel, hour_of_week; one curve per customer and channel,
        computed `_CHUNK` customers at a time."""
        out = np.empty(len(rows))
        how = rows["hour_of_week"].to_numpy().astype(int)
        ids = rows["customer_id"].to_numpy()
        for channel, positions in rows.groupby("channel").indices.items():
            unique, inverse = np.unique(ids[positions], return_inverse=True)
            for lo in range(0, len(unique), _CHUNK):
                curves = self.curves(unique[lo:lo + _CHUNK], channel)[0]
                these = (inverse >= lo) & (inverse < lo + _CHUNK)
                out[positions[these]] = curves[inverse[these] - lo, how[positions[these]]]
        return out


class SendHourModel(_HourCurveModel):
    """Version 1, send hours: open rates by the hour the message was *sent*, pooled toward the shop's curve.

    `prior_strength` is the number of pseudo-sends, spread like the shop curve, that a customer's curve
    starts from. Kept for comparison: it learns when the shop sends as much as when the customer reads.
    """

    def __init__(self, prior_strength: float = 8.0, shop_prior_strength: float = 20.0):
        self.prior_strength = prior_strength
        self.shop_prior_strength = shop_prior_strength

    def fit(self, sends: pd.DataFrame | SendTimeInputs):
        """`sends`: one row per message sent, columns customer_id, channel, hour_of_week (0–167),
        opened (0/1)."""
        if isinstance(sends, SendTimeInputs):
            sends = sends.sends
        _check_sends(sends)
        sends = sends.assign(hod=sends["hour_of_week"] % 24, opened=sends["opened"].astype(float))
        self.overall_rate_ = float(sends["opened"].mean())
        self.channels_ = tuple(sorted(sends["channel"].unique()))
        self.shop_hod_, self.shop_how_ = {}, {}
        k = self.shop_prior_strength
        for channel, group in sends.groupby("channel"):
            base = float(group["opened"].mean())
            n_hod = np.bincount(group["hod"], minlength=24).astype(float)
            o_hod = np.bincount(group["hod"], weights=group["opened"], minlength=24)
            hod = (_circular_smooth(o_hod) + k * base) / (_circular_smooth(n_hod) + k)
            n_how = np.bincount(group["hour_of_week"], minlength=HOURS_PER_WEEK).astype(float)
            o_how = np.bincount(group["hour_of_week"], weights=group["opened"], minlength=HOURS_PER_WEEK)
            prior = np.tile(hod, 7)
            self.shop_hod_[channel] = hod
            self.shop_how_[channel] = (o_how + k * prior) / (n_how + k)
        counts = sends.groupby(["customer_id", "channel", "hod"]).agg(
            sends=("opened", "size"), opens=("opened", "sum")
        )
        self.customer_counts_ = counts
        self.n_sends_ = len(sends)
        return self

    def _shop(self, channel: str) -> tuple[np.ndarray, np.ndarray]:
        if channel in self.shop_how_:
            return self.shop_how_[channel], self.shop_hod_[channel]
        flat = np.full(24, self.overall_rate_)
        return np.tile(flat, 7), flat

    def _own(self, customer_id: str, channel: str) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            own = self.customer_counts_.loc[(customer_id, channel)]
        except KeyError:
            return None
        n, o = np.zeros(24), np.zeros(24)
        n[own.index.to_numpy()] = own["sends"].to_numpy()
        o[own.index.to_numpy()] = own["opens"].to_numpy()
        return n, o

    def shop_curve(self, channel: str) -> np.ndarray:
        return self._shop(channel)[0].copy()

    def curve(self, customer_id: str, channel: str) -> tuple[np.ndarray, str]:
        """168 scores and where they came from: `customer` (own history, pooled) or `shop`."""
        shop_how, shop_hod = self._shop(channel)
        own = self._own(customer_id, channel)
        if own is None:
            return shop_how.copy(), "shop"
        n, o = own
        k = self.prior_strength
        hod = (_circular_smooth(o) + k * shop_hod) / (_circular_smooth(n) + k)
        weekly = shop_how / np.tile(shop_hod, 7)
        return np.clip(np.tile(hod, 7) * weekly, 0.0, 1.0), "customer"

    def sample_curve(self, customer_id: str, channel: str, rng: np.random.Generator) -> np.ndarray:
        """A draw from Beta(opens + pooled pseudo-opens, misses + pooled pseudo-misses) per hour of day."""
        shop_how, shop_hod = self._shop(channel)
        own = self._own(customer_id, channel)
        n, o = own if own is not None else (np.zeros(24), np.zeros(24))
        k = self.prior_strength
        hits = _circular_smooth(o) + k * shop_hod
        misses = _circular_smooth(n - o) + k * (1.0 - shop_hod)
        hod = rng.beta(np.maximum(hits, 1e-6), np.maximum(misses, 1e-6))
        return np.clip(np.tile(hod, 7) * shop_how / np.tile(shop_hod, 7), 0.0, 1.0)


def _check_sends(sends: pd.DataFrame) -> None:
    required = {"customer_id", "channel", "hour_of_week", "opened"}
    if missing := required - set(sends.columns):
        raise ValueError(f"sends lack columns {sorted(missing)}")
    if sends.empty:
        raise ValueError("no message_sent events to learn send times from")


def _kernel_matrix(width: float) -> np.ndarray:
    """K[h, r]: response to a send at h:00 of a customer reading during hour r, 1 at the middle of r.

    Symmetric around r:30 – a message sent at r:00 waits half an hour, one sent at (r+1):00 comes half an
    hour late – and falling off with the hours between, at a width the data chooses.
    """
    hours = np.arange(HOURS_PER_DAY)
    gap = np.abs(hours[:, None] - (hours[None, :] + 0.5)) % HOURS_PER_DAY
    gap = np.minimum(gap, HOURS_PER_DAY - gap)
    return np.exp(-(gap**2) / (2.0 * width**2))


def _fit_calibration(reach: np.ndarray, opened: np.ndarray) -> tuple[float, float]:
    """(floor, gain) maximising the Bernoulli likelihood of P(open) = floor + gain × reach.

    `reach` (0–1) says how well a send's hour meets the customer's reading hours; the floor is the share
    of messages opened whatever the hour, the gain what a perfectly timed send adds. The gain is kept
    above `_MIN_GAIN`: where the history cannot show that timing matters (one class, every send at one
    hour), the customer's reading hours still break the tie between otherwise equal hours.
    """
    y = opened.astype(float)
    base = float(np.clip(y.mean(), 1e-3, 1 - 1e-3)) if len(y) else 0.5
    if len(y) == 0 or y.min() == y.max():
        return base, _MIN_GAIN

    def nll(theta: np.ndarray) -> float:
        p = np.clip(theta[0] + theta[1] * reach, 1e-6, 1 - 1e-6)
        return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).mean())

    fitted = minimize(nll, x0=np.array([base / 2, base]), method="L-BFGS-B",
                      bounds=[(1e-4, 1.0), (_MIN_GAIN, 1.0)])
    return float(fitted.x[0]), float(fitted.x[1])


class SendTimeModel(_HourCurveModel):
    """Version 2: reading-hour profiles pooled customer → activity → segment → shop, a response kernel and
    a per-customer open rate (see the module docstring).

    Parameters are pseudo-counts, i.e. how much evidence a level is worth:
    `prior_strength` – opens: a customer's own opens on the channel outweigh the pooled profile once there
    are more than this many; `activity_strength` – activity events, likewise for activity against the
    segment; `segment_strength` – opens, for a segment's profile against the shop's; `activity_weight` – what
    one activity event (a page view, a purchase) counts for next to one open; `rate_strength` – expected
    opens behind a customer's overall open rate, which starts at the shop's; `week_strength` – expected
    opens behind each day-of-week factor; `kernel_widths` – the response-kernel widths (hours) tried, the
    one with the highest likelihood of the opens kept.
    """

    def __init__(
        self,
        prior_strength: float = 1.0,
        activity_strength: float = 3.0,
        segment_strength: float = 20.0,
        activity_weight: float = 1.0,
        rate_strength: float = 2.0,
        week_strength: float = 30.0,
        kernel_widths: tuple[float, ...] = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0),
    ):
        self.prior_strength = prior_strength
        self.activity_strength = activity_strength
        self.segment_strength = segment_strength
        self.activity_weight = activity_weight
        self.rate_strength = rate_strength
        self.week_strength = week_strength
        self.kernel_widths = kernel_widths

    # -- fitting ------------------------------------------------------------------------------------------

    def fit(self, inputs: pd.DataFrame | SendTimeInputs):
        """Learn from `SendTimeInputs`, or from a sends frame alone (then opens are the only activity, and
        without `open_hour_of_week` an open is placed at its send hour, which is all version 1 knew)."""
        if isinstance(inputs, pd.DataFrame):
            inputs = SendTimeInputs(inputs)
        _check_sends(inputs.sends)
        sends = inputs.sends.reset_index(drop=True)
        opened = sends["opened"].to_numpy().astype(float)
        send_hod = sends["hour_of_week"].to_numpy().astype(int) % HOURS_PER_DAY
        read_hod = _read_hours(sends, send_hod)
        self.channels_ = tuple(sorted(sends["channel"].unique()))
        activity = inputs.activity if inputs.activity is not None else _opens_as_activity(sends, read_hod)
        self.customers_ = pd.Index(
            sorted(set(sends["customer_id"]) | set(activity["customer_id"])), name="customer_id"
        )
        self._fit_activity(activity)

        cust = self.customers_.get_indexer(sends["customer_id"])
        chan = np.array([self.channels_.index(c) for c in sends["channel"]])
        one_hot = np.zeros((len(sends), HOURS_PER_DAY))
        one_hot[np.flatnonzero(opened), read_hod[opened == 1]] = 1.0
        spread = _circular_smooth(one_hot, _SPREAD)
        self.own_ = np.zeros((len(self.channels_), len(self.customers_), HOURS_PER_DAY), dtype=np.float32)
        np.add.at(self.own_, (chan, cust), spread)
        self._fit_pooled_profiles()

        # Each send is judged with its own open left out of the customer's reading hours: otherwise every
        # open would "predict" itself at its own hour and the kernel would come out far too sharp.
        pooled = self._pooled(chan, cust)
        n_own = self.own_[chan, cust].sum(axis=1)
        loo = (self.own_[chan, cust] - spread + self.prior_strength * pooled) / (
            n_own - opened + self.prior_strength
        )[:, None]
        expected = self._fit_response(loo, send_hod, chan, opened)
        self._fit_rates(sends, chan, cust, opened, expected)
        self.n_sends_ = len(sends)
        self.open_rate_ = float(opened.mean())
        return self

    def _fit_response(self, loo: np.ndarray, send_hod: np.ndarray, chan: np.ndarray,
                      opened: np.ndarray) -> np.ndarray:
        """Pick the kernel width and per-channel calibration with the highest likelihood of the opens;
        return each send's predicted P(open) under them."""
        best = None
        for width in self.kernel_widths:
            reach = np.einsum("sr,sr->s", loo, _kernel_matrix(width)[send_hod])
            calibration = {"*": _fit_calibration(reach, opened)}
            for i, c in enumerate(self.channels_):
                rows = chan == i
                own_fit = rows.sum() >= _MIN_SENDS_TO_CALIBRATE and 0 < opened[rows].mean() < 1
                calibration[c] = _fit_calibration(reach[rows], opened[rows]) if own_fit else calibration["*"]
            floor = np.array([calibration[c][0] for c in self.channels_])[chan]
            gain = np.array([calibration[c][1] for c in self.channels_])[chan]
            p = np.clip(floor + gain * reach, 1e-6, 1 - 1e-6)
            loglik = float((opened * np.log(p) + (1 - opened) * np.log1p(-p)).sum())
            if best is None or loglik > best[0]:
                best = (loglik, width, calibration, p)
        _, self.kernel_width_, self.calibration_, expected = best
        self.kernel_ = _kernel_matrix(self.kernel_width_)
        return expected

    def _fit_rates(self, sends: pd.DataFrame, chan: np.ndarray, cust: np.ndarray, opened: np.ndarray,
                   expected: np.ndarray) -> None:
        """A customer's responsiveness: opens against what the timing alone predicts (a Gamma–Poisson
        rate, shrunk toward 1). Then per channel and day of week, the shop's opens against the predictions,
        shrunk toward 1: the only part of the 168 scores that varies by day."""
        self.opens_ = np.zeros((len(self.channels_), len(self.customers_)), dtype=np.float32)
        self.expected_opens_ = np.zeros_like(self.opens_)
        np.add.at(self.opens_, (chan, cust), opened)
        np.add.at(self.expected_opens_, (chan, cust), expected)
        rate = (self.opens_ + self.rate_strength) / (self.expected_opens_ + self.rate_strength)
        predicted = expected * rate[chan, cust]
        dow = sends["hour_of_week"].to_numpy().astype(int) // HOURS_PER_DAY
        self.week_ = {"*": np.ones(7)}
        for i, c in enumerate(self.channels_):
            rows = chan == i
            o = np.bincount(dow[rows], weights=opened[rows], minlength=7)
            e = np.bincount(dow[rows], weights=predicted[rows], minlength=7)
            self.week_[c] = (o + self.week_strength) / (e + self.week_strength)

    def _fit_activity(self, activity: pd.DataFrame) -> None:
        """Fold activity to 24 hours of day: all channels, and each send channel on its own (to be left out
        of that channel's `activity` level, where its opens already count as `customer` evidence)."""
        n_cust = len(self.customers_)
        self.activity_all_ = np.zeros((n_cust, HOURS_PER_DAY), dtype=np.float32)
        self.activity_by_channel_ = np.zeros((len(self.channels_), n_cust, HOURS_PER_DAY), dtype=np.float32)
        if activity.empty:
            self.segment_ = np.full(n_cust, -1)
            return
        rows = self.customers_.get_indexer(activity["customer_id"])
        daily = np.stack([np.asarray(c, dtype=float).reshape(-1, HOURS_PER_DAY).sum(axis=0)
                          for c in activity["counts"]])
        np.add.at(self.activity_all_, rows, daily)
        for i, c in enumerate(self.channels_):
            mine = (activity["channel"] == c).to_numpy()
            np.add.at(self.activity_by_channel_[i], rows[mine], daily[mine])
        self.segment_ = _day_part(self.activity_all_)

    def _fit_pooled_profiles(self) -> None:
        """Shop and segment reading profiles per channel, from the opens' hours of all customers."""
        uniform = np.full(HOURS_PER_DAY, 1.0 / HOURS_PER_DAY)
        self.shop_profile_, self.segment_profile_, self.segment_opens_ = {}, {}, {}
        channels = {c: self.own_[[i]] for i, c in enumerate(self.channels_)}
        channels["*"] = self.own_
        for c, own in channels.items():
            total = own.sum(axis=(0, 1))
            shop = (total + uniform) / (total.sum() + 1.0)
            self.shop_profile_[c] = shop
            profiles, opens = np.empty((len(DAY_PARTS), HOURS_PER_DAY)), np.zeros(len(DAY_PARTS))
            for part in range(len(DAY_PARTS)):
                counts = own[:, self.segment_ == part].sum(axis=(0, 1))
                opens[part] = counts.sum()
                profiles[part] = (counts + self.segment_strength * shop) / (opens[part] + self.segment_strength)
            self.segment_profile_[c], self.segment_opens_[c] = profiles, opens

    # -- the fallback chain -------------------------------------------------------------------------------

    def _channel_key(self, channel: str) -> tuple[str, int | None]:
        return (channel, self.channels_.index(channel)) if channel in self.channels_ else ("*", None)

    def _other_activity(self, chan: np.ndarray | int | None, cust: np.ndarray | int) -> np.ndarray:
        if chan is None:
            return self.activity_all_[cust].astype(float)
        return np.maximum(self.activity_all_[cust] - self.activity_by_channel_[chan, cust], 0.0)

    def _pooled(self, chan: np.ndarray, cust: np.ndarray) -> np.ndarray:
        """Levels 2–4 for rows of (channel index, customer index): activity → segment → shop."""
        out = np.empty((len(cust), HOURS_PER_DAY))
        for i, c in enumerate(self.channels_):
            rows = chan == i
            out[rows] = self._pooled_for(c, i, cust[rows])[0]
        return out

    def _pooled_for(self, channel: str, chan: int | None, cust: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(profiles, level weights of activity/segment/shop) for customers of one channel."""
        key = channel if chan is not None else "*"
        segment = self.segment_[cust]
        known = segment >= 0
        fallback = np.where(known[:, None], self.segment_profile_[key][np.maximum(segment, 0)],
                            self.shop_profile_[key])
        seg_opens = np.where(known, self.segment_opens_[key][np.maximum(segment, 0)], 0.0)
        activity = self.activity_weight * self._other_activity(chan, cust)
        n_act = activity.sum(axis=1)
        k = self.activity_strength
        profile = (activity + k * fallback) / (n_act + k)[:, None]
        w_act = n_act / (n_act + k)
        w_seg = (1 - w_act) * seg_opens / (seg_opens + self.segment_strength)
        return profile, np.stack([w_act, w_seg, 1 - w_act - w_seg], axis=1)

    def _level_weights(self, channel: str, cust: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For known customers (indices): own reading counts, pooled profiles (levels 2–4) and the weight
        of each level of SOURCES in the final profile."""
        _, chan = self._channel_key(channel)
        own = (self.own_[chan, cust].astype(float) if chan is not None
               else np.zeros((len(cust), HOURS_PER_DAY)))
        pooled, rest = self._pooled_for(channel, chan, cust)
        n_own = own.sum(axis=1)
        w_own = n_own / (n_own + self.prior_strength)
        weights = np.column_stack([w_own, (1 - w_own)[:, None] * rest])
        return own, pooled, weights

    def _posteriors(self, customer_ids, channel: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For each customer: the Dirichlet concentration of their reading hours (n × 24), the open-rate
        posterior (opens and expected opens, both with pseudo-counts: a Gamma) and the index in SOURCES
        of the level that decided. A customer the model does not know gets the shop's (`shop`)."""
        key, chan = self._channel_key(channel)
        idx = self._positions(customer_ids)
        known = idx >= 0
        k, r = self.prior_strength, self.rate_strength
        n = len(idx)
        concentration = np.tile(k * self.shop_profile_[key], (n, 1))
        opens, expected = np.full(n, float(r)), np.full(n, float(r))
        source = np.full(n, SOURCES.index("shop"))
        if known.any():
            own, pooled, weights = self._level_weights(channel, idx[known])
            concentration[known] = own + k * pooled
            source[known] = np.argmax(weights, axis=1)
            if chan is not None:
                opens[known] += self.opens_[chan, idx[known]]
                expected[known] += self.expected_opens_[chan, idx[known]]
        return concentration, opens, expected, source

    def _positions(self, customer_ids) -> np.ndarray:
        """Each customer's row in the fitted arrays, -1 for one the model does not know. A dict, made on
        first use and never pickled: pandas' own lookup converts each request's ids to an Arrow array
        first, which costs more than the rest of a one-customer answer."""
        table = self.__dict__.get("_position_of")
        if table is None:
            table = self.__dict__["_position_of"] = dict(zip(self.customers_.tolist(), range(len(self.customers_))))
        get = table.get
        return np.fromiter((get(c, -1) for c in customer_ids), dtype=np.int64, count=len(customer_ids))

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_position_of", None)
        return state

    def _scores(self, profiles: np.ndarray, rates: np.ndarray, channel: str) -> np.ndarray:
        """n × 168 probabilities from reading hours (n × 24) and each customer's rate. A rate that would
        push the best hour past `_MAX_P` is capped rather than the curve clipped, which would flatten its
        top."""
        key = self._channel_key(channel)[0]
        floor, gain = self.calibration_[key]
        daily = floor + gain * (profiles @ self.kernel_.T)
        weekly = (daily[:, None, :] * self.week_[key][None, :, None]).reshape(len(daily), HOURS_PER_WEEK)
        rates = np.minimum(rates, _MAX_P / weekly.max(axis=1))
        return np.clip(rates[:, None] * weekly, 0.0, 1.0)

    # -- answers ------------------------------------------------------------------------------------------

    def curves(self, customer_ids, channel: str) -> tuple[np.ndarray, list[str]]:
        """n × 168 values of P(open or click | sent at that local hour of week) and, per customer, the
        level that decided: `customer`, `activity`, `segment` or `shop` (see the module docstring)."""
        concentration, opens, expected, source = self._posteriors(customer_ids, channel)
        profiles = concentration / concentration.sum(axis=1, keepdims=True)
        return self._scores(profiles, opens / expected, channel), [SOURCES[i] for i in source]

    def sample_curves(self, customer_ids, channel: str, rng: np.random.Generator) -> np.ndarray:
        """One draw per customer from the posterior: reading hours from their Dirichlet (normalised
        Gamma draws), the open rate from its Gamma."""
        concentration, opens, expected, _ = self._posteriors(customer_ids, channel)
        draws = rng.gamma(np.maximum(concentration, 1e-3))
        profiles = draws / draws.sum(axis=1, keepdims=True)
        return self._scores(profiles, rng.gamma(opens, 1.0 / expected), channel)

    def curve(self, customer_id: str, channel: str) -> tuple[np.ndarray, str]:
        """`curves` for one customer."""
        curves, sources = self.curves([customer_id], channel)
        return curves[0], sources[0]

    def sample_curve(self, customer_id: str, channel: str, rng: np.random.Generator) -> np.ndarray:
        return self.sample_curves([customer_id], channel, rng)[0]

    def reading_profile(self, customer_id: str, channel: str) -> np.ndarray:
        """The pooled share of the customer's reading in each local hour of day (sums to 1)."""
        concentration = self._posteriors([customer_id], channel)[0][0]
        return concentration / concentration.sum()

    def shop_curve(self, channel: str) -> np.ndarray:
        """The 168 scores of a customer the model knows nothing about (the last level of the chain)."""
        key = self._channel_key(channel)[0]
        r = np.array([1.0])  # opens / expected with pseudo-counts alone
        return self._scores((self.shop_profile_[key] / self.shop_profile_[key].sum())[None, :], r, channel)[0]

    def sources_summary(self) -> dict[str, dict[str, int]]:
        """Per channel, how many of the customers the model knows get each source."""
        everyone = np.arange(len(self.customers_))
        summary = {}
        for channel in self.channels_:
            won = np.argmax(self._level_weights(channel, everyone)[2], axis=1)
            summary[channel] = {s: int((won == i).sum()) for i, s in enumerate(SOURCES)}
        return summary

    def __setstate__(self, state: dict) -> None:
        # A version-1 model registered before version 2 existed was pickled under this class name; it
        # keeps working as what it is, so champion comparisons and serving survive the upgrade.
        if "customer_counts_" in state and "own_" not in state:
            self.__class__ = SendHourModel
        BaseEstimator.__setstate__(self, state)


def _read_hours(sends: pd.DataFrame, send_hod: np.ndarray) -> np.ndarray:
    """Local hour of day of each send's first open or click; the send hour when that time is unknown."""
    if "open_hour_of_week" not in sends:
        return send_hod
    read_at = np.floor(sends["open_hour_of_week"].to_numpy(dtype=float)) % HOURS_PER_DAY
    return np.where(np.isnan(read_at), send_hod, np.nan_to_num(read_at)).astype(int)


def _opens_as_activity(sends: pd.DataFrame, read_hod: np.ndarray) -> pd.DataFrame:
    """Activity rows (customer_id, channel, counts of 168) made of the opens in `sends` alone."""
    opened = sends["opened"].to_numpy() == 1
    if not opened.any():
        return pd.DataFrame({"customer_id": [], "channel": [], "counts": []})
    frame = pd.DataFrame({"customer_id": sends["customer_id"][opened], "channel": sends["channel"][opened],
                          "hod": read_hod[opened]})
    rows = []
    for (customer, channel), group in frame.groupby(["customer_id", "channel"]):
        counts = np.bincount(group["hod"], minlength=HOURS_PER_DAY).astype(float)
        rows.append((customer, channel, _circular_smooth(counts, _SPREAD)))
    return pd.DataFrame(rows, columns=["customer_id", "channel", "counts"])
