
import pandas as pd
import pytest

from features.identity.events import AsOfMismatch, resolve_events
from features.identity.graph import resolve_graph
from features.ingest.importer import ingest_file
from features.profile.labels import purchase_labels
from features.profile.wide import build_profiles
from features.store import open_store
from nhip.clock import parse_as_of
from tests.conftest import IDENTITY, TINY_EVENTS, profiles_at, write_jsonl


@pytest.fixture
def store(workspace, tmp_path):
    ingest_file(write_jsonl(tmp_path / "e.jsonl", TINY_EVENTS), workspace.store_path)
    return workspace.store_path


def test_identifiers_of_one_person_resolve_to_one_customer(store):
    with open_store(store) as con:
        identity = resolve_graph(con, parse_as_of("2026-04-01"), IDENTITY).identity
    by_value = identity.set_index("id_value")["customer_id"]
    lan = {by_value[v] for v in ("anon-lan", "lan.nguyen@example.com", "KH001", "+84912345678", "z-lan")}
    assert len(lan) == 1
    assert by_value["z-minh"] not in lan
    assert identity["customer_id"].nunique() == 2


def test_links_seen_after_as_of_do_not_merge(store):
    # At 2026-03-01 17:00 the POS sale (18:00) that links the phone to the email has not happened.
    with open_store(store) as con:
        identity = resolve_graph(con, parse_as_of("2026-03-01T17:00"), IDENTITY).identity
    assert set(identity["id_value"]) == {"anon-lan", "lan.nguyen@example.com"}
    assert identity["customer_id"].nunique() == 1


def test_customer_id_is_stable_when_unrelated_data_arrives(store, workspace, tmp_path):
    with open_store(store) as con:
        before = resolve_graph(con, parse_as_of("2026-04-01"), IDENTITY).identity.set_index("id_value")["customer_id"]
    extra = [{"event_id": "x", "ts": "2026-02-01T08:00:00+07:00", "channel": "sms", "type": "message_sent",
              "phone": "0987654321"}]
    ingest_file(write_jsonl(tmp_path / "x.jsonl", extra), workspace.store_path)
    with open_store(store) as con:
        after = resolve_graph(con, parse_as_of("2026-04-01"), IDENTITY).identity.set_index("id_value")["customer_id"]
    assert after.reindex(before.index).equals(before)


def test_profile_values(store):
    with open_store(store) as con:
        profiles = profiles_at(con, parse_as_of("2026-03-05"))
    lan = profiles[profiles["n_purchases"] == 1].iloc[0]
    assert lan["monetary_total"] == 1_200_000
    assert lan["consent_zalo_oa"]
    assert lan["n_channels"] == 3  # web, pos, zalo_oa
    minh = profiles[profiles["n_purchases"] == 0].iloc[0]
    assert minh["open_rate_90d"] == 1.0
    # The shop's send is not Minh's activity: only his open counts, and it sets his recency.
    assert minh["n_events"] == 1
    assert minh["recency_days"] == pytest.approx((parse_as_of("2026-03-05") - parse_as_of(
        "2026-03-03T20:30")).total_seconds() / 86400)


def test_future_events_change_no_feature_and_no_customer(store, workspace, tmp_path):
    as_of = parse_as_of("2026-03-02T12:00")
    with open_store(store) as con:
        before = profiles_at(con, as_of)
    future = [
        {"event_id": "f1", "ts": "2026-03-02T12:00:01+07:00", "channel": "pos", "type": "purchase",
         "phone": "0912345678", "zalo_user_id": "z-minh", "amount": 500000},
        {"event_id": "f2", "ts": "2026-05-01T09:00:00+07:00", "channel": "web", "type": "page_view",
         "anonymous_id": "someone-new"},
    ]
    ingest_file(write_jsonl(tmp_path / "f.jsonl", future), workspace.store_path)
    with open_store(store) as con:
        after = profiles_at(con, as_of)
        with resolve_events(con, as_of, IDENTITY) as events:
            labels = purchase_labels(events, horizon_days=30)
    pd.testing.assert_frame_equal(before, after)
    # The future sale links Minh's Zalo id to Lan's phone; as of as_of they are still two people,
    # and the label goes to both through identifiers each already had.
    assert set(labels.index) == set(before.index)


def test_consent_latest_event_wins_per_channel(workspace, tmp_path):
    def event(n, ts, channel, kind):
        return {"event_id": f"c{n}", "ts": ts, "channel": channel, "type": kind, "phone": "0912345678"}

    rows = [
        event(1, "2026-03-01T08:00:00+07:00", "email", "subscribe"),
        event(2, "2026-03-02T08:00:00+07:00", "email", "unsubscribe"),
        event(3, "2026-03-03T08:00:00+07:00", "email", "consent_granted"),
        event(4, "2026-03-01T08:00:00+07:00", "zalo_oa", "follow"),
        event(5, "2026-03-04T08:00:00+07:00", "zalo_oa", "unfollow"),
        event(6, "2026-03-01T08:00:00+07:00", "sms", "consent_granted"),
        event(7, "2026-03-05T08:00:00+07:00", "sms", "consent_revoked"),
    ]
    ingest_file(write_jsonl(tmp_path / "c.jsonl", rows), workspace.store_path)
    with open_store(workspace.store_path) as con:
        early = profiles_at(con, parse_as_of("2026-03-02T12:00")).iloc[0]
        late = profiles_at(con, parse_as_of("2026-03-10")).iloc[0]
    assert not early["consent_email"] and early["consent_zalo_oa"] and early["consent_sms"]
    assert late["consent_email"] and not late["consent_zalo_oa"] and not late["consent_sms"]
    assert not late["consent_facebook"]  # never asked: no consent


def test_no_sends_means_no_open_rate(store):
    with open_store(store) as con:
        profiles = profiles_at(con, parse_as_of("2026-03-05"))
    lan = profiles[profiles["n_purchases"] == 1].iloc[0]
    assert pd.isna(lan["open_rate_90d"])  # Lan was never sent a message


def test_consent_revocation_wins_a_tie(workspace, tmp_path):
    rows = [{"event_id": f"t{i}", "ts": "2026-03-01T08:00:00+07:00", "channel": "sms", "type": kind,
             "phone": "0912345678"} for i, kind in enumerate(["consent_granted", "consent_revoked"])]
    ingest_file(write_jsonl(tmp_path / "t.jsonl", rows), workspace.store_path)
    with open_store(workspace.store_path) as con:
        profile = profiles_at(con, parse_as_of("2026-03-10")).iloc[0]
    assert not profile["consent_sms"]


def test_resolved_events_for_two_dates_live_side_by_side(store):
    """Each value names its own relations: resolving a second date does not change what the first reads
    (a view registered under one fixed name would have been silently replaced)."""
    early, late = parse_as_of("2026-03-01T17:00"), parse_as_of("2026-04-01")
    with open_store(store) as con:
        alone = profiles_at(con, early)
        with resolve_events(con, early, IDENTITY) as first, resolve_events(con, late, IDENTITY) as second:
            pd.testing.assert_frame_equal(build_profiles(first), alone)
            assert len(build_profiles(second)) == 2 and len(alone) == 1


def test_resolved_events_refuse_another_date_and_use_after_close(store):
    as_of = parse_as_of("2026-04-01")
    with open_store(store) as con:
        events = resolve_events(con, as_of, IDENTITY)
        assert events.require(as_of) is events
        with pytest.raises(AsOfMismatch, match="cannot be used as of"):
            events.require(parse_as_of("2026-03-01"))
        events.close()
        with pytest.raises(RuntimeError, match="were closed"):
            build_profiles(events)
