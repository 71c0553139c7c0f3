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
