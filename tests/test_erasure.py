"""Erasure removes a person from every store; a search of each store afterwards finds nothing."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.build import build_features
from features.builds import Builds
from features.ingest.importer import ingest_file
from features.store import open_store
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
    build_features(workspace.build, parse_as_of("2026-03-10"), workspace.vectors, to_qdrant=True)
    return workspace


def _file_text(path) -> bytes:
    """A file's content as a search sees it: Parquet decompressed to CSV, the ledger's keys listed,
    anything else as stored."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path).to_csv().encode("utf-8")
    if path.suffix == ".sqlite":
        with closing(sqlite3.connect(path)) as con:
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return "\n".join(pd.read_sql(f"SELECT * FROM {t}", con).to_csv() for t in tables).encode("utf-8")
    return path.read_bytes()


def _stored_text(settings) -> str:
    """Every value of every table the workspace keeps (store segments, builds, recorded merges)."""
    return "\n".join(_file_text(p).decode("utf-8", "replace") for p in sorted(settings.workspace.rglob("*"))
                     if p.is_file() and p.suffix in (".parquet", ".sqlite", ".json"))


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
    text = _stored_text(settings)
    assert all(value in text for value in LAN)  # the search below would find them
    profiles_before = _qdrant_customers(settings)
    assert len(profiles_before) == 2
    identity = Builds(settings.builds).open().table("identity")
    lan_id = identity.loc[identity["id_value"] == "KH001", "customer_id"].iloc[0]
    assert lan_id in _stored_text(settings)

    result = CliRunner().invoke(app, ["erase", "--phone", "0912 345 678"])
    assert result.exit_code == 0, result.output
    assert "1 customer(s)" in result.output

    text = _stored_text(settings)
    assert [v for v in LAN if v in text] == []
    assert "z-minh" in text  # Minh is untouched
    remaining = _qdrant_customers(settings)
    assert len(remaining) == 1 and remaining < profiles_before
    for path in settings.workspace.rglob("*"):
        if path.is_file() and "qdrant" not in path.parts:  # Qdrant's own files: checked through its API
            data = _file_text(path)
            assert not any(v.encode() in data for v in LAN), f"{path} still holds Lan's data"
            if path.suffix in (".npy", ".parquet"):  # profiles, the vector snapshot, by customer id
                assert lan_id.encode() not in data, f"{path} still holds Lan's data"


def test_audit_record_holds_no_personal_data(lan_and_minh):
    settings = lan_and_minh
    CliRunner().invoke(app, ["erase", "--email", "LAN.NGUYEN@example.com"])
    with open_store(settings.store_path) as con:
        audit = con.execute("SELECT * FROM erasures").df()
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
