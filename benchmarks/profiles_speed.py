"""Profile build speed and memory on a 10M-event store, with a plain pandas reference side by side.

    .venv/bin/python benchmarks/profiles_speed.py --store /tmp/nhip-prof/store \
        [--chunks 11] [--customers 5000] [--days 240] [--threads 2] [--memory-limit 2.5GB]

The store is the demo shop (synthetic.demo_shop) generated in `--chunks` independent parts of
`--customers` people each (seeds 7, 8, …), so a 10M-event store never needs 10M events in memory at once;
each part is imported with `ingest_file`. Parts already imported into `--store` are skipped, so reruns go
straight to the measurements. 11 parts × 5000 customers × 240 days ≈ 10.6M events.

Measurements (each in a fresh subprocess, so peak RSS (`VmHWM`) is that step's alone, Python and
DuckDB included; DuckDB threads and memory_limit set as given):

- `identity`: `features.identity.graph.resolve_graph` as of the last event;
- `profiles`: `build_profiles(resolved_events(con, resolution))` with identity already resolved — the wide
  profile (every theme) from the store into a pandas DataFrame;
- `profiles+identity`: `build_profiles(resolve_events(con, as_of, identity))`, resolving identity itself
  (what a cold build costs);
- `pandas`: the same wide features in straightforward pandas (resolved events loaded with DuckDB into a
  DataFrame, not timed separately but included, then groupby), checked against `build_profiles` on a
  sample of customers.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from machine_info import machine  # noqa: E402  (a sibling script module)


def _make_part_distinct(events, part: int) -> None:
    """Each part numbers its event ids and device/platform ids from scratch: prefix them, so parts do not
    collapse as duplicates or merge wholesale. Phones and emails stay as generated (rare collisions, and
    the shop hotline and junk email are shared by all parts, as in one real shop)."""
    from features.schema import IDENTIFIER_FIELDS

    for column in ("event_id", *(f for f in IDENTIFIER_FIELDS if f not in ("phone", "email"))):
        present = events[column].notna()
        events.loc[present, column] = f"p{part}-" + events.loc[present, column].astype(str)


def build_store(store: Path, chunks: int, customers: int, days: int, seed: int) -> None:
    from features.ingest.importer import ingest_file
    from features.store import open_store, store_exists
    from synthetic.demo_shop import generate, write

    done: set[str] = set()
    if store_exists(store):
        with open_store(store) as con:
            done = {s for (s,) in con.execute("SELECT source FROM imports").fetchall()}
    with tempfile.TemporaryDirectory(prefix="nhip-prof-bench-") as tmp:
        for i in range(chunks):
            if f"demo-{seed + i}.jsonl" in done:
                continue
            started = time.perf_counter()
            data = generate(customers=customers, days=days, seed=seed + i)
            _make_part_distinct(data.events, i)
            path = write(data, Path(tmp) / str(i))["events"]
            generated = time.perf_counter() - started
            report = ingest_file(path, store, source=f"demo-{seed + i}.jsonl")
            print(f"  part {i + 1}/{chunks}: generated in {generated:.0f} s, {report.accepted:,} events "
                  f"imported in {time.perf_counter() - started - generated:.0f} s", flush=True)
            path.unlink()


# ---------------------------------------------------------------------------------------------------------
# the pandas reference: the same wide profile, written the way one would without SQL
# ---------------------------------------------------------------------------------------------------------

def pandas_profiles(events, as_of):
    """The wide profile of `build_profiles` from resolved events (customer_id, ts, channel, type, amount,
    product_id, category, message_id) with plain pandas: indicator columns summed in one groupby, masked
    max/min for recencies, groupbys per message and per category for the rest."""
    import warnings

    import numpy as np
    import pandas as pd

    from features.profile.affinities import INTERACTIONS, TOP_CATEGORIES
    from features.profile.engagement import ENGAGEMENT_DAYS, RATE_NAMES, REACTIONS
    from features.profile.fatigue import FATIGUE_WINDOWS
    from features.profile.rfm import RFM_CHANNELS
    from features.profile.wide import _GRANT, _REVOKE, CONSENT_CHANNELS
    from features.schema import MESSAGE_CHANNELS

    warnings.simplefilter("ignore", pd.errors.PerformanceWarning)  # columns added one by one, on purpose
    as_of = pd.Timestamp(as_of)
    e = events
    cid, ts, ty, ch = e["customer_id"], e["ts"], e["type"], e["channel"]
    age_days = ((as_of - ts) / pd.Timedelta(days=1)).to_numpy()
    within = {d: age_days < d for d in (7, 30, 90)}
    active = ~ty.isin(["message_sent", "message_delivered"]).to_numpy()
    purchase = (ty == "purchase").to_numpy()
    by_type = {t: (ty == t).to_numpy() for t in ty.unique()}
    no = np.zeros(len(e), dtype=bool)

    def is_type(t):
        return by_type.get(t, no)

    on = {c: (ch == c).to_numpy() for c in set(RFM_CHANNELS) | set(MESSAGE_CHANNELS)}
    groups = cid.to_numpy()

    counts = {
        "n_purchases": purchase, "n_purchases_30d": purchase & within[30],
        "n_purchases_90d": purchase & within[90], "n_events": active,
        "n_events_7d": active & within[7], "n_events_30d": active & within[30],
        "n_page_views_30d": is_type("page_view") & within[30],
        "n_product_views_30d": is_type("product_view") & within[30],
        "n_add_to_cart_7d": is_type("add_to_cart") & within[7],
        "n_add_to_cart_30d": is_type("add_to_cart") & within[30],
        "n_messages_sent_30d": is_type("message_sent") & within[30],
        "n_messages_opened_30d": is_type("message_opened") & within[30],
        "n_messages_clicked_30d": is_type("message_clicked") & within[30],
    }
    latest = {"recency_days": active, "purchase_recency_days": purchase, "cart_recency_days": is_type("add_to_cart")}
    money = {"monetary_total": purchase}
    for c in RFM_CHANNELS:
        counts[f"n_events_{c}"] = on[c] & active
        counts[f"n_purchases_{c}"] = on[c] & purchase
        latest[f"recency_days_{c}"] = on[c] & active
        latest[f"purchase_recency_days_{c}"] = on[c] & purchase
        money[f"monetary_total_{c}"] = on[c] & purchase
    for c in MESSAGE_CHANNELS:
        for kind in ("sent", *REACTIONS):
            counts[f"n_messages_{kind}_{ENGAGEMENT_DAYS}d_{c}"] = (
                is_type(f"message_{kind}") & on[c] & within[ENGAGEMENT_DAYS])
    counts["n_messages_sent_7d"] = is_type("message_sent") & within[7]
    for c in MESSAGE_CHANNELS:
        for d in FATIGUE_WINDOWS:
            counts[f"n_messages_sent_{d}d_{c}"] = is_type("message_sent") & on[c] & within[d]
    latest["message_recency_days"] = is_type("message_sent")

    frame = pd.DataFrame(counts, copy=False).astype("int64").groupby(groups).sum()
    amount = e["amount"].to_numpy()
    sums = pd.DataFrame({k: np.where(m, amount, np.nan) for k, m in money.items()}).groupby(groups).sum()
    frame = frame.join(sums)
    frame["monetary_avg"] = pd.Series(np.where(purchase, amount, np.nan)).groupby(groups).mean()
    frame = frame.join(pd.DataFrame({k: np.where(m, age_days, np.nan) for k, m in latest.items()})
                       .groupby(groups).min())
    frame["tenure_days"] = pd.Series(age_days).groupby(groups).max()
    first_purchase = pd.Series(np.where(purchase, age_days, np.nan)).groupby(groups).max()
    frame["purchase_interval_days"] = ((first_purchase - frame["purchase_recency_days"])
                                       / (frame["n_purchases"] - 1)).where(frame["n_purchases"] > 1)

    def distinct(mask, column):
        return e.loc[mask, ["customer_id", column]].dropna().drop_duplicates().groupby("customer_id").size()

    opened = distinct(is_type("message_opened") & within[90], "message_id")
    sent = distinct(is_type("message_sent") & within[90], "message_id")
    # No message sent: no rate (NaN), as in build_profiles.
    rate = opened.reindex(frame.index, fill_value=0) / sent.reindex(frame.index)
    frame["open_rate_90d"] = rate.clip(upper=1.0)
    frame["n_channels"] = distinct(~ty.str.startswith("message_").to_numpy(), "channel").reindex(
        frame.index, fill_value=0)
    frame["n_distinct_products"] = distinct(np.ones(len(e), dtype=bool), "product_id").reindex(
        frame.index, fill_value=0)

    consent = e.loc[ty.isin(_GRANT + _REVOKE).to_numpy(), ["customer_id", "channel", "ts", "type"]]
    last = consent.sort_values("ts").drop_duplicates(["customer_id", "channel"], keep="last")
    last = last.assign(granted=last["type"].isin(_GRANT)).pivot(index="customer_id", columns="channel",
                                                                 values="granted")
    for c in CONSENT_CHANNELS:
        frame[f"consent_{c}"] = last[c].reindex(frame.index).fillna(False).astype(bool) if c in last else False

    # engagement rates and time to open: one row per message, owned by its send
    message_types = ["message_sent", *(f"message_{r}" for r in REACTIONS)]
    m = e.loc[e["message_id"].notna().to_numpy() & ty.isin(message_types).to_numpy()]
    # The first send owns the message; ties on time go to the smallest (customer_id, channel), as in SQL.
    sends = m[m["type"] == "message_sent"].sort_values(["ts", "customer_id", "channel"]).drop_duplicates(
        "message_id")
    sends = sends[["message_id", "customer_id", "channel", "ts"]].rename(columns={"ts": "sent_at"})
    reacted = {r: set(m.loc[m["type"] == f"message_{r}", "message_id"]) for r in REACTIONS}
    reacted["opened"] |= reacted["clicked"]
    first_open = m[m["type"] == "message_opened"].groupby("message_id")["ts"].min().rename("opened_at")
    sends = sends.join(first_open, on="message_id")
    recent = (as_of - sends["sent_at"]) < pd.Timedelta(days=ENGAGEMENT_DAYS)
    hours = (sends["opened_at"] - sends["sent_at"]).dt.total_seconds() / 3600
    hours = hours.where(sends["opened_at"] >= sends["sent_at"])
    for c in MESSAGE_CHANNELS:
        mine = sends["channel"] == c
        for r in REACTIONS:
            flag = sends["message_id"].isin(reacted[r]).astype(float)
            frame[f"{RATE_NAMES[r]}_rate_{ENGAGEMENT_DAYS}d_{c}"] = flag[mine & recent].groupby(
                sends.loc[mine & recent, "customer_id"]).mean()
        frame[f"hours_to_open_{c}"] = hours[mine].groupby(sends.loc[mine, "customer_id"]).median()
    frame["hours_to_open"] = hours.groupby(sends["customer_id"]).median()

    # affinities
    interactions = e[ty.isin(INTERACTIONS).to_numpy()]
    categories = interactions.groupby(["customer_id", "category"]).size().rename("n").reset_index()
    categories["share"] = categories["n"] / categories.groupby("customer_id")["n"].transform("sum")
    categories = categories.sort_values(["customer_id", "n", "category"], ascending=[True, False, True])
    categories["rank"] = categories.groupby("customer_id").cumcount() + 1
    frame["n_categories"] = categories.groupby("customer_id").size().reindex(frame.index).fillna(0).astype("int64")
    for k in range(1, TOP_CATEGORIES + 1):
        top = categories[categories["rank"] == k].set_index("customer_id")
        frame[f"top_category_{k}"] = top["category"].astype("str")
        frame[f"top_category_share_{k}"] = top["share"]
    products = interactions.groupby(["customer_id", "product_id"]).size()
    frame["top_product_share"] = (products.groupby(level=0).max() / products.groupby(level=0).sum())
    return frame.copy().rename_axis("customer_id")


def compare(sql, reference, sample: int, seed: int = 0) -> list[str]:
    """Columns of `sql` that differ from `reference` on a random sample of customers (NaN equals NaN)."""
    import numpy as np

    rows = sql.index.to_series().sample(min(sample, len(sql)), random_state=seed).index
    problems = []
    if set(sql.index) != set(reference.index):
        problems.append(f"customers differ: {len(sql)} vs {len(reference)}")
    for column in sql.columns:
        if column not in reference:
            problems.append(f"{column}: missing in the reference")
            continue
        a, b = sql.loc[rows, column], reference[column].reindex(rows)
        if a.dtype.kind in "biuf" and b.dtype.kind in "biuf":
            same = np.isclose(a.astype(float), b.astype(float), rtol=1e-9, atol=2e-5, equal_nan=True)
        else:
            same = ((a.isna() & b.isna()) | (a.astype(object) == b.astype(object))).to_numpy()
        if not same.all():
            problems.append(f"{column}: {int((~same).sum())} of {len(rows)} differ")
    return problems


# ---------------------------------------------------------------------------------------------------------
# one measurement per subprocess
# ---------------------------------------------------------------------------------------------------------


def peak_rss_mib() -> float:
    """Peak resident memory of this process. VmHWM belongs to the address space made by exec, whereas
    ru_maxrss on Linux keeps the parent's high-water mark across fork + exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@contextmanager
