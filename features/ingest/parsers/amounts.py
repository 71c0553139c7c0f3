"""Money values as floats, from numbers or the ways VND amounts are written (`1.200.000đ`, `1,2tr`, `150k`).

Vietnamese writes `.` as the thousands separator and `,` as the decimal separator, but English-formatted
exports (`1,200,000`, `150000.5`) arrive too, so a separator's role is decided from its context:

- Both `.` and `,` present: the last one is the decimal separator, the other groups thousands
  (`1.200.000,5` and `1,200,000.5` are both 1200000.5).
- One kind, repeated: thousands groups, which must be well-formed (`1.200.000`; `12.00.000` is rejected).
- A single separator followed by exactly 3 digits groups thousands, `.` or `,` alike: `1.200` = `1,200`
  = 1200 (1.2 đồng is not a price), and `1.500k` = `1,500k` = 1 500 000 (nobody writes 1500 đồng as 1.5k
  with three decimals). Any other digit count makes it a decimal separator: `150000.5`, `150000,5`, `1,5tr`,
  `1.25tr`.
- A whole part of 0 or of 4+ digits is never a thousands group: `0.500` = 0.5, `1000.500` = 1000.5.
- Units: `k`/`nghìn`/`ngàn` = 1e3, `tr`/`triệu`/`trieu` = 1e6, `tỷ`/`tỉ`/`ty`/`ti` = 1e9. Spoken shorthand
  with digits after the unit is a fraction of it: `1tr2` = 1.2e6, `2k5` = 2500, `1tr250` = 1.25e6. The
  English `m` is not a unit, so `2m` is unparseable rather than guessed.
- Currency marks `đ`, `₫`, `vnđ`, `vnd`, `đồng`, `dong` may precede or follow; a leading `-` or `−` is a
  refund.
- Spaces may group thousands (`1 200 000`) when every group after the first has 3 digits and no `.`/`,`
  appears as well.
- Scientific notation, `nan`, `inf`, booleans and an empty string give None: they are not written amounts.
"""

from __future__ import annotations

import math
import numbers
import re
import unicodedata
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.ingest.parsers.columns import UNUSABLE, factorize, fullmatch, text_cells

_UNITS = {
    "k": 10**3, "nghìn": 10**3, "ngàn": 10**3,
    "tr": 10**6, "triệu": 10**6, "trieu": 10**6,
    "tỷ": 10**9, "tỉ": 10**9, "ty": 10**9, "ti": 10**9,
}
_CURRENCY = r"(?:vnđ|vnd|đồng|dong|đ|₫)"
_UNIT = "(?:" + "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True)) + ")"

_AMOUNT_RE = re.compile(
    rf"(?P<sign>[-−+])?\s*(?:{_CURRENCY}\s*)?"
    r"(?P<number>[0-9][0-9.,]*(?:[ \u00a0\u202f][0-9]{3})*)"
    rf"\s*(?:(?P<unit>{_UNIT})(?P<tail>[0-9]+)?)?"
    rf"\s*(?:{_CURRENCY})?"
)
_SPACES_RE = re.compile("[ \u00a0\u202f]")
_SPACE_GROUPED_RE = re.compile("[1-9][0-9]{0,2}(?:[ \u00a0\u202f][0-9]{3})+")
_GROUPED_RE = {sep: re.compile(rf"[1-9][0-9]{{0,2}}(?:{re.escape(sep)}[0-9]{{3}})+") for sep in ".,"}

# The common forms, parsed without per-value Python in `parse_amounts`: plain integers, and thousands grouped
# with dots, with or without a trailing đ/VND. Both engines read these classes alike.
_FAST_PLAIN = r"-?[0-9]{1,15}"
_FAST_DOTTED = r"-?[1-9][0-9]{0,2}(?:\.[0-9]{3}){1,4} ?(?:đ|Đ|₫|VNĐ|VND|vnđ|vnd)?"

_NO_BOOLEANS = ("string", "empty", "floating", "integer", "mixed-integer-float", "decimal")


def parse_amount(raw: object) -> float | None:
    """The amount as a float (negative for refunds), or None when missing or unparseable. Never raises."""
    try:
        return _parse(raw)
    except (ValueError, ArithmeticError, TypeError):
        return None


