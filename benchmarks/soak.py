"""Soak: the whole system under load for ten minutes, as `nhip up` runs it with the shipped settings.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--rate 2500] [--customers 17000]

Set-up (not timed): the demo shop (`synthetic.demo_shop`) over `--days` (330) days is generated and cut in
time: the events before the last `--stream-days` (118) are imported, a propensity champion is trained on
an early snapshot (so that a retrain on more data can beat it) and a send-time champion on the imported
history. Then `nhip up` starts in a temporary workspace with every setting at its default (a refresh
every 5 minutes, the service looking for changes every 10 s) and:

- a client measures the idle service for 30 s: `/propensity` and `/send_time` for 20 known customers in
  turn, 50 ms apart;
- for `--minutes`, the rest of the shop's events are posted to the collector in time order, in batches of
  500 paced to `--rate` events/s (4 connections), while the same client keeps calling the service;
- every 10 s a probe (a purchase by a new phone, at the stream's current time) is posted, and the client
  polls the probe customers until the service knows them: acknowledged-to-served lag;
- one minute in, `nhip retrain` runs (what the nightly schedule runs); a watcher notes the moment the
  champion alias moves, and the client the first answer naming the new version;
- after the stream, polling goes on until every probe is served (at most refresh interval + 2 minutes),
  then `nhip up` gets SIGTERM and the store is checked against the acknowledgements.

Reported: events/s received, collector errors, service 5xx, service p50/p99 idle and under load,
probe lag p50/p99, promotion-to-answer time, and acknowledged = stored (lost, stored twice).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from machine_info import machine  # noqa: E402  (a sibling script module)

KEY = "soak-key"
NHIP = [sys.executable, "-m", "nhip.cli"]
WINDOW = {"window_start": "2026-09-02T08:00:00+07:00", "window_end": "2026-09-03T08:00:00+07:00"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


# -- set-up ----------------------------------------------------------------------------------------------


def set_up(home: Path, customers: int, days: int, stream_days: int, env: dict) -> tuple[list[bytes], str]:
    """Generate, import the early part, train both champions, build; returns the later part's JSON lines
    in time order and the latest imported time (ISO)."""
    import pandas as pd

    from features.ingest.parsers.timestamps import parse_timestamps
    from synthetic.demo_shop import generate, write

    started = time.perf_counter()
    paths = write(generate(customers=customers, days=days, seed=11), home.parent / "data")
    lines = paths["events"].read_bytes().splitlines()
    ts = parse_timestamps(pd.Series([json.loads(line).get("ts") for line in lines], dtype=object))
    cut = ts.max() - pd.Timedelta(days=stream_days)
    late = (ts > cut).fillna(False).to_numpy()
    early = home.parent / "early.jsonl"
    early.write_bytes(b"\n".join(line for line, a in zip(lines, late) if not a) + b"\n")
    order = np.argsort(ts[late].to_numpy(), kind="stable")
    stream = [line for line, a in zip(lines, late) if a]
    stream = [stream[i] for i in order]
    print(f"generated {len(lines):,} events in {time.perf_counter() - started:.0f} s: "
          f"{len(lines) - len(stream):,} imported, {len(stream):,} to stream (after {cut} UTC)", flush=True)

    # Data up to 90 days before the cut: tested on the snapshot 120 days before it.
    early_data = (cut - pd.Timedelta(days=90)).tz_convert("Asia/Ho_Chi_Minh").strftime("%Y-%m-%d")
    last_day = cut.tz_convert("Asia/Ho_Chi_Minh").strftime("%Y-%m-%d")
    for args in (["ingest", str(early)],
                 ["train", "propensity", "--as-of", early_data, "--horizon-days", "30"],
                 ["train", "send-time", "--as-of", last_day],
                 ["refresh"]):
        step = time.perf_counter()
        done = subprocess.run([*NHIP, *args], env=env, cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"nhip {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        print(f"  nhip {' '.join(args)}: {time.perf_counter() - step:.0f} s", flush=True)
    return stream, str(cut)


# -- the run ---------------------------------------------------------------------------------------------


class Caller(threading.Thread):
    """Calls the service without a break, recording (time, route, latency, status, versions)."""

    def __init__(self, base: str, customers: list[str]):
        super().__init__(daemon=True)
        self.base, self.customers = base, customers
        self.records: list[dict] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        rng = np.random.default_rng(3)
        with httpx.Client(base_url=self.base, timeout=30) as http:
            n = 0
            while not self.stopped.is_set():
                ids = [str(c) for c in rng.choice(self.customers, 20, replace=False)]
                route, body = (("/propensity", {"customer_ids": ids}) if n % 2 == 0 else
                               ("/send_time", {"customer_ids": ids, "channel": "zalo_oa", **WINDOW}))
                sent = time.monotonic()
                try:
                    response = http.post(route, json=body)
                    status, payload = response.status_code, response.json()
                except (httpx.HTTPError, ValueError) as exc:
                    status, payload = None, {"error": repr(exc)}
                self.records.append({"at": sent, "route": route, "seconds": time.monotonic() - sent,
                                     "status": status, "model_version": payload.get("model_version"),
                                     "build_id": payload.get("build_id")})
                n += 1
                time.sleep(0.05)


def run(args) -> dict:
    from features.erasure import normalise_identifier
    from features.identity.graph import customer_id_for

    tmp = Path(tempfile.mkdtemp(prefix="nhip-soak-"))
    home = tmp / "home"
    env = {**os.environ, "NHIP_HOME": str(home), "HF_HUB_OFFLINE": "1", "NHIP_COLLECTOR_API_KEY": KEY,
           "BENTOML_DO_NOT_TRACK": "true"}
    for name in list(env):
        if name.startswith("NHIP_") and name not in ("NHIP_HOME", "NHIP_COLLECTOR_API_KEY"):
            env.pop(name)  # the shipped settings
    stream, cut = set_up(home, args.customers, args.days, args.stream_days, env)

    collector_port, service_port = free_port(), free_port()
    log_path = tmp / "up.log"
    log = open(log_path, "w")  # noqa: SIM115 (closed at the end)
    up = subprocess.Popen([*NHIP, "up", "--collector-port", str(collector_port), "--service-port",
                           str(service_port)], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    collector_base, service_base = f"http://127.0.0.1:{collector_port}", f"http://127.0.0.1:{service_port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if (httpx.get(f"{service_base}/readyz", timeout=2).status_code == 200
                    and httpx.get(f"{collector_base}/healthz", timeout=2).status_code == 200):
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or up.poll() is not None:
            raise SystemExit(f"nhip up did not come up; see {log_path}")
        time.sleep(0.5)

    from features.builds import Builds
    from nhip.settings import Settings

    settings = Settings(home=home)
    known = list(Builds(settings.builds).open().table("profiles").index)
    caller = Caller(service_base, known)
    caller.start()
    time.sleep(30)
    idle_until = time.monotonic()
    print(f"idle service measured; streaming {len(stream):,} events for {args.minutes} min at {args.rate:,}/s",
          flush=True)

    # -- the stream, the probes, the retrain, the champion watcher
    batches = [stream[i:i + 500] for i in range(0, len(stream), 500)]
    work: queue.Queue = queue.Queue(maxsize=8)
    posted: list[dict] = []
    lock = threading.Lock()
    stream_started = time.monotonic()
    stream_end = stream_started + args.minutes * 60
    current_ts = {"ts": cut}

    def sender() -> None:
        with httpx.Client(base_url=collector_base, headers={"X-API-Key": KEY,
                                                            "Content-Type": "application/json"}, timeout=60) as http:
            while True:
                item = work.get()
                if item is None:
                    return
                body, n = item
                sent = time.monotonic()
                try:
                    response = http.post("/events", content=body)
                    answer = response.json() if response.status_code == 200 else {}
                    status = response.status_code
                except (httpx.HTTPError, ValueError) as exc:
                    answer, status = {"error": repr(exc)}, None
                with lock:
                    posted.append({"at": sent, "seconds": time.monotonic() - sent, "status": status, "n": n,
                                   "accepted": answer.get("accepted", 0), "duplicates": answer.get("duplicates", 0),
                                   "rejected": answer.get("rejected", 0), "stored": answer.get("stored")})

    senders = [threading.Thread(target=sender, daemon=True) for _ in range(4)]
    for thread in senders:
        thread.start()

    probes: dict[str, dict] = {}

    def probe(n: int) -> None:
        phone = f"0399{n:06d}"
        event = {"event_id": f"soak-probe-{n}", "ts": current_ts["ts"], "channel": "pos", "type": "purchase",
                 "phone": phone, "amount": 120000}
        response = httpx.post(f"{collector_base}/events", json=[event], headers={"X-API-Key": KEY}, timeout=60)
        if response.status_code == 200 and response.json()["accepted"] == 1:
            customer = customer_id_for("phone", normalise_identifier("phone", phone))
            probes[customer] = {"acked": time.monotonic(), "served": None}

    def poll_probes(until: float) -> None:
        with httpx.Client(base_url=service_base, timeout=30) as http:
            while time.monotonic() < until:
                waiting = [c for c, p in list(probes.items()) if p["served"] is None]
                if waiting:
                    try:
                        body = http.post("/propensity", json={"customer_ids": waiting}).json()
                        for row in body.get("results", []):
                            if row["status"] != "unknown":
                                probes[row["customer_id"]]["served"] = time.monotonic()
                    except (httpx.HTTPError, ValueError):
                        pass
                elif time.monotonic() > stream_end:
                    return
                time.sleep(1.0)

    poll_deadline = stream_end + 7 * 60
    poller = threading.Thread(target=poll_probes, args=(poll_deadline,), daemon=True)
    poller.start()

    promotion = {"moved_at": None, "version": None}
    from serving.champions import champion_version

    first_version = champion_version(settings.tracking, "propensity")

    def watch_champion() -> None:
        while time.monotonic() < poll_deadline and promotion["moved_at"] is None:
            version = champion_version(settings.tracking, "propensity")
            if version != first_version:
                promotion.update(moved_at=time.monotonic(), version=version)
            time.sleep(0.5)

    threading.Thread(target=watch_champion, daemon=True).start()
    retrain: dict = {}

    def run_retrain() -> None:
        retrain["started"] = time.monotonic()
        done = subprocess.run([*NHIP, "retrain"], env=env, cwd=ROOT, capture_output=True, text=True)
        retrain.update(ended=time.monotonic(), code=done.returncode,
                       output=(done.stdout + done.stderr).strip().splitlines()[-6:])

    retrain_thread = threading.Thread(target=run_retrain, daemon=True)
    interval = 500 / args.rate
    next_probe, n_probe, retrain_at = stream_started, 0, stream_started + min(60.0, args.minutes * 15)
    for i, batch in enumerate(batches):
        now = time.monotonic()
        if now >= stream_end:
            break
        if now >= next_probe:
            threading.Thread(target=probe, args=(n_probe,), daemon=True).start()
            next_probe, n_probe = next_probe + 10, n_probe + 1
        if now >= retrain_at and not retrain_thread.is_alive() and "started" not in retrain:
            retrain_thread.start()
        current_ts["ts"] = json.loads(batch[-1])["ts"]
        work.put((b"[" + b",".join(batch) + b"]", len(batch)))
        pause = stream_started + (i + 1) * interval - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    for _ in senders:
        work.put(None)
    for thread in senders:
        thread.join(timeout=120)
    stream_seconds = time.monotonic() - stream_started
    print(f"stream done in {stream_seconds:.0f} s; waiting for probes and the retrain", flush=True)
    if "started" in retrain:
        retrain_thread.join(timeout=max(0, poll_deadline - time.monotonic()))
    poller.join(timeout=max(0, poll_deadline - time.monotonic()) + 5)
    caller.stopped.set()
    caller.join(timeout=60)

    up.send_signal(signal.SIGTERM)
    stop_started = time.monotonic()
    up_code = up.wait(timeout=120)
    stop_seconds = time.monotonic() - stop_started
    log.close()

    # -- the store against the acknowledgements
    from features.store import open_store

    with open_store(settings.store_path) as con:
        stored = con.execute("""
            SELECT count(*) FILTER (WHERE starts_with(source, 'collector')),
                   count(DISTINCT event_key) FILTER (WHERE starts_with(source, 'collector')) FROM events
        """).fetchall()[0]
        imports = con.execute("SELECT sum(accepted), sum(duplicates), sum(quarantined) FROM imports "
                              "WHERE starts_with(source, 'collector')").fetchall()[0]
    ok_posts = [p for p in posted if p["status"] == 200]
    acknowledged = sum(p["accepted"] for p in ok_posts) + sum(1 for p in probes.values())
    sent_events = sum(p["n"] for p in posted)

    idle = [r for r in caller.records if r["at"] < idle_until and r["status"] == 200]
    loaded = [r for r in caller.records if stream_started <= r["at"] < stream_started + stream_seconds]
    lags = [p["served"] - p["acked"] for p in probes.values() if p["served"] is not None]
    first_new = next((r["at"] + r["seconds"] for r in caller.records
                      if r["route"] == "/propensity" and promotion["version"]
                      and r["model_version"] == f"nhip-propensity/{promotion['version']}"), None)
    return {
        "machine": machine(),
        "stream": {"seconds": stream_seconds, "events_sent": sent_events,
                   "events_per_second": sent_events / stream_seconds, "requests": len(posted),
                   "collector_errors": len(posted) - len(ok_posts),
                   "answers_not_yet_stored": sum(1 for p in ok_posts if p["stored"] is False),
                   "request_p50_ms": percentile([p["seconds"] * 1000 for p in ok_posts], 50),
                   "request_p99_ms": percentile([p["seconds"] * 1000 for p in ok_posts], 99)},
        "accounting": {"acknowledged_accepted": acknowledged, "stored_from_collector": int(stored[0]),
                       "distinct_keys": int(stored[1]), "lost": acknowledged - int(stored[0]),
                       "stored_twice": int(stored[0]) - int(stored[1]),
                       "duplicates_answered": sum(p["duplicates"] for p in ok_posts),
                       "rejected_answered": sum(p["rejected"] for p in ok_posts),
                       "imports_accepted": int(imports[0] or 0)},
        "service": {"idle_requests": len(idle), "idle_p50_ms": percentile([r["seconds"] * 1000 for r in idle], 50),
                    "idle_p99_ms": percentile([r["seconds"] * 1000 for r in idle], 99),
                    "load_requests": len(loaded),
                    "load_p50_ms": percentile([r["seconds"] * 1000 for r in loaded if r["status"] == 200], 50),
                    "load_p99_ms": percentile([r["seconds"] * 1000 for r in loaded if r["status"] == 200], 99),
                    "load_max_ms": max((r["seconds"] * 1000 for r in loaded), default=float("nan")),
                    "errors_5xx": sum(1 for r in caller.records if r["status"] is None or r["status"] >= 500),
                    "builds_served": len({r["build_id"] for r in caller.records if r["build_id"]})},
        "lag": {"probes": len(probes), "served": len(lags), "p50_s": percentile(lags, 50),
                "p99_s": percentile(lags, 99), "max_s": max(lags, default=float("nan"))},
        "retrain": {"seconds": retrain.get("ended", 0) - retrain.get("started", 0), "exit_code": retrain.get("code"),
                    "output": retrain.get("output"), "promoted_version": promotion["version"],
                    "promotion_to_first_answer_s": (first_new - promotion["moved_at"])
                    if first_new and promotion["moved_at"] else None},
        "refreshes": [line.strip() for line in log_path.read_text().splitlines() if "[refresh] refresh " in line],
        "up": {"exit_code": up_code, "stop_seconds": stop_seconds, "log": str(log_path)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=2500, help="events/s the stream is paced to")
    parser.add_argument("--customers", type=int, default=17000)
    parser.add_argument("--days", type=int, default=330)
    parser.add_argument("--stream-days", type=int, default=118, help="the last days, streamed")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
