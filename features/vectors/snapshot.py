"""The in-process snapshot backend: float32 matrices under NHIP_HOME/vectors/<stamp>/, made current
by an atomic rename, searched exactly in numpy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Sequence
from datetime import datetime
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




def current_snapshot(root: Path) -> Path | None:
    pointer = root / "current"
    if not pointer.exists():
        return None
    folder = root / pointer.read_text(encoding="utf-8").strip()
    return folder if folder.is_dir() else None


def _write_snapshot(root: Path, collections: Sequence[Collection], stamp: str, keep_previous: bool) -> None:
    folder = root / stamp
    folder.mkdir(parents=True, exist_ok=False)
    for coll in collections:
        payload = coll.payload.copy()
        payload.insert(0, KEY_FIELDS[coll.name], coll.keys)
        payload.reset_index(drop=True).to_parquet(folder / f"{coll.name}.parquet", index=False)
        for using, matrix in coll.vectors.items():
            np.save(folder / f"{coll.name}.{using}.npy", np.ascontiguousarray(matrix, dtype=np.float32))
    (folder / "manifest.json").write_text(json.dumps(
        {"stamp": stamp, "collections": {c.name: sorted(c.vectors) for c in collections}}), encoding="utf-8")
    temp = root / f"current.{stamp}.tmp"
    temp.write_text(stamp, encoding="utf-8")
    os.replace(temp, root / "current")
    # Keep the previous snapshot for readers that read the pointer just before the swap (not after an
    # erasure: its bytes must go).
    previous = sorted((p for p in root.iterdir() if p.is_dir() and p.name != stamp), reverse=True)
    for old in previous[1 if keep_previous else 0:]:
        shutil.rmtree(old, ignore_errors=True)


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
    """Exact search over the current snapshot, loaded once; a later build does not disturb it."""

    def __init__(self, root: Path):
        self.root = root
        self.folder = current_snapshot(root)
        if self.folder is None:
            raise LookupError("no profile vectors built yet; run `nhip features build --as-of DATE`")
        self._loaded: dict[str, _Loaded] = {}

    def _get(self, name: str) -> _Loaded:
        if name not in self._loaded:
            loaded = _Loaded(self.folder, name)
            loaded.vectors = {k: np.ascontiguousarray(v) for k, v in loaded.vectors.items()}
            self._loaded[name] = loaded
        return self._loaded[name]

    def replace(self, collections, stamp):
        _write_snapshot(self.root, compact_collections(collections), stamp, keep_previous=True)

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

    def delete(self, name, keys):
        """Write a new snapshot without the keys and drop every older one (used by erasure)."""
        present = set(keys) & set(self._get(name).keys)
        if not present:
            return 0
        collections = []
        manifest = json.loads((self.folder / "manifest.json").read_text(encoding="utf-8"))
        for coll_name in manifest["collections"]:
            data = _Loaded(self.folder, coll_name)
            keep = np.ones(len(data.keys), bool)
            if coll_name == name:
                keep = ~np.isin(data.keys.astype(str), list(present))
            collections.append(Collection(
                coll_name, list(data.keys[keep]), {k: np.asarray(v)[keep] for k, v in data.vectors.items()},
                data.payload.iloc[keep].reset_index(drop=True)))
        self._loaded.clear()
        stamp = datetime.now().strftime("%Y%m%d%H%M%S%f")
        _write_snapshot(self.root, collections, stamp, keep_previous=False)
        self.folder = current_snapshot(self.root)
        return len(present)

    def close(self) -> None:
        self._loaded.clear()
