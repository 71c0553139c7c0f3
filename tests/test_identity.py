"""Identity resolution: the over-merge guard, stable ids, merge records, explain, export, attributes."""

from __future__ import annotations

import random
import tempfile
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from features.build import build_features
from features.builds import TABLES as BUILD_TABLES
from features.builds import Builds
from features.identity.changes import identity_changes
from features.identity.events import resolve_events, resolved_events
from features.identity.explain import explain, format_explanation
from features.identity.graph import IdentityConfig, customer_id_for, resolve_graph
from features.identity.reports import customer_attributes, set_aside_report
from features.ingest.importer import ingest_file
from features.store import open_store
from nhip.cli import app
from nhip.clock import parse_as_of
from tests.conftest import IDENTITY, TINY_EVENTS, write_jsonl

HOTLINE = "(028) 3930 6868"
HOTLINE_E164 = "+842839306868"
END = parse_as_of("2026-04-01")


def ingest(store: Path, rows: list[dict], name: str) -> Path:
    store.parent.mkdir(parents=True, exist_ok=True)
    ingest_file(write_jsonl(store.parent / f"{name}.jsonl", rows), store)
    return store


def at(day: int, hour: int = 10) -> str:
    return f"2026-03-{day:02d}T{hour:02d}:00:00+07:00"


def resolution_of(store: Path, as_of=END, max_links: int = IDENTITY.max_links):
    with open_store(store) as con:
        return resolve_graph(con, as_of, IdentityConfig(max_links))


def customers_by_value(resolution) -> dict[str, str]:
    return dict(zip(resolution.identity["id_value"], resolution.identity["customer_id"]))


def shoppers(n: int, first_day: int = 1) -> list[dict]:
    """n people, each with a loyalty card, a phone and a Zalo id, then a POS sale with the hotline."""
    rows = []
    for i in range(1, n + 1):
        phone = f"09120000{i:02d}"
        rows += [
            {"event_id": f"own{i}", "ts": at(first_day), "channel": "pos", "type": "purchase",
             "pos_customer_id": f"KH{i}", "phone": phone, "amount": 100000},
            {"event_id": f"zf{i}", "ts": at(first_day, 11), "channel": "zalo_oa", "type": "follow",
             "zalo_user_id": f"z{i}", "phone": phone},
            {"event_id": f"till{i}", "ts": at(first_day + i, 15), "channel": "pos", "type": "purchase",
             "pos_customer_id": f"KH{i}", "phone": HOTLINE, "amount": 200000},
        ]
    return rows


@pytest.fixture
def store(tmp_path) -> Path:
    return tmp_path / "store"


# --- the over-merge guard -------------------------------------------------------------------------------


def test_a_hotline_typed_into_many_orders_is_set_aside_not_merged(store):
    ingest(store, shoppers(7) + [
        {"event_id": "only", "ts": at(20), "channel": "pos", "type": "purchase", "phone": "028 3930 6868",
         "amount": 50000},
    ], "hotline")
    res = resolution_of(store)
    assert HOTLINE_E164 not in set(res.identity["id_value"])
    by_value = customers_by_value(res)
    assert len({by_value[f"KH{i}"] for i in range(1, 8)}) == 7
    for i in range(1, 8):  # each person is still whole
        assert by_value[f"KH{i}"] == by_value[f"z{i}"] == by_value[f"+849120000{i:02d}"]
    row = res.set_aside.set_index("id_value").loc[HOTLINE_E164]
    assert (row["id_type"], row["linked_type"], row["linked"], row["via"]) == (
        "phone", "pos_customer_id", 7, "direct")
    assert row["customers"] == 7

    with open_store(store) as con:
        report = set_aside_report(con, res).set_index("id_value")
        assert report.loc[HOTLINE_E164, "unresolved_events"] == 1
        with resolved_events(con, res) as resolved:
            events = con.execute(f"SELECT event_id, customer_id FROM {resolved.source}").df().set_index("event_id")
    # The till sale's first identifier is the hotline: it still belongs to the card's customer.
    assert events.loc["till3", "customer_id"] == by_value["KH3"]
    assert "only" not in events.index  # nothing but the hotline: nobody's
    assert len(events) == 7 * 3


