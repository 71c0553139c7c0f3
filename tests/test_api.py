"""The API's contract in process: keys and scopes, request ids, the one error shape, limits, pages, the
access log and the counters. The gate and the FastAPI app run as the service runs them (`Gate(api.app)`),
over a real feature build and real champions; tests/test_end_to_end.py does the same over HTTP through
BentoML, with the schemathesis run."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient
from typer.testing import CliRunner

from features.build import build_features
from features.schema import MESSAGE_CHANNELS
from nhip.cli import app as cli
from nhip.clock import parse_as_of
from nhip.settings import Settings
from serving import api
from serving.activation.audiences import AudienceBook
from serving.activation.context import open_context
from serving.activation.planner import decide_one
from serving.activation.policy import load_policy
from serving.auth import ADMIN, READ, identify, parse_keys, require_keys_off_loopback, scope_needed
from serving.metrics import Metrics
from serving.state import Follower, empty_state
from tests.registry_demo import SEND_TIME_AS_OF, clone_home
from tests.servers import service

READ_KEY, ADMIN_KEY, NEXT_KEY = "r-3f9c1d2e7a", "a-8b4e0c6d1f", "r-next-5a7b9c"
KEYS = f"automation:read:{READ_KEY},ops:admin:{ADMIN_KEY},automation-next:read:{NEXT_KEY}"
WINDOW = {"window_start": "2026-08-20T08:00:00+07:00", "window_end": "2026-08-21T08:00:00+07:00"}


@pytest.fixture(scope="module")
def served(trained_demo, tmp_path_factory):
    """The API over a clone of the trained demo with a feature build (vectors in the snapshot), with three
    keys and counters of its own."""
    settings = Settings(home=clone_home(trained_demo.home, tmp_path_factory.mktemp("api") / "home"))
    build_features(settings.build, parse_as_of(SEND_TIME_AS_OF), settings.vectors, to_qdrant=False)
    registry = CollectorRegistry()
    follower = Follower(settings.serving)
    api.configure(api.Context(follower, parse_keys(KEYS), Metrics(registry), activation=settings.activation))
    client = TestClient(api.Gate(api.app))
    ids = list(follower.state.scorer.profiles.index)
    AudienceBook(settings.activation.root).create("likely", "propensity_bucket != 'Low'")
    yield SimpleNamespace(client=client, follower=follower, registry=registry, ids=ids, home=settings.home,
                          settings=settings)
    api.CONTEXT = None


def _post(served, path: str, body, key: str | None = READ_KEY, **kwargs):
    headers = {"X-API-Key": key} if key else {}
    return served.client.post(path, json=body, headers={**headers, **kwargs.pop("headers", {})}, **kwargs)


def _error(response, status: int, field: str | None = None) -> dict:
    """The one error shape, with the request id of the response's header."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message", "field", "allowed", "request_id"}
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["field"] == field
    return body


# -- keys -------------------------------------------------------------------------------------------------


def test_keys_parse_compare_and_scope():
    keys = parse_keys(KEYS)
    assert [(k.name, k.scope) for k in keys] == [("automation", READ), ("ops", ADMIN), ("automation-next", READ)]
    assert identify(keys, ADMIN_KEY.encode()).name == "ops"
    assert identify(keys, b"r-3f9c1d2e7") is None and identify(keys, b"") is None and identify(keys, None) is None
    assert "secret" not in repr(keys[0]) and READ_KEY not in repr(keys)
    for bad, why in (("ops:admin", "not name:scope:secret"), ("ops:root:s3cret-value", "scope 'root'"),
                     ("a:read:one-secret,a:admin:two-secret", "its own name")):
        with pytest.raises(ValueError, match=why) as error:
            parse_keys(bad)
        assert "secret" not in str(error.value).replace("name:scope:secret", "")
    assert scope_needed("/readyz") is None and scope_needed("/healthz") is None
    assert scope_needed("/propensity") == READ and scope_needed("/metrics") == READ
    assert scope_needed("/lookalike") == ADMIN and scope_needed("/scores/clv") == ADMIN


def test_the_service_will_not_answer_beyond_loopback_without_keys(workspace):
    for host in ("127.0.0.1", "::1", "localhost"):
        require_keys_off_loopback(host, ())
    require_keys_off_loopback("0.0.0.0", parse_keys(KEYS))
    with pytest.raises(ValueError, match="NHIP_API_KEYS"):
        require_keys_off_loopback("0.0.0.0", ())
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 1 and "without a key: set NHIP_API_KEYS" in " ".join(result.output.split())
    result = CliRunner().invoke(cli, ["serve"], env={"NHIP_API_KEYS": "ops:root:whatever-secret"})
    assert result.exit_code == 1 and "scope 'root'" in result.output and "whatever-secret" not in result.output


