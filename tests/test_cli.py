from typer.testing import CliRunner

from nhip.cli import app


def test_missing_store_is_a_one_line_error(workspace):
    result = CliRunner().invoke(app, ["features", "build", "--as-of", "2026-08-29"])
    assert result.exit_code == 1
    assert "no event store" in result.output and "Traceback" not in result.output


def test_unknown_file_format(workspace, tmp_path):
    path = tmp_path / "events.xml"
    path.write_text("<events/>")
    result = CliRunner().invoke(app, ["ingest", str(path)])
    assert result.exit_code == 1
    assert "unknown format" in result.output


def test_bad_date(workspace):
    result = CliRunner().invoke(app, ["train", "send-time", "--as-of", "soon"])
    assert result.exit_code == 1
    assert "cannot read date" in result.output


def test_a_store_locked_by_another_process_is_explained(workspace, tmp_path):
    import subprocess
    import sys

    from features.ingest import ingest_file
    from tests.conftest import TINY_EVENTS, write_jsonl

    ingest_file(write_jsonl(tmp_path / "e.jsonl", TINY_EVENTS), workspace.store_path)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('ok', flush=True); "
        "time.sleep(30)"), str(workspace.store_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        result = CliRunner().invoke(app, ["quarantine", "list"])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1
    assert "in use by another process" in result.output


def test_quarantine_list_and_export(workspace, tmp_path):
    import csv
    import json

    from features.ingest import ingest_file
    from tests.conftest import TINY_EVENTS, write_jsonl

    path = write_jsonl(tmp_path / "e.jsonl", TINY_EVENTS)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"ts": "không rõ", "channel": "web", "type": "page_view",
                                 "anonymous_id": "a1"}) + "\n")
        handle.write("{broken\n")
    ingest_file(path, workspace.store_path)

    listed = CliRunner().invoke(app, ["quarantine", "list"])
    assert listed.exit_code == 0, listed.output
    assert "unparseable ts" in listed.output and "not valid JSON" in listed.output

    out = tmp_path / "q.csv"
    exported = CliRunner().invoke(app, ["quarantine", "export", "--output", str(out),
                                        "--reason", "ts"])
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [(r["source"], r["line"], r["reason"]) for r in rows] == [("e.jsonl", "7", "unparseable ts")]
    assert json.loads(rows[0]["raw"])["ts"] == "không rõ"
