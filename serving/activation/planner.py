"""The next best action: for each member of an audience, the channel and hour that bring the most expected
response per VND, within the contact policy, the senders' quotas and the campaign's budget.

The expected response of sending customer i on channel c at hour h is

    P(delivered on c) × P(open | sent on c at h) × P(purchase in the horizon)

- delivery from the customer's own delivery log (`consent.reach`);
- the open curve from the send-time champion (168 hour-of-week scores per customer and channel);
- purchase from the propensity answers (model or fallback).

It is the chance that a likely buyer reads the message, not the message's causal effect (that is
uplift, a later step).

The choice is greedy by response per VND: every member's best feasible (channel, hour) enters a heap; the
best ratio is taken first; a member whose hour meets a full daily quota moves to their next hour; a send
the budget cannot pay for leaves room for cheaper ones. Greedy by ratio is the classic answer to a budget
constraint (the fractional knapsack), and exact when no single send is large against the budget, which is
always the case here. A free message (the OA's reply window) is ranked as if it cost 1 VND.

Every plan is checked by `policy.violations` before it is returned; a plan that fails is a bug and raises.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import time

import numpy as np
import pandas as pd

from features.contacts import last_oa_interactions, sends_since
from models.send_time import QuietHours, slot_hours
from nhip.clock import LOCAL_OFFSET_HOURS
from serving.activation.consent import ADDRESS
from serving.activation.context import ActivationContext
from serving.activation.policy import CAP_WINDOWS, PLAN_CHANNELS, ContactPolicy, PlanError, violations

PLAN_COLUMNS = ("customer_id", "phone", "email", "zalo_user_id", "channel", "send_at", "expected_response",
                "cost_vnd", "label", "send_time_source", "reason")
# Why a member gets no message, in the order they are told: the first that applies.
REASONS = ("no consent", "no slot", "cap reached", "quota", "budget")
_MIN_COST = 1.0
_NO_MODEL = "no send-time champion: the first allowed hour"


@dataclass
class Plan:
    """One row per member (`PLAN_COLUMNS`): a send, or the reason there is none."""

    rows: pd.DataFrame
    policy: str
    budget_vnd: float | None
    window: tuple[pd.Timestamp, pd.Timestamp]
    channels: tuple[str, ...]
    versions: dict = field(default_factory=dict)

    @property
    def sends(self) -> pd.DataFrame:
        return self.rows[self.rows["channel"].notna()]

    def summary(self) -> dict:
        sends = self.sends
        cost = float(sends["cost_vnd"].sum())
        response = float(sends["expected_response"].sum())
        return {
            "members": len(self.rows), "sends": len(sends),
            "by_channel": {k: int(v) for k, v in sends["channel"].value_counts().items()},
            "not_sent": {k: int(v) for k, v in self.rows["reason"].dropna().value_counts().items()},
            "cost_vnd": round(cost, 2), "expected_responses": round(response, 4),
            "responses_per_1000_vnd": round(1000 * response / cost, 4) if cost > 0 else None,
            "budget_vnd": self.budget_vnd,
        }


def _slots(start: pd.Timestamp, end: pd.Timestamp, policy_hours, quiet: QuietHours):
    """Whole-hour slots of [start, end) allowed by both the channel's hours and the shop's quiet hours."""
    hours, how = slot_hours(start, end - pd.Timedelta(microseconds=1), quiet)
    hod = (hours + LOCAL_OFFSET_HOURS) % 24
    ok = np.array([policy_hours.start <= time(int(h)) < policy_hours.end for h in range(24)])[hod]
    return hours[ok], how[ok]


def _epoch_hours(ts: pd.Series) -> np.ndarray:
    """Naive-UTC times as hours since the epoch, whatever the resolution the store gave them (µs or ns)."""
    return ((pd.to_datetime(ts) - pd.Timestamp(0)) / pd.Timedelta(hours=1)).to_numpy(dtype=float)


def _history_times(history: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """customer → channel (and "*" for all) → sorted send times as hours since the epoch (float)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    if history.empty:
        return out
    frame = history.assign(h=_epoch_hours(history["ts"]))
    for customer, group in frame.groupby("customer_id"):
        mine = {c: np.sort(g["h"].to_numpy()) for c, g in group.groupby("channel")}
        mine["*"] = np.sort(group["h"].to_numpy())
        out[customer] = mine
    return out


