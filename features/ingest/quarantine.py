"""The quarantine: rows that could not be imported, with their raw text, source and reason.

Rows land here from every import path (`features.ingest.importer`); these are the reads behind
`nhip quarantine list|export`, so a user can fix the rows and import them again.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.store import open_store

QUARANTINE_COLUMNS = ("source", "line", "reason", "raw", "ingested_at")


def quarantined_rows(store_path: Path, source: str | None = None, reason: str | None = None) -> pd.DataFrame:
    """Quarantined rows in import order, optionally of one source and with reasons containing `reason`."""
    where, params = [], []
    if source:
        where.append("source = ?")
        params.append(source)
    if reason:
        where.append("contains(reason, ?)")
        params.append(reason)
    sql = f"SELECT {', '.join(QUARANTINE_COLUMNS)} FROM quarantine"
    sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY ingested_at, source, line"
    with open_store(store_path) as con:
        return con.execute(sql, params).df()


def reason_counts(rows: pd.DataFrame) -> pd.Series:
    """How many rows per (source, reason), the most frequent first."""
    return rows.groupby(["source", "reason"]).size().sort_values(ascending=False)
