"""The retraining job: check the new data, rebuild features, train both models, let the gate decide.

Data checks run first and each failure names its check, so a scheduler's log says why nothing was
trained: an empty store, too few events since the champions' data, or a purchase rate on the test
snapshot outside the configured range (a broken import looks like a shop where nobody or everybody
buys). Promotion itself is the gate's call, as for `nhip train`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import duckdb

from features.identity.graph import IdentityConfig
from features.profile.feature_lists import PROPENSITY_V1
from features.profile.training_sets import training_set
from features.store import event_time_range, fingerprint, open_store
from features.vectors.config import VectorConfig
from models.answers import ScoreGate
from models.names import PROPENSITY_MODEL, SEND_TIME_MODEL
from nhip.clock import parse_as_of, to_local
from training import registry
from training.errors import NotEnoughDataError

if TYPE_CHECKING:
    from features.build import BuildConfig
    from training.runner import TrainingConfig


class RetrainRefused(NotEnoughDataError):
    """The new data failed a check; nothing was trained and the champions stay."""

    def __init__(self, failed: list[CheckResult]):
        self.failed = failed
        super().__init__("retrain refused, nothing trained: " + "; ".join(
            f"check '{c.name}' failed: {c.detail}" for c in failed))


@dataclass(frozen=True)
class RetrainPlan:
    """The dates of one retrain: `now` for features and send time, a fully labelled test snapshot."""

    now: datetime  # naive UTC, like every instant in the store
    propensity_as_of: datetime
    horizon_days: int
    now_is_default: bool

    def describe(self) -> str:
        source = "the last event" if self.now_is_default else "--as-of"
        return (f"retrain as of {to_local(self.now):%Y-%m-%d %H:%M} ({source}): propensity tested on the "
                f"{to_local(self.propensity_as_of):%Y-%m-%d} snapshot (purchases in the {self.horizon_days} "
                f"days after it), send time learned from sends up to {to_local(self.now):%Y-%m-%d %H:%M}")


def plan_retrain(last_event: datetime, as_of: datetime | None, horizon_days: int) -> RetrainPlan:
    """The latest full label window: the propensity test snapshot is `now`'s local midnight − horizon.

    `now` defaults to the last event, so send time learns from everything and the propensity test
    snapshot is the latest whose purchase window has been observed completely.
    """
    now = as_of or last_event
    if now > last_event:
        raise NotEnoughDataError(
            f"--as-of {to_local(now):%Y-%m-%d %H:%M} is after the last event "
            f"({to_local(last_event):%Y-%m-%d %H:%M}); its data has not arrived yet"
        )
    midnight = parse_as_of(to_local(now).floor("D"))
    return RetrainPlan(now, midnight - timedelta(days=horizon_days), horizon_days, as_of is None)


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str


def new_events_since(con: duckdb.DuckDBPyConnection, champion_fingerprint: dict, until: datetime) -> int:
    """Events the champion did not train on: later than its last event, or added since (backfills)."""
    if champion_fingerprint.get("checksum") == fingerprint(con)["checksum"]:
        return 0
    after = con.execute(
        "SELECT count(*) FROM events WHERE ts > ? AND ts <= ?",
        [datetime.fromisoformat(str(champion_fingerprint["last_ts"])), until],
    ).fetchone()[0]
    added = con.execute("SELECT count(*) FROM events WHERE ts <= ?", [until]).fetchone()[0] - int(
        champion_fingerprint.get("events", 0))
    return int(max(after, added))


def check_new_events(con, champions: dict[str, registry.ChampionRun | None], until: datetime,
                     minimum: int) -> CheckResult:
    counts = {name: new_events_since(con, run.fingerprint, until)
              for name, run in champions.items() if run is not None and run.fingerprint}
    if not counts:
        return CheckResult("new events", True, "no champion yet: everything is new")
    detail = ", ".join(f"{n:,} since the data of {name} version {champions[name].version}"
                       for name, n in counts.items())
    passed = min(counts.values()) >= minimum
    return CheckResult("new events", passed,
                       f"{detail} (need ≥ {minimum:,}, NHIP_RETRAIN_MIN_NEW_EVENTS)")


def check_label_rate(con, plan: RetrainPlan, min_events: int, low: float, high: float,
                     identity: IdentityConfig) -> CheckResult:
    """Share of the test snapshot's customers the model answers for who bought within the horizon after it."""
    rows = training_set(con, [plan.propensity_as_of], plan.horizon_days, PROPENSITY_V1, identity)
    gate = ScoreGate(min_events)
    rows = rows[gate.model_answers(rows)]
    if rows.empty:
        return CheckResult("label rate", False, f"no customer with {gate.describe()} on the "
                           f"{to_local(plan.propensity_as_of):%Y-%m-%d} test snapshot")
    rate = float(rows["label"].mean())
    passed = low <= rate <= high
    return CheckResult("label rate", passed,
                       f"{rate:.1%} of {len(rows):,} customers bought in the {plan.horizon_days} days after "
                       f"{to_local(plan.propensity_as_of):%Y-%m-%d} (allowed {low:.1%}–{high:.1%}, "
                       f"NHIP_RETRAIN_MIN_LABEL_RATE / NHIP_RETRAIN_MAX_LABEL_RATE)")


