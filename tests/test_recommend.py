"""Lookalike and next products on a tiny hand-written shop, built with the packaged MiniLM model."""

from __future__ import annotations

import pytest

import features
from features.build import build_features
from features.ingest.importer import ingest_file
from nhip.clock import parse_as_of
from tests.conftest import write_jsonl

PRODUCTS = {
    "sp1": ("Sữa rửa mặt trà xanh", "Mỹ phẩm"), "sp2": ("Kem chống nắng SPF50", "Mỹ phẩm"),
    "sp3": ("Serum vitamin C", "Mỹ phẩm"), "sp4": ("Son kem lì", "Mỹ phẩm"),
    "tt1": ("Áo sơ mi nam", "Thời trang nam"), "tt2": ("Quần tây nam", "Thời trang nam"),
}


def _buy(n, phone, day, product):
    name, category = PRODUCTS[product]
    return {"event_id": f"b{n}", "ts": f"2026-03-{day:02d}T10:00:00+07:00", "channel": "pos",
            "type": "purchase", "phone": phone, "amount": "300.000đ", "product_id": product,
            "product_name": name, "category": category}


def _follow(n, phone, zalo):
    return {"event_id": f"f{n}", "ts": "2026-03-01T09:00:00+07:00", "channel": "zalo_oa", "type": "follow",
            "zalo_user_id": zalo, "phone": phone}


AN, BINH, CUONG, DUNG, EM = "0912000001", "0912000002", "0912000003", "0912000004", "0912000005"
EVENTS = [
    _follow(1, AN, "z-an"), _follow(2, BINH, "z-binh"), _follow(4, DUNG, "z-dung"), _follow(5, EM, "z-em"),
    _buy(1, AN, 2, "sp1"), _buy(2, AN, 12, "sp2"), _buy(3, AN, 25, "sp3"),
    _buy(4, BINH, 3, "sp1"), _buy(5, BINH, 13, "sp2"), _buy(6, BINH, 26, "sp3"),
    _buy(7, CUONG, 3, "sp1"), _buy(8, CUONG, 13, "sp2"), _buy(9, CUONG, 26, "sp3"),  # no consent
    _buy(10, EM, 5, "tt1"), _buy(11, EM, 6, "tt2"), _buy(12, EM, 7, "tt1"),
    _buy(13, CUONG, 20, "sp4"),
    {"event_id": "v1", "ts": "2026-03-20T10:00:00+07:00", "channel": "web", "type": "page_view",
     "anonymous_id": "anon-dung", "phone": DUNG, "category": "Thời trang nam"},
]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    home = tmp_path_factory.mktemp("shop")
    mp = pytest.MonkeyPatch()
    mp.setenv("NHIP_HOME", str(home / "home"))
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.delenv("NHIP_QDRANT_URL", raising=False)
    from nhip.settings import get_settings

    settings = get_settings()
    ingest_file(write_jsonl(home / "events.jsonl", EVENTS), settings.store_path)
    build_features(settings.build, parse_as_of("2026-03-31"), settings.vectors, to_qdrant=False)
    yield settings
    mp.undo()


def _customer(settings, phone):
    result = features.lookalike([phone], k=1, settings=settings)
    return result.seeds[0]


def test_lookalike_ranks_the_twin_first_and_excludes_seeds_and_non_consenting(shop):
    result = features.lookalike([AN], k=10, channel="zalo_oa", settings=shop)
    an, binh, cuong = (_customer(shop, p) for p in (AN, BINH, CUONG))
    assert result.seeds == [an] and result.unknown_seeds == []
    ids = result.customers["customer_id"].tolist()
    assert ids[0] == binh
    assert an not in ids and cuong not in ids  # seed, and no Zalo consent
    without_filter = features.lookalike([AN], k=10, settings=shop).customers["customer_id"].tolist()
    assert cuong in without_filter[:2]
    assert result.customers["similarity"].is_monotonic_decreasing


def test_lookalike_reports_unknown_seeds_and_accepts_customer_ids(shop):
    binh = _customer(shop, BINH)
    result = features.lookalike([" 0912 000 001 ", "0999999999", "nobody@example.com", binh], k=3,
                                settings=shop)
    assert result.unknown_seeds == ["0999999999", "nobody@example.com"]
    assert len(result.seeds) == 2 and binh in result.seeds


def test_next_products_exclude_recent_purchases(shop):
    an = _customer(shop, AN)
    result = features.next_products(an, k=3, settings=shop)
    assert result.source == "vector"
    assert set(result.excluded) == {"sp1", "sp2", "sp3"}  # all within 30 days of 2026-03-31
    assert result.items["product_id"].iloc[0] == "sp4"  # the other cosmetic, before the menswear
    assert set(result.items["product_id"]) == {"sp4", "tt1", "tt2"}
    kept = features.next_products(an, k=6, exclude_days=0, settings=shop)
    assert kept.excluded == [] and len(kept.items) == 6


def test_cold_profiles_fall_back_to_popular_items(shop):
    dung = _customer(shop, DUNG)
    result = features.next_products(dung, k=2, settings=shop)
    assert result.source == "popular_in_categories"
    assert set(result.items["product_id"]) == {"tt1", "tt2"}
    assert result.items["product_id"].iloc[0] == "tt1"  # bought twice


def test_the_service_recommender_answers_from_its_build_while_the_store_is_written(shop, tmp_path):
    import subprocess
    import sys

    from features.builds import Builds
    from features.vectors.stores import open_vector_store
    from serving.recommender import Recommender

    build = Builds(shop.builds).open()
    vectors = open_vector_store(shop.vectors, build)
    recommender = Recommender(build, vectors)
    try:
        answer = recommender.lookalike([AN], k=2, channel="zalo_oa", id_type=None)
        assert answer["customers"][0]["customer_id"] == _customer(shop, BINH)
        with pytest.raises(ValueError, match="seeds is empty"):
            recommender.lookalike([], k=2, channel=None, id_type=None)

        an = _customer(shop, AN)
        before = recommender.next_products(an, k=3, exclude_days=30)
        # Another process holds the store's writer lock (an import, an erasure) …
        code = ("import sys, time; from pathlib import Path; from features.store import store_writer\n"
                "with store_writer(Path(sys.argv[1]), doing='importing'):\n"
                "    print('locked', flush=True); time.sleep(30)")
        writer = subprocess.Popen([sys.executable, "-c", code, str(shop.store_path)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert writer.stdout.readline().strip() == "locked"
            assert recommender.next_products(an, k=3, exclude_days=30) == before
            # … and a new build is published: the recommender keeps answering from the build it opened.
            build_features(shop.build, parse_as_of("2026-03-15"), shop.vectors, to_qdrant=False)
            assert recommender.next_products(an, k=3, exclude_days=30) == before
        finally:
            writer.kill()
            writer.wait()
    finally:
        vectors.close()
        build_features(shop.build, parse_as_of("2026-03-31"), shop.vectors, to_qdrant=False)
