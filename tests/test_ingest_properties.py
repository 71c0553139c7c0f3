"""Every row read is accepted, a duplicate or quarantined, for any input: property-based tests.

Hypothesis writes arbitrary bytes, JSON lines and CSV text to a file, imports it into a fresh store, and
checks the accounting twice: in the report, and in the store itself (events and quarantine rows added).
The reader also must not decide differently depending on how it parsed a line: DuckDB's fast route and
Python's `json` give the same events and the same quarantine for every line.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.ingest import importer, normalise, readers
from features.ingest.importer import (
    ACCEPTED,
    DUPLICATE,
    QUARANTINED,
    import_rows,
    ingest_file,
)
from features.ingest.readers import read_jsonl
from features.ingest.rows import RawRows
from features.schema import CANONICAL_FIELDS
from features.store import open_store, store_exists

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
GOOD = {"ts": "2026-03-01T10:00:00+07:00", "channel": "web", "type": "page_view", "anonymous_id": "a1"}


def _counts(store: Path) -> tuple[int, int]:
    if not store_exists(store):
        return 0, 0
    with open_store(store) as con:
        return (con.execute("SELECT count(*) FROM events").fetchone()[0],
                con.execute("SELECT count(*) FROM quarantine").fetchone()[0])


def _import_and_check(path: Path, store: Path):
    """Import `path` and check the accounting in the report and in the store; return the report."""
    events_before, quarantine_before = _counts(store)
    report = ingest_file(path, store)
    events_after, quarantine_after = _counts(store)
    assert report.rows_read == report.accepted + report.duplicates + report.quarantined
    assert events_after - events_before == report.accepted
    assert quarantine_after - quarantine_before == report.quarantined
    assert sum(report.reasons.values()) == report.quarantined
    return report


def _fresh(tmp_path: Path, name: str) -> Path:
    """A new store path per example (hypothesis reuses `tmp_path` across examples)."""
    _fresh.n = getattr(_fresh, "n", 0) + 1
    return tmp_path / f"{name}-{_fresh.n}.duckdb"


def _non_blank_lines(data: bytes) -> int:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return sum(1 for line in data.split(b"\n") if line.strip())


# --- strategies ------------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
# Values that look like what sources send, so that some rows pass and the normalisers get exercised.
plausible = st.sampled_from([
    "2026-03-01T10:00:00+07:00", "01/03/2026 18:00", "2026-03-01 10:00:00", "1767461182", 1767461182483,
    "web", "POS", "zalo_oa", "page_view", "Purchase", "0912 345 678", "+84 912 345 678", 84912345678,
    "lan@example.com", "not-an-email", "1.200.000đ", "150k", "1,2tr", 150000, -5, "nhiều tiền", "2", 3,
    " ", "", "Nguyễn Thị Lan", "\u3000x\u00a0", "a\u0000b", "\ud800", "x" * 70_000,
])
field_values = plausible | json_values
keys = st.sampled_from([*CANONICAL_FIELDS, "extra", "TS", "utm_source", ""])
records = st.dictionaries(keys, field_values, max_size=8) | st.fixed_dictionaries(
    {**{k: st.just(v) for k, v in GOOD.items()}, "anonymous_id": st.sampled_from(["a1", "a2"]) | plausible},
    optional={"event_id": st.sampled_from(["e1", "e2", 7]), "phone": plausible, "amount": plausible,
              "properties": json_values, "extra": json_values},
)


@st.composite
def json_lines(draw) -> bytes:
    """A JSONL file: events written several ways, other JSON values, broken lines and blank lines."""
    out = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["record", "record", "record", "value", "broken", "blank", "bytes"]))
        if kind == "record":
            text = json.dumps(draw(records), ensure_ascii=draw(st.booleans()),
                              separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])))
            line = text.encode("utf-8", "surrogatepass")
        elif kind == "value":
            line = json.dumps(draw(json_values)).encode()
        elif kind == "broken":
            text = json.dumps(draw(records), ensure_ascii=False)
            cut = draw(st.integers(0, len(text)))
            line = (text[:cut] + draw(st.sampled_from(["", ",}", "\x00", "}", "NaN", "nan"]))).encode(
                "utf-8", "surrogatepass")
        elif kind == "blank":
            line = draw(st.sampled_from([b"", b"  ", b"\t", b"\r"]))
        else:
            line = draw(st.binary(max_size=30))
        out.append(line.replace(b"\n", b"\\n"))
    ending = draw(st.sampled_from([b"\n", b"\r\n"]))
    bom = draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))
    return bom + ending.join(out) + draw(st.sampled_from([b"", ending]))


@st.composite
def csv_files(draw) -> bytes:
    """A CSV file: a header of canonical and other names, rows of any cells, sometimes the wrong count."""
    header = draw(st.lists(st.sampled_from([*CANONICAL_FIELDS, "extra", "ts"]), min_size=0, max_size=8))
    cells = st.one_of(plausible.map(str), st.text(max_size=10), st.sampled_from(["", '"', "a,b", "x\ny", "\r"]))
    rows = draw(st.lists(st.lists(cells, max_size=len(header) + 2), max_size=8))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(header)
    writer.writerows(rows)
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1258", "latin-1"]))
    return text.getvalue().encode(encoding, "replace")


# --- the invariant ---------------------------------------------------------------------------------------


@SETTINGS
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".jsonl", ".csv"]))
def test_any_bytes_are_accounted_for(tmp_path, data, suffix):
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(data)
    report = _import_and_check(path, _fresh(tmp_path, "bytes"))
    if suffix == ".jsonl":
        assert report.rows_read == _non_blank_lines(data)


@SETTINGS
@given(data=json_lines())
def test_any_json_lines_are_accounted_for_and_a_second_import_adds_nothing(tmp_path, data):
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    store = _fresh(tmp_path, "jsonl")
    first = _import_and_check(path, store)
    assert first.rows_read == _non_blank_lines(data)
    second = _import_and_check(path, store)
    assert second.accepted == 0
    assert second.duplicates == first.accepted + first.duplicates
    assert second.quarantined == first.quarantined


@SETTINGS
@given(data=csv_files())
def test_any_csv_is_accounted_for(tmp_path, data):
    path = tmp_path / "events.csv"
    path.write_bytes(data)
    _import_and_check(path, _fresh(tmp_path, "csv"))


@SETTINGS
@given(data=json_lines())
def test_duckdb_and_python_json_routes_agree(tmp_path, data, monkeypatch):
    """Forcing every line through Python's `json` stores exactly the same events and quarantine."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    fast, slow = _fresh(tmp_path, "fast"), _fresh(tmp_path, "slow")
    ingest_file(path, fast, source="s")
    duckdb_route = readers._parse_plain_lines
    with monkeypatch.context() as patch:
        patch.setattr(readers, "_parse_plain_lines", lambda lines: duckdb_route(lines[:0]))
        ingest_file(path, slow, source="s")
    assert _tables(fast) == _tables(slow)


