"""The segment store on its own: readers keep their version while the writer commits, compacts and
deletes; the ledger is rebuilt when lost; a workspace of the old single-file format is migrated, and
nothing writes beside it before that."""

from __future__ import annotations

import json

import duckdb
import pytest
from typer.testing import CliRunner

from features.ingest.importer import import_rows, ingest_file
from features.ingest.spool import batch_rows
from features.store import describe_store, open_store, store_writer
from features.store.ledger import LEDGER
from features.store.migrate import MigrationError, migrate_file_store
from features.store.writer import MERGE_AT
from nhip.cli import app
from tests.conftest import TINY_EVENTS, write_jsonl


def _event(i: int) -> dict:
    return {"event_id": f"e{i}", "ts": f"2026-03-{1 + i % 28:02d}T10:00:00+07:00", "channel": "web",
            "type": "page_view", "anonymous_id": f"anon-{i % 7}"}


def _count(store) -> int:
    with open_store(store) as con:
        return con.execute("SELECT count(*) FROM events").fetchall()[0][0]


def test_a_reader_keeps_its_version_while_commits_compact_and_delete_files(tmp_path):
    store = tmp_path / "store"
    import_rows(store, batch_rows([_event(0)]), "first")
    with open_store(store) as reader:
        # Enough small commits to merge the first segments; the files they replace are retired, not
        # deleted, while this reader's version names them.
        for i in range(1, MERGE_AT + 2):
            import_rows(store, batch_rows([_event(i)]), f"batch-{i}")
        status = describe_store(store)
        assert status["tables"]["events"]["segments"] < MERGE_AT + 2  # compacted
        assert status["pinned_versions"] and min(status["pinned_versions"]) == 1
        assert reader.execute("SELECT count(*) FROM events").fetchall()[0][0] == 1
        retired = json.loads((store / "retired.json").read_text())
        assert retired and all((store / r["name"]).exists() for r in retired)
    import_rows(store, batch_rows([_event(100)]), "after")  # no reader pins old versions any more
    assert not json.loads((store / "retired.json").read_text())
    assert all((store / r["name"]).exists() is False for r in retired)
    assert _count(store) == MERGE_AT + 3
    assert describe_store(store)["pinned_versions"] == []


def test_a_lost_ledger_is_rebuilt_from_the_segments(tmp_path):
    store = tmp_path / "store"
    path = write_jsonl(tmp_path / "e.jsonl", TINY_EVENTS)
    first = ingest_file(path, store)
    for file in store.glob(f"{LEDGER}*"):
        file.unlink()
    again = ingest_file(path, store)
    assert again.accepted == 0 and again.duplicates == first.accepted + first.duplicates
    assert _count(store) == first.accepted


def _old_file_store(tmp_path, events: list[dict]):
    """A store in the single-file format of before December 2026: the same tables in one DuckDB file."""
    source = tmp_path / "source"
    ingest_file(write_jsonl(tmp_path / "old.jsonl", events), source)
    old = tmp_path / "old-home" / "events.duckdb"
    old.parent.mkdir()
    with open_store(source) as con:
        con.execute(f"ATTACH '{old}' AS old")
        for table in ("events", "quarantine", "imports"):
            con.execute(f"CREATE TABLE old.{table} AS SELECT * FROM {table}")
        con.execute("CREATE TABLE old.identity_map (id_type VARCHAR, id_value VARCHAR, customer_id VARCHAR)")
        con.execute("DETACH old")
    return old


def test_an_old_workspace_is_migrated_before_anything_writes_beside_it(tmp_path, monkeypatch):
    old = _old_file_store(tmp_path, TINY_EVENTS)
    home = old.parent
    monkeypatch.setenv("NHIP_HOME", str(home))
    path = write_jsonl(tmp_path / "more.jsonl", TINY_EVENTS)

    refused = CliRunner().invoke(app, ["ingest", str(path)])
    assert refused.exit_code == 1 and "run `nhip store migrate`" in " ".join(refused.output.split())
    listed = CliRunner().invoke(app, ["quarantine", "list"])
    assert listed.exit_code == 1 and "run `nhip store migrate`" in " ".join(listed.output.split())
    assert not (home / "store").exists()

    migrated = CliRunner().invoke(app, ["store", "migrate"])
    assert migrated.exit_code == 0, migrated.output
    with duckdb.connect(str(old), read_only=True) as con:
        before = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    assert _count(home / "store") == before
    again = CliRunner().invoke(app, ["ingest", str(path), "--json"])
    assert again.exit_code == 0 and json.loads(again.output)["accepted"] == 0  # the ledger knows every key
    status = json.loads(CliRunner().invoke(app, ["store", "status", "--json"]).output)
    assert status["tables"]["events"]["rows"] == before and status["tables"]["imports"]["rows"] == 2
    with pytest.raises(MigrationError, match="already holds"):
        migrate_file_store(old, home / "store")


def test_status_names_the_process_holding_the_writer(tmp_path):
    store = tmp_path / "store"
    import_rows(store, batch_rows([_event(0)]), "first")
    assert describe_store(store)["writer"] is None
    with store_writer(store, doing="a test commit"):
        import subprocess
        import sys

        seen = subprocess.run([sys.executable, "-c", (
            "import sys; from pathlib import Path; from features.store import describe_store; "
            "print(describe_store(Path(sys.argv[1]))['writer'])"), str(store)],
            capture_output=True, text=True, check=True).stdout
    assert "a test commit" in seen
