"""The synthetic shop must be reproducible, well-formed, and carry the signals models should find."""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from features.ingest.parsers.emails import normalize_email
from features.ingest.parsers.phones import normalize_phone
from features.schema import (
    CANONICAL_FIELDS,
    IDENTIFIER_FIELDS,
    KNOWN_CHANNELS,
    KNOWN_TYPES,
    MESSAGE_CHANNELS,
)
from synthetic.demo_shop import (
    DEFAULT_END,
    JUNK_EMAILS,
    NOBODY,
    SHARED,
    SHOP_HOTLINES,
    DemoData,
    generate,
    write,
)

PHONE_SHAPES = {
    "0912345678": r"0\d{9}",
    "0912 345 678": r"0\d{3} \d{3} \d{3}",
    "+84 912 345 678": r"\+84 \d{3} \d{3} \d{3}",
    "84912345678": r"84\d{9}",
    "(+84) 912.345.678": r"\(\+84\) \d{3}\.\d{3}\.\d{3}",
    "+84912345678": r"\+84\d{9}",
    "old 11-digit": r"01\d{9}",
}


@pytest.fixture(scope="module")
def small() -> DemoData:
    return generate(customers=60, days=60, seed=11)


@pytest.fixture(scope="module")
def medium() -> DemoData:
    return generate(customers=300, days=120, seed=7)


@pytest.fixture(scope="module")
def large() -> DemoData:
    return generate(customers=1000, days=180, seed=3)


def person_of(data: DemoData, events: pd.DataFrame) -> pd.Series:
    """The true person behind each event, through the first identifier it carries that is a person's
    (the shop's hotline and junk emails are nobody's; None when an event carries nothing else)."""
    owner = {(t, v): p for p, t, v in data.identities.itertuples(index=False)}
    people = []
    for row in events[list(IDENTIFIER_FIELDS)].itertuples(index=False):
        owners = (owner[(f, v)] for f, v in zip(IDENTIFIER_FIELDS, row) if v is not None)
        people.append(next((o for o in owners if o not in (SHARED, NOBODY)), None))
    return pd.Series(people, index=events.index)


def parse_ts(value) -> pd.Timestamp:
    """UTC instant of any timestamp notation the generator writes."""
    if isinstance(value, int):
        return pd.Timestamp(value, unit="ms", tz="UTC")
    if re.fullmatch(r"\d{2}/\d{2}/\d{4} \d{2}:\d{2}", value):
        local = pd.Timestamp(datetime.strptime(value, "%d/%m/%Y %H:%M"))
        return local.tz_localize("Asia/Ho_Chi_Minh").tz_convert("UTC")
    return pd.Timestamp(value).tz_convert("UTC")


def test_same_seed_same_world_and_other_seed_another(small):
    again = generate(customers=60, days=60, seed=11)
    pd.testing.assert_frame_equal(small.events, again.events)
    pd.testing.assert_frame_equal(small.truth, again.truth)
    pd.testing.assert_frame_equal(small.identities, again.identities)
    other = generate(customers=60, days=60, seed=12)
    assert not small.events["ts"].equals(other.events["ts"])


def test_every_event_is_canonical_with_an_identifier(small):
    events = small.events
    assert list(events.columns) == list(CANONICAL_FIELDS)
    assert events["ts"].notna().all()
    assert set(events["channel"]) <= set(KNOWN_CHANNELS) | set(MESSAGE_CHANNELS)  # zalo_zns: a message channel
    assert set(events["type"]) <= set(KNOWN_TYPES)
    assert events[list(IDENTIFIER_FIELDS)].notna().any(axis=1).all()


def test_events_lie_in_the_window_before_end(small):
    instants = small.events["ts"].map(parse_ts)
    end = pd.Timestamp(DEFAULT_END).tz_convert("UTC")
    assert instants.max() < end
    assert instants.min() >= end - timedelta(days=60) - timedelta(minutes=1)


def test_identities_cover_every_identifier_and_each_value_has_one_owner(small):
    written = set()
    for field in IDENTIFIER_FIELDS:
        written |= {(field, v) for v in small.events[field].dropna()}
    listed = set(zip(small.identities["id_type"], small.identities["id_value"]))
    assert written <= listed
    owners = small.identities.groupby(["id_type", "id_value"])["person_id"].nunique()
    assert (owners == 1).all()
    assert set(small.identities["person_id"]) <= set(small.truth["person_id"]) | {SHARED, NOBODY}