def _cap_ok(times: np.ndarray | None, slots: np.ndarray, caps: dict[str, int]) -> np.ndarray:
    """Per slot (hours since the epoch): whether one more send keeps every cap over `times`."""
    ok = np.ones(len(slots), dtype=bool)
    for key, cap in caps.items():
        if cap == 0:
            return np.zeros(len(slots), dtype=bool)
        if times is None or not len(times):
            continue
        span = CAP_WINDOWS[key] / pd.Timedelta(hours=1)
        count = np.searchsorted(times, slots, side="left") - np.searchsorted(times, slots - span, side="right")
        ok &= count + 1 <= cap
    return ok


@dataclass
class _Options:
    """One channel's options for its candidates: per candidate, slots ordered best first."""

    channel: str
    customers: list[str]
    hours: np.ndarray  # the channel's slots (hours since the epoch)
    response: np.ndarray  # candidates × slots
    cost: np.ndarray  # candidates × slots
    feasible: np.ndarray  # candidates × slots (caps)
    order: np.ndarray  # candidates × slots: slot indices by response, best first
    sources: list[str]


def plan_campaign(context: ActivationContext, members: pd.Index, channels: tuple[str, ...], start: pd.Timestamp,
                  end: pd.Timestamp, policy: ContactPolicy, quiet: QuietHours, budget_vnd: float | None = None,
                  history: pd.DataFrame | None = None, last_oa: pd.Series | None = None) -> Plan:
    """The plan for `members` over [start, end) (tz-aware times) on `channels`.

    `history` (customer_id, channel, ts naive UTC) and `last_oa` (customer → last own OA action) default to
    what the event store holds now (`features.contacts`); tests pass their own.
    """
    unknown = [c for c in channels if c not in PLAN_CHANNELS]
    if unknown or not channels:
        raise PlanError(f"channels {unknown or '(none)'}: plans use {', '.join(PLAN_CHANNELS)}")
    if end <= start:
        raise PlanError("--to must be after --from")
    if budget_vnd is not None and budget_vnd < 0:
        raise PlanError("the budget must be 0 VND or more")
    for c in channels:
        policy.channel(c)
    frame = context.frame
    members = pd.Index([m for m in dict.fromkeys(members) if m in frame.index], dtype=object)
    if history is None:
        since = (start - pd.Timedelta(days=31)).tz_convert("UTC").tz_localize(None).to_pydatetime()
        history = sends_since(context.store_path, context.identity, since, PLAN_CHANNELS)
    if last_oa is None and "zalo_oa" in channels and policy.channel("zalo_oa").free_window_hours:
        since = (start - pd.Timedelta(days=30)).tz_convert("UTC").tz_localize(None).to_pydatetime()
        last_oa = last_oa_interactions(context.store_path, context.identity, since)
    past = _history_times(history[history["customer_id"].isin(members)])
    propensity = frame["propensity_score"].reindex(members).astype(float)
    propensity = propensity.fillna(propensity.mean() if propensity.notna().any() else 1.0).to_numpy()
    position = {m: i for i, m in enumerate(members)}
    options = [_channel_options(context, members, propensity, position, c, start, end, policy, quiet, past,
                                last_oa) for c in channels]
    rows = _assign(members, options, policy, budget_vnd, context)
    plan = Plan(rows, policy.source, budget_vnd, (start, end), tuple(channels),
                context.scorer.versions() | {"build_id": context.build.build_id})
    problems = violations(plan.rows, policy, history, budget_vnd)
    if problems:  # the planner's own bug, never a user's: refuse rather than send
        raise RuntimeError(f"the plan breaks its policy ({len(problems)} problems), first: {problems[0]}")
    return plan


