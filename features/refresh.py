"""The refresh: bring newly arrived events into the online profiles, on a schedule.

    nhip refresh            # once (cron, a systemd timer, a Kubernetes CronJob)
    nhip up                 # every NHIP_REFRESH_MINUTES (5), beside the collector and the service

A refresh is a feature build (`features.build.build_features`) as of the latest stored event, never
later than now, made only when there is something new: it first stores what a stopped collector left in
the spool, then compares the store's fingerprint with the one the current build was made from and skips
when they are equal. A refresh that finds another build running skips too, rather than queueing behind
it; the next one will see its events. The service follows the new build within NHIP_FOLLOW_SECONDS and
scores from it, so an acknowledged event reaches a served score within one refresh interval plus the
build and the follow.

Vectors go to the build's snapshot (what the service reads), and to Qdrant only when a Qdrant server is
configured (`NHIP_QDRANT_URL`): writing the embedded Qdrant takes minutes for a large shop, too long to
repeat every few minutes; `nhip features build` still writes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from features.build import STALE_SPOOL_SECONDS, BuildConfig, BuildSummary, build_features, last_build_events
from features.builds import BuildBusy, Builds
from features.ingest.spool import LocalSpool, drain_spool
from features.store import fingerprint, open_store, store_exists
from features.vectors.config import VectorConfig
from nhip.clock import utcnow

BUILT, UNCHANGED, BUSY, EMPTY = "built", "no new events", "another build is running", "no events yet"


@dataclass(frozen=True)
class RefreshResult:
    status: str  # BUILT, UNCHANGED, BUSY or EMPTY
    build: BuildSummary | None
    seconds: float
    recovered_batches: int  # spooled batches a stopped collector left, stored first

    def describe(self) -> str:
        if self.build is None:
            return f"refresh skipped: {self.status} ({self.seconds:.1f} s)"
        b = self.build
        return (f"refresh built {b.build_id} as of {b.as_of:%Y-%m-%d %H:%M:%S} UTC: {b.customers:,} customers, "
                f"{b.vectors:,} vectors in {self.seconds:.1f} s")


def refresh(config: BuildConfig, vectors: VectorConfig | None,
            step: Callable[[str], None] | None = None) -> RefreshResult:
    """One refresh (see the module docstring)."""
    started = time.perf_counter()
    recovered = drain_spool(LocalSpool(config.spool_path), config.store_path, older_than=STALE_SPOOL_SECONDS,
                            wait=60)

    def skipped(status: str) -> RefreshResult:
        return RefreshResult(status, None, time.perf_counter() - started, recovered)

    if not store_exists(config.store_path):
        return skipped(EMPTY)
    with open_store(config.store_path) as con:
        data = fingerprint(con)
        latest = con.execute("SELECT max(ts) FROM events WHERE ts <= $now", {"now": utcnow()}).fetchall()[0][0]
    if latest is None:
        return skipped(EMPTY)
    if last_build_events(Builds(config.builds).current()) == data:
        return skipped(UNCHANGED)
    to_qdrant = vectors is not None and vectors.qdrant_url is not None
    try:
        summary = build_features(config, latest, vectors, to_qdrant=to_qdrant, step=step, wait=0)
    except BuildBusy:
        return skipped(BUSY)
    return RefreshResult(BUILT, summary, time.perf_counter() - started, recovered)
