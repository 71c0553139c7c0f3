"""Normalisation of parsed rows into canonical events, column by column, with a reason per rejected
row.

The checks run in a fixed order and a row keeps the first reason it fails. Text columns stay in Arrow;
the parsers (`features.ingest.parsers`) work once per distinct value.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.ingest.parsers.amounts import parse_amounts
from features.ingest.parsers.emails import normalize_emails
from features.ingest.parsers.phones import normalize_phones
from features.ingest.parsers.timestamps import parse_timestamps
from features.ingest.rows import ColumnRows
from features.schema import CANONICAL_FIELDS, IDENTIFIER_FIELDS

# A field longer than this is a broken export (a whole document in a name), not a value to store.
MAX_FIELD_CHARS = 64 * 1024

_TOKEN = r"^[a-z][a-z0-9_]*$"
VALUE_FIELDS = [f for f in CANONICAL_FIELDS if f != "properties"]
_TEXT_FIELDS = ("event_id", "name", "product_id", "product_name", "category", "campaign_id", "message_id")
# Exactly the characters `str.strip()` removes (tests check this against `str.isspace`), so trimming a
# whole Arrow column gives what trimming each value in Python would.
_PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)




def is_missing(value: object) -> bool:
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    return isinstance(value, (float, np.floating, np.datetime64)) and bool(pd.isna(value))


def properties_text(properties: object, extra: dict) -> tuple[str | None, str | None]:
    """JSON text of `properties` merged with every non-canonical key, so nothing a source sent is lost.

    Returns (text, None), or (None, reason) when the merge cannot be written as JSON.
    """
    if isinstance(properties, dict):
        merged = dict(properties)
    elif is_missing(properties) or not _truthy(properties):
        merged = {}
    else:
        merged = {"value": properties}
    merged.update((k, v) for k, v in extra.items() if not is_missing(v))
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


def columns_from_records(records: list[dict], lines: Sequence[int], raw_text: Sequence[str]) -> ColumnRows:
    """Records (dicts) as columns of Python values, with their stored `properties` text."""
    frame = pd.DataFrame(
        {f: pd.Series([r.get(f) for r in records], dtype=object) for f in VALUE_FIELDS},
        index=pd.RangeIndex(len(records)),
    )
    texts, problems = [], np.full(len(records), None, dtype=object)
    for i, record in enumerate(records):
        extra = {k: v for k, v in record.items() if k not in CANONICAL_FIELDS}
        text, problems[i] = properties_text(record.get("properties"), extra)
        texts.append(text)
    frame["properties"] = pd.Series(texts, dtype=object)
    return ColumnRows(frame, np.asarray(lines, dtype=np.int64), lambda at: [raw_text[i] for i in at], problems)


def _cell_text(value: object) -> tuple[str | None, str | None]:
    """One value as stripped text (None when missing or blank), or the problem that makes it unusable."""
    if is_missing(value):
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
        text = pc.utf8_trim(combined_chunks(pa.array(values.array)), _PY_WHITESPACE).cast(pa.large_string())
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


def combined_chunks(values: pa.Array | pa.ChunkedArray) -> pa.Array:
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


def true_mask(array: pa.Array) -> np.ndarray:
    return array.fill_null(False).to_numpy(zero_copy_only=False)


def normalise_columns(rows: ColumnRows) -> tuple[pa.Table, np.ndarray]:
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
        reasons.reject(~true_mask(out[name].is_valid()), f"missing {name}")
        reasons.reject(~true_mask(pc.match_substring_regex(out[name], _TOKEN)), f"{name} is not a lowercase token")
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
            reasons.reject(true_mask(pc.greater(pc.utf8_length(text[name]), MAX_FIELD_CHARS)),
                           f"field too long: {name}")
    return text


def _timestamps(raw: pd.Series, text: pa.Array, usable: np.ndarray, reasons: _Reasons) -> pa.Array:
    """Naive UTC times (ns); raw values go to the parser, which reads numbers and datetimes as such."""
    present = true_mask(text.is_valid()) & usable
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
    ids = np.column_stack([true_mask(out[name].is_valid()) for name in IDENTIFIER_FIELDS])
    no_id = ~ids.any(axis=1)
    reasons.reject(no_id & true_mask(text["phone"].is_valid()), "invalid phone and no other identifier")
    reasons.reject(no_id & true_mask(text["email"].is_valid()), "invalid email and no other identifier")
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
