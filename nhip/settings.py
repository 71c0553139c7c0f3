"""One settings object for the whole product, read from `NHIP_*` environment variables.

Nothing here touches the disk at import time: paths are computed, folders are created only by
`Settings.ensure_dirs()`, which the commands that write call explicitly.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
        default=3, description="customers with fewer events by as_of are `unscored`"
    )
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

    @property
    def workspace(self) -> Path:
        return (self.home or Path("var")).resolve()

    @property
    def store_path(self) -> Path:
        return self.workspace / "events.duckdb"

    @property
    def qdrant_path(self) -> Path:
        return self.workspace / "qdrant"

    @property
    def mlruns_dir(self) -> Path:
        return (self.home / "mlruns" if self.home else Path("mlruns")).resolve()

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_uri:
            return self.mlflow_uri
        return f"sqlite:///{self.mlruns_dir / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str:
        return (self.mlruns_dir / "artifacts").as_uri()

    def ensure_dirs(self) -> None:
        self.workspace.mkdir(parents=True, exist_ok=True)
        if not self.mlflow_uri:
            self.mlruns_dir.mkdir(parents=True, exist_ok=True)


def get_settings() -> Settings:
    """A fresh Settings from the current environment (tests change the environment between calls)."""
    return Settings()
