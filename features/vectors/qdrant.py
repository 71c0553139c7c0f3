"""The Qdrant backend (embedded or server): collections behind aliases, swapped atomically."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.vectors.config import VectorConfig
from features.vectors.layout import ID_PREFIXES, KEY_FIELDS, Collection, Hit, point_id


def open_qdrant(config: VectorConfig):
    """A qdrant-client for the workspace: embedded on disk by default, a server with NHIP_QDRANT_URL.

    Embedded mode allows one process at a time on a folder; commands open it only while they work.
    """
    from qdrant_client import QdrantClient

    if config.qdrant_url:
        return QdrantClient(url=config.qdrant_url)
    config.qdrant_path.mkdir(parents=True, exist_ok=True)
    return QdrantClient(path=str(config.qdrant_path))


def collection_behind(client, alias: str) -> str | None:
    """The collection an alias points at (None when there is none yet)."""
    for entry in client.get_aliases().aliases:
        if entry.alias_name == alias:
            return entry.collection_name
    return None


def _swap_in(client, alias: str, collection: str) -> None:
    from qdrant_client import models

    old = [name] if (name := collection_behind(client, alias)) else []
    actions = [models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))] if old else []
    actions.append(models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)))
    client.update_collection_aliases(change_aliases_operations=actions)
    for name in old:
        if name != collection:
            client.delete_collection(name)


def _plain(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return None if pd.isna(value) else float(value)
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


class QdrantStore:
    """Collections behind aliases in Qdrant; searches go through the alias, so a swap is atomic."""

    def __init__(self, client):
        self.client = client

    def _id(self, name: str, key: str) -> str:
        return point_id(f"{ID_PREFIXES[name]}{key}")

    def replace(self, collections: Sequence[Collection], stamp: str) -> None:
        from qdrant_client import models

        for coll in collections:
            target = f"{coll.name}_{stamp}"
            self.client.create_collection(target, vectors_config={
                using: models.VectorParams(size=matrix.shape[1], distance=models.Distance.DOT)
                for using, matrix in coll.vectors.items()
            })
            key_field = KEY_FIELDS[coll.name]
            records = coll.payload.to_dict("records")
            points = [
                models.PointStruct(
                    id=self._id(coll.name, key),
                    vector={using: matrix[i].tolist() for using, matrix in coll.vectors.items()},
                    payload={key_field: key, **{k: _plain(v) for k, v in records[i].items()}},
                )
                for i, key in enumerate(coll.keys)
            ]
            self.client.upload_points(target, points, batch_size=256)
        for coll in collections:
            _swap_in(self.client, coll.name, f"{coll.name}_{stamp}")

    def search(self, name, using, vector, limit, require=None, exclude=()):
        from qdrant_client import models

        must = [models.FieldCondition(key=k, match=models.MatchValue(value=v)) for k, v in (require or {}).items()]
        must_not = [models.HasIdCondition(has_id=[self._id(name, k) for k in exclude])] if exclude else []
        result = self.client.query_points(
            name, query=np.asarray(vector, dtype=np.float32).tolist(), using=using, limit=limit,
            query_filter=models.Filter(must=must, must_not=must_not) if (must or must_not) else None,
            with_payload=True,
        )
        key_field = KEY_FIELDS[name]
        return [Hit(p.payload[key_field], float(p.score), p.payload) for p in result.points]

    def fetch(self, name, using, keys):
        points = self.client.retrieve(name, ids=[self._id(name, k) for k in keys], with_vectors=[using],
                                      with_payload=[KEY_FIELDS[name]])
        return {p.payload[KEY_FIELDS[name]]: np.asarray(p.vector[using], dtype=np.float32) for p in points}

    def scan(self, name):
        rows, offset = [], None
        while True:
            points, offset = self.client.scroll(name, limit=1024, offset=offset, with_payload=True)
            rows += [p.payload for p in points]
            if offset is None:
                break
        return pd.DataFrame(rows).set_index(KEY_FIELDS[name]) if rows else pd.DataFrame()

    def delete(self, name, keys):
        from qdrant_client import models

        collection = collection_behind(self.client, name)
        if collection is None:
            return 0
        ids = [self._id(name, k) for k in keys]
        present = len(self.client.retrieve(collection, ids=ids, with_payload=False))
        self.client.delete(collection, points_selector=models.PointIdsList(points=ids), wait=True)
        return present

    def close(self) -> None:
        self.client.close()
