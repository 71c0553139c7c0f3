"""Consent in every decision, as a property over random consent histories on a real store.

Nobody without consent for a channel is in an audience's consent column, a plan's sends or an export
for that channel, including when the withdrawal arrived after the feature build; erased people never
come back, even when their phone is imported again.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import build_features
from features.erasure import erase
from features.ingest.importer import ingest_file
from nhip.clock import parse_as_of
from nhip.settings import Settings
from serving.activation.audiences import AudienceBook
from serving.activation.audit import export_members
from serving.activation.context import open_context
from serving.activation.planner import plan_campaign
from serving.activation.policy import PLAN_CHANNELS, load_policy
from tests.conftest import QUIET, write_jsonl

AS_OF = "2026-03-25"
START, END = pd.Timestamp("2026-03-26T08:00:00+07:00"), pd.Timestamp("2026-03-28T08:00:00+07:00")
PEOPLE = [{"phone": f"+8491234567{i}", "email": f"khach{i}@example.vn", "zalo_user_id": f"z-{i}",
           "pos_customer_id": f"KH{i}"} for i in range(3)]
GRANT = {"email": "subscribe", "sms": "consent_granted", "zalo_oa": "follow", "zalo_zns": "consent_granted"}
REVOKE = {"email": "unsubscribe", "sms": "consent_revoked", "zalo_oa": "unfollow", "zalo_zns": "consent_revoked"}


def _base_events() -> list[dict]:
    """Each person buys once at the POS, with every identifier, so each is one customer."""
    return [{"event_id": f"buy{i}", "ts": "2026-03-01T10:00:00+07:00", "channel": "pos", "type": "purchase",
             "amount": 100000, **person} for i, person in enumerate(PEOPLE)]


def _consent_event(n: int, person: int, channel: str, grant: bool, day: int) -> dict:
    address = {"email": "email", "sms": "phone", "zalo_oa": "zalo_user_id", "zalo_zns": "phone"}[channel]
    return {"event_id": f"c{n}", "ts": f"2026-03-{day:02d}T12:00:00+07:00", "channel": channel,
            "type": (GRANT if grant else REVOKE)[channel], address: PEOPLE[person][address]}


_changes = st.lists(st.tuples(st.integers(0, 2), st.sampled_from(PLAN_CHANNELS), st.booleans(), st.integers(2, 30)),
                    max_size=14)


def _expected(changes) -> dict[tuple[int, str], bool]:
    """Consent now: the latest event up to the build (a revocation wins a tie), then any withdrawal since."""
    last: dict[tuple[int, str], tuple[int, bool]] = {}
    revoked_after = set()
    for person, channel, grant, day in changes:
        if day >= 25:  # after the build's as-of (2026-03-25 00:00): only withdrawals count before the next
            if not grant:
                revoked_after.add((person, channel))
            continue
        before = last.get((person, channel))
        if before is None or day > before[0] or (day == before[0] and not grant):
            last[(person, channel)] = (day, grant)
    return {(p, c): (p, c) in last and last[(p, c)][1] and (p, c) not in revoked_after
            for p in range(3) for c in PLAN_CHANNELS}


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=_changes)
def test_nobody_without_consent_is_in_an_audience_plan_or_export(changes):
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        settings_ = Settings(home=home)
        settings_.ensure_dirs()
        before = [_consent_event(n, *c) for n, c in enumerate(changes) if c[3] < 25]
        after = [_consent_event(n, *c) for n, c in enumerate(changes) if c[3] >= 25]
        ingest_file(write_jsonl(Path(tmp) / "a.jsonl", _base_events() + before), settings_.store_path)
        build_features(settings_.build, parse_as_of(AS_OF), None, to_qdrant=False)
        if after:  # arrive after the build, before the next one
            ingest_file(write_jsonl(Path(tmp) / "b.jsonl", after), settings_.store_path)
        expected = _expected(changes)
        book = AudienceBook(settings_.activation.root)
        book.create("everyone", "n_purchases >= 1")
        with open_context(settings_.activation) as context:
            customer = {context.identity.set_index(["id_type", "id_value"]).loc[("email", p["email"]),
                                                                                 "customer_id"]: i
                        for i, p in enumerate(PEOPLE)}
            members = book.members("everyone", context)
            assert set(members) == set(customer)
            frame = context.frame
            for cid, person in customer.items():
                for channel in PLAN_CHANNELS:
                    assert bool(frame.at[cid, f"consent_{channel}"]) == expected[(person, channel)], (person, channel)
            plan = plan_campaign(context, members, PLAN_CHANNELS, START, END, load_policy(), QUIET)
            for row in plan.sends.itertuples():
                assert expected[(customer[row.customer_id], row.channel)]
            for channel in PLAN_CHANNELS:
                out = Path(tmp) / f"{channel}.csv"
                export_members(settings_.activation.root, context, "everyone", members, channel, "csv", out, None,
                               "test")
                exported = pd.read_csv(out, dtype=str)["customer_id"]
                assert {customer[c] for c in exported} == {p for p in range(3) if expected[(p, channel)]}


def test_erased_people_never_come_back(workspace, tmp_path):
    events = _base_events() + [_consent_event(10 + i, i, "email", True, 3) for i in range(3)]
    ingest_file(write_jsonl(tmp_path / "a.jsonl", events), workspace.store_path)
    build_features(workspace.build, parse_as_of(AS_OF), None, to_qdrant=False)
    report = erase(workspace.store_path, workspace.builds, workspace.identity, workspace.vectors, "phone",
                   PEOPLE[0]["phone"])
    workspace.activation.suppression.add(report.erased_ids)
    # The shop's next export still holds the person: the same identifiers arrive again, with consent.
    ingest_file(write_jsonl(tmp_path / "b.jsonl", [{**events[0], "event_id": "again"}, {**events[3],
                                                   "event_id": "again-c"}]), workspace.store_path)
    build_features(workspace.build, parse_as_of("2026-03-26"), None, to_qdrant=False)
    book = AudienceBook(workspace.activation.root)
    book.create("everyone", "n_purchases >= 1")
    with open_context(workspace.activation) as context:
        back = context.identity.loc[context.identity["id_value"] == PEOPLE[0]["email"], "customer_id"]
        assert len(back) == 1  # the build has them again, from the new events …
        assert back.iloc[0] not in book.members("everyone", context)  # … but no decision does
        assert back.iloc[0] not in context.frame.index
        others = {c for c in context.frame.index}
        assert len(others) == 2
        assert context.suppression.path.read_text().count(PEOPLE[0]["email"]) == 0  # digests, not identifiers
