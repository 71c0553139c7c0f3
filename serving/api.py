"""The HTTP API: a FastAPI app that the BentoML service mounts (`serving.service`), and the gate in front
of every route (request ids, API keys, limits, the access log, the request counters).

Why FastAPI inside BentoML rather than `@bentoml.api` routes: the automation layer asks before every
message, so a one-customer answer has to take well under a millisecond. BentoML's API path spends about
2 ms per request converting arguments and results; here a request is a pydantic-validated body, lookups
into answers computed when the build or champion was loaded (`serving.scoring`), and an orjson dump.
BentoML still runs the server: its workers, /healthz and /livez, /metrics, tracing and its lifecycle.

Every error is an `serving.errors.ErrorBody`; every route declares the errors it can answer, and
`/docs.json` is this app's OpenAPI document with the health checks, /metrics and, when keys are set, the
API-key scheme (`openapi_document`).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Literal

import orjson
import pandas as pd
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import BaseModel, BeforeValidator, Field, StrictBool, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException

from features.schema import IDENTIFIER_FIELDS, MESSAGE_CHANNELS
from nhip.clock import LOCAL_FIXED_TZ
from serving.activation.context import ActivationConfig, ActivationContext
from serving.activation.policy import PLAN_CHANNELS
from serving.auth import ApiKey, allows, identify, scope_needed
from serving.errors import ApiError, ErrorBody, declared, error_bytes
from serving.metrics import Metrics
from serving.scoring import ModelUnavailable
from serving.state import Follower, ServingState

MAX_CUSTOMERS = 10_000  # ids per request; more is a 413 (page through /scores/… for a whole shop)
MAX_BODY_BYTES = 4 * 1024 * 1024  # 10,000 ids of up to 256 characters fit; a bigger body is a 413
MAX_WINDOW_DAYS = 14
MAX_K = 10_000
YEARS = "^2[01][0-9]{2}-"  # window bounds: years 2000–2199, declared so that a client's schema knows it
ID_TYPES = ("customer_id", *IDENTIFIER_FIELDS)
# Fields whose values come from a list, for the `allowed` of a 400.
ALLOWED = {"channel": MESSAGE_CHANNELS, "id_type": ID_TYPES}

_access = logging.getLogger("nhip.access")
_log = logging.getLogger("nhip.serving")

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Channel = Literal[MESSAGE_CHANNELS]  # type: ignore[valid-type]
IdType = Literal[ID_TYPES]  # type: ignore[valid-type]


# -- requests ------------------------------------------------------------------------------------------------


# Numbers and booleans in bodies mean what JSON Schema says: `"k": "5"` or `"k": true` is a 400 rather
# than quietly read as 5 or 1, and `"k": 5.0` is the integer 5, as JSON Schema counts it.


def _json_integer(value):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("a whole number is needed")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("a whole number is needed")
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_json_integer)]


class CustomersRequest(BaseModel):
    customer_ids: list[Id] = Field(min_length=1, max_length=MAX_CUSTOMERS,
                                   description=f"1 to {MAX_CUSTOMERS:,} customer ids, answered in this order")


class SendTimeRequest(CustomersRequest):
    channel: Channel = "zalo_oa"
    window_start: datetime | None = Field(default=None, json_schema_extra={"pattern": YEARS},
                                          description="default: now; a time without an offset is Vietnam time; "
                                                      "years 2000–2199")
    window_end: datetime | None = Field(default=None, json_schema_extra={"pattern": YEARS},
                                        description=f"default: 24 hours after window_start; at most "
                                                    f"{MAX_WINDOW_DAYS} days after it")
    explore: StrictBool | None = Field(default=None, description="Thompson sampling instead of the best hour; "
                                                           "default: the NHIP_SEND_TIME_EXPLORE setting")


class LookalikeRequest(BaseModel):
    seeds: list[Id] = Field(min_length=1, max_length=MAX_CUSTOMERS,
                            description="customer ids, or identifiers of the type `id_type`")
    k: JsonInt = Field(default=100, ge=1, le=MAX_K, description="how many customers to return")
    channel: Channel | None = Field(default=None, description="only customers who consent to this channel")
    id_type: IdType | None = Field(default=None, description="what the seeds are; default: customer ids, "
                                                             "else any identifier")


PlanChannel = Literal[PLAN_CHANNELS]  # type: ignore[valid-type]


class AudienceRequest(BaseModel):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] = Field(
        description="an audience defined with `nhip audience create`")
    limit: JsonInt = Field(default=1000, ge=1, le=MAX_CUSTOMERS, description="members per page")
    cursor: str | None = Field(default=None, max_length=200, pattern=r"^[^~]+~[0-9]+$",
                               description="the `next_cursor` of the page before")


class NextBestActionRequest(BaseModel):
    customer_id: Id
    channels: list[PlanChannel] = Field(default=list(PLAN_CHANNELS), min_length=1, max_length=len(PLAN_CHANNELS),
                                        description="the channels to choose from")
    window_start: datetime | None = Field(default=None, json_schema_extra={"pattern": YEARS},
                                          description="default: now; a time without an offset is Vietnam time")
    window_end: datetime | None = Field(default=None, json_schema_extra={"pattern": YEARS},
                                        description=f"default: 24 hours after window_start; at most "
                                                    f"{MAX_WINDOW_DAYS} days after it")


class NextProductsRequest(BaseModel):
    customer_id: Id
    k: JsonInt = Field(default=10, ge=1, le=100)
    exclude_days: JsonInt = Field(default=30, ge=0, le=3650, description="leave out what was bought within "
                                                                     "this many days before the build")


# -- responses -----------------------------------------------------------------------------------------------


class PropensityItem(BaseModel):
    customer_id: str
    status: str = Field(description="scored | unscored (nothing usable known; `error` says why) | unknown")
    score: float | None = None
    percentile: float | None = Field(default=None, description="rank among every answered customer")
    bucket: str | None = None
    source: str | None = Field(
        default=None,
        description="who answered: model (the champion) | btyd (BG/NBD, a buyer the model does not answer "
        "for) | shop (the shop's rate of first purchases, someone who never bought)")
    error: str | None = None


class PropensityResponse(BaseModel):
    model_version: str | None = Field(description="the champion behind `model` answers, as name/version "
                                                  "(null before the first champion: fallbacks only)")
    build_id: str | None = Field(description="the feature build the scores come from")
    features_as_of: str | None
    results: list[PropensityItem]


class ClvItem(BaseModel):
    customer_id: str
    status: str = Field(description="scored | unscored (nothing usable known; `error` says why) | unknown")
    p_alive: float | None = Field(default=None, description="Pareto/NBD's P(still a customer); buyers only")
    expected_purchases: float | None = Field(default=None, description="purchase days expected in the horizon")
    expected_spend: float | None = Field(default=None, description="spend expected in the horizon, in the "
                                                                   "shop's currency")
    churn_risk: str | None = Field(default=None, description="High (P(alive) < 0.5) | Medium (< 0.8) | Low; "
                                                             "null for someone who never bought")
    source: str | None = Field(
        default=None,
        description="who answered purchases and spend: model (the propensity champion × Pareto/NBD and "
        "Gamma-Gamma) | btyd (Pareto/NBD × Gamma-Gamma) | shop (the shop's rates, someone who never bought)")
    error: str | None = None


class ClvResponse(BaseModel):
    model_version: str | None = Field(description="the propensity champion behind `model` answers "
                                                  "(null before the first champion)")
    build_id: str | None
    features_as_of: str | None
    horizon_days: int
    results: list[ClvItem]


class Paged(BaseModel):
    total: int = Field(description="customers in the build")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class PropensityPage(PropensityResponse, Paged):
    pass


class ClvPage(ClvResponse, Paged):
    pass


class AudienceMember(BaseModel):
    customer_id: str
    propensity_score: float | None = None
    propensity_bucket: str | None = None
    churn_risk: str | None = None
    expected_spend: float | None = None
    consent_email: bool = False
    consent_sms: bool = False
    consent_zalo_oa: bool = False
    consent_zalo_zns: bool = False


class AudiencePage(Paged):
    audience: str
    rule: str
    build_id: str
    features_as_of: str | None = None
    results: list[AudienceMember]


class NextBestAction(BaseModel):
    customer_id: str
    channel: str | None = Field(description="the channel to send on; null when no message should be sent")
    send_at: str | None = Field(description="local time with its offset")
    expected_response: float | None = Field(
        description="P(delivered) × P(open at that hour) × P(purchase in the horizon)")
    cost_vnd: float | None = None
    label: str | None = Field(description="a label the message must start with, e.g. [QC] for SMS ads")
    send_time_source: str | None = None
    reason: str | None = Field(description="why no message: no consent | no slot | cap reached | quota | budget")
    policy: str = Field(description="the contact policy the decision follows")
    versions: dict = Field(description="the champions and the feature build used")


class SendTimeItem(BaseModel):
    customer_id: str
    status: str = Field(description="scored | no_slot (window inside quiet hours) | unknown")
    send_at: str | None = None
    score: float | None = None
    source: str | None = Field(
        default=None,
        description="which level of the fallback chain decided: customer (own history on the channel) | "
        "activity (the customer's activity on other channels) | segment (customers active at the same "
        "time of day) | shop",
    )
    explored: bool = Field(default=False, description="exploration picked an hour other than the best")
    error: str | None = None


class SendTimeResponse(BaseModel):
    model_version: str = Field(description="the champion that chose, as name/version")
    build_id: str | None = Field(default=None, description="the feature build the answer comes from")
    features_as_of: str | None = None
    channel: str
    results: list[SendTimeItem]


class SimilarCustomer(BaseModel):
    customer_id: str
    similarity: float = Field(description="w_b·cos(behaviour) + w_c·cos(content), between -1 and 1")


class LookalikeResponse(BaseModel):
    build_id: str | None
    features_as_of: str | None
    customers: list[SimilarCustomer]
    seed_customers: list[str] = Field(description="the customer ids the seeds resolved to")
    unknown_seeds: list[str] = Field(description="seeds matching no customer with a vector, as given")


class ProductItem(BaseModel):
    product_id: str
    product_name: str | None = None
    category: str | None = None
    score: float | None = None


class NextProductsResponse(BaseModel):
    build_id: str | None
    features_as_of: str | None
    customer_id: str
    source: str = Field(description="vector | popular_in_categories | popular")
    items: list[ProductItem]
    excluded: list[str] = Field(description="products left out: bought within exclude_days")


# -- what the routes answer from ------------------------------------------------------------------------------


@dataclass
class Context:
    """What the service process set up at start: the follower of builds and champions, the API keys
    (empty: no authentication) and the counters."""

    follower: Follower
    keys: tuple[ApiKey, ...]
    metrics: Metrics | None = None
    openapi: bytes | None = None  # the document, made once (it depends only on the code and the keys)
    activation: ActivationConfig | None = None  # audiences, policy and the store, for the decision routes
    _activation: dict = field(default_factory=dict, repr=False)  # build_id → its ActivationContext


CONTEXT: Context | None = None


def configure(context: Context) -> None:
    global CONTEXT
    context.openapi = orjson.dumps(openapi_document(bool(context.keys)))
    CONTEXT = context


def _state() -> ServingState:
    """The state of this request, read once, so one answer never mixes versions."""
    if CONTEXT is None:
        raise ApiError(503, "the service is still starting")
    return CONTEXT.follower.state


def _json(payload: dict) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


def _need(state: ServingState, model: str, endpoint: str) -> None:
    """A 503 naming why, when the model an endpoint needs is not loaded."""
    why = _missing(state, model)
    if why is not None:
        if CONTEXT is not None and CONTEXT.metrics is not None:
            CONTEXT.metrics.unavailable.labels(endpoint, model).inc()
        raise ApiError(503, why)


def _missing(state: ServingState, model: str) -> str | None:
    """Why `state` cannot answer for `model` (propensity, send_time or vectors), or None when it can."""
    if model == "vectors":
        return None if state.recommender is not None else (
            state.problems.get("vectors") or state.problems.get("features") or "no profile vectors loaded")
    if state.scorer is None:
        return state.problems.get(model) or state.problems.get("features") or f"no {model} model loaded"
    if model == "propensity":
        return state.scorer.propensity_unavailable()
    if state.versions()[model] is not None:
        return None
    return state.problems.get(model) or f"no {model} model loaded"


def _count(endpoint: str, results: list[dict], version: str | None) -> None:
    if CONTEXT is not None and CONTEXT.metrics is not None:
        CONTEXT.metrics.results(endpoint, results, version)


def _answer(call):
    """Run `call`: a model that turns out missing is a 503, an argument it refuses a 400."""
    try:
        return call()
    except ModelUnavailable as exc:
        raise ApiError(503, str(exc)) from exc
    except ValueError as exc:
        message = str(exc)
        field = message.split(":", 1)[0] if re.match(r"^[a-z_]+:", message) else None
        raise ApiError(400, message, field=field, allowed=ALLOWED.get(field or "")) from exc


# -- routes ---------------------------------------------------------------------------------------------------

app = FastAPI(title="Nhịp", version="0.1.0", docs_url=None, redoc_url=None, openapi_url=None,
              description="Scores and decisions for the automation layer: propensity, churn and lifetime "
                          "value, send time, lookalike audiences and next products.")

SCORE_ERRORS = declared(400, 413, 500, 503)


@app.post("/propensity", response_model=PropensityResponse, responses=SCORE_ERRORS, tags=["scores"])
async def propensity(body: CustomersRequest) -> Response:
    """Calibrated P(purchase within the model's horizon), percentile, bucket and source per customer."""
    state = _state()
    _need(state, "propensity", "/propensity")
    results = _answer(lambda: state.scorer.propensity(body.customer_ids))
    versions = state.versions()
    _count("/propensity", results, versions["propensity"])
    return _json({"model_version": versions["propensity"], "build_id": versions["build_id"],
                  "features_as_of": versions["features_as_of"], "results": results})


@app.post("/clv", response_model=ClvResponse, responses=SCORE_ERRORS, tags=["scores"])
async def clv(body: CustomersRequest) -> Response:
    """Churn and lifetime value over the propensity horizon: P(alive), expected purchase days and spend,
    churn risk and source per customer."""
    state = _state()
    _need(state, "propensity", "/clv")
    results = _answer(lambda: state.scorer.clv(body.customer_ids))
    versions = state.versions()
    _count("/clv", results, versions["propensity"])
    return _json({"model_version": versions["propensity"], "build_id": versions["build_id"],
                  "features_as_of": versions["features_as_of"], "horizon_days": state.scorer.horizon_days,
                  "results": results})


@app.post("/send_time", response_model=SendTimeResponse, responses=SCORE_ERRORS, tags=["scores"])
async def send_time(body: SendTimeRequest) -> Response:
    """The best whole local hour in the window (default: the next 24 hours), outside quiet hours, per
    customer; `explore` draws it by Thompson sampling instead."""
    state = _state()
    _need(state, "send_time", "/send_time")
    start = _bound("window_start", body.window_start) if body.window_start else datetime.now(LOCAL_FIXED_TZ)
    end = _bound("window_end", body.window_end) if body.window_end else start + timedelta(hours=24)
    if end <= start:
        raise ApiError(400, "window_end must be after window_start", field="window_end")
    if end - start > timedelta(days=MAX_WINDOW_DAYS):
        raise ApiError(400, f"window_end: the window is at most {MAX_WINDOW_DAYS} days", field="window_end")
    results = _answer(lambda: state.scorer.send_time(body.customer_ids, body.channel, start, end,
                                                     explore=body.explore))
    versions = state.versions()
    _count("/send_time", results, versions["send_time"])
    return _json({"model_version": versions["send_time"], "build_id": versions["build_id"],
                  "features_as_of": versions["features_as_of"], "channel": body.channel, "results": results})


def _bound(field: str, value: datetime) -> datetime:
    """A window bound, aware (naive is Vietnam time); years outside 2000–2199 are a 400."""
    if not 2000 <= value.year <= 2199:
        raise ApiError(400, f"{field}: a time between the years 2000 and 2199", field=field)
    return value.replace(tzinfo=LOCAL_FIXED_TZ) if value.tzinfo is None else value


@app.post("/lookalike", response_model=LookalikeResponse, responses=declared(400, 413, 500, 503),
          tags=["audiences"])
def lookalike(body: LookalikeRequest) -> Response:
    """The `k` customers most like the seeds (customer ids or identifiers), seeds excluded; with
    `channel`, only customers who consent to it. Needs an admin key when keys are set."""
    state = _state()
    _need(state, "vectors", "/lookalike")
    answer = _answer(lambda: state.recommender.lookalike(body.seeds, body.k, body.channel, body.id_type))
    versions = state.versions()
    return _json({"build_id": versions["build_id"], "features_as_of": versions["features_as_of"], **answer})


@app.post("/next_products", response_model=NextProductsResponse, responses=declared(400, 404, 413, 500, 503),
          tags=["audiences"])
def next_products(body: NextProductsRequest) -> Response:
    """The `k` products the customer likeliest wants next, leaving out what they bought within
    `exclude_days` before the feature build."""
    state = _state()
    _need(state, "vectors", "/next_products")
    recommender = state.recommender
    if body.customer_id not in recommender.build.table("profiles").index:
        raise ApiError(404, f"unknown customer id {body.customer_id!r} (not in the latest feature build)",
                       field="customer_id")
    answer = _answer(lambda: recommender.next_products(body.customer_id, body.k, body.exclude_days))
    versions = state.versions()
    return _json({"build_id": versions["build_id"], "features_as_of": versions["features_as_of"], **answer})


Limit = Annotated[int, Query(ge=1, le=MAX_CUSTOMERS, description=f"customers per page, at most {MAX_CUSTOMERS:,}")]
Cursor = Annotated[str | None, Query(max_length=200, pattern=r"^[^~]+~[0-9]+$",
                                     description="the `next_cursor` of the page before")]
PAGE_ERRORS = declared(400, 409, 500, 503)


@app.get("/scores/propensity", response_model=PropensityPage, responses=PAGE_ERRORS, tags=["exports"])
async def propensity_pages(limit: Limit = 1000, cursor: Cursor = None) -> Response:
    """Every customer of the build, a page at a time, in the build's order: the way to read a whole
    shop's scores. A cursor belongs to one build; after a new build is served it is a 409 (start again).
    Needs an admin key when keys are set."""
    return _page("/scores/propensity", limit, cursor, lambda scorer: scorer.propensity_lookup, None)


@app.get("/scores/clv", response_model=ClvPage, responses=PAGE_ERRORS, tags=["exports"])
async def clv_pages(limit: Limit = 1000, cursor: Cursor = None) -> Response:
    """/clv for every customer of the build, a page at a time (as /scores/propensity)."""
    return _page("/scores/clv", limit, cursor, lambda scorer: scorer.clv_lookup,
                 lambda scorer: {"horizon_days": scorer.horizon_days})


def _page(endpoint: str, limit: int, cursor: str | None, lookup_of, extra) -> Response:
    """One page of a lookup of the propensity scorer, with the cursor to the next."""
    state = _state()
    _need(state, "propensity", endpoint)
    lookup = lookup_of(state.scorer)
    offset = _offset(cursor, state)
    results = lookup.page(offset, limit)
    versions = state.versions()
    return _json({"model_version": versions["propensity"], "build_id": versions["build_id"],
                  "features_as_of": versions["features_as_of"], **(extra(state.scorer) if extra else {}),
                  "results": results, "total": len(lookup),
                  "next_cursor": _next(state, offset + len(results), len(lookup))})


def _offset(cursor: str | None, state: ServingState) -> int:
    """A cursor is `<build id>~<offset>`: it pins the build, so pages never mix two builds."""
    if cursor is None:
        return 0
    build_id, _, offset = cursor.rpartition("~")  # the pattern of `Cursor` has checked its form
    if build_id != state.versions()["build_id"]:
        raise ApiError(409, "cursor: a new feature build is served since this walk began; start again "
                            "without a cursor", field="cursor")
    return int(offset)


def _next(state: ServingState, offset: int, total: int) -> str | None:
    return f"{state.versions()['build_id']}~{offset}" if offset < total else None


def _activation(state: ServingState) -> tuple[ActivationContext, ActivationConfig]:
    """The decision context of the served build, worked out once per build, with the withdrawals the
    store holds now: a revocation counts from the moment it is stored, not from the next build."""
    from features.contacts import revocations_since
    from serving.activation.consent import Suppression

    if CONTEXT is None or CONTEXT.activation is None:
        raise ApiError(503, "decisions are not configured in this process")
    if state.build is None or state.scorer is None:
        raise ApiError(503, state.problems.get("features") or "no feature build is served")
    config = CONTEXT.activation
    base = CONTEXT._activation.get(state.build.build_id)
    if base is None:
        empty = pd.DataFrame({"customer_id": [], "channel": [], "ts": []})
        vectors = state.recommender.vectors if state.recommender is not None else None
        base = ActivationContext(state.build, state.scorer, empty, Suppression(config.root / "suppressed.txt"),
                                 config.store_path, vectors)
        CONTEXT._activation.clear()  # one build at a time: the old one is no longer served
        CONTEXT._activation[state.build.build_id] = base
    revoked = revocations_since(config.store_path, state.build.table("identity"), state.build.as_of, PLAN_CHANNELS)
    return (base.with_revoked(revoked) if len(revoked) else base), config


_MEMBER_FIELDS = tuple(AudienceMember.model_fields)


@app.post("/audience", response_model=AudiencePage, responses=declared(400, 404, 409, 413, 500, 503),
          tags=["audiences"])
def audience(body: AudienceRequest) -> Response:
    """The members of a named audience in the served build, a page at a time, consent as of now. A
    cursor belongs to one build (409 after a new one). Needs an admin key when keys are set."""
    from serving.activation.audiences import AudienceBook, AudienceError

    state = _state()
    context, config = _activation(state)
    book = AudienceBook(config.root)
    try:
        definition = book.get(body.name)
        members = book.members(body.name, context)
    except AudienceError as exc:
        raise ApiError(404, str(exc), field="name") from exc
    offset = _offset(body.cursor, state)
    rows = context.frame.loc[members[offset:offset + body.limit], [f for f in _MEMBER_FIELDS if f != "customer_id"]]
    rows = rows.astype(object).where(rows.notna(), None)
    results = [{"customer_id": cid, **values} for cid, values in zip(rows.index, rows.to_dict(orient="records"))]
    versions = state.versions()
    return _json({"audience": body.name, "rule": definition.describe(), "build_id": versions["build_id"],
                  "features_as_of": versions["features_as_of"], "results": results, "total": len(members),
                  "next_cursor": _next(state, offset + len(results), len(members))})


@app.post("/next_best_action", response_model=NextBestAction, responses=declared(400, 404, 413, 500, 503),
          tags=["decisions"])
def next_best_action(body: NextBestActionRequest) -> Response:
    """The channel and hour for one customer with the most expected response per VND, within the contact
    policy (`nhip campaign plan`'s decision for a one-member audience, without a budget)."""
    from serving.activation.planner import decide_one

    state = _state()
    context, config = _activation(state)
    start = _bound("window_start", body.window_start) if body.window_start else datetime.now(LOCAL_FIXED_TZ)
    end = _bound("window_end", body.window_end) if body.window_end else start + timedelta(hours=24)
    if end <= start:
        raise ApiError(400, "window_end must be after window_start", field="window_end")
    if end - start > timedelta(days=MAX_WINDOW_DAYS):
        raise ApiError(400, f"window_end: the window is at most {MAX_WINDOW_DAYS} days", field="window_end")
    if body.customer_id not in context.frame.index:
        raise ApiError(404, f"unknown customer id {body.customer_id!r} (not in the latest feature build, or "
                            "erased)", field="customer_id")
    channels = tuple(dict.fromkeys(body.channels))
    answer = _answer(lambda: decide_one(context, body.customer_id, channels, pd.Timestamp(start),
                                        pd.Timestamp(end), config.policy(None), config.quiet))
    return _json(answer)


@app.get("/model_versions", tags=["operations"], responses=declared(500, 503))
async def model_versions() -> dict:
    """Which champion versions and which feature build this process serves, per model whether it answers
    (or why not), and the last swap's outcome."""
    if CONTEXT is None:
        raise ApiError(503, "the service is still starting")
    return CONTEXT.follower.report()


# -- errors ---------------------------------------------------------------------------------------------------


@app.exception_handler(ApiError)
async def _api_error(request: Request, exc: ApiError) -> Response:
    return Response(error_bytes(exc, request.scope.get("nhip.request_id")), status_code=exc.status,
                    media_type="application/json")


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """FastAPI's own refusals (a method the route lacks, a body it cannot read) in the one error shape."""
    message = {405: f"{request.method} is not allowed here"}.get(exc.status_code, str(exc.detail))
    response = await _api_error(request, ApiError(exc.status_code, message))
    response.headers.update(exc.headers or {})
    return response


@app.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    return await _api_error(request, validation_error(exc.errors()))


@app.exception_handler(Exception)
async def _fault(request: Request, exc: Exception) -> Response:
    rid = request.scope.get("nhip.request_id")
    _log.exception("request %s failed", rid)
    return await _api_error(request, ApiError(500, f"the service failed on this request ({type(exc).__name__}); "
                                                   f"request id {rid} finds it in the log"))


def validation_error(errors) -> ApiError:
    """pydantic's first complaint as one ApiError: the field as a dotted path, its allowed values when it
    takes a list of them, and 413 for a list over the limit."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query")]
    field = ".".join(loc) or None
    kind = first.get("type", "")
    if kind == "json_invalid":
        return ApiError(400, "the body is not valid JSON")
    if kind in ("missing", "model_attributes_type", "dict_type") and not loc:
        return ApiError(400, "the body must be a JSON object with the fields of this endpoint (see /docs.json)")
    if kind == "too_long" and field in ("customer_ids", "seeds"):
        return ApiError(413, f"{field}: at most {MAX_CUSTOMERS:,} per request; page through /scores/… for a "
                             "whole shop", field=field)
    name = loc[-1] if loc else ""
    allowed = ALLOWED.get(name) if kind in ("literal_error", "enum") else None
    message = f"{field}: {first.get('msg', 'invalid')}" if field else first.get("msg", "invalid request")
    if allowed:
        message = f"{field}: {first.get('input')!r} is not allowed; use one of {', '.join(allowed)}"
    return ApiError(400, message, field=field, allowed=allowed)


# -- the gate in front of every route ---------------------------------------------------------------------------

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_ENDPOINTS = {route.path for route in app.routes if hasattr(route, "methods")} | {
    "/readyz", "/healthz", "/livez", "/metrics", "/docs.json"}
_VERSION_OF = {"/propensity": "propensity", "/clv": "propensity", "/scores/propensity": "propensity",
               "/scores/clv": "propensity", "/send_time": "send_time"}


class Gate:
    """Pure ASGI, in front of BentoML's routes and this app's alike:

    - a request id for every request: the caller's `X-Request-ID` when it is a plain token, else a new
      one; it goes back as `X-Request-ID`, into every error body and into the access log;
    - the API key, when keys are set (`serving.auth`): 401 without a valid one, 403 outside its scope;
    - 413 for a body over `MAX_BODY_BYTES`, before it is parsed;
    - `/readyz` per model, and `/docs.json` as `openapi_document`;
    - one access-log line per request (request id, method, path, status, milliseconds, key name: never
      a body, so never a phone or an email) and the `nhip_requests` counter.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = _request_id(scope)
        scope["nhip.request_id"] = rid
        status = [500]
        key_name = "-"

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), (b"x-request-id", rid.encode())]}
            await send(message)

        path = scope["path"]
        try:
            context = CONTEXT
            needed = scope_needed(path)
            if context is not None and context.keys and needed is not None:
                key = identify(context.keys, _header(scope, b"x-api-key"))
                if key is None:
                    await _send_error(send_with_id, ApiError(401, "a valid X-API-Key header is needed"), rid)
                    return
                if not allows(key, needed):
                    await _send_error(send_with_id, ApiError(403, f"the key {key.name!r} is {key.scope}-only; "
                                                                  f"{path} needs an {needed} key"), rid)
                    return
                key_name = key.name
            if context is not None and path == "/readyz":
                if scope["method"] not in ("GET", "HEAD"):
                    await _send_error(send_with_id, ApiError(405, f"{scope['method']} is not allowed here"), rid,
                                      [(b"allow", b"GET, HEAD")])
                    return
                await _send_readiness(send_with_id, context.follower.state)
                return
            if context is not None and path == "/docs.json" and scope["method"] in ("GET", "HEAD"):
                await _send(send_with_id, 200, context.openapi)
                return
            if scope["method"] == "POST":
                body = await _read_body(receive)
                if body is None:
                    await _send_error(send_with_id, ApiError(413, f"the body is over {MAX_BODY_BYTES:,} bytes"), rid)
                    return
                receive = _replay(body)
            await self.app(scope, receive, send_with_id)
        finally:
            ms = (time.perf_counter() - started) * 1000
            _access.info("%s %s %s %d %.2fms key=%s", rid, scope["method"], path, status[0], ms, key_name)
            if CONTEXT is not None and CONTEXT.metrics is not None:
                endpoint = path if path in _ENDPOINTS else "other"
                model = _VERSION_OF.get(path)
                version = CONTEXT.follower.state.versions()[model] if model else None
                CONTEXT.metrics.request(endpoint, status[0], version)


