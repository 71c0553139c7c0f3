"""Answers to score requests from loaded champions and the online profiles; no web framework here.

Propensity scores for the whole online snapshot are computed once at load time: a request is then a
lookup, and a customer's percentile is the same in the API as in `nhip score propensity`.
"""

from __future__ import annotations

from datetime import time

import numpy as np
import pandas as pd

from models.propensity import score_profiles
from nhip.clock import local_timestamp, to_local


def parse_clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _unknown(customer_id: str) -> dict:
    return {"customer_id": customer_id, "status": "unknown",
            "error": "unknown customer id (not in the latest feature build)"}


class Scorer:
    def __init__(self, propensity, send_time, profiles: pd.DataFrame, settings,
                 rng: np.random.Generator | None = None):
        self.propensity_champion = propensity
        self.send_time_champion = send_time
        self.profiles = profiles
        self.as_of = profiles["as_of"].iloc[0] if len(profiles) else None
        self.quiet = (parse_clock(settings.quiet_start), parse_clock(settings.quiet_end))
        self.explore = settings.send_time_explore
        self.rng = rng or np.random.default_rng()  # exploration draws; tests pass a seeded one
        self.scores = score_profiles(propensity.model, profiles, settings.min_events_to_score)

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
            choice = model.choose(cid, channel, start, end, *self.quiet, explore=explore, rng=self.rng)
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


def load_scorer(settings) -> Scorer:
    from features.build import load_online_profiles
    from models.names import PROPENSITY_MODEL, SEND_TIME_MODEL
    from serving.champions import load_champion

    profiles, _ = load_online_profiles(settings)
    return Scorer(
        load_champion(settings, PROPENSITY_MODEL),
        load_champion(settings, SEND_TIME_MODEL),
        profiles,
        settings,
    )
