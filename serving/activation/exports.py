"""Audience members → the files ad platforms and Zalo accept: Meta and Google customer lists, ZNS sends, CSV.

Pure: a frame of members in (`customer_id`, `email`, `phone`, `name`, and any columns a ZNS template reads),
a frame out. Writing the CSV, consent, erasure and the audit trail are the caller's; the only file read here
is a ZNS template (`load_zns_template`).

A hashed identifier matches only if both sides normalised it the same way before hashing, so each format
follows its platform's published rule, and the decisions the rules leave open are made once, here:

- Several values joined by `|` (`a@x.vn|b@y.vn`): the first non-blank one is used, the others ignored.
- Emails: the store's rule (`features.ingest.parsers.emails.normalize_email`): trimmed, lowercased, None
  when not a plausible address. That is also Meta's and Google's rule (trim, lowercase).
- Phones: the store's parser (`features.ingest.parsers.phones.normalize_phone`), Vietnamese numbers only:
  `0912 345 678`, `84912345678`, `(+84) 912.345.678` all become `+84912345678`; a foreign or malformed
  number is no phone. Meta wants digits with the country code and no `+` (`84912345678`), Google E.164
  (`+84912345678`), Zalo ZNS the digits form.
- Names are written family name first (`Nguyễn Văn An`): last name = the first word, first name = the last
  word (the given name, *tên*); middle names (*tên đệm*) are dropped. See `split_vietnamese_name`.
- Meta names: lowercase, letters only, Vietnamese diacritics removed (Meta's table asks for a-z). Google
  names: lowercase, letters only, diacritics kept in NFC (Google hashes plain-text uploads after only
  trimming and lowercasing, and its own template shows accented names such as `zoë`, `pérez`).
- A missing identifier is an empty cell, never the hash of an empty string; a member with neither email
  nor phone is left out of the Meta and Google files, which cannot match on names alone.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.ingest.parsers.emails import normalize_email
from features.ingest.parsers.phones import normalize_phone

FORMATS: tuple[str, ...] = ("csv", "meta", "google", "zns")
MEMBER_COLUMNS: tuple[str, ...] = ("customer_id", "email", "phone", "name")
META_COLUMNS: tuple[str, ...] = ("email", "phone", "fn", "ln", "country", "extern_id")
GOOGLE_COLUMNS: tuple[str, ...] = ("Email", "Phone", "First Name", "Last Name", "Country", "Zip")
ZNS_COLUMNS: tuple[str, ...] = ("phone", "template_id", "template_data", "tracking_id")
SEPARATOR = "|"  # between several values of one identifier
COUNTRY = "vn"  # every customer of a Nhịp shop is in Vietnam: the phones are +84 by construction
_IDENTIFIERS = ("email", "phone", "name")
_TEMPLATE_KEYS = {"template_id", "params"}
_COLUMN_KEYS = {"column", "default"}


class ExportError(ValueError):
    """An export that cannot be made as asked; the message names the format, file, key or column."""


# -- identifiers -----------------------------------------------------------------------------------------


def first_value(value: object) -> object:
    """The first non-blank of several values joined by `|`, trimmed; None if all are blank.

    Sources join a customer's second email or phone into the same cell; platforms take one value a cell,
    and the first is the one the customer gave first. Non-text values (a phone read as a number, None,
    NaN) pass through for the parsers to judge.
    """
    if not isinstance(value, str):
        return value
    return next((part.strip() for part in value.split(SEPARATOR) if part.strip()), None)


def normalise_email(value: object) -> str | None:
    """The email trimmed and lowercased, the form Meta and Google hash; None when missing or implausible."""
    return normalize_email(first_value(value))


def phone_e164(value: object) -> str | None:
    """The phone in E.164 (`+84912345678`), Google Customer Match's form before hashing.

    Vietnamese only, by the store's parser: a national number's leading 0 becomes +84, `84…` of 11 digits
    or more is read as already carrying the country code; anything else (foreign, too short, letters) is None.
    """
    return normalize_phone(first_value(value))


def phone_digits(value: object) -> str | None:
    """The phone as country code and number, digits only (`84912345678`).

    Meta's rule (symbols and leading zeros removed, country code included) and the form Zalo ZNS's API takes.
    """
    e164 = phone_e164(value)
    return None if e164 is None else e164[1:]


def without_diacritics(text: str) -> str:
    """`Nguyễn Văn Đức` → `Nguyen Van Duc`: tone and vowel marks dropped, `đ`/`Đ` → `d`/`D`.

    NFD splits the marks off so they can be dropped, but `đ` is a letter of its own, not `d` plus a mark,
    so it is replaced by hand.
    """
    decomposed = unicodedata.normalize("NFD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", bare.replace("đ", "d").replace("Đ", "D"))


def _name_words(full: object) -> list[str]:
    """The words of a name in NFC, each reduced to its letters (no punctuation, digits or stray symbols)."""
    text = first_value(full)
    if not isinstance(text, str):
        return []
    words = ("".join(ch for ch in word if unicodedata.category(ch)[0] in "LM")
             for word in unicodedata.normalize("NFC", text).split())
    return [word for word in words if word]


def split_vietnamese_name(full: object) -> tuple[str | None, str | None]:
    """(first name, last name) of a Vietnamese name written family name first: `Nguyễn Văn An` → (`An`, `Nguyễn`).

    Meta's `fn` and Google's First Name are the given name, `ln` / Last Name the family name. The family name
    (*họ*) is the first word. The given name (*tên*) is the last word: it is the name a Vietnamese person is
    called by, the one Facebook's Vietnamese name form asks for as "Tên" (the middle name, *tên đệm*, has a
    field of its own there), and customer lists have no middle-name key. A hash must match exactly, so
    `văn an` would miss every profile that holds `an`. One word is taken as a given name alone. Compound
    family names (`Tôn Thất`) and names written given name first are not recognised.
    """
    words = _name_words(full)
    if not words:
        return None, None
    if len(words) == 1:
        return words[0], None
    return words[-1], words[0]


def sha256_hex(value: str) -> str:
    """SHA-256 of the UTF-8 bytes, lowercase hex: the hash Meta and Google both compare."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _hashed(value: str | None) -> str:
    return "" if value is None else sha256_hex(value)