def test_opens_are_likelier_near_the_preferred_hour(small):
    """Sends within an hour of a person's reading hour are opened far more often than sends 5+ h away."""
    events = small.events
    messages = events[events["channel"].isin(["zalo_oa", "email", "sms"])]
    sent = messages[messages["type"] == "message_sent"].copy()
    opened_ids = set(messages.loc[messages["type"] == "message_opened", "message_id"])
    sent["person_id"] = person_of(small, sent)
    truth = small.truth.set_index("person_id")
    sent = sent[~truth.loc[sent["person_id"], "machine_opener"].to_numpy()]

    hour = sent["ts"].map(lambda v: parse_ts(v).tz_convert("Asia/Ho_Chi_Minh").hour).to_numpy()
    preferred = np.array([truth.at[p, f"preferred_hour_{c}"]
                          for p, c in zip(sent["person_id"], sent["channel"])])
    gap = np.abs(hour - preferred) % 24
    gap = np.minimum(gap, 24 - gap)
    opened = sent["message_id"].isin(opened_ids).to_numpy()

    near, far = opened[gap <= 1], opened[gap >= 5]
    assert len(near) >= 30 and len(far) >= 30
    assert near.mean() > 3 * far.mean()
    assert near.mean() - far.mean() > 0.15


def test_purchase_counts_follow_the_latent_rate(medium):
    purchases = medium.events[medium.events["type"] == "purchase"]
    counts = person_of(medium, purchases).value_counts().reindex(medium.truth["person_id"], fill_value=0)
    rho = pd.Series(counts.to_numpy()).corr(medium.truth["purchase_rate"], method="spearman")
    assert rho > 0.3


def test_money_strings_say_exactly_price_times_quantity(medium):
    purchases = medium.events[medium.events["type"] == "purchase"]
    price = medium.products.set_index("product_id")["price"]
    expected = price.loc[purchases["product_id"]].to_numpy() * purchases["quantity"].astype(int).to_numpy()
    written = purchases["amount"].map(_vnd).to_numpy()
    assert (written == expected).all()
    assert purchases["amount"].map(lambda a: isinstance(a, str)).any()


def _vnd(value) -> int:
    if isinstance(value, int):
        return value
    text = value.replace("VNĐ", "").replace("đ", "").strip()
    if text.endswith("tr"):
        return round(float(text[:-2].replace(",", ".")) * 1_000_000)
    if text.endswith("k"):
        return int(text[:-1]) * 1000
    return int(text.replace(".", ""))


def test_phones_are_written_in_mixed_formats(medium):
    phones = medium.events["phone"].dropna()
    phones = phones[~phones.isin(SHOP_HOTLINES)]  # the shop's landline
    shapes = {name for value in phones for name, rx in PHONE_SHAPES.items() if re.fullmatch(rx, value)}
    assert len(shapes) >= 5
    assert phones.map(lambda v: any(re.fullmatch(rx, v) for rx in PHONE_SHAPES.values())).all()


def test_messy_but_documented_timestamps_and_ids(medium):
    ts = medium.events["ts"]
    assert ts.map(lambda v: isinstance(v, int)).any()
    assert ts.map(lambda v: isinstance(v, str) and v.endswith("+07:00")).mean() > 0.5
    pos = medium.events["channel"] == "pos"
    assert ts[pos].map(lambda v: bool(re.fullmatch(r"\d{2}/\d{2}/\d{4} \d{2}:\d{2}", v))).all()
    ids = medium.events["event_id"].dropna()
    assert ids.is_unique
    assert 0.8 < len(ids) / len(medium.events) < 0.97


def test_truth_describes_every_person(medium):
    truth = medium.truth
    assert truth["person_id"].is_unique and len(truth) == 300
    for column in ("segment", "purchase_rate", "churn_at", "preferred_hour_zalo_oa", "preferred_hour_email",
                   "preferred_hour_sms", "favourite_categories", "machine_opener", "n_events"):
        assert column in truth.columns
    hours = truth[["preferred_hour_zalo_oa", "preferred_hour_email", "preferred_hour_sms"]]
    assert hours.isin(range(24)).all().all()
    assert truth["n_events"].sum() == len(medium.events)
    names = medium.events["name"].dropna()
    assert (names == names.map(lambda s: unicodedata.normalize("NFC", s))).all()


