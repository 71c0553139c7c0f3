"""Normalisation of phones, amounts, timestamps, emails and names (features/*.py)."""

from __future__ import annotations

import datetime as dt
import math
import unicodedata

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.ingest.parsers.amounts import parse_amount, parse_amounts
from features.ingest.parsers.emails import normalize_email, normalize_emails
from features.ingest.parsers.names import (
    name_key,
    name_keys,
    normalize_name,
    normalize_names,
)
from features.ingest.parsers.phones import (
    OLD_MOBILE_PREFIXES,
    normalize_phone,
    normalize_phones,
    phone_problem,
)
from features.ingest.parsers.timestamps import parse_timestamp, parse_timestamps

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# Phones.

PHONES = [
    ("0912 345 678", "+84912345678"),
    ("0912345678", "+84912345678"),
    ("+84 912 345 678", "+84912345678"),
    ("+84912345678", "+84912345678"),
    ("84912345678", "+84912345678"),
    ("(+84) 912.345.678", "+84912345678"),
    ("0084912345678", "+84912345678"),
    ("00 84 912 345 678", "+84912345678"),
    ("0912-345-678", "+84912345678"),
    ("(091) 234-5678", "+84912345678"),
    ("  0912.345.678\n", "+84912345678"),
    ("0912\u00a0345\u00a0678", "+84912345678"),
    ("+84 (0) 912 345 678", "+84912345678"),
    ("+840912345678", "+84912345678"),
    ("912345678", "+84912345678"),
    (912345678, "+84912345678"),
    (912345678.0, "+84912345678"),
    (np.int64(912345678), "+84912345678"),
    ("0321234567", "+84321234567"),
    ("0561234567", "+84561234567"),
    ("0701234567", "+84701234567"),
    ("0861234567", "+84861234567"),
    ("841234567", "+84841234567"),
    # Landlines, 11 digits with the 0 since 2017.
    ("028 3822 1234", "+842838221234"),
    ("024 3825 3536", "+842438253536"),
    ("0236 382 1234", "+842363821234"),
    ("+84 28 3822 1234", "+842838221234"),
    ("(028) 38221234", "+842838221234"),
    ("842838221234", "+842838221234"),
    # 2018 renumbering of 11-digit mobiles.
    ("0162 123 4567", "+84321234567"),
    ("0163 123 4567", "+84331234567"),
    ("0164 123 4567", "+84341234567"),
    ("0165 123 4567", "+84351234567"),
    ("0166 123 4567", "+84361234567"),
    ("0167 123 4567", "+84371234567"),
    ("0168 123 4567", "+84381234567"),
    ("0169 123 4567", "+84391234567"),
    ("0120 123 4567", "+84701234567"),
    ("0121 123 4567", "+84791234567"),
    ("0122 123 4567", "+84771234567"),
    ("0126 123 4567", "+84761234567"),
    ("0128 123 4567", "+84781234567"),
    ("0123 123 4567", "+84831234567"),
    ("0124 123 4567", "+84841234567"),
    ("0125 123 4567", "+84851234567"),
    ("0127 123 4567", "+84811234567"),
    ("0129 123 4567", "+84821234567"),
    ("0186 123 4567", "+84561234567"),
    ("0188 123 4567", "+84581234567"),
    ("0199 123 4567", "+84591234567"),
    ("+84 168 123 4567", "+84381234567"),
    ("84 168 123 4567", "+84381234567"),
    ("0084 122 123 4567", "+84771234567"),
    ("01681234567", "+84381234567"),
]

BAD_PHONES = [
    (None, "missing"),
    (float("nan"), "missing"),
    ("", "empty"),
    ("   ", "empty"),
    ("0912 345 67", "too few digits"),
    ("12345", "too few digits"),
    ("09123456789", "too many digits"),
    ("028 3822 12345", "too many digits"),
    ("0912 abc 678", "contains letters"),
    ("tel:0912345678", "contains letters"),
    ("0912345678 ext 12", "contains letters"),
    ("+1 415 555 1234", "not a Vietnamese number"),
    ("+65 9123 4567", "not a Vietnamese number"),
    ("0065 9123 4567", "not a Vietnamese number"),
    ("0412 345 678", "unknown prefix"),
    ("0612 345 678", "unknown prefix"),
    ("0190 123 4567", "unknown prefix"),
    ("0912#345678", "unexpected characters"),
    ("0912345678 / 0987654321", "unexpected characters"),
    (True, "not a phone number"),
    ([], "not a phone number"),
]


