"""Identity resolution: which identifiers belong to one customer, as known at a point in time.

Every event that carries several identifiers (an `identify` with a cookie and an email, a Zalo `follow`
that shares the phone, a POS sale with a loyalty id and a phone) links them. The connected components of
that graph are customers. Only links seen by `as_of` count, so a merge caused by a later purchase cannot
leak into features computed for an earlier date: `resolve(con, as_of)` is a pure function of the stored
events and `as_of`, whatever order they were imported in.

Stable ids. A customer's id is derived from the oldest identifier in its component (first seen, then the
order of `IDENTIFIER_FIELDS`, then the value), so adding unrelated data never renames anyone, and when two
customers merge the merged one keeps the older id. `identity_changes` compares two identity maps and names
every merge (with the link that caused it), split and rename; the feature build appends them to the
`identity_merges` table.

Over-merge guard. Some identifiers are shared by many people: the shop's hotline typed into POS orders of
customers who would not give a number, a `test@gmail.com` typed into sign-up forms, the tablet at the
counter on which customers register. Used as links they would glue strangers into one customer. An
identifier is *set aside* — kept in the store and reported, but not used to link — when it reaches more
than `max_links` (default `MAX_LINKS` = 5) distinct *strong* identifiers of one type:

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
identifier's customer (see `register_resolved_events`).
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone

import duckdb
import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from features.schema import IDENTIFIER_FIELDS

MAX_LINKS = 5
DEVICE_TYPES: tuple[str, ...] = ("anonymous_id",)
STRONG_TYPES: tuple[str, ...] = tuple(t for t in IDENTIFIER_FIELDS if t not in DEVICE_TYPES)
TYPE_RANK = {t: i for i, t in enumerate(IDENTIFIER_FIELDS)}
IDENTITY_COLUMNS = ["id_type", "id_value", "customer_id", "first_seen"]
SET_ASIDE_COLUMNS = ["id_type", "id_value", "first_seen", "n_events", "linked_type", "linked", "via",
                     "reason", "customers"]
CHANGE_COLUMNS = ["recorded_at", "as_of", "previous_as_of", "kind", "kept_customer_id",
                  "absorbed_customer_id", "a_type", "b_type", "event_key", "link_ts", "detail"]


def customer_id_for(id_type: str, id_value: str) -> str:
    """The stable customer id of a component whose oldest identifier is (id_type, id_value)."""
    return "c_" + hashlib.sha1(f"{id_type}:{id_value}".encode("utf-8")).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------------------
# the graph as of a date
# ---------------------------------------------------------------------------------------------------------
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
        f"SELECT rid, ts, {TYPE_RANK[f]} AS rank, {f} AS id_value FROM _identity_multi "
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
        # instead of scanning the whole store once per identifier type. Their keys are fetched by row id
        # afterwards, which spares reading every event's key.
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _identity_multi AS SELECT rowid AS rid, ts, "
            f"{', '.join(IDENTIFIER_FIELDS)} FROM events WHERE ts <= $as_of AND {several} >= 2",
            {"as_of": as_of},
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _identity_keys AS SELECT rowid AS rid, event_key FROM events "
            "WHERE rowid IN (SELECT rid FROM _identity_multi)"
        )
        nodes = con.execute(
            "SELECT id_type, id_value, first_seen, n_events, node, rank FROM _identity_nodes ORDER BY node"
        ).df()
        links = con.execute(
            f"""
            WITH long AS (
                SELECT l.rid, k.event_key, l.ts, l.rank, n.node
                FROM ({long}) l JOIN _identity_nodes n ON n.rank = l.rank AND n.id_value = l.id_value
                JOIN _identity_keys k ON k.rid = l.rid
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
        con.execute("DROP TABLE IF EXISTS _identity_keys")
    nodes = nodes.astype({"id_type": object, "id_value": object})
    links = links.astype({c: object for c in ("a_type", "a_value", "b_type", "b_value", "event_key")})
    return nodes, links


def _key(types: pd.Series, values: pd.Series) -> pd.Series:
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


def find_set_aside(links: pd.DataFrame, nodes: pd.DataFrame, max_links: int = MAX_LINKS) -> pd.DataFrame:
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
    max_links: int = MAX_LINKS
    _customer: dict[str, str] = field(default_factory=dict, repr=False)

    def customer_of(self, id_type: str, id_value: str) -> str | None:
        if not self._customer:
            self._customer = dict(zip(_key(self.identity["id_type"], self.identity["id_value"]),
                                      self.identity["customer_id"]))
        return self._customer.get(f"{id_type}\x1f{id_value}")


def resolve_graph(
    con: duckdb.DuckDBPyConnection, as_of: datetime, max_links: int = MAX_LINKS
) -> Resolution:
    """Resolve identities as of `as_of` and keep the evidence (links, set-aside identifiers)."""
    nodes, links = _graph(con, as_of)
    set_aside = find_set_aside(links, nodes, max_links)
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
    return Resolution(as_of, identity, set_aside, links, nodes, max_links)


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


def resolve(con: duckdb.DuckDBPyConnection, as_of: datetime, max_links: int = MAX_LINKS) -> pd.DataFrame:
    """One row per identifier seen by `as_of` that belongs to a customer: id_type, id_value, customer_id,
    first_seen. Set-aside identifiers (see the module docstring) are not in it."""
    return resolve_graph(con, as_of, max_links).identity


# ---------------------------------------------------------------------------------------------------------
# events → customers
# ---------------------------------------------------------------------------------------------------------


def _ts_literal(as_of: datetime) -> str:
    return f"TIMESTAMP '{pd.Timestamp(as_of).strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def register_resolved_events(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    identity: pd.DataFrame | None = None,
    set_aside: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Create the temp view `resolved_events`: events up to `as_of`, each with its customer_id.

    An event belongs to the customer of its primary identifier (`pid_*`, the first identifier it carries);
    when that one is set aside, to the customer of the first of its other identifiers that has one. Events
    carrying only set-aside identifiers are left out. Also creates the temp table `identity_map`.
    Returns the identity map it used, so callers can also report identifiers per customer.

    Pass `identity` (and the `set_aside` list of the same resolution) to reuse a resolution already
    computed for `as_of`. With the set-aside list, the events that need a fallback customer are found
    by a semi-join with that short list; without it, by an anti-join of every event with the identity
    map, which on 10M events costs about a second more.
    """
    if identity is None:
        resolution = resolve_graph(con, as_of)
        identity, set_aside = resolution.identity, resolution.set_aside
    con.register("identity_map_df", identity)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE identity_map AS SELECT id_type, id_value, customer_id "
        "FROM identity_map_df"
    )
    con.unregister("identity_map_df")
    until = _ts_literal(as_of)
    # Row ids first, on the narrow key columns; the whole rows are fetched by row id afterwards, which
    # spares reading every column of every event.
    if set_aside is None:
        orphan_rows = (f"SELECT rowid AS rid FROM events e WHERE e.ts <= {until} AND NOT EXISTS (SELECT 1 FROM "
                       "identity_map m WHERE m.id_type = e.pid_type AND m.id_value = e.pid_value)")
    else:
        con.register("set_aside_df", set_aside[["id_type", "id_value"]])
        con.execute("CREATE OR REPLACE TEMP TABLE identity_set_aside AS SELECT * FROM set_aside_df")
        con.unregister("set_aside_df")
        orphan_rows = (f"SELECT e.rowid AS rid FROM events e SEMI JOIN identity_set_aside s "
                       f"ON e.pid_type = s.id_type AND e.pid_value = s.id_value WHERE e.ts <= {until}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE identity_orphan_rows AS {orphan_rows}")
    orphans = "SELECT * FROM events WHERE rowid IN (SELECT rid FROM identity_orphan_rows)"
    joins = "\n".join(
        f"LEFT JOIN identity_map m_{f} ON m_{f}.id_type = '{f}' AND m_{f}.id_value = e.{f}"
        for f in IDENTIFIER_FIELDS
    )
    first = ", ".join(f"m_{f}.customer_id" for f in IDENTIFIER_FIELDS)
    # The few events whose primary identifier is set aside, copied whole with their fallback customer,
    # so the view below needs no second pass over every event to find them.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE identity_fallback AS
        SELECT coalesce({first}) AS customer_id, e.*
        FROM ({orphans}) e
        {joins}
        WHERE coalesce({first}) IS NOT NULL
        """
    )
    con.execute(
        "CREATE OR REPLACE TEMP VIEW resolved_events AS "
        "SELECT m.customer_id, e.* FROM events e JOIN identity_map m "
        "ON e.pid_type = m.id_type AND e.pid_value = m.id_value "
        f"WHERE e.ts <= {until} "
        "UNION ALL "
        "SELECT * FROM identity_fallback"
    )
    return identity


