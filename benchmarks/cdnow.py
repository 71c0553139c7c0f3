"""The product as shipped vs BG/NBD, an RFM logistic regression and recency on CDNOW, as a markdown table.

    python benchmarks/cdnow.py [--split fhl|later] [--work DIR] [--sample N] [--feature-lists LIST,LIST]

The same code as `nhip evaluate cdnow` (training/cdnow.py): CDNOW_master.txt from the installed lifetimes
wheel → canonical events → ingest → `fit_propensity` with the shipped settings. Splits
(`training.cdnow.SPLITS`): `fhl`, Fader, Hardie & Lee's, as of the end of 1997-09-30, label "any purchase
in the next 273 days"; `later`, as of the end of 1998-03-31, 91 days. One model row per feature list
(every customer answered; the `by source` rows split them); the baselines do not depend on it and are
shown once. `bgnbd` is BG/NBD's P(any purchase), `bgnbd_expected` ranks by its expected purchases,
`rfm_logit` is a logistic regression on RFM and tenure fitted on the earlier calibration snapshot,
`recency` ranks by days since the last purchase; `bgnbd_expected` and `recency` only rank.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.shipped import SHIPPED  # noqa: E402
from features.profile.feature_lists import get_feature_list  # noqa: E402
from training.cdnow import SPLITS, evaluate_cdnow, markdown_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--sample", type=int, help="only N customers, drawn at random (seeded)")
    parser.add_argument("--feature-lists", default="propensity_v1,propensity_v3")
    parser.add_argument("--split", default="fhl", choices=sorted(SPLITS))
    args = parser.parse_args()

    names = [n.strip() for n in args.feature_lists.split(",") if n.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        rows, first = {}, None
        for name in names:
            started = time.perf_counter()
            result = evaluate_cdnow(work, SHIPPED.identity, sample=args.sample, feature_list=get_feature_list(name),
                                    min_events=SHIPPED.min_events_to_score, split=args.split)
            seconds = time.perf_counter() - started
            rows[f"model ({name})"] = result.table.loc["model"]
            print(f"{name}: {seconds:.0f} s, rows {result.row_counts}", file=sys.stderr)
            first = first or result
    baselines = first.table.drop(index="model")
    table = pd.concat([pd.DataFrame(rows).T, baselines])
    report = first.imported.report
    plan = first.details["plan"]
    print(f"CDNOW: {report.rows_read:,} lines read, {report.accepted:,} accepted, {report.duplicates:,} "
          f"duplicates, {report.quarantined:,} quarantined; "
          f"{first.imported.conversion.customers:,} customers")
    _, horizon_days, last_day = SPLITS[args.split]
    print(f"as of the end of {last_day}, horizon {horizon_days} days; {plan.scheme}; {len(plan.train)} training + "
          f"{len(plan.calibration)} calibration snapshots")
    print("BG/NBD (days): " + ", ".join(f"{k}={v:.4g}" for k, v in first.bgnbd_params.items()))
    print("Pareto/NBD (days): " + ", ".join(f"{k}={v:.4g}" for k, v in first.pareto_nbd_params.items()))
    print()
    print(markdown_table(table))


if __name__ == "__main__":
    main()
