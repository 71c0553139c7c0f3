"""Scores for every customer at once, for `nhip score …`: the same champions and the same rules as the
service, written to a table with each customer's identifiers.

`propensity_table` and `clv_table` score the customers known at any as-of date (profiles computed on the
fly, with the workspace's identity configuration, which must be the champion's); `send_time_table`
answers for every customer of the latest feature build, as the service does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from features.builds import Builds
from features.identity.events import resolve_events
from features.identity.graph import IdentityConfig
from features.identity.reports import identifiers_wide
from features.profile.repeat_purchases import purchase_summary
from features.profile.wide import build_profiles
from features.store import open_store
from models.answers import answer_propensity
from models.clv import answer_clv, fit_lifetime
from models.names import PROPENSITY_MODEL
from serving.champions import NoChampionError, check_identity, load_champion
from serving.scoring import ServingConfig, load_scorer


class HorizonMismatch(LookupError):
    """The propensity champion predicts another horizon than the one asked for."""


@dataclass
class ScoreTable:
    """One row per customer (indexed by customer_id): identifier columns, then the answer's columns."""

    table: pd.DataFrame
    model: str  # the champion that answered, e.g. nhip-propensity/3
    lifetime: dict | None = None  # the lifetime models' parameters (`clv_table`)


def _answers_at(config: ServingConfig, store_path: Path, identity: IdentityConfig, as_of: datetime,
                horizon_days: int):
    """(propensity answers, purchase summary, identity map, lifetime models, champion label) of every
    customer known at `as_of`: what `propensity_table` and `clv_table` both start from."""
    try:
        champion = load_champion(config.tracking, PROPENSITY_MODEL)
    except NoChampionError:
        champion = None
    if champion is not None:
        if champion.model.horizon_days != horizon_days:
            raise HorizonMismatch(f"the champion {champion.label} predicts {champion.model.horizon_days} days, "
                                  f"not {horizon_days}; train one with --horizon-days {horizon_days}")
        check_identity(champion, identity, "this workspace")
        champion.model.compile_trees(config.compiled_dir)
    with open_store(store_path) as con, resolve_events(con, as_of, identity) as events:
        profiles = build_profiles(events)
        summary = purchase_summary(events)
        identity_map = events.identity
    lifetime = fit_lifetime(summary, horizon_days)
    answers = answer_propensity(champion.model if champion else None, profiles, summary, horizon_days,
                                config.gate, lifetime.pareto)
    label = champion.label if champion else f"fallbacks only (no champion of {PROPENSITY_MODEL})"
    return answers, summary, identity_map, lifetime, label


def propensity_table(config: ServingConfig, store_path: Path, identity: IdentityConfig, as_of: datetime,
                     horizon_days: int) -> ScoreTable:
    """score, percentile, bucket and source of every customer known at `as_of` in the store at
    `store_path`, resolved with `identity`: the champion where the gate lets it answer, the fallbacks
    elsewhere (`models.answers`), the fallbacks alone before any champion exists."""
    answers, _, identity_map, _, label = _answers_at(config, store_path, identity, as_of, horizon_days)
    table = identifiers_wide(identity_map).reindex(answers.index).join(
        answers[["score", "percentile", "bucket", "source", "reason"]])
    return ScoreTable(table, label)


def clv_table(config: ServingConfig, store_path: Path, identity: IdentityConfig, as_of: datetime,
              horizon_days: int) -> ScoreTable:
    """p_alive, expected_purchases, expected_spend, churn_risk and source of every customer known at
    `as_of` over the next `horizon_days` (`models.clv`), built on the same propensity answers as
    `propensity_table`. `ScoreTable.model` names the champion and the lifetime models' parameters are
    in `lifetime`."""
    answers, summary, identity_map, lifetime, label = _answers_at(config, store_path, identity, as_of,
                                                                  horizon_days)
    clv = answer_clv(answers, summary, lifetime)
    table = identifiers_wide(identity_map).reindex(clv.index).join(
        clv[["p_alive", "expected_purchases", "expected_spend", "churn_risk", "source", "reason"]])
    return ScoreTable(table, label, lifetime.params())


def send_time_table(config: ServingConfig, channel: str, start: pd.Timestamp, end: pd.Timestamp,
                    explore: bool | None) -> ScoreTable:
    """send_at, score, source and explored for every customer of the current feature build; needs only
    the send-time champion (a shop with messages and no purchases has no propensity one)."""
    build = Builds(config.builds).open()
    scorer = load_scorer(config, build, need=("send_time",))
    rows = scorer.send_time(list(scorer.profiles.index), channel, start, end, explore)
    answers = pd.DataFrame(rows).set_index("customer_id")[["send_at", "score", "source", "explored"]]
    table = identifiers_wide(build.table("identity")).reindex(answers.index).join(answers)
    return ScoreTable(table, scorer.send_time_champion.label)
