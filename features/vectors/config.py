"""Where profile vectors live and which embedding model makes them: the vector stage's configuration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class VectorConfig:
    """The vector stores of one workspace.

    qdrant_url: a Qdrant server (NHIP_QDRANT_URL), or None for embedded Qdrant in `qdrant_path`.
    qdrant_path: the embedded Qdrant folder ($NHIP_HOME/qdrant).
    embedding_model: a local sentence-transformers folder (NHIP_EMBEDDING_MODEL), or None for the
    packaged MiniLM.
    The in-process snapshot lives in each feature build (`features.builds`).
    """

    qdrant_url: str | None
    qdrant_path: Path
    embedding_model: str | None
