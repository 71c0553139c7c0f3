"""Identity resolution: which identifiers belong to one customer, as known at a point in time.

Every event that carries several identifiers (an `identify` with a cookie and an email, a Zalo `follow`
that shares the phone, a POS sale with a loyalty id and a phone) links them. The connected components of
that graph are customers. Only links seen by `as_of` count, so a merge caused by a later purchase cannot
leak into features computed for an earlier date: `resolve_graph(con, as_of, config)` is a pure function of
the stored events, `as_of` and the configuration, whatever order the events were imported in.

Stable ids. A customer's id is derived from the oldest identifier in its component (first seen, then the
order of `IDENTIFIER_FIELDS`, then the value), so adding unrelated data never renames anyone, and when two
customers merge the merged one keeps the older id. `identity_changes` compares two identity maps and names
every merge (with the link that caused it), split and rename; the feature build appends them to the
`identity_merges` table.

Over-merge guard. Some identifiers are shared by many people: the shop's hotline typed into POS orders of
customers who would not give a number, a `test@gmail.com` typed into sign-up forms, the tablet at the
counter on which customers register. Used as links they would glue strangers into one customer. An
identifier is *set aside* — kept in the store and reported, but not used to link — when it reaches more
than `IdentityConfig.max_links` (NHIP_IDENTITY_MAX_LINKS) distinct *strong* identifiers of one type:

1. devices first: an `anonymous_id` directly linked to more than `max_links` phones (or emails, Zalo ids, …);
2. then every strong identifier (all types but `anonymous_id`), counting what it reaches directly and what
   it reaches through a device that was not set aside in step 1 (identifier → cookie → other identifier).
   The second path catches a junk email typed into sign-up forms on many people's own phones.

A person has one or two phones, a few emails and cookies by the dozen, so cookies never count towards the
limit of a strong identifier (only what lies behind them does). The rule is evaluated once on the graph
as of `as_of`, so it is order-free: the same events give the same set-aside identifiers. An identifier
can cross the limit later than the links it made earlier: the customers it glued then split, and the
build records the split.

Events whose only identifiers are set aside (a POS sale with nothing but the hotline) belong to no
customer: they stay in the store and are counted in `set_aside_report`, rather than forming a
pseudo-customer that would be scored and messaged. Events with any other identifier belong to that
identifier's customer (see `features.identity.events`).

One configuration. `IdentityConfig` is the only input besides the events, so every path that maps events
to customers (feature builds, training sets and labels, send-time inputs, scoring, erasure) must resolve
with the same one, or the model learns about other customers than it serves. The feature build and every
training run record it (`IdentityConfig.params`); serving compares the two.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from features.schema import IDENTIFIER_FIELDS

DEVICE_TYPES: tuple[str, ...] = ("anonymous_id",)
STRONG_TYPES: tuple[str, ...] = tuple(t for t in IDENTIFIER_FIELDS if t not in DEVICE_TYPES)
TYPE_RANK = {t: i for i, t in enumerate(IDENTIFIER_FIELDS)}
IDENTITY_COLUMNS = ["id_type", "id_value", "customer_id", "first_seen"]


@dataclass(frozen=True)
class IdentityConfig:
    """How identifiers are linked into customers: the one setting of identity resolution.

    `max_links`: an identifier linked to more than this many distinct strong identifiers of one type is
    set aside (NHIP_IDENTITY_MAX_LINKS).
    """

    max_links: int

    def __post_init__(self) -> None:
        if isinstance(self.max_links, bool) or not isinstance(self.max_links, int) or self.max_links < 1:
            raise ValueError(f"identity max_links must be a whole number ≥ 1, not {self.max_links!r}")

    def params(self) -> dict[str, str]:
        """The configuration as flat parameters, as MLflow runs and feature builds record it."""
        return {"identity.max_links": str(self.max_links)}

    @classmethod
    def from_params(cls, params: dict[str, str]) -> IdentityConfig | None:
        """The configuration recorded by `params`, or None where nothing was recorded."""
        value = params.get("identity.max_links")
        return None if value in (None, "") else cls(int(value))

    def describe(self) -> str:
        return f"NHIP_IDENTITY_MAX_LINKS={self.max_links}"


SET_ASIDE_COLUMNS = ["id_type", "id_value", "first_seen", "n_events", "linked_type", "linked", "via",
                     "reason", "customers"]


def customer_id_for(id_type: str, id_value: str) -> str:
    """The stable customer id of a component whose oldest identifier is (id_type, id_value)."""
    return "c_" + hashlib.sha1(f"{id_type}:{id_value}".encode()).hexdigest()[:12]


#
# Nodes are numbered in age order (first seen, then type rank, then value), so the oldest identifier of a
# component is simply its smallest node number, and the graph work after the two queries below runs on
# integer arrays. Identifier strings are only touched to name customers.


def _graph(con: duckdb.DuckDBPyConnection, as_of: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(nodes, links) as of `as_of`: one grouping per identifier column, and one copy of the events that
    carry two or more identifiers (the only ones that link).

    nodes: id_type, id_value, first_seen, n_events, node (0… in age order), rank (type rank).
    links: every pair of identifiers carried by one event, once per pair: a_type, a_value, b_type,
    b_value, first_ts, event_key, n_events, and the node numbers a, b. `a` is the identifier whose type
    comes first in IDENTIFIER_FIELDS; `event_key` is the earliest event carrying both (ties broken by key),
    so the answer does not depend on import order.
    """
    per_type = " UNION ALL ".join(
        f"SELECT '{f}' AS id_type, {TYPE_RANK[f]} AS rank, {f} AS id_value, min(ts) AS first_seen, "
        f"count(*) AS n_events FROM events WHERE ts <= $as_of AND {f} IS NOT NULL GROUP BY {f}"
        for f in IDENTIFIER_FIELDS
    )
    several = " + ".join(f"CAST({f} IS NOT NULL AS INTEGER)" for f in IDENTIFIER_FIELDS)
    long = " UNION ALL ".join(
        f"SELECT rid, event_key, ts, {TYPE_RANK[f]} AS rank, {f} AS id_value FROM _identity_multi "
        f"WHERE {f} IS NOT NULL"
        for f in IDENTIFIER_FIELDS
    )
    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _identity_nodes AS
            SELECT *, CAST(row_number() OVER (ORDER BY first_seen, rank, id_value) - 1 AS BIGINT) AS node
            FROM ({per_type})""",
            {"as_of": as_of},
        )
        # Events carrying two or more identifiers are few (4 % of the demo shop's): copy them once
        # instead of scanning the whole store once per identifier type.
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _identity_multi AS SELECT row_number() OVER () AS rid, event_key, "
            f"ts, {', '.join(IDENTIFIER_FIELDS)} FROM events WHERE ts <= $as_of AND {several} >= 2",
            {"as_of": as_of},
        )
        nodes = con.execute(
            "SELECT id_type, id_value, first_seen, n_events, node, rank FROM _identity_nodes ORDER BY node"
        ).df()
        links = con.execute(
            f"""
            WITH long AS (
                SELECT l.rid, l.event_key, l.ts, l.rank, n.node
                FROM ({long}) l JOIN _identity_nodes n ON n.rank = l.rank AND n.id_value = l.id_value
            ),
            pairs AS (
                SELECT a.node AS a, b.node AS b, min(a.ts) AS first_ts,
                       arg_min(a.event_key, (a.ts, a.event_key)) AS event_key, count(*) AS n_events
                FROM long a JOIN long b ON a.rid = b.rid AND a.rank < b.rank
                GROUP BY ALL
            )
            SELECT na.id_type AS a_type, na.id_value AS a_value, nb.id_type AS b_type,
                   nb.id_value AS b_value, p.first_ts, p.event_key, p.n_events, p.a, p.b
            FROM pairs p JOIN _identity_nodes na ON na.node = p.a JOIN _identity_nodes nb ON nb.node = p.b
            ORDER BY na.rank, na.id_value, nb.rank, nb.id_value
            """
        ).df()
    finally:
        con.execute("DROP TABLE IF EXISTS _identity_nodes")
        con.execute("DROP TABLE IF EXISTS _identity_multi")
    nodes = nodes.astype({"id_type": object, "id_value": object})
    links = links.astype({c: object for c in ("a_type", "a_value", "b_type", "b_value", "event_key")})
    return nodes, links


def id_key(types: pd.Series, values: pd.Series) -> pd.Series:
    return types.astype(object) + "\x1f" + values.astype(object)


def _adjacency(links: pd.DataFrame, rank: np.ndarray) -> pd.DataFrame:
    """Links in both directions as integer (x, y, y_rank) rows; `rank` is the type rank per node."""
    x = np.concatenate([links["a"].to_numpy(), links["b"].to_numpy()])
    y = np.concatenate([links["b"].to_numpy(), links["a"].to_numpy()])
    return pd.DataFrame({"x": x, "y": y, "x_rank": rank[x], "y_rank": rank[y]})


def _over_limit(reach: pd.DataFrame, max_links: int, via: str) -> pd.DataFrame:
    """Per node x, its worst type of strong identifiers reached, where that count exceeds the limit.

    `reach` holds distinct (x, y) pairs, so a group's size is its number of distinct identifiers."""
    counts = reach.groupby(["x", "y_rank"]).size().rename("linked").reset_index()
    counts = counts[counts["linked"] > max_links]
    worst = counts.sort_values(["x", "linked", "y_rank"], ascending=[True, False, True])
    worst = worst.drop_duplicates("x")
    return pd.DataFrame({"node": worst["x"].to_numpy(dtype=np.int64),
                         "linked_rank": worst["y_rank"].to_numpy(dtype=np.int64),
                         "linked": worst["linked"].to_numpy(dtype=np.int64), "via": via})


