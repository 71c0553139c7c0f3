"""Vietnamese phone numbers to one E.164 form (`+84…`), so the same person resolves to one phone.

Sources write phones every way (`0912 345 678`, `+84 912 345 678`, `(+84) 912.345.678`, `0084…`), some still
carry the 11-digit mobile numbers retired in 2018, and spreadsheets drop the leading zero. All of them must
meet in one key for identity resolution, and whatever cannot be used needs a reason for quarantine.

Accepted after normalisation (national significant number = the digits after `+84`):
- mobile: 9 digits starting 3, 5, 7, 8 or 9 (written `03x…`/`05x…`/`07x…`/`08x…`/`09x…`);
- landline: 10 digits starting 2 (written `02x…`, 11 digits with the 0, since the 2017 renumbering);
- pre-2018 mobile: 10 digits starting 1 (`01xx…`), rewritten to its new prefix, e.g. `0168…` → `038…`.

Decisions for ambiguous input:
- A bare national number without its 0 (`912345678`, `2838221234`) is accepted: spreadsheets and numeric CSV
  columns strip leading zeros, and no other reading of such a string exists in a phone column.
- `84…` without `+` is read as the country code only in numbers of 11 or more digits; a 9-digit `84…` is a
  zero-stripped `084…` VinaPhone number.
- A trunk 0 written after the country code (`+84 0912 345 678`) is dropped.
- Pre-2017 landlines (`08 3822 1234`, old HCMC) cannot be told from today's `083…` mobiles, so they are read
  as mobiles; old 10-digit landlines are not converted.
- Letters anywhere (`ext`, `tel:`, `x12`) reject the value: we do not guess which digits are the phone.
"""

from __future__ import annotations

import math
import numbers
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.ingest.parsers.columns import factorize, fullmatch, text_cells

# Spacing and punctuation people put inside phone numbers. One literal character class that Python's `re`
# and pyarrow's RE2 read the same way (no `\s`: the two engines disagree about which characters it covers).
_SEPARATORS = "[ \t\n\r\f\v\u00a0\u2009\u202f.()\\-]"
_SEPARATORS_RE = re.compile(_SEPARATORS)
_DIALLED_RE = re.compile(r"\+?[0-9]+")

# The common forms, handled without per-value Python in `normalize_phones`; everything else goes through the
# scalar path. Must accept nothing that `normalize_phone` would treat differently.
_FAST_FORM = r"(?:\+84|0084|84|0)(?:[35789][0-9]{8}|2[0-9]{9})"
_FAST_PREFIX = r"^(?:\+84|0084|84|0)"

# 2018 renumbering of 11-digit mobiles: old national prefix (without the 0) → new one.
OLD_MOBILE_PREFIXES: dict[str, str] = {
    # Viettel
    "162": "32", "163": "33", "164": "34", "165": "35", "166": "36", "167": "37", "168": "38", "169": "39",
    # MobiFone
    "120": "70", "121": "79", "122": "77", "126": "76", "128": "78",
    # VinaPhone
    "123": "83", "124": "84", "125": "85", "127": "81", "129": "82",
    # Vietnamobile
    "186": "56", "188": "58",
    # Gmobile
    "199": "59",
}

# Length of the national significant number by its first digit.
_NSN_LENGTH = {"1": 10, "2": 10, "3": 9, "5": 9, "7": 9, "8": 9, "9": 9}



def normalize_phone(raw: object) -> str | None:
    """The phone as E.164 (`+84912345678`), or None when it is missing or not a usable Vietnamese phone."""
    return _classify(raw)[0]


def phone_problem(raw: object) -> str | None:
    """Why `raw` is not a usable phone (short, for quarantine messages), or None when it is one."""
    return _classify(raw)[1]


def normalize_phones(s: pd.Series) -> pd.Series:
    """`normalize_phone` over a column: object dtype, None where missing or invalid.

    Phones repeat across events, so the work is done once per distinct value; the common written forms are
    handled with vectorised string operations and only the rest go through `normalize_phone`.
    """
    codes, uniques = factorize(s)
    values = _normalize_distinct(pd.Series(uniques, dtype=uniques.dtype))
    out = np.full(len(s), None, dtype=object)
    present = codes >= 0
    out[present] = values[codes[present]]
    return pd.Series(out, index=s.index, name=s.name, dtype=object)


def _classify(raw: object) -> tuple[str | None, str | None]:
    text, problem = _as_text(raw)
    if text is None:
        return None, problem
    compact = _SEPARATORS_RE.sub("", text.strip())
    if not compact:
        return None, "empty"
    if any(ch.isalpha() for ch in compact):
        return None, "contains letters"
    if not _DIALLED_RE.fullmatch(compact):
        return None, "unexpected characters"
    national, problem = _national_number(compact)
    if national is None:
        return None, problem
    return _validate_national(national)


def _as_text(raw: object) -> tuple[str | None, str | None]:
    """Phones arrive as text, or as numbers when a CSV column was read as numeric (leading 0 lost)."""
    if raw is None:
        return None, "missing"
    if isinstance(raw, str):
        return raw, None
    if isinstance(raw, (bool, np.bool_)):
        return None, "not a phone number"
    if isinstance(raw, numbers.Integral) and raw >= 0:
        return str(int(raw)), None
    if isinstance(raw, numbers.Real):
        value = float(raw)
        if math.isnan(value):
            return None, "missing"
        if math.isfinite(value) and value.is_integer() and value >= 0:
            return str(int(value)), None
    return None, "not a phone number"


def _national_number(compact: str) -> tuple[str | None, str | None]:
    """Strip the international or trunk prefix; return the digits after `+84`."""
    if compact.startswith("+"):
        if not compact.startswith("+84"):
            return None, "not a Vietnamese number"
        rest = compact[3:]
    elif compact.startswith("00"):
        if not compact.startswith("0084"):
            return None, "not a Vietnamese number"
        rest = compact[4:]
    elif compact.startswith("0"):
        return compact[1:], None
    elif compact.startswith("84") and len(compact) >= 11:
        rest = compact[2:]
    else:
        return compact, None
    return (rest[1:] if rest.startswith("0") else rest), None


def _validate_national(national: str) -> tuple[str | None, str | None]:
    expected = _NSN_LENGTH.get(national[:1])
    if expected is None:
        return None, ("too few digits" if len(national) < 9 else "unknown prefix")
    if len(national) < expected:
        return None, "too few digits"
    if len(national) > expected:
        return None, "too many digits"
    if national.startswith("1"):
        new_prefix = OLD_MOBILE_PREFIXES.get(national[:3])
        if new_prefix is None:
            return None, "unknown prefix"
        national = new_prefix + national[3:]
    return "+84" + national, None


def _normalize_distinct(uniques: pd.Series) -> np.ndarray:
    """Normalise distinct non-missing values: vectorised for the common forms, scalar for the rest."""
    out = np.full(len(uniques), None, dtype=object)
    is_text = text_cells(uniques)
    fast = np.zeros(len(uniques), dtype=bool)
    if is_text.any():
        text = pa.array(uniques[is_text].astype("str"))
        compact = pc.replace_substring_regex(text, _SEPARATORS, "")
        matched = fullmatch(compact, _FAST_FORM)
        positions = np.flatnonzero(is_text)[matched]
        e164 = pc.replace_substring_regex(compact.filter(matched), _FAST_PREFIX, "+84")
        out[positions] = e164.to_numpy(zero_copy_only=False)
        fast[positions] = True
    raw = uniques.to_numpy(dtype=object)
    for i in np.flatnonzero(~fast):
        out[i] = normalize_phone(raw[i])
    return out