def _request_id(scope) -> str:
    given = _header(scope, b"x-request-id")
    return given.decode("ascii") if given and _REQUEST_ID.match(given) else uuid.uuid4().hex


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


async def _read_body(receive) -> bytes | None:
    """The whole body, or None once it passes MAX_BODY_BYTES (the rest is not read)."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes):
    sent = [False]

    async def receive():
        if sent[0]:
            return {"type": "http.disconnect"}
        sent[0] = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _send(send, status: int, body: bytes, headers=()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send, error: ApiError, rid: str, headers=()) -> None:
    await _send(send, error.status, error_bytes(error, rid), headers)


async def _send_readiness(send, state: ServingState) -> None:
    """200 when a feature build is loaded and at least one model answers, 503 before; per model, whether
    it answers, its version, or why not (BentoML's own /readyz can only say yes or no)."""
    models = state.ready()
    ready = models["features"]["ready"] and (models["propensity"]["ready"] or models["send_time"]["ready"])
    await _send(send, 200 if ready else 503, orjson.dumps({"ready": ready, "models": models}))


# -- the API document ---------------------------------------------------------------------------------------------


class ModelReadiness(BaseModel):
    ready: bool
    version: str | None = None
    reason: str | None = None
    scorer: str | None = None


class Readiness(BaseModel):
    ready: bool = Field(description="a feature build is loaded and at least one model answers")
    models: dict[str, ModelReadiness] = Field(description="per model (propensity, send_time, vectors, "
                                                          "features): whether it answers, its version, or why not")


def openapi_document(with_keys: bool) -> dict:
    """This app's OpenAPI document with what BentoML serves beside it, and the key scheme when keys are
    set. FastAPI's 422 is gone: a request that does not validate is a 400 (or a 413) with the error body."""
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for model in (ErrorBody, Readiness, ModelReadiness):
        schemas[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schemas[model.__name__].pop("$defs", {}))
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    text = {"content": {"text/plain": {"schema": {"type": "string"}}}}
    ops = doc["paths"]
    ops["/healthz"] = {"get": {"summary": "alive (BentoML)", "tags": ["operations"],
                               "responses": {"200": {"description": "the process answers", **text}}}}
    ops["/livez"] = {"get": {"summary": "alive (BentoML)", "tags": ["operations"],
                             "responses": {"200": {"description": "the process answers", **text}}}}
    readiness = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}}
    ops["/readyz"] = {"get": {"summary": "ready, per model", "tags": ["operations"], "responses": {
        "200": {"description": "a build is loaded and a model answers", **readiness},
        "503": {"description": "nothing to answer with yet; the body says why, per model", **readiness}}}}
    ops["/metrics"] = {"get": {"summary": "Prometheus metrics: BentoML's and nhip_* counters", "tags": ["operations"],
                               "responses": {"200": {"description": "the Prometheus text format", **text}}}}
    for path, methods in ops.items():
        for op in methods.values():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            if with_keys and scope_needed(path) is not None:
                op["security"] = [{"ApiKey": []}]
                responses["401"] = {"description": "no valid X-API-Key", **error}
                responses["403"] = {"description": "the key's scope does not allow this endpoint", **error}
    if with_keys:
        doc["components"]["securitySchemes"] = {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
    return doc
