"""The tables of the event store and their columns: one definition for the writer and every reader."""

from __future__ import annotations

from features.schema import IDENTIFIER_FIELDS

# DuckDB types of each table's columns, in order. Segments are written with these types and readers
# see an empty table of these types before the first segment exists.
TABLES: dict[str, dict[str, str]] = {
    "events": {
        "event_key": "VARCHAR",
        "event_id": "VARCHAR",
        "ts": "TIMESTAMP",
        "channel": "VARCHAR",
        "type": "VARCHAR",
        **{f: "VARCHAR" for f in IDENTIFIER_FIELDS},
        "pid_type": "VARCHAR",
        "pid_value": "VARCHAR",
        "name": "VARCHAR",
        "amount": "DOUBLE",
        "currency": "VARCHAR",
        "product_id": "VARCHAR",
        "product_name": "VARCHAR",
        "category": "VARCHAR",
        "quantity": "DOUBLE",
        "campaign_id": "VARCHAR",
        "message_id": "VARCHAR",
        "properties": "VARCHAR",
        "source": "VARCHAR",
        "ingested_at": "TIMESTAMP",
    },
    "quarantine": {"source": "VARCHAR", "line": "BIGINT", "raw": "VARCHAR", "reason": "VARCHAR",
                   "ingested_at": "TIMESTAMP"},
    "imports": {"source": "VARCHAR", "rows_read": "BIGINT", "accepted": "BIGINT", "duplicates": "BIGINT",
                "quarantined": "BIGINT", "started_at": "TIMESTAMP", "finished_at": "TIMESTAMP"},
    "erasures": {"erasure_id": "VARCHAR", "erased_at": "TIMESTAMP", "customers": "INTEGER",
                 "identifiers": "INTEGER", "events": "BIGINT", "quarantined_rows": "BIGINT"},
}
EVENT_COLUMNS: tuple[str, ...] = tuple(TABLES["events"])

# The order rows are written in within a segment: time first, so that Parquet's row-group statistics
# let a snapshot `ts <= as_of` skip the later row groups.
SORT_KEYS: dict[str, str] = {"events": "ts, event_key", "quarantine": "ingested_at, source, line",
                             "imports": "started_at, source", "erasures": "erased_at"}


def typed_select(table: str, source: str) -> str:
    """SELECT of `table`'s columns from `source`, each cast to its type."""
    return "SELECT " + ", ".join(f"CAST({name} AS {kind}) AS {name}" for name, kind in TABLES[table].items()) \
        + f" FROM {source}"


def empty_select(table: str) -> str:
    """A relation with `table`'s columns and no rows, for a table no segment holds yet."""
    columns = ", ".join(f"CAST(NULL AS {kind}) AS {name}" for name, kind in TABLES[table].items())
    return f"SELECT {columns} WHERE false"