@dataclass(frozen=True)
class RetrainConfig:
    """The data checks' thresholds: events since the champions' data (NHIP_RETRAIN_MIN_NEW_EVENTS) and
    the purchase rate allowed on the test snapshot (NHIP_RETRAIN_MIN_LABEL_RATE / _MAX_LABEL_RATE)."""

    min_new_events: int
    min_label_rate: float
    max_label_rate: float


def data_checks(training: TrainingConfig, checks: RetrainConfig, as_of: datetime | None, horizon_days: int
                ) -> tuple[RetrainPlan | None, list[CheckResult]]:
    """The retrain plan and every data check; the plan is None when the store is empty."""
    with open_store(training.store_path) as con:
        _, last = event_time_range(con)
        if last is None:
            return None, [CheckResult("empty store", False, "the event store holds no events; "
                                      "run `nhip ingest FILE` first")]
        plan = plan_retrain(last, as_of, horizon_days)
        mlflow_client = registry.client(training.tracking)
        champions = {name: registry.champion_run(mlflow_client, name)
                     for name in (PROPENSITY_MODEL, SEND_TIME_MODEL)}
        results = [
            check_new_events(con, champions, plan.now, checks.min_new_events),
            check_label_rate(con, plan, training.min_events_to_score, checks.min_label_rate,
                             checks.max_label_rate, training.identity),
        ]
    return plan, results


@dataclass
class RetrainResult:
    plan: RetrainPlan
    checks: list[CheckResult]
    customers: int
    outcomes: list  # training.runner.RunOutcome, propensity then send time


def retrain(
    training: TrainingConfig,
    checks: RetrainConfig,
    build: BuildConfig,
    vectors: VectorConfig | None,
    as_of: datetime | None = None,
    horizon_days: int = 30,
    step: Callable[[str], None] | None = None,
    on_checks: Callable[[RetrainPlan, list[CheckResult]], None] | None = None,
) -> RetrainResult:
    """Check, rebuild features as of `now` (with vectors unless `vectors` is None), train both models;
    raise `RetrainRefused` on failed checks. The build and both models use `TrainingConfig.identity`."""
    from features.build import build_features
    from training.runner import train_propensity, train_send_time

    step = step or (lambda _: None)
    step("checking the new data")
    plan, results = data_checks(training, checks, as_of, horizon_days)
    if on_checks and plan is not None:
        on_checks(plan, results)
    failed = [c for c in results if not c.passed]
    if failed:
        raise RetrainRefused(failed)
    step("building features")
    summary = build_features(build, plan.now, vectors, to_qdrant=vectors is not None)
    step("training propensity")
    outcomes = [train_propensity(training, plan.propensity_as_of, horizon_days)]
    step("training send time")
    outcomes.append(train_send_time(training, plan.now))
    return RetrainResult(plan, results, summary.customers, outcomes)
