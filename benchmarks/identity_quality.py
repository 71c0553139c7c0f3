"""Identity resolution quality against the synthetic shop's ground truth.

    python benchmarks/identity_quality.py --customers 2000 --days 240 --seed 7

Generates the demo data (synthetic.demo_shop, hard cases included: a shop hotline typed into POS orders,
a junk email at sign-up, phone typos, a POS lookup that picked another customer, second SIMs, old
11-digit numbers), imports it into a temporary store, resolves identities as of the last event and
compares with identities.csv:

- pairwise precision: of the pairs of identifiers put in one customer, the share that belong to one
  person; pairwise recall: of the pairs that belong to one person, the share put in one customer. Only
  identifiers owned by a person count (not the shared hotline/junk email, not typos nobody owns); a
  person-owned identifier that was set aside is a customer of its own (it costs recall).
- the same restricted to "strong" identifiers (everything but cookies), which is what marketing uses;
- customers vs persons, where the leftover fragments come from, and the set-aside identifiers found
  vs those planted.

Truth values are normalised the way ingest normalises them (phones to +84…, emails lowercased).
Each guard limit in --limits gets a row, plus one with the guard off.
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

from features.identity.graph import DEVICE_TYPES, IdentityConfig, resolve_graph  # noqa: E402
from features.identity.reports import set_aside_report  # noqa: E402
from features.ingest.importer import ingest_file  # noqa: E402
from features.ingest.parsers.emails import normalize_emails  # noqa: E402
from features.ingest.parsers.phones import normalize_phones  # noqa: E402
from features.store import open_store  # noqa: E402
from synthetic.demo_shop import NOBODY, SHARED, generate, write  # noqa: E402

NO_GUARD = 10**9


def normalised_truth(identities: pd.DataFrame) -> pd.DataFrame:
    """identities.csv with values as the store holds them; one owner per stored value."""
    truth = identities.astype({"id_value": object}).copy()
    phone, email = truth["id_type"] == "phone", truth["id_type"] == "email"
    truth.loc[phone, "id_value"] = normalize_phones(truth.loc[phone, "id_value"]).to_numpy()
    truth.loc[email, "id_value"] = normalize_emails(truth.loc[email, "id_value"]).to_numpy()
    other = ~(phone | email)
    truth.loc[other, "id_value"] = truth.loc[other, "id_value"].astype(str).str.strip()
    truth = truth.dropna(subset=["id_value"]).drop_duplicates()
    owners = truth.groupby(["id_type", "id_value"])["person_id"].nunique()
    clashes = owners[owners > 1]
    if len(clashes):
        raise SystemExit(f"truth has {len(clashes)} values with several owners after normalisation")
    return truth


def customer_persons(identity: pd.DataFrame, identities: pd.DataFrame) -> pd.Series:
    """customer_id → person_id (the owner of most of the customer's identifiers), for an identity map
    (id_type, id_value, customer_id) and the generator's identities.csv."""
    mapped = identity[["id_type", "id_value", "customer_id"]].merge(normalised_truth(identities),
                                                                    on=["id_type", "id_value"])
    return mapped.groupby("customer_id")["person_id"].agg(lambda s: s.value_counts().index[0])


def _pairs(counts: pd.Series) -> int:
    n = counts.to_numpy(dtype=np.int64)
    return int((n * (n - 1) // 2).sum())


def pairwise(resolved: pd.DataFrame) -> tuple[float, float]:
    """(precision, recall) of same-customer pairs among person-owned identifiers."""
    if resolved.empty:
        return float("nan"), float("nan")
    tp = _pairs(resolved.groupby(["customer_id", "person_id"]).size())
    predicted = _pairs(resolved.groupby("customer_id").size())
    actual = _pairs(resolved.groupby("person_id").size())
    return (tp / predicted if predicted else 1.0), (tp / actual if actual else 1.0)


def evaluate(con, as_of, truth: pd.DataFrame, max_links: int) -> tuple[dict, object, pd.DataFrame]:
    started = time.perf_counter()
    resolution = resolve_graph(con, as_of, IdentityConfig(max_links))
    seconds = time.perf_counter() - started
    identity = resolution.identity
    nodes = resolution.nodes[["id_type", "id_value"]]
    owned = truth[~truth["person_id"].isin([SHARED, NOBODY])]
    # every identifier the store has, with its customer (set-aside ones: a customer of their own)
    placed = nodes.merge(identity[["id_type", "id_value", "customer_id"]], on=["id_type", "id_value"],
                         how="left")
    alone = placed["customer_id"].isna()
    placed.loc[alone, "customer_id"] = "set-aside:" + placed.loc[alone, "id_type"] + ":" + placed.loc[
        alone, "id_value"]
    resolved = placed.merge(owned, on=["id_type", "id_value"])
    strong = resolved[~resolved["id_type"].isin(DEVICE_TYPES)]
    precision, recall = pairwise(resolved)
    s_precision, s_recall = pairwise(strong)

    customers = identity.groupby("customer_id")["id_type"].agg(lambda s: set(s) - set(DEVICE_TYPES))
    planted = set(map(tuple, truth.loc[truth["person_id"] == SHARED, ["id_type", "id_value"]].to_numpy()))
    found = set(zip(resolution.set_aside["id_type"], resolution.set_aside["id_value"]))
    impure = resolved.groupby("customer_id")["person_id"].nunique()
    row = {
        "guard": "off" if max_links >= NO_GUARD else f"> {max_links}",
        "precision": precision,
        "recall": recall,
        "precision_strong": s_precision,
        "recall_strong": s_recall,
        "customers": identity["customer_id"].nunique(),
        "known_customers": int((customers.map(len) > 0).sum()),
        "persons": owned["person_id"].nunique(),
        "impure_customers": int((impure > 1).sum()),
        "largest_customer_persons": int(impure.max()) if len(impure) else 0,
        "set_aside": len(found),
        "planted_found": f"{len(found & planted)}/{len(planted)}",
        "seconds": seconds,
    }
    return row, resolution, resolved


def oracle(resolution, truth: pd.DataFrame) -> dict:
    """The best any resolver could do with these events: components of the links whose two ends belong
    to one person (no false link used, every true one used). Its recall is the data's ceiling."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    owner = dict(zip(zip(truth["id_type"], truth["id_value"]), truth["person_id"]))
    links = resolution.links
    a = [owner.get(k) for k in zip(links["a_type"], links["a_value"])]
    b = [owner.get(k) for k in zip(links["b_type"], links["b_value"])]
    true_links = links[[x is not None and x == y and x not in (SHARED, NOBODY) for x, y in zip(a, b)]]
    nodes = resolution.nodes[["id_type", "id_value"]].reset_index(drop=True)
    index = {k: i for i, k in enumerate(zip(nodes["id_type"], nodes["id_value"]))}
    ai = [index[k] for k in zip(true_links["a_type"], true_links["a_value"])]
    bi = [index[k] for k in zip(true_links["b_type"], true_links["b_value"])]
    graph = coo_matrix((np.ones(len(ai)), (ai, bi)), shape=(len(nodes), len(nodes)))
    _, component = connected_components(graph, directed=False)
    placed = nodes.assign(customer_id=component.astype(str))
    owned = truth[~truth["person_id"].isin([SHARED, NOBODY])]
    resolved = placed.merge(owned, on=["id_type", "id_value"])
    precision, recall = pairwise(resolved)
    s_precision, s_recall = pairwise(resolved[~resolved["id_type"].isin(DEVICE_TYPES)])
    return {"guard": "oracle", "precision": precision, "recall": recall, "precision_strong": s_precision,
            "recall_strong": s_recall, "customers": resolved["customer_id"].nunique(),
            "persons": owned["person_id"].nunique()}


def fragments(resolved: pd.DataFrame) -> pd.Series:
    """For persons spread over several customers: the identifier types of every fragment but the
    largest, counted; this is where customers > persons comes from."""
    cells = resolved.groupby(["person_id", "customer_id"])["id_type"].agg(lambda s: "+".join(sorted(set(s))))
    sizes = resolved.groupby(["person_id", "customer_id"]).size()
    frame = pd.DataFrame({"types": cells, "size": sizes}).reset_index()
    frame = frame.sort_values(["person_id", "size", "customer_id"], ascending=[True, False, True])
    extra = frame[frame.duplicated("person_id")]
    return extra["types"].value_counts()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--limits", default="3,5,10", help="guard limits to compare, comma-separated")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        data = generate(customers=args.customers, days=args.days, seed=args.seed)
        paths = write(data, Path(tmp) / "data")
        store = Path(tmp) / "store"
        report = ingest_file(paths["events"], store)
        print(f"{args.customers:,} persons × {args.days} days, seed {args.seed}: {len(data.events):,} events, "
              f"{report.accepted:,} stored, {report.quarantined:,} quarantined "
              f"(generate + import {time.perf_counter() - started:.1f} s)\n")
        truth = normalised_truth(data.identities)
        limits = [int(x) for x in args.limits.split(",") if x.strip()] + [NO_GUARD]
        rows = []
        with open_store(store) as con:
            as_of = con.execute("SELECT max(ts) FROM events").fetchone()[0]
            for limit in limits:
                row, resolution, resolved = evaluate(con, as_of, truth, limit)
                rows.append(row)
                if limit == 5 or (limit == limits[0] and 5 not in limits):
                    shown, shown_resolved = resolution, resolved
                    suspects = set_aside_report(con, resolution)
            rows.append(oracle(shown, truth))
            first = con.execute("SELECT min(ts) FROM events").fetchone()[0]
            over_time = []
            for share in (0.125, 0.25, 0.5, 1.0):
                when = first + (as_of - first) * share
                row, _, _ = evaluate(con, when, truth, 5)
                over_time.append({"as_of": f"{when:%Y-%m-%d}", "days": (when - first).days, **{
                    k: row[k] for k in ("precision", "recall", "customers", "impure_customers",
                                        "largest_customer_persons", "set_aside")}})
        table = pd.DataFrame(rows)
        table["seconds"] = table["seconds"].round(2)
        with pd.option_context("display.width", 200, "display.max_columns", 20,
                               "display.float_format", "{:.4f}".format):
            print(table.astype({c: "Int64" for c in ("customers", "known_customers", "persons",
                                                    "impure_customers", "largest_customer_persons",
                                                    "set_aside")}).to_string(index=False))
            print("\npoint in time, guard > 5 (links and the guard both as of each date):")
            print(pd.DataFrame(over_time).to_string(index=False))
        print(f"\nset aside at guard {shown.max_links} (truth owner in brackets):")
        owner = truth.set_index(["id_type", "id_value"])["person_id"]
        for r in suspects.itertuples(index=False):
            print(f"  {r.id_type} {r.id_value} [{owner.get((r.id_type, r.id_value), '?')}]: {r.reason}; "
                  f"{r.n_events} events, {r.customers} customers touched, {r.unresolved_events} events "
                  "left without a customer")
        nobody = truth[truth["person_id"] == NOBODY]
        attached = nobody.merge(shown.identity, on=["id_type", "id_value"])
        print(f"\nmistyped phones nobody owns: {len(nobody)}, of which attached to a customer: {len(attached)}")
        print("\nfragments beyond each person's largest customer, by identifier types:")
        print(fragments(shown_resolved).head(12).to_string())


if __name__ == "__main__":
    main()
