"""The DuckDB event store: one file holding immutable events, quarantined rows and derived tables.

Events are append-only and keyed by `event_key` (see `features.ingest.keys.event_keys`), so importing the same
data twice stores it once. Timestamps are stored as naive UTC `TIMESTAMP`s; local hours are derived with
Vietnam's fixed offset (`nhip.clock`), which keeps DuckDB free of time-zone extensions.
Derived tables (identity map, profiles) can always be rebuilt from `events`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from features.schema import IDENTIFIER_FIELDS

_EVENT_COLUMNS = {
    "event_key": "VARCHAR PRIMARY KEY",
    "event_id": "VARCHAR",
    "ts": "TIMESTAMP NOT NULL",
    "channel": "VARCHAR NOT NULL",
    "type": "VARCHAR NOT NULL",
    **{f: "VARCHAR" for f in IDENTIFIER_FIELDS},
    "pid_type": "VARCHAR NOT NULL",
    "pid_value": "VARCHAR NOT NULL",
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
}
EVENT_COLUMNS: tuple[str, ...] = tuple(_EVENT_COLUMNS)

_DDL = [
    "CREATE TABLE IF NOT EXISTS events ("
    + ", ".join(f"{name} {kind}" for name, kind in _EVENT_COLUMNS.items())
    + ")",
    """CREATE TABLE IF NOT EXISTS quarantine (
        source VARCHAR, line BIGINT, raw VARCHAR, reason VARCHAR, ingested_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS imports (
        source VARCHAR, rows_read BIGINT, accepted BIGINT, duplicates BIGINT, quarantined BIGINT,
        started_at TIMESTAMP, finished_at TIMESTAMP)""",
]


def quiet(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Turn off DuckDB's own progress bar (the CLI draws its own).

    Inside Jupyter without ipywidgets DuckDB refuses to change the setting; it draws no bar there anyway.
    """
    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.InvalidInputException:
        pass
    return con


class StoreMissingError(RuntimeError):
    """Raised when a command needs events but nothing has been ingested into this workspace."""


def connect(path: Path, read_only: bool = False, create: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the store; only `create=True` (ingestion) may make a new one.

    Using a store that does not exist is an error rather than an empty result: a typo in NHIP_HOME
    should not look like a shop without customers.
    """
    if not create and not path.exists():
        raise StoreMissingError(
            f"no event store at {path}; run `nhip ingest FILE` first (or set NHIP_HOME)"
        )
    if read_only:
        return quiet(duckdb.connect(str(path), read_only=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    con = quiet(duckdb.connect(str(path)))
    for statement in _DDL:
        con.execute(statement)
    return con


@contextmanager
def open_store(
    path: Path, read_only: bool = False, create: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(path, read_only=read_only, create=create)
    try:
        yield con
    finally:
        con.close()


def table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The store's own tables (its main schema; not a connection's temporary tables)."""
    return {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_catalog = current_database() AND table_schema = 'main'").fetchall()}


def event_time_range(con: duckdb.DuckDBPyConnection):
    """(first, last) event time in UTC, or (None, None) for an empty store."""
    return con.execute("SELECT min(ts), max(ts) FROM events").fetchone()


def fingerprint(con: duckdb.DuckDBPyConnection) -> dict[str, object]:
    """A cheap checksum of the event store, logged with every training run to tie it to its data."""
    rows, first, last, checksum = con.execute(
        "SELECT count(*), min(ts), max(ts), coalesce(bit_xor(hash(event_key)), 0) FROM events"
    ).fetchone()
    return {
        "events": int(rows),
        "first_ts": str(first),
        "last_ts": str(last),
        "checksum": f"{int(checksum) & 0xFFFFFFFFFFFFFFFF:016x}",
    }
