"""Answers to score requests from loaded champions and the profiles of one feature build; no web
framework here.

Propensity answers for the whole build are computed once, when the build or the champion is loaded: a
request is then a lookup, and a customer's percentile is the same in the API as in `nhip score`. Every
customer of the build gets an answer with its `source` (`models.answers`): the champion where the gate
lets it answer, BG/NBD or the shop's rate elsewhere, and before any champion exists the fallbacks alone
(over `fallback_horizon_days`). Churn and lifetime value (`models.clv`) are computed at the same time,
on those answers, with the Pareto/NBD and Gamma-Gamma the build fitted. Each model stands on its
own: a shop with message events but no
purchases has a send-time champion and no propensity one, and its send times are still served
(`ModelUnavailable` names what is missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.builds import Build, Builds, BuildsConfig
from features.schema import MESSAGE_CHANNELS
from features.vectors.config import VectorConfig
from models.answers import ScoreGate, answer_propensity
from models.clv import answer_clv, fit_lifetime, lifetime_from_params
from models.send_time import SendTimeConfig
from models.tracking import TrackingConfig
from nhip.clock import local_timestamp, to_local


def _unknown(customer_id: str) -> dict:
    return {"customer_id": customer_id, "status": "unknown",
            "error": "unknown customer id (not in the latest feature build)"}


def _number(value) -> float | None:
    return float(value) if pd.notna(value) else None


class ModelUnavailable(LookupError):
    """A request needs a model this process has no usable version of; the message says why."""


@dataclass(frozen=True)
class ServingConfig:
    """What the service needs: the feature builds it serves, the registry of the champions, the vector
    stores, the model's gate (NHIP_MIN_EVENTS_TO_SCORE), the send-time settings, how often it looks for
    a new champion or build (NHIP_FOLLOW_SECONDS) and the fallbacks' horizon without a champion."""

    builds: BuildsConfig
    tracking: TrackingConfig
    vectors: VectorConfig
    min_events_to_score: int
    send_time: SendTimeConfig
    follow_seconds: float
    fallback_horizon_days: int = 30  # NHIP_FALLBACK_HORIZON_DAYS: the horizon before any champion exists
    compiled_dir: Path | None = None  # where compiled champions are cached (`models.compiled`)

    @property
    def gate(self) -> ScoreGate:
        return ScoreGate(self.min_events_to_score)


