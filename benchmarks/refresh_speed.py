"""What a scheduled refresh costs on a 10M-event store: `nhip refresh` as shipped, three ways.

    .venv/bin/python benchmarks/refresh_speed.py --store /tmp/nhip-prof/store [--new-events 20000]

The store (a segment store, e.g. the one `benchmarks/profiles_speed.py` builds) is copied into a fresh
temporary workspace, so the benchmark never changes it. Then, each in a fresh process running
`features.refresh.refresh` with the shipped settings (vectors into the build's snapshot; no Qdrant server):

1. `first`: no build yet, a full build as of the latest event;
2. `unchanged`: nothing arrived since, so the refresh skips;
3. `after new events`: `--new-events` events for existing customers, five minutes after the latest one,
   are imported first (not timed); the refresh then builds again. This is what every refresh costs on a
   live shop: the build is a full one, and its cost does not depend on how few events arrived.

Reported per run: wall time, peak RSS (the process's `VmHWM`), and the build's customers and vectors.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from machine_info import machine  # noqa: E402  (a sibling script module)

CHILD = """
import json, os, sys, time
from pathlib import Path
from benchmarks.shipped import SHIPPED
from features.refresh import refresh
settings = SHIPPED.model_copy(update={"home": Path(sys.argv[1])})
started = time.perf_counter()
result = refresh(settings.build, settings.vectors)
seconds = time.perf_counter() - started
peak = next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
b = result.build
print(json.dumps({"status": result.status, "seconds": seconds, "peak_rss_mib": peak,
                  "customers": b.customers if b else None, "vectors": b.vectors if b else None,
                  "as_of": str(b.as_of) if b else None}))
"""


def run_refresh(home: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(home)], cwd=ROOT, capture_output=True, text=True,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def add_events(store: Path, n: int) -> None:
    """`n` page views and purchases by existing customers' phones, five minutes after the latest event."""
    from datetime import timedelta

    from features.ingest.importer import import_rows
    from features.ingest.spool import batch_rows
    from features.store import open_store

    with open_store(store) as con:
        latest = con.execute("SELECT max(ts) FROM events").fetchall()[0][0]
        phones = [p for (p,) in con.execute(
            "SELECT DISTINCT phone FROM events WHERE phone IS NOT NULL LIMIT $n", {"n": n}).fetchall()]
    at = latest + timedelta(minutes=5)
    rows = [{"event_id": f"refresh-bench-{i}", "ts": (at + timedelta(seconds=i % 300)).isoformat() + "Z",
             "channel": "web" if i % 4 else "pos", "type": "page_view" if i % 4 else "purchase",
             "phone": phones[i % len(phones)], **({"amount": 250000} if i % 4 == 0 else {})} for i in range(n)]
    report, _ = import_rows(store, batch_rows(rows), "refresh-bench")
    assert report.accepted == n, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True, help="a segment store (not changed)")
    parser.add_argument("--new-events", type=int, default=20_000)
    args = parser.parse_args()

    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="nhip-refresh-bench-") as tmp:
        home = Path(tmp) / "home"
        started = time.perf_counter()
        shutil.copytree(args.store, home / "store", ignore=shutil.ignore_patterns("pins", "reader-*", "writer.*"))
        print(f"copied {args.store} in {time.perf_counter() - started:.1f} s")
        rows = [("first", run_refresh(home)), ("unchanged", run_refresh(home))]
        add_events(home / "store", args.new_events)
        rows.append((f"after {args.new_events:,} new events", run_refresh(home)))
    for label, r in rows:
        print(f"  {label:<26} {r['status']:<24} {r['seconds']:7.2f} s  peak RSS {r['peak_rss_mib']:6.0f} MiB"
              + (f"  {r['customers']:,} customers, {r['vectors']:,} vectors, as of {r['as_of']} UTC"
                 if r["customers"] is not None else ""))


if __name__ == "__main__":
    main()
