"""Send-time quality against the synthetic shop's ground truth: expected open rate of the chosen hours.

    python benchmarks/send_time_quality.py --customers 2000 --days 240 --seed 7

Generates the demo data, ingests it into a temporary workspace and fits the send-time model on everything
up to the last event (`training.send_time.fit_send_time`, which also reports the holdout AUC and log-loss
of the last 30 days against version 1 and the shop curve). Then, for every customer × channel that was sent
to, each policy picks one send hour on the next day, outside quiet hours, and the generator's own formula
(`synthetic.demo_shop._campaigns`) gives the true probability that a message sent then is opened:

    P(open | sent at h) = open_base × channel_factor × exp(−d² / 8) + 0.03,

d the circular distance in hours between h and the person's reading hour + 0.5 on that channel
(truth.csv). The oracle picks the allowed hour with the highest true probability. Each policy's score is
its summed expected opens ÷ the oracle's, overall and for customers with fewer than 5 and at least 5 past
opens (by a person: machine opens do not count) on that channel. Policies:

- model v2 (greedy) and model v2 exploring (Thompson sampling: the price of exploration);
- model v1 (opens attributed to the send hour);
- population-best fixed hour: per channel, the single allowed hour with the most true expected opens over
  all evaluated customers (chosen in hindsight, so the strongest fixed hour there is);
- most frequent past open hour of the customer on the channel (the nearest allowed hour when it is
  quiet; the population-best hour without past opens).

Customers map to persons through identities.csv (a customer's person is the owner of most of its
identifiers), as in benchmarks/identity_quality.py and recommend_quality.py.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.identity_quality import customer_persons
from benchmarks.shipped import SHIPPED
from features.identity.graph import resolve_graph
from features.ingest.importer import ingest_file
from features.store import open_store
from models.send_time import QuietHours, SendHourModel, allowed_slots
from nhip.clock import to_local
from synthetic.channels import CHANNEL_FACTOR, OPEN_FLOOR, RESPONSE_WIDTH
from synthetic.demo_shop import DemoData, generate, write
from training.send_time import SendTimeResult, fit_send_time


def true_open_rate(hour: np.ndarray, reading_hour: np.ndarray, open_base: np.ndarray,
                   factor: np.ndarray) -> np.ndarray:
    d = np.abs(hour - (reading_hour + 0.5)) % 24
    d = np.minimum(d, 24 - d)
    return open_base * factor * np.exp(-(d**2) / (2 * RESPONSE_WIDTH**2)) + OPEN_FLOOR


def markdown(table: pd.DataFrame, fmt: str = "{:.3f}") -> str:
    """A pipe table (pandas' to_markdown needs the optional `tabulate`)."""
    head = [table.index.name or ""] + [str(c) for c in table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(table.columns)) + "|"]
    for key, row in table.iterrows():
        cells = [fmt.format(v) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join([str(key)] + cells) + " |")
    return "\n".join(lines)


def nearest_allowed(hour: int, allowed: np.ndarray) -> int:
    d = np.abs(allowed - hour) % 24
    return int(allowed[np.argmin(np.minimum(d, 24 - d))])


@dataclass
class DemoFit:
    data: DemoData
    result: SendTimeResult
    person: pd.Series  # customer_id → person_id
    as_of: datetime
    fit_seconds: float


def fit_on_demo(customers: int, days: int, seed: int, holdout_days: int = 30) -> DemoFit:
    """Generate the demo shop, ingest it into a throw-away store and fit on everything up to its end."""
    with tempfile.TemporaryDirectory() as tmp:
        data = generate(customers, days, seed)
        paths = write(data, Path(tmp) / "demo")
        store = Path(tmp) / "store"
        ingest_file(paths["events"], store)
        with open_store(store) as con:
            as_of = con.execute("SELECT max(ts) FROM events").fetchall()[0][0]
            started = time.perf_counter()
            result = fit_send_time(con, as_of, SHIPPED.identity, SHIPPED.send_time_prior_strength,
                                   holdout_days=holdout_days)
            fit_seconds = time.perf_counter() - started
            # The identity map as of the final fit, not the holdout's.
            person = customer_persons(resolve_graph(con, as_of, SHIPPED.identity).identity, data.identities)
    return DemoFit(data, result, person, as_of, fit_seconds)


