"""The promotion gate, the champion history, the tracked runs and the reports.

The gate and the history are pure and tested on tables of cases; the rest runs on small demo models
trained once per session (`tests.registry_demo`).
"""

from __future__ import annotations

import html
import json
import math
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from models.names import PROPENSITY_MODEL, SEND_TIME_MODEL
from nhip.clock import parse_as_of
from tests.registry_demo import SEND_TIME_AS_OF, clone_home
from training.gate import (
    Verdict,
    baseline_failures,
    decide,
    sanity_failures,
    verdict_lines,
)
from training.registry import (
    ChampionMove,
    RegistryError,
    champion_moves,
    champion_stack,
    client,
    format_versions,
    list_versions,
    promote,
    rollback,
)

REQUIRED = ("auc", "pr_auc", "lift_top_decile", "ece")
SANE = {"auc": 0.80, "pr_auc": 0.50, "lift_top_decile": 3.0, "ece": 0.03}
FULL = {"High": 25, "Medium": 25, "Low": 50}


@pytest.mark.parametrize(
    "auc, champion_auc, buckets, ece, margin, promoted, reason",
    [
        (0.80, 0.78, FULL, 0.03, 0.01, True, "auc 0.8000 vs champion 0.7800 (+0.0200) ≥ margin 0.0100"),
        (0.78, 0.78, FULL, 0.03, 0.0, True, "(+0.0000) ≥ margin 0.0000"),
        (0.78, 0.78, FULL, 0.03, 0.01, False, "(+0.0000) < margin 0.0100"),
        (0.75, 0.78, FULL, 0.03, 0.0, False, "auc 0.7500 vs champion 0.7800 (-0.0300) < margin"),
        (0.90, 0.78, {**FULL, "Medium": 0}, 0.03, 0.0, False, "empty bucket on the test snapshot: Medium"),
        (0.90, 0.78, FULL, 0.25, 0.0, False, "calibration error 0.250 above the bound 0.100"),
        (math.nan, 0.78, FULL, 0.03, 0.0, False, "auc is not a finite number (nan)"),
    ],
    ids=["beats by the margin", "ties at margin 0", "ties under a margin", "below", "empty bucket",
         "calibration error too high", "NaN metric"],
)
def test_gate_decisions(auc, champion_auc, buckets, ece, margin, promoted, reason):
    metrics = {**SANE, "auc": auc, "ece": ece}
    failures = sanity_failures(metrics, REQUIRED, buckets, max_ece=0.10)
    promote_it, reasons = decide(metrics, {"auc": champion_auc}, failures, margin, "auc")
    assert promote_it is promoted
    assert any(reason in r for r in reasons), reasons


def test_the_gate_keeps_every_reason_not_just_the_first():
    metrics = {**SANE, "auc": 0.70, "ece": 0.30, "pr_auc": math.nan}
    failures = sanity_failures(metrics, REQUIRED, {"High": 0, "Medium": 5, "Low": 0}, max_ece=0.10)
    promoted, reasons = decide(metrics, {"auc": 0.78}, failures, 0.0, "auc")
    assert not promoted
    assert [r.split(" ")[0] for r in reasons] == ["pr_auc", "empty", "calibration", "auc"]
    assert "High, Low" in reasons[1]


def test_without_a_champion_a_sane_candidate_is_promoted_and_an_unfit_one_is_not():
    assert decide(SANE, None, [], 0.0, "auc") == (True, ["no champion yet"])
    blocked = "the champion (version 1) predicts 60 days, this candidate 30: not comparable"
    assert decide(SANE, None, [blocked], 0.0, "auc") == (False, [blocked])
    promoted, reasons = decide(SANE, {"auc": math.nan}, [], 0.0, "auc")
    assert promoted and "not a finite number" in reasons[0]


def test_send_time_curves_that_lose_to_the_shop_curve_are_unfit():
    metrics = {"holdout_auc": 0.55, "holdout_auc_shop_curve": 0.60}
    assert baseline_failures(metrics, "holdout_auc", "holdout_auc_shop_curve") == [
        "holdout_auc 0.5500 below its baseline holdout_auc_shop_curve 0.6000"]
    assert baseline_failures({**metrics, "holdout_auc": 0.61}, "holdout_auc", "holdout_auc_shop_curve") == []