def test_write_then_read_roundtrips(small, tmp_path):
    paths = write(small, tmp_path / "demo")
    assert set(paths) == {"events", "truth", "identities", "products"}
    lines = paths["events"].read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(small.events)
    rows = [json.loads(line) for line in lines]
    assert all(None not in row.values() for row in rows)
    assert rows[0]["ts"] == small.events["ts"].iloc[0]
    text = paths["events"].read_text(encoding="utf-8")
    assert "\\u" not in text and any(ord(c) > 127 for c in text)  # Vietnamese written as UTF-8
    assert len(pd.read_csv(paths["truth"])) == 60
    assert list(pd.read_csv(paths["identities"]).columns) == ["person_id", "id_type", "id_value"]
    assert list(pd.read_csv(paths["products"]).columns) == ["product_id", "product_name", "category", "price"]


# --- identity hard cases --------------------------------------------------------------------------------


def _normalised_truth(data: DemoData) -> pd.DataFrame:
    ids = data.identities.copy()
    norm = {"phone": normalize_phone, "email": normalize_email}
    ids["value"] = [norm.get(t, str.strip)(v) for t, v in zip(ids["id_type"], ids["id_value"])]
    return ids


def test_the_shop_hotline_is_typed_into_pos_orders_of_many_people(large):
    events = large.events
    hotline = events["phone"].isin(SHOP_HOTLINES)
    assert hotline.sum() >= 10
    assert (events.loc[hotline, "channel"] == "pos").all()
    assert events.loc[hotline, "pos_customer_id"].nunique() > 5
    assert {normalize_phone(h) for h in SHOP_HOTLINES} == {"+842839306868"}
    listed = large.identities[large.identities["id_value"].isin(SHOP_HOTLINES)]
    assert set(listed["person_id"]) == {SHARED}


def test_a_junk_email_is_given_at_sign_up_by_many_people(large):
    events = large.events
    junk = events["email"].isin(JUNK_EMAILS)
    assert (events.loc[junk, "type"] == "identify").all()
    assert events.loc[junk, "anonymous_id"].nunique() > 5
    listed = large.identities[large.identities["id_value"].isin(JUNK_EMAILS)]
    assert set(listed["person_id"]) == {SHARED}


def test_mistyped_phones_are_valid_numbers_owned_by_nobody_or_by_someone_else(large):
    truth = _normalised_truth(large)
    phones = truth[truth["id_type"] == "phone"]
    typos = phones[phones["person_id"] == NOBODY]
    assert len(typos) >= 3
    assert typos["value"].notna().all()  # one digit off is still a valid number …
    people_phones = set(phones.loc[phones["person_id"].str.startswith("p"), "value"])
    assert not set(typos["value"]) & people_phones  # … that is nobody's
    # Some POS rows carry another customer's phone: the row's card and its phone have different owners.
    owner = {(t, v): p for p, t, v in large.identities.itertuples(index=False)}
    pos = large.events[(large.events["channel"] == "pos") & large.events["phone"].notna()
                        & large.events["pos_customer_id"].notna()]
    crossed = [owner[("phone", ph)] != owner[("pos_customer_id", card)]
               and owner[("phone", ph)].startswith("p")
               for ph, card in zip(pos["phone"], pos["pos_customer_id"])]
    assert any(crossed)


def test_some_people_have_two_phones_and_some_write_the_old_11_digit_number(large):
    data = large
    truth = _normalised_truth(data)
    phones = truth[(truth["id_type"] == "phone") & truth["person_id"].str.startswith("p")]
    per_person = phones.groupby("person_id")["value"].nunique()
    assert (per_person == 2).sum() >= 5
    assert per_person.max() <= 2 + 1  # at most a second SIM (and a rare typo hitting them)
    old = data.events["phone"].dropna().str.fullmatch(r"01\d{9}")
    assert set(data.events.loc[old[old].index, "channel"]) > {"pos"}


def test_online_checkouts_and_sign_ups_link_identifiers(large):
    events = large.events
    checkout = events[(events["type"] == "purchase") & events["channel"].isin(["web", "app"])]
    assert checkout["phone"].notna().mean() > 0.7
    signup = events[events["type"] == "identify"]
    assert (signup["phone"].notna() & signup["email"].notna()).mean() > 0.15
