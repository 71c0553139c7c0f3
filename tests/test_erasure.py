"""Erasure removes a person from every store; a search of each store afterwards finds nothing."""

from __future__ import annotations

import json

import duckdb
import pytest
from typer.testing import CliRunner

from features.build import build_features
from features.ingest.importer import ingest_file
from nhip.cli import app
from nhip.clock import parse_as_of
from tests.conftest import TINY_EVENTS, write_jsonl

# Lan's identifiers as they appear in the tiny fixture, and the forms they are stored in.
LAN = ["912345678", "lan.nguyen@example.com", "z-lan", "KH001", "anon-lan", "Nguyễn Thị Lan"]


@pytest.fixture
def lan_and_minh(workspace, tmp_path):
    path = write_jsonl(tmp_path / "events.jsonl", TINY_EVENTS)
    with open(path, "a", encoding="utf-8") as handle:  # a quarantined row that names Lan's phone
        handle.write(json.dumps({"ts": "hôm qua", "channel": "sms", "type": "message_sent",
                                 "phone": "(+84) 912.345.678"}) + "\n")
    ingest_file(path, workspace.store_path)
    build_features(workspace.store_path, parse_as_of("2026-03-10"), workspace.identity, workspace.vectors)
    return workspace


def _duckdb_text(settings) -> str:
    """Every text value of every table, as one string."""
    con = duckdb.connect(str(settings.store_path), read_only=True)
    try:
        chunks = []
        for (table,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall():
            chunks.append(con.execute(f"SELECT * FROM {table}").df().to_csv())
        return "\n".join(chunks)
    finally:
        con.close()


def _qdrant_customers(settings) -> set[str]:
    from features.vectors.qdrant import collection_behind, open_qdrant

    client = open_qdrant(settings.vectors)
    try:
        points, _ = client.scroll(collection_behind(client, "profiles"), limit=1000, with_payload=True)
        return {p.payload["customer_id"] for p in points}
    finally:
        client.close()


def test_erasure_leaves_no_trace(lan_and_minh):
    settings = lan_and_minh
    text = _duckdb_text(settings)
    assert all(value in text for value in LAN)  # the search below would find them
    profiles_before = _qdrant_customers(settings)
    assert len(profiles_before) == 2
    con = duckdb.connect(str(settings.store_path), read_only=True)
    lan_id = con.execute("SELECT customer_id FROM identity_map WHERE id_value = 'KH001'").fetchone()[0]
    con.close()
    assert any(lan_id.encode() in p.read_bytes() for p in settings.workspace.rglob("*.npy")) or any(
        lan_id.encode() in p.read_bytes() for p in settings.workspace.rglob("*.parquet"))

    result = CliRunner().invoke(app, ["erase", "--phone", "0912 345 678"])
    assert result.exit_code == 0, result.output
    assert "1 customer(s)" in result.output

    text = _duckdb_text(settings)
    assert [v for v in LAN if v in text] == []
    assert "z-minh" in text  # Minh is untouched
    remaining = _qdrant_customers(settings)
    assert len(remaining) == 1 and remaining < profiles_before
    for path in settings.workspace.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(v.encode() in data for v in LAN), f"{path} still holds Lan's data"
            if path.suffix in (".npy", ".parquet"):  # the vector snapshot, by customer id
                assert lan_id.encode() not in data, f"{path} still holds Lan's vector"


def test_audit_record_holds_no_personal_data(lan_and_minh):
    settings = lan_and_minh
    CliRunner().invoke(app, ["erase", "--email", "LAN.NGUYEN@example.com"])
    con = duckdb.connect(str(settings.store_path), read_only=True)
    audit = con.execute("SELECT * FROM erasures").df()
    con.close()
    assert len(audit) == 1
    assert audit.loc[0, "events"] == 4 and audit.loc[0, "quarantined_rows"] == 1
    assert set(audit.columns) == {"erasure_id", "erased_at", "customers", "identifiers", "events",
                                  "quarantined_rows"}


def test_unknown_person_is_a_clear_error(lan_and_minh):
    result = CliRunner().invoke(app, ["erase", "--phone", "0987654321"])
    assert result.exit_code == 1
    assert "no customer with that phone" in result.output


def test_exactly_one_identifier(lan_and_minh):
    result = CliRunner().invoke(app, ["erase", "--phone", "0912345678", "--email", "a@b.vn"])
    assert result.exit_code == 1
