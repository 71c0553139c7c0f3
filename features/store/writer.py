"""The one writer of the event store: new segments, the key ledger, compaction, deletion of old files.

One process at a time holds the writer lock (`flock` on `writer.lock`): a file import, the collector's
drain of its spool, an erasure. Each holds it for the time its commit takes, never for a whole job, and
waits for it otherwise (`store_writer(wait=…)`), saying who holds it.

A commit (`StoreWriter.commit`):

1. writes each new table part as a Parquet segment, sorted, fsynced (nobody sees it yet);
2. replaces the manifest: the commit point;
3. indexes the keys of its new event segments in the ledger (`features.store.ledger`).

A crash before 2 leaves segment files no manifest names; a crash between 2 and 3 leaves the ledger
behind. The next writer deletes the first and catches the ledger up from the segments (`_recover`)
before doing anything, so the retry stores exactly what one clean run would. Compaction keeps the number
of segments small: when eight segments of one size class pile up (collector drains make many small
ones), they are merged into one.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from features.store.ledger import KeyLedger, key_bytes
from features.store.manifest import (
    Manifest,
    Segment,
    fsync_dir,
    pinned_versions,
    read_manifest,
    write_durably,
    write_manifest,
)
from features.store.tables import SORT_KEYS, TABLES, typed_select
from nhip.locks import exclusive_lock

LOCK = "writer.lock"
OWNER = "writer.owner"
RETIRED = "retired.json"
# Batches of at least this many keys are deduplicated by one scan of the stored keys, which DuckDB does
# in about half a second for ten million; smaller ones by looking their keys up in the ledger.
SCAN_AT = 20_000
# Compaction: segments are classed by rows (log10); this many in one class are merged into one.
MERGE_AT = 8
TOP_CLASS = 7  # ≥ 10M rows: never merged further


class WriterBusy(TimeoutError):
    """Another process held the store's writer lock for longer than this one would wait."""


