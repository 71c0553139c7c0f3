"""The event store: events, quarantined rows, imports and erasures as immutable Parquet segments.

    $NHIP_HOME/store/
      manifest.json        which segments make up each table now (the commit point)
      events/ quarantine/ imports/ erasures/    the segments, never modified once written
      ledger.sqlite        the writer's index of stored event keys (deduplication)
      writer.lock          one writer at a time: imports, the collector's drain, erasure
      pins/                readers' holds on the version they read

Why segments. DuckDB lets one process open a database file for writing and, while it does, no other
process may open it at all. Here readers never open a database file of the store: `open_store` gives a
fresh in-memory DuckDB connection whose `events`, `quarantine`, `imports` and `erasures` are views over
the segments of one manifest version. Feature builds, training, scoring and notebooks read for as long as
they like while the writer keeps committing new segments (`features.store.writer`); they see the
version they opened, whole. Segments are sorted by time, so a snapshot `ts <= as_of` skips row groups.

Events are append-only and keyed by `event_key` (`features.ingest.keys.event_keys`), so importing the
same data twice stores it once. Timestamps are naive UTC; local hours use Vietnam's fixed offset
(`nhip.clock`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from features.store.manifest import Pin, read_manifest
from features.store.tables import EVENT_COLUMNS, TABLES, empty_select
from features.store.writer import StoreWriter, WriterBusy, quiet, store_writer

__all__ = ["EVENT_COLUMNS", "StoreMissingError", "StoreWriter", "WriterBusy", "describe_store", "event_time_range",
           "fingerprint", "open_store", "quiet", "store_exists", "store_writer"]


class StoreMissingError(RuntimeError):
    """Raised when a command needs events but nothing has been ingested into this workspace."""


def store_exists(root: Path) -> bool:
    return read_manifest(root) is not None


@contextmanager
def open_store(root: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only view of the store as of now: an in-memory DuckDB connection with the tables as views.

    Using a store that does not exist is an error rather than an empty result: a typo in NHIP_HOME
    should not look like a shop without customers. Temporary tables spill to a private folder beside
    the store, removed on close.
    """
    if not store_exists(root):
        from features.store.migrate import refuse_beside_old_store

        refuse_beside_old_store(root)
        raise StoreMissingError(f"no event store at {root}; run `nhip ingest FILE` first (or set NHIP_HOME)")
    pin = Pin(root)
    scratch = Path(tempfile.mkdtemp(prefix=f"reader-{os.getpid()}-", dir=root))
    con = quiet(duckdb.connect())
    try:
        con.execute(f"SET temp_directory = '{scratch}'")
        for table in TABLES:
            files = pin.manifest.files(table)
            if files:
                listed = ", ".join(f"'{root / name}'" for name in files)
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{listed}])")
            else:
                con.execute(f"CREATE VIEW {table} AS {empty_select(table)}")
        yield con
    finally:
        con.close()
        pin.close()
        shutil.rmtree(scratch, ignore_errors=True)


def describe_store(root: Path) -> dict[str, object]:
    """What an operator asks of a store: its version, rows, segments and bytes per table, who holds the
    writer lock, and which versions readers still pin. Reads no segment."""
    from features.store.manifest import pinned_versions
    from features.store.writer import writer_holder

    manifest = read_manifest(root)
    if manifest is None:
        raise StoreMissingError(f"no event store at {root}; run `nhip ingest FILE` first (or set NHIP_HOME)")
    tables = {}
    for table in TABLES:
        segments = manifest.segments.get(table, ())
        tables[table] = {"rows": sum(s.rows for s in segments), "segments": len(segments),
                         "bytes": sum(_size(root / s.name) for s in segments)}
    return {"path": str(root), "version": manifest.version, "tables": tables, "writer": writer_holder(root),
            "pinned_versions": sorted(pinned_versions(root, below=manifest.version + 1))}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def event_time_range(con: duckdb.DuckDBPyConnection):
    """(first, last) event time in UTC, or (None, None) for an empty store."""
    return con.execute("SELECT min(ts), max(ts) FROM events").fetchall()[0]


def fingerprint(con: duckdb.DuckDBPyConnection) -> dict[str, object]:
    """A cheap checksum of the event store, logged with every training run to tie it to its data."""
    rows, first, last, checksum = con.execute(
        "SELECT count(*), min(ts), max(ts), coalesce(bit_xor(hash(event_key)), 0) FROM events"
    ).fetchall()[0]
    return {
        "events": int(rows),
        "first_ts": str(first),
        "last_ts": str(last),
        "checksum": f"{int(checksum) & 0xFFFFFFFFFFFFFFFF:016x}",
    }
