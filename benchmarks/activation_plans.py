"""Campaign plans against the synthetic shop's ground truth: true expected responses per VND.

    python benchmarks/activation_plans.py --customers 2000 --days 240 --seed 7

Generates the demo shop, ingests it into a temporary workspace, trains both champions as `make demo` does
(as of 2026-08-29, 30-day horizon) and builds features, all with the shipped settings and the shipped
contact policy. The audience is every customer of the build. Three plans for the same window (two days
from 2026-09-01 08:00) and the same budget:

- **Nhịp**: `serving.activation.planner.plan_campaign`, as shipped;
- **cheapest at 20:00**: each member on their cheapest consenting channel, sent at 20:00;
- **most-used at the model's hour**: each member on the consenting channel they opened most in the last
  90 days (their cheapest consenting one without opens), at the send-time model's best hour there.

The baselines are made by the same planner restricted to one channel per member (and, for the first,
to the 20:00 slot), so they obey the same policy, caps and quotas and pay the same prices (the OA's free
window included); their budget is spent in customer-id order, which is random with respect to the
customers. A plan's value is the generator's truth for each send (`synthetic.channels`):

    P(delivered on c) × P(open | sent on c at h) × P(a purchase in the next 30 days),

summed over the sends, divided by the plan's cost. Customers map to persons through identities.csv.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.identity_quality import customer_persons
from benchmarks.machine_info import machine
from benchmarks.send_time_quality import markdown
from benchmarks.shipped import SHIPPED
from features.build import build_features
from features.ingest.importer import ingest_file
from nhip.clock import parse_as_of
from nhip.settings import Settings
from serving.activation.context import open_context
from serving.activation.planner import Plan, plan_campaign
from serving.activation.policy import PLAN_CHANNELS, load_policy
from synthetic.channels import response_probability
from synthetic.demo_shop import generate, purchase_probability, write
from training.runner import train_propensity, train_send_time

AS_OF = "2026-08-29"
START = pd.Timestamp("2026-09-01T08:00:00+07:00")
END = START + pd.Timedelta(days=2)
HORIZON_DAYS = 30


def workspace(root: Path, customers: int, days: int, seed: int) -> tuple[Settings, Path]:
    data = root / "data"
    paths = write(generate(customers=customers, days=days, seed=seed), data)
    settings = SHIPPED.model_copy(update={"home": root / "home"})
    settings.ensure_dirs()
    ingest_file(paths["events"], settings.store_path)
    data_until = parse_as_of(AS_OF)  # as `nhip train propensity --as-of`: tested on the snapshot 30 days before
    train_propensity(settings.training, data_until - timedelta(days=HORIZON_DAYS), HORIZON_DAYS,
                     observed_until=data_until)
    train_send_time(settings.training, parse_as_of(AS_OF))
    build_features(settings.build, parse_as_of(AS_OF), None, to_qdrant=False)
    return settings, data


def _with_budget(rows: pd.DataFrame, budget: float | None) -> pd.DataFrame:
    """The sends of `rows` in customer-id order until the budget is spent."""
    sends = rows[rows["channel"].notna()].sort_values("customer_id")
    if budget is None:
        return sends
    return sends[sends["cost_vnd"].cumsum() <= budget]


def baseline(context, members: pd.Index, policy, quiet, pick, at_20: bool, budget: float | None) -> pd.DataFrame:
    """One channel per member (`pick`: customer → channel or None), planned by the planner alone."""
    chosen = pick(members)
    parts = []
    start, end = START, END
    if at_20:
        start = START.normalize() + pd.Timedelta(hours=20)
        end = start + pd.Timedelta(hours=1)
    for channel in PLAN_CHANNELS:
        group = chosen.index[chosen == channel]
        if len(group):
            parts.append(plan_campaign(context, group, (channel,), start, end, policy, quiet).rows)
    return _with_budget(pd.concat(parts, ignore_index=True), budget)


def truth_value(sends: pd.DataFrame, truth: pd.DataFrame, persons: pd.Series) -> dict:
    people = truth.set_index("person_id")
    who = persons.reindex(sends["customer_id"]).to_numpy()
    known = pd.notna(who)
    rows = people.loc[who[known]].reset_index()
    sends = sends[known]
    hours = pd.to_datetime(sends["send_at"], utc=True).dt.tz_convert("Asia/Ho_Chi_Minh").dt.hour.to_numpy()
    value = np.zeros(len(sends))
    channels = sends["channel"].to_numpy()
    buy = purchase_probability(rows, HORIZON_DAYS)
    for channel in PLAN_CHANNELS:
        on = channels == channel
        if on.any():
            value[on] = response_probability(rows[on].reset_index(drop=True), channel, hours[on]) * buy[on]
    cost = float(sends["cost_vnd"].sum())
    return {"sends": len(sends), "cost_vnd": cost, "true_responses": float(value.sum()),
            "planned_responses": float(sends["expected_response"].sum()),
            "true_per_1000_vnd": 1000 * value.sum() / cost if cost else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--budgets", default="none,200000,50000", help="VND, comma-separated; none = no limit")
    args = parser.parse_args()
    budgets = [None if b == "none" else float(b) for b in args.budgets.split(",")]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        settings, data = workspace(Path(tmp), args.customers, args.days, args.seed)
        truth = pd.read_csv(data / "truth.csv")
        identities = pd.read_csv(data / "identities.csv", dtype=str)
        policy, quiet = load_policy(), settings.send_time.quiet
        with open_context(settings.activation) as context:
            persons = customer_persons(context.identity, identities)
            members = context.frame.index
            allowed = context.reach.allowed.reindex(members)
            profiles = context.scorer.profiles.reindex(members)
            by_cost = sorted(PLAN_CHANNELS, key=lambda c: policy.channel(c).cost_vnd)

            def cheapest(ids: pd.Index) -> pd.Series:
                return pd.Series([next((c for c in by_cost if allowed.at[i, c]), None) for i in ids], index=ids)

            def most_used(ids: pd.Index) -> pd.Series:
                opens = pd.DataFrame({c: profiles[f"n_messages_opened_90d_{c}"].fillna(0) for c in PLAN_CHANNELS})
                opens = opens.where(allowed[list(PLAN_CHANNELS)], -1)
                best = opens.idxmax(axis=1).where(opens.max(axis=1) > 0)
                return best.fillna(cheapest(ids)).where(allowed.any(axis=1), None).reindex(ids)

            rows = []
            for budget in budgets:
                label = "no limit" if budget is None else f"{budget:,.0f} VND"
                t0 = time.perf_counter()
                plan: Plan = plan_campaign(context, members, PLAN_CHANNELS, START, END, policy, quiet, budget)
                seconds = time.perf_counter() - t0
                plans = {"Nhịp": plan.sends,
                         "cheapest at 20:00": baseline(context, members, policy, quiet, cheapest, True, budget),
                         "most-used at the model's hour": baseline(context, members, policy, quiet, most_used,
                                                                   False, budget)}
                for name, sends in plans.items():
                    rows.append({"budget": label, "plan": name, **truth_value(sends, truth, persons),
                                 "plan_seconds": seconds if name == "Nhịp" else float("nan")})
                print(f"budget {label}: Nhịp planned {len(members):,} members in {seconds:.2f} s; "
                      f"by channel {plan.summary()['by_channel']}", file=sys.stderr)
    table = pd.DataFrame(rows)
    print(f"\n`{shlex.join(['python', *sys.argv])}` — {machine()}; {time.perf_counter() - started:.0f} s in all")
    print(f"{len(members):,} customers in the audience; window {START} – {END}\n")
    shown = table.assign(row=table["budget"] + " · " + table["plan"]).set_index("row")
    shown.index.name = "budget · plan"
    print(markdown(shown[["sends", "cost_vnd", "true_responses", "planned_responses", "true_per_1000_vnd"]]
                   .astype({"sends": int}), fmt="{:,.3f}"))


if __name__ == "__main__":
    main()
