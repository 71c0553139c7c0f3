"""The HTTP collector (features.ingest.collector): auth, per-event answers, idempotent retries, accounting."""

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from features.ingest.collector import CollectorConfigError, create_app
from features.store import open_store, store_exists
from nhip.cli import app as cli
from tests.conftest import TINY_EVENTS

KEY = "s3cret-key"
AUTH = {"X-API-Key": KEY}


@pytest.fixture
def collector(workspace, monkeypatch):
    monkeypatch.setenv("NHIP_COLLECTOR_API_KEY", KEY)
    from nhip.settings import get_settings

    settings = get_settings()
    with TestClient(create_app(settings.collector, max_batch=50)) as client:
        client.settings = settings
        yield client


def _query(settings, sql):
    """Read the store while the collector runs: a reader never waits for, nor blocks, its writes."""
    with open_store(settings.store_path) as con:
        return con.execute(sql).fetchall()


def _balanced(answer, sent):
    counts = {s: sum(r["status"] == s for r in answer["results"]) for s in ("accepted", "duplicate", "rejected")}
    return (answer["accepted"] + answer["duplicates"] + answer["rejected"] == sent
            and [r["index"] for r in answer["results"]] == list(range(sent))
            and counts == {"accepted": answer["accepted"], "duplicate": answer["duplicates"],
                           "rejected": answer["rejected"]})


def test_refuses_to_start_without_a_key(workspace):
    with pytest.raises(CollectorConfigError, match="NHIP_COLLECTOR_API_KEY"):
        create_app(workspace.collector)


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY + "x"}, {"X-API-Key": ""}])
def test_requests_without_the_key_are_refused(collector, headers):
    response = collector.post("/events", json=TINY_EVENTS, headers=headers)
    assert response.status_code == 401
    assert not store_exists(collector.settings.store_path) or _query(
        collector.settings, "SELECT count(*) FROM events") == [(0,)]


def test_healthz_needs_no_key(collector):
    assert collector.get("/healthz").json() == {"status": "ok"}


def test_per_event_answers_and_events_land_in_the_store(collector):
    batch = TINY_EVENTS + [
        "not an object",
        {"ts": "2026-03-01T10:00:00+07:00", "channel": "web", "type": "page_view"},  # no identifier
        {**TINY_EVENTS[0], "ts": "2026-03-05T10:00:00+07:00"},  # same event_id and channel: a retry
    ]
    response = collector.post("/events", json=batch, headers=AUTH)
    assert response.status_code == 200
    answer = response.json()
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (6, 1, 2)
    assert _balanced(answer, len(batch))
    assert answer["results"][0] == {"index": 0, "status": "accepted", "reason": None}
    assert answer["results"][6] == {"index": 6, "status": "rejected", "reason": "not a JSON object (string)"}
    assert answer["results"][7] == {"index": 7, "status": "rejected", "reason": "no identifier"}
    assert answer["results"][8]["status"] == "duplicate"

    settings = collector.settings
    assert _query(settings, "SELECT phone, amount, CAST(ts AS VARCHAR) FROM events WHERE event_id = 'p1'") == [
        ("+84912345678", 1_200_000, "2026-03-01 11:00:00")]
    assert _query(settings, "SELECT DISTINCT source FROM events") == [("collector",)]
    quarantined = _query(settings, "SELECT line, raw, reason FROM quarantine ORDER BY line")
    assert [(line, reason) for line, _, reason in quarantined] == [
        (6, "not a JSON object (string)"), (7, "no identifier")]
    assert json.loads(quarantined[0][1]) == "not an object"
    assert json.loads(quarantined[1][1])["channel"] == "web"  # the item as sent
    assert _query(settings, "SELECT source, rows_read, accepted, duplicates, quarantined FROM imports") == [
        ("collector", 9, 6, 1, 2)]


def test_a_retried_batch_is_all_duplicates(collector):
    first = collector.post("/events", json={"events": TINY_EVENTS}, headers=AUTH).json()
    again = collector.post("/events?source=zalo-webhook", json={"events": TINY_EVENTS}, headers=AUTH).json()
    assert first["accepted"] == len(TINY_EVENTS)
    assert again["accepted"] == 0 and again["duplicates"] == len(TINY_EVENTS)
    assert {r["status"] for r in again["results"]} == {"duplicate"}
    assert _query(collector.settings, "SELECT count(*) FROM events") == [(len(TINY_EVENTS),)]
    assert _query(collector.settings, "SELECT source FROM imports ORDER BY started_at") == [
        ("collector",), ("collector:zalo-webhook",)]


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "not valid JSON"),
    (b'{"items": []}', 400, "expected a JSON array"),
    (b'"text"', 400, "expected a JSON array"),
    (b'[{"amount": NaN}]', 400, "NaN is not JSON"),
    (json.dumps([{}] * 51).encode(), 413, "at most 50"),
])
def test_whole_request_errors(collector, body, status, message):
    response = collector.post("/events", content=body, headers=AUTH)
    assert response.status_code == status
    assert message in response.json()["detail"]


def test_empty_batch_and_bad_source(collector):
    assert collector.post("/events", json=[], headers=AUTH).json() == {
        "accepted": 0, "duplicates": 0, "rejected": 0, "stored": True, "results": []}
    assert collector.post("/events?source=a b", json=[], headers=AUTH).status_code == 400


def test_body_size_limit(workspace, monkeypatch):
    monkeypatch.setenv("NHIP_COLLECTOR_API_KEY", KEY)
    from nhip.settings import get_settings

    with TestClient(create_app(get_settings().collector, max_body_bytes=1000)) as client:
        response = client.post("/events", content=json.dumps(TINY_EVENTS * 5), headers=AUTH)
    assert response.status_code == 413


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)
field_names = st.sampled_from(["event_id", "ts", "channel", "type", "phone", "email", "zalo_user_id",
                               "amount", "quantity", "properties", "name", "extra"])
items = st.one_of(
    json_values,
    st.fixed_dictionaries({"ts": st.sampled_from(["2026-03-01T10:00:00+07:00", "01/03/2026 10:00", "x"]),
                           "channel": st.sampled_from(["web", "zalo_oa", "Web", ""]),
                           "type": st.sampled_from(["page_view", "follow"]),
                           "event_id": st.sampled_from(["a", "b", "c"])},
                          optional={"phone": st.sampled_from(["0912345678", "+84 912 345 678", "12"]),
                                    "anonymous_id": st.text(max_size=5), "amount": json_values}),
    st.dictionaries(field_names, json_values, max_size=6),
)


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(items, max_size=12))
def test_every_item_gets_exactly_one_answer(collector, batch):
    response = collector.post("/events", json=batch, headers=AUTH)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert _balanced(answer, len(batch))
    assert all(r["reason"] for r in answer["results"] if r["status"] == "rejected")


def test_cli_collect_needs_a_key(workspace, monkeypatch):
    monkeypatch.delenv("NHIP_COLLECTOR_API_KEY", raising=False)
    result = CliRunner().invoke(cli, ["collect", "--port", "0"])
    assert result.exit_code == 1
    assert "NHIP_COLLECTOR_API_KEY" in result.output and "Traceback" not in result.output
