"""The promotion gate: may a candidate take the `champion` alias? Pure functions, no MLflow.

A candidate must first be fit to serve on its own (finite metrics, every bucket populated, calibration
within bound, no worse than its own simple baseline where one is checked), then beat the current
champion on the same backtest by the configured margin. Every
reason it fails is kept, so the run's `promotion_reason` tag tells the whole story, not just the first
problem found.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

BUCKET_NAMES = ("High", "Medium", "Low")


@dataclass(frozen=True)
class GateConfig:
    """margin: the metric a candidate must beat the champion by (NHIP_PROMOTION_MARGIN); max_ece: the
    calibration error above which no propensity model is promoted (NHIP_MAX_ECE)."""

    margin: float
    max_ece: float


@dataclass
class Verdict:
    """What the gate decided for one candidate, with the numbers it compared."""

    promote: bool
    reasons: list[str]
    metric: str
    candidate_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None = None  # the champion on the candidate's backtest
    champion_version: str | None = None
    deltas: dict[str, float] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def sanity_failures(
    metrics: Mapping[str, float],
    required: Sequence[str],
    bucket_sizes: Mapping[str, int] | None,
    max_ece: float | None,
) -> list[str]:
    """Why a candidate is unfit to serve whatever the champion scores; empty when it is fit. A model
    without buckets or probabilities to calibrate passes None for `bucket_sizes` / `max_ece`.

    An empty High/Medium/Low bucket means the scores collapse onto a few values (marketers would get an
    audience of nobody); a calibration error above the bound means the probabilities cannot be read as
    probabilities; a NaN metric means the evaluation itself broke.
    """
    failures = [f"{name} is not a finite number ({metrics.get(name)})"
                for name in required if not _finite(metrics.get(name))]
    if bucket_sizes is not None:
        empty = [b for b in BUCKET_NAMES if bucket_sizes.get(b, 0) == 0]
        if empty:
            failures.append(f"empty bucket on the test snapshot: {', '.join(empty)}")
    ece = metrics.get("ece")
    if max_ece is not None and _finite(ece) and ece > max_ece:
        failures.append(f"calibration error {ece:.3f} above the bound {max_ece:.3f}")
    return failures


def baseline_failures(metrics: Mapping[str, float], metric: str, baseline: str) -> list[str]:
    """A model that loses to its own simple baseline on its test data is not worth serving."""
    value, floor = metrics.get(metric), metrics.get(baseline)
    if _finite(value) and _finite(floor) and value < floor:
        return [f"{metric} {value:.4f} below its baseline {baseline} {floor:.4f}"]
    return []


def decide(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    failures: Sequence[str],
    margin: float,
    metric: str,
) -> tuple[bool, list[str]]:
    """(promote, reasons) for a candidate against the champion's metrics on the same backtest.

    `champion` is None when there is no champion yet. `failures` are reasons found beforehand (sanity
    checks, a champion that cannot be scored on this backtest); any of them keeps the champion. Ties pass
    when the margin is 0: at equal quality the candidate has seen fresher data.
    """
    reasons = list(failures)
    value = candidate.get(metric, math.nan)
    if not _finite(value) and not any(r.startswith(f"{metric} ") for r in reasons):
        reasons.append(f"{metric} is not a finite number ({value})")
    if champion is None:
        return (False, reasons) if reasons else (True, ["no champion yet"])
    best = champion.get(metric, math.nan)
    if not _finite(best):
        unscored = f"the champion's {metric} on this backtest is not a finite number ({best})"
        return (False, reasons) if reasons else (True, [unscored])
    if not _finite(value):
        return False, reasons
    delta = value - best
    comparison = f"{metric} {value:.4f} vs champion {best:.4f} ({delta:+.4f})"
    if delta >= margin:
        if reasons:
            return False, reasons
        return True, [f"{comparison} ≥ margin {margin:.4f}"]
    return False, [*reasons, f"{comparison} < margin {margin:.4f}"]


def deltas(candidate: Mapping[str, float], champion: Mapping[str, float] | None) -> dict[str, float]:
    """Candidate minus champion for every metric both have as a finite number."""
    if not champion:
        return {}
    return {k: candidate[k] - champion[k] for k in candidate
            if k in champion and _finite(candidate[k]) and _finite(champion[k])}


# How each metric is named in a verdict line, in the order shown.
_SHOWN = {"auc": "AUC", "lift_top_decile": "lift@10%", "ece": "ECE", "holdout_auc": "holdout AUC"}


def verdict_lines(model_name: str, version: str, verdict: Verdict) -> list[str]:
    """"promoted" / "kept" with the metric deltas against the champion, then the gate's reasons."""
    parts = []
    for key in (k for k in _SHOWN if k in verdict.candidate_metrics):
        value = f"{_SHOWN[key]} {verdict.candidate_metrics[key]:.3f}"
        if key in verdict.deltas:
            value += f" ({verdict.deltas[key]:+.3f})"
        parts.append(value)
    word = "promoted" if verdict.promote else "kept"
    if not verdict.promote and verdict.champion_version:
        word += f" (champion stays version {verdict.champion_version})"
    against = f" vs champion version {verdict.champion_version}" if verdict.champion_metrics else ""
    return [f"{model_name} version {version}: {word} — {', '.join(parts)}{against}",
            f"  reason: {verdict.reason}"]
