"""Always on, across processes: everything at once on one workspace, kill -9 of the collector and of a
build, and the service swapping champions and builds under a steady stream of requests.

Every part runs as a user runs it: the collector and the service are `nhip collect` and `nhip serve` in
their own processes (`tests.servers`), the jobs are child processes (`tests.workers`).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from features.build import build_features
from features.builds import Builds
from features.store import open_store, store_writer
from models.answers import ScoreGate, answer_propensity
from models.names import PROPENSITY_MODEL, SEND_TIME_MODEL
from nhip.clock import parse_as_of
from nhip.settings import Settings
from serving.champions import load_champion
from tests.registry_demo import SEND_TIME_AS_OF, clone_home
from tests.servers import REPO, collector, service
from training.registry import client, promote

pytestmark = pytest.mark.slow
KEY = "test-collector-key"
WINDOW = {"window_start": "2026-09-02T08:00:00+07:00", "window_end": "2026-09-03T08:00:00+07:00"}


@pytest.fixture
def live(trained_demo, tmp_path):
    """A clone of the trained demo with a feature build (vectors included), propensity version 2 the
    champion."""
    settings = Settings(home=clone_home(trained_demo.home, tmp_path / "home"))
    promote(settings.tracking, "propensity", "2")
    build_features(settings.build, parse_as_of(SEND_TIME_AS_OF), settings.vectors, to_qdrant=False)
    return settings


def _env(settings: Settings) -> dict[str, str]:
    """The environment that runs the CLI on `settings`' workspace, with a service that looks for new
    champions and builds every second."""
    return {"NHIP_HOME": str(settings.home), "HF_HUB_OFFLINE": "1", "NHIP_FOLLOW_SECONDS": "1"}


def _events(prefix: str, n: int) -> list[dict]:
    return [{"event_id": f"{prefix}-{i}", "ts": f"2026-08-14T{8 + i % 12:02d}:00:00+07:00", "channel": "zalo_oa",
             "type": "message_opened", "zalo_user_id": f"z-{prefix}-{i % 25}", "message_id": f"m-{prefix}-{i}"}
            for i in range(n)]


def _stored(settings: Settings, prefix: str) -> dict[str, int]:
    """event_id → times stored, for the events whose id starts with `prefix`."""
    with open_store(settings.store_path) as con:
        rows = con.execute("SELECT event_id, count(*) FROM events WHERE starts_with(event_id, $p) GROUP BY 1",
                           {"p": prefix}).fetchall()
    return dict(rows)


class Calls:
    """A client thread calling the service without a break, recording every answer."""

    def __init__(self, base: str, customers: list[str]):
        self.base, self.customers = base, customers
        self.answers: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as http:
            for n in itertools.count():
                if self._stop.is_set():
                    return
                route, body = (("/propensity", {"customer_ids": self.customers}) if n % 2 == 0 else
                               ("/send_time", {"customer_ids": self.customers, "channel": "zalo_oa", **WINDOW}))
                sent = time.monotonic()
                try:
                    response = http.post(route, json=body)
                    status, payload = response.status_code, response.json()
                except httpx.HTTPError as exc:
                    status, payload = None, {"error": repr(exc)}
                self.answers.append({"route": route, "sent": sent, "received": time.monotonic(),
                                     "status": status, "body": payload})

    def __enter__(self) -> Calls:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def wait_for(self, route: str, predicate, timeout: float = 30.0) -> float:
        """Seconds until an answer on `route` satisfies `predicate`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if any(a["route"] == route and a["status"] == 200 and predicate(a["body"]) and a["sent"] >= started
                   for a in list(self.answers)):
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"no answer on {route} matched within {timeout:.0f} s")


# -- everything at once ----------------------------------------------------------------------------------

JOBS = ("ingest", "build", "train", "score", "notebook")