@pytest.mark.parametrize("people, set_aside", [(5, False), (6, True)])
def test_the_guard_sets_aside_above_the_limit_only(store, people, set_aside):
    ingest(store, shoppers(people), "limit")
    res = resolution_of(store)
    assert (HOTLINE_E164 in set(res.set_aside["id_value"])) is set_aside
    assert res.identity["customer_id"].nunique() == (people if set_aside else 1)
    loose = resolution_of(store, max_links=people)  # the limit is configurable
    assert loose.set_aside.empty


def test_a_junk_email_reaching_many_phones_through_cookies_is_set_aside(store):
    rows = []
    for i in range(1, 7):
        rows += [
            {"event_id": f"id{i}", "ts": at(i), "channel": "web", "type": "identify",
             "anonymous_id": f"a{i}", "email": "Test@Gmail.com"},
            {"event_id": f"buy{i}", "ts": at(i, 12), "channel": "web", "type": "purchase",
             "anonymous_id": f"a{i}", "phone": f"09130000{i:02d}"},
        ]
    ingest(store, rows, "junk")
    res = resolution_of(store)
    row = res.set_aside.set_index("id_value").loc["test@gmail.com"]
    assert (row["linked_type"], row["linked"], row["via"]) == ("phone", 6, "device")
    assert "through shared devices" in row["reason"]
    assert res.identity["customer_id"].nunique() == 6
    off = resolution_of(store, max_links=10**6)
    assert off.identity["customer_id"].nunique() == 1  # what the guard prevents


def test_a_shared_tablet_is_set_aside_and_does_not_take_its_users_emails_with_it(store):
    rows = []
    for i in range(1, 8):
        rows += [
            {"event_id": f"kiosk{i}", "ts": at(i), "channel": "web", "type": "identify",
             "anonymous_id": "counter-tablet", "email": f"u{i}@example.vn"},
            {"event_id": f"pos{i}", "ts": at(i, 12), "channel": "pos", "type": "purchase",
             "email": f"u{i}@example.vn", "phone": f"09140000{i:02d}"},
        ]
    ingest(store, rows, "kiosk")
    res = resolution_of(store)
    assert list(res.set_aside["id_value"]) == ["counter-tablet"]
    assert res.identity["customer_id"].nunique() == 7
    by_value = customers_by_value(res)
    assert by_value["u3@example.vn"] == by_value["+84914000003"]


def test_a_link_seen_after_as_of_merges_nothing_and_the_guard_is_point_in_time_too(store):
    ingest(store, shoppers(7), "pit")
    # By March 4 only three till sales have happened: the hotline is not yet suspicious and glues
    # those three people together (the price of a limit); the other four are still apart.
    early = resolution_of(store, parse_as_of("2026-03-04T23:00"))
    assert early.set_aside.empty
    assert early.identity["customer_id"].nunique() == 5
    assert len({customers_by_value(early)[f"KH{i}"] for i in range(1, 4)}) == 1
    later = resolution_of(store, parse_as_of("2026-03-08T23:00"))
    assert list(later.set_aside["id_value"]) == [HOTLINE_E164]
    # As of March 1 noon the till sales have not happened at all.
    first = resolution_of(store, parse_as_of("2026-03-01T12:00"))
    assert HOTLINE_E164 not in set(first.nodes["id_value"])
    assert first.identity["customer_id"].nunique() == 7


# --- stable ids and merge records ------------------------------------------------------------------------

TWO_THEN_ONE = [
    {"event_id": "a1", "ts": at(1), "channel": "zalo_oa", "type": "message_opened", "zalo_user_id": "z-a"},
    {"event_id": "b1", "ts": at(3), "channel": "pos", "type": "purchase", "pos_customer_id": "KH-b",
     "amount": 90000},
]
LINKS = [
    {"event_id": "l1", "ts": at(5), "channel": "pos", "type": "purchase", "pos_customer_id": "KH-b",
     "phone": "0915 000 001", "amount": 90000},
    {"event_id": "l2", "ts": at(6), "channel": "zalo_oa", "type": "follow", "zalo_user_id": "z-a",
     "phone": "84915000001"},
]


def test_a_merge_keeps_the_older_customer_id(store):
    ingest(store, TWO_THEN_ONE + LINKS, "merge")
    before = customers_by_value(resolution_of(store, parse_as_of("2026-03-04")))
    assert before["z-a"] == customer_id_for("zalo_user_id", "z-a") != before["KH-b"]
    after = resolution_of(store, parse_as_of("2026-03-07")).identity
    assert set(after["customer_id"]) == {before["z-a"]}


