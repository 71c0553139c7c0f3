"""Event times as UTC instants, from the forms the canonical format allows.

Accepted (after trimming whitespace):
- ISO 8601 `yyyy-mm-ddTHH:MM[:SS[.fraction]]` with `Z` or an offset (`+07:00`, `+0700`, `+07`), `T` or a space
  between date and time; also without offset, and a bare `yyyy-mm-dd`;
- `dd/mm/yyyy`, `dd/mm/yyyy HH:MM`, `dd/mm/yyyy HH:MM:SS[.ffffff]` — always day first, never month first;
- epoch seconds (10 digits, optionally `.fraction`) or milliseconds (13 digits), as numbers or strings;
- datetime, date, `pd.Timestamp` and `np.datetime64` objects.

A time without offset is local time in `default_tz` (Asia/Ho_Chi_Minh, UTC+7, no DST since 1975); that holds
for naive datetime objects and naive `datetime64` columns too, because the sources write local wall time.
A date alone is local midnight. Instants outside [1990-01-01, 2101-01-01) UTC are unparseable: they are typos
or placeholder dates (`1970-01-01`, `9999-12-31`), not events. Epoch values with other digit counts (9-digit
seconds before 2001, microseconds) are rejected rather than guessed. Results have nanosecond precision;
epoch numbers are rounded to the microsecond (float input has no more precision than that).
"""

from __future__ import annotations

import datetime as dt
import numbers
import re
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.ingest.parsers.columns import text_cells
from nhip.clock import LOCAL_TZ

DEFAULT_TZ = LOCAL_TZ
EARLIEST = pd.Timestamp("1990-01-01", tz="UTC")
LATEST = pd.Timestamp("2101-01-01", tz="UTC")  # exclusive

_WHITESPACE = " \t\n\r\f\v\u00a0"

# Patterns shared by the scalar and the vectorised parser; `[0-9]`, not `\d`, so Python's `re` and pyarrow's
# RE2 accept exactly the same strings.
_DATE = r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})"
_TIME = r"(?P<h>[0-9]{2}):(?P<mi>[0-5][0-9])(?::(?P<s>[0-5][0-9])(?:\.(?P<f>[0-9]{1,9}))?)?"
_OFFSET = r"(?P<tz>Z|[+-](?:0[0-9]|1[0-4])(?::?[0-5][0-9])?)"
ISO_WITH_OFFSET = rf"{_DATE}[T ]{_TIME}{_OFFSET}"
ISO_LOCAL = rf"{_DATE}(?:[T ]{_TIME})?"

DAY_FIRST = (
    r"(?P<d>[0-9]{1,2})/(?P<mo>[0-9]{1,2})/(?P<y>[0-9]{4})"
    r"(?: (?P<h>[01]?[0-9]|2[0-3]):(?P<mi>[0-5][0-9])(?::(?P<s>[0-5][0-9])(?:\.(?P<f>[0-9]{1,6}))?)?)?"
)
EPOCH_SECONDS = r"(?P<sec>[0-9]{10})(?:\.(?P<f>[0-9]{1,6}))?"
EPOCH_MILLISECONDS = r"(?P<ms>[0-9]{13})"

_ISO_WITH_OFFSET_RE = re.compile(ISO_WITH_OFFSET)
_ISO_LOCAL_RE = re.compile(ISO_LOCAL)
_DAY_FIRST_RE = re.compile(DAY_FIRST)
_EPOCH_SECONDS_RE = re.compile(EPOCH_SECONDS)
_EPOCH_MILLISECONDS_RE = re.compile(EPOCH_MILLISECONDS)

_NAT = np.datetime64("NaT", "ns")


def parse_timestamp(raw: object, default_tz: str = DEFAULT_TZ) -> pd.Timestamp | None:
    """The instant as a UTC `pd.Timestamp`, or None when missing or unparseable. Never raises."""
    try:
        ts = _parse(raw, default_tz)
    except (ValueError, OverflowError, TypeError):
        return None
    if ts is None or ts is pd.NaT or not EARLIEST <= ts < LATEST:
        return None
    return ts


def parse_timestamps(s: pd.Series, default_tz: str = DEFAULT_TZ) -> pd.Series:
    """`parse_timestamp` over a column: `datetime64[ns, UTC]`, NaT where missing or unparseable.

    Built for whole columns of ISO 8601 strings with offsets (one regex pass and one `pd.to_datetime`); each
    other form costs one more regex pass over the rows left; only non-string objects go one by one.
    """
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(s.dtype):
        utc = _to_utc_naive(pd.DatetimeIndex(s), default_tz)
    elif pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        utc = _micros_to_ns(_epoch_micros(s.to_numpy(dtype=float, na_value=np.nan)))
    elif pd.api.types.is_bool_dtype(s.dtype):
        utc = np.full(len(s), _NAT)
    else:
        utc = _parse_mixed(s, default_tz)
    return pd.Series(utc, index=s.index, name=s.name, dtype="datetime64[ns]").dt.tz_localize("UTC")


