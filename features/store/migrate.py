"""Moving a workspace from the single-file store (`$NHIP_HOME/events.duckdb`, before December 2026) to
the segment store (`$NHIP_HOME/store/`).

    nhip store migrate            # reads events.duckdb, writes store/, leaves events.duckdb as it was

The events, quarantined rows, import records and erasure records are copied as one commit (one segment
per table, sorted like every segment), and the key ledger is built from the copied events. The derived
tables the old file also held (identity map, merge history) are not copied: the next feature build makes
them again. The old file is only read, so a migration that fails half-way leaves nothing to undo: run it
again.
"""

from __future__ import annotations

from pathlib import Path

from features.store.manifest import Manifest, read_manifest, write_manifest
from features.store.tables import TABLES

OLD_STORE = "events.duckdb"


class MigrationError(RuntimeError):
    """The migration cannot run as asked (no old store, or a segment store that already has events)."""


def old_store_beside(root: Path) -> Path | None:
    """The single-file store of the workspace whose segment store is `root`, if there is one."""
    old = root.parent / OLD_STORE
    return old if old.is_file() else None


def refuse_beside_old_store(root: Path) -> None:
    """Stop a first write into `root` while the workspace's events are still in the old file: the new
    store would start empty beside them, and every build would silently lose the shop's history."""
    old = old_store_beside(root)
    if old is not None:
        raise MigrationError(f"{old} holds this workspace's events in the single-file format; run "
                             "`nhip store migrate` before writing new events")


def migrate_file_store(old: Path, root: Path) -> dict[str, int]:
    """Copy the tables of the single-file store `old` into a new segment store at `root`; returns the
    rows copied per table."""
    if not old.is_file():
        raise MigrationError(f"no single-file event store at {old}")
    from features.store.writer import store_writer

    manifest = read_manifest(root)
    if manifest is not None and any(manifest.segments.values()):
        raise MigrationError(f"{root} already holds a store; migrate into an empty workspace")
    if manifest is None:
        root.mkdir(parents=True, exist_ok=True)
        write_manifest(root, Manifest())  # the empty store the copy commits to
    with store_writer(root, doing=f"migrating {old.name}", wait=60) as writer:
        con = writer.con
        con.execute(f"ATTACH '{old}' AS old_store (READ_ONLY)")
        try:
            present = {name for (name,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'old_store'").fetchall()}
            parts = {table: f"old_store.{table}" for table in TABLES if table in present}
            if "events" not in parts:
                raise MigrationError(f"{old} has no events table: not an event store")
            writer.commit(parts)
        finally:
            con.execute("DETACH old_store")
        return {table: sum(s.rows for s in writer.manifest.segments.get(table, ())) for table in TABLES}