def open_for_bench(store: Path, threads: int, memory_limit: str, temp: Path):
    """The store as every job reads it (`open_store`), with the benchmark's DuckDB limits."""
    from features.store import open_store

    with open_store(store) as con:
        con.execute(f"SET threads = {threads}")
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute(f"SET temp_directory = '{temp}'")
        yield con


def measure(args) -> dict:
    with open_for_bench(args.store, args.threads, args.memory_limit, args.work) as con:
        return _measure(args, con)


def _measure(args, con) -> dict:
    import pandas as pd

    from benchmarks.shipped import SHIPPED
    from features.identity.events import resolve_events, resolved_events
    from features.identity.graph import Resolution, resolve_graph
    from features.profile.wide import _PROFILE_EVENT_COLUMNS, build_profiles

    def stored_resolution() -> Resolution:
        """The resolution the identity step wrote (identity map and set-aside list: all events need)."""
        return Resolution(as_of, pd.read_parquet(identity_path), pd.read_parquet(set_aside_path),
                          pd.DataFrame(), pd.DataFrame(), SHIPPED.identity)

    as_of = pd.Timestamp(args.as_of).to_pydatetime()
    identity_path = args.work / "identity.parquet"
    set_aside_path = args.work / "set_aside.parquet"
    out: dict = {"step": args.measure}
    if args.measure == "identity":
        started = time.perf_counter()
        resolution = resolve_graph(con, as_of, SHIPPED.identity)
        out["seconds"] = time.perf_counter() - started
        identity = resolution.identity
        identity.to_parquet(identity_path)
        resolution.set_aside[["id_type", "id_value"]].to_parquet(set_aside_path)
        out["identifiers"] = len(identity)
    elif args.measure in ("profiles", "profiles+identity"):
        resolution = stored_resolution() if args.measure == "profiles" else None
        started = time.perf_counter()
        events = (resolved_events(con, resolution) if resolution is not None
                  else resolve_events(con, as_of, SHIPPED.identity))
        profiles = build_profiles(events)
        out["seconds"] = time.perf_counter() - started
        out["customers"], out["columns"] = profiles.shape
    elif args.measure == "pandas":
        resolution = stored_resolution()
        started = time.perf_counter()
        resolved = resolved_events(con, resolution)
        events = con.execute(f"SELECT {', '.join(_PROFILE_EVENT_COLUMNS)} FROM {resolved.source}").df()
        out["load_seconds"] = time.perf_counter() - started
        reference = pandas_profiles(events, as_of)
        out["seconds"] = time.perf_counter() - started
        out["events"] = len(events)
        out["peak_rss_mib"] = peak_rss_mib()
        del events
        sql = build_profiles(resolved)
        out["mismatches"] = compare(sql, reference, args.sample)
        out["compared"] = f"{min(args.sample, len(sql))} customers × {sql.shape[1]} columns"
    out.setdefault("peak_rss_mib", peak_rss_mib())
    return out