def test_verdict_lines_show_the_deltas_against_the_champion():
    verdict = Verdict(False, ["auc 0.7700 vs champion 0.7800 (-0.0100) < margin 0.0000"], "auc",
                      {"auc": 0.77, "lift_top_decile": 3.1, "ece": 0.04},
                      {"auc": 0.78, "lift_top_decile": 3.0, "ece": 0.05}, "4",
                      {"auc": -0.01, "lift_top_decile": 0.1, "ece": -0.01})
    head, reason = verdict_lines(PROPENSITY_MODEL, "5", verdict)
    assert head == ("nhip-propensity version 5: kept (champion stays version 4) — AUC 0.770 (-0.010), "
                    "lift@10% 3.100 (+0.100), ECE 0.040 (-0.010) vs champion version 4")
    assert reason.endswith("< margin 0.0000")


def _move(seq, version, previous, action="promote"):
    return ChampionMove(seq, version, previous, action, "2026-09-01T00:00:00+00:00", "lan", "test")


def test_the_champion_history_is_a_stack_that_rollbacks_pop():
    moves = [_move(1, "1", None), _move(2, "2", "1"), _move(3, "1", "2"), _move(4, "2", "1", "rollback")]
    assert champion_stack(moves) == ["1", "2"]
    assert champion_stack(moves + [_move(5, "1", "2", "rollback")]) == ["1"]
    # A champion set before any history was recorded can still be rolled back to.
    assert champion_stack([_move(1, "3", "2")]) == ["2", "3"]


def _run(settings, name, version):
    mlflow_client = client(settings.tracking)
    return mlflow_client.get_run(mlflow_client.get_model_version(name, version).run_id)


def test_each_run_logs_its_data_fingerprint_plots_report_and_a_signed_model(trained_demo):
    import mlflow

    settings = trained_demo.settings
    run = _run(settings, PROPENSITY_MODEL, "2")
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["feature_list"] == "propensity_v1"
    data = json.loads(tags["data.fingerprint"])
    assert data["as_of"] == str(parse_as_of("2026-07-15")) == tags["data.as_of"]
    assert data["events"] > 10_000 and re.fullmatch(r"[0-9a-f]{16}", data["checksum"])
    assert data["train_rows"] > data["test_rows"] > 100
    assert {"auc", "ece", "recency_auc", "bucket_high", "bucket_medium", "bucket_low"} <= set(metrics)
    # Version 2 was compared with version 1 on version 2's own test snapshot.
    assert "champion_auc" in metrics and "vs champion" in tags["promotion_reason"]
    artifacts = {a.path for folder in ("", "plots", "report")
                 for a in client(settings.tracking).list_artifacts(run.info.run_id, folder or None)}
    assert {"plots/lift.png", "plots/calibration.png", "report/propensity.html",
            "data_fingerprint.json", "features.json"} <= artifacts
    mlflow.set_tracking_uri(settings.tracking.uri)
    info = mlflow.models.get_model_info(f"models:/{PROPENSITY_MODEL}/2")
    assert "recency_days" in info.signature.inputs.input_names()
    assert info.saved_input_example_info is not None


def test_every_run_is_tagged_with_the_gate_verdict(trained_demo):
    listing = list_versions(trained_demo.settings.tracking)
    for name, rows in listing.items():
        assert rows, name
        for row in rows:
            assert row.verdict in ("promoted", "kept") and row.reason
        assert rows[-1].reason == "no champion yet"
        champions = [r.version for r in rows if "champion" in r.aliases]
        assert champions == [next(r.version for r in rows if r.verdict == "promoted")]
    lines = format_versions(PROPENSITY_MODEL, listing[PROPENSITY_MODEL])
    assert lines[0].startswith("nhip-propensity — champion: version")
    assert re.search(r"^\s+1\s+\S+ \S+\s+[0-9a-f]{8}\s+2026-06-15\s+0\.\d{3}", lines[3])
    assert all("propensity_v1" in line for line in lines[2:4])