def _tables(store: Path):
    with open_store(store) as con:
        return (con.execute("SELECT * EXCLUDE (ingested_at) FROM events ORDER BY event_key").fetchall(),
                con.execute("SELECT line, raw, reason FROM quarantine ORDER BY line").fetchall())


@SETTINGS
@given(batch=st.lists(records, max_size=10))
def test_store_rows_gives_one_outcome_per_row_in_order(tmp_path, batch):
    """The collector's path: dicts in, one outcome per row, consistent with the report."""
    rows = RawRows(batch, list(range(1, len(batch) + 1)), [json.dumps(r, default=str) for r in batch], [])
    report, outcomes = import_rows(_fresh(tmp_path, "batch"), rows, "collector", outcomes=True)
    assert [o.line for o in outcomes] == list(range(1, len(batch) + 1))
    statuses = [o.status for o in outcomes]
    assert (statuses.count(ACCEPTED), statuses.count(DUPLICATE), statuses.count(QUARANTINED)) == (
        report.accepted, report.duplicates, report.quarantined)
    assert all((o.reason is None) == (o.status != QUARANTINED) for o in outcomes)


# --- the cases the issue names ---------------------------------------------------------------------------


def _line(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode() + b"\n"


def _quarantine(store: Path) -> list[tuple]:
    with open_store(store) as con:
        return con.execute("SELECT line, raw, reason FROM quarantine ORDER BY line").fetchall()


def test_another_encoding_is_quarantined_row_by_row_and_shown_with_replacement_characters(tmp_path):
    path = tmp_path / "cp1258.jsonl"
    path.write_bytes(_line({**GOOD, "name": "Lê Hà"}).decode().encode("cp1258") + _line(GOOD))
    report = _import_and_check(path, tmp_path / "s.duckdb")
    assert (report.accepted, report.quarantined) == (1, 1)
    [(line, raw, reason)] = _quarantine(tmp_path / "s.duckdb")
    assert (line, reason) == (1, "not valid UTF-8") and "\ufffd" in raw and '"channel": "web"' in raw


def test_a_cp1258_csv_quarantines_only_its_non_utf8_rows(tmp_path):
    path = tmp_path / "cp1258.csv"
    text = ("ts,channel,type,anonymous_id,name\n"
            "2026-03-01 10:00,web,page_view,a1,Hà\n"
            "2026-03-01 10:00,web,page_view,a2,Lan\n")
    path.write_bytes(text.encode("cp1258"))
    report = _import_and_check(path, tmp_path / "s.duckdb")
    assert (report.accepted, report.quarantined, dict(report.reasons)) == (1, 1, {"not valid UTF-8": 1})
    assert _quarantine(tmp_path / "s.duckdb")[0][:2] == (2, "2026-03-01 10:00,web,page_view,a1,H\ufffd")


def test_json_values_that_are_not_objects_are_quarantined(tmp_path):
    path = tmp_path / "values.jsonl"
    path.write_bytes(b'[1, 2]\n42\n"text"\nnull\n' + _line(GOOD))
    report = _import_and_check(path, tmp_path / "s.duckdb")
    assert report.rows_read == 5 and report.accepted == 1
    assert dict(report.reasons) == {"not a JSON object": 4}


def test_huge_fields_are_quarantined_with_the_field_name(tmp_path):
    path = tmp_path / "huge.jsonl"
    path.write_bytes(_line({**GOOD, "name": "x" * 2**20}) + _line({**GOOD, "properties": {"b": "y" * 2**17}})
                     + _line({**GOOD, "anonymous_id": "a2", "name": "z" * 60_000}))
    report = _import_and_check(path, tmp_path / "s.duckdb")
    assert report.accepted == 1
    assert dict(report.reasons) == {"field too long: name": 1, "field too long: properties": 1}
    assert all(len(raw) < importer.MAX_RAW_CHARS + 100 for _, raw, _ in _quarantine(tmp_path / "s.duckdb"))


def test_a_huge_csv_cell_costs_only_its_row(tmp_path):
    path = tmp_path / "huge.csv"
    path.write_bytes(b"ts,channel,type,anonymous_id,name\n2026-03-01 10:00,web,page_view,a1," + b"x" * 2**20
                     + b"\n2026-03-01 10:00,web,page_view,a2,Lan\n")
    report = _import_and_check(path, tmp_path / "s.duckdb")
    assert (report.rows_read, report.accepted) == (2, 1)
    assert next(iter(report.reasons)).startswith("field too long")


def test_nul_bytes_bom_and_crlf(tmp_path):
    path = tmp_path / "odd.jsonl"
    nul_inside = json.dumps({**GOOD, "anonymous_id": "a\u0000b"}).encode()
    path.write_bytes(b"\xef\xbb\xbf" + nul_inside + b"\r\n" + b'{"ts": \x00}\r\n'
                     + _line({**GOOD, "anonymous_id": "c"}))
    report = _import_and_check(path, tmp_path / "s.duckdb")
    assert (report.rows_read, report.accepted, dict(report.reasons)) == (3, 2, {"not valid JSON": 1})
    assert _quarantine(tmp_path / "s.duckdb")[0][1] == '{"ts": \x00}'


@pytest.mark.parametrize("name, data", [("empty.jsonl", b""), ("empty.csv", b""), ("blank.jsonl", b"\n\r\n  \n"),
                                        ("header.csv", b"ts,channel,type,phone\r\n")])
def test_empty_files_read_no_rows(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    report = _import_and_check(path, tmp_path / "s.duckdb")
    assert report.as_dict()["rows_read"] == 0 and report.quarantined == 0


def test_parquet_with_wrong_column_types_is_quarantined_per_row(tmp_path):
    path = tmp_path / "typed.parquet"
    pq.write_table(pa.table({
        "ts": ["2026-03-01T10:00:00+07:00", "2026-03-01T11:00:00+07:00", "2026-03-01T12:00:00+07:00"],
        "channel": ["web", "web", "web"],
        "type": ["page_view", "page_view", "page_view"],
        "anonymous_id": pa.array([b"a1", b"\xff\xfe", b"a3"]),
        "amount": [[1], None, None],
        "quantity": [None, None, True],
    }), path)
    report = _import_and_check(path, tmp_path / "s.duckdb")
    assert report.rows_read == 3 and report.accepted == 0
    assert dict(report.reasons) == {"not text or a number: amount": 1, "not valid UTF-8: anonymous_id": 1,
                                    "not text or a number: quantity": 1}


def test_parquet_typed_columns_are_read_as_values(tmp_path):
    path = tmp_path / "typed.parquet"
    pq.write_table(pa.table({
        "ts": pa.array([1767461182483, 1767461182484], pa.int64()),
        "channel": ["pos", "pos"], "type": ["purchase", "purchase"],
        "phone": pa.array([912345678, 912345679], pa.int64()),
        "amount": [150000.0, 99.5], "store": ["Q1", "Q3"],
    }), path)
    report = _import_and_check(path, tmp_path / "s.duckdb")
    assert report.accepted == 2
    with open_store(tmp_path / "s.duckdb") as con:
        rows = con.execute("SELECT phone, amount, properties FROM events ORDER BY amount").fetchall()
    assert rows == [("+84912345679", 99.5, '{"store": "Q3"}'), ("+84912345678", 150000.0, '{"store": "Q1"}')]


def test_an_unreadable_parquet_file_is_an_error_and_stores_nothing(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(readers.IngestError):
        ingest_file(path, tmp_path / "s.duckdb")
    assert _counts(tmp_path / "s.duckdb") == (0, 0)


def test_python_whitespace_is_what_str_strip_removes():
    assert set(normalise._PY_WHITESPACE) == {chr(c) for c in range(0x110000) if chr(c).isspace()}


def test_read_jsonl_sends_only_plain_lines_to_duckdb(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(_line(GOOD) + _line({**GOOD, "amount": 1.5}) + _line({**GOOD, "extra": 1})
                     + _line({**GOOD, "properties": {"os": "ios"}}) + b'{"ts": 1, "ts": 2}\n')
    rows = read_jsonl(path)
    assert list(rows.columns.lines) == [1, 4]
    assert rows.lines == [2, 3, 5]
    assert rows.columns.frame["properties"].tolist() == [None, '{"os": "ios"}']