def find_set_aside(links: pd.DataFrame, nodes: pd.DataFrame, max_links: int) -> pd.DataFrame:
    """Identifiers shared by too many distinct strong identities (see the module docstring).

    `links` and `nodes` as returned by `_graph`. Columns: id_type, id_value, linked_type (the type over the
    limit), linked (how many distinct values of it), via (`direct`, or `device`: reached through
    cookies/devices), node.
    """
    rank = nodes["rank"].to_numpy()
    adj = _adjacency(links, rank)
    device_ranks = [TYPE_RANK[t] for t in DEVICE_TYPES]
    x_device = adj["x_rank"].isin(device_ranks)
    y_strong = ~adj["y_rank"].isin(device_ranks)

    device_to_strong = adj[x_device & y_strong]
    devices = _over_limit(device_to_strong, max_links, "direct")

    direct = adj[~x_device & y_strong]
    to_device = adj[~x_device & ~y_strong & ~adj["y"].isin(devices["node"])]
    behind = device_to_strong[["x", "y", "y_rank"]].set_axis(["d", "z", "z_rank"], axis=1)
    hop = to_device[["x", "y"]].merge(behind, left_on="y", right_on="d")
    hop = hop[hop["z"] != hop["x"]]
    hop = hop[["x", "z", "z_rank"]].set_axis(["x", "y", "y_rank"], axis=1)

    direct_out = _over_limit(direct, max_links, "direct")
    reach = pd.concat([direct[["x", "y", "y_rank"]], hop], ignore_index=True).drop_duplicates(["x", "y"])
    strong = _over_limit(reach, max_links, "device")
    strong = strong[~strong["node"].isin(direct_out["node"])]
    found = pd.concat([devices, direct_out, strong], ignore_index=True)
    found = found.merge(nodes[["node", "id_type", "id_value", "rank"]], on="node")
    found["linked_type"] = [IDENTIFIER_FIELDS[r] for r in found["linked_rank"]]
    found["linked"] = found["linked"].astype("int64")
    found = found.sort_values(["rank", "id_value"]).reset_index(drop=True)
    return found[["id_type", "id_value", "linked_type", "linked", "via", "node"]]


