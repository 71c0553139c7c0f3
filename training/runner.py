"""The thin runner: strings the pure steps together and logs them to MLflow.

Each model has one experiment; every run logs its parameters, the feature list, a fingerprint of the
data (event-store checksum, as_of, row counts), metrics (the baselines' too, prefixed), the plots, the
HTML report and the model (signature and input example included), and registers it. The `champion`
alias moves only when `training.gate` says so: the candidate is sane on its own and beats the current
champion on the candidate's own backtest by the margin. The run is tagged `promoted` and
`promotion_reason` either way. Alias moves go through `training.registry`, which keeps their history.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from features.identity.graph import IdentityConfig
from features.store import fingerprint, open_store
from models.names import PROPENSITY_MODEL, SEND_TIME_MODEL
from models.tracking import TrackingConfig
from nhip.clock import to_local
from training import registry
from training.evaluate import classification_metrics, expected_calibration_error
from training.gate import (
    GateConfig,
    Verdict,
    baseline_failures,
    decide,
    deltas,
    sanity_failures,
)
from training.propensity import answer_test, fit_propensity
from training.send_time import fit_send_time, holdout_auc, send_time_inputs

# What the send-time model learns from, versioned like a feature list (v2: `message_responses`, sends with
# whether and when a person, not a mail client, opened them; and `activity_by_hour` on every channel).
SEND_TIME_INPUTS = "send_time_inputs_v2"
PIP_REQUIREMENTS = [
    "lightgbm==4.7.0", "scikit-learn==1.9.1", "pandas==3.1.1", "numpy==2.4.6", "mlflow==3.17.2",
]
# Metrics that must be finite numbers before a model may serve.
PROPENSITY_REQUIRED = ("auc", "pr_auc", "lift_top_decile", "brier", "log_loss", "ece")
SEND_TIME_REQUIRED = ("holdout_auc",)


@dataclass(frozen=True)
class TrainingConfig:
    """What a training run needs: the store it reads, the registry it writes, the identity
    configuration it resolves customers with (the build's), the promotion gate, the scoring threshold
    (NHIP_MIN_EVENTS_TO_SCORE) and the send-time pooling strength (NHIP_SEND_TIME_PRIOR_STRENGTH)."""

    store_path: Path
    tracking: TrackingConfig
    identity: IdentityConfig
    gate: GateConfig
    min_events_to_score: int
    send_time_prior_strength: float

    def with_margin(self, margin: float | None) -> TrainingConfig:
        """This configuration with the gate's margin replaced, when one is given (`--margin`)."""
        return self if margin is None else replace(self, gate=replace(self.gate, margin=margin))


@dataclass
class RunOutcome:
    model_name: str
    version: str
    run_id: str
    verdict: Verdict
    metrics: dict[str, float]

    @property
    def promoted(self) -> bool:
        return self.verdict.promote

    @property
    def reason(self) -> str:
        return self.verdict.reason


def _experiment(mlflow, tracking: TrackingConfig, name: str) -> str:
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = f"{tracking.artifact_root}/{name}" if tracking.artifact_root else None
    return mlflow.create_experiment(name, artifact_location=location)


def _load(mlflow, name: str, version: str):
    return mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model().model


def _data_tags(data: dict) -> dict[str, str]:
    """The data fingerprint as one JSON tag (what `nhip retrain` reads back) and one tag per field."""
    return {"data.fingerprint": json.dumps(data), **{f"data.{k}": str(v) for k, v in data.items()}}


def _log_files(mlflow, plots: dict[str, bytes], report_name: str, report_html: str, extra: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, png in plots.items():
            (folder / name).write_bytes(png)
            mlflow.log_artifact(str(folder / name), artifact_path="plots")
        (folder / report_name).write_text(report_html, encoding="utf-8")
        mlflow.log_artifact(str(folder / report_name), artifact_path="report")
        for name, payload in extra.items():
            (folder / name).write_text(json.dumps(payload, indent=1))
            mlflow.log_artifact(str(folder / name))


def _register(mlflow, name: str, wrapper, example, verdict: Verdict) -> str:
    """Log the model in the active run, register a version, move the alias if the gate said so."""
    with warnings.catch_warnings():
        # Hour-of-week is an integer that is never missing: MLflow's hint about integer columns is noise.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=wrapper,
            input_example=example,
            registered_model_name=name,
            pip_requirements=PIP_REQUIREMENTS,
        )
    version = str(info.registered_model_version)
    mlflow.set_tags({"promoted": str(verdict.promote).lower(), "promotion_reason": verdict.reason})
    if verdict.promote:
        registry.move_champion(mlflow.MlflowClient(), name, version, "promote", registry.GATE, verdict.reason)
    return version


def _verdict(candidate: dict, champion, champion_metrics: dict | None, failures: list[str],
             margin: float, metric: str) -> Verdict:
    """The gate's decision; a champion that cannot be scored on this backtest is one of `failures`."""
    promote, reasons = decide(candidate, champion_metrics, failures, margin, metric)
    return Verdict(promote, reasons, metric, dict(candidate), champion_metrics,
                   champion.version if champion else None, deltas(candidate, champion_metrics))


def _propensity_champion_metrics(mlflow, champion, result, as_of: datetime,
                                 horizon_days: int) -> tuple[dict | None, list[str]]:
    """The champion's metrics on the candidate's test snapshot, or why it cannot be scored there."""
    test = result.test
    if champion is None:
        return None, []
    label = f"the champion (version {champion.version})"
    if str(champion.params.get("horizon_days")) != str(horizon_days):
        return None, [f"{label} predicts {champion.params.get('horizon_days')} days, this candidate "
                      f"{horizon_days}: not comparable (promote by hand: `nhip models promote`)"]
    if champion.as_of is not None and champion.as_of > as_of:
        return None, [f"{label} learned from labels up to {to_local(champion.as_of):%Y-%m-%d}, after this "
                      f"candidate's test snapshot {to_local(as_of):%Y-%m-%d}: no fair backtest"]
    model = _load(mlflow, PROPENSITY_MODEL, champion.version)
    missing = [f for f in model.features_ if f not in test.columns]
    if missing:
        return None, [f"{label} needs features this candidate's test snapshot lacks: {missing[:5]}"]
    # Scored as it would be served: the champion where the gate lets it answer, the same fallbacks elsewhere.
    p = answer_test(model, test, result.summary, horizon_days, result.gate, result.pareto)["score"].to_numpy()
    metrics = classification_metrics(test["label"], p)
    metrics["ece"] = expected_calibration_error(test["label"], p)
    return metrics, []


def train_propensity(
    config: TrainingConfig,
    as_of: datetime,
    horizon_days: int,
    step_days: int = 14,
    progress: Callable[[datetime], None] | None = None,
    observed_until: datetime | None = None,
) -> RunOutcome:
    """Fit the propensity model tested on the `as_of` snapshot, log it, register it, let the gate decide.

    `observed_until` is the end of the data the run may read (`nhip train propensity --as-of`; default
    the last event): the test snapshot's purchase window must end by then."""
    from models.pyfunc import PropensityPyfunc
    from training.report import propensity_buckets, propensity_plots, propensity_report

    mlflow = config.tracking.connect()
    with open_store(config.store_path) as con:
        data = {**fingerprint(con), "as_of": str(as_of)}
        result = fit_propensity(
            con, as_of, horizon_days, config.min_events_to_score, config.identity, step_days, progress=progress,
            observed_until=observed_until,
        )
    data |= result.row_counts
    model, test = result.model, result.test
    features = list(model.inputs_)

    buckets = propensity_buckets(result)
    failures = sanity_failures(result.metrics, PROPENSITY_REQUIRED, buckets.to_dict(), config.gate.max_ece)
    champion = registry.champion_run(mlflow.MlflowClient(), PROPENSITY_MODEL)
    champion_metrics, blockers = _propensity_champion_metrics(mlflow, champion, result, as_of, horizon_days)
    verdict = _verdict(result.metrics, champion, champion_metrics, failures + blockers, config.gate.margin, "auc")

    plots = propensity_plots(result)
    mlflow.set_experiment(experiment_id=_experiment(mlflow, config.tracking, "propensity"))
    with mlflow.start_run(run_name=f"propensity-{to_local(as_of):%Y%m%d}-h{horizon_days}") as run:
        mlflow.log_params(
            {
                **{k: v for k, v in model.get_params().items() if k != "features"},
                "as_of": as_of.isoformat(),
                "data_until": observed_until.isoformat() if observed_until else "the last event",
                "step_days": step_days,
                "train_as_ofs": ",".join(d.date().isoformat() for d in result.plan.train),
                "calibration_as_of": result.plan.calibrate.isoformat(),
                "min_events_to_score": config.min_events_to_score,
                "promotion_margin": config.gate.margin,
                "max_ece": config.gate.max_ece,
                **config.identity.params(),
                # The lifetime models ride with this run (`models.clv`): fitted on the test snapshot.
                **{f"lifetime.{name}.{k}": v for name, values in result.lifetime.params().items()
                   for k, v in (values or {}).items()},
            }
        )
        mlflow.set_tags({"feature_list": model.feature_list, **_data_tags(data)})
        mlflow.log_metrics({
            **result.metrics,
            **{f"{name}_{k}": v for name, metrics in result.baselines.items() for k, v in metrics.items()},
            **{f"bucket_{name.lower()}": int(n) for name, n in buckets.items()},
            **{f"champion_{k}": v for k, v in (champion_metrics or {}).items()},
        })
        report = propensity_report(result, data, plots, verdict)
        _log_files(mlflow, plots, "propensity.html", report, {"features.json": features,
                                                               "data_fingerprint.json": data})
        version = _register(mlflow, PROPENSITY_MODEL, PropensityPyfunc(model),
                            test[features].head(5).astype("float64"), verdict)
    return RunOutcome(PROPENSITY_MODEL, version, run.info.run_id, verdict, result.metrics)


def _send_time_backtest(mlflow, con, champion, result, identity: IdentityConfig) -> tuple[dict, dict | None, list[str]]:
    """(candidate metrics, champion metrics, blockers) on holdout sends neither model has seen.

    The candidate's holdout score comes from a model fitted on the events before its holdout. A champion
    trained later than that has seen part of the holdout, which would flatter it; then both are compared
    on the holdout sends after the champion's as_of only, the candidate refitted (same parameters) on
    the events up to that same cut, so the two differ only in what a retrain would change.
    """
    from sklearn.base import clone

    candidate = {k: result.metrics[k] for k in SEND_TIME_REQUIRED if k in result.metrics}
    if champion is None:
        return candidate, None, []
    window, cut = result.holdout, champion.as_of
    refit = cut is not None and not window.empty and window["ts"].min() <= cut
    if refit:
        window = window[window["ts"] > cut]
    if window.empty or window["opened"].nunique() < 2:
        seen = f"{to_local(cut):%Y-%m-%d %H:%M}" if cut else "?"
        return candidate, None, [f"the champion (version {champion.version}) has seen the candidate's "
                                 f"holdout sends (its data runs to {seen}): nothing unseen to compare on"]
    if refit:
        backtest_model = clone(result.model).fit(send_time_inputs(con, cut, identity))
        candidate = {"holdout_auc": holdout_auc(backtest_model, window)}
    candidate["backtest_sends"] = float(len(window))
    champion_model = _load(mlflow, SEND_TIME_MODEL, champion.version)
    return candidate, {"holdout_auc": holdout_auc(champion_model, window)}, []


def train_send_time(config: TrainingConfig, as_of: datetime) -> RunOutcome:
    """Fit the send-time model on the message history up to `as_of`, log, register, let the gate decide."""
    from models.pyfunc import SendTimePyfunc
    from training.report import send_time_plots, send_time_report

    mlflow = config.tracking.connect()
    champion = registry.champion_run(mlflow.MlflowClient(), SEND_TIME_MODEL)
    with open_store(config.store_path) as con:
        data = {**fingerprint(con), "as_of": str(as_of)}
        result = fit_send_time(con, as_of, config.identity, config.send_time_prior_strength)
        candidate, champion_metrics, blockers = _send_time_backtest(mlflow, con, champion, result,
                                                                    config.identity)
    model = result.model
    data |= {"sends": len(result.sends), "holdout_sends": len(result.holdout),
             "customers": int(result.sends["customer_id"].nunique())}

    failures = sanity_failures(result.metrics, SEND_TIME_REQUIRED, None, None) + baseline_failures(
        result.metrics, "holdout_auc", "holdout_auc_shop_curve")
    verdict = _verdict(candidate, champion, champion_metrics, failures + blockers, config.gate.margin,
                       "holdout_auc")

    plots = send_time_plots(result)
    mlflow.set_experiment(experiment_id=_experiment(mlflow, config.tracking, "send-time"))
    with mlflow.start_run(run_name=f"send-time-{to_local(as_of):%Y%m%d}") as run:
        mlflow.log_params({**model.get_params(), "as_of": as_of.isoformat(),
                           "promotion_margin": config.gate.margin, **config.identity.params()})
        mlflow.set_tags({"feature_list": SEND_TIME_INPUTS, **_data_tags(data)})
        mlflow.log_metrics({
            **result.metrics,
            **{f"backtest_{k}": v for k, v in candidate.items() if champion_metrics},
            **{f"champion_{k}": v for k, v in (champion_metrics or {}).items()},
        })
        report = send_time_report(result, data, plots, verdict)
        _log_files(mlflow, plots, "send_time.html", report, {"data_fingerprint.json": data})
        example = result.sends[["customer_id", "channel", "hour_of_week"]].head(5).reset_index(drop=True)
        example["hour_of_week"] = example["hour_of_week"].astype("int64")
        version = _register(mlflow, SEND_TIME_MODEL, SendTimePyfunc(model), example, verdict)
    return RunOutcome(SEND_TIME_MODEL, version, run.info.run_id, verdict, result.metrics)