@pytest.mark.parametrize(("raw", "expected"), PHONES)
def test_phone_forms(raw, expected):
    assert normalize_phone(raw) == expected
    assert phone_problem(raw) is None


@pytest.mark.parametrize(("raw", "problem"), BAD_PHONES)
def test_unusable_phones_say_why(raw, problem):
    assert normalize_phone(raw) is None
    assert phone_problem(raw) == problem


def test_normalize_phones_matches_table():
    raws = [raw for raw, _ in PHONES] + [raw for raw, _ in BAD_PHONES if not isinstance(raw, list)]
    expected = [e for _, e in PHONES] + [None] * (len(raws) - len(PHONES))
    out = normalize_phones(pd.Series(raws, dtype=object, index=range(10, 10 + len(raws)), name="phone"))
    assert out.dtype == object and out.name == "phone" and list(out.index) == list(range(10, 10 + len(raws)))
    assert out.tolist() == expected


def test_normalize_phones_on_string_and_numeric_columns():
    strings = pd.Series(["0912 345 678", None, "0168 123 4567", "x"], dtype="str")
    assert normalize_phones(strings).tolist() == ["+84912345678", None, "+84381234567", None]
    numbers = pd.Series([912345678.0, np.nan, 1681234567.0])
    assert normalize_phones(numbers).tolist() == ["+84912345678", None, "+84381234567"]
    unhashable = pd.Series(["0912345678", ["0912345678"], {"a": 1}], dtype=object)
    assert normalize_phones(unhashable).tolist() == ["+84912345678", None, None]


NEW_MOBILE_PREFIXES = [f"{a}{b}" for a in "35789" for b in "0123456789"]
_separators = st.sampled_from(["", " ", ".", "-", "  "])


@st.composite
def national_numbers(draw):
    """(how it is written without a prefix, its E.164 form) for a valid mobile, old mobile or landline."""
    kind = draw(st.sampled_from(["mobile", "old", "landline"]))
    if kind == "mobile":
        nsn = draw(st.sampled_from(NEW_MOBILE_PREFIXES)) + draw(st.text("0123456789", min_size=7, max_size=7))
        return nsn, "+84" + nsn
    if kind == "old":
        old, new = draw(st.sampled_from(sorted(OLD_MOBILE_PREFIXES.items())))
        rest = draw(st.text("0123456789", min_size=7, max_size=7))
        return old + rest, "+84" + new + rest
    nsn = "2" + draw(st.text("0123456789", min_size=9, max_size=9))
    return nsn, "+84" + nsn


@st.composite
def written_phones(draw):
    """A valid number in one of the ways people write it, and its E.164 form."""
    nsn, e164 = draw(national_numbers())
    prefix = draw(st.sampled_from(["0", "+84", "+84 ", "84", "0084", "(+84) ", "+84 (0)", "(0", ""]))
    digits = list(nsn)
    body = "".join(d + draw(_separators) for d in digits[:-1]) + digits[-1]
    if prefix == "(0":
        body = body[:2] + ")" + body[2:]
    padding = draw(st.sampled_from(["", " ", "\t", "\n "]))
    return padding + prefix + body + padding, e164


@FAST
@given(written_phones())
def test_every_way_of_writing_a_number_gives_one_e164(case):
    written, e164 = case
    assert normalize_phone(written) == e164


phone_like = st.one_of(
    written_phones().map(lambda case: case[0]),
    st.text(alphabet="0123456789+()-. 84", max_size=18),
    st.text(max_size=15),
    st.integers(min_value=-10, max_value=10**13),
    st.none(),
)


@FAST
@given(phone_like)
def test_normalize_phone_is_idempotent(raw):
    once = normalize_phone(raw)
    if once is not None:
        assert normalize_phone(once) == once
        assert once.startswith("+84") and once[1:].isdigit()
    assert (once is None) == (phone_problem(raw) is not None)