@dataclass
class Resolution:
    """Everything resolution knows as of a date.

    identity: one row per identifier that belongs to a customer (IDENTITY_COLUMNS).
    set_aside: identifiers not used to link (SET_ASIDE_COLUMNS); they belong to no customer.
    links: every pair of identifiers seen together, with its first event and whether it was `used`.
    nodes: every identifier seen, with first_seen and n_events.
    """

    as_of: datetime
    identity: pd.DataFrame
    set_aside: pd.DataFrame
    links: pd.DataFrame
    nodes: pd.DataFrame
    config: IdentityConfig
    _customer: dict[str, str] = field(default_factory=dict, repr=False)

    def customer_of(self, id_type: str, id_value: str) -> str | None:
        if not self._customer:
            self._customer = dict(zip(id_key(self.identity["id_type"], self.identity["id_value"]),
                                      self.identity["customer_id"]))
        return self._customer.get(f"{id_type}\x1f{id_value}")


def resolve_graph(con: duckdb.DuckDBPyConnection, as_of: datetime, config: IdentityConfig) -> Resolution:
    """Resolve identities as of `as_of` and keep the evidence (links, set-aside identifiers)."""
    nodes, links = _graph(con, as_of)
    set_aside = find_set_aside(links, nodes, config.max_links)
    out = np.zeros(len(nodes), dtype=bool)
    out[set_aside["node"].to_numpy(dtype=np.int64)] = True
    links["used"] = ~(out[links["a"].to_numpy()] | out[links["b"].to_numpy()])
    identity, customer_of_node = _components(nodes, links[links["used"]], out)

    if len(set_aside):
        set_aside = set_aside.merge(nodes[["node", "first_seen", "n_events"]], on="node", how="left")
        set_aside["reason"] = [
            f"linked to {n} distinct {t} values" + (" through shared devices" if v == "device" else "")
            for n, t, v in zip(set_aside["linked"], set_aside["linked_type"], set_aside["via"])
        ]
        set_aside["customers"] = _customers_touched(set_aside, links, customer_of_node)
    else:
        kinds = {"first_seen": "datetime64[us]", "n_events": "int64", "linked": "int64",
                 "customers": "int64"}
        set_aside = pd.DataFrame({c: pd.Series(dtype=kinds.get(c, object)) for c in SET_ASIDE_COLUMNS})
    text = {c: object for c in ("id_type", "id_value", "linked_type", "via", "reason")}
    set_aside = set_aside[SET_ASIDE_COLUMNS].astype(text).reset_index(drop=True)
    return Resolution(as_of, identity, set_aside, links, nodes, config)


