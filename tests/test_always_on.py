"""Always on, in process: the refresh, the service's follower (swaps, refused swaps), and the shops with
only one of the two models.

The multi-process behaviour (everything at once, kill -9, swaps under a stream of HTTP requests) is in
`tests/test_always_on_processes.py`.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.build import build_features
from features.builds import Builds
from features.ingest.importer import import_rows, ingest_file
from features.ingest.spool import batch_rows
from features.refresh import BUILT, BUSY, EMPTY, UNCHANGED, refresh
from models.answers import ScoreGate, answer_propensity
from models.names import CHAMPION_ALIAS, PROPENSITY_MODEL, SEND_TIME_MODEL
from nhip.cli import app
from nhip.clock import parse_as_of, utcnow
from nhip.settings import Settings
from serving.champions import load_champion
from serving.scoring import ModelUnavailable, Scorer
from serving.state import Follower, load_state
from tests.conftest import TINY_EVENTS, write_jsonl
from tests.registry_demo import SEND_TIME_AS_OF, clone_home
from training.registry import client, promote

# -- the refresh -------------------------------------------------------------------------------------------


def test_a_refresh_builds_only_when_events_arrived_and_never_waits_for_another_build(workspace, tmp_path):
    assert refresh(workspace.build, None).status == EMPTY
    ingest_file(write_jsonl(tmp_path / "e.jsonl", TINY_EVENTS), workspace.store_path)

    first = refresh(workspace.build, None)
    assert first.status == BUILT and first.build.customers > 0
    assert refresh(workspace.build, None).status == UNCHANGED

    # An event from a clock in the future is stored but not built over: as of is never later than now.
    future = {"event_id": "f1", "ts": "2099-01-01T10:00:00+07:00", "channel": "web", "type": "page_view",
              "anonymous_id": "anon-future"}
    import_rows(workspace.store_path, batch_rows([future]), "clock-skew")
    again = refresh(workspace.build, None)
    assert again.status == BUILT and again.build.as_of == first.build.as_of <= utcnow()

    # A build running elsewhere: the refresh skips at once instead of queueing behind it.
    import_rows(workspace.store_path, batch_rows([{**future, "event_id": "f2", "ts": "2026-03-20T10:00:00+07:00"}]),
                "late")
    with Builds(workspace.builds).lock(wait=0):
        started = time.monotonic()
        busy = refresh(workspace.build, None)
    assert busy.status == BUSY and time.monotonic() - started < 5
    assert refresh(workspace.build, None).status == BUILT


def test_a_refresh_first_stores_what_a_dead_collector_left_in_its_spool(workspace, tmp_path):
    ingest_file(write_jsonl(tmp_path / "e.jsonl", TINY_EVENTS), workspace.store_path)
    refresh(workspace.build, None)
    # A batch the collector spooled (and acknowledged) a minute ago, then died before storing it.
    workspace.spool_path.mkdir(parents=True)
    old = f"{time.time_ns() - 60 * 10**9:020d}-deadbeefcafe"
    item = {"event_id": "spooled-1", "ts": "2026-03-21T09:00:00+07:00", "channel": "zalo_oa", "type": "follow",
            "zalo_user_id": "z-spooled"}
    (workspace.spool_path / f"{old}.json").write_text(json.dumps(
        {"source": "collector", "received_at": (utcnow() - timedelta(minutes=1)).isoformat(), "items": [item]}))

    result = refresh(workspace.build, None)
    assert result.status == BUILT and result.recovered_batches == 1
    assert not list(workspace.spool_path.glob("*.json"))
    identity = Builds(workspace.builds).open().table("identity")
    assert (identity["id_value"] == "z-spooled").sum() == 1


def test_refresh_command_says_what_it_did(workspace, tmp_path):
    ingest_file(write_jsonl(tmp_path / "e.jsonl", TINY_EVENTS), workspace.store_path)
    first = CliRunner().invoke(app, ["refresh", "--no-vectors", "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["status"] == BUILT
    second = CliRunner().invoke(app, ["refresh", "--no-vectors"])
    assert second.exit_code == 0 and "no new events" in second.output


# -- the follower ------------------------------------------------------------------------------------------


@pytest.fixture
def live(trained_demo, tmp_path):
    """A clone of the trained demo with a feature build, propensity version 2 the champion."""
    settings = Settings(home=clone_home(trained_demo.home, tmp_path / "home"), follow_seconds=1)
    promote(settings.tracking, "propensity", "2")
    build_features(settings.build, parse_as_of(SEND_TIME_AS_OF), None, to_qdrant=False)
    return settings


def _artifact(settings: Settings, name: str, version: str):
    """The pickled model behind a registered version."""
    source = client(settings.tracking).get_model_version(name, version).source  # models:/m-…
    model_id = source.rsplit("/", 1)[1]
    return next(settings.mlruns_dir.glob(f"artifacts/*/models/{model_id}/artifacts/python_model.pkl"))


def test_the_follower_swaps_in_a_new_champion_and_a_new_build_whole(live):
    follower = Follower(live.serving)
    before = follower.state
    assert before.versions()["propensity"] == f"{PROPENSITY_MODEL}/2"
    customers = list(before.scorer.profiles.index[:20])
    answer_before = before.scorer.propensity(customers)
    assert follower.check() is False  # nothing moved

    promote(live.tracking, "propensity", "1")
    assert follower.check() is True
    after = follower.state
    assert after.versions()["propensity"] == f"{PROPENSITY_MODEL}/1"
    assert after.versions()["build_id"] == before.versions()["build_id"]
    # The old state is untouched: a request that took it before the swap answers wholly from it.
    assert before.versions()["propensity"] == f"{PROPENSITY_MODEL}/2"
    assert before.scorer.propensity(customers) == answer_before
    # The new state's scores are version 1's over the same build, nothing of version 2 mixed in.
    model = load_champion(live.tracking, PROPENSITY_MODEL).model
    expected = answer_propensity(model, after.build.table("profiles"), after.build.table("repeat"),
                                 model.horizon_days, ScoreGate(live.min_events_to_score))
    for row in after.scorer.propensity(customers):
        if row["status"] == "scored":
            assert row["score"] == pytest.approx(expected.loc[row["customer_id"], "score"])

    summary = build_features(live.build, parse_as_of("2026-08-01"), None, to_qdrant=False)
    assert follower.check() is True
    assert follower.state.versions()["build_id"] == summary.build_id
    assert follower.state.scorer.send_time_champion is after.scorer.send_time_champion  # reused, not reloaded
    report = follower.report()
    assert report["last_swap"]["ok"] and report["models"]["send_time"]["ready"]


def test_a_swap_that_fails_keeps_the_old_version_serving_and_says_why(live):
    follower = Follower(live.serving)
    served = follower.state.versions()
    _artifact(live, PROPENSITY_MODEL, "1").write_bytes(b"not a pickle")
    promote(live.tracking, "propensity", "1")

    assert follower.check() is False
    assert follower.state.versions() == served
    report = follower.report()
    assert report["last_swap"]["ok"] is False
    assert f"{PROPENSITY_MODEL} cannot be loaded" in report["last_swap"]["error"]
    assert report["propensity"] == f"{PROPENSITY_MODEL}/2"
    assert follower.check() is False  # not retried while nothing moves

    promote(live.tracking, "propensity", "2")  # the operator moves the alias back
    assert follower.check() is False and follower.state.versions() == served


def test_a_build_the_champions_cannot_score_is_refused(live):
    follower = Follower(live.serving)
    served = follower.state.versions()
    # A build resolved with another identity configuration than the champions were trained with.
    other = Settings(home=live.home, identity_max_links=9)
    build_features(other.build, parse_as_of("2026-08-01"), None, to_qdrant=False)

    assert follower.check() is False
    assert follower.state.versions() == served
    assert "NHIP_IDENTITY_MAX_LINKS" in follower.report()["last_swap"]["error"]


# -- one model on its own -----------------------------------------------------------------------------------


def _drop_champion(settings: Settings, name: str) -> None:
    client(settings.tracking).delete_registered_model_alias(name, CHAMPION_ALIAS)


def test_a_shop_with_only_a_send_time_champion_gets_send_times(live, tmp_path):
    _drop_champion(live, PROPENSITY_MODEL)
    state = load_state(live.serving)
    assert state.ready()["send_time"]["ready"] and state.versions()["propensity"] is None
    assert state.scorer.send_time(list(state.scorer.profiles.index[:3]), "zalo_oa",
                                  "2026-09-02T08:00", "2026-09-03T08:00")
    # Propensity without a champion: the shop has purchases, so the fallbacks answer, and say so.
    assert "no champion of nhip-propensity" in state.ready()["propensity"]["reason"]
    answers = state.scorer.propensity(list(state.scorer.profiles.index))
    assert {a["source"] for a in answers} == {"btyd", "shop"} and all(a["status"] == "scored" for a in answers)

    env = {"NHIP_HOME": str(live.home)}
    out = tmp_path / "send.csv"
    sent = CliRunner().invoke(app, ["score", "send-time", "--channel", "zalo_oa", "--from", "2026-09-02T08:00",
                                    "--to", "2026-09-03T08:00", "--output", str(out)], env=env)
    assert sent.exit_code == 0, sent.output
    scored = CliRunner().invoke(app, ["score", "propensity", "--as-of", SEND_TIME_AS_OF,
                                      "--output", str(tmp_path / "p.csv")], env=env)
    assert scored.exit_code == 0 and "fallbacks only" in " ".join(scored.output.split())
    table = pd.read_csv(tmp_path / "p.csv")
    assert set(table["source"]) == {"btyd", "shop"} and table["score"].notna().all()


def test_a_shop_without_purchases_or_champion_gets_a_503_reason_for_propensity(live):
    _drop_champion(live, PROPENSITY_MODEL)
    build = Builds(live.builds).open()
    scorer = Scorer(None, None, build.table("profiles"), build.table("repeat").iloc[:0], ScoreGate(3),
                    live.send_time, missing={"propensity": "no champion of nhip-propensity yet"})
    why = scorer.propensity_unavailable()
    assert why.startswith("no champion of nhip-propensity yet") and "no purchases" in why
    with pytest.raises(ModelUnavailable, match="no fallback can answer"):
        scorer.propensity(list(build.table("profiles").index[:2]))


def test_a_shop_with_only_a_propensity_champion_gets_scores(live, tmp_path):
    _drop_champion(live, SEND_TIME_MODEL)
    state = load_state(live.serving)
    assert state.ready()["propensity"]["ready"] and not state.ready()["send_time"]["ready"]
    assert state.scorer.propensity(list(state.scorer.profiles.index[:3]))

    env = {"NHIP_HOME": str(live.home)}
    scored = CliRunner().invoke(app, ["score", "propensity", "--as-of", SEND_TIME_AS_OF, "--horizon-days", "30",
                                      "--output", str(tmp_path / "p.csv")], env=env)
    assert scored.exit_code == 0, scored.output
    sent = CliRunner().invoke(app, ["score", "send-time", "--channel", "zalo_oa", "--from", "2026-09-02T08:00",
                                    "--to", "2026-09-03T08:00", "--output", str(tmp_path / "s.csv")], env=env)
    assert sent.exit_code == 1 and "nhip train send-time" in " ".join(sent.output.split())


# -- nhip up --------------------------------------------------------------------------------------------

FAKE_NHIP = """
import signal, sys, time
part = sys.argv[1]
if part in ("collect", "serve"):
    signal.signal(signal.SIGTERM, lambda *_: (print("bye", flush=True), sys.exit(0)))
    print("listening", flush=True)
    while True:
        time.sleep(0.1)