@FAST
@given(st.lists(phone_like, max_size=20), st.booleans())
def test_normalize_phones_agrees_with_scalar(raws, as_strings):
    if as_strings:
        raws = [r if r is None else str(r) for r in raws]
        s = pd.Series(raws, dtype="str")
    else:
        s = pd.Series(raws, dtype=object)
    assert normalize_phones(s).tolist() == [normalize_phone(r) for r in s]


# Amounts.

AMOUNTS = [
    (150000, 150000.0),
    (150000.5, 150000.5),
    (np.int64(150000), 150000.0),
    ("150000", 150000.0),
    ("150000.5", 150000.5),
    ("1.200.000đ", 1_200_000.0),
    ("1.200.000 đ", 1_200_000.0),
    ("1.200.000 ₫", 1_200_000.0),
    ("₫1.200.000", 1_200_000.0),
    ("1,200,000", 1_200_000.0),
    ("1,2tr", 1_200_000.0),
    ("1.5tr", 1_500_000.0),
    ("1,1tr", 1_100_000.0),
    ("2 triệu", 2_000_000.0),
    ("2 TRIỆU", 2_000_000.0),
    (unicodedata.normalize("NFD", "2 triệu"), 2_000_000.0),
    ("2 trieu", 2_000_000.0),
    ("150k", 150_000.0),
    ("150K", 150_000.0),
    ("150 nghìn", 150_000.0),
    ("150.000 VNĐ", 150_000.0),
    ("150.000VND", 150_000.0),
    ("150.000 vnđ", 150_000.0),
    ("150.000 đồng", 150_000.0),
    ("VND 150,000", 150_000.0),
    ("1,5 tỷ", 1_500_000_000.0),
    ("2 tỉ", 2_000_000_000.0),
    ("-150.000", -150_000.0),
    ("−150.000đ", -150_000.0),
    ("-1,2tr", -1_200_000.0),
    ("+150.000", 150_000.0),
    # Ambiguous separators, decided as the module docstring says.
    ("1.200", 1200.0),
    ("1,200", 1200.0),
    ("1,5", 1.5),
    ("1.5", 1.5),
    ("150000,5", 150000.5),
    ("0.500", 0.5),
    ("1000.500", 1000.5),
    ("1.500k", 1_500_000.0),
    ("1,500k", 1_500_000.0),
    ("1.200.000,5", 1_200_000.5),
    ("1,200,000.5", 1_200_000.5),
    ("1 200 000", 1_200_000.0),
    ("1 200 000 đ", 1_200_000.0),
    # Spoken shorthand: digits after the unit are a fraction of it.
    ("1tr2", 1_200_000.0),
    ("1tr250", 1_250_000.0),
    ("2k5", 2500.0),
    ("0", 0.0),
]

BAD_AMOUNTS = [
    None, float("nan"), float("inf"), True, "", "   ", "abc", "12.00.000", "1.2.3", "1,2.3", "150.", "150,",
    "2m", "1e5", "nan", "inf", "1.200 000", "1tr2k", "1.5tr2", "đ", "tr", "--150", "150-", "9" * 400,
    [1], {},
]


@pytest.mark.parametrize(("raw", "expected"), AMOUNTS)
def test_amount_forms(raw, expected):
    assert parse_amount(raw) == expected


@pytest.mark.parametrize("raw", BAD_AMOUNTS)
def test_unparseable_amounts(raw):
    assert parse_amount(raw) is None


def test_parse_amounts_flags_only_present_unparseable_values():
    raws = ["1.200.000đ", None, "", "  ", "abc", 150000, float("nan"), "150k", True, ["x"]]
    values, bad = parse_amounts(pd.Series(raws, dtype=object, name="amount"))
    assert values.dtype == "float64" and bad.dtype == bool and values.name == "amount"
    assert values.iloc[[0, 5, 7]].tolist() == [1_200_000.0, 150_000.0, 150_000.0]
    assert values.isna().tolist() == [False, True, True, True, True, False, True, False, True, True]
    assert bad.tolist() == [False, False, False, False, True, False, False, False, True, True]


