"""Load the registered champions: serving's only contact with MLflow (it never imports training)."""

from __future__ import annotations

from dataclasses import dataclass

from models.names import CHAMPION_ALIAS
from nhip.settings import Settings


class NoChampionError(RuntimeError):
    """No model version carries the champion alias yet."""


@dataclass
class Champion:
    name: str
    version: str
    run_id: str
    model: object  # the fitted estimator

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"


def load_champion(settings: Settings, name: str, alias: str = CHAMPION_ALIAS) -> Champion:
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(settings.tracking_uri)
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise NoChampionError(
            f"no '{alias}' for model {name} in {settings.tracking_uri}; train it first "
            f"(`nhip train …`)"
        ) from exc
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@{alias}")
    return Champion(name, str(version.version), version.run_id, loaded.unwrap_python_model().model)