def test_builds_record_merges_with_the_link_that_caused_them(workspace, tmp_path):
    store = workspace.store_path
    ingest(store, TWO_THEN_ONE + LINKS, "merge")
    build_features(workspace.build, parse_as_of("2026-03-04"), None, to_qdrant=False)
    build_features(workspace.build, parse_as_of("2026-03-07"), None, to_qdrant=False)
    builds = Builds(workspace.builds)
    merges = builds.changes()
    with open_store(store) as con:
        closing = con.execute("SELECT event_key FROM events WHERE event_id = 'l2'").fetchone()[0]
    assert set(BUILD_TABLES) <= {p.stem for p in builds.open().folder.glob("*.parquet")}
    assert len(merges) == 1
    merge = merges.iloc[0]
    assert merge["kind"] == "merge"
    assert merge["kept_customer_id"] == customer_id_for("zalo_user_id", "z-a")
    assert merge["absorbed_customer_id"] == customer_id_for("pos_customer_id", "KH-b")
    # The Zalo follow on March 6 completed the path z-a — phone — KH-b.
    assert (merge["event_key"], {merge["a_type"], merge["b_type"]}) == (closing, {"phone", "zalo_user_id"})
    assert merge["previous_as_of"] == parse_as_of("2026-03-04")
    shown = CliRunner().invoke(app, ["identity", "merges"])
    assert shown.exit_code == 0, shown.output
    assert f"merge   {merge['absorbed_customer_id']} → {merge['kept_customer_id']}" in shown.output

    # A rebuild with unrelated data records nothing and renames nobody.
    ingest(store, [{"event_id": "x", "ts": at(2), "channel": "sms", "type": "message_sent",
                    "phone": "0987654321"}], "unrelated")
    build_features(workspace.build, parse_as_of("2026-03-07"), None, to_qdrant=False)
    assert len(builds.changes()) == 1
    ids = builds.open().table("identity")["customer_id"].unique()
    assert set(ids) == {customer_id_for("zalo_user_id", "z-a"), customer_id_for("phone", "+84987654321")}


def test_builds_record_splits_when_the_guard_starts_to_apply(workspace):
    store = workspace.store_path
    ingest(store, shoppers(7), "split")
    build_features(workspace.build, parse_as_of("2026-03-04T23:00"), None, to_qdrant=False)
    build_features(workspace.build, parse_as_of("2026-03-09"), None, to_qdrant=False)
    builds = Builds(workspace.builds)
    changes = builds.changes().sort_values("absorbed_customer_id")
    set_aside = builds.open().table("set_aside")["id_value"]
    splits = changes[changes["kind"] == "split"]
    assert len(splits) == 2  # three people glued on March 4 are three customers again
    assert splits["kept_customer_id"].nunique() == 1
    assert splits["detail"].str.startswith("phone set aside: linked to 7 distinct pos_customer_id").all()
    assert list(set_aside) == [HOTLINE_E164]


def test_a_backfill_older_than_a_customer_renames_it_and_says_so(store):
    ingest(store, [{"event_id": "z", "ts": at(5), "channel": "zalo_oa", "type": "follow",
                    "zalo_user_id": "z-old"}], "late")
    first = resolution_of(store)
    ingest(store, [{"event_id": "bf", "ts": "2025-12-01T09:00:00+07:00", "channel": "zalo_oa",
                    "type": "follow", "zalo_user_id": "z-old", "phone": "0916000001"}], "backfill")
    second = resolution_of(store)
    changes = identity_changes(first.identity, second, previous_as_of=END)
    assert list(changes["kind"]) == ["renamed"]
    assert changes.iloc[0]["absorbed_customer_id"] == customer_id_for("zalo_user_id", "z-old")
    # The backfilled event is older than the follow: its phone (first by type on ties) names the customer.
    assert changes.iloc[0]["kept_customer_id"] == customer_id_for("phone", "+84916000001")
    assert set(second.identity["customer_id"]) == {changes.iloc[0]["kept_customer_id"]}


# --- explain, export, attributes ------------------------------------------------------------------------