def test_parse_amounts_on_typed_columns():
    values, bad = parse_amounts(pd.Series([1.5, np.nan, np.inf]))
    assert values.iloc[0] == 1.5 and values.iloc[1:].isna().all() and bad.tolist() == [False, False, True]
    values, bad = parse_amounts(pd.Series(["150000", None, "1,2tr"], dtype="str"))
    assert values.tolist()[::2] == [150000.0, 1_200_000.0] and bad.tolist() == [False, False, False]
    values, bad = parse_amounts(pd.Series([1, True, 1.0, False, 0], dtype=object))
    assert values.tolist()[::2] == [1.0, 1.0, 0.0] and bad.tolist() == [False, True, False, True, False]


@FAST
@given(st.text(max_size=30))
def test_parse_amount_never_raises(text):
    value = parse_amount(text)
    assert value is None or math.isfinite(value)


@st.composite
def written_amounts(draw):
    """An amount written with `.`/`,`/space grouping, a decimal part, sign, unit and currency, or not."""
    number = f"{draw(st.integers(0, 10**10)):,}".replace(",", draw(st.sampled_from([".", ",", " ", ""])))
    number += draw(st.sampled_from(["", "", ",5", ".5", ",25", ".125", ".", ",0005"]))
    sign = draw(st.sampled_from(["", "", "-", "−"]))
    unit = draw(st.sampled_from(["", "", "k", "tr", " triệu", "tỷ", "K", "tr5"]))
    return sign + number + unit + draw(st.sampled_from(["", "đ", " VNĐ", "VND", "₫"]))


amount_like = st.one_of(
    written_amounts(),
    st.one_of(
        st.text(alphabet="0123456789.,-đk tr", max_size=12),
        st.text(max_size=10),
        st.integers(min_value=-10**12, max_value=10**12),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
    ),
)


def _or_none(values) -> list:
    return [None if pd.isna(v) else v for v in values]


@FAST
@given(st.lists(amount_like, max_size=20))
def test_parse_amounts_agrees_with_scalar(raws):
    values, bad = parse_amounts(pd.Series(raws, dtype=object))
    expected = [parse_amount(r) for r in raws]
    assert _or_none(values) == expected
    for raw, value, flagged in zip(raws, expected, bad):
        missing = raw is None or (isinstance(raw, float) and math.isnan(raw))
        blank = isinstance(raw, str) and not raw.strip()
        assert flagged == (value is None and not missing and not blank)
    texts = [r for r in raws if r is None or isinstance(r, str)]
    values, _ = parse_amounts(pd.Series(texts, dtype="str"))
    assert _or_none(values) == [parse_amount(r) for r in texts]


# Timestamps.

