"""Storing rows: normalise and key them (`prepare_rows`, no lock needed), then dedupe against the store
and within the batch and commit events, quarantine and the import record together (`store_prepared`,
holding the store's writer lock for that moment only). See `features.ingest.readers` for the accounting
guarantees: rows read = accepted + duplicates + quarantined, always.

A commit is one manifest version of the store (`features.store.writer`): all of an import lands, or
none of it, and because events are keyed deterministically a re-run after a crash stores exactly what
one clean import would.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from features.ingest.keys import event_keys
from features.ingest.normalise import columns_from_records, normalise_columns
from features.ingest.readers import READERS, IngestError
from features.ingest.rows import RawRows
from features.store import StoreWriter, quiet, store_writer
from nhip.clock import utcnow

# Quarantine keeps at most this much of a raw row, so one runaway line cannot bloat the store.
MAX_RAW_CHARS = 256 * 1024


@dataclass
class IngestReport:
    source: str
    rows_read: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "quarantine_reasons": dict(self.reasons),
        }


def _cut(raw: str) -> str:
    """A raw row as quarantine keeps it: at most `MAX_RAW_CHARS`, saying so when cut."""
    if len(raw) > MAX_RAW_CHARS:
        return raw[:MAX_RAW_CHARS] + f"… [truncated: {len(raw):,} characters in all]"
    return raw



ACCEPTED, DUPLICATE, QUARANTINED = "accepted", "duplicate", "quarantined"
# How long an import waits for another writer (a drain, an erasure) before giving up.
WRITER_WAIT_SECONDS = 600.0


@dataclass
class RowOutcome:
    """What became of one row: its line (or position in a batch), status and, if quarantined, why."""

    line: int
    status: str
    reason: str | None = None


@dataclass
class Prepared:
    """Rows normalised and keyed, ready to be stored: what can be done before taking the writer lock.

    `events` holds the rows normalisation accepted, with their `event_key`, in the order of `lines`;
    `quarantine` the (line, raw text, reason) of every other row. `lines_all`/`reasons_all` give each
    parsed row's reason (None when fine), for per-row outcomes.
    """

    source: str
    started: datetime
    rows_read: int
    events: pa.Table
    lines: np.ndarray
    quarantine: list[tuple[int, str, str]]
    lines_all: np.ndarray
    reasons_all: np.ndarray
    unreadable: list[tuple[int, str, str]]


def prepare_rows(rows: RawRows, source: str, con: duckdb.DuckDBPyConnection | None = None,
                 started: datetime | None = None) -> Prepared:
    """Normalise and key `rows`; `con` is any DuckDB connection to hash keys on (a new one costs ~20 ms,
    which a collector batch would feel)."""
    started = started or utcnow()
    parts = [] if rows.columns is None else [rows.columns]
    if rows.records or not parts:
        parts.insert(0, columns_from_records(rows.records, rows.lines, rows.raw_text))
    tables, why, lines, quarantine = [], [], [], list(rows.unreadable)
    for part in parts:
        table, reasons = normalise_columns(part)
        rejected = np.flatnonzero(pd.notna(reasons))
        quarantine += zip(part.lines[rejected].tolist(), part.raw(rejected), reasons[rejected])
        tables.append(table)
        why.append(reasons)
        lines.append(part.lines)
    events = pa.concat_tables(tables, promote_options="permissive")
    why_all, line_all = np.concatenate(why), np.concatenate(lines)
    ok = pd.isna(why_all)
    events, ok_lines = _filter(events, ok), line_all[ok]
    own = con is None
    con = quiet(duckdb.connect()) if own else con
    try:
        keys = event_keys(events, con) if events.num_rows else pa.array([], pa.large_string())
    finally:
        if own:
            con.close()
    return Prepared(source, started, rows.rows_read, events.append_column("event_key", keys), ok_lines,
                    quarantine, line_all, why_all, list(rows.unreadable))


def store_prepared(writer: StoreWriter, batches: list[Prepared], outcomes: bool = False
                   ) -> list[tuple[IngestReport, list[RowOutcome] | None]]:
    """Dedupe and commit several prepared batches as one store version, each with its import record.

    An event repeated across the batches is stored once, from the earliest batch (then the earliest
    line); each batch's report counts its own rows.
    """
    keys = pa.concat_arrays([_combined(b.events["event_key"]) for b in batches]) if batches else pa.array([])
    order = np.concatenate([np.asarray(b.lines, dtype=np.int64) + (i << 40) for i, b in enumerate(batches)]) \
        if batches else np.zeros(0, dtype=np.int64)
    new = writer.new_rows(keys, order)
    finished = utcnow()
    events, quarantine, imports, results, at = [], [], [], [], 0
    for batch in batches:
        is_new = new[at:at + batch.events.num_rows]
        at += batch.events.num_rows
        events.append(_event_rows(_filter(batch.events, is_new), batch.source, batch.started))
        quarantine.append(_quarantine_rows(batch.quarantine, batch.source, batch.started))
        report = IngestReport(batch.source, rows_read=batch.rows_read)
        report.accepted = int(is_new.sum())
        report.duplicates = batch.events.num_rows - report.accepted
        report.quarantined = len(batch.quarantine)
        report.reasons.update(reason for _, _, reason in batch.quarantine)
        imports.append(pa.table({
            "source": [batch.source], "rows_read": [report.rows_read], "accepted": [report.accepted],
            "duplicates": [report.duplicates], "quarantined": [report.quarantined],
            "started_at": pa.array([batch.started], pa.timestamp("us")),
            "finished_at": pa.array([finished], pa.timestamp("us")),
        }))
        results.append((report, _outcomes(batch, is_new) if outcomes else None))
    writer.commit({"events": pa.concat_tables(events, promote_options="permissive") if events else None,
                   "quarantine": pa.concat_tables(quarantine) if quarantine else None,
                   "imports": pa.concat_tables(imports) if imports else None})
    return results


def _outcomes(batch: Prepared, is_new: np.ndarray) -> list[RowOutcome]:
    ok = pd.isna(batch.reasons_all)
    status = np.full(len(batch.lines_all), QUARANTINED, dtype=object)
    status[ok] = np.where(is_new, ACCEPTED, DUPLICATE)
    unreadable = batch.unreadable
    all_lines = np.concatenate([batch.lines_all, np.array([q[0] for q in unreadable], dtype=np.int64)])
    all_status = np.concatenate([status, np.full(len(unreadable), QUARANTINED, dtype=object)])
    all_reasons = np.concatenate([batch.reasons_all, np.array([q[2] for q in unreadable], dtype=object)])
    order = np.argsort(all_lines, kind="stable")
    return [RowOutcome(int(line), status, reason)
            for line, status, reason in zip(all_lines[order], all_status[order], all_reasons[order])]


def _filter(table: pa.Table, mask: np.ndarray) -> pa.Table:
    """Rows where `mask` holds, without copying the table when it holds everywhere (the usual case)."""
    return table if mask.all() else table.filter(pa.array(mask))


def _combined(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _event_rows(fresh: pa.Table, source: str, started: datetime) -> pa.Table:
    """The new events with the columns only the store adds: where they came from and when."""
    n = fresh.num_rows
    return fresh.append_column("source", pa.repeat(pa.scalar(source, pa.string()), n)).append_column(
        "ingested_at", pa.repeat(pa.scalar(started, pa.timestamp("us")), n))


def _quarantine_rows(quarantine: list[tuple[int, str, str]], source: str, started: datetime) -> pa.Table:
    quarantine = sorted(quarantine, key=lambda q: q[0])
    n = len(quarantine)
    return pa.table({
        "source": pa.array([source] * n, pa.string()),
        "line": pa.array([int(q[0]) for q in quarantine], pa.int64()),
        "raw": pa.array([_cut(q[1]) for q in quarantine], pa.large_string()),
        "reason": pa.array([q[2] for q in quarantine], pa.large_string()),
        "ingested_at": pa.array([started] * n, pa.timestamp("us")),
    })


def ingest_file(path: Path, store_path: Path, source: str | None = None, wait: float = WRITER_WAIT_SECONDS,
                on_wait: Callable[[str], None] | None = None) -> IngestReport:
    """Import one file; see the module docstring for the accounting and commit guarantees. `wait` bounds
    the wait for the store's writer lock (`WriterBusy` after it); `on_wait` is told once who holds it."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise IngestError(f"{path}: unknown format {path.suffix!r}; use .jsonl, .csv or .parquet")
    report, _ = import_rows(store_path, reader(path), source or path.name, wait=wait, on_wait=on_wait)
    return report


def import_rows(
    store_path: Path, rows: RawRows, source: str, outcomes: bool = False, wait: float = WRITER_WAIT_SECONDS,
    on_wait: Callable[[str], None] | None = None,
) -> tuple[IngestReport, list[RowOutcome] | None]:
    """Prepare rows, then store them and their import record in one commit: all of it lands, or none.

    The one place a file import and a mapped import commit their rows (the collector batches several
    through `store_prepared`).
    """
    prepared = prepare_rows(rows, source)
    with store_writer(store_path, doing=f"importing {source}", wait=wait, on_wait=on_wait) as writer:
        return store_prepared(writer, [prepared], outcomes)[0]