# -- formats ---------------------------------------------------------------------------------------------


def _require(members: pd.DataFrame, columns: tuple[str, ...], fmt: str) -> None:
    missing = [c for c in columns if c not in members.columns]
    if missing:
        raise ExportError(f"the {fmt} export needs member columns {list(columns)}; missing {missing}")


@dataclass(frozen=True)
class _Identifiers:
    """The members' identifiers normalised once, for the hashed formats; `reachable`: email or phone."""

    customer_id: list[str]
    email: list[str | None]
    phone: list[str | None]  # E.164
    first: list[str | None]
    last: list[str | None]
    reachable: list[bool]


def _identifiers(members: pd.DataFrame, fmt: str) -> _Identifiers:
    _require(members, MEMBER_COLUMNS, fmt)
    emails = [normalise_email(v) for v in members["email"].to_numpy(dtype=object)]
    phones = [phone_e164(v) for v in members["phone"].to_numpy(dtype=object)]
    names = [split_vietnamese_name(v) for v in members["name"].to_numpy(dtype=object)]
    return _Identifiers(customer_id=[str(v) for v in members["customer_id"].to_numpy(dtype=object)],
                        email=emails, phone=phones, first=[n[0] for n in names], last=[n[1] for n in names],
                        reachable=[e is not None or p is not None for e, p in zip(emails, phones)])


def _frame(columns: tuple[str, ...], values: dict[str, list], keep: list[bool]) -> pd.DataFrame:
    frame = pd.DataFrame(values, columns=list(columns))
    return frame[pd.Series(keep, index=frame.index, dtype=bool)].reset_index(drop=True)


def _meta_name(part: str | None) -> str | None:
    return None if part is None else without_diacritics(part).lower()


