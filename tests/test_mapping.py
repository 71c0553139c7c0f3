"""Importing exports with their own column names through a mapping file (features.ingest.mapping)."""

import json
import unicodedata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from features.ingest.mapping import (
    MappingError,
    ingest_mapped,
    load_mapping,
    parse_mapping,
    read_mapped,
)
from features.ingest.readers import IngestError
from features.store import open_store
from nhip.cli import app

MAPPINGS = Path(__file__).resolve().parents[1] / "mappings"
POS = MAPPINGS / "pos_vi.toml"
ZALO = MAPPINGS / "zalo_oa_followers.toml"


def _rows(settings, sql, params=()):
    with open_store(settings.store_path) as con:
        return con.execute(sql, params).fetchall()


def _balanced(report):
    return report.rows_read == report.accepted + report.duplicates + report.quarantined


def _mapping(**extra):
    data = {"name": "t", "defaults": {"channel": "pos", "type": "purchase"},
            "columns": {"Thời gian": "ts", "Điện thoại": "phone"}}
    for key, value in extra.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    return parse_mapping(data, origin="test.toml")


def test_pos_example_imports_canonical_values(workspace):
    report = ingest_mapped(MAPPINGS / "examples" / "pos_vi.csv", workspace.store_path, load_mapping(POS))
    assert (report.rows_read, report.accepted, report.duplicates, report.quarantined) == (5, 4, 0, 1)
    assert report.reasons == {"no identifier": 1}  # the walk-in customer ("Khách lẻ") has no phone
    assert report.source == "pos-kiotviet:pos_vi.csv"
    rows = _rows(workspace, """SELECT event_id, ts, channel, type, phone, pos_customer_id, name, amount,
        quantity, product_id, product_name, category, currency, properties, source FROM events ORDER BY event_id""")
    first = dict(zip(["event_id", "ts", "channel", "type", "phone", "pos_customer_id", "name", "amount",
                      "quantity", "product_id", "product_name", "category", "currency", "properties",
                      "source"], rows[0]))
    assert first["event_id"] == "HD000101/SP0012"
    assert str(first["ts"]) == "2026-03-01 11:00:00"  # 18:00 in Vietnam
    assert (first["channel"], first["type"]) == ("pos", "purchase")
    assert first["phone"] == "+84912345678" and first["pos_customer_id"] == "KH001"
    assert first["name"] == "Nguyễn Thị Lan"
    assert first["amount"] == 1_200_000 and first["quantity"] == 1 and first["currency"] == "VND"
    assert (first["product_id"], first["category"]) == ("SP0012", "Mỹ phẩm")
    properties = json.loads(first["properties"])
    assert properties["invoice_id"] == "HD000101"
    assert properties["Chi nhánh"] == "Chi nhánh Quận 1" and properties["Tổng tiền hàng"] == "1.550.000"
    assert "Ghi chú" not in json.dumps(_rows(workspace, "SELECT properties FROM events"), ensure_ascii=False)
    by_id = {r[0]: r for r in rows}
    assert by_id["HD000101/SP0031"][7] == 350_000  # the line's value, not the invoice total
    assert by_id["HD000102/SP0105"][4] == "+84987654321"
    assert by_id["HD000103/SP0042"][4] == "+84381234567"  # 0168… renumbered to 038…
    assert by_id["HD000103/SP0042"][5] is None  # optional column left empty
    (imported,) = _rows(workspace, "SELECT source, rows_read, accepted, duplicates, quarantined FROM imports")
    assert imported == ("pos-kiotviet:pos_vi.csv", 5, 4, 0, 1)
    assert _rows(workspace, "SELECT line, reason FROM quarantine") == [(6, "no identifier")]


def test_zalo_example_translates_states(workspace):
    report = ingest_mapped(MAPPINGS / "examples" / "zalo_oa_followers.csv", workspace.store_path,
                           load_mapping(ZALO))
    assert (report.rows_read, report.accepted, report.quarantined) == (4, 3, 1)
    assert report.reasons == {"type: value not in [values.type] of the mapping": 1}  # "Đã chặn"
    rows = _rows(workspace, "SELECT zalo_user_id, type, channel, phone, ts, name FROM events ORDER BY ts")
    assert rows[0][:4] == ("3301928475610293847", "unfollow", "zalo_oa", "+84381234567")
    assert str(rows[0][4]) == "2026-01-19 17:00:00"  # a date alone is local midnight
    assert rows[1][:4] == ("5519283746102938475", "follow", "zalo_oa", None)
    assert rows[2][1] == "follow" and rows[2][3] == "+84912345678" and rows[2][5] == "Lan Nguyễn"
    (raw,) = _rows(workspace, "SELECT raw FROM quarantine")
    assert "Đã chặn" in raw[0]


def test_importing_twice_changes_nothing(workspace):
    mapping = load_mapping(POS)
    path = MAPPINGS / "examples" / "pos_vi.csv"
    ingest_mapped(path, workspace.store_path, mapping)
    again = ingest_mapped(path, workspace.store_path, mapping)
    assert (again.accepted, again.duplicates, again.quarantined) == (0, 4, 1) and _balanced(again)
    assert _rows(workspace, "SELECT count(*) FROM events") == [(4,)]


