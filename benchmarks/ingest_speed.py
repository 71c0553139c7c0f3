"""File import speed: `ingest_file` on canonical JSON Lines, end to end, into a fresh event store.

    .venv/bin/python benchmarks/ingest_speed.py [--customers 5000] [--days 240] [--seed 7] [--repeat 3]
    .venv/bin/python benchmarks/ingest_speed.py --path events.jsonl [--repeat 3]

Without `--path`, generates the demo shop (synthetic.demo_shop) of the given size into a temporary folder
first (not timed); 5000 customers × 240 days is about a million events. Each repetition times two
imports into a new store in a temporary folder:

- `fresh`: the file into an empty store (read, parse, normalise, key, dedupe, insert, commit);
- `re-import`: the same file again, every row a duplicate.

The clock covers the whole `ingest_file` call, opening and closing the store included. Reported: the
median and the best of the repetitions, with the machine's cores, memory and load average, because other
work on a shared machine shows up in wall-clock figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from machine_info import machine  # noqa: E402  (a sibling script module)

from features.ingest.importer import ingest_file  # noqa: E402


def demo_file(customers: int, days: int, seed: int, folder: Path) -> Path:
    from synthetic.demo_shop import generate, write

    started = time.perf_counter()
    path = write(generate(customers=customers, days=days, seed=seed), folder)["events"]
    print(f"generated {customers} customers × {days} days in {time.perf_counter() - started:.1f} s")
    return path


def timed(path: Path, store: Path):
    started = time.perf_counter()
    report = ingest_file(path, store)
    return time.perf_counter() - started, report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", type=Path, help="a canonical .jsonl file (default: generate demo data)")
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="imports of each kind; median and best shown")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="nhip-ingest-bench-") as tmp:
        tmp = Path(tmp)
        path = args.path or demo_file(args.customers, args.days, args.seed, tmp / "data")
        print(f"file: {path} ({path.stat().st_size / 2**20:.0f} MiB)")
        print(f"machine: {machine()}")
        results: dict[str, list[float]] = {"fresh": [], "re-import": []}
        for i in range(args.repeat):
            store = tmp / f"store-{i}"
            seconds, fresh = timed(path, store)
            results["fresh"].append(seconds)
            seconds, again = timed(path, store)
            results["re-import"].append(seconds)
            assert again.accepted == 0 and again.duplicates == fresh.accepted + fresh.duplicates
            print(f"  run {i + 1}: fresh {results['fresh'][-1]:.2f} s, re-import {seconds:.2f} s")
            shutil.rmtree(store)
        rows = fresh.rows_read
        print(f"rows read: {rows:,} (accepted {fresh.accepted:,}, duplicates {fresh.duplicates:,}, "
              f"quarantined {fresh.quarantined:,})")
        for kind, seconds in results.items():
            median, best = statistics.median(seconds), min(seconds)
            print(f"{kind:>9}: median {median:.2f} s = {rows / median:,.0f} events/s; "
                  f"best {best:.2f} s = {rows / best:,.0f} events/s")
        print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
