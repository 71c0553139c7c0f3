"""Batch propensity scoring at 1M customers, and the service's start-up with them in the build.

    .venv/bin/python benchmarks/batch_scoring.py [--customers 1000000]

Set-up (not timed): the demo shop (2,000 customers × 240 days, seed 7) is imported and a propensity
champion trained the way `nhip train propensity --as-of 2026-08-29 --horizon-days 30` trains it, with
the shipped settings. Its 2026-08-29 profiles and purchase summaries are then resampled (with
replacement, new customer ids) to `--customers` rows: the feature distribution of a real build at a
million customers.

Timed, each a median of three:

- **scoring**: `models.answers.answer_propensity` as `nhip score` and the service run it: the model's
  probabilities for everyone passing the gate (with its Pareto/NBD blend input), the fallbacks for the
  rest, percentile and bucket over all. Shipped: compiled trees (lleaves). Variant, labelled: the
  LightGBM booster.
- **the lifetime models' fit** (Pareto/NBD and Gamma-Gamma on the buyers; once per feature build), and
  **the CLV answers** (`models.clv.answer_clv`) for everyone, apart.
- **reading** the profiles from the build's Parquet file and **writing** the answers as CSV, separately.
- **service start-up**: a build holding the resampled customers is published, and `serving.state.
  load_state` (what the service does before it answers: open the build, load the champions from MLflow,
  compile or load the compiled trees, score everyone) runs in a fresh process, cold (no compiled cache)
  and warm (cache present).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from machine_info import machine  # noqa: E402  (a sibling script module)

NHIP = [sys.executable, "-m", "nhip.cli"]

START_UP = """
import json, sys, time
started = time.perf_counter()
from benchmarks.shipped import SHIPPED
from pathlib import Path
from serving.state import load_state
state = load_state(SHIPPED.model_copy(update={"home": Path(sys.argv[1])}).serving)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "customers": len(state.scorer.profiles),
                  "scorer": state.scorer.propensity_champion.model.scorer,
                  "sources": state.scorer.scores["source"].value_counts().to_dict()}))
"""


def median_seconds(run, repeat: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - started)
    return float(np.median(times)), out


def set_up(home: Path, env: dict) -> None:
    data = home.parent / "data"
    for args in (["demo-data", "--out", str(data), "--customers", "2000", "--days", "240", "--seed", "7"],
                 ["ingest", str(data / "events.jsonl")],
                 ["features", "build", "--as-of", "2026-08-29", "--no-vectors"],
                 ["train", "propensity", "--as-of", "2026-08-29", "--horizon-days", "30"]):
        done = subprocess.run([*NHIP, *args], env=env, cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"nhip {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def resampled_build(settings, n: int) -> None:
    """Publish a build whose customers are `n` draws from the current build's (new ids)."""
    from features.builds import Builds

    builds = Builds(settings.builds)
    source = builds.open()
    profiles, repeat = source.table("profiles"), source.table("repeat")
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(profiles), n)
    ids = pd.Index([f"c_{i:012x}" for i in range(n)], name="customer_id")
    big = profiles.iloc[picks].set_axis(ids)
    bought = profiles.index[picks].isin(repeat.index)
    big_repeat = repeat.loc[profiles.index[picks][bought]].set_axis(ids[bought])
    with builds.lock(60):
        draft = builds.draft()
        big.reset_index().to_parquet(draft / "profiles.parquet", index=False)
        big_repeat.reset_index().to_parquet(draft / "repeat.parquet", index=False)
        pd.DataFrame({"customer_id": ids, "id_type": "external_id", "id_value": ids}).to_parquet(
            draft / "identity.parquet", index=False)
        for name in ("set_aside", "attributes", "purchases", "categories"):
            source.table(name).iloc[:0].to_parquet(draft / f"{name}.parquet", index=False)
        meta = json.loads((source.folder / "meta.json").read_text())
        meta.pop("build_id", None)
        builds.publish(draft, {**meta, "customers": n, "resampled_from": source.build_id})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()

    from benchmarks.shipped import SHIPPED
    from features.builds import Builds
    from models.answers import answer_propensity
    from models.clv import answer_clv, fit_lifetime
    from models.names import PROPENSITY_MODEL
    from serving.champions import load_champion

    tmp = Path(tempfile.mkdtemp(prefix="nhip-batch-"))
    home = tmp / "home"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NHIP_")}, "NHIP_HOME": str(home),
           "HF_HUB_OFFLINE": "1", "BENTOML_DO_NOT_TRACK": "true"}
    started = time.perf_counter()
    set_up(home, env)
    settings = SHIPPED.model_copy(update={"home": home})
    resampled_build(settings, args.customers)
    print(f"set-up: {time.perf_counter() - started:.0f} s", file=sys.stderr)

    build = Builds(settings.builds).open()
    read_s, profiles = median_seconds(lambda: pd.read_parquet(build.folder / "profiles.parquet"))
    profiles = profiles.set_index("customer_id")
    summary = build.table("repeat")
    config = settings.serving
    champion = load_champion(settings.tracking, PROPENSITY_MODEL)
    model = champion.model
    # Pareto/NBD and Gamma-Gamma on the build's buyers: done once per feature build (its meta keeps the
    # parameters; `nhip score` at another as-of fits them like it computes the profiles). Timed apart.
    fit_s, lifetime = median_seconds(lambda: fit_lifetime(summary, model.horizon_days), repeat=1)
    rows = {}
    for label, compiled in (("compiled trees (lleaves, shipped)", True), ("LightGBM booster (variant)", False)):
        if compiled:
            model.compile_trees(config.compiled_dir)
        else:
            model.trees_ = None
        seconds, answers = median_seconds(
            lambda: answer_propensity(model, profiles, summary, model.horizon_days, config.gate, lifetime.pareto))
        rows[label] = {"seconds": seconds, "rows_per_second": len(profiles) / seconds, "scorer": model.scorer}
    model.compile_trees(config.compiled_dir)
    answers = answer_propensity(model, profiles, summary, model.horizon_days, config.gate, lifetime.pareto)
    clv_s, clv = median_seconds(lambda: answer_clv(answers, summary, lifetime))
    out = tmp / "scores.csv"
    write_s, _ = median_seconds(lambda: answers.to_csv(out))

    import shutil

    shutil.rmtree(config.compiled_dir, ignore_errors=True)
    start_up = {}
    for label in ("cold (no compiled cache)", "warm (compiled cache present)"):
        done = subprocess.run([sys.executable, "-c", START_UP, str(home)], env=env, cwd=ROOT,
                              capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(done.stderr)
        start_up[label] = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({
        "machine": machine(), "customers": len(profiles), "champion": champion.label,
        "sources": answers["source"].value_counts().to_dict(),
        "scoring": rows, "lifetime_fit_s": fit_s, "clv_answers_s": clv_s,
        "clv_sources": clv["source"].value_counts().to_dict(),
        "read_profiles_s": read_s, "write_csv_s": write_s, "start_up": start_up,
    }, indent=1, default=str))


if __name__ == "__main__":
    main()
