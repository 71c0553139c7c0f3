"""The demo shop knows its channels: who has Zalo, who consented to ZNS, what reaches whom, and the true
response and purchase probabilities a contact plan is scored with."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthetic.channels import PLAN_CHANNELS, response_probability
from synthetic.demo_shop import DEFAULT_END, NOBODY, SHARED, DemoData, generate, purchase_probability

# Identifiers the generator never mixes up between people first; phones (typos, the shop's hotline) last.
LOOKUP_ORDER = ("zalo_user_id", "zalo_app_user_id", "fb_psid", "pos_customer_id", "anonymous_id", "email", "phone")


@pytest.fixture(scope="module")
def shop() -> DemoData:
    return generate(customers=400, days=90, seed=5)


def person_of(data: DemoData, events: pd.DataFrame) -> np.ndarray:
    """The true owner of each event, by the first identifier it carries that belongs to a person."""
    owner = {(t, v): p for p, t, v in data.identities.itertuples(index=False) if p not in (SHARED, NOBODY)}
    out = np.full(len(events), None, dtype=object)
    for field in LOOKUP_ORDER:
        values = events[field].to_numpy(dtype=object)
        todo = pd.isna(out) & pd.notna(values)
        out[todo] = [owner.get((field, v)) for v in values[todo]]
    return out


def local_hours(ts: pd.Series) -> np.ndarray:
    """Local hour of day (with minutes and seconds) of ISO timestamps written at +07:00."""
    assert ts.str.endswith("+07:00").all()
    return (ts.str[11:13].astype(int) + ts.str[14:16].astype(int) / 60 + ts.str[17:19].astype(int) / 3600).to_numpy()


def zns_events(data: DemoData) -> pd.DataFrame:
    events = data.events[data.events["channel"] == "zalo_zns"].copy()
    events["person_id"] = person_of(data, events)
    events["instant"] = pd.to_datetime(events["ts"], format="ISO8601")
    return events


def test_everyone_known_on_zalo_has_an_account_and_most_phone_owners_do(shop):
    ids = shop.identities
    on_zalo = set(ids.loc[ids["id_type"].isin(["zalo_user_id", "zalo_app_user_id"]), "person_id"])
    truth = shop.truth.set_index("person_id")
    assert on_zalo and truth.loc[sorted(on_zalo), "has_zalo"].all()
    phone_owners = set(ids.loc[(ids["id_type"] == "phone") & ids["person_id"].str.startswith("p"), "person_id"])
    assert 0.78 < truth.loc[sorted(phone_owners), "has_zalo"].mean() < 0.92
    assert truth["follows_oa"].any() and not (truth["follows_oa"] & ~truth["has_zalo"]).any()
    hours = truth["preferred_hour_zalo_zns"]
    assert hours.isin(range(24)).all()
    assert ((hours == truth["preferred_hour_zalo_oa"]) | (hours == truth["preferred_hour_sms"])).all()


def test_zns_events_carry_the_phone_and_render_like_the_other_channels(shop):
    events = zns_events(shop)
    assert set(events["type"]) >= {"consent_granted", "consent_revoked", "message_sent", "message_delivered",
                                   "message_opened"}
    assert events["phone"].notna().all() and pd.notna(events["person_id"]).all()
    assert events["event_id"].dropna().str.fullmatch(r"evt_zalo_zns_\d+").all()
    assert shop.events["event_id"].dropna().is_unique
    messages = events[events["type"].str.startswith("message_")]
    assert messages["message_id"].notna().all() and messages["campaign_id"].notna().all()
    sent = messages[messages["type"] == "message_sent"]
    assert sent["message_id"].is_unique
    assert set(messages["message_id"]) <= set(sent["message_id"])
    others = shop.events[shop.events["channel"] != "zalo_zns"]
    assert not set(sent["message_id"]) & set(others["message_id"].dropna())
    assert not set(sent["campaign_id"]) & set(others["campaign_id"].dropna())
    # rarer than any other channel's campaigns
    per_channel = shop.events.dropna(subset=["campaign_id"]).groupby("channel")["campaign_id"].nunique()
    assert per_channel["zalo_zns"] < per_channel.drop("zalo_zns").min()


def test_zns_is_sent_only_to_people_whose_latest_zns_consent_is_a_grant(shop):
    events = zns_events(shop)
    consent = events[events["type"].isin(["consent_granted", "consent_revoked"])].sort_values("instant")
    sent = events[events["type"] == "message_sent"].sort_values("instant")
    latest = pd.merge_asof(sent, consent[["person_id", "instant", "type"]].rename(columns={"type": "consent"}),
                           on="instant", by="person_id", direction="backward")
    assert len(latest) > 50
    assert (latest["consent"] == "consent_granted").all()
    # the truth's end-of-window consent is the latest consent event too
    last = consent.groupby("person_id")["type"].last() == "consent_granted"
    truth = shop.truth.set_index("person_id")["consent_zalo_zns"]
    assert truth[last.index].equals(last.rename("consent_zalo_zns"))
    assert not truth.drop(last.index).any()


def test_zns_reaches_only_people_with_zalo_and_some_who_consented_have_none(shop):
    events = zns_events(shop)
    has_zalo = shop.truth.set_index("person_id")["has_zalo"]
    answered = events[events["type"].isin(["message_delivered", "message_opened", "message_clicked"])]
    assert len(answered) and has_zalo[answered["person_id"]].all()
    sent = events[events["type"] == "message_sent"]
    assert not has_zalo[sent["person_id"]].all()  # consented without Zalo: sent, never delivered
    granted = events.loc[events["type"] == "consent_granted", "person_id"]
    assert not has_zalo[granted].all()


def test_response_probability_peaks_at_the_reading_hour(shop):
    truth = shop.truth
    grid = np.arange(0, 24, 0.25)
    by_hour = {c: np.stack([response_probability(truth, c, h) for h in range(24)], axis=1) for c in PLAN_CHANNELS}
    reachable = {c: np.ones(len(truth), bool) for c in PLAN_CHANNELS} | {"zalo_zns": truth["has_zalo"].to_numpy()}
    for channel, values in by_hour.items():
        preferred = truth[f"preferred_hour_{channel}"].to_numpy()
        at_preferred = values[np.arange(len(truth)), preferred]
        assert np.allclose(at_preferred, values.max(axis=1))
        fine = np.stack([response_probability(truth, channel, h) for h in grid], axis=1)
        peak = grid[fine.argmax(axis=1)]  # the middle of the reading hour
        assert (peak[reachable[channel]] == preferred[reachable[channel]] + 0.5).all()
        assert ((values >= 0) & (values <= 1)).all()
        per_row = response_probability(truth, channel, preferred)
        assert np.allclose(per_row, at_preferred)
    zns = by_hour["zalo_zns"]
    assert (zns[~truth["has_zalo"].to_numpy()] == 0).all() and (zns[truth["has_zalo"].to_numpy()] > 0).all()
    with pytest.raises(ValueError):
        response_probability(truth, "pigeon", 9)


def test_purchase_probability_is_zero_after_churn_and_grows_with_the_horizon(shop):
    truth = shop.truth
    p30, p90 = purchase_probability(truth, 30), purchase_probability(truth, 90)
    assert ((p30 >= 0) & (p30 <= 1)).all() and (p90 >= p30).all()
    churned = truth["churn_at"].notna().to_numpy()
    assert churned.any() and (p90[churned] == 0).all() and (p90[~churned] > 0).all()
    assert (purchase_probability(truth, 0) == 0).all()


@pytest.fixture(scope="module")
def large() -> DemoData:
    return generate(customers=1500, days=240, seed=3)


def test_the_simulated_sends_are_opened_as_often_as_response_probability_says(large):
    """Mean true probability of the sends as made vs. their open rate, per channel and near/far from the
    reading hour, within 4 standard errors. Left out: churned people (the log drops what they do after
    churning), the last 3 days (opens after the window are not logged) and email machine openers."""
    events, truth = large.events, large.truth.set_index("person_id")
    sends = events[events["channel"].isin(PLAN_CHANNELS) & (events["type"] == "message_sent")].copy()
    sends["person_id"] = person_of(large, sends)
    assert pd.notna(sends["person_id"]).all()
    person = truth.loc[sends["person_id"]]
    end = pd.Timestamp(DEFAULT_END)
    keep = (person["churn_at"].isna().to_numpy()
            & (pd.to_datetime(sends["ts"], format="ISO8601") < end - pd.Timedelta(days=3)).to_numpy()
            & ~(person["machine_opener"].to_numpy() & (sends["channel"] == "email").to_numpy()))
    sends, person = sends[keep], person[keep]
    hour = local_hours(sends["ts"])
    opened = sends["message_id"].isin(set(events.loc[events["type"] == "message_opened", "message_id"]))
    channel = sends["channel"].to_numpy()
    expected = np.empty(len(sends))
    for c in PLAN_CHANNELS:
        rows = channel == c
        expected[rows] = response_probability(person[rows].reset_index(), c, hour[rows])
    reading = np.array([person.iloc[i][f"preferred_hour_{c}"] for i, c in enumerate(channel)])
    gap = np.abs(hour - reading - 0.5) % 24
    near = np.minimum(gap, 24 - gap) <= 2
    for c in PLAN_CHANNELS:
        for part in (near, ~near):
            rows = (channel == c) & part
            assert rows.sum() > 300, c
            p = expected[rows]
            error = np.sqrt((p * (1 - p)).sum()) / rows.sum()
            assert abs(opened.to_numpy()[rows].mean() - p.mean()) < 4 * error, (c, part is near)


def test_purchase_probability_matches_purchases_in_the_window(large):
    """The purchase process is stationary, so over the last 30 days of the window the share of people
    alive throughout who bought is what purchase_probability(truth, 30) says of the next 30."""
    events, truth = large.events, large.truth
    purchases = events[events["type"] == "purchase"]
    stamps = purchases["ts"].map(_instant)
    end = pd.Timestamp(DEFAULT_END)
    recent = purchases[(stamps >= end - pd.Timedelta(days=30)).to_numpy()]
    buyers = set(person_of(large, recent)) - {None}
    joined = pd.to_datetime(truth["joined_at"], format="ISO8601")
    alive = (truth["churn_at"].isna() & (joined < end - pd.Timedelta(days=30))).to_numpy()
    p = purchase_probability(truth, 30)[alive]
    bought = truth.loc[alive, "person_id"].isin(buyers).to_numpy()
    error = np.sqrt((p * (1 - p)).sum()) / alive.sum()
    assert abs(bought.mean() - p.mean()) < 4 * error


def _instant(value) -> pd.Timestamp:
    if isinstance(value, int):
        return pd.Timestamp(value, unit="ms", tz="UTC")
    if "/" in value:  # POS: local dd/mm/yyyy HH:MM
        return pd.Timestamp(pd.to_datetime(value, format="%d/%m/%Y %H:%M")).tz_localize("Asia/Ho_Chi_Minh")
    return pd.Timestamp(value)