# Scalar parsing.


def _parse(raw: object, default_tz: str) -> pd.Timestamp | None:
    if raw is None or isinstance(raw, (bool, np.bool_)):
        return None
    if isinstance(raw, str):
        return _parse_text(raw.strip(_WHITESPACE), default_tz)
    if isinstance(raw, (dt.datetime, np.datetime64)):
        return _localize(pd.Timestamp(raw), default_tz)
    if isinstance(raw, dt.date):
        return _localize(pd.Timestamp(raw.year, raw.month, raw.day), default_tz)
    if isinstance(raw, numbers.Real):
        return _parse_epoch_number(float(raw))
    return None


def _parse_text(text: str, default_tz: str) -> pd.Timestamp | None:
    if match := _ISO_WITH_OFFSET_RE.fullmatch(text):
        offset = _offset(match["tz"])
        return _from_parts(match, dt.timezone(offset)).tz_convert("UTC")
    if match := _ISO_LOCAL_RE.fullmatch(text):
        return _localize(_from_parts(match, None), default_tz)
    if match := _DAY_FIRST_RE.fullmatch(text):
        return _localize(_from_parts(match, None), default_tz)
    if match := _EPOCH_SECONDS_RE.fullmatch(text):
        micros = int(match["sec"]) * 1_000_000 + int((match["f"] or "").ljust(6, "0"))
        return pd.Timestamp(micros, unit="us", tz="UTC")
    if match := _EPOCH_MILLISECONDS_RE.fullmatch(text):
        return pd.Timestamp(int(match["ms"]) * 1000, unit="us", tz="UTC")
    return None


def _from_parts(match: re.Match[str], tz: dt.tzinfo | None) -> pd.Timestamp:
    parts = match.groupdict()
    nanos = int((parts.get("f") or "").ljust(9, "0"))
    moment = dt.datetime(
        int(parts["y"]), int(parts["mo"]), int(parts["d"]),
        int(parts.get("h") or 0), int(parts.get("mi") or 0), int(parts.get("s") or 0),
        nanos // 1000, tzinfo=tz,
    )
    return pd.Timestamp(moment).as_unit("ns") + pd.Timedelta(nanos % 1000, unit="ns")


def _offset(text: str) -> dt.timedelta:
    if text == "Z":
        return dt.timedelta(0)
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))


def _localize(ts: pd.Timestamp, default_tz: str) -> pd.Timestamp | None:
    if ts is pd.NaT:
        return None
    if ts.tzinfo is None:
        ts = ts.tz_localize(default_tz, ambiguous="NaT", nonexistent="NaT")
    return None if ts is pd.NaT else ts.tz_convert("UTC")


def _parse_epoch_number(value: float) -> pd.Timestamp | None:
    micros = _epoch_micros(np.array([value], dtype=float))[0]
    return None if micros == _MISSING else pd.Timestamp(int(micros), unit="us", tz="UTC")


_MISSING = np.iinfo(np.int64).min
_EARLIEST_US = EARLIEST.value // 1000
_LATEST_US = LATEST.value // 1000


