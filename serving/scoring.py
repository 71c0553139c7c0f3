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
from datetime import datetime
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
from nhip.clock import LOCAL_FIXED_TZ, to_local

UNKNOWN = "unknown customer id (not in the latest feature build)"
_UNKNOWN = {"status": "unknown", "error": UNKNOWN}


def _values(column: pd.Series, keep: np.ndarray | None = None) -> list:
    """A column as native Python values, None where missing (or where `keep` is False)."""
    values = column.astype(object).where(column.notna(), None)
    if keep is not None:
        values = values.where(keep, None)
    return values.tolist()


class AnswerLookup:
    """Answers worked out for every customer of a build, held as one Python list per field so that a
    request is an index lookup and a dict per customer: no pandas row access on the request path.

    `fields` maps each answer field to its values, in the order of `index`.
    """

    def __init__(self, index: pd.Index, fields: dict[str, list]):
        self.index = index
        self.fields = fields
        # A dict, not the index's own lookup: pandas converts every list of ids it is asked for into an
        # Arrow array first, which costs more than the rest of a one-customer request.
        self.position = dict(zip(index.tolist(), range(len(index))))

    def __len__(self) -> int:
        return len(self.index)

    def positions(self, customer_ids) -> list[int]:
        get = self.position.get
        return [get(cid, -1) for cid in customer_ids]

    def rows(self, customer_ids, positions=None) -> list[dict]:
        """One answer per id, in the order asked; an id not in the build is `unknown`."""
        positions = self.positions(customer_ids) if positions is None else positions
        names, columns = list(self.fields), list(self.fields.values())
        blank = dict.fromkeys(names)  # an unknown id gets every field, null, as a known one does
        out = []
        for cid, i in zip(customer_ids, positions):
            if i < 0:
                out.append({"customer_id": cid, **blank, **_UNKNOWN})
            else:
                row = {"customer_id": cid}
                for name, column in zip(names, columns):
                    row[name] = column[i]
                out.append(row)
        return out

    def page(self, offset: int, limit: int) -> list[dict]:
        """Customers `offset` … `offset + limit - 1` in the build's order."""
        ids = self.index[offset:offset + limit]
        return self.rows(ids.tolist(), range(offset, offset + len(ids)))


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
        self.propensity_lookup = _propensity_lookup(self.scores)
        self.clv_lookup = _clv_lookup(self.clv_answers)

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
        """Score, percentile, bucket and source per customer, in the order asked."""
        unavailable = self.propensity_unavailable()
        if unavailable:
            raise ModelUnavailable(unavailable)
        return self.propensity_lookup.rows(customer_ids)

    def clv(self, customer_ids: list[str]) -> list[dict]:
        """P(alive), expected purchase days and spend over the horizon, churn risk and source per
        customer (`models.clv`); answers whenever /propensity can, since it builds on those answers."""
        unavailable = self.propensity_unavailable()
        if unavailable:
            raise ModelUnavailable(unavailable)
        return self.clv_lookup.rows(customer_ids)

    def send_time(self, customer_ids: list[str], channel: str, start, end,
                  explore: bool | None = None) -> list[dict]:
        """The best hour in the window per customer, outside quiet hours, and the curve's source.

        With `explore` (default: the `NHIP_SEND_TIME_EXPLORE` setting) the hour comes from Thompson
        sampling, so sends keep teaching the model; `explored` says when that moved it off the best hour.
        All the customers of a request are chosen for at once (`choose_many`).
        """
        if channel not in MESSAGE_CHANNELS:
            raise ValueError(f"channel: {channel!r} is not a message channel; use one of "
                             f"{', '.join(MESSAGE_CHANNELS)}")
        start, end = _aware(start), _aware(end)
        if end <= start:
            raise ValueError("window_end must be after window_start")
        explore = self.explore if explore is None else explore
        model = self._require(self.send_time_champion, "send_time").model
        position = self.propensity_lookup.position  # every customer of the build
        known = [cid in position for cid in customer_ids]
        asked = [cid for cid, k in zip(customer_ids, known) if k]
        choices = model.choose_many(asked, channel, start, end, self.quiet, explore=explore, rng=self.rng)
        hours, scores, explored = choices.hours.tolist(), choices.scores.tolist(), choices.explored.tolist()
        stamps: dict[int, str] = {}  # a campaign's customers share a handful of slots
        out, j = [], 0
        for cid, k in zip(customer_ids, known):
            if not k:
                out.append({"customer_id": cid, "status": "unknown", "send_at": None, "score": None, "source": None,
                            "explored": False, "error": UNKNOWN})
                continue
            hour = hours[j]
            if hour < 0:
                out.append({"customer_id": cid, "status": "no_slot", "send_at": None, "score": None,
                            "source": choices.sources[j], "explored": False, "error": None})
            else:
                if hour not in stamps:
                    stamps[hour] = _slot_iso(hour)
                out.append({"customer_id": cid, "status": "scored", "send_at": stamps[hour], "score": scores[j],
                            "source": choices.sources[j], "explored": explored[j], "error": None})
            j += 1
        return out

    def versions(self) -> dict[str, str | None]:
        """The champion of each model (None when missing) and the build's as-of, in Vietnam time."""
        return {
            "propensity": self.propensity_champion.label if self.propensity_champion else None,
            "send_time": self.send_time_champion.label if self.send_time_champion else None,
            "features_as_of": str(to_local(self.as_of)) if self.as_of is not None else None,
        }


def _propensity_lookup(scores: pd.DataFrame) -> AnswerLookup:
    scored = (scores["status"] == "scored").to_numpy()
    return AnswerLookup(scores.index, {
        "status": scores["status"].tolist(),
        "score": _values(scores["score"], scored),
        "percentile": _values(scores["percentile"], scored),
        "bucket": _values(scores["bucket"]),
        "source": _values(scores["source"], scored),
        "error": _values(scores["reason"]),
    })


def _clv_lookup(answers: pd.DataFrame) -> AnswerLookup:
    return AnswerLookup(answers.index, {
        "status": answers["status"].tolist(),
        **{name: _values(answers[name]) for name in ("p_alive", "expected_purchases", "expected_spend",
                                                     "churn_risk", "source")},
        "error": _values(answers["reason"]),
    })


def _aware(value) -> datetime:
    """A window bound as an aware time: naive input is Vietnam time (`nhip.clock.local_timestamp`'s rule,
    without pandas, which costs more than the choice itself for one customer)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=LOCAL_FIXED_TZ) if value.tzinfo is None else value


def _slot_iso(hour: int) -> str:
    """An hour since the epoch as Vietnam local time, e.g. 2026-08-29T09:00:00+07:00."""
    return datetime.fromtimestamp(hour * 3600, LOCAL_FIXED_TZ).isoformat()


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
    return scorer_over(config, build, champions, missing)


def scorer_over(config: ServingConfig, build: Build, champions: dict, missing: dict[str, str]) -> Scorer:
    """The Scorer of `champions` (key → loaded champion or None) over `build`, with the lifetime models
    the build fitted: the service and `nhip score` construct it here alike."""
    return Scorer(champions["propensity"], champions["send_time"], build.table("profiles"),
                  build.table("repeat"), config.gate, config.send_time, config.fallback_horizon_days,
                  missing=missing, compiled_dir=config.compiled_dir, lifetime_params=build.meta.get("lifetime"))
