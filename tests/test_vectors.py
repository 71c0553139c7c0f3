"""Vector stores: the snapshot's exact search with filters, erasure, and the Qdrant server switch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.vectors.layout import ITEMS, PROFILES, Collection, profile_matrix
from features.vectors.qdrant import QdrantStore
from features.vectors.snapshot import SnapshotStore, compact_collections, snapshot_without
from features.vectors.snapshot import write_snapshot as write_folder
from features.vectors.stores import open_vector_store


def _unit(m):
    m = np.asarray(m, dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def collections(keys=("a", "b", "c"), consent=(True, True, False)) -> list[Collection]:
    rng = np.random.default_rng(0)
    items = _unit(rng.standard_normal((4, 384)))
    content = _unit(rng.random((len(keys), 4)) @ items)
    behaviour = _unit(rng.standard_normal((len(keys), 8)))
    payload = pd.DataFrame({"consent_zalo_oa": list(consent), "has_content": True})
    item_payload = pd.DataFrame({"product_name": list("wxyz"), "category": ["k", "k", "m", "m"],
                                 "purchases": [4.0, 3.0, 2.0, 1.0]})
    return [Collection(PROFILES, list(keys), {"profile": profile_matrix(behaviour, content)}, payload),
            Collection(ITEMS, ["i1", "i2", "i3", "i4"], {"content": items}, item_payload)]


def write_snapshot(root, colls, stamp):
    """The snapshot a build with id `stamp` writes, in its folder."""
    folder = root / stamp
    write_folder(folder, compact_collections(colls))
    return folder


def test_snapshot_basis_keeps_dot_products(tmp_path):
    colls = collections()
    compact = compact_collections(colls)
    full = colls[0].vectors["profile"] @ colls[0].vectors["profile"].T
    small = compact[0].vectors["profile"] @ compact[0].vectors["profile"].T
    assert compact[0].vectors["profile"].shape[1] == 8 + 64
    np.testing.assert_allclose(full, small, atol=1e-5)


def test_search_filters_excludes_and_ranks(tmp_path):
    store = SnapshotStore(write_snapshot(tmp_path / "builds", collections(), "1"))
    a = store.fetch(PROFILES, "profile", ["a"])["a"]
    assert store.search(PROFILES, "profile", a, 3)[0].key == "a"
    hits = store.search(PROFILES, "profile", a, 3, require={"consent_zalo_oa": True}, exclude=["a"])
    assert [h.key for h in hits] == ["b"]
    assert store.fetch(PROFILES, "profile", ["nobody"]) == {}


def test_a_snapshot_is_read_whole_once_opened(tmp_path):
    first = write_snapshot(tmp_path / "builds", collections(keys=("a", "b", "c")), "1")
    reader = SnapshotStore(first)
    assert set(reader.scan(PROFILES).index) == {"a", "b", "c"}
    write_snapshot(tmp_path / "builds", collections(keys=("d", "e", "f")), "2")
    assert set(reader.scan(PROFILES).index) == {"a", "b", "c"}  # a newer build does not disturb it


def test_erasure_copies_the_snapshot_without_the_customers(tmp_path):
    source = write_snapshot(tmp_path / "builds", collections(), "1")
    assert snapshot_without(source, tmp_path / "builds" / "2", PROFILES, ["a", "zz"]) == 1
    assert set(SnapshotStore(tmp_path / "builds" / "2").scan(PROFILES).index) == {"b", "c"}
    assert set(SnapshotStore(source).scan(PROFILES).index) == {"a", "b", "c"}


def test_qdrant_alias_swap_keeps_readers_on_the_old_collection_until_the_swap(tmp_path):
    from qdrant_client import QdrantClient

    store = QdrantStore(QdrantClient(path=str(tmp_path / "q")))
    try:
        store.replace(collections(keys=("a", "b", "c")), "1")
        a = store.fetch(PROFILES, "profile", ["a"])["a"]
        hits = store.search(PROFILES, "profile", a, 3, require={"consent_zalo_oa": True}, exclude=["a"])
        assert [h.key for h in hits] == ["b"]
        store.replace(collections(keys=("d", "e", "f")), "2")
        assert set(store.scan(PROFILES).index) == {"d", "e", "f"}
        assert [c.name for c in store.client.get_collections().collections if c.name.startswith("profiles")] \
            == ["profiles_2"]
    finally:
        store.close()


def test_server_url_switches_to_a_qdrant_client_on_that_url(workspace, monkeypatch):
    import qdrant_client

    made = {}

    class FakeClient:
        def __init__(self, **kwargs):
            made.update(kwargs)

        def close(self):
            pass

    monkeypatch.setattr(qdrant_client, "QdrantClient", FakeClient)
    monkeypatch.setenv("NHIP_QDRANT_URL", "http://qdrant.internal:6333")
    from nhip.settings import get_settings

    store = open_vector_store(get_settings().vectors, None)
    assert isinstance(store, QdrantStore) and made == {"url": "http://qdrant.internal:6333"}
    assert not (workspace.workspace / "qdrant").exists()


def test_without_a_build_the_snapshot_says_so(workspace):
    with pytest.raises(LookupError, match="features build"):
        open_vector_store(workspace.vectors, None)