def _epoch_micros(values: np.ndarray) -> np.ndarray:
    """Epoch numbers to integer microseconds: 10 integer digits are seconds, 13 are milliseconds."""
    micros = np.full(len(values), _MISSING, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        seconds = (values >= 1e9) & (values < 1e10)
        millis = (values >= 1e12) & (values < 1e13)
    micros[seconds] = np.round(values[seconds] * 1e6).astype(np.int64)
    micros[millis] = np.round(values[millis] * 1e3).astype(np.int64)
    return micros


# Vectorised parsing, into naive datetime64[ns] arrays holding UTC wall time (NaT where unparsed).


class _Rows(NamedTuple):
    """Strings still to parse (pyarrow, to skip pandas' per-call overhead) and their rows in the column."""

    text: pa.Array | pa.ChunkedArray
    positions: np.ndarray


def _parse_mixed(s: pd.Series, default_tz: str) -> np.ndarray:
    """Strings go through the vectorised path; other objects (datetimes, numbers) one by one."""
    out = np.full(len(s), _NAT)
    is_text = text_cells(s)
    text = s if is_text.all() else s[is_text]
    _parse_text_rows(_Rows(pa.array(text.astype("str")), np.flatnonzero(is_text)), default_tz, out)
    others = np.flatnonzero(~is_text & s.notna().to_numpy())
    for i, raw in zip(others, s.to_numpy(dtype=object)[others]):
        ts = parse_timestamp(raw, default_tz)
        if ts is not None:
            out[i] = ts.tz_localize(None).as_unit("ns").to_datetime64()
    return out


def _parse_text_rows(rows: _Rows, default_tz: str, out: np.ndarray) -> None:
    """Claim rows form by form, most common first, so a clean ISO column costs a single regex pass."""
    todo = _Rows(pc.utf8_trim(rows.text, _WHITESPACE), rows.positions)
    aware, todo = _split(todo, ISO_WITH_OFFSET)
    _put_datetimes(out, aware, default_tz, format="ISO8601", utc=True)
    local, todo = _split(todo, ISO_LOCAL)
    _put_datetimes(out, local, default_tz, format="ISO8601")
    day_first, todo = _split(todo, DAY_FIRST)
    _put_day_first(out, day_first, default_tz)
    epoch, todo = _split(todo, f"{EPOCH_SECONDS}|{EPOCH_MILLISECONDS}")
    seconds, millis = _split(epoch, EPOCH_SECONDS)
    if len(seconds.positions):
        whole = pc.cast(pc.utf8_slice_codeunits(seconds.text, 0, 10), pa.int64()).to_numpy()
        fraction = pc.utf8_rpad(pc.utf8_slice_codeunits(seconds.text, 11), width=6, padding="0")
        out[seconds.positions] = _micros_to_ns(whole * 1_000_000 + pc.cast(fraction, pa.int64()).to_numpy())
    if len(millis.positions):
        out[millis.positions] = _micros_to_ns(pc.cast(millis.text, pa.int64()).to_numpy() * 1000)


def _split(rows: _Rows, pattern: str) -> tuple[_Rows, _Rows]:
    """(rows matching `pattern` in full, the other rows)."""
    if not len(rows.positions):
        return rows, rows
    hit = pc.fill_null(pc.match_substring_regex(rows.text, f"^(?:{pattern})$"), False)
    hit_np = hit.to_numpy(zero_copy_only=False)
    return (
        _Rows(rows.text.filter(hit), rows.positions[hit_np]),
        _Rows(rows.text.filter(pc.invert(hit)), rows.positions[~hit_np]),
    )


def _put_datetimes(out: np.ndarray, rows: _Rows, default_tz: str, **to_datetime) -> None:
    if len(rows.positions):
        text = rows.text.to_numpy(zero_copy_only=False)
        parsed = pd.to_datetime(text, errors="coerce", **to_datetime)
        out[rows.positions] = _to_utc_naive(parsed, default_tz)


def _put_day_first(out: np.ndarray, rows: _Rows, default_tz: str) -> None:
    """Assemble `dd/mm/yyyy[ HH:MM[:SS[.f]]]` from its parts with numpy; pandas' strptime is 2-3x slower.

    Impossible dates (31/02) become NaT, as `datetime` rejects them in the scalar path.
    """
    if not len(rows.positions):
        return
    parts = pc.extract_regex(rows.text, f"^(?:{DAY_FIRST})$")

    def number(name: str) -> np.ndarray:
        """The part as integers; an absent time part is 0, a fraction is read as microseconds."""
        digits = pc.struct_field(parts, name)
        if name == "f":
            return pc.cast(pc.utf8_rpad(digits, width=6, padding="0"), pa.int64()).to_numpy()
        return pc.cast(pc.utf8_lpad(digits, width=1, padding="0"), pa.int64()).to_numpy()

    year, month, day = number("y"), number("mo"), number("d")
    first_of_month = ((year - 1970) * 12 + np.clip(month, 1, 12) - 1).astype("datetime64[M]")
    date = first_of_month.astype("datetime64[D]") + (day - 1)
    next_month = (first_of_month + 1).astype("datetime64[D]")
    valid = (month >= 1) & (month <= 12) & (day >= 1) & (date < next_month)
    micros = ((number("h") * 60 + number("mi")) * 60 + number("s")) * 1_000_000 + number("f")
    local = date.astype("datetime64[us]") + micros.astype("timedelta64[us]")
    local[~valid] = np.datetime64("NaT")
    out[rows.positions] = _to_utc_naive(pd.DatetimeIndex(local), default_tz)


def _micros_to_ns(micros: np.ndarray) -> np.ndarray:
    out = np.full(len(micros), _NAT)
    ok = (micros >= _EARLIEST_US) & (micros < _LATEST_US)
    out[ok] = micros[ok].astype("datetime64[us]").astype("datetime64[ns]")
    return out


def _to_utc_naive(parsed: pd.DatetimeIndex, default_tz: str) -> np.ndarray:
    """Aware or local-time datetimes to UTC wall time as datetime64[ns], NaT outside the accepted range.

    The range is checked in the parsed resolution, before converting to ns, where year 9999 would overflow.
    """
    if parsed.tz is None:
        parsed = parsed.tz_localize(default_tz, ambiguous="NaT", nonexistent="NaT")
    values = parsed.tz_convert("UTC").tz_localize(None).to_numpy()
    earliest = EARLIEST.tz_localize(None).to_datetime64().astype(values.dtype)
    latest = LATEST.tz_localize(None).to_datetime64().astype(values.dtype)
    out = np.full(len(values), _NAT)
    ok = (values >= earliest) & (values < latest)
    out[ok] = values[ok].astype("datetime64[ns]")
    return out

