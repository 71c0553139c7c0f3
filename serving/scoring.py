"""Answers to score requests from loaded champions and the online profiles; no web framework here.

Propensity scores for the whole online snapshot are computed once at load time: a request is then a
lookup, and a customer's percentile is the same in the API as in `nhip score propensity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.vectors.config import VectorConfig
from models.propensity import score_profiles
from models.send_time import SendTimeConfig
from models.tracking import TrackingConfig
from nhip.clock import local_timestamp, to_local

if TYPE_CHECKING:
    from features.build import OnlineBuild


def _unknown(customer_id: str) -> dict:
    return {"customer_id": customer_id, "status": "unknown",
            "error": "unknown customer id (not in the latest feature build)"}


@dataclass(frozen=True)
class ServingConfig:
    """What the service needs: the store holding the online build, the registry of the champions, the
    vector stores, the scoring threshold (NHIP_MIN_EVENTS_TO_SCORE) and the send-time settings."""

    store_path: Path
    tracking: TrackingConfig
    vectors: VectorConfig
    min_events_to_score: int
    send_time: SendTimeConfig


class Scorer:
    """Both champions over the profiles of one build. `send_time` carries the quiet hours and whether
    answers explore by default; `rng` draws the explorations (tests pass a seeded one)."""

    def __init__(self, propensity, send_time, profiles: pd.DataFrame, min_events_to_score: int,
                 send_time_config: SendTimeConfig, rng: np.random.Generator | None = None):
        self.propensity_champion = propensity
        self.send_time_champion = send_time
        self.profiles = profiles
        self.as_of = profiles["as_of"].iloc[0] if len(profiles) else None
        self.quiet = send_time_config.quiet
        self.explore = send_time_config.explore
        self.rng = rng or np.random.default_rng()
        self.scores = score_profiles(propensity.model, profiles, min_events_to_score)

    def propensity(self, customer_ids: list[str]) -> list[dict]:
        out = []
        for cid in customer_ids:
            if cid not in self.scores.index:
                out.append(_unknown(cid))
                continue
            row = self.scores.loc[cid]
            scored = row["status"] == "scored"
            out.append({
                "customer_id": cid,
                "status": row["status"],
                "score": float(row["score"]) if scored else None,
                "percentile": float(row["percentile"]) if scored else None,
                "bucket": row["bucket"],
            })
        return out

    def send_time(self, customer_ids: list[str], channel: str, start, end,
                  explore: bool | None = None) -> list[dict]:
        """The best hour in the window per customer, outside quiet hours, and the curve's source.

        With `explore` (default: the `NHIP_SEND_TIME_EXPLORE` setting) the hour comes from Thompson
        sampling, so sends keep teaching the model; `explored` says when that moved it off the best hour.
        """
        start, end = local_timestamp(start), local_timestamp(end)
        if end <= start:
            raise ValueError("window_end must be after window_start")
        explore = self.explore if explore is None else explore
        model = self.send_time_champion.model
        out = []
        for cid in customer_ids:
            if cid not in self.profiles.index:
                out.append(_unknown(cid))
                continue
            choice = model.choose(cid, channel, start, end, self.quiet, explore=explore, rng=self.rng)
            out.append({
                "customer_id": cid,
                "status": "scored" if choice.when is not None else "no_slot",
                "send_at": choice.when.isoformat() if choice.when is not None else None,
                "score": choice.score,
                "source": choice.source,
                "explored": choice.explored,
            })
        return out

    def versions(self) -> dict[str, str]:
        return {
            "propensity": self.propensity_champion.label,
            "send_time": self.send_time_champion.label,
            "features_as_of": str(to_local(self.as_of)) if self.as_of is not None else None,
        }


def load_scorer(config: ServingConfig, build: OnlineBuild | None = None) -> Scorer:
    """The champions over `build` (default: the latest feature build, read now); refuses champions
    trained under another identity configuration than the build's (`serving.champions.check_identity`)."""
    from features.build import load_online_build
    from models.names import PROPENSITY_MODEL, SEND_TIME_MODEL
    from serving.champions import check_identity, load_champion

    build = build or load_online_build(config.store_path)
    champions = [load_champion(config.tracking, name) for name in (PROPENSITY_MODEL, SEND_TIME_MODEL)]
    for champion in champions:
        check_identity(champion, build.config, "the latest feature build")
    return Scorer(*champions, build.profiles, config.min_events_to_score, config.send_time)
