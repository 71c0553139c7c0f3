"""Import canonical event files into the event store, accounting for every row.

Each row read ends in exactly one of three places: accepted (stored), duplicate (its `event_key` is
already stored or appears earlier in the same file) or quarantined (with the raw row, the source and a
reason). `rows_read == accepted + duplicates + quarantined` holds for every input: bytes that are not
UTF-8 (quarantined line by line, never decoded by guessing), a JSON value that is not an object, a CSV row
with the wrong cell count, NUL bytes, fields of megabytes. Blank lines are not rows. Only a file that
cannot be read as its format at all (missing, unknown extension, not Parquet) raises `IngestError`, before
anything is stored.

A file is imported in one DuckDB transaction, so an import killed half-way leaves nothing behind, and
because events are keyed deterministically the re-run stores exactly what one clean import would.
Source files are only read, never modified.

Speed comes from never touching a row in Python when it can be avoided: JSON Lines are parsed by DuckDB's
JSON functions when a line is plain (an object with canonical keys, each once, whose values are text,
integers or null, anything inside `properties`), and every other line goes through Python's `json`, the
reference, row by row. Both routes give the same values for the same line, so the route only changes the
speed. Normalisation then works on whole Arrow columns (Python only once per distinct value, where at
all), event keys are hashed by DuckDB, and new events are inserted with one statement.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import numbers
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.amounts import parse_amounts
from features.emails import normalize_emails
from features.phones import normalize_phones
from features.schema import CANONICAL_FIELDS, IDENTIFIER_FIELDS
from features.store import EVENT_COLUMNS, connect, quiet
from features.timestamps import parse_timestamps

# A field longer than this is a broken export (a whole document in a name), not a value to store.
MAX_FIELD_CHARS = 64 * 1024
# Quarantine keeps at most this much of a raw row, so one runaway line cannot bloat the store.
MAX_RAW_CHARS = 256 * 1024

_TOKEN = r"^[a-z][a-z0-9_]*$"
_HASHED_FIELDS = [f for f in CANONICAL_FIELDS if f not in ("event_id", "name", "ts")]
_VALUE_FIELDS = [f for f in CANONICAL_FIELDS if f != "properties"]
_TEXT_FIELDS = ("event_id", "name", "product_id", "product_name", "category", "campaign_id", "message_id")
# Exactly the characters `str.strip()` removes (tests check this against `str.isspace`), so trimming a
# whole Arrow column gives what trimming each value in Python would.
_PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_BLANK = " \t\n\r\x0b\x0c"  # what `bytes.strip()` removes: a line of only these is not a row


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
class ColumnRows:
    """Parsed rows held column-wise, as the fast readers produce them.

    `frame` has one column per canonical field, except that `properties` already holds the stored JSON
    text (the source's `properties` merged with any non-canonical keys). `raw(positions)` gives the raw
    text of rows by position, only ever asked for quarantined rows. `problems` holds a reason per row
    found while reading (None where fine).
    """

    frame: pd.DataFrame
    lines: np.ndarray
    raw: Callable[[np.ndarray], list[str]]
    problems: np.ndarray | None = None


@dataclass
class RawRows:
    """Rows as read: parsed records, rows parsed column-wise, and rows that could not even be parsed.

    `records` (dicts, aligned with `lines` and `raw_text`) is what the collector and the CSV reader hand
    over; `columns` is what the JSONL and Parquet readers produce for speed. Line numbers order all rows.
    """

    records: list[dict]
    lines: list[int]
    raw_text: list[str]
    unreadable: list[tuple[int, str, str]]  # (line, raw text, reason)
    columns: ColumnRows | None = None

    @property
    def rows_read(self) -> int:
        """Every row lands in exactly one of the three parts."""
        parsed = 0 if self.columns is None else len(self.columns.lines)
        return len(self.records) + parsed + len(self.unreadable)


# ========================================================================================================
# readers
# ========================================================================================================


def read_jsonl(path: Path) -> RawRows:
    """One JSON object per line; plain lines are parsed by DuckDB, the rest by Python's `json`."""
    numbers, lines, unreadable = _text_lines(Path(path).read_bytes())
    out = RawRows([], [], [], unreadable)
    plain, frame = _parse_plain_lines(lines)
    frame["properties"], properties_ok = _properties_from_json(frame["properties"])
    if not properties_ok.all():
        plain, frame = plain[properties_ok], frame[properties_ok].reset_index(drop=True)
    other = np.ones(len(lines), dtype=bool)
    other[plain] = False
    for position, text in zip(np.flatnonzero(other), lines.filter(pa.array(other)).to_pylist()):
        if not text.strip(_BLANK):
            continue  # a blank line is not a row
        record, reason = _parse_json_line(text)
        if reason:
            out.unreadable.append((int(numbers[position]), text.rstrip("\r\n"), reason))
        else:
            out.records.append(record)
            out.lines.append(int(numbers[position]))
            out.raw_text.append(text.rstrip("\r\n"))
    if len(plain):
        out.columns = ColumnRows(frame, numbers[plain], lambda at: [
            text.rstrip("\r\n") for text in lines.take(pa.array(plain[at])).to_pylist()])
    return out


def _text_lines(data: bytes) -> tuple[np.ndarray, pa.Array, list[tuple[int, str, str]]]:
    """The file's lines as text with their 1-based numbers, and the lines that are not valid UTF-8.

    Lines end at `\\n` and keep it (JSON ignores it; quarantine strips it); a UTF-8 byte order mark
    opening the file is skipped. The lines are an Arrow view over the file's bytes, found with one numpy
    pass and validated as UTF-8 at once; only a file with broken bytes is decoded line by line, so that
    each broken line is quarantined on its own instead of guessing an encoding for the whole file.
    """
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n")) + 1
    offsets = np.concatenate([[start], ends[ends > start], [] if data.endswith(b"\n") else [len(data)]])
    offsets = offsets.astype(np.int64)
    numbers = np.arange(1, len(offsets))
    lines = pa.LargeStringArray.from_buffers(len(numbers), pa.py_buffer(offsets), pa.py_buffer(data))
    try:
        lines.validate(full=True)
        return numbers, lines, []
    except pa.ArrowInvalid:
        pass
    decoded, keep, unreadable = [], np.ones(len(numbers), dtype=bool), []
    for i, raw in enumerate(lines.view(pa.large_binary()).to_pylist()):
        try:
            decoded.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            keep[i] = False
            unreadable.append((int(numbers[i]), raw.decode("utf-8", "replace").rstrip("\r\n"), "not valid UTF-8"))
    return numbers[keep], pa.array(decoded, pa.large_string()), unreadable


# Lines DuckDB accepts but Python's `json` rejects because of a trailing comma always take the Python
# route (a match inside a string only costs speed). DuckDB's other leniency, `nan`/`inf` literals, makes
# a canonical value a DOUBLE (not plain) and is caught in `properties` by `_properties_from_json`.
_TRAILING_COMMA = r",[ \t\r\n]*[\]}]"
# Value types a plain line may hold outside `properties`: DuckDB's text of an integer is what Python
# makes of it (`str(int)`), while floats, booleans, lists and objects need Python's reading.
_PLAIN_TYPES = r"^(?:(?:VARCHAR|UBIGINT|BIGINT|NULL)(?:,|$))*$"


def _parse_plain_lines(lines: pa.Array) -> tuple[np.ndarray, pd.DataFrame]:
    """Positions of the plain lines and their fields as text columns, parsed by DuckDB in C++.

    Plain: valid JSON, an object, only canonical keys and none twice, and only text, integers or nulls
    outside `properties` (which comes back as JSON text for `_properties_from_json`). The key count
    checks keys and repeats at once: it must equal the canonical fields found (`json_type` sees the
    first of repeated keys only). Each JSON function parses the line again, so each appears once.
    Should DuckDB fail on some input, every line takes the Python route.
    """
    struct = ", ".join(f'"{f}": "VARCHAR"' for f in _VALUE_FIELDS)
    paths = ", ".join(f"'$.\"{f}\"'" for f in _VALUE_FIELDS)
    query = f"""
        SELECT pos, fields, keys, regexp_full_match(types, '{_PLAIN_TYPES}') AS plain_types,
               length(types) - length(replace(types, ',', '')) + (types <> '')::INTEGER AS found
        FROM (
            SELECT pos, from_json(line, '{{{struct}, "properties": "JSON"}}') AS fields,
                   len(json_keys(line)) AS keys, array_to_string(json_type(line, [{paths}]), ',') AS types
            FROM lines
            WHERE json_valid(line) AND NOT regexp_matches(line, '{_TRAILING_COMMA}')
        )
    """
    con = quiet(duckdb.connect())
    try:
        con.register("lines", pa.table({"pos": np.arange(len(lines)), "line": lines}))
        table = con.sql(query).to_arrow_table()
    except duckdb.Error:
        return np.zeros(0, dtype=np.int64), pd.DataFrame({f: [] for f in CANONICAL_FIELDS}, dtype=object)
    finally:
        con.close()
    fields = table.column("fields")
    found = table.column("found").to_numpy() + _mask(pc.struct_field(fields, "properties").is_valid())
    keys = table.column("keys").to_numpy()
    plain = (keys > 0) & (keys == found) & _mask(table.column("plain_types"))
    if not plain.all():
        table = table.filter(pa.array(plain))
        fields = table.column("fields")
    frame = pd.DataFrame({name: pc.struct_field(fields, name).to_pandas() for name in CANONICAL_FIELDS})
    return table.column("pos").to_numpy(), frame


def _properties_from_json(texts: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Stored `properties` text for JSON-text values, computed once per distinct value.

    Returns the texts and which rows succeeded; a value Python does not read back the same way (nested
    too deeply, `NaN`) sends its line to the Python route, which decides on the original line.
    """
    codes, uniques = pd.factorize(texts)
    merged = np.full(len(uniques), None, dtype=object)
    ok = np.ones(len(uniques), dtype=bool)
    for i, text in enumerate(uniques):
        try:
            merged[i], problem = _properties_text(json.loads(text, parse_constant=_no_constant), {})
        except (ValueError, RecursionError):
            ok[i] = False
            continue
        ok[i] = problem is None
    out = np.full(len(texts), None, dtype=object)
    present = codes >= 0
    out[present] = merged[codes[present]]
    fine = np.ones(len(texts), dtype=bool)
    fine[present] = ok[codes[present]]
    return pd.Series(out, dtype=object), fine


def _no_constant(name: str) -> float:
    """Refuse `NaN`/`Infinity` in DuckDB's copy of `properties`: it also accepts spellings Python's `json`
    rejects (`nan`, `inf`), so such a line needs Python's own reading of the original."""
    raise ValueError(name)


def _parse_json_line(text: str) -> tuple[dict | None, str | None]:
    """The reference reading of one line: Python's `json`, and the reason when it is not an object."""
    try:
        value = json.loads(text)
    except RecursionError:
        return None, "not valid JSON (nested too deeply)"
    except ValueError:
        return None, "not valid JSON"
    if not isinstance(value, dict):
        return None, "not a JSON object"
    return value, None


def read_csv(path: Path) -> RawRows:
    """A header row naming canonical fields, then one event per row; cells are text.

    Bytes that are not UTF-8 are kept (as surrogate escapes) so the CSV structure survives, and each row
    holding some is quarantined as "not valid UTF-8". A header that is unreadable quarantines every row.
    """
    data = Path(path).read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text, broken_bytes = data.decode("utf-8"), False
    except UnicodeDecodeError:
        text, broken_bytes = data.decode("utf-8", "surrogateescape"), True
    out = RawRows([], [], [], [])
    rows = (row for row in _csv_rows(text) if row[2] is None or any(c.strip() for c in row[2]))
    header = next(rows, None)
    if header is None:
        return out
    _, header_raw, header_cells, header_error = header
    names = [h.strip() for h in header_cells or []]
    repeated = sorted({n for n in names if names.count(n) > 1})
    header_problem = (
        f"CSV header unreadable: {header_error}" if header_error
        else "CSV header is not valid UTF-8" if broken_bytes and _has_bad_bytes(header_raw)
        else f"CSV header repeats a column: {repeated[0]}" if repeated
        else None
    )
    for line, raw, cells, error in rows:
        bad_bytes = broken_bytes and _has_bad_bytes(raw)
        shown = (raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if bad_bytes else raw)
        shown = shown.rstrip("\r\n")
        reason = (
            header_problem
            or (_csv_error_reason(error) if error else None)
            or ("not valid UTF-8" if bad_bytes else None)
            or (f"{len(cells)} cells for {len(names)} columns" if len(cells) != len(names) else None)
        )
        if reason:
            out.unreadable.append((line, shown, reason))
            continue
        out.records.append({k: v for k, v in zip(names, cells) if v != ""})
        out.lines.append(line)
        out.raw_text.append(shown)
    return out


def _csv_rows(text: str) -> Iterator[tuple[int, str, list[str] | None, str | None]]:
    """(first line, raw text, cells or None, csv error or None) per CSV row, a bad row never stopping the rest.

    The raw text is the lines the parser consumed for the row, so quarantine shows the row as written.
    A `csv.Error` (a field over the csv module's limit, a stray quote in strict places) costs that row only.
    """
    consumed: list[str] = []

    def feed() -> Iterator[str]:
        for line in io.StringIO(text, newline=""):
            consumed.append(line)
            yield line

    reader = csv.reader(feed())
    first = 1
    while True:
        try:
            cells, error = next(reader), None
        except StopIteration:
            return
        except csv.Error as exc:
            cells, error = None, str(exc)
        raw = "".join(consumed)
        yield first, raw, cells, error
        if error and not consumed:  # an error that consumed nothing can only come at the very end
            return
        first += max(len(consumed), 1)
        consumed.clear()


def _csv_error_reason(error: str) -> str:
    if "field larger than field limit" in error:  # the csv module's own limit, above MAX_FIELD_CHARS
        return f"field too long: a CSV cell over {csv.field_size_limit():,} characters"
    return f"unreadable CSV row: {error}"


def _has_bad_bytes(text: str) -> bool:
    """Whether text decoded with `surrogateescape` holds bytes that were not UTF-8."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def read_parquet(path: Path) -> RawRows:
    """Columns named like the canonical fields; wrong column types are quarantined per row, not guessed."""
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise IngestError(f"{path}: not a readable Parquet file ({exc})") from exc
    frame.columns = [str(c) for c in frame.columns]
    frame = frame.reset_index(drop=True)
    n = len(frame)
    problems = np.full(n, None, dtype=object)
    repeated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if repeated:
        problems[:] = f"Parquet file repeats a column: {repeated[0]}"
        frame = frame.loc[:, ~frame.columns.duplicated()]
    extra = [c for c in frame.columns if c not in CANONICAL_FIELDS]
    columns = pd.DataFrame({f: frame[f] for f in _VALUE_FIELDS if f in frame.columns})
    if extra or "properties" in frame.columns:
        texts = []
        for i, row in enumerate(frame[[*extra, *(["properties"] if "properties" in frame else [])]]
                                .to_dict(orient="records")):
            text, problem = _properties_text(row.pop("properties", None), row)
            texts.append(text)
            problems[i] = problems[i] or problem
        columns["properties"] = pd.Series(texts, dtype=object)

    def raw(at: np.ndarray) -> list[str]:
        rows = frame.iloc[at].to_dict(orient="records")
        return [json.dumps({k: v for k, v in r.items() if not _missing(v)}, ensure_ascii=False, default=str)
                for r in rows]

    return RawRows([], [], [], [], ColumnRows(columns, np.arange(1, n + 1), raw, problems))


READERS: dict[str, Callable[[Path], RawRows]] = {
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".json": read_jsonl,
    ".csv": read_csv,
    ".parquet": read_parquet,
}


def _cut(raw: str) -> str:
    """A raw row as quarantine keeps it: at most `MAX_RAW_CHARS`, saying so when cut."""
    if len(raw) > MAX_RAW_CHARS:
        return raw[:MAX_RAW_CHARS] + f"… [truncated: {len(raw):,} characters in all]"
    return raw


# ========================================================================================================
# normalisation
# ========================================================================================================


def _missing(value: object) -> bool:
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    return isinstance(value, (float, np.floating, np.datetime64)) and bool(pd.isna(value))


def _properties_text(properties: object, extra: dict) -> tuple[str | None, str | None]:
    """JSON text of `properties` merged with every non-canonical key, so nothing a source sent is lost.

    Returns (text, None), or (None, reason) when the merge cannot be written as JSON.
    """
    if isinstance(properties, dict):
        merged = dict(properties)
    elif _missing(properties) or not _truthy(properties):
        merged = {}
    else:
        merged = {"value": properties}
    merged.update((k, v) for k, v in extra.items() if not _missing(v))
    if not merged:
        return None, None
    try:
        return json.dumps(merged, ensure_ascii=False, sort_keys=True, default=str), None
    except (TypeError, ValueError, RecursionError) as exc:
        return None, f"properties cannot be written as JSON ({type(exc).__name__})"


def _truthy(value: object) -> bool:
    try:
        return bool(value)
    except (ValueError, TypeError):  # numpy arrays from Parquet list columns
        return len(value) > 0


def _columns_from_records(records: list[dict], lines: Sequence[int], raw_text: Sequence[str]) -> ColumnRows:
    """Records (dicts) as columns of Python values, with their stored `properties` text."""
    frame = pd.DataFrame(
        {f: pd.Series([r.get(f) for r in records], dtype=object) for f in _VALUE_FIELDS},
        index=pd.RangeIndex(len(records)),
    )
    texts, problems = [], np.full(len(records), None, dtype=object)
    for i, record in enumerate(records):
        extra = {k: v for k, v in record.items() if k not in CANONICAL_FIELDS}
        text, problems[i] = _properties_text(record.get("properties"), extra)
        texts.append(text)
    frame["properties"] = pd.Series(texts, dtype=object)
    return ColumnRows(frame, np.asarray(lines, dtype=np.int64), lambda at: [raw_text[i] for i in at], problems)


def _cell_text(value: object) -> tuple[str | None, str | None]:
    """One value as stripped text (None when missing or blank), or the problem that makes it unusable."""
    if _missing(value):
        return None, None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return None, "not valid UTF-8"
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate from a `\ud800` JSON escape
                return None, "not valid UTF-8"
        return value.strip() or None, None
    if isinstance(value, (bool, np.bool_)):
        return None, "not text or a number"
    if isinstance(value, numbers.Integral):
        try:
            return str(int(value)), None
        except ValueError:  # more digits than Python converts to text (4300)
            return None, "field too long"
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isnan(number):
            return None, None
        return (str(int(number)) if number.is_integer() else str(number)), None
    if isinstance(value, (Decimal, datetime, date, pd.Timestamp, np.datetime64)):
        return str(value), None
    return None, "not text or a number"


def _text(values: pd.Series) -> tuple[pa.Array, np.ndarray | None]:
    """A column as stripped text, None where missing or blank, plus a problem per value (or None at all).

    Text columns stay in Arrow; other columns are converted value by value (numbers repeat, so only
    once per distinct value when the column has one type).
    """
    if pd.api.types.is_string_dtype(values.dtype) and values.dtype != object:
        text = pc.utf8_trim(_combined(pa.array(values.array)), _PY_WHITESPACE).cast(pa.large_string())
        if pc.any(pc.equal(text, "")).as_py():
            text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.large_string()), text)
        return text, None
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        try:
            return _text(pd.Series(pa.array(values, pa.large_string(), from_pandas=True).to_pandas()))
        except (UnicodeEncodeError, pa.ArrowException):  # lone surrogates: found value by value below
            pass
    if values.dtype != object:  # one type per column: convert each distinct value once
        codes, uniques = pd.factorize(values)
        converted = [_cell_text(v) for v in uniques.to_numpy(dtype=object)]
        texts = np.array([None, *(t for t, _ in converted)], dtype=object)[codes + 1]
        problems = np.array([None, *(p for _, p in converted)], dtype=object)[codes + 1]
    else:
        converted = [_cell_text(v) for v in values.to_numpy(dtype=object)]
        texts = np.array([t for t, _ in converted], dtype=object)
        problems = np.array([p for _, p in converted], dtype=object)
    has_problem = pd.notna(problems)
    return pa.array(texts, pa.large_string(), from_pandas=True), (problems if has_problem.any() else None)


def _combined(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _series(text: pa.Array) -> pd.Series:
    return pd.Series(text.to_pandas())


def _arrow_text(values: pd.Series) -> pa.Array:
    return pa.array(values.to_numpy(dtype=object), pa.large_string(), from_pandas=True)


class _Reasons:
    """The first reason found for each row; later checks never overwrite an earlier one.

    Kept as integer codes (0 = fine) while checking, as comparing a million Python strings per check
    would cost more than the checks.
    """

    def __init__(self, n: int, known: np.ndarray | None = None):
        self.labels: list[str | None] = [None]
        self.code = np.zeros(n, dtype=np.int32)
        if known is not None:
            for why in pd.unique(known[pd.notna(known)]):
                self.reject(known == why, why)

    def reject(self, mask, why: str) -> None:
        mask = np.asarray(mask, dtype=bool) & (self.code == 0)
        if mask.any():
            self.labels.append(why)
            self.code[mask] = len(self.labels) - 1

    @property
    def fine(self) -> np.ndarray:
        return self.code == 0

    def as_array(self) -> np.ndarray:
        """A reason per row as an object array, None where the row is fine."""
        return np.array(self.labels, dtype=object)[self.code]


def _mask(array: pa.Array) -> np.ndarray:
    return array.fill_null(False).to_numpy(zero_copy_only=False)


def _normalise_columns(rows: ColumnRows) -> tuple[pa.Table, np.ndarray]:
    """Canonical, normalised events as Arrow columns and a reason per rejected row (None where accepted).

    The checks run in a fixed order and a row keeps the first reason it fails: unusable fields, then `ts`,
    `channel`, `type`, identifiers, amount and quantity.
    """
    frame, n = rows.frame, len(rows.frame)
    reasons = _Reasons(n, rows.problems)
    raw = {f: (frame[f].reset_index(drop=True) if f in frame.columns else pd.Series([None] * n, dtype=object))
           for f in CANONICAL_FIELDS}
    text = _usable_text(raw, reasons)
    usable = reasons.fine
    out = {"ts": _timestamps(raw["ts"], text["ts"], usable, reasons)}
    for name in ("channel", "type"):
        out[name] = pc.ascii_lower(text[name])
        reasons.reject(~_mask(out[name].is_valid()), f"missing {name}")
        reasons.reject(~_mask(pc.match_substring_regex(out[name], _TOKEN)), f"{name} is not a lowercase token")
    out.update(_identifiers(text, reasons))

    amount, bad_amount = parse_amounts(raw["amount"].where(usable))
    out["amount"] = pa.array(amount.to_numpy(), pa.float64(), from_pandas=True)
    reasons.reject(bad_amount.to_numpy(), "unparseable amount")
    out["quantity"], bad_quantity = _quantities(text["quantity"])
    reasons.reject(bad_quantity, "unparseable quantity")

    out.update({name: text[name] for name in _TEXT_FIELDS})
    out["currency"] = pc.utf8_upper(text["currency"]).fill_null("VND")
    out["properties"] = text["properties"]
    return pa.table(out), reasons.as_array()


def _usable_text(raw: dict[str, pd.Series], reasons: _Reasons) -> dict[str, pa.Array]:
    """Every field as stripped text; values that are no text or number, or too long, reject their row."""
    text = {}
    for name in CANONICAL_FIELDS:
        text[name], problems = _text(raw[name])
        if problems is not None:
            for problem in pd.unique(problems[pd.notna(problems)]):
                reasons.reject(problems == problem, f"{problem}: {name}")
        if (pc.max(pc.binary_length(text[name])).as_py() or 0) > MAX_FIELD_CHARS:  # bytes >= characters
            reasons.reject(_mask(pc.greater(pc.utf8_length(text[name]), MAX_FIELD_CHARS)),
                           f"field too long: {name}")
    return text


def _timestamps(raw: pd.Series, text: pa.Array, usable: np.ndarray, reasons: _Reasons) -> pa.Array:
    """Naive UTC times (ns); raw values go to the parser, which reads numbers and datetimes as such."""
    present = _mask(text.is_valid()) & usable
    ts = parse_timestamps(raw.where(present)).dt.tz_localize(None)
    reasons.reject(~present, "missing ts")
    reasons.reject(ts.isna().to_numpy(), "unparseable ts")
    return pa.array(ts.to_numpy(dtype="datetime64[ns]"), pa.timestamp("ns"), from_pandas=True)


def _identifiers(text: dict[str, pa.Array], reasons: _Reasons) -> dict[str, pa.Array]:
    """Normalised identifiers and the primary one (`pid_type`, `pid_value`): the first present, in the
    order of IDENTIFIER_FIELDS, which resolves the event to a customer with one join downstream."""
    out = {
        "phone": _arrow_text(normalize_phones(_series(text["phone"]))),
        "email": _arrow_text(normalize_emails(_series(text["email"]))),
        **{name: text[name] for name in IDENTIFIER_FIELDS[2:]},
    }
    ids = np.column_stack([_mask(out[name].is_valid()) for name in IDENTIFIER_FIELDS])
    no_id = ~ids.any(axis=1)
    reasons.reject(no_id & _mask(text["phone"].is_valid()), "invalid phone and no other identifier")
    reasons.reject(no_id & _mask(text["email"].is_valid()), "invalid email and no other identifier")
    reasons.reject(no_id, "no identifier")
    out["pid_type"] = pc.take(pa.array(IDENTIFIER_FIELDS, pa.large_string()), pa.array(ids.argmax(axis=1)))
    out["pid_value"] = pc.coalesce(*(out[name] for name in IDENTIFIER_FIELDS))
    return out


def _quantities(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Quantities as floats, read once per distinct text; the mask marks text that is no number."""
    codes, uniques = pd.factorize(_series(text))
    values = pd.to_numeric(pd.Series(uniques.to_numpy(dtype=object), dtype=object), errors="coerce")
    values = values.astype(float).to_numpy()
    out = np.full(len(text), np.nan)
    out[codes >= 0] = values[codes[codes >= 0]]
    bad = (codes >= 0) & np.isnan(out)
    return pa.array(out, pa.float64(), from_pandas=True), bad


def normalise(records: list[dict]) -> tuple[pd.DataFrame, pd.Series]:
    """Canonical, normalised events and a reason per rejected row (index aligned with `records`)."""
    table, why = _normalise_columns(_columns_from_records(records, range(len(records)), []))
    events = pd.DataFrame({
        name: (column.to_pandas() if pa.types.is_floating(column.type)
               else pd.Series(column.to_numpy(zero_copy_only=False)).dt.tz_localize("UTC") if name == "ts"
               else pd.Series(column.to_pylist(), dtype=object))  # text as str/None, as before
        for name, column in zip(table.column_names, table.columns)
    })
    return events, pd.Series(why, index=events.index, dtype=object)


def event_keys(frame: pd.DataFrame) -> pd.Series:
    """The dedup key of each event.

    With an `event_id` the key is (channel, event_id): ids are unique within a source, and a retried
    webhook repeats it. Without one, the key hashes the normalised content, so re-importing the same file
    — or the same row written with a different phone format — changes nothing.
    """
    columns = {}
    for name in ("ts", "channel", "event_id", *_HASHED_FIELDS):
        values = frame[name]
        if name == "ts":
            values = values.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
            columns[name] = pa.array(values.to_numpy(), pa.timestamp("ns"))
        elif pd.api.types.is_float_dtype(values.dtype):
            columns[name] = pa.array(values.to_numpy(), pa.float64(), from_pandas=True)
        else:
            columns[name] = pa.array(values.to_numpy(dtype=object), pa.large_string(), from_pandas=True)
    return pd.Series(_event_keys(pa.table(columns)).to_numpy(zero_copy_only=False), index=frame.index,
                     dtype=object)


def _event_keys(events: pa.Table, con: duckdb.DuckDBPyConnection | None = None) -> pa.Array:
    """`event_keys` on Arrow columns: the key text is built column-wise and hashed (SHA-1) by DuckDB,
    on `con` when given (a new in-memory database costs ~20 ms, too much for a collector batch).

    Keys are the first 32 hex digits of SHA-1 over `id␟channel␟event_id`, or without an `event_id` over
    `c␟ts (ns)␟` and the hashed fields (numbers as Python writes them, missing as empty).
    """
    has_id = _combined(events["event_id"].is_valid()).to_numpy(zero_copy_only=False)
    separator = pa.scalar("\x1f", pa.large_string())
    text = pc.binary_join_element_wise(
        pa.scalar("id", pa.large_string()), events["channel"].fill_null(""), events["event_id"].fill_null(""),
        separator)
    if not has_id.all():
        # Content text only for the rows that need it: most sources send ids.
        rows = events.take(pa.array(np.flatnonzero(~has_id)))
        parts = [pa.scalar("c", pa.large_string()), pc.cast(pc.cast(rows["ts"], pa.int64()), pa.large_string())]
        for name in _HASHED_FIELDS:
            column = rows[name]
            parts.append((_float_text(column) if pa.types.is_floating(column.type) else column).fill_null(""))
        content = pc.binary_join_element_wise(*parts, separator)
        text = pc.replace_with_mask(_combined(text), pa.array(~has_id), _combined(content))
    own = con is None
    con = duckdb.connect() if own else con
    con.register("_ingest_key_text", pa.table({"text": text}))
    try:
        # A projection keeps row order (DuckDB's preserve_insertion_order is on by default).
        return con.sql("SELECT substr(sha1(text), 1, 32) AS key FROM _ingest_key_text").to_arrow_table()["key"]
    finally:
        con.unregister("_ingest_key_text")
        if own:
            con.close()


def _float_text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Floats as Python writes them (`1200000.0`, `1e+20`), once per distinct value."""
    values = column.to_numpy(zero_copy_only=False)
    codes, uniques = pd.factorize(values)
    texts = np.array([None, *(str(float(u)) for u in uniques)], dtype=object)[codes + 1]
    return pa.array(texts, pa.large_string())


# ========================================================================================================
# storing
# ========================================================================================================

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
    started = started or datetime.now(timezone.utc).replace(tzinfo=None)
    parts = [] if rows.columns is None else [rows.columns]
    if rows.records or not parts:
        parts.insert(0, _columns_from_records(rows.records, rows.lines, rows.raw_text))

    tables, why, lines, quarantine = [], [], [], list(rows.unreadable)
    for part in parts:
        table, reasons = _normalise_columns(part)
        rejected = np.flatnonzero(pd.notna(reasons))
        quarantine += zip(part.lines[rejected].tolist(), part.raw(rejected), reasons[rejected])
        tables.append(table)
        why.append(reasons)
        lines.append(part.lines)
    events = pa.concat_tables(tables, promote_options="permissive")
    why_all, line_all = np.concatenate(why), np.concatenate(lines)
    ok = pd.isna(why_all)
    events, ok_lines = _filter(events, ok), line_all[ok]

    keys = _event_keys(events, con) if events.num_rows else pa.array([], pa.large_string())
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
    started = datetime.now(timezone.utc).replace(tzinfo=None)
    con.execute("BEGIN TRANSACTION")
    try:
        if outcomes:
            report, per_row = store_rows(con, rows, source, started)
        else:
            report, per_row = _store(con, rows, source, started)[0], None
        con.execute(
            "INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?, ?)",
            [source, report.rows_read, report.accepted, report.duplicates, report.quarantined,
             started, datetime.now(timezone.utc).replace(tzinfo=None)],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return report, per_row


def ingest_paths(paths: Iterable[Path], store_path: Path) -> list[IngestReport]:
    return [ingest_file(Path(p), store_path) for p in paths]
