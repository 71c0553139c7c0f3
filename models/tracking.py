"""Where the MLflow tracking store and model registry live: shared by training (which logs and
registers) and serving (which loads champions)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TrackingConfig:
    """uri: the tracking URI (NHIP_MLFLOW_URI, or the workspace's SQLite file). local_dir: the folder of
    that file and of the artifacts when tracking is local, None with a tracking server (which keeps
    its own artifacts)."""

    uri: str
    local_dir: Path | None

    @property
    def artifact_root(self) -> str | None:
        return (self.local_dir / "artifacts").as_uri() if self.local_dir else None

    def connect(self):
        """Point MLflow at this store (creating the local folder) and return the `mlflow` module."""
        import mlflow

        if self.local_dir is not None:
            self.local_dir.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.uri)
        return mlflow
