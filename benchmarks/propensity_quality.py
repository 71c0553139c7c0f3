"""Propensity vs BG/NBD vs recency on the synthetic shop, with the oracle from its latent truth.

    python benchmarks/propensity_quality.py --customers 2000 --days 240 --seed 7

Generates the demo data, ingests it into a temporary store and runs `fit_propensity` (what
`nhip train propensity` runs) in two settings:

- full windows: as of 2026-07-30, horizon 30 days (the `make demo` setting; 200+ days of history);
- short history: as of 2026-06-01, horizon 90 days: fewer days of history (about 150) than the
  30 + 2 × 90 that full windows need, so label windows are truncated at the as-of
  (`training.propensity.SnapshotPlan`).

Rows: the model per feature list, BG/NBD's P(any purchase) (`bgnbd`), its expected purchases
(`bgnbd_expected`, ranking only), days since last active (`recency`, ranking only) and the **oracle**:
each person's true probability of buying in the window, 1 − exp(−rate · days alive in it), from
truth.csv (`purchase_rate` per day, `joined_at`, `churn_at`, including churn that happens later: an
upper bound for a *person*). Customers map to persons through identities.csv (a customer's person is
the owner of most of its identifiers). Identity resolution leaves many persons split into several
customer ids (a cookie never linked to a phone, …), and a label belongs to one such fragment, which the
person-level oracle cannot know: so the oracle is shown on every mapped test customer ("all") and on
those who are their person's only customer id ("sole id"), with the model and baselines on the same rows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.identity_quality import customer_persons  # noqa: E402
from benchmarks.shipped import SHIPPED  # noqa: E402
from features.identity.graph import resolve_graph  # noqa: E402
from features.ingest.importer import ingest_file  # noqa: E402
from features.profile.feature_lists import get_feature_list  # noqa: E402
from features.store import open_store  # noqa: E402
from nhip.clock import parse_as_of  # noqa: E402
from synthetic.demo_shop import generate, write  # noqa: E402
from training.cdnow import comparison_table, markdown_table  # noqa: E402
from training.evaluate import (  # noqa: E402
    classification_metrics,
    expected_calibration_error,
    ranking_metrics,
)
from training.propensity import fit_propensity  # noqa: E402

SCENARIOS = {"full windows": ("2026-07-30", 30), "short history": ("2026-06-01", 90)}
# The product as shipped: the default NHIP_MIN_EVENTS_TO_SCORE and NHIP_IDENTITY_MAX_LINKS.
MIN_EVENTS = SHIPPED.min_events_to_score
IDENTITY = SHIPPED.identity


def oracle_probability(truth: pd.DataFrame, as_of, horizon_days: int) -> pd.Series:
    """Per person, P(at least one purchase in (as_of, as_of + horizon]) under the generator's process:
    purchases are Poisson at `purchase_rate` per day between joining and churning."""
    start = pd.Timestamp(as_of).tz_localize("UTC")
    end = start + pd.Timedelta(days=horizon_days)
    joined = pd.to_datetime(truth["joined_at"], utc=True, format="ISO8601")
    churn = pd.to_datetime(truth["churn_at"], utc=True, format="ISO8601").fillna(end)
    alive_from = np.maximum(joined, start)
    alive_to = np.minimum(churn, end)
    days = ((alive_to - alive_from).dt.total_seconds() / 86400).clip(lower=0)
    return pd.Series(1 - np.exp(-truth["purchase_rate"].to_numpy() * days.to_numpy()),
                     index=truth["person_id"].to_numpy())


def _rows(test: pd.DataFrame, oracle: np.ndarray, model_name: str) -> pd.DataFrame:
    """Model, BG/NBD, recency and oracle metrics on the same test rows."""
    y = test["label"].to_numpy()
    rows = {}
    for name, p in ((model_name, test["score"]), ("bgnbd", test["bgnbd_score"]), ("oracle", oracle)):
        rows[name] = classification_metrics(y, np.asarray(p))
        rows[name]["ece"] = expected_calibration_error(y, np.asarray(p))
    days = test["recency_days"]
    rows["recency"] = ranking_metrics(y, -days.fillna(days.max() + 1).to_numpy())
    return pd.DataFrame(rows).T


def scenario(con, data, as_of, horizon_days: int, feature_lists: list[str]) -> tuple[str, str]:
    """The comparison table on every test customer, and the oracle's table; plus notes for stderr."""
    rows, first, notes = {}, None, []
    for name in feature_lists:
        started = time.perf_counter()
        result = fit_propensity(con, as_of, horizon_days, MIN_EVENTS, IDENTITY, feature_list=get_feature_list(name))
        rows[f"model ({name})"] = comparison_table(result).loc["model"]
        notes.append(f"{name}: {time.perf_counter() - started:.0f} s, {result.row_counts}")
        first = first or result
    test = first.test.reset_index(drop=True)
    identity = resolve_graph(con, first.plan.test, IDENTITY).identity
    person = customer_persons(identity, data.identities).reindex(test["customer_id"]).to_numpy()
    oracle = oracle_probability(data.truth, first.plan.test, horizon_days).reindex(person).to_numpy()
    known = ~pd.isna(person) & ~np.isnan(oracle.astype(float))  # a customer the truth file describes
    fragments = pd.Series(person[known]).map(pd.Series(person[known]).value_counts()).to_numpy()
    alone = np.zeros(len(test), dtype=bool)
    alone[np.flatnonzero(known)[fragments == 1]] = True
    model_name = f"model ({feature_lists[0]})"
    oracle_table = pd.concat({
        "all": _rows(test[known], oracle[known], model_name),
        "sole id": _rows(test[alone], oracle[alone], model_name),
    })
    oracle_table.index = [f"{subset}: {row}" for subset, row in oracle_table.index]
    table = pd.concat([pd.DataFrame(rows).T, comparison_table(first).drop(index="model")])
    plan = first.plan
    notes.append(f"{plan.scheme}; {len(plan.train)} training + {len(plan.calibration)} calibration "
                 "snapshots; "
                 f"{known.sum():,} of {len(test):,} test customers map to a person, {alone.sum():,} are "
                 "their person's only customer id")
    return markdown_table(table) + "\n\nOracle (the generator's own probability per person):\n\n" + \
        markdown_table(oracle_table), "\n".join(notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--feature-lists", default="propensity_v1,propensity_v3")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated names")
    args = parser.parse_args()
    lists = [n.strip() for n in args.feature_lists.split(",") if n.strip()]

    with tempfile.TemporaryDirectory() as tmp:
        data = generate(args.customers, args.days, args.seed)
        paths = write(data, Path(tmp) / "demo")
        store = Path(tmp) / "store"
        report = ingest_file(paths["events"], store)
        print(f"{args.customers} customers, {args.days} days, seed {args.seed}: {report.accepted:,} events")
        with open_store(store) as con:
            for name in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
                day, horizon = SCENARIOS[name]
                tables, notes = scenario(con, data, parse_as_of(day), horizon, lists)
                print(f"\n### {name}: as of {day}, horizon {horizon} days\n")
                print(notes, file=sys.stderr)
                print(tables)


if __name__ == "__main__":
    main()
