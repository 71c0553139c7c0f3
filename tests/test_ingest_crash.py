"""An import killed with SIGKILL half-way, then run again, leaves the store exactly as one clean import.

The import runs in a child process on a copy of a store that already holds events, and is killed at
four moments of a commit (`features.store.writer`): while the file is still being read (the store
untouched); after its first new segment is written, which no manifest names yet; with every segment
written, just before the manifest (the commit point); and just after the manifest, before the ledger
took the new keys (the next writer indexes them from the segments). The child
announces each moment on stdout and waits there to be killed, a hook in the test's child script only:
the product code runs unchanged. After each kill the import is re-run and the store compared with a
clean import: the same events, column by column, and, when the kill came before the commit point, the
same quarantine; a third import then adds nothing.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from features.ingest.importer import ingest_file
from features.store import EVENT_COLUMNS, open_store
from synthetic import demo_shop as demo_data
from tests.conftest import TINY_EVENTS, write_jsonl

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# Everything but the time of the import, which differs between any two imports by definition.
COMPARED = [c for c in EVENT_COLUMNS if c != "ingested_at"]
# The child: an ordinary import, with the chosen moment wrapped to say so and wait for the kill.
CHILD = """
import sys, time
from pathlib import Path
from features.ingest.importer import ingest_file
from features.store import ledger, writer

def pause_at(moment):
    print(moment, flush=True)
    time.sleep(60)

moment = sys.argv[3]
write_segment = writer.StoreWriter._write_segment
if moment == "segment written":
    def _write_segment(self, *args, **kwargs):
        write_segment(self, *args, **kwargs)
        pause_at(moment)
    writer.StoreWriter._write_segment = _write_segment
elif moment == "manifest next":
    writer.write_manifest = lambda *args: pause_at(moment)
elif moment == "committed":
    catch_up = ledger.KeyLedger.catch_up
    def after_the_manifest(self, root, manifest, con):
        if manifest.last_batch > (self.last_batch or 0):
            pause_at(moment)
        return catch_up(self, root, manifest, con)
    ledger.KeyLedger.catch_up = after_the_manifest
elif moment == "reading":
    print(moment, flush=True)
ingest_file(Path(sys.argv[1]), Path(sys.argv[2]), source="demo")
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A demo file, a store that already holds other events, and a clean import of the file into a copy."""
    root = tmp_path_factory.mktemp("crash")
    events = demo_data.write(demo_data.generate(customers=1000, days=120, seed=11), root / "data")["events"]
    _add_bad_rows(events)
    base = root / "base"
    ingest_file(write_jsonl(root / "tiny.jsonl", TINY_EVENTS), base)
    clean = _copy(base, root / "clean")
    report = ingest_file(events, clean, source="demo")
    assert report.accepted > 50_000 and report.quarantined > 100
    return {"root": root, "events": events, "base": base, "clean": _snapshot(clean)}


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
    shutil.copytree(store, to)
    return to


def _snapshot(store: Path) -> dict[str, list[tuple]]:
    with open_store(store) as con:
        return {
            "events": con.execute(f"SELECT {', '.join(COMPARED)} FROM events ORDER BY event_key").fetchall(),
            "quarantine": con.execute(
                "SELECT source, line, raw, reason FROM quarantine ORDER BY source, line").fetchall(),
            "imports": con.execute("SELECT source, rows_read, accepted, duplicates, quarantined FROM imports "
                                   "ORDER BY started_at").fetchall(),
        }


def _kill_at(store: Path, events: Path, moment: str) -> int:
    """Start the import in a child process, SIGKILL it once it says it reached `moment`."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(events), str(store), moment], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == moment, "the import finished before the kill"
        if moment == "reading":
            time.sleep(0.5)  # importing pandas, reading the file
        child.send_signal(signal.SIGKILL)
        return child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()


@pytest.mark.parametrize("moment", ["reading", "segment written", "manifest next", "committed"])
def test_killed_import_then_rerun_equals_one_clean_import(setup, tmp_path, moment):
    store = _copy(setup["base"], tmp_path / "store")
    assert _kill_at(store, setup["events"], moment) == -signal.SIGKILL

    report = ingest_file(setup["events"], store, source="demo")
    assert report.rows_read == report.accepted + report.duplicates + report.quarantined
    assert _snapshot(store)["events"] == setup["clean"]["events"]
    if moment == "committed":  # the killed import landed whole; the rerun finds every event stored
        assert report.accepted == 0
        assert _snapshot(store)["imports"][:-1] == setup["clean"]["imports"]
    else:
        assert _snapshot(store)["quarantine"] == setup["clean"]["quarantine"]
        assert _snapshot(store)["imports"] == setup["clean"]["imports"]
    assert not list(store.glob("*/.*.tmp")), "a temporary file outlived the recovery"
    assert {f"{p.parent.name}/{p.name}" for p in store.glob("*/*.parquet")} <= _named(store)

    again = ingest_file(setup["events"], store, source="demo")
    assert again.accepted == 0 and again.duplicates == report.accepted + report.duplicates
    assert _snapshot(store)["events"] == setup["clean"]["events"]


def _named(store: Path) -> set[str]:
    """Segment files the manifest names, or that wait for readers before deletion."""
    import json

    manifest = json.loads((store / "manifest.json").read_text())
    named = {s["name"] for segments in manifest["segments"].values() for s in segments}
    retired = store / "retired.json"
    return named | ({e["name"] for e in json.loads(retired.read_text())} if retired.exists() else set())