def quiet(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Turn off DuckDB's own progress bar (the CLI draws its own); inside Jupyter without ipywidgets
    DuckDB refuses to change the setting, and draws no bar there anyway."""
    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.InvalidInputException:
        pass
    return con


@dataclass
class StoreWriter:
    """What a process holding the writer lock may do; made by `store_writer`."""

    root: Path
    ledger: KeyLedger
    con: duckdb.DuckDBPyConnection  # for writing segments and deduplicating; never holds store data
    manifest: Manifest
    _retired: list[dict] = field(default_factory=list)

    # -- deduplication ----------------------------------------------------------------------------------

    def new_rows(self, keys: pa.Array, lines: np.ndarray) -> np.ndarray:
        """Which rows are new: keys not stored yet and, of a key repeated in the batch, the first line."""
        new = np.ones(len(keys), dtype=bool)
        if not len(keys):
            return new
        con = self.con
        con.register("_batch_keys", pa.table({"pos": np.arange(len(keys)), "line": lines, "event_key": keys}))
        try:
            repeated = con.execute("""
                SELECT pos FROM (
                    SELECT pos, row_number() OVER (PARTITION BY event_key ORDER BY line, pos) AS nth
                    FROM _batch_keys
                    WHERE event_key IN (SELECT event_key FROM _batch_keys GROUP BY event_key HAVING count(*) > 1)
                ) WHERE nth > 1
            """).fetchnumpy()["pos"]
            new[np.asarray(repeated, dtype=np.int64)] = False
            files = [str(self.root / s.name) for s in self.manifest.segments.get("events", ())]
            if len(keys) >= SCAN_AT and files:
                listed = ", ".join(f"'{f}'" for f in files)
                stored = con.execute(f"""
                    SELECT pos FROM _batch_keys
                    WHERE event_key IN (SELECT event_key FROM read_parquet([{listed}]))
                """).fetchnumpy()["pos"]
                new[np.asarray(stored, dtype=np.int64)] = False
            elif files:
                as_bytes = key_bytes(keys)
                found = self.ledger.stored(as_bytes)
                if found:
                    new &= ~np.fromiter((k in found for k in as_bytes), bool, len(as_bytes))
        finally:
            con.unregister("_batch_keys")
        return new

    # -- commits ----------------------------------------------------------------------------------------

    def commit(self, parts: dict[str, pa.Table | str], replaced: dict[str, list[str]] | None = None,
               forget_keys: pa.Array | None = None) -> Manifest:
        """Add `parts` as new segments, drop the `replaced` segment names, forget `forget_keys` from the
        ledger; one manifest version. Returns it.

        A part is the table's rows (all columns of `TABLES`), or a DuckDB relation on `con` to copy them
        from (a migration's source). The parts of a table that replaces segments are those segments'
        rows rewritten (compaction, erasure), so their keys are not indexed again."""
        replaced = replaced or {}
        batch = self.manifest.last_batch + 1
        written: dict[str, list[Segment]] = {}
        for table, rows in parts.items():
            if rows is not None and (isinstance(rows, str) or rows.num_rows):
                segment = self._write_segment(table, rows, batch, fresh=not replaced.get(table))
                if segment.rows:
                    written[table] = [segment]
        segments = {}
        for table in TABLES:
            gone = set(replaced.get(table, ()))
            kept = [s for s in self.manifest.segments.get(table, ()) if s.name not in gone]
            segments[table] = tuple(kept + written.get(table, []))
        manifest = Manifest(self.manifest.version + 1, batch, segments)
        write_manifest(self.root, manifest)
        self.manifest = manifest
        self._retire([name for names in replaced.values() for name in names], manifest.version)
        self.ledger.catch_up(self.root, manifest, self.con)
        if forget_keys is not None and len(forget_keys):
            self.ledger.forget(key_bytes(forget_keys))
        return manifest

    def _write_segment(self, table: str, rows: pa.Table | str, batch: int, fresh: bool) -> Segment:
        folder = self.root / table
        folder.mkdir(exist_ok=True)
        name = f"{table}/{batch:09d}-{os.urandom(4).hex()}.parquet"
        target = self.root / name
        temp = target.with_name(f".{target.name}.tmp")
        con, source = self.con, rows if isinstance(rows, str) else "_rows"
        if not isinstance(rows, str):
            con.register("_rows", rows)
        try:
            count = con.execute(f"COPY ({typed_select(table, source)} ORDER BY {SORT_KEYS[table]}) TO '{temp}' "
                                "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)").fetchall()[0][0]
        finally:
            if not isinstance(rows, str):
                con.unregister("_rows")
        if not count:
            temp.unlink()
            return Segment(name, 0, batch)
        _fsync(temp)
        os.replace(temp, target)
        fsync_dir(folder)
        return Segment(name, int(count), batch, fresh)

    # -- compaction and old files -----------------------------------------------------------------------

    def compact(self) -> int:
        """Merge size classes holding `MERGE_AT` segments or more; returns the merges made."""
        merges = 0
        for table in TABLES:
            while True:
                classes: dict[int, list[Segment]] = {}
                for segment in self.manifest.segments.get(table, ()):
                    classes.setdefault(_size_class(segment.rows), []).append(segment)
                crowded = [c for c, segs in classes.items() if len(segs) >= MERGE_AT and c < TOP_CLASS]
                if not crowded:
                    break
                group = classes[min(crowded)]
                files = ", ".join(f"'{self.root / s.name}'" for s in group)
                merged = self.con.sql(f"SELECT * FROM read_parquet([{files}])").to_arrow_table()
                self.commit({table: merged}, replaced={table: [s.name for s in group]})
                merges += 1
        return merges

    def _retire(self, names: list[str], since_version: int) -> None:
        if names:
            self._retired += [{"name": n, "since": since_version} for n in names]
            write_durably(self.root / RETIRED, json.dumps(self._retired).encode("utf-8"))

    def delete_unpinned(self) -> list[str]:
        """Delete retired files no reader can still be reading; returns the ones kept for later."""
        if not self._retired:
            return []
        held = pinned_versions(self.root, below=self.manifest.version)
        kept, gone = [], []
        for entry in self._retired:
            if any(v < entry["since"] for v in held):
                kept.append(entry)
            else:
                (self.root / entry["name"]).unlink(missing_ok=True)
                gone.append(entry)
        if gone:
            self._retired = kept
            write_durably(self.root / RETIRED, json.dumps(kept).encode("utf-8"))
        return [e["name"] for e in kept]


def _size_class(rows: int) -> int:
    return min(TOP_CLASS, max(3, int(np.log10(max(rows, 1)))))


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _recover(writer: StoreWriter) -> None:
    """Undo what a crashed commit left: segment files no manifest names (and that are not retired,
    awaiting deletion), temporary files, a ledger behind the manifest."""
    root = writer.root
    retired = {e["name"] for e in writer._retired}
    named = {s.name for segs in writer.manifest.segments.values() for s in segs}
    for table in TABLES:
        for path in (root / table).glob("*"):
            name = f"{table}/{path.name}"
            if name not in named and name not in retired:
                path.unlink(missing_ok=True)
    writer.ledger.catch_up(root, writer.manifest, writer.con)


def _load_retired(root: Path) -> list[dict]:
    try:
        return json.loads((root / RETIRED).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []


@contextmanager
def _writer_lock(root: Path, wait: float, doing: str,
                 on_wait: Callable[[str], None] | None) -> Iterator[None]:
    def busy() -> WriterBusy:
        return WriterBusy(f"the event store's writer is busy ({_owner(root)}) for more than {wait:.0f} s; "
                          "try again when it is done")

    def waiting() -> None:
        if on_wait is not None:
            on_wait(f"waiting for the event store's writer ({_owner(root)})")

    with exclusive_lock(root / LOCK, wait, busy, waiting, tell_after=2.0):
        (root / OWNER).write_text(json.dumps({"pid": os.getpid(), "doing": doing, "since": time.time()}),
                                  encoding="utf-8")
        yield


def writer_holder(root: Path) -> str | None:
    """Who holds the writer lock now ("process 123, importing x.jsonl"), or None when nobody does."""
    try:
        fd = os.open(root / LOCK, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _owner(root)
    finally:
        os.close(fd)
    return None


def _owner(root: Path) -> str:
    try:
        owner = json.loads((root / OWNER).read_text(encoding="utf-8"))
        return f"process {owner['pid']}, {owner['doing']}"
    except (FileNotFoundError, ValueError, KeyError):
        return "another process"


@contextmanager
def store_writer(root: Path, doing: str, wait: float = 600.0, on_wait: Callable[[str], None] | None = None,
                 con: duckdb.DuckDBPyConnection | None = None) -> Iterator[StoreWriter]:
    """Hold the store's writer lock (waiting up to `wait` seconds) and recover from any crashed commit.

    `doing` says what for (shown to a process that has to wait). `con` is a DuckDB connection to work
    on; a process that commits often (the collector) passes its own, since opening one costs ~20 ms.
    Creates the store on first use.
    """
    if read_manifest(root) is None:
        from features.store.migrate import refuse_beside_old_store

        refuse_beside_old_store(root)
    with _writer_lock(root, wait, doing, on_wait):
        own = con is None
        con = quiet(duckdb.connect()) if own else con
        ledger = KeyLedger(root)
        try:
            manifest = read_manifest(root)
            if manifest is None:
                manifest = Manifest()
                write_manifest(root, manifest)
            writer = StoreWriter(root, ledger, con, manifest, _load_retired(root))
            _recover(writer)
            yield writer
            writer.compact()
            writer.delete_unpinned()
        finally:
            ledger.close()
            if own:
                con.close()


def rewritten(writer: StoreWriter, con: duckdb.DuckDBPyConnection, table: str, keep: str
              ) -> tuple[pa.Table | None, list[str], int]:
    """Each segment of `table` filtered by the SQL condition `keep` (evaluated on `con`, where the caller
    registered what it refers to; the segment's rows are `s`): the rows to commit in their place, the
    segment names they replace, and the number of rows dropped. Untouched segments are left alone."""
    parts, names, dropped = [], [], 0
    for segment in writer.manifest.segments.get(table, ()):
        source = f"read_parquet('{writer.root / segment.name}') s"
        left = con.execute(f"SELECT count(*) FROM {source} WHERE {keep}").fetchall()[0][0]
        if left == segment.rows:
            continue
        dropped += segment.rows - left
        names.append(segment.name)
        if left:
            parts.append(con.sql(f"SELECT s.* FROM {source} WHERE {keep}").to_arrow_table())
    return (pa.concat_tables(parts) if parts else None), names, dropped
