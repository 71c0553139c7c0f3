"""The contact policy: when, how often and at what price each channel may be used, read from TOML.

The product ships Vietnamese defaults (`policy_vn.toml`, beside this module); a shop passes its own file
with `--policy`. Every plan is checked against the policy it was made under (`violations`), by a routine
that shares nothing with the planner but the policy itself, so a planner bug shows up as a refused plan
rather than as a message sent at 23:00.

Windows for caps end at the send: a day is the 24 hours before it (Decree 91/2020 counts per 24 h), a
week 7 days, a month 30 days. Past `message_sent` events and the plan's own earlier sends both count.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import time
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

PLAN_CHANNELS: tuple[str, ...] = ("email", "sms", "zalo_oa", "zalo_zns")
CAP_WINDOWS: dict[str, pd.Timedelta] = {"per_day": pd.Timedelta(hours=24), "per_week": pd.Timedelta(days=7),
                                        "per_month": pd.Timedelta(days=30)}
_CHANNEL_KEYS = {"cost_vnd", "allowed_hours", "label", "daily_quota", "free_window_hours", "free_window_messages",
                 *CAP_WINDOWS}


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file, the channel and the key."""


class PlanError(ValueError):
    """A plan that cannot be made as asked (unknown channel, empty window, negative budget)."""