def test_headers_and_values_match_loosely(workspace, tmp_path):
    """Case, spacing, NFD (macOS) and a BOM do not matter, for headers nor for translated values."""
    nfd = lambda s: unicodedata.normalize("NFD", s)  # noqa: E731
    text = (f"\ufeff  user id ,{nfd('TÊN HIỂN THỊ')},Số  điện thoại,{nfd('ngày quan tâm')},Trạng Thái\n"
            f"z1,An,0912345678,01/03/2026 08:00,{nfd('  ĐANG QUAN TÂM ')}\n")
    path = tmp_path / "followers.csv"
    path.write_text(text, encoding="utf-8")
    report = ingest_mapped(path, workspace.store_path, load_mapping(ZALO))
    assert report.accepted == 1, report.reasons
    assert _rows(workspace, "SELECT type, name, zalo_user_id FROM events") == [("follow", "An", "z1")]


def test_every_row_is_accounted_for(workspace, tmp_path):
    path = tmp_path / "pos.csv"
    path.write_text(
        "Thời gian;Điện thoại;Ghi chú\n"
        "01/03/2026 10:00;0912345678;ok\n"
        "hôm qua;0912345678;ts does not match the format\n"
        "02/03/2026 10:00;0912345678\n"  # a cell short
        "\n"
        "03/03/2026 10:00;;no identifier\n"
        "01/03/2026 10:00;0912 345 678;same event, phone written differently\n"
        "04/03/2026 10:00;0912345678;trailing empty cells;;\n",
        encoding="utf-8")
    mapping = _mapping(formats={"ts": "%d/%m/%Y %H:%M"}, drop=["Ghi chú"])
    report = ingest_mapped(path, workspace.store_path, mapping)
    assert report.rows_read == 6 and _balanced(report)
    assert (report.accepted, report.duplicates, report.quarantined) == (2, 1, 3)
    assert report.reasons == {"ts does not match the mapping's format '%d/%m/%Y %H:%M'": 1,
                              "2 cells for 3 columns": 1, "no identifier": 1}
    assert _rows(workspace, "SELECT count(*) FROM quarantine") == [(3,)]


