"""Collector throughput end to end: HTTP `POST /events` in batches, into a fresh event store.

Starts the collector (`features.ingest.collector`) with uvicorn in a subprocess on a free loopback port, with a
temporary NHIP_HOME, and posts canonical events in batches from this process: synthetic webhook-like events
(phones, VND amounts and local times written the ways sources write them), or `--events demo` for
synthetic.demo_shop's. Request bodies
are encoded before the clock starts, so the figure is the collector's: HTTP, JSON parsing, normalisation,
the fsynced spool file, and the drain's commit (several batches per commit when they queue up), up to
the client having every answer (`"stored": true`: the events are in the store).

Two passes over the same batches: `fresh` (events new to the store) and `replay` (every event sent again,
as retried webhooks are: all duplicates).

    .venv/bin/python benchmarks/collector_speed.py [--batches 100] [--batch-size 500] [--concurrency 2]
                                                   [--events synthetic|demo]
    .venv/bin/python benchmarks/collector_speed.py --scaling     # prepare + commit alone, by batch size
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def demo_events(n: int, seed: int) -> list[dict]:
    """At least n canonical events from the demo generator, as the JSON objects a client would send."""
    from synthetic.demo_shop import generate

    customers = 500
    while True:
        events = generate(customers=customers, days=240, seed=seed).events
        if len(events) >= n:
            break
        customers *= 2
    events = events.iloc[:n]
    fields = list(events.columns)
    columns = [events[f].to_numpy(dtype=object, na_value=None) for f in fields]
    return [{k: v for k, v in zip(fields, row) if v is not None} for row in zip(*columns)]


def synthetic_events(n: int, seed: int) -> list[dict]:
    """n webhook-like events written the ways sources write them (phones, VND amounts, local times)."""
    rng = random.Random(seed)
    kinds = [("web", "page_view"), ("app", "product_view"), ("web", "add_to_cart"), ("pos", "purchase"),
             ("zalo_oa", "message_opened"), ("zalo_oa", "follow"), ("email", "message_clicked"),
             ("sms", "message_delivered"), ("zalo_mini_app", "purchase"), ("facebook", "message_replied")]
    out = []
    for i in range(n):
        channel, kind = kinds[rng.randrange(len(kinds))]
        person = rng.randrange(20_000)
        local = 1_767_225_600 + rng.randrange(240 * 86_400)  # 2026-01-01 onwards
        when = time.strftime("%Y-%m-%dT%H:%M:%S+07:00", time.gmtime(local + 7 * 3600))
        event = {"ts": when if i % 5 else time.strftime("%d/%m/%Y %H:%M", time.gmtime(local + 7 * 3600)),
                 "channel": channel, "type": kind}
        if i % 10:
            event["event_id"] = f"{channel}-{seed}-{i}"
        digits = f"9{person:08d}"
        if channel in ("zalo_oa", "zalo_mini_app"):
            event["zalo_user_id"] = f"z{person}"
            if i % 3 == 0:
                event["phone"] = f"+84 {digits[:3]} {digits[3:6]} {digits[6:]}"
        elif channel in ("web", "app"):
            event["anonymous_id"] = f"anon-{person}"
        elif channel == "email":
            event["email"] = f"khach{person}@example.vn"
        elif channel == "facebook":
            event["fb_psid"] = f"{person:016d}"
        else:
            event["phone"] = f"0{digits[:3]} {digits[3:6]} {digits[6:]}" if i % 2 else f"84{digits}"
        if kind in ("purchase", "add_to_cart", "product_view"):
            price = rng.choice([45, 150, 320, 1200]) * 1000
            event.update(product_id=f"sp{rng.randrange(400)}", product_name="Sữa rửa mặt trà xanh",
                         category="Mỹ phẩm", quantity=rng.choice([1, 1, 2]))
            if kind == "purchase":
                event["amount"] = f"{price:,}đ".replace(",", ".") if i % 2 else price
        if kind.startswith("message_"):
            event.update(campaign_id=f"c{i % 30}", message_id=f"m{i // 3}")
        if i % 4 == 0:
            event["properties"] = {"utm_source": "zalo", "device": "android"}
        out.append(event)
    return out


def wait_until_up(base: str, server: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the collector exited with code {server.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("the collector did not come up")


def post_all(base: str, key: str, bodies: list[bytes], concurrency: int) -> tuple[float, dict[str, int]]:
    """Seconds to post every body (each answered) and the summed per-event counts."""
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    clients = [httpx.Client(base_url=base, headers=headers, timeout=120.0) for _ in range(concurrency)]

    def send(i: int) -> dict:
        response = clients[i % concurrency].post("/events", content=bodies[i])
        response.raise_for_status()
        return response.json()

    for client in clients:  # open the keep-alive connections before timing
        client.get("/healthz")
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        answers = list(pool.map(send, range(len(bodies))))
    elapsed = time.perf_counter() - start
    for client in clients:
        client.close()
    for answer in answers:
        for k in totals:
            totals[k] += answer[k]
    return elapsed, totals


def scaling(events: list[dict], sizes: list[int]) -> None:
    """In-process cost of one collector batch by batch size, no HTTP and no spool: normalising and keying
    (`prepare_rows`), then one commit of it alone (`store_prepared` under the writer lock, on a kept
    DuckDB connection as the collector's drain does). Separates the per-commit overhead of the store from
    the per-event cost."""
    import duckdb

    from features.ingest.importer import prepare_rows, store_prepared
    from features.ingest.spool import batch_rows
    from features.store import store_writer

    scratch = duckdb.connect()
    with tempfile.TemporaryDirectory(prefix="nhip-collector-scaling-") as home:
        for size in sizes:
            store = Path(home) / f"store-{size}"
            bodies = [json.dumps(events[i:i + size]).encode() for i in range(0, len(events) - size + 1, size)]
            prepare, commit = [], []
            for body in bodies[: max(3, min(len(bodies), 20_000 // size))]:
                start = time.perf_counter()
                prepared = prepare_rows(batch_rows(json.loads(body)), "collector", con=scratch)
                middle = time.perf_counter()
                with store_writer(store, doing="benchmark", con=scratch) as writer:
                    store_prepared(writer, [prepared])
                prepare.append(middle - start)
                commit.append(time.perf_counter() - middle)
            p, c = (sorted(t[1:])[len(t[1:]) // 2] for t in (prepare, commit))  # medians, first excluded
            print(f"  batch of {size:>5,}: prepare {p * 1000:5.0f} ms + commit {c * 1000:5.0f} ms"
                  f"  → {size / (p + c):9,.0f} events/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=2, help="requests in flight")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--events", choices=("synthetic", "demo"), default="synthetic",
                        help="synthetic webhook-like events (default) or synthetic.demo_shop's")
    parser.add_argument("--scaling", action="store_true",
                        help="instead: in-process prepare and commit time per batch for several batch sizes")
    args = parser.parse_args()
    if args.scaling:
        sizes = [100, 500, 1000, 2000, 5000]
        print(f"in-process, median per batch ({os.cpu_count()} cores, Python {platform.python_version()}):")
        scaling((demo_events if args.events == "demo" else synthetic_events)(40_000, args.seed), sizes)
        return

    n = args.batches * args.batch_size
    events = (demo_events if args.events == "demo" else synthetic_events)(n, args.seed)
    bodies = [json.dumps(events[i:i + args.batch_size], ensure_ascii=False).encode("utf-8")
              for i in range(0, n, args.batch_size)]
    key = secrets.token_urlsafe(24)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="nhip-collector-bench-") as home:
        env = {**os.environ, "NHIP_HOME": home, "NHIP_COLLECTOR_API_KEY": key}
        command = [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.collector_speed:collector_app",
                   "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
        server = subprocess.Popen(command, env=env, cwd=ROOT)
        try:
            wait_until_up(base, server)
            print(f"{n:,} {args.events} events in {len(bodies)} batches of {args.batch_size} "
                  f"({sum(map(len, bodies)) / len(bodies) / 1024:.0f} KiB each), "
                  f"{args.concurrency} in flight; {os.cpu_count()} cores, Python {platform.python_version()}")
            for label in ("fresh", "replay"):
                elapsed, totals = post_all(base, key, bodies, args.concurrency)
                answered = sum(totals.values())
                assert answered == n, f"{answered} answers for {n} events"
                print(f"{label:>6}: {n / elapsed:,.0f} events/s ({elapsed:.2f} s; "
                      f"{elapsed / len(bodies) * 1000:.0f} ms per batch)  "
                      + "  ".join(f"{k} {v:,}" for k, v in totals.items()))
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


def collector_app():
    """The collector as `nhip collect` builds it, for uvicorn's --factory (settings from the environment)."""
    from features.ingest.collector import create_app
    from nhip.settings import get_settings

    return create_app(get_settings().collector)


if __name__ == "__main__":
    main()
