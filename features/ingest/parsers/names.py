"""Customer names: a tidy display form, and a diacritics-insensitive key for candidate matching.

Vietnamese names arrive composed or decomposed (NFC/NFD differ by source), with stray spaces, in
capitals from POS terminals, or without diacritics from keyboards that lack them ("Nguyen Van An"). The
display form keeps what the customer wrote; the key lets "NGUYỄN VĂN AN", "Nguyễn  Văn An" and
"nguyen van an" compare equal.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

import numpy as np
import pandas as pd

from features.ingest.parsers.columns import UNUSABLE, hashable

_WHITESPACE_RE = re.compile(r"\s+")


def normalize_name(raw: object) -> str | None:
    """The name in NFC with single spaces, as written; title case only if written all upper or all lower.

    Mixed case is kept because it is deliberate ("McDonald", "DeVries"). None when
    missing or without any letter.
    """
    text = _clean(raw, "NFC")
    if text is None:
        return None
    if text.isupper() or text.islower():
        text = text.title()
    return text


def name_key(raw: object) -> str | None:
    """A diacritics- and case-insensitive match key: "Nguyễn Văn  Đức" → "nguyen van duc".

    Many different people share a key (Vietnamese has few family names and the key drops tones, so "Lê" and
    "Lệ" collide), so the key is never used alone to merge people: it only proposes candidates that a shared
    phone, email or platform id must confirm.
    """
    text = _clean(raw, "NFD")
    if text is None:
        return None
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return text.replace("đ", "d").replace("Đ", "D").lower()


def normalize_names(s: pd.Series) -> pd.Series:
    """`normalize_name` over a column (object dtype, None where missing), once per distinct value."""
    return _per_distinct(s, normalize_name)


def name_keys(s: pd.Series) -> pd.Series:
    """`name_key` over a column (object dtype, None where missing), once per distinct value."""
    return _per_distinct(s, name_key)


def _clean(raw: object, form: str) -> str | None:
    """Normalise Unicode, drop invisible format/control characters, collapse whitespace; None if no letter."""
    if not isinstance(raw, str):
        return None
    text = unicodedata.normalize(form, raw)
    if not text.isprintable():
        text = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf"))
    text = _WHITESPACE_RE.sub(" ", text).strip()
    return text if any(ch.isalpha() for ch in text) else None


def _per_distinct(s: pd.Series, convert: Callable[[object], str | None]) -> pd.Series:
    try:
        codes, uniques = pd.factorize(s)
    except TypeError:  # unhashable cells (lists, dicts from JSON) are not names
        codes, uniques = pd.factorize(s.map(lambda v: v if hashable(v) else UNUSABLE))
    values = np.array([convert(v) for v in uniques], dtype=object)
    out = np.full(len(s), None, dtype=object)
    present = codes >= 0
    out[present] = values[codes[present]]
    return pd.Series(out, index=s.index, name=s.name, dtype=object)

