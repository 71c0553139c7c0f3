"""The service's own Prometheus counters, served by BentoML's `/metrics` beside its request histograms.

Created when the service starts, not at import: BentoML points prometheus_client at its multiprocess
directory only then, and counters made earlier would never reach `/metrics`.
"""

from __future__ import annotations

from collections import Counter as Tally


class Metrics:
    """`registry`: prometheus_client's default (what /metrics serves) unless a test passes its own."""

    def __init__(self, registry=None) -> None:
        from prometheus_client import REGISTRY, Counter

        registry = registry or REGISTRY
        self.requests = Counter("nhip_requests", "Requests answered, by endpoint, HTTP status and model version",
                                ["endpoint", "status", "model_version"], registry=registry)
        self.answers = Counter("nhip_answers", "Customers answered, by endpoint, source (the model, a fallback, "
                               "unknown, unscored) and model version", ["endpoint", "source", "model_version"],
                               registry=registry)
        self.unknown_ids = Counter("nhip_unknown_ids", "Customer ids asked for that the feature build does not know",
                                   ["endpoint"], registry=registry)
        self.unavailable = Counter("nhip_unavailable", "503 answers: the model an endpoint needs is not loaded",
                                   ["endpoint", "model"], registry=registry)

    def request(self, endpoint: str, status: int, version: str | None) -> None:
        self.requests.labels(endpoint, str(status), version or "none").inc()

    def results(self, endpoint: str, results: list[dict], version: str | None) -> None:
        """Count one request's answers by where they came from; unknown ids also on their own counter."""
        tally = Tally(r.get("source") or r["status"] for r in results)
        for source, n in tally.items():
            self.answers.labels(endpoint, source, version or "none").inc(n)
        if tally.get("unknown"):
            self.unknown_ids.labels(endpoint).inc(tally["unknown"])
