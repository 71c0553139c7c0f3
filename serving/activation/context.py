"""Everything an activation decision reads, gathered once: the current feature build, the scores over it,
who may be reached on which channel right now, and the columns audience rules are written against.

Audiences, plans and exports all start here, so all three apply one consent rule (`consent.reach`) to one
set of customers, and a decision names the build and the champions it used.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from features.builds import Build, Builds
from models.send_time import QuietHours
from serving.activation.consent import Reach, Suppression, reach
from serving.activation.policy import PLAN_CHANNELS, ContactPolicy, load_policy
from serving.scoring import Scorer, ServingConfig, load_scorer


@dataclass(frozen=True)
class ActivationConfig:
    """Where activation keeps its state (`root`: audiences, size history, plans, the export audit and the
    suppression list), the store and the champions it reads, the contact policy file (None: the shipped
    Vietnamese defaults, NHIP_POLICY_FILE) and the shop's quiet hours, which no plan crosses either."""

    root: Path
    store_path: Path
    serving: ServingConfig
    policy_path: Path | None
    quiet: QuietHours

    @property
    def suppression(self) -> Suppression:
        return Suppression(self.root / "suppressed.txt")

    def policy(self, path: Path | None) -> ContactPolicy:
        """The policy of `path`, else the configured file, else the defaults."""
        return load_policy(path or self.policy_path)

# The columns of `ActivationContext.frame`: name → (kind, meaning). Kinds are those of the rule language
# (`serving.activation.rules`). `nhip audience columns` prints this table.
AUDIENCE_COLUMNS: dict[str, tuple[str, str]] = {
    "propensity_score": ("number", "P(purchase within the horizon), 0–1"),
    "propensity_percentile": ("number", "share of the build's customers scored lower, 0–1 (0.9: the top 10 %)"),
    "propensity_bucket": ("text", "'High', 'Medium' or 'Low'"),
    "propensity_source": ("text", "who answered: 'model', 'btyd' or 'shop'"),
    "churn_risk": ("text", "'High', 'Medium' or 'Low'; missing for customers who never bought"),
    "p_alive": ("number", "P(still a customer), buyers only"),
    "expected_spend": ("number", "expected spend in the horizon, VND"),
    "expected_purchases": ("number", "expected purchase days in the horizon"),
    "recency_days": ("number", "days since the last activity of any kind"),
    "purchase_recency_days": ("number", "days since the last purchase; missing if never"),
    "tenure_days": ("number", "days since the first event"),
    "n_purchases": ("number", "purchases ever"),
    "n_purchases_90d": ("number", "purchases in the last 90 days"),
    "monetary_total": ("number", "spend ever, VND"),
    "monetary_avg": ("number", "average purchase, VND"),
    "open_rate_90d": ("number", "share of messages opened in the last 90 days"),
    "n_events_30d": ("number", "events in the last 30 days"),
    "top_category_1": ("text", "the category the customer interacts with most"),
    "top_category_2": ("text", "the second"),
    "top_category_3": ("text", "the third"),
    "top_category_share_1": ("number", "share of the customer's category interactions in top_category_1"),
    **{f"consent_{c}": ("bool", f"may be messaged on {c} now (consent, an address, not revoked since)")
       for c in PLAN_CHANNELS},
}


@dataclass
class ActivationContext:
    """The build, its `Scorer` and the consent state now. `revoked` holds the withdrawals since the build
    (customer_id, channel, ts); `suppression` the erased identifiers; `store_path` the event store, for the
    send history the caps count (`features.contacts`)."""

    build: Build
    scorer: Scorer
    revoked: pd.DataFrame
    suppression: Suppression
    store_path: Path | None = None
    vectors: object | None = None  # an open VectorStore of the build, for lookalike(); None: no vectors
    _cache: dict = field(default_factory=dict, repr=False)

    @cached_property
    def identity(self) -> pd.DataFrame:
        return self.build.table("identity")

    @cached_property
    def suppressed(self) -> set[str]:
        return self.suppression.customers(self.identity)

    @cached_property
    def reach(self) -> Reach:
        return reach(self.scorer.profiles, self.identity, self.revoked, self.suppressed)

    @cached_property
    def frame(self) -> pd.DataFrame:
        """One row per customer of the build (erased ones left out): the `AUDIENCE_COLUMNS`."""
        profiles = self.scorer.profiles
        scores, clv = self.scorer.scores, self.scorer.clv_answers
        frame = pd.DataFrame(index=profiles.index)
        frame["propensity_score"] = scores["score"]
        frame["propensity_percentile"] = scores["percentile"]
        frame["propensity_bucket"] = scores["bucket"]
        frame["propensity_source"] = scores["source"]
        for name in ("churn_risk", "p_alive", "expected_spend", "expected_purchases"):
            frame[name] = clv[name]
        for name, (kind, _) in AUDIENCE_COLUMNS.items():
            if name in frame.columns or name.startswith("consent_"):
                continue
            frame[name] = profiles[name] if name in profiles.columns else None
            if kind == "text":
                named = frame[name].notna() & ~frame[name].isin(["None", "nan"])  # profiles write text
                frame[name] = frame[name].astype(object).where(named, None)
        for channel in PLAN_CHANNELS:
            frame[f"consent_{channel}"] = self.reach.allowed[channel]
        return frame[~frame.index.isin(list(self.suppressed))]

    def customers(self) -> pd.Index:
        return self.frame.index

    def with_revoked(self, revoked: pd.DataFrame) -> ActivationContext:
        """This context with other withdrawals since the build, reusing its worked-out reach and columns:
        the service keeps one context per build and applies the store's withdrawals to each request."""
        other = ActivationContext(self.build, self.scorer, revoked, self.suppression, self.store_path,
                                  self.vectors, self._cache)
        allowed, frame = self.reach.allowed.copy(), self.frame.copy()
        for channel in allowed.columns:
            gone = revoked.loc[revoked["channel"] == channel, "customer_id"]
            allowed.loc[allowed.index.isin(gone), channel] = False
            frame.loc[frame.index.isin(gone), f"consent_{channel}"] = False
        base = self.reach
        other.__dict__["reach"] = Reach(allowed, base.address, base.delivery, base.identifiers)
        other.__dict__["frame"] = frame
        other.__dict__["suppressed"] = self.suppressed
        return other


@contextmanager
def open_context(config: ActivationConfig, build: Build | None = None,
                 scorer: Scorer | None = None) -> Iterator[ActivationContext]:
    """The context over `build` (default: the current one) with its champions (`scorer`, default: loaded
    here), the withdrawals since the build read from the store, and its vectors when it has some."""
    from features.contacts import revocations_since
    from features.vectors.stores import open_vector_store

    build = build or Builds(config.serving.builds).open()
    scorer = scorer or load_scorer(config.serving, build)
    revoked = revocations_since(config.store_path, build.table("identity"), build.as_of, PLAN_CHANNELS)
    vectors = None
    if build.vectors is not None or config.serving.vectors.qdrant_url:
        vectors = open_vector_store(config.serving.vectors, build)
    try:
        yield ActivationContext(build, scorer, revoked, config.suppression, config.store_path, vectors)
    finally:
        if vectors is not None:
            vectors.close()