@pytest.fixture
def tiny(workspace, tmp_path):
    lan_on_zalo = {"event_id": "z9", "ts": "2026-03-02T21:00:00+07:00", "channel": "zalo_oa",
                   "type": "message_replied", "zalo_user_id": "z-lan", "name": "Lan Nguyễn"}
    ingest_file(write_jsonl(tmp_path / "tiny.jsonl", TINY_EVENTS + [lan_on_zalo]), workspace.store_path)
    return workspace.store_path


LAN = {"anon-lan", "lan.nguyen@example.com", "KH001", "+84912345678", "z-lan"}


def test_explain_lists_every_identifier_and_the_events_that_link_them(tiny):
    res = resolution_of(tiny)
    with open_store(tiny) as con:
        ex = explain(con, res, "phone", "+84912345678")
    assert ex.customer_id == customers_by_value(res)["KH001"]
    assert set(ex.identifiers["id_value"]) == LAN
    assert len(ex.steps) == len(LAN) - 1  # a spanning tree rooted at the queried phone
    assert ex.steps[0].parent == ("phone", "+84912345678")
    reached = {step.child[1] for step in ex.steps} | {"+84912345678"}
    assert reached == LAN
    text = "\n".join(format_explanation(ex))
    assert {"w2", "p1", "z1"} <= {step.event["event_id"] for step in ex.steps}
    assert "pos purchase" in text and "zalo_oa follow" in text
    assert "Nguyễn" not in text and "Lan Nguyen" not in text  # no names in an audit print-out


def test_cli_explain_accepts_any_written_form_and_reports_set_aside_ones(tiny, workspace):
    result = CliRunner().invoke(app, ["identity", "explain", "0912 345 678"])
    assert result.exit_code == 0, result.output
    assert "phone +84912345678 → customer c_" in result.output
    assert "KH001" in result.output and "Nguyễn" not in result.output
    by_email = CliRunner().invoke(app, ["identity", "explain", " LAN.Nguyen@example.com"])
    assert by_email.exit_code == 0 and "KH001" in by_email.output
    unknown = CliRunner().invoke(app, ["identity", "explain", "0999 999 999"])
    assert unknown.exit_code == 1 and "no identifier" in unknown.output

    ingest(workspace.store_path, shoppers(6, first_day=10), "hotline")
    shared = CliRunner().invoke(app, ["identity", "explain", "028 3930 6868"])
    assert shared.exit_code == 0, shared.output
    assert "is set aside" in shared.output and "6 customers" in shared.output
    near = CliRunner().invoke(app, ["identity", "explain", "KH3"])
    assert "set aside nearby" in near.output and HOTLINE_E164 in near.output
    suspects = CliRunner().invoke(app, ["identity", "suspects"])
    assert HOTLINE_E164 in suspects.output and "linked to 6 distinct pos_customer_id" in suspects.output


def test_cli_export_writes_the_audit_contract(tiny, tmp_path):
    out = tmp_path / "ids.csv"
    result = CliRunner().invoke(app, ["identity", "export", "--output", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out, dtype=str)
    assert list(frame.columns) == ["customer_id", "id_type", "id_value", "first_seen"]
    assert not frame.duplicated(["customer_id", "id_type", "id_value"]).any()
    assert frame.equals(frame.sort_values(["customer_id", "id_type", "id_value"], ignore_index=True))
    lan = frame[frame["customer_id"] == frame.loc[frame["id_value"] == "KH001", "customer_id"].iloc[0]]
    assert set(lan["id_value"]) == LAN  # normalised: +84…, lower-case email
    assert frame["first_seen"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+07:00").all()
    assert lan.set_index("id_value").loc["anon-lan", "first_seen"] == "2026-03-01T10:00:00+07:00"
    assert frame["customer_id"].nunique() == 2

    early = tmp_path / "early.csv"
    CliRunner().invoke(app, ["identity", "export", "--output", str(early), "--as-of", "2026-03-01T17:00"])
    assert set(pd.read_csv(early)["id_value"]) == {"anon-lan", "lan.nguyen@example.com"}


def test_merging_keeps_every_name_with_its_source_and_time(tiny):
    with open_store(tiny) as con:
        with resolve_events(con, END, IDENTITY) as events:
            attributes = customer_attributes(events)
    names = attributes[attributes["attribute"] == "name"].set_index("value")
    assert {"Nguyễn Thị Lan", "Lan Nguyễn"} <= set(names.index)
    assert names.loc["Nguyễn Thị Lan", "customer_id"] == names.loc["Lan Nguyễn", "customer_id"]
    assert names.loc["Nguyễn Thị Lan", "channel"] == "web"
    assert names.loc["Lan Nguyễn", "channel"] == "zalo_oa"
    assert names.loc["Lan Nguyễn", "source"] == "tiny.jsonl"
    assert names.loc["Lan Nguyễn", "first_seen"] == pd.Timestamp("2026-03-02 14:00:00")
    phones = attributes[attributes["attribute"] == "phone"]
    assert set(phones["value"]) == {"+84912345678"} and set(phones["channel"]) == {"pos", "zalo_oa"}


# --- properties -----------------------------------------------------------------------------------------

TYPES = ("phone", "email", "zalo_user_id", "pos_customer_id", "anonymous_id")


def _value(kind: str, i: int, pool: str) -> str:
    if kind == "phone":
        return f"09{1 if pool == 'old' else 8}{i:07d}"
    if kind == "email":
        return f"{pool}{i}@example.vn"
    return f"{pool}-{kind}-{i}"


@st.composite
def event_lists(draw, pool: str = "old", max_size: int = 25):
    n = draw(st.integers(1, max_size))
    rows = []
    for k in range(n):
        kinds = draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=3, unique=True))
        row = {"event_id": f"{pool}{k}", "ts": f"2026-03-{draw(st.integers(1, 9)):02d}T"
               f"{draw(st.integers(0, 23)):02d}:00:00+07:00", "channel": "web", "type": "identify"}
        for kind in kinds:
            row[kind] = _value(kind, draw(st.integers(0, 5)), pool)
        rows.append(row)
    return rows