def parse_amounts(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """`parse_amount` over a column: (float64 values with NaN, mask of values present but unparseable).

    Missing values (None, NaN, blank strings) are not flagged; a quarantine needs only the unparseable ones.
    Amounts repeat (prices), so each distinct value is parsed once; plain integers and dotted VND groups are
    converted with vectorised operations.
    """
    if pd.api.types.is_bool_dtype(s.dtype):
        values = np.full(len(s), np.nan)
        return _result(s, values, s.notna().to_numpy(dtype=bool))
    if pd.api.types.is_numeric_dtype(s.dtype):
        values = np.array(s.to_numpy(dtype=float, na_value=np.nan))
        bad = np.isinf(values)
        values[bad] = np.nan
        return _result(s, values, bad)
    codes, uniques = factorize(_separate_booleans(s))
    distinct, unusable = _parse_distinct(pd.Series(uniques, dtype=uniques.dtype))
    values = np.full(len(s), np.nan)
    bad = np.zeros(len(s), dtype=bool)
    present = codes >= 0
    values[present] = distinct[codes[present]]
    bad[present] = unusable[codes[present]]
    return _result(s, values, bad)


def _parse(raw: object) -> float | None:
    if raw is None or isinstance(raw, (bool, np.bool_)):
        return None
    if isinstance(raw, (numbers.Real, Decimal)):
        value = float(raw)
        return value if math.isfinite(value) else None
    if not isinstance(raw, str):
        return None
    match = _AMOUNT_RE.fullmatch(unicodedata.normalize("NFC", raw).strip().lower())
    if match is None:
        return None
    number = _parse_number(match["number"])
    if number is None:
        return None
    if match["tail"]:
        if not match["unit"] or not match["number"].isdigit():
            return None
        number += Decimal(match["tail"]) / 10 ** len(match["tail"])
    value = float(number * _UNITS.get(match["unit"], 1))
    if not math.isfinite(value):
        return None
    return -value if match["sign"] in ("-", "−") else value


def _parse_number(number: str) -> Decimal | None:
    """Digits with `.`/`,`/space separators, read by the rules in the module docstring.

    Decimal, not float, so `1,1tr` is exactly 1 100 000.
    """
    if _SPACES_RE.search(number):
        return Decimal(_SPACES_RE.sub("", number)) if _SPACE_GROUPED_RE.fullmatch(number) else None
    dots, commas = number.count("."), number.count(",")
    if not dots and not commas:
        return Decimal(number)
    if dots and commas:
        decimal = "." if number.rfind(".") > number.rfind(",") else ","
        grouping = "," if decimal == "." else "."
        whole, _, fraction = number.rpartition(decimal)
        if not fraction or not _is_grouped(whole, grouping):
            return None
        return Decimal(whole.replace(grouping, "") + "." + fraction)
    sep = "." if dots else ","
    if dots + commas > 1:
        return Decimal(number.replace(sep, "")) if _is_grouped(number, sep) else None
    whole, _, fraction = number.partition(sep)
    if not fraction:
        return None
    if len(fraction) == 3 and _is_grouped(number, sep):
        return Decimal(whole + fraction)
    return Decimal(whole + "." + fraction)


def _is_grouped(number: str, sep: str) -> bool:
    return _GROUPED_RE[sep].fullmatch(number) is not None


def _parse_distinct(uniques: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parse distinct non-missing values: vectorised for the common forms, scalar for the rest.

    Returns the values and which of them are present but unusable (blank strings are merely missing).
    """
    values = np.full(len(uniques), np.nan)
    fast = np.zeros(len(uniques), dtype=bool)
    is_text = text_cells(uniques)
    if is_text.any():
        text = pa.array(uniques[is_text].astype("str"))
        plain = fullmatch(text, _FAST_PLAIN)
        dotted = fullmatch(text, _FAST_DOTTED) & ~plain
        positions = np.flatnonzero(is_text)
        values[positions[plain]] = pc.cast(text.filter(plain), pa.int64()).to_numpy()
        digits = pc.replace_substring_regex(text.filter(dotted), "[^0-9-]", "")
        values[positions[dotted]] = pc.cast(digits, pa.int64()).to_numpy()
        fast[positions[plain | dotted]] = True
    blank = np.zeros(len(uniques), dtype=bool)
    raw = uniques.to_numpy(dtype=object)
    for i in np.flatnonzero(~fast):
        value = parse_amount(raw[i])
        values[i] = np.nan if value is None else value
        blank[i] = isinstance(raw[i], str) and not raw[i].strip()
    return values, np.isnan(values) & ~blank




def _separate_booleans(s: pd.Series) -> pd.Series:
    """Hide booleans from `factorize`, which treats True as 1 and False as 0 (a boolean is no amount)."""
    if s.dtype != object or pd.api.types.infer_dtype(s, skipna=True) in _NO_BOOLEANS:
        return s
    return s.map(lambda v: UNUSABLE if isinstance(v, (bool, np.bool_)) else v)


def _result(s: pd.Series, values: np.ndarray, bad: np.ndarray) -> tuple[pd.Series, pd.Series]:
    return (
        pd.Series(values, index=s.index, name=s.name, dtype="float64"),
        pd.Series(bad, index=s.index, name=s.name, dtype=bool),
    )





