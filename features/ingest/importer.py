"""Storing rows: normalise, dedupe against the store and within the batch, insert events and
quarantine, in one transaction per file or collector batch (see `features.ingest.readers` for the
accounting guarantees).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from features.ingest.keys import event_keys
from features.ingest.normalise import columns_from_records, normalise_columns
from features.ingest.readers import READERS, IngestError
from features.ingest.rows import RawRows
from features.store import EVENT_COLUMNS, connect
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


@dataclass
class RowOutcome:
    """What became of one row: its line (or position in a batch), status and, if quarantined, why."""

    line: int
    status: str
    reason: str | None = None


@dataclass
class _Outcomes:
    """Per-row results as arrays, in line order; `store_rows` turns them into `RowOutcome`s on request."""

    lines: np.ndarray
    status: np.ndarray
    reasons: np.ndarray


def store_rows(
    con, rows: RawRows, source: str, started: datetime | None = None
) -> tuple[IngestReport, list[RowOutcome]]:
    """Normalise, dedupe and insert rows on an open connection; the caller owns the transaction.

    Shared by file imports (one transaction per file) and the HTTP collector (one per batch).
    """
    report, outcomes = _store(con, rows, source, started, outcomes=True)
    return report, [
        RowOutcome(int(line), status, reason)
        for line, status, reason in zip(outcomes.lines, outcomes.status, outcomes.reasons)
    ]


def _store(
    con, rows: RawRows, source: str, started: datetime | None = None, outcomes: bool = False
) -> tuple[IngestReport, _Outcomes | None]:
    """`store_rows`, with per-row outcomes only when asked: file imports do not need them."""
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

    keys = event_keys(events, con) if events.num_rows else pa.array([], pa.large_string())
    is_new = _new_rows(con, keys, ok_lines)
    _insert_events(con, _filter(events.append_column("event_key", keys), is_new), source, started)
    _insert_quarantine(con, quarantine, source, started)

    report = IngestReport(source, rows_read=rows.rows_read)
    report.accepted = int(is_new.sum())
    report.duplicates = len(keys) - report.accepted
    report.quarantined = len(quarantine)
    report.reasons.update(reason for _, _, reason in quarantine)
    if not outcomes:
        return report, None
    status = np.full(len(line_all), QUARANTINED, dtype=object)
    status[ok] = np.where(is_new, ACCEPTED, DUPLICATE)
    all_lines = np.concatenate([line_all, np.array([q[0] for q in rows.unreadable], dtype=np.int64)])
    all_status = np.concatenate([status, np.full(len(rows.unreadable), QUARANTINED, dtype=object)])
    all_reasons = np.concatenate([why_all, np.array([q[2] for q in rows.unreadable], dtype=object)])
    order = np.argsort(all_lines, kind="stable")
    return report, _Outcomes(all_lines[order], all_status[order], all_reasons[order])


def _filter(table: pa.Table, mask: np.ndarray) -> pa.Table:
    """Rows where `mask` holds, without copying the table when it holds everywhere (the usual case)."""
    return table if mask.all() else table.filter(pa.array(mask))


def _new_rows(con, keys: pa.Array, lines: np.ndarray) -> np.ndarray:
    """Which rows to insert: keys not stored yet and, of a key repeated in the batch, the first line only.

    One statement in DuckDB: a hash join against the stored keys and a grouping of the batch; ranking by
    line is only needed for the (usually no) keys that repeat.
    """
    new = np.ones(len(keys), dtype=bool)
    if not len(keys):
        return new
    con.register("_ingest_keys", pa.table({"pos": np.arange(len(keys)), "line": lines, "event_key": keys}))
    try:
        old = con.execute("""
            SELECT pos FROM _ingest_keys WHERE event_key IN (SELECT event_key FROM events)
            UNION ALL
            SELECT pos FROM (
                SELECT pos, row_number() OVER (PARTITION BY event_key ORDER BY line, pos) AS nth
                FROM _ingest_keys
                WHERE event_key IN (SELECT event_key FROM _ingest_keys GROUP BY event_key HAVING count(*) > 1)
            ) WHERE nth > 1
        """).fetchnumpy()["pos"]
    finally:
        con.unregister("_ingest_keys")
    new[np.asarray(old, dtype=np.int64)] = False
    return new


def _insert_events(con, fresh: pa.Table, source: str, started: datetime) -> None:
    if not fresh.num_rows:
        return
    columns = ", ".join(EVENT_COLUMNS)
    values = ", ".join("$source" if c == "source" else "$started" if c == "ingested_at" else c
                       for c in EVENT_COLUMNS)
    fresh = pa.table({name: _small_offsets(column) for name, column in zip(fresh.column_names, fresh.columns)})
    con.register("_ingest_fresh", fresh)
    try:
        con.execute(f"INSERT INTO events ({columns}) SELECT {values} FROM _ingest_fresh",
                    {"source": source, "started": started})
    finally:
        con.unregister("_ingest_fresh")


def _small_offsets(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Large strings as plain (32-bit offset) strings, which DuckDB reads faster, when they fit."""
    if not pa.types.is_large_string(column.type):
        return column
    try:
        return column.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowCapacityError):  # over 2 GiB of text in one chunk
        return column


def _insert_quarantine(con, quarantine: list[tuple[int, str, str]], source: str, started: datetime) -> None:
    if not quarantine:
        return
    quarantine.sort(key=lambda q: q[0])
    table = pa.table({
        "line": pa.array([int(q[0]) for q in quarantine], pa.int64()),
        "raw": pa.array([_cut(q[1]) for q in quarantine], pa.large_string()),
        "reason": pa.array([q[2] for q in quarantine], pa.large_string()),
    })
    con.register("_ingest_quarantine", table)
    try:
        con.execute("INSERT INTO quarantine (source, line, raw, reason, ingested_at) "
                    "SELECT $source, line, raw, reason, $started FROM _ingest_quarantine",
                    {"source": source, "started": started})
    finally:
        con.unregister("_ingest_quarantine")


def ingest_file(path: Path, store_path: Path, source: str | None = None) -> IngestReport:
    """Import one file; see the module docstring for the accounting and transaction guarantees."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise IngestError(f"{path}: unknown format {path.suffix!r}; use .jsonl, .csv or .parquet")
    rows = reader(path)
    con = connect(store_path, create=True)
    try:
        report, _ = import_rows(con, rows, source or path.name)
    finally:
        con.close()
    return report


def import_rows(
    con, rows: RawRows, source: str, outcomes: bool = False
) -> tuple[IngestReport, list[RowOutcome] | None]:
    """Store rows and record the import in one transaction: all of it lands, or none of it.

    The one place a file import, a mapped import and a collector batch commit their rows.
    """
    started = utcnow()
    con.execute("BEGIN TRANSACTION")
    try:
        if outcomes:
            report, per_row = store_rows(con, rows, source, started)
        else:
            report, per_row = _store(con, rows, source, started)[0], None
        con.execute(
            "INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?, ?)",
            [source, report.rows_read, report.accepted, report.duplicates, report.quarantined,
             started, utcnow()],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return report, per_row
