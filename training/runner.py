"""The thin runner: strings the pure steps together and is the only place that talks to MLflow.

Each model has one experiment; every run logs its parameters, the feature list, a fingerprint of the
data, metrics, plots, the HTML report and the model (signature and input example included), and
registers it. The `champion` alias moves only when the candidate is at least as good as the current
champion on the candidate's own test snapshot (the same backtest for both); otherwise the run is tagged
with the reason.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np

from features.asof import to_local
from features.store import fingerprint, open_store
from models.names import CHAMPION_ALIAS, PROPENSITY_MODEL, SEND_TIME_MODEL
from nhip.settings import Settings
from training.evaluate import classification_metrics
from training.propensity import fit_propensity
from training.send_time import fit_send_time, holdout_auc

PIP_REQUIREMENTS = [
    "lightgbm==4.7.0", "scikit-learn==1.9.1", "pandas==3.1.1", "numpy==2.4.6", "mlflow==3.17.2",
]


@dataclass
class RunOutcome:
    model_name: str
    version: str
    run_id: str
    promoted: bool
    reason: str
    metrics: dict[str, float]


def _mlflow(settings: Settings):
    import mlflow

    settings.ensure_dirs()
    mlflow.set_tracking_uri(settings.tracking_uri)
    return mlflow


def _experiment(mlflow, settings: Settings, name: str) -> str:
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = None if settings.mlflow_uri else f"{settings.artifact_root}/{name}"
    return mlflow.create_experiment(name, artifact_location=location)


def _promote(mlflow, name: str, version: str, candidate: float, champion: float | None, margin: float):
    """Move the alias when the candidate wins; return (promoted, reason)."""
    client = mlflow.MlflowClient()
    if champion is None:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
        return True, "no comparable champion (none yet, or one for another horizon)"
    if candidate >= champion + margin:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
        return True, f"candidate {candidate:.4f} ≥ champion {champion:.4f} + margin {margin}"
    return False, f"candidate {candidate:.4f} < champion {champion:.4f} + margin {margin}"


def _register(mlflow, name: str, wrapper, example, candidate: float, champion: float | None,
              margin: float) -> tuple[str, bool, str]:
    """Log the model in the active run, register a version, apply the gate and tag the run with it."""
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=wrapper,
        input_example=example,
        registered_model_name=name,
        pip_requirements=PIP_REQUIREMENTS,
    )
    version = str(info.registered_model_version)
    promoted, reason = _promote(mlflow, name, version, candidate, champion, margin)
    mlflow.set_tags({"promoted": str(promoted).lower(), "promotion_reason": reason})
    return version, promoted, reason


def _current_champion(mlflow, name: str):
    from mlflow.exceptions import MlflowException

    try:
        mlflow.MlflowClient().get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException:
        return None
    return mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION_ALIAS}").unwrap_python_model().model


def train_propensity(
    settings: Settings,
    as_of: datetime,
    horizon_days: int,
    step_days: int = 14,
    margin: float = 0.0,
    progress: Callable[[datetime], None] | None = None,
) -> RunOutcome:
    from models.pyfunc import PropensityPyfunc
    from training.report import propensity_report

    mlflow = _mlflow(settings)
    with open_store(settings.store_path, read_only=True) as con:
        data_fingerprint = fingerprint(con)
        result = fit_propensity(
            con, as_of, horizon_days, settings.min_events_to_score, step_days, progress=progress
        )
    model = result.model
    features = list(model.features_)
    test = result.test

    champion = _current_champion(mlflow, PROPENSITY_MODEL)
    champion_auc = None
    if champion is not None and getattr(champion, "horizon_days", None) == horizon_days:
        champion_p = champion.predict_proba(test)[:, 1]
        champion_auc = classification_metrics(test["label"], champion_p)["auc"]

    mlflow.set_experiment(experiment_id=_experiment(mlflow, settings, "propensity"))
    with mlflow.start_run(run_name=f"propensity-{to_local(as_of):%Y%m%d}-h{horizon_days}") as run:
        mlflow.log_params(
            {
                **{k: v for k, v in model.get_params().items() if k != "features"},
                "as_of": as_of.isoformat(),
                "step_days": step_days,
                "train_as_ofs": ",".join(d.date().isoformat() for d in result.plan.train),
                "calibration_as_of": result.plan.calibrate.isoformat(),
                "min_events_to_score": settings.min_events_to_score,
            }
        )
        mlflow.set_tags(
            {
                "feature_list": model.feature_list,
                "data.fingerprint": json.dumps(data_fingerprint),
                **{f"data.{k}": v for k, v in result.row_counts.items()},
            }
        )
        mlflow.log_metrics({**result.metrics, **{f"recency_{k}": v for k, v in result.baseline_metrics.items()}})
        if champion_auc is not None:
            mlflow.log_metric("champion_auc_same_backtest", champion_auc)
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "propensity.html"
            report.write_text(propensity_report(result, data_fingerprint), encoding="utf-8")
            mlflow.log_artifact(str(report), artifact_path="report")
            (Path(tmp) / "features.json").write_text(json.dumps(features))
            mlflow.log_artifact(str(Path(tmp) / "features.json"))
        version, promoted, reason = _register(
            mlflow, PROPENSITY_MODEL, PropensityPyfunc(model), test[features].head(5).astype("float64"),
            result.metrics["auc"], champion_auc, margin,
        )
    return RunOutcome(PROPENSITY_MODEL, version, run.info.run_id, promoted, reason, result.metrics)


def train_send_time(settings: Settings, as_of: datetime, margin: float = 0.0) -> RunOutcome:
    from models.pyfunc import SendTimePyfunc
    from training.report import send_time_report

    mlflow = _mlflow(settings)
    with open_store(settings.store_path, read_only=True) as con:
        data_fingerprint = fingerprint(con)
        result = fit_send_time(con, as_of, prior_strength=settings.send_time_prior_strength)
    model = result.model
    candidate = result.metrics.get("holdout_auc")
    champion = _current_champion(mlflow, SEND_TIME_MODEL)
    champion_score = None
    if candidate is not None and champion is not None:
        champion_score = holdout_auc(champion, result.holdout)

    mlflow.set_experiment(experiment_id=_experiment(mlflow, settings, "send-time"))
    with mlflow.start_run(run_name=f"send-time-{to_local(as_of):%Y%m%d}") as run:
        mlflow.log_params({**model.get_params(), "as_of": as_of.isoformat()})
        mlflow.set_tags({"feature_list": "message_sends_v1", "data.fingerprint": json.dumps(data_fingerprint)})
        mlflow.log_metrics(result.metrics)
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "send_time.html"
            report.write_text(send_time_report(result, data_fingerprint), encoding="utf-8")
            mlflow.log_artifact(str(report), artifact_path="report")
        example = result.sends[["customer_id", "channel", "how"]].head(5).reset_index(drop=True)
        example["how"] = example["how"].astype("int64")
        version, promoted, reason = _register(
            mlflow, SEND_TIME_MODEL, SendTimePyfunc(model), example,
            candidate if candidate is not None else np.nan, champion_score, margin,
        )
    return RunOutcome(SEND_TIME_MODEL, version, run.info.run_id, promoted, reason, result.metrics)


def export_reports(settings: Settings, out_dir: Path) -> list[Path]:
    """Copy each champion's HTML report out of MLflow into `out_dir`."""
    from mlflow.exceptions import MlflowException

    mlflow = _mlflow(settings)
    client = mlflow.MlflowClient()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in (PROPENSITY_MODEL, SEND_TIME_MODEL):
        try:
            version = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
        except MlflowException:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path="report", dst_path=tmp
            )
            for html in Path(local).glob("*.html"):
                target = out_dir / html.name
                target.write_bytes(html.read_bytes())
                written.append(target)
    return written