def identifiers_wide(identity: pd.DataFrame) -> pd.DataFrame:
    """One row per customer, one column per identifier type (values joined by `|` when several)."""
    if identity.empty:
        return pd.DataFrame(columns=list(IDENTIFIER_FIELDS)).rename_axis("customer_id")
    wide = (
        identity.sort_values(["customer_id", "id_type", "first_seen"])
        .groupby(["customer_id", "id_type"])["id_value"]
        .agg("|".join)
        .unstack("id_type")
    )
    return wide.reindex(columns=[f for f in IDENTIFIER_FIELDS if f in wide.columns])


# ---------------------------------------------------------------------------------------------------------
# reports: set-aside identifiers, export, attributes
# ---------------------------------------------------------------------------------------------------------


def set_aside_report(con: duckdb.DuckDBPyConnection, resolution: Resolution) -> pd.DataFrame:
    """The set-aside identifiers with `unresolved_events`: events that carry nothing else usable and so
    belong to no customer."""
    report = resolution.set_aside.copy()
    if report.empty:
        return report.assign(unresolved_events=pd.Series(dtype="int64"))
    con.register("kept_ids", resolution.identity[["id_type", "id_value"]])
    con.register("set_aside_ids", report[["id_type", "id_value"]])
    usable = " OR ".join(
        f"EXISTS (SELECT 1 FROM kept_ids k WHERE k.id_type = '{f}' AND k.id_value = e.{f})"
        for f in IDENTIFIER_FIELDS
    )
    counts = " UNION ALL ".join(
        f"SELECT '{f}' AS id_type, e.{f} AS id_value, count(*) AS unresolved_events FROM stranded e "
        f"WHERE e.{f} IN (SELECT id_value FROM set_aside_ids WHERE id_type = '{f}') GROUP BY e.{f}"
        for f in IDENTIFIER_FIELDS
    )
    try:
        stranded = con.execute(
            f"WITH stranded AS (SELECT * FROM events e WHERE e.ts <= {_ts_literal(resolution.as_of)} "
            f"AND NOT ({usable})) {counts}"
        ).df()
    finally:
        con.unregister("kept_ids")
        con.unregister("set_aside_ids")
    report = report.merge(stranded, on=["id_type", "id_value"], how="left")
    report["unresolved_events"] = report["unresolved_events"].fillna(0).astype("int64")
    return report


