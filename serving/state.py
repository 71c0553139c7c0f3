"""What the service answers from, and how it follows new champions and feature builds without a restart.

A `ServingState` is everything one answer uses, all of one moment: a feature build, the champions loaded
over it with their precomputed scores, the vector store. It never changes. A request takes the current
state once and answers from it alone, so one answer never mixes versions and every answer can name the
versions it used.

The `Follower` looks every `follow_seconds` (NHIP_FOLLOW_SECONDS, 10 s) at what is current: the build
named by `builds/current` and the version each `champion` alias points at. When either moved, it loads a
new state in a background thread while requests keep being answered from the old one, then swaps one
reference. A load that fails (an artifact that does not unpickle, a feature list the build lacks, an
identity configuration that differs) keeps the old state serving; the failure is logged and reported in
`/model_versions` until a later load succeeds.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from features.builds import Build, Builds
from nhip.clock import to_local, utcnow
from serving.champions import MODEL_KEYS, champion_version, load_usable
from serving.recommender import Recommender
from serving.scoring import Scorer, ServingConfig, scorer_over

_log = logging.getLogger("nhip.serving")


@dataclass(frozen=True)
class ServingState:
    build: Build | None
    scorer: Scorer | None
    recommender: Recommender | None
    problems: dict[str, str]  # "features", "propensity", "send_time", "vectors": why it is not served
    loaded_at: datetime

    def versions(self) -> dict[str, str | None]:
        """The champion of each model and the build served, as every answer names them."""
        return dict(self._versions)

    @cached_property
    def _versions(self) -> dict[str, str | None]:  # the state never changes: worked out once
        scorer = self.scorer
        return {
            "propensity": scorer.propensity_champion.label if scorer and scorer.propensity_champion else None,
            "send_time": scorer.send_time_champion.label if scorer and scorer.send_time_champion else None,
            "build_id": self.build.build_id if self.build else None,
            "features_as_of": str(to_local(self.build.as_of)) if self.build else None,
        }

    def ready(self) -> dict[str, dict]:
        """Per model: whether it answers, its version, or why not."""
        versions = self.versions()
        out = {}
        for key in MODEL_KEYS:
            out[key] = {"ready": versions[key] is not None, "version": versions[key],
                        "reason": self.problems.get(key)}
        if self.scorer is not None and self.scorer.propensity_champion is not None:
            out["propensity"]["scorer"] = self.scorer.propensity_champion.model.scorer  # lleaves | booster (why)
        if self.scorer is not None and versions["propensity"] is None:
            # No champion, but the fallbacks (BG/NBD, the shop's rate) may still answer every customer.
            why = self.scorer.propensity_unavailable()
            out["propensity"].update(ready=why is None, reason=why or f"{self.problems.get('propensity')}: "
                                     "answered by the fallbacks (source btyd / shop)")
        out["features"] = {"ready": self.build is not None, "version": versions["build_id"],
                           "reason": self.problems.get("features")}
        return out


def empty_state(reason: str) -> ServingState:
    return ServingState(None, None, None, {"features": reason, **{k: reason for k in MODEL_KEYS}}, utcnow())


def load_state(config: ServingConfig, previous: ServingState | None = None) -> ServingState:
    """The current build with the current champions; models that cannot serve it are left out, with why.

    Champions of `previous` whose version is still the champion are reused rather than reloaded."""
    from features.vectors.stores import open_vector_store

    build = Builds(config.builds).current()
    if build is None:
        return empty_state("no feature build yet: run `nhip features build --as-of DATE` or `nhip refresh`")
    old = previous.scorer if previous is not None else None
    champions, problems = {}, {}
    for key in MODEL_KEYS:
        reuse = getattr(old, f"{key}_champion", None) if old is not None else None
        champions[key], why = load_usable(config.tracking, key, build, reuse=reuse)
        if why:
            problems[key] = why
    scorer = scorer_over(config, build, champions, dict(problems))
    recommender = None
    try:
        recommender = Recommender(build, open_vector_store(config.vectors, build))
        recommender.warm()
    except LookupError as exc:
        problems["vectors"] = str(exc)
    return ServingState(build, scorer, recommender, problems, utcnow())


@dataclass
class SwapReport:
    at: datetime | None = None
    ok: bool | None = None
    error: str | None = None
    seconds: float | None = None


@dataclass
class Follower:
    """Keeps `state` current (see the module docstring)."""

    config: ServingConfig
    state: ServingState = field(init=False)
    last_swap: SwapReport = field(default_factory=SwapReport)
    checked_at: datetime | None = None
    _failed_for: tuple | None = None  # what the last refused swap was made of: not retried until it moves
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        started = time.perf_counter()
        try:
            self.state = load_state(self.config)
            self.last_swap = SwapReport(utcnow(), True, None, time.perf_counter() - started)
        except Exception as exc:  # the service starts anyway and says why it cannot answer
            _log.exception("loading the champions and the feature build failed")
            self.state = empty_state(f"loading failed: {type(exc).__name__}: {exc}")
            self.last_swap = SwapReport(utcnow(), False, str(exc), time.perf_counter() - started)
        self._log_state()

    def current(self) -> tuple[str | None, dict[str, str | None]]:
        """(current build id, champion version per model) as the workspace says now."""
        build = Builds(self.config.builds).current()
        return (build.build_id if build else None,
                {key: champion_version(self.config.tracking, key) for key in MODEL_KEYS})

    def _stale(self, build_id: str | None, champions: dict[str, str | None]) -> bool:
        versions = self.state.versions()
        if build_id != versions["build_id"]:
            return True
        for key, version in champions.items():
            served = versions[key]
            if (served.rsplit("/", 1)[1] if served else None) != version:
                return True
        return False

    def check(self) -> bool:
        """Swap in a new state if the build or a champion moved; True when a swap happened."""
        self.checked_at = utcnow()
        build_id, champions = self.current()
        wanted = (build_id, tuple(sorted(champions.items())))
        if not self._stale(build_id, champions) or wanted == self._failed_for:
            return False
        started = time.perf_counter()
        try:
            state = load_state(self.config, previous=self.state)
            why = self._refusal(state)
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
        if why:
            self._failed_for = wanted
            self.last_swap = SwapReport(utcnow(), False, why, time.perf_counter() - started)
            _log.error("swap failed, still serving %s: %s", self.state.versions(), why)
            return False
        self._failed_for = None
        self.state = state
        self.last_swap = SwapReport(utcnow(), True, None, time.perf_counter() - started)
        self._log_state()
        return True

    def _refusal(self, state: ServingState) -> str | None:
        """Why `state` must not replace the current one: a model served now that it cannot serve, for
        another reason than its champion alias being gone (a champion that does not load, or does not
        fit the new build)."""
        served = self.state.versions()
        lost = [key for key in MODEL_KEYS if served[key] and not state.versions()[key]
                and "no champion of" not in state.problems.get(key, "")]
        return "; ".join(state.problems[key] for key in lost) or None

    def _log_state(self) -> None:
        _log.info("serving %s%s", self.state.versions(),
                  "; not serving: " + "; ".join(f"{k}: {v}" for k, v in self.state.problems.items())
                  if self.state.problems else "")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="follow", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.config.follow_seconds):
            try:
                self.check()
            except Exception:  # the registry or the builds folder unreadable for a moment
                _log.exception("checking for new champions and builds failed")

    def stop(self) -> None:
        self._stop.set()

    def report(self) -> dict:
        """What `/model_versions` shows: the versions served, per model readiness and the last swap."""
        swap = self.last_swap
        return {**self.state.versions(), "models": self.state.ready(),
                "loaded_at": self.state.loaded_at.isoformat(),
                "checked_at": self.checked_at.isoformat() if self.checked_at else None,
                "last_swap": {"at": swap.at.isoformat() if swap.at else None, "ok": swap.ok, "error": swap.error,
                              "seconds": round(swap.seconds, 3) if swap.seconds is not None else None}}
