"""The BentoML service the automation layer calls before every message.

It loads the champions by registry alias and the latest feature build once at start-up, then only
answers. It never imports training code.
"""

from __future__ import annotations

from datetime import datetime

import bentoml
from pydantic import BaseModel, Field

from nhip.settings import get_settings
from serving.recommender import Recommender, StoreBusy
from serving.scoring import load_scorer


class PropensityItem(BaseModel):
    customer_id: str
    status: str = Field(description="scored | unscored (too little history) | unknown")
    score: float | None = None
    percentile: float | None = None
    bucket: str | None = None
    error: str | None = None


class PropensityResponse(BaseModel):
    model_version: str
    features_as_of: str | None
    results: list[PropensityItem]


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
    model_version: str
    channel: str
    results: list[SendTimeItem]


class SimilarCustomer(BaseModel):
    customer_id: str
    similarity: float = Field(description="w_b·cos(behaviour) + w_c·cos(content), between -1 and 1")


class LookalikeResponse(BaseModel):
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
    features_as_of: str | None
    customer_id: str
    source: str = Field(description="vector | popular_in_categories | popular")
    items: list[ProductItem]
    excluded: list[str] = Field(description="products left out: bought within exclude_days")


@bentoml.service(name="nhip", traffic={"timeout": 30}, workers=1)
class Nhip:
    def __init__(self) -> None:
        # The service's start is an entry point: the one place it reads the settings.
        config = get_settings().serving
        self.scorer = load_scorer(config)
        self.recommender = Recommender(config.store_path, config.vectors)

    @bentoml.api(route="/propensity")
    def propensity(self, customer_ids: list[str]) -> PropensityResponse:
        """Calibrated P(purchase within the model's horizon), percentile and bucket per customer."""
        versions = self.scorer.versions()
        return PropensityResponse(
            model_version=versions["propensity"],
            features_as_of=versions["features_as_of"],
            results=[PropensityItem(**r) for r in self.scorer.propensity(customer_ids)],
        )

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

        start = pd.Timestamp(window_start) if window_start else pd.Timestamp.now(tz=LOCAL_TZ)
        end = pd.Timestamp(window_end) if window_end else start + pd.Timedelta(hours=24)
        try:
            results = self.scorer.send_time(customer_ids, channel, start, end, explore=explore)
        except ValueError as exc:
            raise bentoml.exceptions.InvalidArgument(str(exc)) from exc
        return SendTimeResponse(
            model_version=self.scorer.versions()["send_time"],
            channel=channel,
            results=[SendTimeItem(**r) for r in results],
        )

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
        answer = self._recommend(lambda: self.recommender.lookalike(seeds, k, channel, id_type))
        return LookalikeResponse(features_as_of=self.scorer.versions()["features_as_of"], **answer)

    @bentoml.api(route="/next_products")
    def next_products(self, customer_id: str, k: int = 10, exclude_days: int = 30) -> NextProductsResponse:
        """The `k` products the customer likeliest wants next, leaving out what they bought within
        `exclude_days` before the feature build."""
        if customer_id not in self.scorer.profiles.index:
            raise bentoml.exceptions.NotFound(f"unknown customer id {customer_id!r} (not in the latest feature build)")
        answer = self._recommend(lambda: self.recommender.next_products(customer_id, k, exclude_days))
        return NextProductsResponse(features_as_of=self.scorer.versions()["features_as_of"], **answer)

    def _recommend(self, call):
        try:
            return call()
        except StoreBusy as exc:
            raise bentoml.exceptions.ServiceUnavailable(str(exc)) from exc
        except ValueError as exc:
            raise bentoml.exceptions.InvalidArgument(str(exc)) from exc

    @bentoml.api(route="/model_versions")
    def model_versions(self) -> dict:
        """Which champion versions and which feature build this process serves."""
        return self.scorer.versions()