def export_identities(resolution: Resolution) -> pd.DataFrame:
    """The audit contract: one row per (customer_id, id_type, id_value), normalised values, sorted.

    Columns: customer_id, id_type, id_value, first_seen (ISO 8601, Vietnam time with its +07:00 offset).
    """
    frame = resolution.identity.copy()
    frame["first_seen"] = _local_iso(frame["first_seen"])
    frame = frame.sort_values(["customer_id", "id_type", "id_value"], kind="stable")
    return frame[["customer_id", "id_type", "id_value", "first_seen"]].reset_index(drop=True)


def _local_iso(ts: pd.Series) -> pd.Series:
    local = pd.to_datetime(ts) + pd.Timedelta(hours=7)
    return local.dt.strftime("%Y-%m-%dT%H:%M:%S+07:00").astype(object)


ATTRIBUTE_FIELDS: tuple[str, ...] = ("name", "email", "phone")


def customer_attributes(
    con: duckdb.DuckDBPyConnection, as_of: datetime, identity: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Every distinct name, email and phone each customer's events carried, with where and when.

    Merging never drops an attribute: two names for one customer are two rows, each with its channel,
    source file, first/last time seen and number of events. Values are as stored (names as written,
    phones and emails normalised). Columns: customer_id, attribute, value, channel, source, first_seen,
    last_seen, n_events.
    """
    register_resolved_events(con, as_of, identity)
    parts = " UNION ALL ".join(
        f"SELECT customer_id, '{a}' AS attribute, {a} AS value, channel, source, ts "
        f"FROM resolved_events WHERE {a} IS NOT NULL"
        for a in ATTRIBUTE_FIELDS
    )
    return con.execute(
        f"""
        SELECT customer_id, attribute, value, channel, coalesce(source, '') AS source,
               min(ts) AS first_seen, max(ts) AS last_seen, count(*) AS n_events
        FROM ({parts}) GROUP BY ALL
        ORDER BY customer_id, attribute, value, channel, source
        """
    ).df()


# ---------------------------------------------------------------------------------------------------------
# explain
# ---------------------------------------------------------------------------------------------------------


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


def candidate_identifiers(value: str, id_type: str | None = None) -> list[tuple[str, str]]:
    """The stored forms a raw identifier could take: a phone or email normalised, others as given."""
    from features.emails import normalize_email
    from features.phones import normalize_phone

    raw = value.strip()
    types = [id_type] if id_type else list(IDENTIFIER_FIELDS)
    out = []
    for t in types:
        if t == "phone":
            normal = normalize_phone(raw)
        elif t == "email":
            normal = normalize_email(raw)
        else:
            normal = raw or None
        if normal is not None:
            out.append((t, normal))
    return out


def find_identifier(
    resolution: Resolution, value: str, id_type: str | None = None
) -> list[tuple[str, str]]:
    """The identifiers seen by `as_of` that `value` may denote (a customer id denotes its identifiers)."""
    nodes = resolution.nodes
    known = set(_key(nodes["id_type"], nodes["id_value"]))
    if id_type in (None, "customer_id") and value.strip().startswith("c_"):
        rows = resolution.identity[resolution.identity["customer_id"] == value.strip()]
        if len(rows):
            oldest = rows.sort_values("first_seen").iloc[0]
            return [(oldest["id_type"], oldest["id_value"])]
    return [(t, v) for t, v in candidate_identifiers(value, id_type) if f"{t}\x1f{v}" in known]


def explain(
    con: duckdb.DuckDBPyConnection, resolution: Resolution, id_type: str, id_value: str
) -> Explanation:
    """Why the identifier belongs to its customer: every identifier of the customer and, for each, the
    link (event) through which it was reached from the queried one, breadth first (fewest hops), the
    earliest link first."""
    query = (id_type, id_value)
    links = resolution.links
    set_aside = resolution.set_aside
    out_keys = set(_key(set_aside["id_type"], set_aside["id_value"]))
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
    member_keys = set(_key(members["id_type"], members["id_value"]))
    used = links[links["used"]]
    a_key = _key(used["a_type"], used["a_value"])  # both ends of a used link share a customer
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
    touching = links[_key(links["a_type"], links["a_value"]).isin(member_keys)
                     | _key(links["b_type"], links["b_value"]).isin(member_keys)]
    near = set(_key(touching["a_type"], touching["a_value"])) | set(
        _key(touching["b_type"], touching["b_value"]))
    nearby = set_aside[_key(set_aside["id_type"], set_aside["id_value"]).isin(near)]
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
    when = _local(ex.as_of)
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
        lines.append(f"  {row.id_type:<17} {row.id_value:<40} first seen {_local(row.first_seen)}, "
                     f"{int(row.n_events):,} events")
    if ex.steps:
        lines.append(f"why they are one customer ({len(ex.steps)} links, starting from {t} {v}):")
        for step in ex.steps:
            e = step.event
            carried = " ".join(f"{k}={val}" for k, val in e.get("identifiers", {}).items())
            more = f" (and {step.n_events - 1:,} more events)" if step.n_events > 1 else ""
            lines.append(f"  {step.parent[0]} {step.parent[1]} — {step.child[0]} {step.child[1]}")
            lines.append(f"      {e.get('channel', '?')} {e.get('type', '?')} at {_local(e.get('ts'))}, "
                         f"event {e.get('event_id') or e['event_key']} from {e.get('source') or '?'}"
                         f"{more}; carried {carried}")
    else:
        lines.append("no links: this identifier is a customer on its own")
    if len(ex.set_aside):
        lines.append("set aside nearby (seen with this customer, not used to link):")
        for row in ex.set_aside.itertuples(index=False):
            lines.append(f"  {row.id_type} {row.id_value}: {row.reason}")
    return lines


def _local(ts) -> str:
    if ts is None or (isinstance(ts, float) and np.isnan(ts)):
        return "?"
    return (pd.Timestamp(ts) + pd.Timedelta(hours=7)).strftime("%Y-%m-%d %H:%M:%S +07:00")


# ---------------------------------------------------------------------------------------------------------
# merges, splits and renames between two builds
# ---------------------------------------------------------------------------------------------------------


def identity_changes(
    previous: pd.DataFrame,
    resolution: Resolution,
    previous_as_of: datetime | None = None,
    recorded_at: datetime | None = None,
) -> pd.DataFrame:
    """What happened to the customers of `previous` (an identity map) in `resolution` (CHANGE_COLUMNS).

    - merge: identifiers of `absorbed_customer_id` now belong to `kept_customer_id`, the older of the
      two; `a_type`/`b_type`/`event_key`/`link_ts` name the earliest link joining them.
    - split: part of `kept_customer_id` is now `absorbed_customer_id` (read: split off into); `a_type` is
      the type of the identifier set aside that had held them together, `detail` says why.
    - renamed: all of a customer's identifiers now carry another id (an identifier older than its oldest
      appeared, e.g. a backfill, or its oldest identifier was set aside).
    Identifiers new since `previous` join silently; identifiers gone (erased) are not reported.
    """
    recorded_at = recorded_at or datetime.now(timezone.utc).replace(tzinfo=None)
    current = resolution.identity
    rows: list[dict] = []
    base = {"recorded_at": recorded_at, "as_of": resolution.as_of, "previous_as_of": previous_as_of}
    if previous is None or previous.empty or current.empty:
        return pd.DataFrame(rows, columns=CHANGE_COLUMNS)
    before = previous[["id_type", "id_value", "customer_id"]].rename(columns={"customer_id": "before"})
    both = current[["id_type", "id_value", "customer_id"]].merge(before, on=["id_type", "id_value"])

    used = resolution.links[resolution.links["used"]].sort_values(["first_ts", "event_key"])
    customer_of = dict(zip(_key(current["id_type"], current["id_value"]), current["customer_id"]))
    a_keys = _key(used["a_type"], used["a_value"])
    links_of = dict(tuple(used.assign(key_a=a_keys, key_b=_key(used["b_type"], used["b_value"]),
                                      customer=a_keys.map(customer_of)).groupby("customer")))
    both["key"] = _key(both["id_type"], both["id_value"])
    anchors = both.drop_duplicates(["customer_id", "before"]).groupby("customer_id")

    groups = both.groupby("customer_id")["before"].agg(lambda s: sorted(set(s)))
    for customer, befores in groups.items():
        if len(befores) == 1:
            whole = both.loc[both["before"] == befores[0], "customer_id"].nunique() == 1
            if befores[0] != customer and whole:
                rows.append({**base, "kind": "renamed", "kept_customer_id": customer,
                             "absorbed_customer_id": befores[0], "detail": "oldest identifier changed"})
            continue
        reference = customer if customer in befores else befores[0]
        anchor = dict(zip(*[anchors.get_group(customer)[c] for c in ("before", "key")]))
        for absorbed, link in _merge_links(links_of.get(customer), anchor, reference).items():
            rows.append({**base, "kind": "merge", "kept_customer_id": customer,
                         "absorbed_customer_id": absorbed,
                         "a_type": None if link is None else link.a_type,
                         "b_type": None if link is None else link.b_type,
                         "event_key": None if link is None else link.event_key,
                         "link_ts": None if link is None else link.first_ts,
                         "detail": f"{len(befores)} customers became one"})

    set_aside = resolution.set_aside
    for before_id, afters in both.groupby("before")["customer_id"].agg(lambda s: sorted(set(s))).items():
        if len(afters) < 2:
            continue
        was = previous[previous["customer_id"] == before_id]
        gone = set_aside.merge(was[["id_type", "id_value"]], on=["id_type", "id_value"])
        cause = gone.iloc[0] if len(gone) else None
        for after in afters:
            if after == before_id:
                continue
            why = "split" if cause is None else f"{cause['id_type']} set aside: {cause['reason']}"
            rows.append({**base, "kind": "split", "kept_customer_id": before_id,
                         "absorbed_customer_id": after,
                         "a_type": None if cause is None else cause["id_type"], "detail": why})
    frame = pd.DataFrame(rows, columns=CHANGE_COLUMNS)
    return frame.sort_values(["kind", "kept_customer_id", "absorbed_customer_id"], ignore_index=True)


def _merge_links(links: pd.DataFrame | None, anchor: dict[str, str], reference: str) -> dict:
    """For each previous customer other than `reference` (`anchor`: previous customer → one of its
    identifiers in the merged customer): the link that joined it to `reference`.

    Links are replayed in time order (union-find); the cause of a merge is the link after which the two
    previous customers are first connected, i.e. the one that completed the path between them.
    """
    found: dict[str, object] = {b: None for b in anchor if b != reference}
    if links is None:
        return found
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    waiting = set(found)
    for link in links.itertuples(index=False):
        parent[root(link.key_a)] = root(link.key_b)
        for b in [b for b in sorted(waiting) if root(anchor[b]) == root(anchor[reference])]:
            found[b] = link
            waiting.discard(b)
        if not waiting:
            break
    return found


def write_identity_tables(
    con: duckdb.DuckDBPyConnection,
    resolution: Resolution,
    previous: pd.DataFrame | None,
    previous_as_of: datetime | None,
    attributes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Persist the identity map, the set-aside identifiers, attributes, and append the changes since
    `previous` to `identity_merges`. Call inside the build's transaction. Returns the changes."""
    changes = identity_changes(previous, resolution, previous_as_of)
    con.register("identity_df", resolution.identity)
    con.execute("CREATE OR REPLACE TABLE identity_map AS SELECT * FROM identity_df")
    con.unregister("identity_df")
    con.register("set_aside_df", resolution.set_aside.assign(as_of=resolution.as_of))
    con.execute("CREATE OR REPLACE TABLE identity_set_aside AS SELECT * FROM set_aside_df")
    con.unregister("set_aside_df")
    if attributes is not None:
        con.register("attributes_df", attributes)
        con.execute("CREATE OR REPLACE TABLE customer_attributes AS SELECT * FROM attributes_df")
        con.unregister("attributes_df")
    con.execute(
        "CREATE TABLE IF NOT EXISTS identity_merges (recorded_at TIMESTAMP, as_of TIMESTAMP, "
        "previous_as_of TIMESTAMP, kind VARCHAR, kept_customer_id VARCHAR, absorbed_customer_id VARCHAR, "
        "a_type VARCHAR, b_type VARCHAR, event_key VARCHAR, link_ts TIMESTAMP, detail VARCHAR)"
    )
    if len(changes):
        con.register("changes_df", changes)
        con.execute(f"INSERT INTO identity_merges SELECT {', '.join(CHANGE_COLUMNS)} FROM changes_df")
        con.unregister("changes_df")
    return changes


def stored_identity_map(con: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame | None, datetime | None]:
    """The identity map and as_of of the last build in this store (None, None before the first)."""
    db = con.execute("SELECT current_database()").fetchone()[0]
    tables = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND table_schema = 'main'",
        [db]).fetchall()}
    if "identity_map" not in tables:
        return None, None
    previous = con.execute(f'SELECT * FROM "{db}".main.identity_map').df()
    as_of = None
    if "profiles" in tables:
        as_of = con.execute(f'SELECT max(as_of) FROM "{db}".main.profiles').fetchone()[0]
    return previous, as_of