def _channel_options(context, members, propensity, position, channel, start, end, policy, quiet, past,
                     last_oa) -> _Options:
    rule = policy.channel(channel)
    allowed = context.reach.allowed[channel].reindex(members).fillna(False).to_numpy()
    customers = list(members[allowed])
    hours, how = _slots(start, end, rule.allowed_hours, quiet)
    n, s = len(customers), len(hours)
    rows = np.array([position[c] for c in customers], dtype=np.int64)
    champion = context.scorer.send_time_champion
    if champion is not None and n and s:
        curves, sources = champion.model.curves(customers, channel)
        opens = curves[:, how]
    else:
        opens = np.tile(np.linspace(1.0, 0.99, s), (n, 1)) if s else np.zeros((n, 0))
        sources = [_NO_MODEL] * n
    delivery = context.reach.delivery[channel].reindex(customers).to_numpy(dtype=float)
    response = opens * delivery[:, None] * propensity[rows][:, None]
    cost = np.full((n, s), rule.cost_vnd)
    if rule.free_window_hours and last_oa is not None and len(last_oa) and n and s:
        cost = _oa_cost(customers, hours, rule, last_oa, past, cost)
    # Without past sends only a cap of 0 forbids anything; customers with some are checked one by one.
    fresh = _cap_ok(None, hours.astype(float), rule.caps) & _cap_ok(None, hours.astype(float), policy.all_channels)
    feasible = np.tile(fresh, (n, 1))
    for i, customer in enumerate(customers):
        mine = past.get(customer)
        if mine:
            feasible[i] = (_cap_ok(mine.get(channel), hours.astype(float), rule.caps)
                           & _cap_ok(mine.get("*"), hours.astype(float), policy.all_channels))
    order = np.argsort(-response, axis=1, kind="stable") if s else np.zeros((n, 0), dtype=np.int64)
    return _Options(channel, customers, hours, response, cost, feasible, order, list(sources))


def _oa_cost(customers, hours, rule, last_oa, past, cost) -> np.ndarray:
    """Zalo OA: free in the window after the customer's last own action, up to its message count."""
    last = last_oa.reindex(customers)
    last_h = _epoch_hours(last)
    has = last.notna().to_numpy()
    for i in np.flatnonzero(has):
        sent = past.get(customers[i], {}).get("zalo_oa")
        since = int(np.sum(sent > last_h[i])) if sent is not None else 0
        free = (hours >= last_h[i]) & (hours < last_h[i] + rule.free_window_hours)
        if rule.free_window_messages is not None and since + 1 > rule.free_window_messages:
            free[:] = False
        cost[i, free] = 0.0
    return cost


def _day(hour: int) -> int:
    return (int(hour) + LOCAL_OFFSET_HOURS) // 24


