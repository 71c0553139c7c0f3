"""Churn and lifetime value on CDNOW, as shipped, against BG/NBD × Gamma-Gamma fitted by PyMC-Marketing.

For each split (`training.cdnow.SPLITS`), the product's answers over the horizon (`models.clv`, from the
same run as `benchmarks/cdnow.py`: default settings, every customer) are compared with what each
customer then bought, purchase days and dollars:

- Spearman correlation and MAE of expected against actual spend; predicted against actual total;
  MAE of expected purchase days;
- calibration of expected purchase days by decile.

Rows: `nhip` is the product as shipped; `nhip btyd` (Pareto/NBD × Gamma-Gamma for everyone, what answers
without a propensity champion) and `BG/NBD × GG (Nhịp's code)` are labelled variants; `anchor` is
PyMC-Marketing 0.19.2's BetaGeoModel × GammaGammaModel fitted by MAP on the same purchase summary, run in
its own environment (`make anchor-venv`) by `benchmarks/anchor_pymc.py`.

    .venv/bin/python benchmarks/cdnow_clv.py [--split fhl|later|both] [--anchor-python PATH]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd

from benchmarks.shipped import SHIPPED
from models import bgnbd, paretonbd
from nhip.clock import parse_as_of
from training.cdnow import (
    SPLITS,
    btyd_clv,
    clv_metrics,
    decile_calibration,
    evaluate_cdnow,
    holdout_purchases,
)


def anchor(python: Path, summary: pd.DataFrame, horizon_days: int, folder: Path) -> tuple[pd.DataFrame, str]:
    """PyMC-Marketing's expected purchases and spend per purchase day, and its parameters' line."""
    summary_csv, out_csv = folder / "summary.csv", folder / "anchor.csv"
    summary.rename_axis("customer_id").reset_index().to_csv(summary_csv, index=False)
    done = subprocess.run([str(python), str(REPO / "benchmarks" / "anchor_pymc.py"), str(summary_csv),
                           str(horizon_days), str(out_csv)], capture_output=True, text=True, check=True)
    return pd.read_csv(out_csv).set_index("customer_id"), done.stdout.strip().splitlines()[-1]


def table(rows: dict[str, dict]) -> str:
    lines = ["| | Spearman | MAE ($) | predicted total ($) | actual total ($) | MAE purchase days |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, m in rows.items():
        lines.append(f"| {name} | {m['spearman']:.4f} | {m['mae']:.3f} | {m['predicted_total']:,.0f} | "
                     f"{m['actual_total']:,.0f} | {m['purchases_mae']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=[*SPLITS, "both"], default="both")
    parser.add_argument("--anchor-python", type=Path, default=REPO / ".venv-anchor" / "bin" / "python")
    args = parser.parse_args()
    if not args.anchor_python.exists():
        sys.exit(f"{args.anchor_python} not found: `make anchor-venv` installs PyMC-Marketing for the anchor")
    for split in (list(SPLITS) if args.split == "both" else [args.split]):
        as_of_text, horizon_days, last_day = SPLITS[split]
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            started = time.perf_counter()
            evaluation = evaluate_cdnow(work, SHIPPED.identity, min_events=SHIPPED.min_events_to_score,
                                        split=split)
            result = evaluation.details["result"]
            actual = holdout_purchases(evaluation.imported.store_path, SHIPPED.identity, parse_as_of(as_of_text),
                                       horizon_days)
            seconds = time.perf_counter() - started
            clv, summary = result.clv, result.summary
            rows = {"nhip (as shipped)": clv_metrics(clv["expected_purchases"], clv["expected_spend"], actual)}
            for name, counting in (("nhip btyd: Pareto/NBD × GG (variant)", paretonbd),
                                   ("BG/NBD × GG, Nhịp's code (variant)", bgnbd)):
                purchases, spend = btyd_clv(summary, horizon_days, counting)
                rows[name] = clv_metrics(purchases, spend, actual)
            started_anchor = time.perf_counter()
            answers, params = anchor(args.anchor_python, summary, horizon_days, work)
            anchor_seconds = time.perf_counter() - started_anchor
            answers = answers.reindex(summary.index)
            rows["anchor: PyMC-Marketing BG/NBD × GG"] = clv_metrics(
                answers["expected_purchases"], answers["expected_purchases"] * answers["spend_per_purchase"], actual)
        print(f"## CDNOW {split}: as of the end of {last_day}, next {horizon_days} days; "
              f"{len(clv):,} customers, sources {clv['source'].value_counts().to_dict()}")
        print(f"nhip run {seconds:.0f} s; anchor {anchor_seconds:.0f} s ({params})")
        print(f"lifetime models: {result.lifetime.params()}")
        print()
        print(table(rows))
        print()
        calibration = decile_calibration(clv["expected_purchases"], actual).join(
            decile_calibration(answers["expected_purchases"], actual)[["expected", "actual"]],
            rsuffix=" (anchor)")
        print("Expected against actual purchase days by decile of expected purchases (nhip; anchor):")
        print()
        print(calibration.to_string(float_format=lambda v: f"{v:.3f}"))
        print()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
