"""Why records are one customer: the identifiers of a customer and the tree of linking events, for
`nhip identity explain`. Identifiers and events only: no names or other personal fields."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import pandas as pd

from features.identity.graph import TYPE_RANK, Resolution, id_key
from features.schema import IDENTIFIER_FIELDS
from nhip.clock import local_text


@dataclass
class LinkStep:
    """One edge of the explanation tree: `parent` reached `child` through `event`."""

    parent: tuple[str, str]
    child: tuple[str, str]
    event: dict
    n_events: int


@dataclass
class Explanation:
    query: tuple[str, str]
    as_of: datetime
    customer_id: str | None
    identifiers: pd.DataFrame  # id_type, id_value, first_seen, n_events
    steps: list[LinkStep]
    set_aside: pd.DataFrame  # set-aside identifiers touching this customer (or the query itself)
    query_set_aside: bool = False
    touched_customers: list[str] = field(default_factory=list)


def explain(
    con: duckdb.DuckDBPyConnection, resolution: Resolution, id_type: str, id_value: str
) -> Explanation:
    """Why the identifier belongs to its customer: every identifier of the customer and, for each, the
    link (event) through which it was reached from the queried one, breadth first (fewest hops), the
    earliest link first."""
    query = (id_type, id_value)
    links = resolution.links
    set_aside = resolution.set_aside
    out_keys = set(id_key(set_aside["id_type"], set_aside["id_value"]))
    nodes = resolution.nodes.set_index(["id_type", "id_value"])
    if f"{id_type}\x1f{id_value}" in out_keys:
        touching = links[((links["a_type"] == id_type) & (links["a_value"] == id_value))
                         | ((links["b_type"] == id_type) & (links["b_value"] == id_value))]
        others = [(bt, bv) if (at, av) == query else (at, av) for at, av, bt, bv in
                  zip(touching["a_type"], touching["a_value"], touching["b_type"], touching["b_value"])]
        customers = sorted({c for c in (resolution.customer_of(t, v) for t, v in others) if c})
        itself = set_aside[(set_aside["id_type"] == id_type) & (set_aside["id_value"] == id_value)]
        return Explanation(query, resolution.as_of, None, nodes.loc[[query]].reset_index(), [], itself,
                           query_set_aside=True, touched_customers=customers)

    customer = resolution.customer_of(id_type, id_value)
    members = resolution.identity[resolution.identity["customer_id"] == customer]
    member_keys = set(id_key(members["id_type"], members["id_value"]))
    used = links[links["used"]]
    a_key = id_key(used["a_type"], used["a_value"])  # both ends of a used link share a customer
    inside = used[a_key.isin(member_keys)].sort_values(["first_ts", "event_key"])
    neighbours: dict[tuple[str, str], list] = {}
    for row in inside.itertuples(index=False):
        a, b = (row.a_type, row.a_value), (row.b_type, row.b_value)
        neighbours.setdefault(a, []).append((b, row))
        neighbours.setdefault(b, []).append((a, row))

    seen, order, tree = {query}, deque([query]), []
    while order:
        node = order.popleft()
        for other, row in neighbours.get(node, []):
            if other not in seen:
                seen.add(other)
                order.append(other)
                tree.append((node, other, row))
    events = _events_by_key(con, sorted({row.event_key for _, _, row in tree}))
    steps = [LinkStep(parent, child, events.get(row.event_key, {"event_key": row.event_key}),
                      int(row.n_events)) for parent, child, row in tree]

    info = nodes.loc[list(zip(members["id_type"], members["id_value"]))].reset_index()
    info["_rank"] = info["id_type"].map(TYPE_RANK)
    info = info.sort_values(["first_seen", "_rank", "id_value"]).drop(columns="_rank")
    touching = links[id_key(links["a_type"], links["a_value"]).isin(member_keys)
                     | id_key(links["b_type"], links["b_value"]).isin(member_keys)]
    near = set(id_key(touching["a_type"], touching["a_value"])) | set(
        id_key(touching["b_type"], touching["b_value"]))
    nearby = set_aside[id_key(set_aside["id_type"], set_aside["id_value"]).isin(near)]
    return Explanation(query, resolution.as_of, customer, info.reset_index(drop=True), steps, nearby)


def _events_by_key(con: duckdb.DuckDBPyConnection, keys: list[str]) -> dict[str, dict]:
    if not keys:
        return {}
    columns = ["event_key", "event_id", "ts", "channel", "type", "source", *IDENTIFIER_FIELDS]
    frame = con.execute(f"SELECT {', '.join(columns)} FROM events WHERE event_key IN "
                        f"(SELECT unnest($keys))", {"keys": keys}).df()
    out = {}
    for row in frame.to_dict(orient="records"):
        carried = {f: row.pop(f) for f in IDENTIFIER_FIELDS}
        row["identifiers"] = {f: v for f, v in carried.items() if isinstance(v, str)}
        out[row["event_key"]] = row
    return out


def format_explanation(ex: Explanation) -> list[str]:
    """Plain text lines for the CLI. Identifiers and events only: no names or other personal fields."""
    t, v = ex.query
    when = local_text(ex.as_of)
    if ex.query_set_aside:
        row = ex.set_aside.iloc[0]
        lines = [f"{t} {v} is set aside as of {when}: {row['reason']}.",
                 "It is not used to link records, so it makes nobody one customer.",
                 f"seen on {int(row['n_events']):,} events, together with {len(ex.touched_customers):,} "
                 "customers:"]
        lines += [f"  {c}" for c in ex.touched_customers[:50]]
        if len(ex.touched_customers) > 50:
            lines.append(f"  … and {len(ex.touched_customers) - 50:,} more")
        return lines
    lines = [f"{t} {v} → customer {ex.customer_id} (as of {when})",
             f"identifiers ({len(ex.identifiers)}):"]
    for row in ex.identifiers.itertuples(index=False):
        lines.append(f"  {row.id_type:<17} {row.id_value:<40} first seen {local_text(row.first_seen)}, "
                     f"{int(row.n_events):,} events")
    if ex.steps:
        lines.append(f"why they are one customer ({len(ex.steps)} links, starting from {t} {v}):")
        for step in ex.steps:
            e = step.event
            carried = " ".join(f"{k}={val}" for k, val in e.get("identifiers", {}).items())
            more = f" (and {step.n_events - 1:,} more events)" if step.n_events > 1 else ""
            lines.append(f"  {step.parent[0]} {step.parent[1]} — {step.child[0]} {step.child[1]}")
            lines.append(f"      {e.get('channel', '?')} {e.get('type', '?')} at {local_text(e.get('ts'))}, "
                         f"event {e.get('event_id') or e['event_key']} from {e.get('source') or '?'}"
                         f"{more}; carried {carried}")
    else:
        lines.append("no links: this identifier is a customer on its own")
    if len(ex.set_aside):
        lines.append("set aside nearby (seen with this customer, not used to link):")
        for row in ex.set_aside.itertuples(index=False):
            lines.append(f"  {row.id_type} {row.id_value}: {row.reason}")
    return lines