def test_every_endpoint_but_the_health_checks_needs_a_key_of_its_scope(served):
    ids = served.ids[:3]
    _error(_post(served, "/propensity", {"customer_ids": ids}, key=None), 401)
    _error(_post(served, "/propensity", {"customer_ids": ids}, key=READ_KEY[:-1]), 401)
    _error(served.client.get("/metrics"), 401)
    _error(served.client.get("/docs.json"), 401)
    assert served.client.get("/readyz").status_code == 200  # no key: an orchestrator probes it
    for key in (READ_KEY, NEXT_KEY, ADMIN_KEY):  # rotation: the old and the new read key both work
        assert _post(served, "/propensity", {"customer_ids": ids}, key=key).status_code == 200
    refused = _error(_post(served, "/lookalike", {"seeds": ids}, key=READ_KEY), 403)
    assert "automation" in refused["message"] and "admin" in refused["message"]
    _error(served.client.get("/scores/propensity", headers={"X-API-Key": READ_KEY}), 403)
    assert served.client.get("/scores/propensity", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
    assert served.client.get("/model_versions", headers={"X-API-Key": READ_KEY}).status_code == 200


def test_a_request_id_comes_back_and_reaches_the_log(served, caplog):
    caplog.set_level(logging.INFO, logger="nhip.access")
    mine = _post(served, "/propensity", {"customer_ids": served.ids[:1]}, headers={"X-Request-ID": "crm-42.a"})
    assert mine.headers["x-request-id"] == "crm-42.a"
    odd = _post(served, "/propensity", {"customer_ids": served.ids[:1]}, headers={"X-Request-ID": "a b"})
    assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["x-request-id"])
    line = next(r.getMessage() for r in caplog.records if "crm-42.a" in r.getMessage())
    assert " POST /propensity 200 " in line and line.endswith("key=automation")


def test_the_access_log_holds_no_personal_data(served, caplog):
    caplog.set_level(logging.INFO, logger="nhip.access")
    phone, email = "0912345678", "lan.nguyen@example.vn"
    _post(served, "/lookalike", {"seeds": [phone, email], "id_type": "phone"}, key=ADMIN_KEY)
    _post(served, "/propensity", {"customer_ids": [phone, email]})
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/lookalike" in logged and "/propensity" in logged
    assert phone not in logged and email not in logged and ADMIN_KEY not in logged and READ_KEY not in logged


# -- the one error shape ------------------------------------------------------------------------------------


def test_bad_requests_are_400s_that_name_the_field_and_its_values(served):
    ids = served.ids[:2]
    pigeon = _error(_post(served, "/send_time", {"customer_ids": ids, "channel": "pigeon"}), 400, "channel")
    assert pigeon["allowed"] == list(MESSAGE_CHANNELS) and "pigeon" in pigeon["message"]
    _error(_post(served, "/propensity", {"customer_ids": []}), 400, "customer_ids")
    _error(_post(served, "/propensity", {"customer_ids": [""]}), 400, "customer_ids.0")
    _error(_post(served, "/propensity", {"ids": ids}), 400, "customer_ids")
    backwards = {"customer_ids": ids, "window_start": WINDOW["window_end"], "window_end": WINDOW["window_start"]}
    _error(_post(served, "/send_time", backwards), 400, "window_end")
    long = {"customer_ids": ids, "window_start": "2026-08-01T00:00:00+07:00", "window_end": "2026-08-16T00:00:00+07:00"}
    assert "14 days" in _error(_post(served, "/send_time", long), 400, "window_end")["message"]
    _error(_post(served, "/send_time", {"customer_ids": ids, "window_start": "1500-01-01T00:00:00Z"}), 400,
           "window_start")
    _error(_post(served, "/lookalike", {"seeds": ids, "k": 0}, key=ADMIN_KEY), 400, "k")
    _error(_post(served, "/lookalike", {"seeds": ids, "k": -3}, key=ADMIN_KEY), 400, "k")
    assert "phone" in _error(_post(served, "/lookalike", {"seeds": ids, "id_type": "passport"}, key=ADMIN_KEY),
                             400, "id_type")["allowed"]
    _error(_post(served, "/next_products", {"customer_id": ids[0], "exclude_days": -1}), 400, "exclude_days")
    broken = served.client.post("/propensity", content=b'{"customer_ids": [',
                                headers={"X-API-Key": READ_KEY, "Content-Type": "application/json"})
    assert "not valid JSON" in _error(broken, 400)["message"]
    assert "c_nobody" in _error(_post(served, "/next_products", {"customer_id": "c_nobody"}), 404,
                                "customer_id")["message"]
    _error(_post(served, "/next_products", {"customer_id": ids[0], "k": "5"}), 400, "k")
    _error(_post(served, "/send_time", {"customer_ids": ids, "explore": "yes"}), 400, "explore")
    wrong_method = _error(served.client.get("/propensity", headers={"X-API-Key": READ_KEY}), 405)
    assert wrong_method["error"] == "method_not_allowed"


