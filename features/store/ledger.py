"""The key ledger: an index of every stored `event_key`, so that deduplicating a collector batch is a
few point lookups rather than a scan of every event.

It is a SQLite file (`ledger.sqlite`) because what it must do is what SQLite's B-tree does well: answer
"which of these 500 keys exist?" among ten million in about a millisecond, take a few hundred new keys
in a durable transaction, and open in under a millisecond in whichever process holds the writer lock.
(A DuckDB file costs about 20 ms to open and a full scan per lookup; it also cannot be open in two
processes, so it would have to be opened and checkpointed on every commit.)

The ledger is derived from the segments, never the other way round: after each manifest the writer
indexes the keys of the commit's new event segments, read back from the files (`catch_up`), and records
the commit's batch as the last one indexed. So the ledger never names an event the store does not hold;
a crash between the manifest and the index leaves the ledger behind, and the next writer catches up the
same way before it does anything. A lost ledger is rebuilt from every segment. Keys are stored as their
16 bytes, not 32 hex digits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

import duckdb
import pyarrow as pa

from features.store.manifest import Manifest

LEDGER = "ledger.sqlite"
# SQLite binds at most 32,766 parameters per statement; lookups go in chunks well below that.
_CHUNK = 900


class KeyLedger:
    """The ledger of one store, open in the process holding the writer lock."""

    def __init__(self, root: Path):
        self._db = sqlite3.connect(root / LEDGER, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")  # a commit the manifest counts on survives a power cut
        self._db.execute("CREATE TABLE IF NOT EXISTS keys (event_key BLOB PRIMARY KEY) WITHOUT ROWID")
        self._db.execute("CREATE TABLE IF NOT EXISTS state (one INTEGER PRIMARY KEY CHECK (one = 1), "
                         "last_batch INTEGER NOT NULL)")

    def close(self) -> None:
        self._db.close()

    @property
    def last_batch(self) -> int | None:
        """The last commit whose keys are indexed; None for a new (or lost) ledger."""
        row = self._db.execute("SELECT last_batch FROM state").fetchone()
        return None if row is None else int(row[0])

    def stored(self, keys: list[bytes]) -> set[bytes]:
        """Which of `keys` are stored."""
        found: set[bytes] = set()
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            found.update(k for (k,) in self._db.execute(
                f"SELECT event_key FROM keys WHERE event_key IN ({','.join('?' * len(chunk))})", chunk))
        return found

    def forget(self, keys: Iterable[bytes]) -> None:
        with self._transaction():
            self._db.executemany("DELETE FROM keys WHERE event_key = ?", ((k,) for k in keys))

    def catch_up(self, root: Path, manifest: Manifest, con: duckdb.DuckDBPyConnection) -> int:
        """Index the new event segments of batches after the last one indexed (every segment for a new
        ledger); returns the keys read. The writer calls it after each commit, and on taking the lock
        to repair a commit that crashed before it."""
        done = self.last_batch
        if done is not None and done >= manifest.last_batch:
            return 0
        behind = [s for s in manifest.segments.get("events", ())
                  if done is None or (s.batch > done and s.fresh)]
        added = 0
        with self._transaction():
            if behind:
                listed = ", ".join(f"'{root / s.name}'" for s in behind)
                reader = con.sql(f"SELECT unhex(event_key) AS k FROM read_parquet([{listed}]) ORDER BY k") \
                    .fetch_record_batch(1_000_000)
                for chunk in reader:
                    keys = chunk.column(0).to_pylist()
                    self._db.executemany("INSERT OR IGNORE INTO keys VALUES (?)", ((k,) for k in keys))
                    added += len(keys)
            self._db.execute("INSERT OR REPLACE INTO state VALUES (1, ?)", (manifest.last_batch,))
        return added

    def _transaction(self):
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, traceback):
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def key_bytes(keys: pa.Array | pa.ChunkedArray) -> list[bytes]:
    """32-hex-digit `event_key`s as their 16 bytes."""
    return [bytes.fromhex(k) for k in keys.to_pylist()]
