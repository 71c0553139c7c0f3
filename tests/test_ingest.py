import json

from features.ingest.importer import ingest_file
from features.store import open_store
from tests.conftest import TINY_EVENTS, write_jsonl


def _count(settings, sql):
    with open_store(settings.store_path) as con:
        return con.execute(sql).fetchone()[0]


def test_every_row_is_accounted_for(workspace, tmp_path):
    path = tmp_path / "events.jsonl"
    write_jsonl(path, TINY_EVENTS)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("{not json\n")
        handle.write(json.dumps({"ts": "2026-03-01T10:00:00+07:00", "channel": "web", "type": "page_view"}) + "\n")
        handle.write(json.dumps({"ts": "yesterday", "channel": "web", "type": "page_view", "email": "a@b.vn"}) + "\n")
        handle.write(json.dumps({"ts": "2026-03-01", "channel": "pos", "type": "purchase",
                                 "phone": "0912345678", "amount": "nhiều tiền"}) + "\n")
    report = ingest_file(path, workspace.store_path)
    assert report.rows_read == 10
    assert report.accepted == 6 and report.duplicates == 0 and report.quarantined == 4
    assert report.rows_read == report.accepted + report.duplicates + report.quarantined
    assert report.reasons == {"not valid JSON": 1, "no identifier": 1, "unparseable ts": 1,
                              "unparseable amount": 1}
    assert _count(workspace, "SELECT count(*) FROM quarantine") == 4


def test_importing_twice_changes_nothing(workspace, tmp_path):
    rows = TINY_EVENTS + [{"ts": "2026-03-04T08:00:00+07:00", "channel": "sms", "type": "message_sent",
                           "phone": "0912345678"}]  # no event_id: keyed by content
    path = write_jsonl(tmp_path / "events.jsonl", rows)
    first = ingest_file(path, workspace.store_path)
    second = ingest_file(path, workspace.store_path)
    assert first.accepted == 7
    assert second.accepted == 0 and second.duplicates == 7
    assert _count(workspace, "SELECT count(*) FROM events") == 7


def test_values_are_normalised(workspace, tmp_path):
    ingest_file(write_jsonl(tmp_path / "e.jsonl", TINY_EVENTS), workspace.store_path)
    with open_store(workspace.store_path) as con:
        phone, email, amount, ts = con.execute(
            "SELECT phone, email, amount, ts FROM events WHERE event_id = 'p1'").fetchone()
    assert phone == "+84912345678"
    assert email == "lan.nguyen@example.com"
    assert amount == 1_200_000
    assert str(ts) == "2026-03-01 11:00:00"  # 18:00 in Vietnam, stored as UTC
