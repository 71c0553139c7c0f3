"""Import canonical event files into the event store, accounting for every row.

Each row read ends in exactly one of three places: accepted (stored), duplicate (its `event_key` is
already stored or appears earlier in the same file) or quarantined (with the raw row and a reason).
`rows_read == accepted + duplicates + quarantined` holds for every input.

A file is imported in one DuckDB transaction, so an import killed half-way leaves nothing behind, and
because events are keyed deterministically the re-run stores exactly what one clean import would.
Source files are only read, never modified.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from features.amounts import parse_amounts
from features.emails import normalize_emails
from features.phones import normalize_phones
from features.schema import CANONICAL_FIELDS, IDENTIFIER_FIELDS
from features.store import EVENT_COLUMNS, connect
from features.timestamps import parse_timestamps

_TOKEN = r"^[a-z][a-z0-9_]*$"
_HASHED_FIELDS = [f for f in CANONICAL_FIELDS if f not in ("event_id", "name", "ts")]


class IngestError(RuntimeError):
    """A whole file cannot be imported (missing, unknown format); row problems are quarantined instead."""


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


@dataclass
class RawRows:
    """Rows as read from a file: parsed records plus rows that could not even be parsed."""

    records: list[dict]
    lines: list[int]
    raw_text: list[str]
    unreadable: list[tuple[int, str, str]]  # (line, raw text, reason)


def read_jsonl(path: Path) -> RawRows:
    out = RawRows([], [], [], [])
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                out.unreadable.append((number, raw.decode("utf-8", "replace"), "not valid UTF-8"))
                continue
            try:
                record = json.loads(text)
            except ValueError:
                out.unreadable.append((number, text.rstrip("\n"), "not valid JSON"))
                continue
            if not isinstance(record, dict):
                out.unreadable.append((number, text.rstrip("\n"), "not a JSON object"))
                continue
            out.records.append(record)
            out.lines.append(number)
            out.raw_text.append(text.rstrip("\n"))
    return out


def read_csv(path: Path) -> RawRows:
    out = RawRows([], [], [], [])
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return out
    header = [h.strip() for h in header]
    for row in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        raw = ",".join(row)
        if len(row) != len(header):
            out.unreadable.append((number, raw, f"{len(row)} cells for {len(header)} columns"))
            continue
        out.records.append({k: v for k, v in zip(header, row) if v != ""})
        out.lines.append(number)
        out.raw_text.append(raw)
    return out


def read_parquet(path: Path) -> RawRows:
    frame = pd.read_parquet(path)
    records = [
        {k: v for k, v in row.items() if v is not None and not (isinstance(v, float) and np.isnan(v))}
        for row in frame.to_dict(orient="records")
    ]
    lines = list(range(1, len(records) + 1))
    raw = [json.dumps(r, ensure_ascii=False, default=str) for r in records]
    return RawRows(records, lines, raw, [])


READERS: dict[str, Callable[[Path], RawRows]] = {
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".json": read_jsonl,
    ".csv": read_csv,
    ".parquet": read_parquet,
}


def _as_text(series: pd.Series) -> pd.Series:
    """Strings stripped of surrounding space; empty and missing become None."""
    def convert(value):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        text = str(value).strip()
        return text or None

    return series.map(convert).astype(object)


def _properties(frame: pd.DataFrame) -> pd.Series:
    """JSON text of `properties` merged with every non-canonical key, so nothing a source sent is lost."""
    extra = [c for c in frame.columns if c not in CANONICAL_FIELDS]
    given = frame["properties"] if "properties" in frame else pd.Series(None, index=frame.index)

    def merge(i: int):
        props = given.iat[i]
        merged = dict(props) if isinstance(props, dict) else ({"value": props} if props else {})
        for column in extra:
            value = frame[column].iat[i]
            if value is not None and not (isinstance(value, float) and np.isnan(value)):
                merged[column] = value
        return json.dumps(merged, ensure_ascii=False, sort_keys=True, default=str) if merged else None

    if not extra and "properties" not in frame:
        return pd.Series(None, index=frame.index, dtype=object)
    return pd.Series([merge(i) for i in range(len(frame))], index=frame.index, dtype=object)


def event_keys(frame: pd.DataFrame) -> pd.Series:
    """The dedup key of each event.

    With an `event_id` the key is (channel, event_id): ids are unique within a source, and a retried
    webhook repeats it. Without one, the key hashes the normalised content, so re-importing the same file
    — or the same row written with a different phone format — changes nothing.
    """
    with_id = "id\x1f" + frame["channel"] + "\x1f" + frame["event_id"].fillna("")
    content = "c\x1f" + frame["ts"].astype("int64").astype(str)
    for column in _HASHED_FIELDS:
        content = content + "\x1f" + frame[column].astype(str).where(frame[column].notna(), "")
    text = with_id.where(frame["event_id"].notna(), content)
    return pd.Series(
        [hashlib.sha1(t.encode("utf-8")).hexdigest()[:32] for t in text], index=frame.index, dtype=object
    )


def normalise(records: list[dict]) -> tuple[pd.DataFrame, pd.Series]:
    """Canonical, normalised events and a reason per rejected row (index aligned with `records`)."""
    raw = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    raw.index = pd.RangeIndex(len(records))
    out = pd.DataFrame(index=raw.index)
    reason = pd.Series(None, index=raw.index, dtype=object)

    def column(name: str) -> pd.Series:
        return _as_text(raw[name]) if name in raw else pd.Series(None, index=raw.index, dtype=object)

    def reject(mask: pd.Series, why: str | pd.Series) -> None:
        mask = mask & reason.isna()
        reason[mask] = why if isinstance(why, str) else why[mask]

    ts_raw = raw["ts"] if "ts" in raw else pd.Series(None, index=raw.index, dtype=object)
    present = ts_raw.notna() & (_as_text(ts_raw).notna())
    out["ts"] = parse_timestamps(ts_raw.where(present))
    reject(~present, "missing ts")
    reject(out["ts"].isna(), "unparseable ts")

    for name in ("channel", "type"):
        values = column(name).str.lower()
        out[name] = values
        reject(values.isna(), f"missing {name}")
        reject(~values.fillna("x").str.match(_TOKEN), f"{name} is not a lowercase token")

    phones_raw, emails_raw = column("phone"), column("email")
    out["phone"] = normalize_phones(phones_raw)
    out["email"] = normalize_emails(emails_raw)
    for name in IDENTIFIER_FIELDS:
        if name not in ("phone", "email"):
            out[name] = column(name)
    ids = out[list(IDENTIFIER_FIELDS)]
    bad_phone = phones_raw.notna() & out["phone"].isna()
    bad_email = emails_raw.notna() & out["email"].isna()
    no_id = ids.isna().all(axis=1)
    reject(no_id & bad_phone, "invalid phone and no other identifier")
    reject(no_id & bad_email, "invalid email and no other identifier")
    reject(no_id, "no identifier")
    # The primary identifier resolves the event to a customer with one join downstream.
    first = ids.notna().to_numpy().argmax(axis=1)
    out["pid_type"] = np.asarray(IDENTIFIER_FIELDS, dtype=object)[first]
    out["pid_value"] = ids.to_numpy()[np.arange(len(ids)), first]

    amount_raw = raw["amount"] if "amount" in raw else pd.Series(None, index=raw.index, dtype=object)
    out["amount"], bad_amount = parse_amounts(amount_raw)
    reject(bad_amount, "unparseable amount")
    quantity = column("quantity")
    out["quantity"] = pd.to_numeric(quantity, errors="coerce")
    reject(quantity.notna() & out["quantity"].isna(), "unparseable quantity")

    for name in ("event_id", "name", "product_id", "product_name", "category", "campaign_id",
                 "message_id"):
        out[name] = column(name)
    out["currency"] = column("currency").str.upper().fillna("VND")
    out["properties"] = _properties(raw)
    return out, reason


ACCEPTED, DUPLICATE, QUARANTINED = "accepted", "duplicate", "quarantined"


@dataclass
class RowOutcome:
    """What became of one row: its line (or position in a batch), status and, if quarantined, why."""

    line: int
    status: str
    reason: str | None = None


def store_rows(
    con, rows: RawRows, source: str, started: datetime | None = None
) -> tuple[IngestReport, list[RowOutcome]]:
    """Normalise, dedupe and insert rows on an open connection; the caller owns the transaction.

    Shared by file imports (one transaction per file) and the HTTP collector (one per batch).
    """
    started = started or datetime.now(timezone.utc).replace(tzinfo=None)
    events, reason = normalise(rows.records)
    rejected = reason.notna().to_numpy()
    outcomes = [RowOutcome(line, QUARANTINED, why) for line, _, why in rows.unreadable]
    quarantine = [(line, raw, why) for line, raw, why in rows.unreadable]
    for i in np.flatnonzero(rejected):
        quarantine.append((rows.lines[i], rows.raw_text[i], reason.iat[i]))

    events = events[~rejected].copy()
    events["event_key"] = event_keys(events) if len(events) else pd.Series(dtype=object)
    events["ts"] = events["ts"].dt.tz_convert("UTC").dt.tz_localize(None)
    events["source"] = source
    events["ingested_at"] = started
    events = events[list(EVENT_COLUMNS)]
    con.register("incoming", events)
    stored = {k for (k,) in con.execute(
        "SELECT event_key FROM events WHERE event_key IN (SELECT event_key FROM incoming)").fetchall()}
    con.unregister("incoming")
    is_new = (~events["event_key"].duplicated() & ~events["event_key"].isin(stored)).to_numpy()
    fresh = events[is_new]
    con.register("fresh_rows", fresh)
    columns = ", ".join(EVENT_COLUMNS)
    con.execute(f"INSERT INTO events ({columns}) SELECT {columns} FROM fresh_rows")
    con.unregister("fresh_rows")
    if quarantine:
        frame = pd.DataFrame(quarantine, columns=["line", "raw", "reason"])
        frame.insert(0, "source", source)
        frame["ingested_at"] = started
        con.register("quarantined_rows", frame)
        con.execute("INSERT INTO quarantine SELECT * FROM quarantined_rows")
        con.unregister("quarantined_rows")

    kept = iter(is_new)
    for i, line in enumerate(rows.lines):
        if rejected[i]:
            outcomes.append(RowOutcome(line, QUARANTINED, reason.iat[i]))
        else:
            outcomes.append(RowOutcome(line, ACCEPTED if next(kept) else DUPLICATE))
    report = IngestReport(source, rows_read=len(rows.records) + len(rows.unreadable))
    report.accepted = int(is_new.sum())
    report.duplicates = len(events) - report.accepted
    report.quarantined = len(quarantine)
    report.reasons.update(why for _, _, why in quarantine)
    return report, outcomes


def ingest_file(path: Path, store_path: Path, source: str | None = None) -> IngestReport:
    """Import one file; see the module docstring for the accounting and transaction guarantees."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise IngestError(f"{path}: unknown format {path.suffix!r}; use .jsonl, .csv or .parquet")
    source = source or path.name
    started = datetime.now(timezone.utc).replace(tzinfo=None)
    rows = reader(path)
    con = connect(store_path, create=True)
    try:
        con.execute("BEGIN TRANSACTION")
        report, _ = store_rows(con, rows, source, started)
        con.execute(
            "INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?, ?)",
            [source, report.rows_read, report.accepted, report.duplicates, report.quarantined,
             started, datetime.now(timezone.utc).replace(tzinfo=None)],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.close()
    return report


def ingest_paths(paths: Iterable[Path], store_path: Path) -> list[IngestReport]:
    return [ingest_file(Path(p), store_path) for p in paths]