def _assign(members: pd.Index, options: list[_Options], policy: ContactPolicy, budget: float | None,
            context: ActivationContext) -> pd.DataFrame:
    heap: list[tuple[float, int, int, int, int]] = []  # (-ratio, member, option, candidate, rank)
    member_of = [np.array([members.get_loc(c) for c in o.customers], dtype=np.int64) for o in options]
    flags = {r: np.zeros(len(members), dtype=bool) for r in ("quota", "budget")}
    consenting = np.zeros(len(members), dtype=bool)

    def push(k: int, i: int, rank: int) -> None:
        o = options[k]
        order = o.order[i]
        while rank < len(order) and not o.feasible[i, order[rank]]:
            rank += 1
        if rank < len(order):
            j = order[rank]
            ratio = o.response[i, j] / max(o.cost[i, j], _MIN_COST)
            heapq.heappush(heap, (-ratio, int(member_of[k][i]), k, i, rank))

    for k, o in enumerate(options):
        consenting[member_of[k]] = True
        if len(o.hours):
            for i in range(len(o.customers)):
                push(k, i, 0)  # a member whose every hour is capped never enters: "cap reached"
    has_slot = np.zeros(len(members), dtype=bool)
    for k, o in enumerate(options):
        if len(o.hours):
            has_slot[member_of[k]] = True
    chosen: dict[int, tuple[int, int, int]] = {}
    used: dict[tuple[str, int], int] = {}
    left = np.inf if budget is None else float(budget)
    while heap:
        _, m, k, i, rank = heapq.heappop(heap)
        if m in chosen:
            continue
        o = options[k]
        j = o.order[i][rank]
        quota = policy.channel(o.channel).daily_quota
        day = (o.channel, _day(o.hours[j]))
        if quota is not None and used.get(day, 0) >= quota:
            flags["quota"][m] = True
            push(k, i, rank + 1)
            continue
        if o.cost[i, j] > left + 1e-9:
            flags["budget"][m] = True
            continue
        chosen[m] = (k, i, j)
        used[day] = used.get(day, 0) + 1
        left -= o.cost[i, j]
    return _rows(members, options, chosen, consenting, has_slot, flags, policy, context)


def _rows(members, options, chosen, consenting, has_slot, flags, policy, context) -> pd.DataFrame:
    n = len(members)
    out = {name: np.full(n, None, dtype=object) for name in PLAN_COLUMNS}
    out["customer_id"] = np.array(members, dtype=object)
    address = context.reach.address.reindex(members)
    for name in ("phone", "email", "zalo_user_id"):
        column = next(c for c, f in ADDRESS.items() if f == name)
        out[name] = address[column].to_numpy(dtype=object)
    for m, (k, i, j) in chosen.items():
        o = options[k]
        out["channel"][m] = o.channel
        out["send_at"][m] = pd.Timestamp(int(o.hours[j]) * 3600, unit="s", tz="UTC").tz_convert(
            "Asia/Ho_Chi_Minh").isoformat()
        out["expected_response"][m] = float(o.response[i, j])
        out["cost_vnd"][m] = float(o.cost[i, j])
        out["label"][m] = policy.channel(o.channel).label
        out["send_time_source"][m] = o.sources[i]
    for m in range(n):
        if m in chosen:
            continue
        if not consenting[m]:
            out["reason"][m] = "no consent"
        elif not has_slot[m]:
            out["reason"][m] = "no slot"
        elif flags["quota"][m]:
            out["reason"][m] = "quota"
        elif flags["budget"][m]:
            out["reason"][m] = "budget"
        else:
            out["reason"][m] = "cap reached"
    rows = pd.DataFrame(out)
    rows["expected_response"] = pd.to_numeric(rows["expected_response"])
    rows["cost_vnd"] = pd.to_numeric(rows["cost_vnd"])
    return rows


def decide_one(context: ActivationContext, customer_id: str, channels: tuple[str, ...], start: pd.Timestamp,
               end: pd.Timestamp, policy: ContactPolicy, quiet: QuietHours) -> dict:
    """The plan's decision for one customer: the same rules, one member, no budget."""
    if customer_id not in context.frame.index:
        raise LookupError(f"unknown customer id {customer_id!r} (not in the latest feature build, or erased)")
    plan = plan_campaign(context, pd.Index([customer_id]), channels, start, end, policy, quiet)
    row = plan.rows.iloc[0]
    value = lambda v: None if pd.isna(v) else (v.item() if isinstance(v, np.generic) else v)  # noqa: E731
    return {"customer_id": customer_id, "channel": value(row["channel"]), "send_at": value(row["send_at"]),
            "expected_response": value(row["expected_response"]), "cost_vnd": value(row["cost_vnd"]),
            "label": value(row["label"]), "send_time_source": value(row["send_time_source"]),
            "reason": value(row["reason"]), "policy": plan.policy, "versions": plan.versions}
