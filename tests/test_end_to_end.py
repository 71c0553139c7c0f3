"""The whole path on a small generated dataset: CLI → store → features → MLflow → BentoML over HTTP."""

from __future__ import annotations

import html
import json
import os

import httpx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from nhip.cli import app
from nhip.settings import Settings
from tests.servers import service

pytestmark = pytest.mark.slow
WINDOW = {"window_start": "2026-09-02T08:00:00+07:00", "window_end": "2026-09-03T08:00:00+07:00"}


def _cli(env: dict, *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, f"nhip {' '.join(args)} failed:\n{result.output}\n{result.exception!r}"
    return result.stdout


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Run the documented commands once; the tests below inspect what they left behind."""
    root = tmp_path_factory.mktemp("e2e")
    env = {"NHIP_HOME": str(root / "home"), "HF_HUB_OFFLINE": "1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the CLI reads settings from the environment
    try:
        _cli(env, "demo-data", "--out", str(root / "data"), "--customers", "300", "--days", "200")
        ingest = json.loads(_cli(env, "ingest", str(root / "data" / "events.jsonl"), "--json"))
        _cli(env, "features", "build", "--as-of", "2026-08-29")
        _cli(env, "train", "propensity", "--as-of", "2026-08-29", "--horizon-days", "30")
        _cli(env, "train", "send-time", "--as-of", "2026-08-29")
        _cli(env, "report", "--out", str(root / "reports"))
        _cli(env, "score", "propensity", "--as-of", "2026-08-29", "--horizon-days", "30",
             "--output", str(root / "propensity.csv"))
        _cli(env, "score", "clv", "--as-of", "2026-08-29", "--horizon-days", "30",
             "--output", str(root / "clv.csv"))
        _cli(env, "score", "send-time", "--channel", "zalo_oa", "--from", "2026-09-02T08:00",
             "--to", "2026-09-03T08:00", "--output", str(root / "send_time.csv"))
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return {"root": root, "env": env, "ingest": ingest, "settings": Settings(home=root / "home")}


def test_ingest_accounts_for_every_row(pipeline):
    report = pipeline["ingest"]
    assert report["rows_read"] > 10_000
    assert report["rows_read"] == report["accepted"] + report["duplicates"] + report["quarantined"]


def test_state_stays_in_the_workspace(pipeline):
    home = pipeline["root"] / "home"
    assert (home / "store" / "manifest.json").exists()
    assert (home / "builds" / "current").exists()
    assert (home / "qdrant").is_dir()
    assert (home / "mlruns" / "mlflow.db").exists()


def test_score_files_follow_the_contract(pipeline):
    root = pipeline["root"]
    scores = pd.read_csv(root / "propensity.csv")
    assert list(scores.columns[:2]) == ["customer_id", "phone"]
    assert list(scores.columns[-5:]) == ["score", "percentile", "bucket", "source", "reason"]
    assert set(scores["bucket"]) <= {"High", "Medium", "Low", "unscored"}
    assert scores.loc[scores["bucket"] == "unscored", "score"].isna().all()
    assert scores["score"].dropna().between(0, 1).all()
    # Every customer is answered, and the rows say by whom: the model above the gate, fallbacks below.
    assert scores["score"].notna().all() and set(scores["source"]) <= {"model", "btyd", "shop"}
    assert "model" in set(scores["source"])
    clv = pd.read_csv(root / "clv.csv")
    assert list(clv.columns[:2]) == ["customer_id", "phone"]
    assert list(clv.columns[-6:]) == ["p_alive", "expected_purchases", "expected_spend", "churn_risk", "source",
                                      "reason"]
    assert set(clv["customer_id"]) == set(scores["customer_id"])
    assert clv["expected_purchases"].notna().all() and (clv["expected_spend"] >= 0).all()
    assert set(clv["source"]) <= {"model", "btyd", "shop"} and "model" in set(clv["source"])
    buyers = clv["p_alive"].notna()
    assert buyers.any() and set(clv.loc[buyers, "churn_risk"]) <= {"High", "Medium", "Low"}
    assert clv.loc[~buyers, "churn_risk"].isna().all()
    times = pd.read_csv(root / "send_time.csv")
    assert list(times.columns[-4:]) == ["send_at", "score", "source", "explored"]
    assert set(times["source"].dropna()) <= {"customer", "activity", "segment", "shop"}
    assert not times["explored"].any()  # exploration is off unless asked for
    hours = pd.to_datetime(times["send_at"].dropna(), utc=True).dt.tz_convert("Asia/Ho_Chi_Minh").dt.hour
    assert hours.between(8, 21).all()


def test_reports_are_written_without_personal_data(pipeline):
    root = pipeline["root"]
    reports = sorted(p.name for p in (root / "reports").glob("*.html"))
    assert reports == ["propensity.html", "send_time.html"]
    text = (root / "reports" / "propensity.html").read_text(encoding="utf-8")
    assert "Model quality" in text and "Chất lượng mô hình" in text
    assert "Churn and lifetime value" in text and "Rời bỏ và giá trị vòng đời" in text
    assert 'The "at risk" audience' in html.unescape(text)
    identities = pd.read_csv(root / "data" / "identities.csv", dtype=str)
    phones = identities.loc[identities["id_type"] == "phone", "id_value"].head(50)
    assert not any(p in text for p in phones)


def test_a_trained_model_ranks_an_active_buyer_above_a_silent_customer(pipeline):
    from models.names import PROPENSITY_MODEL
    from serving.champions import load_champion

    model = load_champion(pipeline["settings"].tracking, PROPENSITY_MODEL).model
    common = dict.fromkeys(model.features_, 0.0)
    active = {**common, "tenure_days": 150, "recency_days": 0.5, "purchase_recency_days": 3,
              "n_purchases": 6, "n_purchases_30d": 2, "n_purchases_90d": 4, "monetary_total": 3e6,
              "monetary_avg": 5e5, "purchase_interval_days": 20, "n_events": 200, "n_events_7d": 20,
              "n_events_30d": 60, "n_page_views_30d": 25, "n_product_views_30d": 20,
              "n_add_to_cart_7d": 2, "n_add_to_cart_30d": 4, "cart_recency_days": 1, "n_channels": 3,
              "n_distinct_products": 8, "open_rate_90d": 0.5}
    silent = {**common, "tenure_days": 400, "recency_days": 365, "purchase_recency_days": 380,
              "n_purchases": 1, "monetary_total": 2e5, "monetary_avg": 2e5, "n_events": 5,
              "n_channels": 1, "n_distinct_products": 1, "cart_recency_days": 390}
    # The blend's input, Pareto/NBD's expected purchase days: a regular buyer against a lapsed one.
    p = model.predict_proba(pd.DataFrame([active, silent]), blend=np.array([2.0, 0.02]))[:, 1]
    assert p[0] > p[1] + 0.1


READ_KEY, ADMIN_KEY = "e2e-read-0d9f3a", "e2e-admin-7c21b4"
KEYS = {"NHIP_API_KEYS": f"automation:read:{READ_KEY},ops:admin:{ADMIN_KEY}"}


def test_service_over_http_matches_the_models_in_process(pipeline, tmp_path):
    from serving.scoring import load_scorer

    log = tmp_path / "service.log"
    with service({**pipeline["env"], **KEYS}, log=log) as base:
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.post(f"{base}/propensity", json={"customer_ids": ["c1"]}).status_code == 401
        http = httpx.Client(base_url=base, headers={"X-API-Key": READ_KEY}, timeout=30)
        admin = httpx.Client(base_url=base, headers={"X-API-Key": ADMIN_KEY}, timeout=30)

        scorer = load_scorer(pipeline["settings"].serving)
        ids = [*scorer.profiles.index[:5], "c_unknown"]
        got = http.post("/propensity", json={"customer_ids": ids}).json()
        assert got["model_version"] == scorer.versions()["propensity"]
        expected = scorer.propensity(ids)
        for answer, want in zip(got["results"], expected):
            assert answer["customer_id"] == want["customer_id"]
            assert answer["status"] == want["status"]
            if want["status"] == "scored":
                assert answer["score"] == pytest.approx(want["score"])
                assert answer["bucket"] == want["bucket"]
        assert got["results"][-1]["status"] == "unknown"

        got = http.post("/clv", json={"customer_ids": ids}).json()
        assert got["model_version"] == scorer.versions()["propensity"] and got["horizon_days"] == 30
        for answer, want in zip(got["results"], scorer.clv(ids)):
            assert answer["status"] == want["status"] and answer["source"] == want.get("source")
            assert answer["churn_risk"] == want.get("churn_risk")
            if want["status"] == "scored":
                assert answer["expected_spend"] == pytest.approx(want["expected_spend"])
        assert got["results"][-1]["status"] == "unknown"

        body = {"customer_ids": ids, "channel": "zalo_oa", **WINDOW}
        got = http.post("/send_time", json=body).json()
        expected = scorer.send_time(ids, "zalo_oa", WINDOW["window_start"], WINDOW["window_end"])
        for answer, want in zip(got["results"], expected):
            assert answer["status"] == want["status"]
            if want["status"] == "scored":
                assert pd.Timestamp(answer["send_at"]) == pd.Timestamp(want["send_at"])
                assert answer["score"] == pytest.approx(want["score"])

        bad = http.post("/send_time", json={**body, "window_end": WINDOW["window_start"]})
        assert bad.status_code == 400
        # An unknown channel is refused with the allowed values, not answered with a scored hour.
        pigeon = http.post("/send_time", json={**body, "channel": "pigeon"})
        assert pigeon.status_code == 400
        assert "channel" in pigeon.text and "zalo_oa" in pigeon.text

        # Lookalike and next products over HTTP agree with the notebook API on the same build.
        import features

        seeds = list(scorer.profiles.index[:3])
        got = admin.post("/lookalike", json={"seeds": [*seeds, "c_unknown"], "k": 10,
                                                    "channel": "zalo_oa"}).json()
        want = features.lookalike(seeds, k=10, channel="zalo_oa", settings=pipeline["settings"])
        assert [c["customer_id"] for c in got["customers"]] == want.customers["customer_id"].tolist()
        assert not set(seeds) & {c["customer_id"] for c in got["customers"]}
        assert got["unknown_seeds"] == ["c_unknown"]
        buyer = seeds[0]
        got = http.post("/next_products", json={"customer_id": buyer, "k": 5}).json()
        want = features.next_products(buyer, k=5, settings=pipeline["settings"])
        assert got["source"] == want.source
        assert [i["product_id"] for i in got["items"]] == want.items["product_id"].tolist()
        missing = http.post("/next_products", json={"customer_id": "c_unknown"})
        assert missing.status_code == 404
        assert admin.post("/lookalike", json={"seeds": []}).status_code == 400
        assert http.post("/lookalike", json={"seeds": seeds}).status_code == 403  # a read key lists no one

        # What an operator sees: a request id on every answer, the counters, an access log without people.
        answer = http.post("/propensity", json={"customer_ids": [*ids, "0912345678"]},
                           headers={"X-Request-ID": "e2e-1"})
        assert answer.headers["x-request-id"] == "e2e-1"
        metrics = http.get("/metrics").text
        version = scorer.versions()["propensity"]
        assert f'nhip_requests_total{{endpoint="/propensity",model_version="{version}",status="200"}}' in metrics
        assert 'nhip_answers_total{endpoint="/propensity",model_version="' in metrics
        assert 'nhip_unknown_ids_total{endpoint="/propensity"}' in metrics
        assert "bentoml_service_request_total{" in metrics  # BentoML's own, beside ours
    logged = log.read_text()
    assert "e2e-1 POST /propensity 200" in logged and "key=automation" in logged
    assert "0912345678" not in logged and READ_KEY not in logged and ADMIN_KEY not in logged


def test_the_fuzzer_finds_nothing_over_http(pipeline):
    """The long schemathesis profile (60 examples per operation, every check) against the service over
    a build with vectors, BentoML's own routes included. The short one runs in tests/test_api.py."""
    from tests.test_api import KEYS as API_KEYS
    from tests.test_api import fuzz

    with service({**pipeline["env"], "NHIP_API_KEYS": API_KEYS}) as base:
        result = fuzz(base, "--max-examples", "60")
    assert result.returncode == 0, result.stdout[-6000:]