def test_everything_runs_at_once_on_one_workspace(live):
    window = 45.0
    spans: dict[str, list[dict]] = {name: [] for name in (*JOBS, "collector", "service")}
    acknowledged: list[str] = []
    with collector(_env(live), KEY) as (collector_base, _), service(_env(live)) as service_base:
        customers = list(Builds(live.builds).open().table("profiles").index[:10])
        deadline = time.time() + window
        jobs = {name: subprocess.Popen([sys.executable, "-m", "tests.workers", name, str(live.home), str(deadline)],
                                       cwd=REPO, env={**os.environ, **_env(live)}, stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, text=True) for name in JOBS}

        def post_events() -> None:
            with httpx.Client(base_url=collector_base, headers={"X-API-Key": KEY}, timeout=30) as http:
                for n in itertools.count():
                    if time.time() >= deadline:
                        return
                    batch = _events(f"at-once-{n}", 50)
                    start = time.time()
                    response = http.post("/events", json=batch)
                    ok = response.status_code == 200 and response.json()["accepted"] == 50
                    spans["collector"].append({"start": start, "end": time.time(), "ok": ok,
                                               "error": None if ok else response.text})
                    if ok:
                        acknowledged.extend(e["event_id"] for e in batch)
                    time.sleep(0.2)

        def call_service() -> None:
            with httpx.Client(base_url=service_base, timeout=30) as http:
                while time.time() < deadline:
                    start = time.time()
                    response = http.post("/propensity", json={"customer_ids": customers})
                    ok = response.status_code == 200
                    spans["service"].append({"start": start, "end": time.time(), "ok": ok,
                                             "error": None if ok else response.text})
                    time.sleep(0.1)

        threads = [threading.Thread(target=f) for f in (post_events, call_service)]
        for thread in threads:
            thread.start()
        for name, process in jobs.items():
            out, _ = process.communicate(timeout=window + 300)
            spans[name] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        for thread in threads:
            thread.join(timeout=60)

    failures = {name: [s["error"] for s in runs if not s["ok"]][:2] for name, runs in spans.items()}
    assert not any(failures.values()), failures
    assert all(spans[name] for name in spans), {name: len(runs) for name, runs in spans.items()}
    for a, b in itertools.combinations(spans, 2):  # every pair was at work at the same moment
        assert any(x["start"] < y["end"] and y["start"] < x["end"] for x in spans[a] for y in spans[b]), (a, b)
    stored = _stored(live, "at-once-")
    assert set(stored) == set(acknowledged) and set(stored.values()) == {1}


# -- kill -9 ---------------------------------------------------------------------------------------------


def test_events_the_collector_acknowledged_survive_its_kill_9(live):
    http = httpx.Client(headers={"X-API-Key": KEY}, timeout=30)
    with collector(_env(live), KEY) as (base, process):
        stored_batch = _events("kill-stored", 40)
        answer = http.post(f"{base}/events", json=stored_batch).json()
        assert answer["stored"] is True and answer["accepted"] == 40
        process.send_signal(signal.SIGKILL)  # right after its answer
        process.wait()
    assert set(_stored(live, "kill-stored").values()) == {1} and len(_stored(live, "kill-stored")) == 40

    # Another writer holds the store longer than the collector waits to answer: the answer says the batch
    # is queued, and the collector dies before it could store it.
    with collector(_env(live), KEY) as (base, process):
        with store_writer(live.store_path, doing="a long erasure"):
            queued_batch = _events("kill-queued", 30)
            answer = http.post(f"{base}/events", json=queued_batch).json()
            assert answer["stored"] is False and answer["accepted"] == 30
            process.send_signal(signal.SIGKILL)
            process.wait()
    assert _stored(live, "kill-queued") == {}
    assert len(list(live.spool_path.glob("*.json"))) == 1  # durable in the spool

    with collector(_env(live), KEY) as (base, _):  # a new collector stores what the old one left
        deadline = time.monotonic() + 30
        while len(_stored(live, "kill-queued")) < 30 and time.monotonic() < deadline:
            time.sleep(0.2)
        again = http.post(f"{base}/events", json=queued_batch).json()  # the client's retry
        assert again["duplicates"] == 30
    assert set(_stored(live, "kill-queued").values()) == {1} and len(_stored(live, "kill-queued")) == 30

    summary = build_features(live.build, parse_as_of("2026-08-15"), None, to_qdrant=False)
    identity = Builds(live.builds).open().table("identity")
    assert identity["id_value"].str.startswith("z-kill-queued-").sum() == 25  # in the next build, once
    assert summary.build_id == Builds(live.builds).open().build_id
    http.close()