TIMESTAMPS = [
    ("2026-03-01T09:15:00+07:00", "2026-03-01T02:15:00"),
    ("2026-03-01T02:15:00Z", "2026-03-01T02:15:00"),
    ("2026-03-01T09:15:00+0700", "2026-03-01T02:15:00"),
    ("2026-03-01T09:15:00+07", "2026-03-01T02:15:00"),
    ("2026-03-01T04:15:00+02:00", "2026-03-01T02:15:00"),
    ("2026-02-28T21:15:00-05:00", "2026-03-01T02:15:00"),
    ("2026-03-01T07:45:00+05:30", "2026-03-01T02:15:00"),
    ("2026-03-01 09:15:00+07:00", "2026-03-01T02:15:00"),
    ("2026-03-01T09:15:00.123456+07:00", "2026-03-01T02:15:00.123456"),
    ("2026-03-01T09:15:00.123456789+07:00", "2026-03-01T02:15:00.123456789"),
    ("2026-03-01T09:15+07:00", "2026-03-01T02:15:00"),
    # No offset: Asia/Ho_Chi_Minh.
    ("2026-03-01T09:15:00", "2026-03-01T02:15:00"),
    ("2026-03-01 09:15:00", "2026-03-01T02:15:00"),
    ("2026-03-01 09:15", "2026-03-01T02:15:00"),
    ("2026-03-01", "2026-02-28T17:00:00"),
    ("2026-03-01T03:00:00", "2026-02-28T20:00:00"),
    # Day first, always.
    ("01/03/2026 09:15", "2026-03-01T02:15:00"),
    ("01/03/2026 09:15:30", "2026-03-01T02:15:30"),
    ("1/3/2026 9:15", "2026-03-01T02:15:00"),
    ("12/03/2026 09:15", "2026-03-12T02:15:00"),
    ("03/12/2026 09:15", "2026-12-03T02:15:00"),
    ("31/12/2025 23:59:59", "2025-12-31T16:59:59"),
    ("01/03/2026", "2026-02-28T17:00:00"),
    ("01/03/2026 09:15:00.5", "2026-03-01T02:15:00.5"),
    ("  2026-03-01T09:15:00+07:00\n", "2026-03-01T02:15:00"),
    # Epochs are UTC by definition.
    (1772331300, "2026-03-01T02:15:00"),
    ("1772331300", "2026-03-01T02:15:00"),
    (1772331300.25, "2026-03-01T02:15:00.25"),
    ("1772331300.25", "2026-03-01T02:15:00.25"),
    (1772331300000, "2026-03-01T02:15:00"),
    ("1772331300123", "2026-03-01T02:15:00.123"),
    (np.int64(1772331300), "2026-03-01T02:15:00"),
    # Objects.
    (dt.datetime(2026, 3, 1, 9, 15), "2026-03-01T02:15:00"),
    (dt.datetime(2026, 3, 1, 2, 15, tzinfo=dt.UTC), "2026-03-01T02:15:00"),
    (pd.Timestamp("2026-03-01T09:15:00+07:00"), "2026-03-01T02:15:00"),
    (pd.Timestamp("2026-03-01T09:15:00"), "2026-03-01T02:15:00"),
    (np.datetime64("2026-03-01T09:15:00"), "2026-03-01T02:15:00"),
    (dt.date(2026, 3, 1), "2026-02-28T17:00:00"),
    # Range edges.
    ("1990-01-01T00:00:00Z", "1990-01-01T00:00:00"),
    ("2100-12-31T23:59:59Z", "2100-12-31T23:59:59"),
]

BAD_TIMESTAMPS = [
    None, float("nan"), True, "", "garbage", "31/02/2026", "2026-02-30", "2026-13-01", "32/01/2026 10:00",
    "2026-03-01T24:00:00Z", "2026-03-01T09:60:00", "2026-03-01T09:15:00+25:00", "01/03/2026 09:15:60",
    "1970-01-01", "1989-12-31T23:59:59Z", "2101-01-01T00:00:00Z", "9999-12-31", "0000-01-01", "9999999999",
    1e9 - 1, 123, "2026/03/01", "03-01-2026",
    "2026-03-01T09", "20260301", "01/03/26", "2026-03-01t09:15:00z", pd.NaT, [2026],
]


@pytest.mark.parametrize(("raw", "expected"), TIMESTAMPS)
def test_timestamp_forms(raw, expected):
    parsed = parse_timestamp(raw)
    assert parsed == utc(expected)
    assert str(parsed.tz) == "UTC"


@pytest.mark.parametrize("raw", BAD_TIMESTAMPS)
def test_unparseable_timestamps(raw):
    assert parse_timestamp(raw) is None


def test_parse_timestamps_matches_table():
    raws = [raw for raw, _ in TIMESTAMPS] + BAD_TIMESTAMPS
    out = parse_timestamps(pd.Series(raws, dtype=object, name="ts"))
    assert str(out.dtype) == "datetime64[ns, UTC]" and out.name == "ts"
    expected = [utc(e) for _, e in TIMESTAMPS] + [pd.NaT] * len(BAD_TIMESTAMPS)
    assert out.tolist() == expected


def test_parse_timestamps_typed_columns():
    naive = pd.Series(pd.to_datetime(["2026-03-01 09:15", None]))
    assert parse_timestamps(naive).tolist() == [utc("2026-03-01T02:15"), pd.NaT]
    aware = pd.Series(pd.to_datetime(["2026-03-01T02:15Z", "1970-01-01T00:00Z"])).dt.tz_convert("Asia/Bangkok")
    assert parse_timestamps(aware).tolist() == [utc("2026-03-01T02:15"), pd.NaT]
    epochs = parse_timestamps(pd.Series([1772331300, 1772331300123, 17, -1772331300]))
    assert epochs.tolist() == [utc("2026-03-01T02:15"), utc("2026-03-01T02:15:00.123"), pd.NaT, pd.NaT]
    floats = parse_timestamps(pd.Series([1772331300.25, np.nan]))
    assert floats.tolist() == [utc("2026-03-01T02:15:00.25"), pd.NaT]
    assert parse_timestamps(pd.Series([True, False])).isna().all()
    assert len(parse_timestamps(pd.Series([], dtype=object))) == 0


