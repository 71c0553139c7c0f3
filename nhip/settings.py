"""One settings object for the whole product, read from `NHIP_*` environment variables.

Only the entry points read it: the CLI, the service's start and the notebook API (`features`). Library
code receives the small typed configuration it needs, defined next to the code that uses it
(`IdentityConfig` beside identity resolution, `GateConfig` beside the promotion gate, …); the
properties below compose those from the fields, so each setting has one name, one default and one
reading, whichever path uses it.

Nothing here touches the disk at import time: paths are computed, folders are created only by
`Settings.ensure_dirs()` and `TrackingConfig.connect()`, which the commands that write call.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from features.build import BuildConfig
    from features.builds import BuildsConfig
    from features.identity.graph import IdentityConfig
    from features.ingest.collector import CollectorConfig
    from features.vectors.config import VectorConfig
    from models.send_time import SendTimeConfig
    from models.tracking import TrackingConfig
    from serving.activation.context import ActivationConfig
    from serving.scoring import ServingConfig
    from training.gate import GateConfig
    from training.retrain import RetrainConfig
    from training.runner import TrainingConfig


class SettingsError(ValueError):
    """A setting holds a value no part of the product can use; the message names the variable."""


class Settings(BaseSettings):
    """Where state lives and the product's defaults.

    All state sits under one workspace, `NHIP_HOME` (default `./var`). MLflow tracking defaults to
    `./mlruns` when `NHIP_HOME` is not set (the layout of the repository), and to `$NHIP_HOME/mlruns`
    when it is, so two workspaces never share a registry.
    """

    model_config = SettingsConfigDict(env_prefix="NHIP_", extra="ignore")

    home: Path | None = Field(default=None, description="workspace folder; default ./var")
    mlflow_uri: str | None = Field(default=None, description="MLflow tracking server URI")
    qdrant_url: str | None = Field(default=None, description="Qdrant server URL; default embedded")
    min_events_to_score: int = Field(
        default=1, ge=1, description="the propensity model answers for customers with at least this many "
        "events by as_of; the fallbacks (BG/NBD, the shop's rate) answer for the others"
    )
    fallback_horizon_days: int = Field(
        default=30, ge=1, description="the horizon of propensity answers before any champion exists")
    send_time_prior_strength: float = Field(
        default=1.0, description="pseudo-opens pulling a customer's reading hours to the pooled ones"
    )
    send_time_explore: bool = Field(
        default=False, description="send-time answers explore (Thompson sampling) unless a request says"
    )
    quiet_start: str = "21:30"
    quiet_end: str = "08:00"
    embedding_model: str | None = Field(
        default=None, description="path of a sentence-transformers model; default the packaged MiniLM"
    )
    identity_max_links: int = Field(
        default=5,
        description="an identifier linked to more distinct strong identifiers of one type is set aside",
    )
    collector_api_key: str | None = Field(
        default=None, description="X-API-Key the HTTP collector requires; without it `nhip collect` won't start"
    )
    api_keys: str | None = Field(
        default=None, description="the service's API keys, comma-separated name:scope:secret (scope read or "
        "admin); without keys it answers anyone and starts only on a loopback address (serving/auth.py)",
    )
    promotion_margin: float = Field(
        default=0.0, description="AUC a candidate must beat the champion by, on the same backtest"
    )
    max_ece: float = Field(
        default=0.10, description="calibration error (10 equal-count bins) above which no model is promoted"
    )
    retrain_min_new_events: int = Field(
        default=1000, description="`nhip retrain` refuses with fewer events since the champions' data"
    )
    retrain_min_label_rate: float = Field(
        default=0.01, description="`nhip retrain` refuses below this purchase rate on the test snapshot"
    )
    retrain_max_label_rate: float = Field(
        default=0.90, description="`nhip retrain` refuses above this purchase rate on the test snapshot"
    )
    keep_builds: int = Field(default=3, ge=1, description="feature builds kept on disk; older ones are deleted")
    refresh_minutes: float = Field(
        default=5.0, gt=0, description="`nhip up`: minutes between refreshes of the online profiles"
    )
    follow_seconds: float = Field(
        default=10.0, gt=0, description="how often the service looks for a new champion or feature build"
    )
    retrain_at: str = Field(default="02:00", description="`nhip up`: the local time of the nightly retrain")
    policy_file: Path | None = Field(
        default=None, description="the contact policy (TOML) plans follow; default the shipped Vietnamese "
        "one (serving/activation/policy_vn.toml)")

    @property
    def workspace(self) -> Path:
        return (self.home or Path("var")).resolve()

    @property
    def store_path(self) -> Path:
        """The event store's folder (`features.store`)."""
        return self.workspace / "store"

    @property
    def spool_path(self) -> Path:
        """The collector's spool of received, not yet stored batches (`features.ingest.spool`)."""
        return self.workspace / "spool"

    @property
    def mlruns_dir(self) -> Path:
        return (self.home / "mlruns" if self.home else Path("mlruns")).resolve()

    def ensure_dirs(self) -> None:
        self.workspace.mkdir(parents=True, exist_ok=True)
        if not self.mlflow_uri:
            self.mlruns_dir.mkdir(parents=True, exist_ok=True)

    # -- the configurations library code takes (imported here lazily: settings stay cheap to import) --

    @property
    def identity(self) -> IdentityConfig:
        from features.identity.graph import IdentityConfig

        try:
            return IdentityConfig(max_links=self.identity_max_links)
        except ValueError as exc:
            raise SettingsError(f"NHIP_IDENTITY_MAX_LINKS: {exc}") from None

    @property
    def vectors(self) -> VectorConfig:
        from features.vectors.config import VectorConfig

        return VectorConfig(qdrant_url=self.qdrant_url, qdrant_path=self.workspace / "qdrant",
                            embedding_model=self.embedding_model)

    @property
    def builds(self) -> BuildsConfig:
        from features.builds import BuildsConfig

        return BuildsConfig(root=self.workspace / "builds", keep=self.keep_builds)

    @property
    def build(self) -> BuildConfig:
        from features.build import BuildConfig

        return BuildConfig(store_path=self.store_path, spool_path=self.spool_path, builds=self.builds,
                           identity=self.identity)

    @property
    def tracking(self) -> TrackingConfig:
        from models.tracking import TrackingConfig

        if self.mlflow_uri:
            return TrackingConfig(uri=self.mlflow_uri, local_dir=None)
        return TrackingConfig(uri=f"sqlite:///{self.mlruns_dir / 'mlflow.db'}", local_dir=self.mlruns_dir)

    @property
    def gate(self) -> GateConfig:
        from training.gate import GateConfig

        return GateConfig(margin=self.promotion_margin, max_ece=self.max_ece)

    @property
    def send_time(self) -> SendTimeConfig:
        from models.send_time import QuietHours, SendTimeConfig

        try:
            quiet = QuietHours.parse(self.quiet_start, self.quiet_end)
        except ValueError as exc:
            raise SettingsError(f"NHIP_QUIET_START / NHIP_QUIET_END: {exc}") from None
        return SendTimeConfig(prior_strength=self.send_time_prior_strength, explore=self.send_time_explore,
                              quiet=quiet)

    @property
    def training(self) -> TrainingConfig:
        from training.runner import TrainingConfig

        return TrainingConfig(store_path=self.store_path, tracking=self.tracking, identity=self.identity,
                              gate=self.gate, min_events_to_score=self.min_events_to_score,
                              send_time_prior_strength=self.send_time_prior_strength)

    @property
    def retrain_checks(self) -> RetrainConfig:
        from training.retrain import RetrainConfig

        return RetrainConfig(min_new_events=self.retrain_min_new_events,
                             min_label_rate=self.retrain_min_label_rate,
                             max_label_rate=self.retrain_max_label_rate)

    @property
    def activation(self) -> ActivationConfig:
        from serving.activation.context import ActivationConfig

        return ActivationConfig(root=self.workspace / "activation", store_path=self.store_path,
                                serving=self.serving, policy_path=self.policy_file, quiet=self.send_time.quiet)

    @property
    def serving(self) -> ServingConfig:
        from serving.scoring import ServingConfig

        return ServingConfig(builds=self.builds, tracking=self.tracking, vectors=self.vectors,
                             min_events_to_score=self.min_events_to_score, send_time=self.send_time,
                             follow_seconds=self.follow_seconds,
                             fallback_horizon_days=self.fallback_horizon_days,
                             compiled_dir=self.workspace / "compiled")

    @property
    def collector(self) -> CollectorConfig:
        from features.ingest.collector import CollectorConfig

        return CollectorConfig(store_path=self.store_path, spool_path=self.spool_path,
                               api_key=self.collector_api_key)


def get_settings() -> Settings:
    """A fresh Settings from the current environment (tests change the environment between calls)."""
    return Settings()