def run_step(args, step: str) -> dict:
    command = [sys.executable, __file__, "--measure", step, "--store", str(args.store), "--as-of", args.as_of,
               "--threads", str(args.threads), "--memory-limit", args.memory_limit, "--work", str(args.work),
               "--sample", str(args.sample)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True, help="event store; built here when missing")
    parser.add_argument("--chunks", type=int, default=11)
    parser.add_argument("--customers", type=int, default=5000, help="people per part")
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", default="2.5GB")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the profile build; all shown")
    parser.add_argument("--sample", type=int, default=5000, help="customers compared with the reference")
    parser.add_argument("--as-of", help=argparse.SUPPRESS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.measure:
        print(json.dumps(measure(args)))
        return
    print(f"store {args.store}: {args.chunks} parts × {args.customers} customers × {args.days} days "
          "(parts not imported yet are generated now)")
    build_store(args.store, args.chunks, args.customers, args.days, args.seed)
    from features.store import open_store

    with open_store(args.store) as con:
        n_events, last = con.execute("SELECT count(*), max(ts) FROM events").fetchall()[0]
    args.as_of = str(last)
    size = sum(p.stat().st_size for p in (args.store / "events").glob("*.parquet"))
    print(f"store: {args.store} (events {size / 2**30:.2f} GiB of Parquet), {n_events:,} events, "
          f"as of {args.as_of} UTC (the last event)")
    print(f"machine: {machine()}; DuckDB threads={args.threads}, memory_limit={args.memory_limit}")
    with tempfile.TemporaryDirectory(prefix="nhip-prof-bench-") as work:
        args.work = Path(work)
        results = [run_step(args, "identity")]
        results += [run_step(args, "profiles") for _ in range(args.repeat)]
        results.append(run_step(args, "profiles+identity"))
        results.append(run_step(args, "pandas"))
    for r in results:
        extra = {k: v for k, v in r.items() if k not in ("step", "seconds", "peak_rss_mib")}
        print(f"  {r['step']:<18} {r['seconds']:7.2f} s  peak RSS {r['peak_rss_mib']:7.0f} MiB  {extra}")
    best = min(r["seconds"] for r in results if r["step"] == "profiles")
    reference = results[-1]
    print(f"profiles (identity given), best of {args.repeat}: {best:.2f} s; pandas reference "
          f"{reference['seconds']:.2f} s (of which loading events {reference['load_seconds']:.2f} s); "
          f"speed-up {reference['seconds'] / best:.1f}×")
    print("agreement: " + ("all compared values equal" if not reference["mismatches"]
                           else "; ".join(reference["mismatches"])))


if __name__ == "__main__":
    main()
