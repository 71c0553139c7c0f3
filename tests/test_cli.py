import re

import pytest
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


def test_a_busy_writer_blocks_no_reader_and_an_import_says_who_holds_it(workspace, tmp_path):
    import subprocess
    import sys

    from features.ingest.importer import ingest_file
    from tests.conftest import TINY_EVENTS, write_jsonl

    path = write_jsonl(tmp_path / "e.jsonl", TINY_EVENTS)
    ingest_file(path, workspace.store_path)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from features.store import store_writer\n"
        "with store_writer(Path(sys.argv[1]), doing='a long erasure'):\n"
        "    print('ok', flush=True); time.sleep(30)"), str(workspace.store_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        listed = CliRunner().invoke(app, ["quarantine", "list"])
        imported = CliRunner().invoke(app, ["ingest", str(path), "--wait", "1"])
    finally:
        holder.kill()
        holder.wait()
    assert listed.exit_code == 0, listed.output
    assert imported.exit_code == 1
    assert f"process {holder.pid}, a long erasure" in imported.output and "Traceback" not in imported.output
    after = CliRunner().invoke(app, ["ingest", str(path), "--json"])  # the kill released the lock
    assert after.exit_code == 0 and f'"duplicates": {len(TINY_EVENTS)}' in after.output


def test_quarantine_list_and_export(workspace, tmp_path):
    import csv
    import json

    from features.ingest.importer import ingest_file
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


# -- models, retrain and report, on the small trained demo of tests.registry_demo ----------------------------

from tests.registry_demo import clone_home  # noqa: E402


def _flat(text: str) -> str:
    """Output with the console's line wrapping undone."""
    return " ".join(text.split())


def _nhip(monkeypatch, home, *args, **env):
    monkeypatch.setenv("NHIP_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return CliRunner().invoke(app, list(args))


def test_models_list_shows_versions_metrics_aliases_and_verdicts(trained_demo, monkeypatch):
    result = _nhip(monkeypatch, trained_demo.home, "models", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("nhip-propensity — champion: version ")
    assert "ver  created" in lines[1] and "lift@10%" in lines[1] and "at training" in lines[1]
    assert sum("propensity_v1" in line for line in lines) == 2
    assert any("send_time_inputs_v2" in line and "champion" in line and "promoted: no champion yet" in line
               for line in lines)
    assert any(line.startswith("nhip-send-time — champion: version 1") for line in lines)


def test_models_promote_and_rollback(trained_demo, tmp_path, monkeypatch):
    home = clone_home(trained_demo.home, tmp_path / "home")
    unknown = _nhip(monkeypatch, home, "models", "promote", "9")
    assert unknown.exit_code == 1
    assert unknown.output.strip() == "error: nhip-propensity has no version '9' (versions: 1, 2)"
    _nhip(monkeypatch, home, "models", "promote", "2")
    moved = _nhip(monkeypatch, home, "models", "promote", "1", "--reason", "version 2 over-targets")
    assert moved.exit_code == 0 and "champion is now version 1 (was 2)" in moved.stdout
    listed = _nhip(monkeypatch, home, "models", "list", "--model", "propensity").stdout
    assert "promote to version 1 (was 2) by " in listed and "version 2 over-targets" in listed
    back = _nhip(monkeypatch, home, "models", "rollback")
    assert back.exit_code == 0 and "rolled back to version 2 (was 1)" in back.stdout
    nothing = _nhip(monkeypatch, home, "models", "rollback", "--model", "send-time")
    assert nothing.exit_code == 1 and "nothing to roll back to" in _flat(nothing.output)


def test_retrain_refuses_without_new_events(trained_demo, monkeypatch):
    result = _nhip(monkeypatch, trained_demo.home, "retrain", "--no-vectors")
    assert result.exit_code == 1
    assert "check 'new events' failed: 0 since the data of nhip-propensity version" in _flat(result.output)
    assert "nothing trained" in result.output and "Traceback" not in result.output
    assert "check label rate: ok" in result.stdout
    # The default as-of is the last event, and the propensity test snapshot a horizon before it.
    assert "retrain as of 2026-08-15 " in result.stdout and "tested on the 2026-07-16 snapshot" in result.stdout


def test_retrain_refuses_when_the_label_rate_is_out_of_range(trained_demo, monkeypatch):
    result = _nhip(monkeypatch, trained_demo.home, "retrain", "--no-vectors",
                   NHIP_RETRAIN_MIN_NEW_EVENTS="0", NHIP_RETRAIN_MIN_LABEL_RATE="0.6")
    assert result.exit_code == 1
    assert "check new events: ok" in result.stdout
    assert "check 'label rate' failed" in result.output and "(allowed 60.0%–90.0%" in _flat(result.output)


def test_retrain_refuses_on_an_empty_store(workspace, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"ts": "không rõ", "channel": "web", "type": "page_view", "anonymous_id": "a"}\n')
    from features.ingest.importer import ingest_file

    ingest_file(path, workspace.store_path)
    result = CliRunner().invoke(app, ["retrain", "--no-vectors"])
    assert result.exit_code == 1
    assert "check 'empty store' failed" in _flat(result.output)


@pytest.mark.slow
def test_retrain_trains_both_models_and_prints_a_verdict_each(trained_demo, tmp_path, monkeypatch):
    from features.ingest.importer import ingest_file
    from nhip.settings import Settings

    home = clone_home(trained_demo.home, tmp_path / "home")
    ingest_file(trained_demo.late_events, Settings(home=home).store_path)
    result = _nhip(monkeypatch, home, "retrain", "--no-vectors")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "retrain as of 2026-08-31 " in out and "check new events: ok" in out
    propensity = re.search(r"^nhip-propensity version 3: (promoted|kept \(champion stays version \d\)) — "
                           r"AUC 0\.\d{3} \([+-]0\.\d{3}\), lift@10% \d\.\d{3} \([+-]\d\.\d{3}\)", out, re.M)
    send_time = re.search(r"^nhip-send-time version 2: (promoted|kept \(champion stays version 1\)) — "
                          r"holdout AUC 0\.\d{3} \([+-]0\.\d{3}\) vs champion version 1", out, re.M)
    assert propensity and send_time, out
    assert out.count("  reason: ") == 2
    import pandas as pd

    identities = pd.read_csv(trained_demo.data / "identities.csv", dtype=str)
    personal = identities.loc[identities["id_type"].isin(["phone", "email"]), "id_value"]
    assert not [v for v in personal if v in result.output]  # no phones or emails in the job's log


def test_report_writes_the_champions_or_one_version(trained_demo, tmp_path, monkeypatch):
    result = _nhip(monkeypatch, trained_demo.home, "report", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["propensity.html", "send_time.html"]
    propensity = (tmp_path / "r" / "propensity.html").read_text(encoding="utf-8")
    send_time = (tmp_path / "r" / "send_time.html").read_text(encoding="utf-8")
    for vi, en in [("Chất lượng mô hình", "Model quality"), ("Tệp khách gợi ý", "Suggested audiences"),
                   ("Quyết định thăng hạng", "Promotion decision")]:
        assert f'{vi} <span class="en">/ {en}</span>' in propensity
    assert 'Giờ gửi: zalo_oa <span class="en">/ Send hours: zalo_oa</span>' in send_time
    one = _nhip(monkeypatch, trained_demo.home, "report", "--out", str(tmp_path / "one"),
                "--model", "propensity", "--version", "1")
    assert one.exit_code == 0 and [p.name for p in (tmp_path / "one").iterdir()] == ["propensity-v1.html"]
    assert "2026-06-15" in (tmp_path / "one" / "propensity-v1.html").read_text(encoding="utf-8")
    vague = _nhip(monkeypatch, trained_demo.home, "report", "--version", "1")
    assert vague.exit_code == 1 and "--version needs --model" in _flat(vague.output)
