"""An import killed with SIGKILL half-way, then run again, leaves the store exactly as one clean import.

The import runs in a child process on a copy of a store that already holds events. It is killed at three
moments found by watching the database file grow towards the size a clean import leaves, rather than by
guessing delays: while the file is still being read (the store untouched), a quarter of the way (new row
groups being written inside the open transaction) and two thirds of the way (DuckDB writes the rows
first and the index and metadata at commit, so this is the commit and checkpoint). After each kill the
import is re-run and the store is compared with a clean import: the same events, column by column, and
the same quarantine; a third import then adds nothing.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from features.ingest.importer import ingest_file
from features.store import EVENT_COLUMNS
from synthetic import demo_shop as demo_data
from tests.conftest import TINY_EVENTS, write_jsonl

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# Everything but the time of the import, which differs between any two imports by definition.
COMPARED = [c for c in EVENT_COLUMNS if c != "ingested_at"]
CHILD = "import sys; from pathlib import Path; from features.ingest.importer import ingest_file; " \
        "ingest_file(Path(sys.argv[1]), Path(sys.argv[2]), source='demo')"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A demo file, a store that already holds other events, and a clean import of the file into a copy."""
    root = tmp_path_factory.mktemp("crash")
    events = demo_data.write(demo_data.generate(customers=1000, days=120, seed=11), root / "data")["events"]
    _add_bad_rows(events)
    base = root / "base.duckdb"
    ingest_file(write_jsonl(root / "tiny.jsonl", TINY_EVENTS), base)
    clean = _copy(base, root / "clean.duckdb")
    report = ingest_file(events, clean, source="demo")
    assert report.accepted > 50_000 and report.quarantined > 100
    return {"root": root, "events": events, "base": base, "clean": _snapshot(clean),
            "growth": _size(clean) - _size(base)}


def _add_bad_rows(path: Path) -> None:
    """Every 500th line broken one way or another, so that quarantine is compared too."""
    bad = [b"{not json", b'{"ts": "yesterday", "channel": "web", "type": "page_view", "anonymous_id": "x"}',
           b"[1, 2]", b"\xff\xfe garbage", b'{"ts": "2026-05-01T10:00:00+07:00", "channel": "web"}']
    lines = path.read_bytes().splitlines()
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        if i % 500 == 0:
            out.append(bad[(i // 500) % len(bad)])
    path.write_bytes(b"\n".join(out) + b"\n")


def _copy(store: Path, to: Path) -> Path:
    assert not Path(f"{store}.wal").exists()
    shutil.copy(store, to)
    return to


def _snapshot(store: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(store), read_only=True)
    try:
        return {
            "events": con.execute(f"SELECT {', '.join(COMPARED)} FROM events ORDER BY event_key").fetchall(),
            "quarantine": con.execute(
                "SELECT source, line, raw, reason FROM quarantine ORDER BY source, line").fetchall(),
            "imports": con.execute("SELECT source, rows_read, accepted, duplicates, quarantined FROM imports "
                                   "ORDER BY started_at").fetchall(),
        }
    finally:
        con.close()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def _kill_when(store: Path, events: Path, moment) -> int:
    """Start the import in a child process, SIGKILL it as soon as `moment(database file size)` holds."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(events), str(store)], cwd=REPO)
    deadline = time.monotonic() + 120
    try:
        while child.poll() is None and time.monotonic() < deadline:
            if moment(_size(store)):
                child.send_signal(signal.SIGKILL)
                break
            time.sleep(0.0005)
        return child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()


@pytest.mark.parametrize("moment", ["reading", "inserting", "committing"])
def test_killed_import_then_rerun_equals_one_clean_import(setup, tmp_path, moment):
    store = _copy(setup["base"], tmp_path / "store.duckdb")
    base_size, growth = _size(store), setup["growth"]
    started = time.monotonic()
    when = {
        # The child is still importing pandas or reading the file: the store is untouched.
        "reading": lambda db: time.monotonic() - started > 1.0,
        "inserting": lambda db: db > base_size + growth / 4,
        "committing": lambda db: db > base_size + growth * 2 / 3,
    }[moment]
    assert _kill_when(store, setup["events"], when) == -signal.SIGKILL, "the import finished before the kill"

    report = ingest_file(setup["events"], store, source="demo")
    assert report.rows_read == report.accepted + report.duplicates + report.quarantined
    assert _snapshot(store)["events"] == setup["clean"]["events"]
    assert _snapshot(store)["quarantine"] == setup["clean"]["quarantine"]

    again = ingest_file(setup["events"], store, source="demo")
    assert again.accepted == 0 and again.duplicates == report.accepted + report.duplicates
    assert _snapshot(store)["events"] == setup["clean"]["events"]
