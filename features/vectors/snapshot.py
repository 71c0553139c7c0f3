"""The in-process snapshot backend: float32 matrices in a feature build's `vectors/` folder, searched
exactly in numpy. A build's snapshot never changes; a newer build brings a new one (`features.builds`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from features.vectors.layout import (
    ITEMS,
    KEY_FIELDS,
    Collection,
    Hit,
    profile_matrix,
    split_profile,
)

SNAPSHOT_CONTENT_DIMS = 64




def write_snapshot(folder: Path, collections: Sequence[Collection]) -> None:
    """Write collections (compacted: `compact_collections`) as a snapshot into a new folder."""
    folder.mkdir(parents=True, exist_ok=False)
    for coll in collections:
        payload = coll.payload.copy()
        payload.insert(0, KEY_FIELDS[coll.name], coll.keys)
        payload.reset_index(drop=True).to_parquet(folder / f"{coll.name}.parquet", index=False)
        for using, matrix in coll.vectors.items():
            np.save(folder / f"{coll.name}.{using}.npy", np.ascontiguousarray(matrix, dtype=np.float32))
    (folder / "manifest.json").write_text(json.dumps(
        {"collections": {c.name: sorted(c.vectors) for c in collections}}), encoding="utf-8")


def snapshot_without(source: Path, target: Path, name: str, keys: Sequence[str]) -> int:
    """Copy the snapshot in `source` to `target` without `keys` of collection `name` (erasure); returns
    how many of them were there."""
    manifest = json.loads((source / "manifest.json").read_text(encoding="utf-8"))
    collections, present = [], 0
    for coll_name in manifest["collections"]:
        data = _Loaded(source, coll_name)
        keep = np.ones(len(data.keys), bool)
        if coll_name == name:
            keep = ~np.isin(data.keys.astype(str), list(keys))
            present = int((~keep).sum())
        collections.append(Collection(
            coll_name, list(data.keys[keep]), {k: np.asarray(v)[keep] for k, v in data.vectors.items()},
            data.payload.iloc[keep].reset_index(drop=True)))
    write_snapshot(target, collections)
    return present


def content_basis(item_vectors: np.ndarray, dims: int = SNAPSHOT_CONTENT_DIMS) -> np.ndarray:
    """Orthonormal rows spanning the catalogue's embeddings (top `dims` right singular vectors)."""
    if item_vectors.size == 0:
        return np.eye(dims, 384, dtype=np.float32)
    _, s, vt = np.linalg.svd(item_vectors.astype(np.float64), full_matrices=False)
    basis = np.zeros((dims, item_vectors.shape[1]))
    keep = min(dims, int((s > 1e-6 * s[0]).sum()))
    basis[:keep] = vt[:keep]
    return basis.astype(np.float32)


def _project(matrix: np.ndarray, basis: np.ndarray) -> np.ndarray:
    projected = matrix @ basis.T
    norms = np.linalg.norm(projected, axis=1, keepdims=True)
    return (projected / np.where(norms == 0, 1, norms)).astype(np.float32)


def compact_collections(collections: Sequence[Collection]) -> list[Collection]:
    """The snapshot's form: content parts expressed in the catalogue basis (exact while rank ≤ 64)."""
    items = next(c for c in collections if c.name == ITEMS)
    basis = content_basis(items.vectors["content"])
    out = []
    for coll in collections:
        vectors = {}
        for using, matrix in coll.vectors.items():
            if using == "content":
                vectors[using] = _project(matrix, basis)
            elif using == "profile":
                behaviour, content = split_profile(matrix)
                vectors[using] = profile_matrix(behaviour, _project(content, basis))
            else:
                vectors[using] = matrix
        out.append(Collection(coll.name, coll.keys, vectors, coll.payload))
    return out


class _Loaded:
    def __init__(self, folder: Path, name: str):
        self.payload = pd.read_parquet(folder / f"{name}.parquet")
        self.keys = self.payload[KEY_FIELDS[name]].to_numpy(dtype=object)
        self.payload = self.payload.set_index(KEY_FIELDS[name])
        self.row = dict(zip(self.keys, range(len(self.keys))))
        self.vectors = {p.name.split(".")[1]: np.load(p, mmap_mode="r")
                        for p in folder.glob(f"{name}.*.npy")}
        self.flags = {(c, v): self.payload[c].to_numpy(dtype=bool) != v for c in self.payload.columns
                      if self.payload[c].dtype == bool for v in (True, False)}  # rows a filter drops
        self.columns = {c: self.payload[c].to_numpy() for c in self.payload.columns}

    def record(self, i: int) -> dict:
        return {c: values[i].item() if hasattr(values[i], "item") else values[i]
                for c, values in self.columns.items()}


def _one_blas_thread():
    """A context that keeps BLAS on one thread: a 30 MB scan gains nothing from a second thread, and on
    a busy 2-core machine waiting for it tripled the p99 (BENCHMARKS.md)."""
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        except ImportError:
            _BLAS = False
    return _BLAS.limit(limits=1, user_api="blas") if _BLAS else contextlib.nullcontext()


_BLAS = None


class SnapshotStore:
    """Exact search over one build's snapshot, loaded once."""

    def __init__(self, folder: Path | None):
        if folder is None or not (folder / "manifest.json").exists():
            raise LookupError("no profile vectors in the current feature build; run "
                              "`nhip features build --as-of DATE` (with vectors)")
        self.folder = folder
        self._loaded: dict[str, _Loaded] = {}

    def _get(self, name: str) -> _Loaded:
        if name not in self._loaded:
            loaded = _Loaded(self.folder, name)
            loaded.vectors = {k: np.ascontiguousarray(v) for k, v in loaded.vectors.items()}
            self._loaded[name] = loaded
        return self._loaded[name]

    def search(self, name, using, vector, limit, require=None, exclude=()):
        data = self._get(name)
        with _one_blas_thread():
            scores = data.vectors[using] @ np.asarray(vector, dtype=np.float32)
        for column, value in (require or {}).items():
            np.copyto(scores, -np.inf, where=data.flags[(column, bool(value))])
        rows = [i for i in (data.row.get(k) for k in exclude) if i is not None]
        scores[rows] = -np.inf
        n, limit = len(scores), min(limit, len(scores))
        if limit <= 0:
            return []
        top = np.argpartition(scores, n - limit)[n - limit:]
        top = top[np.argsort(-scores[top], kind="stable")]
        top = top[np.isfinite(scores[top])]
        return [Hit(data.keys[i], float(scores[i]), data.record(i)) for i in top]

    def fetch(self, name, using, keys):
        data = self._get(name)
        rows = ((key, data.row.get(key)) for key in keys)
        return {key: np.array(data.vectors[using][i]) for key, i in rows if i is not None}

    def scan(self, name):
        return self._get(name).payload

    def close(self) -> None:
        self._loaded.clear()
