"""The spool: where the collector puts a batch, durably, before it answers; and the drain that moves
spooled batches into the store.

    collector ──put──▶ EventQueue (LocalSpool: files under $NHIP_HOME/spool/) ──drain──▶ the store

`EventQueue` is the seam between receiving events and storing them, three calls wide: `put` returns only
once the batch is on disk (fsynced file and folder), `pending` lists what has not been stored yet, oldest
first, and `done` removes what a commit stored. A message broker can take the local spool's place for a
shop that outgrows one machine: `put` is a produce with acks from every replica (Kafka `acks=all`, a
RabbitMQ stream's publisher confirm), `pending` a consume from the committed offset and `done` the
offset commit after the store's commit.

Exactly once: a batch leaves the spool only after the store committed it, and events are keyed
deterministically, so a drain that dies after its commit and before `done` is harmlessly repeated: the
second pass finds every event already stored.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import duckdb

from features.ingest.importer import IngestReport, Prepared, RowOutcome, prepare_rows, store_prepared
from features.ingest.rows import RawRows
from features.store import WriterBusy, quiet, store_writer
from features.store.manifest import fsync_dir
from nhip.clock import utcnow


@dataclass
class QueuedBatch:
    """One request's items as received (JSON values), where they came from and when."""

    batch_id: str
    source: str
    items: list
    received_at: datetime


class EventQueue(Protocol):
    """Durable batches between the collector and the store (see the module docstring)."""

    def put(self, items: list, source: str) -> QueuedBatch:
        """Keep the batch durably; when this returns, the batch survives a crash of this process."""

    def pending(self, older_than: float = 0.0) -> list[QueuedBatch]:
        """Batches not stored yet, oldest first; only those queued more than `older_than` seconds ago."""

    def done(self, batches: list[QueuedBatch]) -> None:
        """Forget batches the store has committed."""


class LocalSpool:
    """An `EventQueue` of one JSON file per batch in a folder of the workspace."""

    def __init__(self, folder: Path):
        self.folder = folder

    def put(self, items: list, source: str) -> QueuedBatch:
        self.folder.mkdir(parents=True, exist_ok=True)
        batch = QueuedBatch(f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}", source, items, utcnow())
        body = json.dumps({"source": source, "received_at": batch.received_at.isoformat(), "items": items},
                          ensure_ascii=False).encode("utf-8")
        temp = self.folder / f".{batch.batch_id}.tmp"
        with open(temp, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.folder / f"{batch.batch_id}.json")
        fsync_dir(self.folder)
        return batch

    def pending(self, older_than: float = 0.0) -> list[QueuedBatch]:
        if not self.folder.exists():
            return []
        cutoff = time.time_ns() - int(older_than * 1e9)
        out = []
        for path in sorted(self.folder.glob("*.json")):
            if int(path.name.split("-", 1)[0]) > cutoff:
                continue
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:  # stored and removed by another drain meanwhile
                continue
            out.append(QueuedBatch(path.stem, data["source"], data["items"],
                                   datetime.fromisoformat(data["received_at"])))
        return out

    def done(self, batches: list[QueuedBatch]) -> None:
        for batch in batches:
            (self.folder / f"{batch.batch_id}.json").unlink(missing_ok=True)
        if batches:
            fsync_dir(self.folder)


def batch_rows(items: list) -> RawRows:
    """RawRows from a batch: objects are records (line = index in the batch); anything else is unreadable."""
    records, lines, unreadable = [], [], []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            records.append(item)
            lines.append(i)
        else:
            unreadable.append((i, _dump(item), f"not a JSON object ({_json_type(item)})"))
    objects = records if len(records) == len(items) else [items[i] for i in lines]
    return RawRows(records, lines, _RawJson(objects), unreadable)


class _RawJson:
    """Items' JSON text, made only for the items that are read (the rejected ones, for quarantine)."""

    def __init__(self, items: list) -> None:
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [_dump(item) for item in self._items[index]]
        return _dump(self._items[index])


def _dump(item: object) -> str:
    return json.dumps(item, ensure_ascii=False, default=str)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}.get(
        type(value), type(value).__name__)


Result = tuple[IngestReport, list[RowOutcome]]


@dataclass
class _Ticket:
    batch: QueuedBatch
    prepared: Prepared
    ready: threading.Event = field(default_factory=threading.Event)
    result: Result | None = None


class Drainer:
    """Moves spooled batches into the store, many per commit, in a background thread.

    The collector `submit`s each batch it spooled and may `wait` a moment for its exact outcome; batches
    found in the spool without a ticket (left by a process that died before its drain) are read back and
    stored too. Each round takes the store's writer lock once, for the commit only.
    """

    def __init__(self, queue: EventQueue, store_path: Path, interval: float = 0.1, writer_wait: float = 0.5,
                 on_error: Callable[[Exception], None] | None = None):
        self.queue, self.store_path = queue, store_path
        self.interval, self.writer_wait = interval, writer_wait
        self.on_error = on_error
        self._tickets: dict[str, _Ticket] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._con: duckdb.DuckDBPyConnection | None = None  # kept for every round: a new one costs ~20 ms

    def submit(self, batch: QueuedBatch, prepared: Prepared) -> _Ticket:
        ticket = _Ticket(batch, prepared)
        with self._lock:
            self._tickets[batch.batch_id] = ticket
        self._wake.set()
        return ticket

    def drain_once(self, older_than: float = 0.0) -> int:
        """One round: store every pending batch in one commit. Returns the batches stored; 0 when the
        writer lock was busy (they stay spooled for the next round). An empty spool takes no lock, so
        an idle collector neither contends with importers nor creates a store before its first event."""
        if not self.queue.pending(older_than):
            return 0
        try:
            if self._con is None:
                self._con = quiet(duckdb.connect())
            with store_writer(self.store_path, doing="draining the collector's spool", wait=self.writer_wait,
                              con=self._con) as w:
                pending = self.queue.pending(older_than)
                if not pending:
                    return 0
                with self._lock:
                    tickets = [self._tickets.get(b.batch_id) for b in pending]
                prepared = [t.prepared if t else prepare_rows(batch_rows(b.items), b.source, con=self._con,
                                                              started=b.received_at)
                            for t, b in zip(tickets, pending)]
                results = store_prepared(w, prepared, outcomes=True)
        except WriterBusy:
            return 0
        self.queue.done(pending)
        with self._lock:
            for batch, ticket, result in zip(pending, tickets, results):
                self._tickets.pop(batch.batch_id, None)
                if ticket is not None:
                    ticket.result = result
                    ticket.ready.set()
        return len(pending)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spool-drain", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.drain_once()
            except Exception as exc:  # a failed round leaves the batches spooled for the next one
                if self.on_error:
                    self.on_error(exc)
                self._stop.wait(1.0)

    def stop(self) -> None:
        """Stop the thread after one last round, so a clean shutdown leaves nothing spooled."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.drain_once()
        if self._con is not None:
            self._con.close()
            self._con = None


def drain_spool(queue: EventQueue, store_path: Path, older_than: float, wait: float) -> int:
    """Store batches left in the spool for more than `older_than` seconds (by a collector that stopped
    or died); what a feature build does first, so every acknowledged event is in it."""
    return Drainer(queue, store_path, writer_wait=wait).drain_once(older_than)
