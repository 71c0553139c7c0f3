"""CDNOW: the file → canonical events, every line accounted for on import, and `nhip evaluate cdnow`."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from features.store import open_store
from nhip.cli import app
from nhip.settings import Settings
from tests.conftest import IDENTITY
from training import cdnow

LINES = """ customer_id  date number_of_cds  dollar_value
 00001 19970101  1   11.77
 00002 19970112  1   12.00
 00002 19970112  5   77.00
 00002 19970112  5   77.00
 00003 19970231  2   20.76
 00004 19970301  2   abc
not a cdnow line
"""


@pytest.fixture
def installed() -> Path:
    try:
        return cdnow.cdnow_master_path()
    except cdnow.CdnowDataMissing:
        pytest.skip("lifetimes (which ships CDNOW) is not installed")


def _events(tmp_path) -> list[dict]:
    source = tmp_path / "cdnow.txt"
    source.write_text(LINES, encoding="ascii")
    out = tmp_path / "events.jsonl"
    conversion = cdnow.convert(source, out)
    assert (conversion.lines, conversion.rows) == (7, 7)  # the header is not a data line
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_lines_become_canonical_purchases(tmp_path):
    events = _events(tmp_path)
    assert events[0] == {
        "event_id": "cdnow-line-2", "channel": "web", "type": "purchase", "external_id": "cdnow-00001",
        "ts": "1997-01-01T12:00:00+07:00", "amount": 11.77, "currency": "USD", "quantity": 1,
    }
    # Two identical lines are two orders in the source: distinct event ids keep both.
    assert events[2]["event_id"] != events[3]["event_id"]
    assert {k: v for k, v in events[2].items() if k != "event_id"} == {
        k: v for k, v in events[3].items() if k != "event_id"}
    # A date that does not exist, an amount that is not a number and a line that is not CDNOW's keep
    # their raw values, and lose what ingest requires, so ingest quarantines them with a reason.
    assert "ts" not in events[4] and events[4]["properties"] == {"cdnow_date": "19970231"}
    assert events[5]["amount"] == "abc"
    assert events[6] == {"event_id": "cdnow-line-8", "channel": "web", "type": "purchase",
                         "properties": {"cdnow_line": "not a cdnow line"}}


def test_every_line_is_accounted_for_on_import(tmp_path):
    source = tmp_path / "cdnow.txt"
    source.write_text(LINES, encoding="ascii")
    first = cdnow.import_cdnow(tmp_path / "work", source=source)
    report = first.report
    assert report.rows_read == first.conversion.lines == 7
    assert report.rows_read == report.accepted + report.duplicates + report.quarantined
    assert (report.accepted, report.duplicates, report.quarantined) == (4, 0, 3)
    assert dict(report.reasons) == {"missing ts": 2, "unparseable amount": 1}
    with open_store(first.store_path) as con:
        assert con.execute("SELECT sum(amount), sum(quantity), any_value(currency) FROM events"
                           ).fetchone() == (pytest.approx(177.77), 12.0, "USD")


def test_the_whole_file_is_imported(installed, tmp_path):
    expected_lines = sum(1 for line in installed.read_text().splitlines()
                         if line.strip() and not cdnow.is_header(line))
    dollars = sum(float(line.split()[3]) for line in installed.read_text().splitlines()[1:] if line.strip())
    result = cdnow.import_cdnow(tmp_path / "work")
    report = result.report
    assert expected_lines == 69_659
    assert report.rows_read == result.conversion.lines == expected_lines
    assert report.accepted == expected_lines and report.duplicates == report.quarantined == 0
    assert result.conversion.customers == 23_570
    with open_store(result.store_path) as con:
        n, total, people = con.execute(
            "SELECT count(*), sum(amount), count(DISTINCT external_id) FROM events").fetchone()
    assert (n, people) == (expected_lines, 23_570)
    assert total == pytest.approx(dollars, abs=0.01)
    # Importing the same file again into the same store would store nothing new (idempotent ids).
    from features.ingest.importer import ingest_file

    events = result.store_path.parent / "cdnow_events.jsonl"
    again = ingest_file(events, result.store_path, source=cdnow.SOURCE)
    assert again.duplicates == expected_lines and again.accepted == 0


def test_missing_lifetimes_says_how_to_install_it(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "files", missing)
    with pytest.raises(cdnow.CdnowDataMissing, match=r"pip install lifetimes==0\.11\.3"):
        cdnow.cdnow_master_path()


def test_evaluate_cdnow_command_on_a_sample(installed, workspace, tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "cdnow", "--work", str(tmp_path / "cd"), "--sample", "600"])
    assert result.exit_code == 0, result.output
    # Again in the same folder: the store is rebuilt, not appended to or tripped over.
    again = CliRunner().invoke(app, ["evaluate", "cdnow", "--work", str(tmp_path / "cd"), "--sample", "600"])
    assert again.exit_code == 0, again.output
    assert "accepted" in again.output and "duplicates 0" in again.output
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in result.output.splitlines() if line.startswith("| ") and not line.startswith("| |")}
    assert {"model", "bgnbd", "bgnbd_expected", "pareto_nbd", "pareto_nbd_expected", "rfm_logit",
            "recency"} <= set(rows)
    # auc, pr_auc, lift, brier, log_loss: all five for the probabilities, the ranking three for
    # the rules.
    for name in ("model", "bgnbd", "pareto_nbd", "rfm_logit"):
        assert all(0 < float(v) for v in rows[name][:5]), rows[name]
    assert all(0 < float(v) for v in rows["recency"][:3]) and rows["recency"][3:5] == ["—", "—"]
    assert "accepted" in result.output and "quarantined 0" in result.output


def test_evaluate_cdnow_command_without_lifetimes(workspace, tmp_path, monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "files", missing)
    result = CliRunner().invoke(app, ["evaluate", "cdnow", "--work", str(tmp_path / "cd")])
    assert result.exit_code == 1
    assert "pip install lifetimes==0.11.3" in result.output


@pytest.mark.slow
def test_model_beats_every_baseline_on_the_full_cdnow_split(installed, tmp_path):
    """The product as shipped (the shipped gate, fallbacks below it) on Fader, Hardie & Lee's split:
    better AUC and PR-AUC than BG/NBD and Pareto/NBD (both rankings each: P(any purchase) and expected
    purchases) and the RFM logistic regression."""
    table = cdnow.evaluate_cdnow(tmp_path / "cd", IDENTITY, min_events=Settings().min_events_to_score).table
    for metric in ("auc", "pr_auc"):
        for baseline in ("bgnbd", "bgnbd_expected", "pareto_nbd", "pareto_nbd_expected", "rfm_logit"):
            assert table.loc["model", metric] > table.loc[baseline, metric], (metric, baseline)
    assert table.loc["model", "rows"] == 23_570


def test_an_unknown_split_is_a_clear_error(workspace, tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "cdnow", "--work", str(tmp_path / "cd"), "--split", "bogus"])
    assert result.exit_code == 1 and "--split must be one of fhl, later" in " ".join(result.output.split())


def test_the_later_split_reads_no_purchase_after_the_file_ends(installed, workspace, tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "cdnow", "--work", str(tmp_path / "cd"), "--sample", "600",
                                      "--split", "later"])
    assert result.exit_code == 0, result.output
    assert "as of the end of 1998-03-31, purchases in the next 91 days" in " ".join(result.output.split())
