"""Email addresses in one comparable form, for identity resolution and message delivery.

Normalisation is deliberately conservative: trim, Unicode NFC, lowercase, and a basic validity check
(exactly one `@`, a non-empty local part, a domain of at least two non-empty dot-separated labels, no
whitespace, control characters or the list/display-name punctuation `<>(),;:"[]\\`). Provider-specific
equivalences are off by default because they are not universal: `an.nguyen@` and `annguyen@` are one Gmail
mailbox but may be two mailboxes elsewhere. `gmail_canonical=True` applies them for gmail.com/googlemail.com
only (dots and `+tag` dropped from the local part, domain gmail.com), for matching, never for sending.

Lowercasing the local part is technically lossy (RFC 5321 lets servers treat it case-sensitively) but no
mail provider does, and customers type their address in any case.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.ingest.parsers.columns import factorize, fullmatch, text_cells

# Literal classes that Python's `re` and pyarrow's RE2 read the same way.
_LOCAL = r'[^@\x00-\x20\x7f<>(),;:"\[\]\\]+'
_LABEL = r'[^.@\x00-\x20\x7f<>(),;:"\[\]\\]+'
EMAIL_PATTERN = rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})+"
_EMAIL_RE = re.compile(EMAIL_PATTERN)
_ASCII_WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # exactly what str.strip() removes from ASCII text
_GMAIL_DOMAINS = ("gmail.com", "googlemail.com")


def normalize_email(raw: object, gmail_canonical: bool = False) -> str | None:
    """The address trimmed and lowercased, or None when missing or not a plausible address."""
    if not isinstance(raw, str):
        return None
    text = unicodedata.normalize("NFC", raw.strip()).lower()
    if not _EMAIL_RE.fullmatch(text) or any(_is_blank_or_control(ch) for ch in text if not ch.isascii()):
        return None
    return _gmail_canonical(text) if gmail_canonical else text


def normalize_emails(s: pd.Series, gmail_canonical: bool = False) -> pd.Series:
    """`normalize_email` over a column: object dtype, None where missing or invalid.

    Each distinct value is normalised once; plain-ASCII values (nearly all) with vectorised string operations.
    """
    codes, uniques = factorize(s)
    values = _normalize_distinct(pd.Series(uniques, dtype=uniques.dtype), gmail_canonical)
    out = np.full(len(s), None, dtype=object)
    present = codes >= 0
    out[present] = values[codes[present]]
    return pd.Series(out, index=s.index, name=s.name, dtype=object)


def _gmail_canonical(address: str) -> str | None:
    local, _, domain = address.partition("@")
    if domain not in _GMAIL_DOMAINS:
        return address
    local = local.split("+", 1)[0].replace(".", "")
    return f"{local}@gmail.com" if local else None


def _is_blank_or_control(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp")


def _normalize_distinct(uniques: pd.Series, gmail_canonical: bool) -> np.ndarray:
    out = np.full(len(uniques), None, dtype=object)
    fast = np.zeros(len(uniques), dtype=bool)
    is_text = text_cells(uniques)
    if is_text.any():
        text = pa.array(uniques[is_text].astype("str"))
        ascii_only = pc.string_is_ascii(text).to_numpy(zero_copy_only=False)
        cleaned = pc.ascii_lower(pc.utf8_trim(text.filter(ascii_only), _ASCII_WHITESPACE))
        valid = fullmatch(cleaned, EMAIL_PATTERN)
        positions = np.flatnonzero(is_text)[ascii_only]
        out[positions[valid]] = cleaned.filter(valid).to_numpy(zero_copy_only=False)
        fast[positions] = True
        if gmail_canonical:
            gmail = pc.or_(pc.ends_with(cleaned, "@gmail.com"), pc.ends_with(cleaned, "@googlemail.com"))
            fast[positions[gmail.to_numpy(zero_copy_only=False)]] = False
    raw = uniques.to_numpy(dtype=object)
    for i in np.flatnonzero(~fast):
        out[i] = normalize_email(raw[i], gmail_canonical)
    return out







