"""Audience exports for Meta, Google, Zalo ZNS and plain CSV (serving.activation.exports).

Every expected hash is computed here from the raw identifier with hashlib, never with the module's helpers,
so a normalisation slip in the module cannot hide behind the same slip in the test.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.activation.exports import (
    FORMATS,
    ColumnRef,
    ExportError,
    ZnsTemplate,
    csv_rows,
    export_rows,
    google_rows,
    load_zns_template,
    meta_rows,
    normalise_email,
    phone_digits,
    phone_e164,
    split_vietnamese_name,
    without_diacritics,
    zns_rows,
)

EXAMPLE_TEMPLATE = Path(__file__).resolve().parents[1] / "serving" / "activation" / "zns_template.example.toml"


def h(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def members(*rows: dict) -> pd.DataFrame:
    base = {"customer_id": None, "email": None, "phone": None, "name": None}
    return pd.DataFrame([{**base, **row} for row in rows])


DUC = {"customer_id": "c1", "email": " An.Nguyen@Gmail.com ", "phone": "0912 345 678", "name": "Nguyễn Văn Đức"}


# -- identifiers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    (" An.Nguyen@Gmail.com ", "an.nguyen@gmail.com"),
    ("a@x.vn|b@y.vn", "a@x.vn"),
    (" | B@Y.vn", "b@y.vn"),
    ("not-an-email", None),
    ("", None),
    (None, None),
    (float("nan"), None),
])
def test_emails_are_trimmed_lowercased_and_the_first_of_several(raw, expected):
    assert normalise_email(raw) == expected


@pytest.mark.parametrize("raw", ["0912 345 678", "+84912345678", "84912345678", "(+84) 912.345.678",
                                 "+84 912 345 678", "0912345678|0987654321", 912345678])
def test_phones_take_meta_and_google_forms(raw):
    assert phone_digits(raw) == "84912345678"
    assert phone_e164(raw) == "+84912345678"


@pytest.mark.parametrize("raw", ["+1 415 555 2671", "12345", "call me", "", None])
def test_foreign_or_malformed_phones_are_no_phone(raw):
    assert phone_digits(raw) is None and phone_e164(raw) is None


def test_diacritics_go_and_d_with_stroke_becomes_d():
    assert without_diacritics("Nguyễn Văn Đức") == "Nguyen Van Duc"
    assert without_diacritics("đặng thị ngọc ánh") == "dang thi ngoc anh"


def test_names_split_family_name_first_given_name_last():
    assert split_vietnamese_name("Nguyễn Văn An") == ("An", "Nguyễn")
    assert split_vietnamese_name("  Trần   Thị Minh  Khai ") == ("Khai", "Trần")
    assert split_vietnamese_name("Lê Hoa") == ("Hoa", "Lê")
    assert split_vietnamese_name("Hoa") == ("Hoa", None)
    assert split_vietnamese_name("Phạm Văn Đức.|Other Name") == ("Đức", "Phạm")
    assert split_vietnamese_name("") == (None, None)
    assert split_vietnamese_name(None) == (None, None)


# -- Meta ------------------------------------------------------------------------------------------------


def test_meta_hashes_each_identifier_by_metas_rules():
    out = meta_rows(members(DUC))
    assert list(out.columns) == ["email", "phone", "fn", "ln", "country", "extern_id"]
    assert out.iloc[0].to_dict() == {
        "email": h("an.nguyen@gmail.com"),
        "phone": h("84912345678"),
        "fn": h("duc"),
        "ln": h("nguyen"),
        "country": h("vn"),
        "extern_id": h("c1"),
    }


def test_meta_uses_the_first_of_several_values_and_leaves_missing_ones_empty():
    out = meta_rows(members({"customer_id": "c2", "email": "Mai@Shop.vn|mai2@shop.vn",
                             "phone": "+84 987 654 321|0912345678"},
                            {"customer_id": "c3", "phone": "0912345678"}))
    assert out["email"].tolist() == [h("mai@shop.vn"), ""]
    assert out["phone"].tolist() == [h("84987654321"), h("84912345678")]
    assert out["fn"].tolist() == ["", ""] and out["ln"].tolist() == ["", ""]
    assert out["extern_id"].tolist() == [h("c2"), h("c3")]


def test_meta_and_google_leave_out_members_without_email_or_phone():
    rows = members(DUC, {"customer_id": "c9", "email": "nope", "phone": "12", "name": "Võ Thị Sáu"},
                   {"customer_id": "c10", "name": "Lý Thường Kiệt"})
    for out in (meta_rows(rows), google_rows(rows)):
        assert len(out) == 1
    assert meta_rows(rows)["extern_id"].tolist() == [h("c1")]
    assert meta_rows(rows.iloc[1:]).empty and list(meta_rows(rows.iloc[1:]).columns)[0] == "email"


# -- Google ----------------------------------------------------------------------------------------------


def test_google_hashes_email_e164_and_names_with_diacritics_country_plain():
    out = google_rows(members(DUC))
    assert list(out.columns) == ["Email", "Phone", "First Name", "Last Name", "Country", "Zip"]
    assert out.iloc[0].to_dict() == {
        "Email": h("an.nguyen@gmail.com"),
        "Phone": h("+84912345678"),
        "First Name": h("đức"),
        "Last Name": h("nguyễn"),
        "Country": "VN",
        "Zip": "",
    }


def test_google_names_hash_the_same_whichever_unicode_form_they_came_in():
    decomposed = {**DUC, "name": "NGUYE\u0302\u0303N Văn Đức"}  # NFD and capitals, as some POS write it
    assert google_rows(members(decomposed))["Last Name"].tolist() == [h("nguyễn")]


# -- CSV -------------------------------------------------------------------------------------------------


def test_csv_keeps_the_identifiers_as_stored_and_drops_other_columns():
    rows = members({**DUC, "score": 0.9}, {"customer_id": "c2"})
    out = csv_rows(rows)
    assert list(out.columns) == ["customer_id", "email", "phone", "name"]
    assert out.iloc[0].to_dict() == {k: DUC[k] for k in ("customer_id", "email", "phone", "name")}
    assert out["email"].isna().tolist() == [False, True]


# -- ZNS -------------------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "template.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_template_loads():
    template = load_zns_template(EXAMPLE_TEMPLATE)
    assert template.template_id == "231569"
    assert template.params["customer_name"] == ColumnRef("name", "Quý khách")
    assert template.params["voucher"] == "NHIP10"


def test_zns_rows_fill_the_template_from_member_columns(tmp_path):
    template = load_zns_template(write(tmp_path, 'template_id = "231569"\n[params]\n'
                                                 'customer_name = { column = "name" }\nvoucher = "NHIP10"\n'
                                                 'points = { column = "points" }\n'))
    rows = members({**DUC, "points": 1200.0}, {"customer_id": "c2", "phone": "+84987654321",
                                                "name": "Trần  Thị Mai |Mai", "points": 35})
    out = zns_rows(rows, template)
    assert list(out.columns) == ["phone", "template_id", "template_data", "tracking_id"]
    assert out["phone"].tolist() == ["84912345678", "84987654321"]
    assert out["template_id"].tolist() == ["231569", "231569"]
    assert out["tracking_id"].tolist() == ["c1", "c2"]
    assert out["template_data"][0] == '{"customer_name":"Nguyễn Văn Đức","voucher":"NHIP10","points":"1200"}'
    assert json.loads(out["template_data"][1]) == {"customer_name": "Trần Thị Mai", "voucher": "NHIP10",
                                                   "points": "35"}


def test_zns_leaves_out_members_it_cannot_send_to(tmp_path):
    template = ZnsTemplate("1", {"customer_name": ColumnRef("name")})
    rows = members(DUC,
                   {"customer_id": "no-phone", "email": "a@x.vn", "name": "Lê Hoa"},
                   {"customer_id": "landline", "phone": "028 3822 1234", "name": "Lê Hoa"},
                   {"customer_id": "same-phone", "phone": "+84912345678", "name": "Lê Hoa"},
                   {"customer_id": "no-name", "phone": "0987654321"})
    assert zns_rows(rows, template)["tracking_id"].tolist() == ["c1"]
    with_default = ZnsTemplate("1", {"customer_name": ColumnRef("name", "Quý khách")})
    out = zns_rows(rows, with_default)
    assert out["tracking_id"].tolist() == ["c1", "no-name"]
    assert json.loads(out["template_data"][1]) == {"customer_name": "Quý khách"}


def test_zns_refuses_a_parameter_naming_no_member_column():
    template = ZnsTemplate("1", {"customer_name": ColumnRef("full_name")}, "t.toml")
    with pytest.raises(ExportError, match=r"t\.toml.*customer_name → 'full_name'.*customer_id, email"):
        zns_rows(members(DUC), template)


@pytest.mark.parametrize("text, message", [
    ('[params]\nvoucher = "X"\n', "template_id is missing"),
    ('template_id = ""\n', "template_id must be"),
    ('template_id = true\n', "template_id must be"),
    ('template_id = "1"\ntemplate = "x"\n', r"unknown keys \['template'\]"),
    ('template_id = "1"\nparams = "x"\n', "params must be a table"),
    ('template_id = "1"\n[params]\nname = { col = "name" }\n', r"unknown keys \['col'\]"),
    ('template_id = "1"\n[params]\nname = { default = "x" }\n', "column must name a member column"),
    ('template_id = "1"\n[params]\nflag = true\n', "must be text, a number"),
    ('template_id = "1"\n[params\n', "not valid TOML"),
])
def test_template_files_with_mistakes_say_what_is_wrong(tmp_path, text, message):
    with pytest.raises(ExportError, match=message):
        load_zns_template(write(tmp_path, text))


def test_a_missing_template_file_is_named(tmp_path):
    with pytest.raises(ExportError, match="no ZNS template file at .*absent.toml"):
        load_zns_template(tmp_path / "absent.toml")


def test_numeric_template_ids_and_constants_become_text(tmp_path):
    template = load_zns_template(write(tmp_path, "template_id = 231569\n[params]\namount = 50000\n"))
    assert template == ZnsTemplate("231569", {"amount": "50000"}, str(tmp_path / "template.toml"))


# -- dispatch --------------------------------------------------------------------------------------------


def test_export_rows_dispatches_and_refuses_what_it_cannot_do():
    rows = members(DUC)
    assert FORMATS == ("csv", "meta", "google", "zns")
    pd.testing.assert_frame_equal(export_rows(rows, "meta"), meta_rows(rows))
    pd.testing.assert_frame_equal(export_rows(rows, "google"), google_rows(rows))
    pd.testing.assert_frame_equal(export_rows(rows, "csv"), csv_rows(rows))
    template = ZnsTemplate("1", {"voucher": "NHIP10"})
    pd.testing.assert_frame_equal(export_rows(rows, "zns", template), zns_rows(rows, template))
    with pytest.raises(ExportError, match="unknown export format 'tiktok'; use one of: csv, meta, google, zns"):
        export_rows(rows, "tiktok")
    with pytest.raises(ExportError, match="needs a ZNS template"):
        export_rows(rows, "zns")
    with pytest.raises(ExportError, match="zns export only"):
        export_rows(rows, "meta", template)
    with pytest.raises(ExportError, match=r"missing \['name'\]"):
        export_rows(rows.drop(columns="name"), "google")


# -- property: every written form of a mobile number meets in one value ----------------------------------

MOBILE = st.builds(lambda first, rest: first + rest, st.sampled_from("35789"),
                   st.text(alphabet="0123456789", min_size=8, max_size=8))


def written_forms(nsn: str) -> list[str]:
    a, b, c = nsn[:3], nsn[3:6], nsn[6:]
    return ["0" + nsn, f"+84 {a} {b} {c}", "84" + nsn, f"(+84) {a}.{b}.{c}", f"0{a} {b} {c}", f"+84{nsn}"]


@settings(max_examples=150, deadline=None, database=None)
@given(MOBILE)
def test_every_written_form_of_a_mobile_number_gives_one_value(nsn):
    forms = written_forms(nsn)
    assert {phone_digits(f) for f in forms} == {"84" + nsn}
    assert {phone_e164(f) for f in forms} == {"+84" + nsn}
