"""Reports on a resolution: set-aside identifiers with the events they strand, the identity export
(the audit contract), identifiers per customer, and every attribute a customer was seen with.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from features.identity.events import ResolvedEvents, ts_literal
from features.identity.graph import Resolution
from features.schema import IDENTIFIER_FIELDS
from nhip.clock import local_iso


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
            f"WITH stranded AS (SELECT * FROM events e WHERE e.ts <= {ts_literal(resolution.as_of)} "
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
    frame["first_seen"] = local_iso(frame["first_seen"])
    frame = frame.sort_values(["customer_id", "id_type", "id_value"], kind="stable")
    return frame[["customer_id", "id_type", "id_value", "first_seen"]].reset_index(drop=True)


ATTRIBUTE_FIELDS: tuple[str, ...] = ("name", "email", "phone")


def customer_attributes(events: ResolvedEvents) -> pd.DataFrame:
    """Every distinct name, email and phone each customer's events carried, with where and when.

    Merging never drops an attribute: two names for one customer are two rows, each with its channel,
    source file, first/last time seen and number of events. Values are as stored (names as written,
    phones and emails normalised). Columns: customer_id, attribute, value, channel, source, first_seen,
    last_seen, n_events.
    """
    parts = " UNION ALL ".join(
        f"SELECT customer_id, '{a}' AS attribute, {a} AS value, channel, source, ts "
        f"FROM {events.source} WHERE {a} IS NOT NULL"
        for a in ATTRIBUTE_FIELDS
    )
    return events.con.execute(
        f"""
        SELECT customer_id, attribute, value, channel, coalesce(source, '') AS source,
               min(ts) AS first_seen, max(ts) AS last_seen, count(*) AS n_events
        FROM ({parts}) GROUP BY ALL
        ORDER BY customer_id, attribute, value, channel, source
        """
    ).df()