def test_parse_timestamps_other_default_tz():
    out = parse_timestamps(pd.Series(["2026-03-01 09:15", "2026-03-01T09:15:00+07:00"]), default_tz="UTC")
    assert out.tolist() == [utc("2026-03-01T09:15"), utc("2026-03-01T02:15")]


@st.composite
def written_times(draw):
    """A time in one of the accepted shapes; components may be out of range, so some must fail."""
    shape = draw(st.sampled_from(["iso", "iso", "iso-date", "day-first", "epoch-s", "epoch-ms", "noise"]))
    if shape == "epoch-s":
        return str(draw(st.integers(10**9 - 5, 10**10 + 5))) + draw(st.sampled_from(["", ".25", ".1234567"]))
    if shape == "epoch-ms":
        return str(draw(st.integers(10**12 - 5, 10**13 + 5)))
    if shape == "noise":
        return draw(st.text(alphabet="0123456789-/:T Z+.", max_size=25))
    year = draw(st.sampled_from([1970, 1989, 1990, 2000, 2024, 2026, 2100, 2101, 9999]))
    month, day = draw(st.integers(0, 13)), draw(st.integers(0, 32))
    hour, minute, second = draw(st.integers(0, 25)), draw(st.integers(0, 60)), draw(st.integers(0, 60))
    fraction = draw(st.sampled_from(["", ".5", ".123", ".123456", ".123456789"]))
    if shape == "iso":
        sep, offset = draw(st.sampled_from(["T", " "])), draw(st.sampled_from(_OFFSETS))
        return f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}:{second:02d}{fraction}{offset}"
    if shape == "iso-date":
        return f"{year:04d}-{month:02d}-{day:02d}" + draw(st.sampled_from(["", f"T{hour:02d}:{minute:02d}"]))
    time = draw(st.sampled_from(["", f" {hour}:{minute:02d}", f" {hour:02d}:{minute:02d}:{second:02d}"]))
    return f"{day}/{month:02d}/{year}{time}" + (fraction[:4] if time.count(":") == 2 else "")


_OFFSETS = ["", "Z", "+07:00", "+0700", "+07", "-05:30", "+14:00", "-11:00", "+15:00"]

time_like = st.one_of(
    written_times(),
    st.one_of(
        st.text(max_size=20),
        st.integers(min_value=0, max_value=10**13 + 5),
        st.floats(min_value=1e9, max_value=1e13),
        st.datetimes(min_value=dt.datetime(1985, 1, 1), max_value=dt.datetime(2105, 1, 1)),
        st.none(),
    ),
)


@FAST
@given(st.lists(st.text(max_size=25), max_size=20))
def test_parse_timestamps_never_raises_and_keeps_length(texts):
    out = parse_timestamps(pd.Series(texts, dtype=object))
    assert len(out) == len(texts) and str(out.dtype) == "datetime64[ns, UTC]"


@FAST
@given(st.lists(time_like, max_size=20))
def test_parse_timestamps_agrees_with_scalar(raws):
    out = parse_timestamps(pd.Series(raws, dtype=object))
    assert _or_none(out) == [parse_timestamp(r) for r in raws]
    texts = [r for r in raws if r is None or isinstance(r, str)]
    out = parse_timestamps(pd.Series(texts, dtype="str"))
    assert _or_none(out) == [parse_timestamp(r) for r in texts]


# Emails.

