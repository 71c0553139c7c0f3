"""The BentoML service the automation layer calls before every message.

It answers from a `serving.state.ServingState` (a feature build and the champions over it) and follows
new champions and builds without a restart (`serving.state.Follower`). Each model stands on its own: an
endpoint whose model is missing answers 503 with the reason, and `/readyz` and `/model_versions` report
per model. It never imports training code.
"""

from __future__ import annotations

import json
from datetime import datetime

import bentoml
from pydantic import BaseModel, Field

from nhip.settings import get_settings
from serving.scoring import ModelUnavailable
from serving.state import Follower, ServingState


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


# The model each route needs; a route whose model is not loaded answers 503 with the reason.
ROUTE_MODELS = {"/propensity": "propensity", "/clv": "propensity", "/send_time": "send_time", "/lookalike": "vectors",
                "/next_products": "vectors"}


class ReadinessMiddleware:
    """`GET /readyz`: 200 when a feature build is loaded and at least one model answers, 503 before;
    the body says, per model, whether it answers, its version, or why not. (BentoML's own /readyz can
    only answer yes or no.)

    Also answers 503 with the reason for a route whose model is missing, before BentoML sees the
    request: BentoML replaces the message of every 5xx it raises with a generic one."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and _FOLLOWER is not None:
            path = scope["path"]
            if path == "/readyz":
                models = _FOLLOWER.state.ready()
                ready = models["features"]["ready"] and (models["propensity"]["ready"]
                                                         or models["send_time"]["ready"])
                await _json(send, 200 if ready else 503, {"ready": ready, "models": models})
                return
            missing = _missing(_FOLLOWER.state, ROUTE_MODELS[path]) if path in ROUTE_MODELS else None
            if missing is not None:
                await _json(send, 503, {"error": missing, "model": ROUTE_MODELS[path]})
                return
        await self.app(scope, receive, send)


def _missing(state: ServingState, model: str) -> str | None:
    """Why `state` cannot answer for `model`, or None when it can."""
    if model == "vectors":
        return None if state.recommender is not None else (
            state.problems.get("vectors") or state.problems.get("features") or "no profile vectors loaded")
    if model == "propensity" and state.scorer is not None:
        return state.scorer.propensity_unavailable()
    if state.scorer is not None and state.versions()[model] is not None:
        return None
    return state.problems.get(model) or state.problems.get("features") or f"no {model} model loaded"


async def _json(send, status: int, body: dict) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode("utf-8")})


_FOLLOWER: Follower | None = None


@bentoml.service(name="nhip", traffic={"timeout": 30}, workers=1)
class Nhip:
    def __init__(self) -> None:
        global _FOLLOWER
        # The service's start is an entry point: the one place it reads the settings.
        self.follower = Follower(get_settings().serving)
        self.follower.start()
        _FOLLOWER = self.follower

    def _state(self) -> ServingState:
        """The state of this request: read once, so one answer never mixes versions."""
        return self.follower.state

    @bentoml.api(route="/propensity")
    def propensity(self, customer_ids: list[str]) -> PropensityResponse:
        """Calibrated P(purchase within the model's horizon), percentile and bucket per customer."""
        state = self._state()
        results = _answer(lambda: state.scorer.propensity(customer_ids), state, "propensity")
        versions = state.versions()
        return PropensityResponse(model_version=versions["propensity"], build_id=versions["build_id"],
                                  features_as_of=versions["features_as_of"],
                                  results=[PropensityItem(**r) for r in results])

    @bentoml.api(route="/clv")
    def clv(self, customer_ids: list[str]) -> ClvResponse:
        """Churn and lifetime value over the propensity horizon: P(alive), expected purchase days and
        spend, churn risk and source per customer."""
        state = self._state()
        results = _answer(lambda: state.scorer.clv(customer_ids), state, "propensity")
        versions = state.versions()
        return ClvResponse(model_version=versions["propensity"], build_id=versions["build_id"],
                           features_as_of=versions["features_as_of"], horizon_days=state.scorer.horizon_days,
                           results=[ClvItem(**r) for r in results])

    @bentoml.api(route="/send_time")
    def send_time(
        self,
        customer_ids: list[str],
        channel: str = "zalo_oa",
        window_start: datetime | None = None,
        window_end: datetime | None = None,
        explore: bool | None = None,
    ) -> SendTimeResponse:
        """The best local hour in the window (default: the next 24 hours), outside quiet hours.

        `explore` (default: the NHIP_SEND_TIME_EXPLORE setting) draws the hour by Thompson sampling instead.
        """
        import pandas as pd

        from nhip.clock import LOCAL_TZ

        state = self._state()
        start = pd.Timestamp(window_start) if window_start else pd.Timestamp.now(tz=LOCAL_TZ)
        end = pd.Timestamp(window_end) if window_end else start + pd.Timedelta(hours=24)
        results = _answer(lambda: state.scorer.send_time(customer_ids, channel, start, end, explore=explore),
                          state, "send_time")
        versions = state.versions()
        return SendTimeResponse(model_version=versions["send_time"], build_id=versions["build_id"],
                                features_as_of=versions["features_as_of"], channel=channel,
                                results=[SendTimeItem(**r) for r in results])

    @bentoml.api(route="/lookalike")
    def lookalike(
        self,
        seeds: list[str],
        k: int = 100,
        channel: str | None = None,
        id_type: str | None = None,
    ) -> LookalikeResponse:
        """The `k` customers most like the seeds (customer ids or identifiers), seeds excluded; with
        `channel`, only customers who consent to it."""
        state = self._state()
        answer = _answer(lambda: _recommender(state).lookalike(seeds, k, channel, id_type), state, "vectors")
        versions = state.versions()
        return LookalikeResponse(build_id=versions["build_id"], features_as_of=versions["features_as_of"], **answer)

    @bentoml.api(route="/next_products")
    def next_products(self, customer_id: str, k: int = 10, exclude_days: int = 30) -> NextProductsResponse:
        """The `k` products the customer likeliest wants next, leaving out what they bought within
        `exclude_days` before the feature build."""
        state = self._state()
        recommender = _answer(lambda: _recommender(state), state, "vectors")
        if customer_id not in recommender.build.table("profiles").index:
            raise bentoml.exceptions.NotFound(f"unknown customer id {customer_id!r} (not in the latest feature build)")
        answer = _answer(lambda: recommender.next_products(customer_id, k, exclude_days), state, "vectors")
        versions = state.versions()
        return NextProductsResponse(build_id=versions["build_id"], features_as_of=versions["features_as_of"],
                                    **answer)

    @bentoml.api(route="/model_versions")
    def model_versions(self) -> dict:
        """Which champion versions and which feature build this process serves, per model whether it
        answers (or why not), and the last swap's outcome."""
        return self.follower.report()


def _recommender(state: ServingState):
    if state.recommender is None:
        raise ModelUnavailable(state.problems.get("vectors") or state.problems.get("features")
                               or "no profile vectors loaded")
    return state.recommender


def _answer(call, state: ServingState, model: str):
    """Run `call`; a missing model or build is a 503 with its reason, a bad argument a 400."""
    if state.scorer is None and model != "vectors":
        raise bentoml.exceptions.ServiceUnavailable(state.problems.get(model) or state.problems["features"])
    try:
        return call()
    except ModelUnavailable as exc:
        raise bentoml.exceptions.ServiceUnavailable(str(exc)) from exc
    except ValueError as exc:
        raise bentoml.exceptions.InvalidArgument(str(exc)) from exc


Nhip.add_asgi_middleware(ReadinessMiddleware)
