"""Load the registered champions: serving's only contact with MLflow (it never imports training).

A champion is only served over customers resolved the way it was trained: `check_identity` compares
the identity configuration its training run recorded with the one of the build (or resolution) it is
about to score, and refuses a mismatch with a one-line reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from features.builds import Build
from features.identity.graph import IdentityConfig
from models.names import CHAMPION_ALIAS, PROPENSITY_MODEL, SEND_TIME_MODEL
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


MODEL_KEYS = {"propensity": PROPENSITY_MODEL, "send_time": SEND_TIME_MODEL}


def champion_version(tracking: TrackingConfig, key: str) -> str | None:
    """The version the champion alias of a model points at now (a cheap registry read), or None."""
    from mlflow.exceptions import MlflowException

    client = tracking.connect().MlflowClient()
    try:
        return str(client.get_model_version_by_alias(MODEL_KEYS[key], CHAMPION_ALIAS).version)
    except MlflowException:
        return None


def usable_with(champion: Champion, build: Build) -> str | None:
    """Why `champion` cannot score `build`, or None: another identity configuration, or inputs the
    build's profiles do not have (a feature list from another version of the code)."""
    try:
        check_identity(champion, build.identity_config, "the current feature build")
    except IdentityMismatch as exc:
        return str(exc)
    model = champion.model
    needed = [f for f in getattr(model, "features_", ()) if f != getattr(model, "window_feature", None)]
    columns = set(build.table("profiles").columns)
    missing = [f for f in needed if f not in columns]
    if missing:
        return (f"{champion.label} needs profile columns the current feature build lacks "
                f"({', '.join(missing[:5])}): its feature list does not match this build")
    return None


def load_usable(tracking: TrackingConfig, key: str, build: Build,
                reuse: Champion | None = None) -> tuple[Champion | None, str | None]:
    """The champion of `key` ("propensity" or "send_time") if it can serve `build`, else (None, why).

    `reuse` is a champion already loaded: kept when the alias still points at its version, so following
    a new build does not reload unchanged models."""
    name = MODEL_KEYS[key]
    try:
        if reuse is not None and champion_version(tracking, key) == reuse.version:
            champion = reuse
        else:
            champion = load_champion(tracking, name)
    except NoChampionError:
        command = "nhip train propensity" if key == "propensity" else "nhip train send-time"
        return None, f"no champion of {name} yet: train one with `{command}`"
    except Exception as exc:  # an artifact that does not load is this model's problem, not the service's
        return None, f"the champion of {name} cannot be loaded: {type(exc).__name__}: {exc}"
    why = usable_with(champion, build)
    return (None, why) if why else (champion, None)