def resolve_latest(con: duckdb.DuckDBPyConnection, as_of: datetime | None, config: IdentityConfig) -> Resolution:
    """`resolve_graph` as of `as_of`, or as of the latest event when None (what the identity commands
    show by default); LookupError for an empty store."""
    when = as_of or con.execute("SELECT max(ts) FROM events").fetchone()[0]
    if when is None:
        raise LookupError("the event store is empty; run `nhip ingest FILE` first")
    return resolve_graph(con, when, config)


def _components(nodes: pd.DataFrame, used: pd.DataFrame, out: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """The identity map, and the customer id (or None) of every node.

    Set-aside nodes (`out`) have no used link, so they are components of their own; they get no customer.
    A component's customer is named after its smallest node number: nodes are numbered in age order.
    """
    n = len(nodes)
    if n == 0:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in IDENTITY_COLUMNS})
        return empty, np.empty(0, dtype=object)
    a, b = used["a"].to_numpy(), used["b"].to_numpy()
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    root = np.full(component.max() + 1, n, dtype=np.int64)
    np.minimum.at(root, component, np.arange(n))
    roots = np.unique(root[component[~out]])
    types, values = nodes["id_type"].to_numpy(), nodes["id_value"].to_numpy()
    name_of_root = dict(zip(roots.tolist(), (customer_id_for(types[r], values[r]) for r in roots.tolist())))
    customer = np.array([name_of_root.get(r) for r in root[component].tolist()], dtype=object)
    customer[out] = None
    # Customers in the order of their oldest identifier, each customer's identifiers oldest first.
    order = np.lexsort((np.arange(n), root[component]))
    order = order[~out[order]]
    kept = nodes.iloc[order].assign(customer_id=customer[order])
    return kept[IDENTITY_COLUMNS].reset_index(drop=True), customer


def _customers_touched(set_aside: pd.DataFrame, links: pd.DataFrame, customer_of_node: np.ndarray) -> list[int]:
    """How many distinct customers each set-aside identifier was seen with."""
    counts = []
    a, b = links["a"].to_numpy(), links["b"].to_numpy()
    for node in set_aside["node"].to_numpy():
        neighbours = np.concatenate([b[a == node], a[b == node]])
        counts.append(len({c for c in customer_of_node[neighbours] if c is not None}))
    return counts
