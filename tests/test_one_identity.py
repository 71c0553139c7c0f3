"""One identity configuration for every path: the shop hotline typed into three people's orders.

With NHIP_IDENTITY_MAX_LINKS=2 the hotline (linked to three loyalty cards) is set aside and the three
people stay three customers; with the default 5 it glues them into one. Every path that maps events to
customers must see the same customers as the feature build that serving reads: training sets and their
labels, send-time inputs, batch scoring, erasure and lookalike seeds. The service refuses a champion
trained under another configuration than the build's.
"""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

import features
from features.builds import Builds
from features.identity.graph import IdentityConfig
from features.ingest.importer import ingest_file
from features.store import open_store
from nhip.cli import app
from nhip.clock import parse_as_of
from nhip.settings import get_settings
from synthetic import demo_shop
from tests.conftest import write_jsonl
from training.send_time import send_time_inputs

HOTLINE = "028 3930 9999"
CARDS = ("KH-A", "KH-B", "KH-C")
ZALO = ("z-a", "z-b", "z-c")
BUILD_AS_OF = "2026-08-16"
TRAIN_AS_OF = "2026-08-14"  # data up to here: tested on 2026-07-15, whose 30-day label window it covers


def _trio() -> list[dict]:
    """Three people who each gave the cashier the shop's hotline, follow the OA with their own phone
    and read its messages; each buys again after the build date."""
    rows = []
    for person, (card, zalo) in enumerate(zip(CARDS, ZALO)):
        own_phone = f"09120000{person:02d}"
        for month in (5, 6, 7, 8):
            rows.append({"event_id": f"trio-{card}-{month}", "ts": f"2026-{month:02d}-0{person + 2}T18:00:00+07:00",
                         "channel": "pos", "type": "purchase", "pos_customer_id": card, "phone": HOTLINE,
                         "amount": "350k", "product_id": f"SP00{person + 1}", "category": "Mỹ phẩm"})
            rows.append({"event_id": f"trio-{zalo}-sent-{month}", "ts": f"2026-{month:02d}-1{person}T09:00:00+07:00",
                         "channel": "zalo_oa", "type": "message_sent", "zalo_user_id": zalo,
                         "message_id": f"m-{zalo}-{month}"})
            rows.append({"event_id": f"trio-{zalo}-open-{month}", "ts": f"2026-{month:02d}-1{person}T20:10:00+07:00",
                         "channel": "zalo_oa", "type": "message_opened", "zalo_user_id": zalo,
                         "message_id": f"m-{zalo}-{month}"})
        rows.append({"event_id": f"trio-{zalo}-follow", "ts": "2026-04-20T10:00:00+07:00", "channel": "zalo_oa",
                     "type": "follow", "zalo_user_id": zalo, "pos_customer_id": card, "phone": own_phone})
        rows.append({"event_id": f"trio-{card}-later", "ts": "2026-08-20T18:00:00+07:00", "channel": "pos",
                     "type": "purchase", "pos_customer_id": card, "phone": HOTLINE, "amount": "200k"})
    return rows


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A small demo shop plus the hotline trio, features built and both models trained with
    NHIP_IDENTITY_MAX_LINKS=2 (the whole module runs under that setting)."""
    root = tmp_path_factory.mktemp("one-identity")
    paths = demo_shop.write(demo_shop.generate(customers=200, days=150, seed=5), root / "demo")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("NHIP_HOME", str(root / "home"))
    monkeypatch.setenv("NHIP_IDENTITY_MAX_LINKS", "2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("NHIP_MLFLOW_URI", raising=False)
    monkeypatch.delenv("NHIP_QDRANT_URL", raising=False)
    settings = get_settings()
    settings.ensure_dirs()
    ingest_file(paths["events"], settings.store_path)
    ingest_file(write_jsonl(root / "trio.jsonl", _trio()), settings.store_path)
    runner = CliRunner()
    for command in (["features", "build", "--as-of", BUILD_AS_OF],
                    ["train", "propensity", "--as-of", TRAIN_AS_OF, "--horizon-days", "30"],
                    ["train", "send-time", "--as-of", BUILD_AS_OF]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
    yield settings, root
    monkeypatch.undo()


def _trio_customers(identity: pd.DataFrame) -> set[str]:
    cards = identity[(identity["id_type"] == "pos_customer_id") & identity["id_value"].isin(CARDS)]
    return set(cards["customer_id"])


def test_the_setting_decides_whether_the_hotline_glues_three_people(shop):
    settings, _ = shop
    from features.identity.graph import resolve_graph

    with open_store(settings.store_path) as con:
        strict = resolve_graph(con, parse_as_of(BUILD_AS_OF), IdentityConfig(2))
        loose = resolve_graph(con, parse_as_of(BUILD_AS_OF), IdentityConfig(5))
    assert len(_trio_customers(strict.identity)) == 3
    assert len(_trio_customers(loose.identity)) == 1  # what a path on the default would see


def test_every_path_sees_the_customers_of_the_build(shop):
    settings, root = shop
    build = Builds(settings.builds).open()
    assert build.identity_config == IdentityConfig(2)  # recorded with the build
    served = set(build.table("profiles").index)
    trio = _trio_customers(build.table("identity"))
    assert len(trio) == 3 and trio <= served
    as_of = parse_as_of(BUILD_AS_OF)

    # The notebook API: profiles and a training set with its labels.
    assert set(features.profiles(BUILD_AS_OF).index) == served
    rows = features.training_set([BUILD_AS_OF], horizon_days=30).set_index("customer_id")
    assert set(rows.index) == served
    assert rows.loc[sorted(trio), "label"].tolist() == [1, 1, 1]  # each person's own later purchase

    # Send-time inputs.
    with open_store(settings.store_path) as con:
        inputs = send_time_inputs(con, as_of, settings.identity)
    trio_sends = inputs.sends[inputs.sends["customer_id"].isin(trio)]
    assert trio_sends["customer_id"].nunique() == 3 and set(inputs.sends["customer_id"]) <= served

    # Batch scoring with the champion trained under the same setting.
    output = root / "scores.csv"
    result = CliRunner().invoke(app, ["score", "propensity", "--as-of", BUILD_AS_OF, "--horizon-days", "30",
                                      "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(output)["customer_id"]) == served

    # Lookalike seeds resolve through the build's identity map: one card, one customer.
    seeded = features.lookalike(["KH-B"], k=5, id_type="pos_customer_id")
    card_b = build.table("identity").set_index(["id_type", "id_value"]).loc[("pos_customer_id", "KH-B"),
                                                                            "customer_id"]
    assert seeded.seeds == [card_b]


def test_the_service_refuses_a_champion_of_another_identity_configuration(shop, monkeypatch):
    settings, root = shop
    from features.build import build_features
    from serving.scoring import ModelUnavailable, load_scorer

    assert load_scorer(settings.serving).versions()["features_as_of"]  # same setting: served
    monkeypatch.setenv("NHIP_IDENTITY_MAX_LINKS", "5")
    loose = get_settings()
    result = CliRunner().invoke(app, ["score", "propensity", "--as-of", BUILD_AS_OF, "--horizon-days", "30",
                                      "--output", str(root / "mismatch.csv")])
    assert result.exit_code == 1
    assert "NHIP_IDENTITY_MAX_LINKS=2" in result.output and "NHIP_IDENTITY_MAX_LINKS=5" in result.output
    assert "error:" in result.output and "Traceback" not in result.output
    build_features(loose.build, parse_as_of(BUILD_AS_OF), None, to_qdrant=False)
    try:
        scorer = load_scorer(loose.serving)
        assert scorer.propensity_champion is None and scorer.send_time_champion is None
        assert ("trained with NHIP_IDENTITY_MAX_LINKS=2 but the current feature build resolves customers with "
                "NHIP_IDENTITY_MAX_LINKS=5") in scorer.missing["propensity"]
        with pytest.raises(ModelUnavailable, match="NHIP_IDENTITY_MAX_LINKS=5"):
            load_scorer(loose.serving, need=("send_time",))
    finally:
        build_features(settings.build, parse_as_of(BUILD_AS_OF), None, to_qdrant=False)


def test_erasing_one_person_behind_the_hotline_erases_only_them(shop):
    settings, _ = shop
    result = CliRunner().invoke(app, ["erase", "--id-type", "pos_customer_id", "--value", "KH-A"])
    assert result.exit_code == 0, result.output
    assert "1 customer(s)" in result.output
    with open_store(settings.store_path) as con:
        left = dict(con.execute("SELECT pos_customer_id, count(*) FROM events WHERE pos_customer_id "
                                "IN ('KH-A', 'KH-B', 'KH-C') GROUP BY ALL").fetchall())
    # With the default 5 the three cards were one customer, and all three people would have gone.
    assert set(left) == {"KH-B", "KH-C"} and left["KH-B"] == left["KH-C"] == 6