def meta_rows(members: pd.DataFrame) -> pd.DataFrame:
    """A Meta Custom Audience customer list: `email`, `phone`, `fn`, `ln`, `country`, `extern_id`, all SHA-256.

    Meta's normalisation before hashing: email trimmed and lowercase; phone digits with the country code, no
    `+` or leading zeros; fn/ln lowercase a-z with no punctuation (so Vietnamese diacritics are removed);
    country the two-letter ISO code in lowercase (`vn`). `extern_id` is the customer id, hashed as written:
    Meta accepts external ids hashed or not and recommends hashing, and a hash still ties a match back,
    since the shop can hash its own ids. Only members with an email or a phone are listed.
    """
    ids = _identifiers(members, "meta")
    country = sha256_hex(COUNTRY)
    values = {
        "email": [_hashed(v) for v in ids.email],
        "phone": [_hashed(None if v is None else v[1:]) for v in ids.phone],
        "fn": [_hashed(_meta_name(v)) for v in ids.first],
        "ln": [_hashed(_meta_name(v)) for v in ids.last],
        "country": [country] * len(ids.email),
        "extern_id": [sha256_hex(v) for v in ids.customer_id],
    }
    return _frame(META_COLUMNS, values, ids.reachable)


def _google_name(part: str | None) -> str | None:
    return None if part is None else part.lower()


def google_rows(members: pd.DataFrame) -> pd.DataFrame:
    """A Google Ads Customer Match file, hashed: `Email`, `Phone`, `First Name`, `Last Name`, `Country`, `Zip`.

    The headers of Google's customer data template. Google's rule for hashed uploads: email and names
    lowercase without extra spaces, phone in E.164 (`+84912345678`), SHA-256; Country (`VN`) and Zip are
    not hashed. Names keep their diacritics (NFC). No postal codes are held, so Zip is empty and Google
    matches on email and phone: its name matching needs Country and Zip together. Only members with an
    email or a phone are listed.
    """
    ids = _identifiers(members, "google")
    values = {
        "Email": [_hashed(v) for v in ids.email],
        "Phone": [_hashed(v) for v in ids.phone],
        "First Name": [_hashed(_google_name(v)) for v in ids.first],
        "Last Name": [_hashed(_google_name(v)) for v in ids.last],
        "Country": [COUNTRY.upper()] * len(ids.email),
        "Zip": [""] * len(ids.email),
    }
    return _frame(GOOGLE_COLUMNS, values, ids.reachable)


def csv_rows(members: pd.DataFrame) -> pd.DataFrame:
    """`customer_id`, `email`, `phone`, `name` as stored, in plain text, for the shop's own tools."""
    _require(members, MEMBER_COLUMNS, "csv")
    return members.loc[:, list(MEMBER_COLUMNS)].reset_index(drop=True)


# -- ZNS templates ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnRef:
    """A template parameter taken from a member column; `default` when the member's value is missing."""

    column: str
    default: str | None = None


@dataclass(frozen=True)
class ZnsTemplate:
    """An approved Zalo ZNS template: its id and how each of its parameters is filled."""

    template_id: str
    params: dict[str, str | ColumnRef]  # a constant, or a member column
    source: str = "ZNS template"  # where it was read, for messages

    def columns(self) -> dict[str, str]:
        """Parameter → the member column it reads."""
        return {name: p.column for name, p in self.params.items() if isinstance(p, ColumnRef)}