def test_value_map_fallback_and_properties_targets(workspace, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("Thời gian,Điện thoại,Trạng thái,Kho\n"
                    "01/03/2026 10:00,0912345678,Đã giao,Q1\n", encoding="utf-8")
    mapping = parse_mapping({
        "name": "t", "defaults": {"channel": "pos", "properties.origin": "kho-cu"},
        "columns": {"Thời gian": "ts", "Điện thoại": "phone", "Trạng thái": "type", "Kho": "properties.store"},
        "values": {"type": {"Đã hủy": "order_cancelled", "*": "purchase"}},
    })
    assert ingest_mapped(path, workspace.store_path, mapping).accepted == 1
    ((kind, properties),) = _rows(workspace, "SELECT type, properties FROM events")
    assert kind == "purchase"
    assert json.loads(properties) == {"store": "Q1", "origin": "kho-cu"}


def test_combined_date_and_time_columns(workspace, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("Ngày,Giờ,Điện thoại\n01/03/2026,18:30,0912345678\n", encoding="utf-8")
    mapping = parse_mapping({"name": "t", "defaults": {"channel": "pos", "type": "purchase"},
                             "columns": {"Điện thoại": "phone"}, "combine": {"ts": ["Ngày", "Giờ"]},
                             "formats": {"ts": "%d/%m/%Y %H:%M"}, "keep": []})
    assert ingest_mapped(path, workspace.store_path, mapping).accepted == 1
    assert [str(t) for (t,) in _rows(workspace, "SELECT ts FROM events")] == ["2026-03-01 11:30:00"]


def test_keep_lists_the_only_unmapped_columns_kept(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("Thời gian,Điện thoại,A,B\n01/03/2026 10:00,0912345678,1,2\n", encoding="utf-8")
    rows = read_mapped(path, _mapping(keep=["b"]))
    assert rows.records[0]["properties"] == {"B": "2"}


@pytest.mark.parametrize("change, message", [
    ({"columns": {"Điện thoại": "phone_number"}}, "'Điện thoại' maps to unknown field 'phone_number'"),
    ({"columns": {"Điện thoại": "properties"}}, "properties.<key>"),
    ({"column": {}}, "unknown key 'column'"),
    ({"name": ""}, "`name` is required"),
    ({"defaults": {"channel": "pos", "type": None}}, "nothing gives type"),
    ({"defaults": {"channel": "POS ", "type": "purchase"}}, "not a lowercase token"),
    ({"columns": {"Thời gian": "ts", "Điện thoại": "name"}}, "no identifier column"),
    ({"columns": {"Thời gian": "ts", "Điện thoại": "phone", "SĐT": "phone"}}, "phone is mapped from both"),
    ({"formats": {"ts": "dd/mm/yyyy"}}, "not a strptime format"),
    ({"formats": {"amount": "%d"}}, "only ts takes a format"),
    ({"values": {"type": {"Mua": "purchase"}}}, "[values.type]: no column maps to type"),
    ({"drop": ["Điện thoại"]}, "`drop` names 'Điện thoại', which is mapped"),
    ({"optional": ["Email"]}, "`optional` names 'Email'"),
    ({"encoding": "vietnamese"}, "unknown encoding"),
    ({"delimiter": "|"}, "`delimiter`"),
])
def test_bad_mappings_say_what_is_wrong(change, message):
    data = {"name": "t", "defaults": {"channel": "pos", "type": "purchase"},
            "columns": {"Thời gian": "ts", "Điện thoại": "phone"}}
    data.update(change)
    data["defaults"] = {k: v for k, v in data["defaults"].items() if v is not None}
    with pytest.raises(MappingError) as caught:
        parse_mapping(data, origin="bad.toml")
    assert str(caught.value).startswith("bad.toml: ")
    assert message in str(caught.value)


def test_bad_toml_and_missing_file(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('name = "x"\n[columns]\n"Thời gian" = ts\n', encoding="utf-8")
    with pytest.raises(MappingError, match=r"m\.toml: not valid TOML: .*line 3"):
        load_mapping(path)
    with pytest.raises(MappingError, match="no such mapping file"):
        load_mapping(tmp_path / "nope.toml")


def test_missing_column_names_it_and_lists_the_header(workspace, tmp_path):
    path = tmp_path / "pos.csv"
    path.write_text("Thời gian,SĐT\n01/03/2026 10:00,0912345678\n", encoding="utf-8")
    with pytest.raises(MappingError) as caught:
        ingest_mapped(path, workspace.store_path, _mapping())
    message = str(caught.value)
    assert 'column "Điện thoại" (mapped to phone by test.toml) is not in the file\'s header' in message
    assert 'the header is: "Thời gian", "SĐT"' in message
    assert not workspace.store_path.exists()  # nothing was imported


def _windows_1258(text: str) -> bytes:
    """Text as Vietnamese Windows writes it: base letters (ơ, ê, ă…) precomposed, tone marks combining."""
    out = bytearray()
    for char in text:
        try:
            out += char.encode("cp1258")
        except UnicodeEncodeError:
            parts = unicodedata.normalize("NFD", char)
            tone = next(c for c in parts if c in "\u0300\u0301\u0303\u0309\u0323")
            out += (unicodedata.normalize("NFC", parts.replace(tone, "")) + tone).encode("cp1258")
    return bytes(out)


def test_legacy_encodings(workspace, tmp_path):
    content = "Thời gian,Điện thoại,Khách hàng\n01/03/2026 10:00,0912345678,Nguyễn Thị Lan\n"
    cp1258 = tmp_path / "cp1258.csv"
    cp1258.write_bytes(_windows_1258(content))
    with pytest.raises(IngestError, match=r'not utf-8 \(byte 0x.. on line 1\).*encoding = "cp1258"'):
        read_mapped(cp1258, _mapping())
    rows = read_mapped(cp1258, _mapping(encoding="cp1258", columns={"Khách hàng": "name"}))
    assert rows.records[0]["name"] == "Nguyễn Thị Lan"  # recomposed to NFC

    utf16 = tmp_path / "unicode.txt.csv"  # Excel "Unicode Text": UTF-16 with BOM, tab-separated
    utf16.write_bytes(content.replace(",", "\t").encode("utf-16"))
    rows = read_mapped(utf16, _mapping())
    assert rows.records[0]["phone"] == "0912345678" and not rows.unreadable


def test_excel_workbooks_are_refused_clearly(tmp_path):
    path = tmp_path / "export.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(IngestError, match="CSV UTF-8"):
        read_mapped(path, _mapping())


def test_cli_ingest_with_mapping(workspace):
    result = CliRunner().invoke(app, ["ingest", "--json", "--mapping", str(POS),
                                      str(MAPPINGS / "examples" / "pos_vi.csv")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["rows_read"], summary["accepted"], summary["quarantined"]) == (5, 4, 1)
    assert summary["files"][0]["source"] == "pos-kiotviet:pos_vi.csv"


def test_cli_bad_mapping_is_a_one_line_error(workspace, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[columns]\n"A" = "phone_number"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["ingest", "--mapping", str(bad), str(MAPPINGS / "examples" / "pos_vi.csv")])
    assert result.exit_code == 1
    assert "unknown field 'phone_number'" in result.output and "Traceback" not in result.output


def test_title_lines_above_the_header_and_semicolons(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("DANH SÁCH HÓA ĐƠN\nTừ 01/03/2026 đến 31/03/2026\n"
                    "Thời gian;Điện thoại;Ghi chú\n01/03/2026 10:00;0912345678;giao nhanh\n", encoding="utf-8")
    rows = read_mapped(path, _mapping(skip_rows=2))
    assert rows.records == [{"ts": "01/03/2026 10:00", "phone": "0912345678", "channel": "pos",
                             "type": "purchase", "properties": {"Ghi chú": "giao nhanh"}}]
    assert rows.lines == [4]
