"""Load the registered champions: serving's only contact with MLflow (it never imports training).

A champion is only served over customers resolved the way it was trained: `check_identity` compares
the identity configuration its training run recorded with the one of the build (or resolution) it is
about to score, and refuses a mismatch with a one-line reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from features.identity.graph import IdentityConfig
from models.names import CHAMPION_ALIAS
from models.tracking import TrackingConfig


class NoChampionError(LookupError):
    """No model version carries the champion alias yet."""


class IdentityMismatch(LookupError):
    """A champion trained under one identity configuration was asked to score customers of another."""


@dataclass
class Champion:
    name: str
    version: str
    run_id: str
    model: object  # the fitted estimator
    params: dict[str, str] = field(default_factory=dict)  # what its training run logged

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def identity(self) -> IdentityConfig | None:
        """The identity configuration it was trained under (None when its run did not record one)."""
        return IdentityConfig.from_params(self.params)


def load_champion(tracking: TrackingConfig, name: str, alias: str = CHAMPION_ALIAS) -> Champion:
    from mlflow.exceptions import MlflowException

    mlflow = tracking.connect()
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise NoChampionError(
            f"no '{alias}' for model {name} in {tracking.uri}; train it first (`nhip train …`)"
        ) from exc
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@{alias}")
    params = dict(client.get_run(version.run_id).data.params)
    return Champion(name, str(version.version), version.run_id, loaded.unwrap_python_model().model, params)


def check_identity(champion: Champion, scoring: IdentityConfig | None, what: str) -> None:
    """Refuse to score customers resolved under `scoring` with a champion trained under another
    configuration (`what` names where `scoring` comes from, for the message)."""
    trained = champion.identity
    if trained is None:
        raise IdentityMismatch(f"{champion.label} records no identity configuration (trained before it was "
                               "recorded): retrain it before serving it")
    if scoring is None:
        raise IdentityMismatch(f"{what} records no identity configuration (built before it was recorded): "
                               "run `nhip features build` again")
    if trained != scoring:
        raise IdentityMismatch(f"{champion.label} was trained with {trained.describe()} but {what} resolves "
                               f"customers with {scoring.describe()}: it would score other customers than it "
                               "learned from; retrain it or build features with the same setting")