print(part, "ran", flush=True)
"""


def test_up_runs_the_parts_restarts_a_dead_server_and_stops_them_all():
    import os
    import signal as signals
    import sys
    from datetime import datetime
    from datetime import time as clock_time

    from nhip.clock import LOCAL_FIXED_TZ
    from nhip.system import System, SystemConfig, next_daily, parse_clock

    assert parse_clock("02:00") == clock_time(2, 0)
    with pytest.raises(ValueError, match="HH:MM"):
        parse_clock("2am")
    late = datetime(2026, 12, 2, 3, 0, tzinfo=LOCAL_FIXED_TZ)
    assert next_daily(clock_time(2, 0), late) == datetime(2026, 12, 3, 2, 0, tzinfo=LOCAL_FIXED_TZ)

    now = [datetime(2026, 12, 2, 1, 59, 59, tzinfo=LOCAL_FIXED_TZ)]
    lines: list[str] = []
    system = System(SystemConfig(refresh_minutes=60, retrain_at=clock_time(2, 0), collector_port=8100,
                                 service_port=3000), [sys.executable, "-c", FAKE_NHIP], dict(os.environ),
                    log=lines.append, now=lambda: now[0])

    def settle(condition, seconds=10.0):
        deadline = time.monotonic() + seconds
        while not condition() and time.monotonic() < deadline:
            system.tick()
            time.sleep(0.05)
        assert condition(), lines

    settle(lambda: any("[refresh] done" in line for line in lines))  # a refresh at start
    assert system.running("collector") and system.running("service") and not system.running("retrain")
    now[0] = datetime(2026, 12, 2, 2, 0, 1, tzinfo=LOCAL_FIXED_TZ)  # the nightly retrain is due
    settle(lambda: any("[retrain] retrain ran" in line for line in lines))

    dead = system.parts["service"].process.pid
    os.kill(dead, signals.SIGKILL)
    # Wait for the new server to say it listens: before that its SIGTERM handler may not be installed yet
    # and a stop would kill it without its "bye".
    settle(lambda: system.running("service") and system.parts["service"].process.pid != dead
           and sum(line.endswith("[service] listening") for line in lines) == 2)
    assert any("[service] exited with code -9" in line for line in lines)

    system.stop()
    system.run()  # stops at once: every part gets SIGTERM
    assert not system.running("collector") and not system.running("service")
    assert lines[-1].endswith("[up] stopped") and sum(line.endswith("] bye") for line in lines) == 2