def policy_table(fit: DemoFit, quiet: QuietHours, seed: int = 0,
                 explore: bool = True) -> tuple[pd.DataFrame, dict]:
    """Expected opens of each policy's hours ÷ the oracle's, overall and by past opens; and the facts
    behind it (pairs, allowed hours, population-best hours)."""
    v2, sends = fit.result.model, fit.result.sends
    v1 = SendHourModel().fit(sends)
    day = to_local(fit.as_of).normalize() + pd.Timedelta(days=1)
    slots = allowed_slots(day, day + pd.Timedelta(hours=23, minutes=59), quiet)
    allowed = np.array([s.hour for s in slots])

    pairs = sends.groupby(["customer_id", "channel"])["opened"].sum().rename("past_opens").reset_index()
    pairs["person_id"] = pairs["customer_id"].map(fit.person)
    pairs = pairs.dropna(subset=["person_id"]).reset_index(drop=True)
    truth = fit.data.truth.set_index("person_id")
    reading = np.array([truth.at[p, f"preferred_hour_{c}"] for p, c in zip(pairs["person_id"], pairs["channel"])])
    base = truth.loc[pairs["person_id"], "open_base"].to_numpy()
    factor = pairs["channel"].map(CHANNEL_FACTOR).to_numpy()
    by_hour = np.stack([true_open_rate(np.full(len(pairs), h), reading, base, factor) for h in allowed], axis=1)
    oracle = by_hour.max(axis=1)
    column = {h: i for i, h in enumerate(allowed)}

    population_best = {c: int(allowed[by_hour[(pairs["channel"] == c).to_numpy()].sum(axis=0).argmax()])
                       for c in pairs["channel"].unique()}
    opens = sends[sends["opened"] == 1]
    open_hour = (np.floor(opens["open_hour_of_week"].to_numpy()) % 24).astype(int)
    frequent = pd.Series(open_hour, index=pd.MultiIndex.from_frame(opens[["customer_id", "channel"]])).groupby(
        level=[0, 1]).agg(lambda s: s.value_counts().index[0])

    def model_hours(model, explore: bool = False) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.array([model.best_time(c, ch, slots[0], slots[-1], quiet, explore=explore, rng=rng)[0].hour
                         for c, ch in zip(pairs["customer_id"], pairs["channel"])])

    policies = {"model v2": model_hours(v2)}
    if explore:
        policies["model v2, exploring (Thompson)"] = model_hours(v2, explore=True)
    policies |= {
        "model v1 (send-hour attribution)": model_hours(v1),
        "population-best fixed hour": pairs["channel"].map(population_best).to_numpy(),
        "most frequent past open hour": np.array([
            nearest_allowed(frequent[(c, ch)], allowed) if (c, ch) in frequent.index else population_best[ch]
            for c, ch in zip(pairs["customer_id"], pairs["channel"])]),
    }
    few = (pairs["past_opens"] < 5).to_numpy()
    groups = {"all": np.ones(len(pairs), bool), "< 5 past opens": few, "≥ 5 past opens": ~few}
    rows = []
    for name, hours in policies.items():
        got = by_hour[np.arange(len(pairs)), [column[h] for h in hours]]
        rows.append({"policy": name, **{g: got[m].sum() / oracle[m].sum() for g, m in groups.items()}})
    facts = {"pairs": len(pairs), "few": int(few.sum()), "none": int((pairs["past_opens"] == 0).sum()),
             "allowed": allowed, "day": day, "population_best": population_best}
    return pd.DataFrame(rows).set_index("policy"), facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--holdout-days", type=int, default=30)
    parser.add_argument("--quiet-start", default=SHIPPED.quiet_start)
    parser.add_argument("--quiet-end", default=SHIPPED.quiet_end)
    args = parser.parse_args()
    quiet = QuietHours.parse(args.quiet_start, args.quiet_end)
    started = time.perf_counter()
    fit = fit_on_demo(args.customers, args.days, args.seed, args.holdout_days)
    table, facts = policy_table(fit, quiet, seed=args.seed)
    allowed, result = facts["allowed"], fit.result

    print(f"command: python benchmarks/send_time_quality.py {shlex.join(sys.argv[1:])}".rstrip())
    print(f"data: {args.customers} customers × {args.days} days, seed {args.seed}; fitted as of "
          f"{to_local(fit.as_of):%Y-%m-%d %H:%M} (fit incl. holdout refit {fit.fit_seconds:.1f} s); choosing "
          f"among {allowed.min()}:00–{allowed.max()}:00 on {facts['day']:%Y-%m-%d} "
          f"(quiet {args.quiet_start}–{args.quiet_end})")
    print(f"customer × channel pairs: {facts['pairs']} ({facts['few']} with < 5 past opens, {facts['none']} "
          f"with none); population-best hours {facts['population_best']}\n")
    print("Expected open rate of the chosen hours ÷ the oracle's:\n")
    print(markdown(table))
    m = result.metrics
    holdout = pd.DataFrame({
        "AUC": [m["holdout_auc"], m["holdout_auc_v1"], m["holdout_auc_shop_curve"]],
        "log-loss": [m["holdout_log_loss"], m["holdout_log_loss_v1"], m["holdout_log_loss_shop_curve"]],
    }, index=pd.Index(["model v2", "model v1", "shop curve (v2)"], name="model"))
    print(f"\nHoldout: {int(m['holdout_sends'])} sends in the last {args.holdout_days} days, open rate "
          f"{result.holdout['opened'].mean():.3f}, models fitted on events before them:\n")
    print(markdown(holdout, "{:.4f}"))
    print("\nSources (customers per fallback level):\n")
    print(markdown(pd.DataFrame(result.model.sources_summary()).T.rename_axis("channel")))
    print(f"\nkernel width {result.model.kernel_width_} h; total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
