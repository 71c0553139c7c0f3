"""Activation decisions on the trained demo: audiences, the contact policy, plans and exports.

The planner's guarantees are properties: for random policies, send histories and budgets, a plan never
breaks the policy it was made under, never sends to someone without consent, and every member left out
has a reason.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from features.build import build_features
from features.builds import Builds
from nhip.cli import app
from nhip.clock import parse_as_of
from nhip.settings import Settings
from serving.activation.audiences import AudienceBook, AudienceError
from serving.activation.context import open_context
from serving.activation.planner import REASONS, plan_campaign
from serving.activation.policy import (
    PLAN_CHANNELS,
    ChannelPolicy,
    ContactPolicy,
    Hours,
    PolicyError,
    load_policy,
    parse_policy,
    violations,
)
from serving.activation.rules import RuleError
from tests.conftest import QUIET
from tests.registry_demo import SEND_TIME_AS_OF, clone_home

START = pd.Timestamp("2026-08-20T08:00:00+07:00")
END = pd.Timestamp("2026-08-23T08:00:00+07:00")
NO_HISTORY = pd.DataFrame({"customer_id": pd.Series(dtype=object), "channel": pd.Series(dtype=object),
                           "ts": pd.Series(dtype="datetime64[ns]")})
NO_OA = pd.Series(dtype="datetime64[ns]")


@pytest.fixture(scope="module")
def shop(trained_demo, tmp_path_factory):
    """A clone of the trained demo with a feature build (vectors in its snapshot)."""
    settings = Settings(home=clone_home(trained_demo.home, tmp_path_factory.mktemp("activation") / "home"))
    build_features(settings.build, parse_as_of(SEND_TIME_AS_OF), settings.vectors, to_qdrant=False)
    return settings


@pytest.fixture(scope="module")
def context(shop):
    with open_context(shop.activation) as ctx:
        yield ctx


def _env(shop) -> dict[str, str]:
    return {"NHIP_HOME": str(shop.home), "HF_HUB_OFFLINE": "1", "NHIP_ACTOR": "test-marketer"}


# -- the policy ----------------------------------------------------------------------------------------------


def test_the_default_policy_holds_the_vietnamese_rules():
    policy = load_policy()
    sms, zns, oa = policy.channel("sms"), policy.channel("zalo_zns"), policy.channel("zalo_oa")
    assert sms.caps["per_day"] == 3 and sms.label == "[QC]" and str(sms.allowed_hours) == "07:00-22:00"
    assert zns.caps == {"per_day": 1, "per_month": 30} and zns.daily_quota == 5000 and 200 <= zns.cost_vnd <= 300
    assert oa.free_window_hours == 48 and oa.free_window_messages == 8
    assert set(policy.channels) == set(PLAN_CHANNELS)


@pytest.mark.parametrize("text, says", [
    ('[channels.email]\ncost_vnd = 10\nallowed_hours = "22:00-07:00"', "ends before it starts"),
    ('[channels.email]\ncost_vnd = 10\nallowed_hours = "7h-22h"', "allowed_hours must look like"),
    ('[channels.email]\ncost_vnd = -1\nallowed_hours = "07:00-22:00"', "cost_vnd must be a number ≥ 0"),
    ('[channels.email]\ncost_vnd = 10\nallowed_hours = "07:00-22:00"\nper_dya = 1', "unknown keys ['per_dya']"),
    ('[channels.pigeon]\ncost_vnd = 10\nallowed_hours = "07:00-22:00"', "unknown channel 'pigeon'"),
    ('[channels.sms]\nallowed_hours = "07:00-22:00"', "cost_vnd is required"),
    ("[channels.sms", "is not valid TOML"),
    ("", "defines no channel"),
])
def test_a_policy_that_cannot_be_used_says_where(text, says):
    with pytest.raises(PolicyError) as error:
        parse_policy(text, "shop.toml")
    assert says in str(error.value) and "shop.toml" in str(error.value)


def test_violations_name_each_kind_of_break():
    rule = ChannelPolicy(cost_vnd=800, allowed_hours=Hours.parse("07:00-22:00", "t"), caps={"per_day": 1},
                         label="[QC]", daily_quota=1)
    policy = ContactPolicy({"sms": rule}, {"per_week": 2}, "t")
    plan = pd.DataFrame({
        "customer_id": ["a", "b", "c"], "channel": ["sms"] * 3, "cost_vnd": [800.0] * 3,
        "send_at": ["2026-08-20T23:00:00+07:00", "2026-08-21T09:00:00+07:00", "2026-08-21T10:00:00+07:00"],
        "label": ["[QC]", "[QC]", None]})
    history = pd.DataFrame({"customer_id": ["b", "c", "c"], "channel": ["sms", "email", "email"],
                            "ts": pd.to_datetime(["2026-08-21 00:00", "2026-08-17 00:00", "2026-08-18 00:00"])})
    found = violations(plan, policy, history, budget_vnd=1000)
    text = "\n".join(found)
    assert "a on sms at 2026-08-20T23:00:00+07:00: outside 07:00-22:00" in text
    assert "b on sms" in text and "over per_day = 1" in text  # an SMS 02:00 UTC = 09:00 local 8 h before
    assert "c on sms" in text and "missing the label [QC]" in text and "over per_week = 2" in text
    assert "over the daily quota 1" in text and "over the budget" in text
    assert violations(plan.iloc[[1]].assign(customer_id="z"), policy, history, 800) == []


# -- audiences -----------------------------------------------------------------------------------------------


def test_an_audience_is_its_rule_over_the_documented_columns(shop, context):
    book = AudienceBook(shop.activation.root)
    book.create("high-recent", "propensity_bucket == 'High' and recency_days <= 90", replace=True)
    members = book.members("high-recent", context)
    frame = context.frame
    expected = frame.index[(frame["propensity_bucket"] == "High") & (frame["recency_days"] <= 90)]
    assert len(members) > 0 and set(members) == set(expected)
    with pytest.raises(RuleError, match="did you mean recency_days"):
        book.create("typo", "recency_day <= 90")
    with pytest.raises(RuleError):
        book.create("python", "__import__('os').system('echo no')")
    with pytest.raises(AudienceError, match="exists"):
        book.create("high-recent", "recency_days <= 1")


def test_a_lookalike_audience_grows_from_its_seed_audience(shop, context):
    book = AudienceBook(shop.activation.root)
    book.create("seed-buyers", "n_purchases >= 3", replace=True)
    book.create("like-buyers", "lookalike('seed-buyers', 20)", replace=True)
    seeds, like = book.members("seed-buyers", context), book.members("like-buyers", context)
    assert 0 < len(like) <= 20 and not set(like) & set(seeds)
    with pytest.raises(AudienceError, match="no audience 'nobody'"):
        book.create("like-nobody", "lookalike('nobody', 5)")


# -- plans ---------------------------------------------------------------------------------------------------

_hours = st.sampled_from(["06:00-23:00", "07:00-22:00", "08:00-12:00", "19:00-21:00", "10:00-11:00"])
_cap = st.one_of(st.none(), st.integers(0, 3))


@st.composite
def _policies(draw) -> ContactPolicy:
    channels = {}
    for name in draw(st.lists(st.sampled_from(PLAN_CHANNELS), min_size=1, max_size=4, unique=True)):
        caps = {k: v for k in ("per_day", "per_week", "per_month") if (v := draw(_cap)) is not None}
        channels[name] = ChannelPolicy(
            cost_vnd=draw(st.sampled_from([0.0, 10.0, 250.0, 800.0])),
            allowed_hours=Hours.parse(draw(_hours), "random"), caps=caps,
            label=draw(st.sampled_from([None, "[QC]"])), daily_quota=draw(st.one_of(st.none(), st.integers(0, 20))),
            free_window_hours=48.0 if name == "zalo_oa" and draw(st.booleans()) else None,
            free_window_messages=draw(st.sampled_from([None, 0, 1, 8])))
    across = {k: v for k in ("per_day", "per_week") if (v := draw(_cap)) is not None}
    return ContactPolicy(channels, across, "random")


@st.composite
def _histories(draw, customers: list[str]) -> pd.DataFrame:
    n = draw(st.integers(0, 60))
    who = draw(st.lists(st.sampled_from(customers), min_size=n, max_size=n))
    channels = draw(st.lists(st.sampled_from(PLAN_CHANNELS), min_size=n, max_size=n))
    hours_before = draw(st.lists(st.integers(1, 40 * 24), min_size=n, max_size=n))
    start = START.tz_convert("UTC").tz_localize(None)
    return pd.DataFrame({"customer_id": pd.Series(who, dtype=object), "channel": pd.Series(channels, dtype=object),
                         "ts": pd.Series([start - timedelta(hours=h) for h in hours_before],
                                         dtype="datetime64[ns]")})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_a_plan_never_breaks_its_policy_nor_consent(context, data):
    customers = list(context.frame.index[:60])
    policy = data.draw(_policies())
    history = data.draw(_histories(customers))
    budget = data.draw(st.one_of(st.none(), st.floats(0, 20_000)))
    hours = data.draw(st.integers(1, 96))
    last_oa = pd.Series(pd.to_datetime([START.tz_convert(None) - timedelta(hours=5)] * 10),
                        index=customers[:10])
    plan = plan_campaign(context, pd.Index(customers), tuple(policy.channels), START,
                         START + timedelta(hours=hours), policy, QUIET, budget, history, last_oa)
    assert violations(plan.rows, policy, history, budget) == []
    rows = plan.rows.set_index("customer_id")
    assert list(rows.index) == customers  # one row per member, in order
    sends = rows[rows["channel"].notna()]
    allowed = context.reach.allowed
    assert all(allowed.at[c, ch] for c, ch in sends["channel"].items())
    assert set(rows.loc[rows["channel"].isna(), "reason"]) <= set(REASONS)
    assert rows.loc[rows["channel"].notna(), "reason"].isna().all()
    local = pd.to_datetime(sends["send_at"], utc=True)
    assert ((local >= START) & (local < START + timedelta(hours=hours))).all()


def test_the_plan_prefers_response_per_vnd_and_stops_at_the_budget(context):
    members = context.frame.index
    policy = load_policy()
    free = plan_campaign(context, members, PLAN_CHANNELS, START, END, policy, QUIET, None, NO_HISTORY, NO_OA)
    tight = plan_campaign(context, members, PLAN_CHANNELS, START, END, policy, QUIET, 500.0, NO_HISTORY, NO_OA)
    assert tight.sends["cost_vnd"].sum() <= 500 < free.sends["cost_vnd"].sum()
    assert (tight.rows["reason"] == "budget").any()
    # Whom the budget leaves out: the sends kept pay back more per VND than the ones dropped.
    kept = tight.sends.assign(ratio=lambda r: r["expected_response"] / r["cost_vnd"].clip(lower=1))
    dropped = free.rows.set_index("customer_id").loc[tight.rows.loc[tight.rows["reason"] == "budget", "customer_id"]]
    dropped = dropped.assign(ratio=lambda r: r["expected_response"] / r["cost_vnd"].clip(lower=1))
    assert kept["ratio"].min() >= dropped["ratio"].max() - 1e-12 or len(dropped) == 0
    # Nobody with consent on email and another channel is sent the dearer one: email is ~1/80 of an SMS.
    both = context.reach.allowed["email"] & context.reach.allowed["sms"]
    chosen = free.rows.set_index("customer_id")["channel"]
    assert (chosen[both[both].index] != "sms").all()
    no_consent = ~context.reach.allowed[list(PLAN_CHANNELS)].any(axis=1)
    reasons = free.rows.set_index("customer_id")["reason"]
    assert (reasons[no_consent[no_consent].index] == "no consent").all()


def test_a_full_daily_quota_moves_sends_to_the_next_day(context):
    email = context.frame.index[context.reach.allowed["email"]][:6]
    assert len(email) == 6
    rule = ChannelPolicy(cost_vnd=10, allowed_hours=Hours.parse("08:00-21:00", "t"), daily_quota=2)
    policy = ContactPolicy({"email": rule}, {}, "t")
    plan = plan_campaign(context, email, ("email",), START, END, policy, QUIET, None, NO_HISTORY, NO_OA)
    days = pd.to_datetime(plan.sends["send_at"].str[:10])
    assert days.value_counts().max() <= 2 and len(plan.sends) == 6 and days.nunique() == 3
    short = plan_campaign(context, email, ("email",), START, START + timedelta(hours=12), policy, QUIET, None,
                          NO_HISTORY, NO_OA)
    assert len(short.sends) == 2 and (short.rows["reason"] == "quota").sum() == 4


def test_the_oa_is_free_inside_the_reply_window_and_paid_after(context):
    oa = context.frame.index[context.reach.allowed["zalo_oa"]][:2]
    assert len(oa) == 2
    rule = ChannelPolicy(cost_vnd=150, allowed_hours=Hours.parse("07:00-22:00", "t"), free_window_hours=48,
                         free_window_messages=8)
    policy = ContactPolicy({"zalo_oa": rule}, {}, "t")
    recent = pd.Series(pd.to_datetime([START.tz_convert(None) - timedelta(hours=2)] * 2), index=oa)
    plan = plan_campaign(context, oa, ("zalo_oa",), START, END, policy, QUIET, None, NO_HISTORY, recent)
    sent = plan.sends.set_index("customer_id")
    in_window = pd.to_datetime(sent["send_at"], utc=True) < START + timedelta(hours=46)
    assert (sent.loc[in_window, "cost_vnd"] == 0).all() and (sent.loc[~in_window, "cost_vnd"] == 150).all()
    full = pd.DataFrame({"customer_id": [oa[0]] * 8, "channel": ["zalo_oa"] * 8,
                         "ts": [START.tz_convert(None) - timedelta(hours=1, minutes=m) for m in range(8)]})
    capped = plan_campaign(context, oa[:1], ("zalo_oa",), START, START + timedelta(hours=12), policy, QUIET, None,
                           full, recent)
    assert capped.sends["cost_vnd"].iloc[0] == 150  # 8 messages already in the window: the 9th is paid


def test_a_plan_with_no_allowed_hour_says_no_slot(context):
    email = context.frame.index[context.reach.allowed["email"]][:3]
    rule = ChannelPolicy(cost_vnd=10, allowed_hours=Hours.parse("03:00-04:00", "t"))
    plan = plan_campaign(context, email, ("email",), START, END, ContactPolicy({"email": rule}, {}, "t"), QUIET,
                         None, NO_HISTORY, NO_OA)
    assert plan.sends.empty and set(plan.rows["reason"]) == {"no slot"}


# -- the marketer's walk-through, from the command line ------------------------------------------------------


def test_audience_plan_and_export_from_the_command_line(shop, tmp_path, monkeypatch):
    for key, value in _env(shop).items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    made = runner.invoke(app, ["audience", "create", "vip", "--where", "propensity_percentile >= 0.5"])
    assert made.exit_code == 0, made.output
    bad = runner.invoke(app, ["audience", "create", "bad", "--where", "propensity_bucket = 'High'"])
    assert bad.exit_code == 1 and "error:" in bad.output
    listed = runner.invoke(app, ["audience", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert '"audience":"vip"' in listed.output.replace(" ", "")
    plan_csv = tmp_path / "plan.csv"
    planned = runner.invoke(app, ["campaign", "plan", "--name", "sep-sale", "--audience", "vip", "--channels",
                                  "email,sms,zalo_oa,zalo_zns", "--from", "2026-08-20T08:00", "--to",
                                  "2026-08-22T08:00", "--budget", "20000", "--output", str(plan_csv)])
    assert planned.exit_code == 0, planned.output
    plan = pd.read_csv(plan_csv, dtype={"phone": str})
    assert {"customer_id", "phone", "email", "channel", "send_at", "expected_response", "cost_vnd",
            "reason"} <= set(plan.columns)
    assert plan["cost_vnd"].sum() <= 20000 and plan["send_at"].dropna().str.endswith("+07:00").all()
    assert (shop.activation.root / "plans" / "sep-sale" / "plan.json").exists()

    meta = tmp_path / "meta.csv"
    exported = runner.invoke(app, ["audience", "export", "vip", "--channel", "email", "--format", "meta",
                                   "--output", str(meta)])
    assert exported.exit_code == 0, exported.output
    rows = pd.read_csv(meta, dtype=str, keep_default_na=False)
    identity = Builds(shop.builds).open().table("identity")
    emails = identity[identity["id_type"] == "email"]["id_value"]
    hashed = {hashlib.sha256(e.strip().lower().encode()).hexdigest() for e in emails}
    assert len(rows) > 0 and set(rows["email"]) - {""} <= hashed
    audit = pd.read_csv(shop.activation.root / "exports_audit.csv", dtype=str)
    last = audit.iloc[-1]
    assert (last["actor"], last["audience"], last["format"], last["channel"]) == ("test-marketer", "vip", "meta",
                                                                                  "email")
    assert int(last["rows"]) == len(rows)
    assert not audit.apply(lambda r: r.str.contains("@|\\+84", regex=True)).any().any()  # no personal data

    # A new feature build recomputes every audience; the history and the report show each size.
    rebuilt = runner.invoke(app, ["features", "build", "--as-of", "2026-08-16", "--no-vectors"])
    assert rebuilt.exit_code == 0 and "audiences: " in rebuilt.output and "vip " in rebuilt.output, rebuilt.output
    history = AudienceBook(shop.activation.root).sizes("vip")
    assert len(history) == 2 and history["build_id"].nunique() == 2
    shown = runner.invoke(app, ["audience", "show", "vip"])
    assert shown.exit_code == 0 and "size per feature build" in shown.output
    assert all(b in shown.output for b in history["build_id"])
    reported = runner.invoke(app, ["report", "--out", str(tmp_path / "reports")])
    assert reported.exit_code == 0, reported.output
    page = (tmp_path / "reports" / "audiences.html").read_text(encoding="utf-8")
    assert "vip" in page and "Tệp khách hàng" in page and f"{history['size'].iloc[-1]:,}" in page


def test_the_notebook_api_makes_the_same_decisions(shop, tmp_path):
    from serving import activation

    activation.create_audience("nb-likely", where="propensity_bucket != 'Low'", settings=shop)
    members = activation.audience_members("nb-likely", settings=shop)
    assert len(members) > 0 and (members["propensity_bucket"] != "Low").all()
    plan = activation.plan_campaign("nb-plan", "nb-likely", ["email", "zalo_oa"], "2026-08-20T08:00",
                                    "2026-08-22T08:00", budget_vnd=5_000, settings=shop)
    assert plan.summary()["cost_vnd"] <= 5_000 and set(plan.rows["customer_id"]) == set(members.index)
    sent = plan.sends.iloc[0]
    one = activation.next_best_action(sent["customer_id"], ["email", "zalo_oa"], "2026-08-20T08:00",
                                      "2026-08-22T08:00", settings=shop)
    assert (one["channel"], one["send_at"]) == (sent["channel"], sent["send_at"])  # a budget only drops sends
    record = activation.export_audience("nb-likely", "zalo_oa", "csv", tmp_path / "oa.csv", actor="nb",
                                        settings=shop)
    assert record.rows == int(members["consent_zalo_oa"].sum())
    for _ in range(2):  # what each build and refresh runs
        assert activation.record_sizes(settings=shop)["nb-likely"] == len(members)
    sizes = activation.audience_sizes("nb-likely", settings=shop)
    assert list(sizes["size"]) == [len(members)]  # recorded once for this build, however often asked