def test_promote_and_rollback_round_trip(trained_demo, tmp_path):
    settings = type(trained_demo.settings)(home=clone_home(trained_demo.home, tmp_path / "home"))
    mlflow_client = client(settings.tracking)

    def champion():
        return str(mlflow_client.get_registered_model(PROPENSITY_MODEL).aliases["champion"])

    promote(settings.tracking, "propensity", "2")  # whatever the gate decided, version 2 is now the champion
    move = promote(settings.tracking, "propensity", "1", by="lan", why="v2 over-targets")
    assert (champion(), move.previous) == ("1", "2")
    assert mlflow_client.get_model_version(PROPENSITY_MODEL, "1").tags["champion.by"] == "lan"
    assert promote(settings.tracking, "propensity", "1") is None  # already the champion: nothing recorded
    assert rollback(settings.tracking, "propensity").version == "2" and champion() == "2"
    assert rollback(settings.tracking, "propensity").version == "1" and champion() == "1"
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        rollback(settings.tracking, "propensity")
    with pytest.raises(RegistryError, match=r"has no version '9' \(versions: 1, 2\)"):
        promote(settings.tracking, "propensity", "9")
    actions = [(m.action, m.version, m.by) for m in champion_moves(mlflow_client, PROPENSITY_MODEL)]
    assert actions[-3:] == [("promote", "1", "lan"), ("rollback", "2", actions[-1][2]),
                            ("rollback", "1", actions[-1][2])]


def test_a_send_time_champion_is_compared_only_on_sends_it_has_not_seen(trained_demo, tmp_path):
    from training.runner import train_send_time

    settings = type(trained_demo.settings)(home=clone_home(trained_demo.home, tmp_path / "home"))
    outcome = train_send_time(settings.training, parse_as_of(SEND_TIME_AS_OF))
    assert not outcome.promoted
    assert "has seen the candidate's holdout sends" in outcome.reason
    assert str(client(settings.tracking).get_registered_model(SEND_TIME_MODEL).aliases["champion"]) == "1"


def test_no_personal_data_in_what_training_logged(trained_demo):
    """Artifacts (models, examples, reports, plots) and the tracking database hold customer ids only."""
    identities = pd.read_csv(trained_demo.data / "identities.csv", dtype=str)
    phones = {re.sub(r"\D", "", p)[-9:] for p in identities.loc[identities["id_type"] == "phone", "id_value"]}
    emails = {e.strip().lower() for e in identities.loc[identities["id_type"] == "email", "id_value"]}
    names = set()
    with open(trained_demo.data / "events.jsonl", encoding="utf-8") as events:
        for line in events:
            name = json.loads(line).get("name")
            if isinstance(name, str) and len(name.split()) >= 2:
                names.add(name.strip())
    assert len(phones) > 100 and len(emails) > 100 and len(names) > 50
    files = [p for p in (trained_demo.home / "mlruns").rglob("*") if p.is_file()]
    assert any(p.name == "python_model.pkl" for p in files) and any(p.suffix == ".db" for p in files)
    for path in files:
        blob = path.read_bytes()
        text = blob.decode("utf-8", errors="ignore").lower()
        digits = set(re.findall(r"(?<!\d)\d{9}(?!\d)", re.sub(r"[ .+()-]", "", text)))
        assert not digits & phones, path
        assert not [e for e in emails if e in text], path
        assert not [n for n in names if n.encode("utf-8") in blob], path


# -- reports, rendered from small fitted models (no MLflow) -------------------------------------------------


def _propensity_result():
    from models.answers import ScoreGate
    from models.clv import answer_clv, lifetime_from_params
    from models.propensity import PropensityModel
    from training.evaluate import (
        classification_metrics,
        expected_calibration_error,
        ranking_metrics,
    )
    from training.propensity import answer_test, metrics_by_source

    rng = np.random.default_rng(3)

    def rows(n):
        frame = pd.DataFrame({"recency_days": rng.exponential(60, n), "n_events": rng.poisson(8, n) + 1.0,
                              "n_purchases": rng.poisson(1, n).astype(float)})
        p = 1 / (1 + np.exp(0.04 * frame["recency_days"] - 0.1 * frame["n_events"] + 0.5))
        frame["label"] = (rng.random(n) < p).astype(int)
        return frame

    train, cal, test = rows(1000), rows(500), rows(800)
    features = ("recency_days", "n_events", "n_purchases")
    model = PropensityModel(features=features, feature_list="test_v1", n_estimators=20)
    model.fit(train[list(features)], train["label"], cal[list(features)], cal["label"])
    test["customer_id"] = [f"c{i}" for i in range(len(test))]
    test["tenure_days"] = test["recency_days"] + 60
    summary = pd.DataFrame({"frequency": 1.0, "recency": 10.0, "T": 100.0, "monetary": 150_000.0},
                           index=test.loc[test["n_purchases"] > 0, "customer_id"])
    gate = ScoreGate(5)  # some customers below it: the report shows the fallbacks' answers too
    test = answer_test(model, test, summary, 30, gate)
    metrics = classification_metrics(test["label"], test["score"])
    metrics["ece"] = expected_calibration_error(test["label"], test["score"])
    recency = ranking_metrics(test["label"], -test["recency_days"])
    lifetime = lifetime_from_params({"pareto_nbd": {"r": 0.6, "alpha": 80.0, "s": 0.55, "beta": 68.0},
                                     "gamma_gamma": {"p": 6.0, "q": 3.6, "gamma": 1.5e5}}, summary, 30)
    clv = answer_clv(test.set_index("customer_id"), summary, lifetime)
    return SimpleNamespace(
        model=model, metrics=metrics, test=test, clv=clv, lifetime=lifetime,
        plan=SimpleNamespace(test=parse_as_of("2026-07-30")),
        baselines={"recency": recency, "bgnbd": {"auc": 0.61, "pr_auc": 0.3, "lift_top_decile": 1.7}},
        details={"gate": gate.describe(), "by_source": metrics_by_source(test)},
    )