def _resolve_rows(*batches: list[dict], as_of=END) -> tuple[pd.DataFrame, pd.DataFrame]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "s.duckdb"
        for i, rows in enumerate(batches):
            if rows:
                ingest(store, rows, f"b{i}")
        res = resolution_of(store, as_of, max_links=2)
    identity = res.identity.sort_values(["id_type", "id_value"], ignore_index=True)
    set_aside = res.set_aside[["id_type", "id_value", "linked_type", "linked", "via"]]
    return identity, set_aside.sort_values(["id_type", "id_value"], ignore_index=True)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=event_lists(), seed=st.integers(0, 10**6), cut=st.integers(0, 25))
def test_resolution_does_not_depend_on_import_order(rows, seed, cut):
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    once = _resolve_rows(rows)
    again = _resolve_rows(shuffled[:cut], shuffled[cut:])  # other order, two files
    pd.testing.assert_frame_equal(once[0], again[0])
    pd.testing.assert_frame_equal(once[1], again[1])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=event_lists(), unrelated=event_lists(pool="new", max_size=10))
def test_unrelated_events_rename_nobody_and_set_nothing_aside(rows, unrelated):
    identity, set_aside = _resolve_rows(rows)
    more, more_set_aside = _resolve_rows(rows, unrelated)
    kept = more.merge(identity, on=["id_type", "id_value"], suffixes=("", "_before"))
    assert len(kept) == len(identity)
    assert (kept["customer_id"] == kept["customer_id_before"]).all()
    new_phones = {"+84" + r["phone"][1:] for r in unrelated if "phone" in r}
    new = more_set_aside["id_value"].str.contains("new") | more_set_aside["id_value"].isin(new_phones)
    pd.testing.assert_frame_equal(more_set_aside[~new].reset_index(drop=True), set_aside)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=event_lists(), day=st.integers(1, 9))
def test_resolution_as_of_a_date_ignores_everything_after_it(rows, day):
    as_of = parse_as_of(f"2026-03-{day:02d}T12:00")
    everything = _resolve_rows(rows, as_of=as_of)
    known = [r for r in rows if pd.Timestamp(r["ts"]).tz_convert("UTC").tz_localize(None) <= as_of]
    if not known:
        assert everything[0].empty
        return
    only_then = _resolve_rows(known, as_of=as_of)
    pd.testing.assert_frame_equal(everything[0], only_then[0])
    pd.testing.assert_frame_equal(everything[1], only_then[1])


def test_resolve_keeps_its_contract(store):
    ingest(store, TINY_EVENTS, "contract")
    with open_store(store) as con:
        identity = resolve_graph(con, END, IDENTITY).identity
    assert list(identity.columns) == ["id_type", "id_value", "customer_id", "first_seen"]
    assert identity["first_seen"].max() <= END + timedelta(0)