@dataclass(frozen=True)
class Hours:
    """Allowed local hours [start, end): a send at `end` itself is outside."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str, where: str) -> Hours:
        try:
            start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
        except ValueError as exc:
            raise PolicyError(f"{where}: allowed_hours must look like \"07:00-22:00\", not {text!r}") from exc
        if end <= start:
            raise PolicyError(f"{where}: allowed_hours {text!r} ends before it starts")
        return cls(start, end)

    def allows(self, local: pd.Timestamp) -> bool:
        return self.start <= local.time() < self.end

    def mask(self, local: pd.DatetimeIndex) -> np.ndarray:
        minutes = local.hour * 60 + local.minute
        return ((minutes >= self.start.hour * 60 + self.start.minute)
                & (minutes < self.end.hour * 60 + self.end.minute)).to_numpy()

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class ChannelPolicy:
    cost_vnd: float
    allowed_hours: Hours
    caps: dict[str, int] = field(default_factory=dict)  # per_day / per_week / per_month → max sends
    label: str | None = None  # required at the start of the message text, e.g. "[QC]"
    daily_quota: int | None = None  # the sender's sends per local calendar day, all customers together
    free_window_hours: float | None = None  # Zalo OA: free within this many hours of the user's last action
    free_window_messages: int | None = None  # … and at most this many messages in that window


@dataclass(frozen=True)
class ContactPolicy:
    channels: dict[str, ChannelPolicy]
    all_channels: dict[str, int]  # caps across channels, per customer
    source: str  # the file it came from, for plans and reports

    def channel(self, name: str) -> ChannelPolicy:
        if name not in self.channels:
            raise PolicyError(f"{self.source} has no policy for channel {name!r}; it covers "
                              f"{', '.join(self.channels)}")
        return self.channels[name]


def _count(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PolicyError(f"{where} must be a whole number ≥ 0, not {value!r}")
    return value


def _caps(table: dict, where: str) -> dict[str, int]:
    return {k: _count(table[k], f"{where}.{k}") for k in CAP_WINDOWS if k in table}


def _channel(name: str, table: dict, where: str) -> ChannelPolicy:
    if name not in PLAN_CHANNELS:
        raise PolicyError(f"{where}: unknown channel {name!r}; plans use {', '.join(PLAN_CHANNELS)}")
    unknown = set(table) - _CHANNEL_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(_CHANNEL_KEYS)}")
    for key in ("cost_vnd", "allowed_hours"):
        if key not in table:
            raise PolicyError(f"{where}: {key} is required")
    cost = table["cost_vnd"]
    if isinstance(cost, bool) or not isinstance(cost, int | float) or cost < 0:
        raise PolicyError(f"{where}.cost_vnd must be a number ≥ 0, not {cost!r}")
    window = table.get("free_window_hours")
    if window is not None and (not isinstance(window, int | float) or window <= 0):
        raise PolicyError(f"{where}.free_window_hours must be a positive number, not {window!r}")
    quota = table.get("daily_quota")
    messages = table.get("free_window_messages")
    return ChannelPolicy(
        cost_vnd=float(cost), allowed_hours=Hours.parse(str(table["allowed_hours"]), f"{where}.allowed_hours"),
        caps=_caps(table, where), label=table.get("label"),
        daily_quota=None if quota is None else _count(quota, f"{where}.daily_quota"),
        free_window_hours=None if window is None else float(window),
        free_window_messages=None if messages is None else _count(messages, f"{where}.free_window_messages"))


def parse_policy(text: str, source: str) -> ContactPolicy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source} is not valid TOML: {exc}") from exc
    unknown = set(data) - {"channels", "all_channels"}
    if unknown:
        raise PolicyError(f"{source}: unknown sections {sorted(unknown)}; use [all_channels] and [channels.NAME]")
    channels = {name: _channel(name, table, f"{source} [channels.{name}]")
                for name, table in data.get("channels", {}).items()}
    if not channels:
        raise PolicyError(f"{source} defines no channel; add a [channels.email] section or others")
    return ContactPolicy(channels, _caps(data.get("all_channels", {}), f"{source} [all_channels]"), source)


def load_policy(path: Path | None = None) -> ContactPolicy:
    """The policy in `path`, or the shipped Vietnamese defaults."""
    if path is None:
        text = resources.files("serving.activation").joinpath("policy_vn.toml").read_text(encoding="utf-8")
        return parse_policy(text, "policy_vn.toml (defaults)")
    if not Path(path).is_file():
        raise PolicyError(f"no policy file at {path}")
    return parse_policy(Path(path).read_text(encoding="utf-8"), str(path))


def default_policy_text() -> str:
    return resources.files("serving.activation").joinpath("policy_vn.toml").read_text(encoding="utf-8")


def _in_window(times: np.ndarray, at: np.datetime64, span: pd.Timedelta) -> int:
    """How many of the sorted `times` fall in the `span` before `at`, `at` excluded (the send itself)."""
    lo = np.searchsorted(times, at - span.to_timedelta64(), side="right")
    hi = np.searchsorted(times, at, side="left")
    return int(hi - lo)


def violations(plan: pd.DataFrame, policy: ContactPolicy, history: pd.DataFrame,
               budget_vnd: float | None = None) -> list[str]:
    """Every way the sends of `plan` break `policy` given past sends `history` (customer_id, channel, ts as
    naive UTC), and the budget; empty when the plan keeps it.

    `plan` rows with a channel and send_at (a tz-aware local time) are sends. Checked per send: allowed
    hours, the per-channel and across-channel caps over earlier sends (history and the plan's own), the
    required label; per channel and local day: the quota; in all: the budget.
    """
    sends = plan[plan["channel"].notna() & plan["send_at"].notna()].copy()
    problems: list[str] = []
    if sends.empty:
        return problems
    sends["local"] = pd.to_datetime(sends["send_at"], utc=True).dt.tz_convert("Asia/Ho_Chi_Minh")
    sends["utc"] = sends["local"].dt.tz_convert(None)
    past = history[["customer_id", "channel", "ts"]].assign(ts=lambda h: pd.to_datetime(h["ts"]))
    every = pd.concat([past, sends[["customer_id", "channel"]].assign(ts=sends["utc"].to_numpy())])
    by_customer = {c: g for c, g in every.groupby("customer_id")}
    for row in sends.itertuples():
        rule = policy.channel(row.channel)
        where = f"{row.customer_id} on {row.channel} at {row.send_at}"
        if not rule.allowed_hours.allows(row.local):
            problems.append(f"{where}: outside {rule.allowed_hours}")
        if rule.label and not str(getattr(row, "label", "") or "").startswith(rule.label):
            problems.append(f"{where}: missing the label {rule.label}")
        mine = by_customer[row.customer_id]
        at = np.datetime64(row.utc)
        for caps, times in ((rule.caps, mine.loc[mine["channel"] == row.channel, "ts"]),
                            (policy.all_channels, mine["ts"])):
            ordered = np.sort(times.to_numpy(dtype="datetime64[ns]"))
            for key, cap in caps.items():
                if _in_window(ordered, at, CAP_WINDOWS[key]) + 1 > cap:
                    problems.append(f"{where}: over {key} = {cap}")
    days = sends.assign(day=sends["local"].dt.date).groupby(["channel", "day"]).size()
    for (channel, day), count in days.items():
        quota = policy.channel(channel).daily_quota
        if quota is not None and count > quota:
            problems.append(f"{channel} on {day}: {count} sends over the daily quota {quota}")
    if budget_vnd is not None and sends["cost_vnd"].sum() > budget_vnd + 1e-6:
        problems.append(f"the sends cost {sends['cost_vnd'].sum():,.0f} VND, over the budget {budget_vnd:,.0f}")
    return problems