class Scorer:
    """The champions over the profiles of one build; either champion may be None (see the module
    docstring), with `missing` saying why. `summary` is the build's purchase summary (the fallbacks'
    input), `gate` the one rule for when the propensity model answers, `horizon_days` the fallbacks'
    horizon when there is no propensity champion. `send_time_config` carries the quiet hours and whether
    answers explore by default; `rng` draws the explorations (tests pass a seeded one)."""

    def __init__(self, propensity, send_time, profiles: pd.DataFrame, summary: pd.DataFrame, gate: ScoreGate,
                 send_time_config: SendTimeConfig, horizon_days: int = 30, rng: np.random.Generator | None = None,
                 missing: dict[str, str] | None = None, compiled_dir: Path | None = None,
                 lifetime_params: dict | None = None):
        self.propensity_champion = propensity
        self.send_time_champion = send_time
        self.profiles = profiles
        self.as_of = profiles["as_of"].iloc[0] if len(profiles) else None
        self.quiet = send_time_config.quiet
        self.explore = send_time_config.explore
        self.rng = rng or np.random.default_rng()
        self.missing = dict(missing or {})
        self.horizon_days = propensity.model.horizon_days if propensity is not None else horizon_days
        if propensity is not None and getattr(propensity.model, "trees_", None) is None:
            propensity.model.compile_trees(compiled_dir)  # once per loaded champion; the booster if it fails
        # Pareto/NBD and Gamma-Gamma as the build fitted them (a build made before it recorded them: fitted
        # here), for the propensity blend and the lifetime answers.
        self.lifetime = (lifetime_from_params(lifetime_params, summary, self.horizon_days) if lifetime_params
                         else fit_lifetime(summary, self.horizon_days))
        self.scores = answer_propensity(propensity.model if propensity is not None else None, profiles,
                                        summary, self.horizon_days, gate, self.lifetime.pareto)
        self.clv_answers = answer_clv(self.scores, summary, self.lifetime)

    def _require(self, champion, name: str):
        if champion is None:
            raise ModelUnavailable(self.missing.get(name, f"no {name} champion is loaded"))
        return champion

    def propensity_unavailable(self) -> str | None:
        """Why /propensity cannot answer anyone (no champion, and no fallback can answer), else None.

        Asked on every /propensity request and readiness check; the answers never change, so it is
        worked out once."""
        if not hasattr(self, "_unavailable"):
            self._unavailable = self._why_propensity_unavailable()
        return self._unavailable

    def _why_propensity_unavailable(self) -> str | None:
        if self.propensity_champion is not None or (self.scores["status"] == "scored").any():
            return None
        why = self.missing.get("propensity", "no propensity champion is loaded")
        reasons = self.scores["reason"].dropna()
        return f"{why}; and no fallback can answer: {reasons.iloc[0]}" if len(reasons) else why

    def propensity(self, customer_ids: list[str]) -> list[dict]:
        unavailable = self.propensity_unavailable()
        if unavailable:
            raise ModelUnavailable(unavailable)
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
                "source": row["source"] if scored else None,
                "error": row["reason"] if isinstance(row["reason"], str) else None,
            })
        return out

    def clv(self, customer_ids: list[str]) -> list[dict]:
        """P(alive), expected purchase days and spend over the horizon, churn risk and source per
        customer (`models.clv`); answers whenever /propensity can, since it builds on those answers."""
        unavailable = self.propensity_unavailable()
        if unavailable:
            raise ModelUnavailable(unavailable)
        out = []
        for cid in customer_ids:
            if cid not in self.clv_answers.index:
                out.append(_unknown(cid))
                continue
            row = self.clv_answers.loc[cid]
            out.append({
                "customer_id": cid,
                "status": row["status"],
                "p_alive": _number(row["p_alive"]),
                "expected_purchases": _number(row["expected_purchases"]),
                "expected_spend": _number(row["expected_spend"]),
                "churn_risk": row["churn_risk"] if isinstance(row["churn_risk"], str) else None,
                "source": row["source"] if isinstance(row["source"], str) else None,
                "error": row["reason"] if isinstance(row["reason"], str) else None,
            })
        return out

    def send_time(self, customer_ids: list[str], channel: str, start, end,
                  explore: bool | None = None) -> list[dict]:
        """The best hour in the window per customer, outside quiet hours, and the curve's source.

        With `explore` (default: the `NHIP_SEND_TIME_EXPLORE` setting) the hour comes from Thompson
        sampling, so sends keep teaching the model; `explored` says when that moved it off the best hour.
        """
        if channel not in MESSAGE_CHANNELS:
            raise ValueError(f"channel: {channel!r} is not a message channel; use one of "
                             f"{', '.join(MESSAGE_CHANNELS)}")
        start, end = local_timestamp(start), local_timestamp(end)
        if end <= start:
            raise ValueError("window_end must be after window_start")
        explore = self.explore if explore is None else explore
        model = self._require(self.send_time_champion, "send_time").model
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

    def versions(self) -> dict[str, str | None]:
        """The champion of each model (None when missing) and the build's as-of, in Vietnam time."""
        return {
            "propensity": self.propensity_champion.label if self.propensity_champion else None,
            "send_time": self.send_time_champion.label if self.send_time_champion else None,
            "features_as_of": str(to_local(self.as_of)) if self.as_of is not None else None,
        }


def load_scorer(config: ServingConfig, build: Build | None = None, need: tuple[str, ...] = ()) -> Scorer:
    """Both champions over `build` (default: the current feature build). A champion that is missing, or
    unusable with the build (`serving.champions.load_usable`), is left out and `missing` says why, unless
    its key is in `need`: then that reason is raised."""
    from serving.champions import load_usable

    build = build or Builds(config.builds).open()
    champions, missing = {}, {}
    for key in ("propensity", "send_time"):
        champions[key], why = load_usable(config.tracking, key, build)
        if why:
            if key in need:
                raise ModelUnavailable(why)
            missing[key] = why
    return Scorer(champions["propensity"], champions["send_time"], build.table("profiles"),
                  build.table("repeat"), config.gate, config.send_time, config.fallback_horizon_days,
                  missing=missing, compiled_dir=config.compiled_dir, lifetime_params=build.meta.get("lifetime"))
