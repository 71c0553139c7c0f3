"""The BentoML service the automation layer calls before every message.

It loads the champions by registry alias and the latest feature build once at start-up, then only
answers. It never imports training code.
"""

from __future__ import annotations

from datetime import datetime

import bentoml
from pydantic import BaseModel, Field

from nhip.settings import get_settings
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


@bentoml.service(name="nhip", traffic={"timeout": 30}, workers=1)
class Nhip:
    def __init__(self) -> None:
        self.settings = get_settings()
        self.scorer = load_scorer(self.settings)

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

        from features.asof import LOCAL_TZ

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

    @bentoml.api(route="/model_versions")
    def model_versions(self) -> dict:
        """Which champion versions and which feature build this process serves."""
        return self.scorer.versions()