EMAILS = [
    ("an.nguyen@gmail.com", "an.nguyen@gmail.com"),
    ("  An.Nguyen@Gmail.COM \n", "an.nguyen@gmail.com"),
    ("an.nguyen+promo@gmail.com", "an.nguyen+promo@gmail.com"),
    ("lan@cong-ty.com.vn", "lan@cong-ty.com.vn"),
    ("nguyễn@ví-dụ.vn", "nguyễn@ví-dụ.vn"),
    ("a@b", None),
    ("a b@c.com", None),
    ("@c.com", None),
    ("a@@c.com", None),
    ("a@b@c.com", None),
    ("a@c..com", None),
    ("a@.com", None),
    ("a@c.com.", None),
    ("<a@c.com>", None),
    ("a@c.com; b@c.com", None),
    ("a\u00a0b@c.com", None),
    ("", None),
    (None, None),
    (42, None),
]


@pytest.mark.parametrize(("raw", "expected"), EMAILS)
def test_email_forms(raw, expected):
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("An.Nguyen+promo@gmail.com", "annguyen@gmail.com"),
        ("an.nguyen@googlemail.com", "annguyen@gmail.com"),
        ("an.nguyen+x@yahoo.com", "an.nguyen+x@yahoo.com"),
        ("+promo@gmail.com", None),
    ],
)
def test_gmail_canonical_is_opt_in(raw, expected):
    assert normalize_email(raw, gmail_canonical=True) == expected


written_emails = st.builds(
    lambda pad, local, at, domain: f"{pad}{local}{at}{domain}{pad}",
    st.sampled_from(["", " ", "\t"]),
    st.text(alphabet="abcXY.+-_1 ", max_size=8),
    st.sampled_from(["@", "@", "@@", ""]),
    st.sampled_from(["gmail.com", "GoogleMail.com", "yahoo.com", "cong-ty.vn", "b", "c..d", ".com", "ví.vn"]),
)
email_like = st.one_of(
    written_emails,
    st.text(alphabet="ab.@ +\u00a0ễ", max_size=10),
    st.text(max_size=10),
    st.none(),
    st.integers(),
)


@FAST
@given(st.lists(email_like, max_size=20), st.booleans())
def test_normalize_emails_agrees_with_scalar(raws, gmail):
    out = normalize_emails(pd.Series(raws, dtype=object), gmail_canonical=gmail)
    assert out.tolist() == [normalize_email(r, gmail_canonical=gmail) for r in raws]


# Names.

NAMES = [
    ("Nguyễn Văn An", "Nguyễn Văn An", "nguyen van an"),
    ("NGUYỄN VĂN AN", "Nguyễn Văn An", "nguyen van an"),
    ("nguyễn văn an", "Nguyễn Văn An", "nguyen van an"),
    ("  Nguyễn   Văn\tAn ", "Nguyễn Văn An", "nguyen van an"),
    (unicodedata.normalize("NFD", "Trần Thị Hồng"), "Trần Thị Hồng", "tran thi hong"),
    ("ĐẶNG ĐỨC", "Đặng Đức", "dang duc"),
    ("Nguyen Van An", "Nguyen Van An", "nguyen van an"),
    ("McDonald", "McDonald", "mcdonald"),
    ("\u200bLê Lệ", "Lê Lệ", "le le"),
    ("hồng-nhung", "Hồng-Nhung", "hong-nhung"),
    ("", None, None),
    ("   ", None, None),
    ("123", None, None),
    (None, None, None),
    (5, None, None),
]


@pytest.mark.parametrize(("raw", "display", "key"), NAMES)
def test_names(raw, display, key):
    assert normalize_name(raw) == display
    assert name_key(raw) == key
    if display is not None:
        assert unicodedata.is_normalized("NFC", display)


def test_name_columns():
    raws = [raw for raw, _, _ in NAMES]
    assert normalize_names(pd.Series(raws, dtype=object)).tolist() == [d for _, d, _ in NAMES]
    assert name_keys(pd.Series(raws, dtype=object)).tolist() == [k for _, _, k in NAMES]


@FAST
@given(st.lists(st.one_of(st.text(max_size=12), st.none()), max_size=20))
def test_name_columns_agree_with_scalar(raws):
    s = pd.Series(raws, dtype=object)
    assert normalize_names(s).tolist() == [normalize_name(r) for r in raws]
    assert name_keys(s).tolist() == [name_key(r) for r in raws]
    for key in name_keys(s):
        assert key is None or (key == key.lower() and "  " not in key and key == key.strip())