FINGERPRINT = {"events": 1234, "first_ts": "2026-01-01 00:00:00", "last_ts": "2026-08-31 12:00:00",
               "checksum": "00ff00ff00ff00ff", "as_of": "2026-07-29 17:00:00"}


def _visible_text(page: str) -> str:
    return html.unescape(re.sub(r'src="data:image/png;base64,[^"]+"', "", page))


def test_the_propensity_report_has_every_section_in_both_languages():
    from training.report import propensity_report

    result = _propensity_result()
    verdict = Verdict(True, ["no champion yet"], "auc", result.metrics)
    page = propensity_report(result, FINGERPRINT, verdict=verdict)
    text = _visible_text(page)
    for vi, en in [("Chất lượng mô hình", "Model quality"), ("Độ nâng (lift)", "Lift"),
                   ("Hiệu chuẩn", "Calibration"), ("Phân bố điểm", "Score histogram"),
                   ("Yếu tố ảnh hưởng nhất", "Top drivers"), ("Nhóm điểm", "Buckets"),
                   ("Rời bỏ và giá trị vòng đời", "Churn and lifetime value"),
                   ("Tệp khách gợi ý", "Suggested audiences"), ("Quyết định thăng hạng", "Promotion decision"),
                   ("Nguồn điểm", "Where the scores come from")]:
        assert f'{vi} <span class="en">/ {en}</span>' in text
    assert re.search(r'class="grade">(Kém|Tạm được|Tốt|Xuất sắc) <span class="en">/ (Poor|Fair|Good|Excellent)',
                     text)
    assert "Sẵn sàng mua / Ready to buy" in text and "top 20%" in text
    assert "BG/NBD" in text and "recency rule" in text  # every baseline sits next to the model
    assert "at least 5 events" in text and "shop" in text  # the gate, and who answered below it
    assert page.count("data:image/png;base64,") == 3  # lift, calibration, histogram
    assert "2026-07-30 00:00" in text  # the fingerprint's as_of, in Vietnam time


def test_the_send_time_report_shows_a_heatmap_per_channel_and_the_fallback_sources():
    from models.send_time import SendTimeModel
    from nhip.clock import hour_of_week
    from training.report import send_time_report

    rng = np.random.default_rng(5)
    stamps = pd.date_range("2026-06-01", periods=60 * 24, freq="h", tz="Asia/Ho_Chi_Minh")[::7]
    sends = pd.DataFrame({"customer_id": rng.choice(["c_a", "c_b", "c_c"], len(stamps)),
                          "channel": rng.choice(["zalo_oa", "email"], len(stamps)),
                          "hour_of_week": hour_of_week(stamps)})
    sends["opened"] = ((sends["hour_of_week"] % 24).between(19, 21) & (rng.random(len(sends)) < 0.7)).astype(int)
    model = SendTimeModel().fit(sends)
    result = SimpleNamespace(model=model, sends=sends, metrics={"sends": float(len(sends)), "holdout_auc": 0.7})
    text = _visible_text(send_time_report(result, FINGERPRINT))
    for channel in ("email", "zalo_oa"):
        assert f'Giờ gửi: {channel} <span class="en">/ Send hours: {channel}</span>' in text
    assert "Nguồn của đường giờ gửi <span class=\"en\">/ Where each customer's curve comes from" in text
    assert "Giờ mở tốt nhất của cửa hàng" in text and "The shop's best opening hours" in text
