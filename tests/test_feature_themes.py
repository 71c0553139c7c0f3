"""Profile themes on a hand-written customer whose every figure can be worked out on paper.

As of Tuesday 2026-03-10 00:00 Vietnam time. Lan (phone 0912345678) received three Zalo messages (opened
after 2 h and 4 h, the third only after as_of), one email (opened after 24 h) and one SMS; she looked at
cosmetics three times on a Tuesday around 21:00 and at fashion once, and bought once on the web and once
at the till. Minh (Zalo id z-minh) only browsed the app.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.identity.events import resolve_events
from features.ingest.importer import ingest_file
from features.profile.activity import activity_by_hour
from features.profile.affinities import category_affinity, product_affinity
from features.profile.feature_lists import PROFILE_V2, PROPENSITY_V1, PROPENSITY_V2
from features.profile.wide import build_profiles
from features.store import open_store
from nhip.clock import HOURS_PER_WEEK, parse_as_of
from tests.conftest import IDENTITY, profiles_at, write_jsonl

AS_OF = parse_as_of("2026-03-10")
PHONE = "0912345678"


def lan(n, ts, channel, kind, **extra):
    return {"event_id": f"l{n}", "ts": f"{ts}+07:00", "channel": channel, "type": kind, "phone": PHONE,
            **extra}


def minh(n, ts, channel, kind, **extra):
    return {"event_id": f"m{n}", "ts": f"{ts}+07:00", "channel": channel, "type": kind,
            "zalo_app_user_id": "za-minh", **extra}


COSMETICS = {"product_id": "sp1", "category": "Mỹ phẩm"}
FASHION = {"product_id": "sp2", "category": "Thời trang"}

EVENTS = [
    lan(1, "2026-03-01T09:00:00", "zalo_oa", "message_sent", message_id="z1"),
    lan(2, "2026-03-01T11:00:00", "zalo_oa", "message_opened", message_id="z1"),
    lan(3, "2026-03-01T11:30:00", "zalo_oa", "message_replied", message_id="z1"),
    lan(4, "2026-03-05T09:00:00", "zalo_oa", "message_sent", message_id="z2"),
    lan(5, "2026-03-05T13:00:00", "zalo_oa", "message_opened", message_id="z2"),
    lan(6, "2026-03-05T13:05:00", "zalo_oa", "message_clicked", message_id="z2"),
    lan(7, "2026-03-08T09:00:00", "zalo_oa", "message_sent", message_id="z3"),
    lan(8, "2026-01-20T09:00:00", "email", "message_sent", message_id="e1"),
    lan(9, "2026-01-21T09:00:00", "email", "message_opened", message_id="e1"),
    lan(10, "2026-03-09T20:00:00", "sms", "message_sent", message_id="s1"),
    lan(11, "2026-03-03T21:05:00", "web", "product_view", **COSMETICS),
    lan(12, "2026-03-03T21:20:00", "web", "product_view", **COSMETICS),
    lan(13, "2026-03-03T21:40:00", "web", "product_view", **COSMETICS),
    lan(14, "2026-03-04T10:00:00", "app", "product_view", **FASHION),
    lan(15, "2026-03-06T12:00:00", "web", "purchase", amount=100000, **COSMETICS),
    lan(16, "2026-03-07T15:00:00", "pos", "purchase", amount=200000, **FASHION),
    lan(17, "2026-03-08T23:30:00", "app", "page_view"),
    minh(1, "2026-03-02T08:00:00", "zalo_mini_app", "product_view", **FASHION),
]

FUTURE = [
    lan(101, "2026-03-10T00:00:01", "zalo_oa", "message_opened", message_id="z3"),  # z3 opened too late
    lan(102, "2026-03-10T09:00:00", "email", "message_sent", message_id="e2"),
    lan(103, "2026-03-10T10:00:00", "pos", "purchase", amount=999000, zalo_app_user_id="za-minh", **COSMETICS),
    lan(104, "2026-03-11T21:00:00", "web", "product_view", **FASHION),
    {"event_id": "n1", "ts": "2026-03-12T08:00:00+07:00", "channel": "web", "type": "page_view",
     "anonymous_id": "someone-new"},
]


@pytest.fixture
def store(workspace, tmp_path):
    ingest_file(write_jsonl(tmp_path / "e.jsonl", EVENTS), workspace.store_path)
    return workspace.store_path


@pytest.fixture
def profile(store):
    with open_store(store) as con:
        profiles = profiles_at(con, AS_OF)
    return profiles[profiles["n_messages_sent_30d"] > 0].iloc[0]


def days_before_as_of(local: str) -> float:
    return (AS_OF - parse_as_of(local)).total_seconds() / 86400


def test_rfm_per_channel(profile):
    assert profile["n_purchases"] == 2 and profile["monetary_total"] == 300000
    assert profile["n_purchases_web"] == 1 and profile["monetary_total_web"] == 100000
    assert profile["n_purchases_pos"] == 1 and profile["monetary_total_pos"] == 200000
    assert profile["n_purchases_app"] == 0 and profile["monetary_total_app"] == 0
    assert profile["purchase_recency_days_pos"] == pytest.approx(days_before_as_of("2026-03-07T15:00"))
    assert np.isnan(profile["purchase_recency_days_sms"])
    assert profile["n_events_web"] == 4  # three views and the purchase
    assert profile["recency_days_web"] == pytest.approx(days_before_as_of("2026-03-06T12:00"))
    # Sends are not the customer's doing; the email she opened is.
    assert profile["n_events_sms"] == 0 and np.isnan(profile["recency_days_sms"])
    assert profile["n_events_email"] == 1
    assert profile["recency_days_email"] == pytest.approx(days_before_as_of("2026-01-21T09:00"))


def test_engagement_per_channel(profile):
    assert profile["n_messages_sent_90d_zalo_oa"] == 3
    assert profile["n_messages_opened_90d_zalo_oa"] == 2
    assert profile["n_messages_clicked_90d_zalo_oa"] == 1
    assert profile["n_messages_replied_90d_zalo_oa"] == 1
    assert profile["open_rate_90d_zalo_oa"] == pytest.approx(2 / 3)
    assert profile["click_rate_90d_zalo_oa"] == pytest.approx(1 / 3)
    assert profile["reply_rate_90d_zalo_oa"] == pytest.approx(1 / 3)
    assert profile["open_rate_90d_email"] == 1.0 and profile["open_rate_90d_sms"] == 0.0
    assert np.isnan(profile["open_rate_90d_facebook"])  # nothing sent: no rate, not zero


def test_time_to_open_is_the_median_per_channel(profile):
    assert profile["hours_to_open_zalo_oa"] == pytest.approx(3.0)  # median of 2 h and 4 h
    assert profile["hours_to_open_email"] == pytest.approx(24.0)
    assert np.isnan(profile["hours_to_open_sms"])
    assert profile["hours_to_open"] == pytest.approx(4.0)  # median of 2, 4 and 24 h


def test_fatigue_windows(profile):
    # 7 days back from Tuesday 00:00: z2 (Thu), z3 (Sun), s1 (Mon); z1 (1 March) is in 30 days only.
    assert profile["n_messages_sent_7d"] == 3
    assert profile["n_messages_sent_30d"] == 4
    assert profile["n_messages_sent_7d_zalo_oa"] == 2 and profile["n_messages_sent_30d_zalo_oa"] == 3
    assert profile["n_messages_sent_7d_sms"] == 1
    assert profile["n_messages_sent_30d_email"] == 0  # e1 was 49 days ago
    assert profile["message_recency_days"] == pytest.approx(days_before_as_of("2026-03-09T20:00"))


def test_affinities_wide(profile):
    # Cosmetics: three views and a purchase; fashion: a view and a purchase.
    assert profile["n_categories"] == 2
    assert profile["top_category_1"] == "Mỹ phẩm" and profile["top_category_share_1"] == pytest.approx(2 / 3)
    assert profile["top_category_2"] == "Thời trang" and profile["top_category_share_2"] == pytest.approx(1 / 3)
    assert pd.isna(profile["top_category_3"]) and np.isnan(profile["top_category_share_3"])
    assert profile["top_product_share"] == pytest.approx(2 / 3)


def test_affinity_long_tables(store):
    with open_store(store) as con, resolve_events(con, AS_OF, IDENTITY) as events:
        categories = category_affinity(events)
        products = product_affinity(events)
    assert len(categories) == 3  # Lan's two, Minh's one
    lan_id = categories.loc[categories["n_interactions"] == 4, "customer_id"].iloc[0]
    mine = categories[categories["customer_id"] == lan_id]
    assert list(mine["category"]) == ["Mỹ phẩm", "Thời trang"]
    assert list(mine["rank"]) == [1, 2]
    assert mine["share"].sum() == pytest.approx(1.0)
    assert set(products.loc[products["customer_id"] == lan_id, "product_id"]) == {"sp1", "sp2"}


def _hour_of_week(day: int, hour: int) -> int:
    return day * 24 + hour  # day 0 = Monday, local time


def test_activity_by_hour_peaks_at_the_local_hour(store):
    with open_store(store) as con, resolve_events(con, AS_OF, IDENTITY) as events:
        activity = activity_by_hour(events)
        raw = activity_by_hour(events, smoothing=(1.0,))
    lan_rows = activity[activity["n_events"].gt(0) & activity["customer_id"].isin(
        activity.loc[activity["channel"] == "web", "customer_id"])]
    web = lan_rows[lan_rows["channel"] == "web"].iloc[0]
    counts = np.asarray(web["counts"])
    assert len(counts) == HOURS_PER_WEEK
    assert web["n_events"] == 4 and counts.sum() == pytest.approx(4.0)
    tuesday_21 = _hour_of_week(1, 21)  # 14:05–14:40 UTC is 21:xx in Vietnam
    assert counts.argmax() == tuesday_21
    assert counts[tuesday_21] == pytest.approx(1.5)
    assert counts[tuesday_21 - 1] == counts[tuesday_21 + 1] == pytest.approx(0.75)
    # Smoothing is circular: Sunday 23:30 spills into Monday 00:00.
    app = np.asarray(lan_rows.loc[lan_rows["channel"] == "app", "counts"].iloc[0])
    assert app[_hour_of_week(6, 23)] == pytest.approx(0.5) and app[0] == pytest.approx(0.25)
    # Only what the customer did: opens and the reply at Sunday 11:xx, no trace of the 09:00 sends.
    zalo = raw[(raw["channel"] == "zalo_oa") & raw["customer_id"].isin(lan_rows["customer_id"])].iloc[0]
    zalo_counts = np.asarray(zalo["counts"])
    assert zalo["n_events"] == 4
    assert zalo_counts[_hour_of_week(6, 11)] == 2 and zalo_counts[_hour_of_week(3, 13)] == 2
    assert zalo_counts[_hour_of_week(6, 9)] == 0


def test_future_events_change_no_theme(store, workspace, tmp_path):
    def everything():
        with open_store(store) as con, resolve_events(con, AS_OF, IDENTITY) as events:
            return (build_profiles(events), activity_by_hour(events),
                    category_affinity(events), product_affinity(events))

    before = everything()
    ingest_file(write_jsonl(tmp_path / "future.jsonl", FUTURE), workspace.store_path)
    after = everything()
    pd.testing.assert_frame_equal(before[0], after[0])
    for old, new in zip(before[1:], after[1:]):
        pd.testing.assert_frame_equal(old.drop(columns="counts", errors="ignore"),
                                      new.drop(columns="counts", errors="ignore"))
    assert all(np.array_equal(a, b) for a, b in zip(before[1]["counts"], after[1]["counts"]))
    assert len(before[0]) == 2  # the purchase after as_of that links Lan and Minh merges nobody


def test_profile_v2_is_every_numeric_profile_column_of_its_time(profile):
    numeric = [c for c in profile.index if not c.startswith("top_category_") or "share" in c]
    # Added to the profile after v2 was frozen: the zalo_zns channel and the delivered counts that the
    # planner's reach reads. A model of v2 does not see them; a later list may.
    later = {c for c in numeric if c.endswith("_zalo_zns") or c.startswith("n_messages_delivered_90d_")}
    assert set(PROFILE_V2.features) <= set(numeric)
    assert set(numeric) - set(PROFILE_V2.features) == later
    assert set(PROPENSITY_V2.features) <= set(PROFILE_V2.features)
    assert PROPENSITY_V2.features[: len(PROPENSITY_V1.features)] == PROPENSITY_V1.features