CHILD_BUILD = """
import sys, time
from pathlib import Path
from features import builds
from features.build import build_features
from nhip.clock import parse_as_of
from nhip.settings import Settings

def pause(moment):
    print(moment, flush=True)
    time.sleep(60)

moment = sys.argv[2]
if moment == "tables written":
    publish = builds.Builds.publish
    builds.Builds.publish = lambda self, draft, meta: (pause(moment), publish(self, draft, meta))
else:  # renamed into place, `current` not yet rewritten
    write_durably = builds.write_durably
    builds.write_durably = lambda path, data: pause(moment) if path.name == "current" else write_durably(path, data)
settings = Settings(home=Path(sys.argv[1]))
build_features(settings.build, parse_as_of("2026-08-01"), settings.vectors, to_qdrant=False)
"""


@pytest.mark.parametrize("moment", ["tables written", "renamed, not current"])
def test_a_build_killed_half_way_leaves_the_current_build_serving(live, moment):
    builds = Builds(live.builds)
    before = builds.open()
    child = subprocess.Popen([sys.executable, "-c", CHILD_BUILD, str(live.home), moment], cwd=REPO,
                             env={**os.environ, **_env(live)}, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == moment
    child.send_signal(signal.SIGKILL)
    child.wait()

    assert builds.open().build_id == before.build_id  # readers still open the build that was current
    assert [b.build_id for b in builds.all()][-1] == before.build_id or moment != "tables written"
    summary = build_features(live.build, parse_as_of("2026-08-01"), None, to_qdrant=False)
    assert builds.open().build_id == summary.build_id
    assert not list(live.builds.root.glob(".draft-*"))  # the half-built draft is gone


# -- swaps under a steady stream of requests ---------------------------------------------------------------


def _expected_scores(settings: Settings, build_id: str, customers: list[str]) -> dict[str, float]:
    build = next(b for b in Builds(settings.builds).all() if b.build_id == build_id)
    model = load_champion(settings.tracking, PROPENSITY_MODEL).model
    scores = answer_propensity(model, build.table("profiles"), build.table("repeat"), model.horizon_days,
                               ScoreGate(settings.min_events_to_score))
    return {c: scores.loc[c, "score"] for c in customers if scores.loc[c, "status"] == "scored"}


def test_the_service_swaps_champions_and_builds_under_steady_requests(live):
    customers = list(Builds(live.builds).open().table("profiles").index[:30])
    first_build = Builds(live.builds).open().build_id
    expected = {(f"{PROPENSITY_MODEL}/2", first_build): _expected_scores(live, first_build, customers)}
    with service(_env(live)) as base, Calls(base, customers) as calls:
        calls.wait_for("/propensity", lambda b: b["model_version"] == f"{PROPENSITY_MODEL}/2")
        promote(live.tracking, "propensity", "1")
        expected[(f"{PROPENSITY_MODEL}/1", first_build)] = _expected_scores(live, first_build, customers)
        champion_seconds = calls.wait_for("/propensity", lambda b: b["model_version"] == f"{PROPENSITY_MODEL}/1")

        second = build_features(live.build, parse_as_of("2026-08-01"), live.vectors, to_qdrant=False)
        expected[(f"{PROPENSITY_MODEL}/1", second.build_id)] = _expected_scores(live, second.build_id, customers)
        build_seconds = calls.wait_for("/propensity", lambda b: b["build_id"] == second.build_id)
        calls.wait_for("/send_time", lambda b: b["build_id"] == second.build_id)
        time.sleep(1)
        versions = httpx.get(f"{base}/model_versions").json()

    answers = calls.answers
    assert champion_seconds < 30 and build_seconds < 30
    assert all(a["status"] == 200 for a in answers), [a for a in answers if a["status"] != 200][:3]
    slowest = max(a["received"] - a["sent"] for a in answers)
    gaps = [b["received"] - a["received"] for a, b in zip(answers, answers[1:])]
    assert slowest < 1.0 and max(gaps) < 1.0, (slowest, max(gaps))
    seen = []
    for answer in answers:
        body = answer["body"]
        assert body["build_id"] is not None and body["model_version"]
        if answer["route"] == "/propensity":
            key = (body["model_version"], body["build_id"])
            assert key in expected, key  # only the versions that were current, in no other combination
            for row in body["results"]:
                if row["status"] == "scored":  # the scores are that champion's over that build, unmixed
                    assert row["score"] == pytest.approx(expected[key][row["customer_id"]])
            if not seen or seen[-1] != key:
                seen.append(key)
        else:
            assert body["model_version"] == f"{SEND_TIME_MODEL}/1"
    assert seen == list(expected)  # old → new champion → new build, never back
    assert versions["propensity"] == f"{PROPENSITY_MODEL}/1" and versions["build_id"] == second.build_id
    assert versions["last_swap"]["ok"] is True


def test_a_service_with_one_model_answers_it_and_503s_the_other(live):
    client(live.tracking).delete_registered_model_alias(SEND_TIME_MODEL, "champion")
    with service(_env(live)) as base:
        ready = httpx.get(f"{base}/readyz").json()
        assert ready["ready"] and ready["models"]["propensity"]["ready"]
        assert not ready["models"]["send_time"]["ready"] and "nhip train send-time" in \
            ready["models"]["send_time"]["reason"]
        customers = list(Builds(live.builds).open().table("profiles").index[:3])
        refused = httpx.post(f"{base}/send_time", json={"customer_ids": customers, "channel": "zalo_oa", **WINDOW})
        assert refused.status_code == 503 and "no champion of nhip-send-time" in refused.text
        answered = httpx.post(f"{base}/propensity", json={"customer_ids": customers})
        assert answered.status_code == 200 and answered.json()["model_version"].startswith(PROPENSITY_MODEL)
        versions = httpx.get(f"{base}/model_versions").json()
        assert versions["send_time"] is None and versions["models"]["send_time"]["reason"]

        # Without a propensity champion either, the fallbacks answer (the shop has purchases), and say so.
        client(live.tracking).delete_registered_model_alias(PROPENSITY_MODEL, "champion")
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/model_versions").json()["propensity"] is not None:
            assert time.monotonic() < deadline, "the service did not follow the alias' removal"
            time.sleep(0.5)
        body = httpx.post(f"{base}/propensity", json={"customer_ids": customers}).json()
        assert body["model_version"] is None
        assert all(r["status"] == "scored" and r["source"] in ("btyd", "shop") for r in body["results"])


# -- nhip up ---------------------------------------------------------------------------------------------


def test_up_brings_an_acknowledged_event_into_served_scores_and_stops_cleanly(live):
    from features.erasure import normalise_identifier
    from features.identity.graph import customer_id_for
    from tests.servers import NHIP, free_port, wait_for

    collector_port, service_port = free_port(), free_port()
    env = {**os.environ, **_env(live), "NHIP_COLLECTOR_API_KEY": KEY, "NHIP_REFRESH_MINUTES": "0.1"}
    up = subprocess.Popen([*NHIP, "up", "--collector-port", str(collector_port), "--service-port", str(service_port)],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(up.stdout), daemon=True)
    reader.start()
    service_base, collector_base = f"http://127.0.0.1:{service_port}", f"http://127.0.0.1:{collector_port}"
    try:
        wait_for(service_base, "/readyz", up)
        wait_for(collector_base, "/healthz", up)
        probe = {"event_id": "up-probe", "ts": "2026-08-20T09:00:00+07:00", "channel": "pos", "type": "purchase",
                 "phone": "0912 000 777", "amount": 150000}
        answer = httpx.post(f"{collector_base}/events", json=[probe], headers={"X-API-Key": KEY}).json()
        assert answer["accepted"] == 1
        acknowledged = time.monotonic()
        customer = customer_id_for("phone", normalise_identifier("phone", probe["phone"]))
        while True:
            body = httpx.post(f"{service_base}/propensity", json={"customer_ids": [customer]}).json()
            if body["results"][0]["status"] != "unknown":
                break
            assert time.monotonic() - acknowledged < 60, "".join(lines[-30:])
            time.sleep(0.5)
        assert body["features_as_of"].startswith("2026-08-20 09:00")  # the probe's build
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=60)
        reader.join(timeout=10)
    log = "".join(lines)
    assert code == 0, log
    for part in ("collector", "service"):
        assert f"[{part}] stopped" in log, log
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{service_base}/healthz", timeout=2)
    assert not list(live.spool_path.glob("*.json"))