def _constant(value: object, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _param_text(value) or ""
    raise ExportError(f"{where} must be text, a number or {{ column = \"NAME\" }}, not {value!r}")


def _param(name: str, value: object, source: str) -> str | ColumnRef:
    where = f"{source} [params] {name}"
    if not isinstance(value, dict):
        return _constant(value, where)
    unknown = set(value) - _COLUMN_KEYS
    if unknown:
        raise ExportError(f"{where}: unknown keys {sorted(unknown)}; a column parameter has column and default")
    column = value.get("column")
    if not isinstance(column, str) or not column.strip():
        raise ExportError(f"{where}: column must name a member column, e.g. {{ column = \"name\" }}")
    default = value.get("default")
    return ColumnRef(column.strip(), None if default is None else _constant(default, f"{where}.default"))


def parse_zns_template(data: dict, source: str) -> ZnsTemplate:
    """A template from parsed TOML; `source` names it in messages."""
    unknown = set(data) - _TEMPLATE_KEYS
    if unknown:
        raise ExportError(f"{source}: unknown keys {sorted(unknown)}; a template has template_id and [params]")
    if "template_id" not in data:
        raise ExportError(f"{source}: template_id is missing; write the id Zalo gave the approved template, "
                          "e.g. template_id = \"231569\"")
    template_id = data["template_id"]
    if isinstance(template_id, int) and not isinstance(template_id, bool):
        template_id = str(template_id)
    if not isinstance(template_id, str) or not template_id.strip():
        raise ExportError(f"{source}: template_id must be the template's id as text, not {template_id!r}")
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise ExportError(f"{source}: params must be a table ([params]), not {params!r}")
    return ZnsTemplate(template_id.strip(), {name: _param(name, v, source) for name, v in params.items()}, source)


def load_zns_template(path: Path) -> ZnsTemplate:
    """The ZNS template in a TOML file (see `zns_template.example.toml` beside this module)."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"no ZNS template file at {path}")
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ExportError(f"{path} is not UTF-8 text: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ExportError(f"{path} is not valid TOML: {exc}") from exc
    return parse_zns_template(data, str(path))


def _param_text(value: object) -> str | None:
    """A member's value as ZNS parameter text, runs of spaces made one; None when missing. `1200.0` → `1200`."""
    if isinstance(value, str):
        return " ".join(value.split()) or None
    if value is None or (not isinstance(value, list | dict) and pd.isna(value)):
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
        return str(int(value))
    return str(value)


def zns_rows(members: pd.DataFrame, template: ZnsTemplate) -> pd.DataFrame:
    """Zalo ZNS sends: `phone` (`84…` digits), `template_id`, `template_data` (JSON object text), `tracking_id`.

    The fields of ZNS's send-by-phone request. `template_data` holds the template's parameters, constants
    and member columns, as compact JSON with Vietnamese kept as written (ensure_ascii=False); `tracking_id`
    is the customer id, so delivery reports tie back to the member. Left out: members without a phone,
    with a landline (+84 2…; ZNS reaches the Zalo account of a mobile number), whose phone an earlier member
    already has (one message per number), or missing a column parameter that has no default.
    """
    _require(members, ("customer_id", "phone"), "zns")
    absent = {name: column for name, column in template.columns().items() if column not in members.columns}
    if absent:
        named = ", ".join(f"{name} → {column!r}" for name, column in absent.items())
        raise ExportError(f"{template.source}: parameters name columns the members do not have ({named}); "
                          f"member columns: {', '.join(map(str, members.columns))}")
    cells = {column: members[column].to_numpy(dtype=object) for column in set(template.columns().values())}
    rows, seen = [], set()
    for i, (customer_id, phone) in enumerate(zip(members["customer_id"].to_numpy(dtype=object),
                                                 members["phone"].to_numpy(dtype=object))):
        digits = phone_digits(phone)
        if digits is None or digits.startswith("842") or digits in seen:
            continue
        data = _template_data(template, cells, i)
        if data is None:
            continue
        seen.add(digits)
        rows.append((digits, template.template_id, json.dumps(data, ensure_ascii=False, separators=(",", ":")),
                     str(customer_id)))
    return pd.DataFrame(rows, columns=list(ZNS_COLUMNS))


def _template_data(template: ZnsTemplate, cells: dict, i: int) -> dict[str, str] | None:
    data = {}
    for name, param in template.params.items():
        if isinstance(param, str):
            data[name] = param
            continue
        value = cells[param.column][i]
        text = _param_text(first_value(value) if param.column in _IDENTIFIERS else value)
        if text is None:
            text = param.default
        if text is None:
            return None
        data[name] = text
    return data


# -- dispatch --------------------------------------------------------------------------------------------


def export_rows(members: pd.DataFrame, fmt: str, template: ZnsTemplate | None = None) -> pd.DataFrame:
    """The rows of `fmt` (one of `FORMATS`) for these members; `template` is the ZNS template, for zns only."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}")
    if fmt == "zns":
        if template is None:
            raise ExportError("the zns export needs a ZNS template: a TOML file with template_id and [params] "
                              "(see serving/activation/zns_template.example.toml)")
        return zns_rows(members, template)
    if template is not None:
        raise ExportError(f"a ZNS template applies to the zns export only, not to {fmt}")
    return {"csv": csv_rows, "meta": meta_rows, "google": google_rows}[fmt](members)