def test_limits_are_10000_ids_and_4_mib(served):
    many = (served.ids * (10_000 // len(served.ids) + 1))[:10_000]
    answer = _post(served, "/propensity", {"customer_ids": many})
    assert answer.status_code == 200 and len(answer.json()["results"]) == 10_000
    over = _error(_post(served, "/propensity", {"customer_ids": [*many, many[0]]}), 413, "customer_ids")
    assert "10,000" in over["message"]
    _error(_post(served, "/send_time", {"customer_ids": [*many, many[0]]}), 413, "customer_ids")
    huge = json.dumps({"customer_ids": ["x" * 250] * 17_000}).encode()  # over 4 MiB
    response = served.client.post("/propensity", content=huge, headers={"X-API-Key": READ_KEY})
    assert "bytes" in _error(response, 413)["message"]


def test_a_missing_model_is_a_503_that_says_why_and_is_counted():
    registry, before = CollectorRegistry(), api.CONTEXT
    nothing = SimpleNamespace(state=empty_state("no feature build yet: run `nhip features build`"),
                              report=lambda: {})
    api.configure(api.Context(nothing, (), Metrics(registry)))
    try:
        client = TestClient(api.Gate(api.app))
        answer = _error(client.post("/propensity", json={"customer_ids": ["c1"]}), 503)
        assert answer["error"] == "unavailable" and "no feature build yet" in answer["message"]
        assert client.get("/readyz").status_code == 503
        assert registry.get_sample_value("nhip_unavailable_total", {"endpoint": "/propensity",
                                                                   "model": "propensity"}) == 1
        assert registry.get_sample_value("nhip_requests_total", {"endpoint": "/propensity", "status": "503",
                                                                "model_version": "none"}) == 1
    finally:
        api.CONTEXT = before


# -- answers: many at once, pages, counters -------------------------------------------------------------------


def test_pages_walk_every_customer_of_the_build_once(served):
    headers = {"X-API-Key": ADMIN_KEY}
    seen, cursor, pages = [], None, 0
    while True:
        page = served.client.get("/scores/propensity", params={"limit": 37, **({"cursor": cursor} if cursor else {})},
                                 headers=headers).json()
        assert page["total"] == len(served.ids)
        seen += page["results"]
        cursor, pages = page["next_cursor"], pages + 1
        if cursor is None:
            break
    assert [r["customer_id"] for r in seen] == served.ids and pages == -(-len(served.ids) // 37)
    asked = _post(served, "/propensity", {"customer_ids": served.ids[:50]}).json()["results"]
    assert seen[:50] == asked
    clv = served.client.get("/scores/clv", params={"limit": 5}, headers=headers).json()
    assert [r["customer_id"] for r in clv["results"]] == served.ids[:5] and clv["horizon_days"] == 30
    stale = served.client.get("/scores/propensity", params={"cursor": "20200101-000000-abcdef~5"}, headers=headers)
    assert "start again" in _error(stale, 409, "cursor")["message"]
    _error(served.client.get("/scores/propensity", params={"cursor": "garbage"}, headers=headers), 400, "cursor")
    _error(served.client.get("/scores/propensity", params={"limit": 10_001}, headers=headers), 400, "limit")


def test_an_audience_pages_its_members_to_admin_keys_only(served):
    _error(_post(served, "/audience", {"name": "likely"}), 403)
    seen, cursor = [], None
    while True:
        page = _post(served, "/audience", {"name": "likely", "limit": 25, **({"cursor": cursor} if cursor else {})},
                     key=ADMIN_KEY).json()
        seen += page["results"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    with open_context(served.settings.activation) as context:
        members = AudienceBook(served.settings.activation.root).members("likely", context)
        frame = context.frame
    assert [r["customer_id"] for r in seen] == list(members) and page["total"] == len(members) > 25
    assert all(r["propensity_bucket"] != "Low" for r in seen)
    assert all(r["consent_email"] == bool(frame.at[r["customer_id"], "consent_email"]) for r in seen)
    _error(_post(served, "/audience", {"name": "nobody"}, key=ADMIN_KEY), 404, "name")


def test_next_best_action_is_the_plans_decision_for_one_customer(served):
    window = {"window_start": "2026-08-20T08:00:00+07:00", "window_end": "2026-08-22T08:00:00+07:00"}
    with open_context(served.settings.activation) as context:
        sendable = context.reach.allowed.any(axis=1)
        ids = list(sendable[sendable].index[:5]) + list(sendable[~sendable].index[:1])
        expected = [decide_one(context, cid, ("email", "sms", "zalo_oa", "zalo_zns"),
                               pd.Timestamp(window["window_start"]), pd.Timestamp(window["window_end"]),
                               load_policy(), served.settings.send_time.quiet) for cid in ids]
    for cid, want in zip(ids, expected):
        got = _post(served, "/next_best_action", {"customer_id": cid, **window}).json()
        assert {k: got[k] for k in ("channel", "send_at", "cost_vnd", "reason")} == \
            {k: want[k] for k in ("channel", "send_at", "cost_vnd", "reason")}
    assert expected[0]["channel"] is not None and expected[-1]["reason"] == "no consent"
    _error(_post(served, "/next_best_action", {"customer_id": "nobody", **window}), 404, "customer_id")
    _error(_post(served, "/next_best_action", {"customer_id": ids[0], "channels": ["pigeon"]}), 400, "channels.0")


def test_send_times_for_many_customers_match_one_at_a_time(served):
    ids = [*served.ids[:40], "c_nobody"]
    together = _post(served, "/send_time", {"customer_ids": ids, **WINDOW}).json()["results"]
    alone = [_post(served, "/send_time", {"customer_ids": [c], **WINDOW}).json()["results"][0] for c in ids]
    # The same hour and source; the score to rounding (a matrix product of 41 rows sums in another order).
    assert [{**r, "score": None} for r in together] == [{**r, "score": None} for r in alone]
    assert [r["score"] or 0.0 for r in together] == pytest.approx([r["score"] or 0.0 for r in alone], rel=1e-12)
    assert together[-1]["status"] == "unknown" and all(r["status"] == "scored" for r in together[:-1])


def test_counters_say_what_answered(served):
    def value(name, **labels):
        return served.registry.get_sample_value(name, labels) or 0.0

    version = served.follower.state.versions()["propensity"]
    before_unknown = value("nhip_unknown_ids_total", endpoint="/propensity")
    before_ok = value("nhip_requests_total", endpoint="/propensity", status="200", model_version=version)
    results = _post(served, "/propensity", {"customer_ids": [*served.ids[:10], "c_x", "c_y"]}).json()["results"]
    assert value("nhip_unknown_ids_total", endpoint="/propensity") == before_unknown + 2
    assert value("nhip_requests_total", endpoint="/propensity", status="200", model_version=version) == before_ok + 1
    sources = {r["source"] for r in results if r.get("source")}
    assert sources and all(value("nhip_answers_total", endpoint="/propensity", source=s, model_version=version) > 0
                           for s in sources)
    _post(served, "/propensity", {"customer_ids": served.ids[:1]}, key="wrong-key")
    assert value("nhip_requests_total", endpoint="/propensity", status="401", model_version=version) >= 1


def test_the_api_document_declares_every_error_and_the_key(served):
    doc = served.client.get("/docs.json", headers={"X-API-Key": READ_KEY}).json()
    assert doc["components"]["securitySchemes"]["ApiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            assert "422" not in op["responses"], (path, method)
            if path in ("/healthz", "/livez", "/readyz"):
                assert "security" not in op
                continue
            assert op["security"] == [{"ApiKey": []}] and {"401", "403"} <= set(op["responses"]), (path, method)
            if path.startswith(("/propensity", "/clv", "/send_time", "/lookalike", "/next_products", "/scores")):
                assert {"400", "500", "503"} <= set(op["responses"]), (path, method)
                ref = op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorBody"
    assert "413" in doc["paths"]["/propensity"]["post"]["responses"]
    assert "409" in doc["paths"]["/scores/propensity"]["get"]["responses"]
    assert "security" not in json.dumps(api.openapi_document(False))  # without keys, none is asked for


# -- the fuzzer: the short profile ------------------------------------------------------------------------------

FUZZ_CONFIG = Path(__file__).parent / "fuzz" / "schemathesis.toml"


def fuzz(base: str, *options: str) -> subprocess.CompletedProcess:
    """Schemathesis's CLI with every check against a running service's /docs.json, with the admin key."""
    command = [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(FUZZ_CONFIG), "run",
               f"{base}/docs.json", "-H", f"X-API-Key: {ADMIN_KEY}", "--checks", "all", "--seed", "7", *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_no_input_breaks_the_contract(served):
    """The short profile (10 examples per operation) against the BentoML service over HTTP: no 5xx, every
    status and body as declared, bad input refused, good input accepted, a missing key refused. The
    longer profile runs in tests/test_end_to_end.py."""
    with service({"NHIP_HOME": str(served.home), "NHIP_API_KEYS": KEYS}, ready=(200, 503)) as base:
        result = fuzz(base)
    assert result.returncode == 0, result.stdout[-6000:]
    assert re.search(r"\d+ generated, \d+ passed", result.stdout), result.stdout[-2000:]
