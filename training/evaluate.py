"""Evaluation metrics, shared by every model comparison and report."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)


def lift_at(y: np.ndarray, p: np.ndarray, top: float = 0.1) -> float:
    """Purchase rate among the top `top` share of scores ÷ the overall rate."""
    y, p = np.asarray(y), np.asarray(p)
    n = max(1, int(round(len(p) * top)))
    order = np.argsort(-p, kind="stable")[:n]
    base = y.mean()
    return float(y[order].mean() / base) if base > 0 else float("nan")


def classification_metrics(y, p) -> dict[str, float]:
    y, p = np.asarray(y).astype(int), np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    two_classes = len(np.unique(y)) == 2
    return {
        "auc": float(roc_auc_score(y, p)) if two_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if two_classes else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "lift_top_decile": lift_at(y, p, 0.1),
        "base_rate": float(y.mean()),
        "rows": int(len(y)),
    }


def ranking_metrics(y, score) -> dict[str, float]:
    """AUC, PR-AUC and lift for a score that ranks but is not a probability (a baseline rule)."""
    y = np.asarray(y).astype(int)
    score = np.asarray(score, dtype=float)
    return {
        "auc": float(roc_auc_score(y, score)),
        "pr_auc": float(average_precision_score(y, score)),
        "lift_top_decile": lift_at(y, score, 0.1),
    }


def calibration_table(y, p, bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs observed rate per equal-count bin of predictions."""
    frame = pd.DataFrame({"y": np.asarray(y), "p": np.asarray(p)})
    frame["bin"] = pd.qcut(frame["p"].rank(method="first"), q=min(bins, len(frame)), labels=False)
    return frame.groupby("bin").agg(predicted=("p", "mean"), observed=("y", "mean"), n=("y", "size"))


def expected_calibration_error(y, p, bins: int = 10) -> float:
    table = calibration_table(y, p, bins)
    return float((table["n"] * (table["predicted"] - table["observed"]).abs()).sum() / table["n"].sum())


def lift_curve(y, p, points: int = 10) -> pd.DataFrame:
    """Cumulative lift at each top-k% of customers by score."""
    shares = np.arange(1, points + 1) / points
    return pd.DataFrame({"top_share": shares, "lift": [lift_at(y, p, s) for s in shares]})


def grade(auc: float, lift: float) -> str:
    """Model quality in words, from AUC and top-decile lift (the weaker of the two decides)."""
    def from_auc(a: float) -> int:
        return 0 if a < 0.6 else 1 if a < 0.7 else 2 if a < 0.8 else 3

    def from_lift(lift: float) -> int:
        return 0 if lift < 1.5 else 1 if lift < 2.0 else 2 if lift < 3.0 else 3

    if np.isnan(auc):
        return "Poor"
    level = min(from_auc(auc), from_lift(lift if not np.isnan(lift) else 0.0))
    return ("Poor", "Fair", "Good", "Excellent")[level]
