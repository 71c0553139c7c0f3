"""Identity resolution: which identifiers belong to one customer, as known at a point in time.

Every event that carries several identifiers (an `identify` with a cookie and an email, a Zalo `follow`
that shares the phone, a POS sale with a loyalty id and a phone) links them. The connected components of
that graph are customers. Only links seen by `as_of` count, so a merge caused by a later purchase cannot
leak into features computed for an earlier date.

A customer's id is derived from the oldest identifier in its component, so it does not depend on the
order rows were imported and adding unrelated data never renames anyone.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from features.schema import IDENTIFIER_FIELDS


def _nodes(con: duckdb.DuckDBPyConnection, as_of: datetime) -> pd.DataFrame:
    parts = [
        f"SELECT '{f}' AS id_type, {f} AS id_value, min(ts) AS first_seen FROM events "
        f"WHERE ts <= $as_of AND {f} IS NOT NULL GROUP BY {f}"
        for f in IDENTIFIER_FIELDS
    ]
    return con.execute(" UNION ALL ".join(parts), {"as_of": as_of}).df()


def _links(con: duckdb.DuckDBPyConnection, as_of: datetime) -> pd.DataFrame:
    parts = [
        f"SELECT DISTINCT pid_type AS a_type, pid_value AS a_value, '{f}' AS b_type, {f} AS b_value "
        f"FROM events WHERE ts <= $as_of AND {f} IS NOT NULL AND pid_type <> '{f}'"
        for f in IDENTIFIER_FIELDS
    ]
    return con.execute(" UNION ALL ".join(parts), {"as_of": as_of}).df()


def customer_id_for(id_type: str, id_value: str) -> str:
    """The stable customer id of a component whose oldest identifier is (id_type, id_value)."""
    return "c_" + hashlib.sha1(f"{id_type}:{id_value}".encode("utf-8")).hexdigest()[:12]


def resolve(con: duckdb.DuckDBPyConnection, as_of: datetime) -> pd.DataFrame:
    """One row per identifier seen by `as_of`: id_type, id_value, customer_id, first_seen."""
    nodes = _nodes(con, as_of)
    if nodes.empty:
        return nodes.assign(customer_id=pd.Series(dtype=object))
    key = nodes["id_type"] + "\x1f" + nodes["id_value"]
    index = pd.Series(np.arange(len(nodes)), index=key.to_numpy())
    links = _links(con, as_of)
    a = index.reindex((links["a_type"] + "\x1f" + links["a_value"]).to_numpy()).to_numpy()
    b = index.reindex((links["b_type"] + "\x1f" + links["b_value"]).to_numpy()).to_numpy()
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(nodes), len(nodes)))
    _, component = connected_components(graph, directed=False)
    nodes["component"] = component
    type_rank = {t: i for i, t in enumerate(IDENTIFIER_FIELDS)}
    nodes["_rank"] = nodes["id_type"].map(type_rank)
    oldest = (
        nodes.sort_values(["component", "first_seen", "_rank", "id_value"])
        .drop_duplicates("component")
        .set_index("component")
    )
    names = {
        comp: customer_id_for(row.id_type, row.id_value) for comp, row in oldest.iterrows()
    }
    nodes["customer_id"] = nodes["component"].map(names)
    return nodes[["id_type", "id_value", "customer_id", "first_seen"]].reset_index(drop=True)


def register_resolved_events(
    con: duckdb.DuckDBPyConnection, as_of: datetime, identity: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Create the temp view `resolved_events`: events up to `as_of`, each with its customer_id.

    Returns the identity map it used, so callers can also report identifiers per customer.
    """
    identity = resolve(con, as_of) if identity is None else identity
    con.register("identity_map_df", identity)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE identity_map AS SELECT id_type, id_value, customer_id "
        "FROM identity_map_df"
    )
    con.unregister("identity_map_df")
    con.execute(
        "CREATE OR REPLACE TEMP VIEW resolved_events AS "
        "SELECT m.customer_id, e.* FROM events e JOIN identity_map m "
        "ON e.pid_type = m.id_type AND e.pid_value = m.id_value "
        f"WHERE e.ts <= TIMESTAMP '{pd.Timestamp(as_of).strftime('%Y-%m-%d %H:%M:%S.%f')}'"
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
