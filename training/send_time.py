"""Pure steps for the send-time model: fit on sends up to a date, evaluate on the sends after it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from features.datasets import message_sends
from models.send_time import SendTimeModel


@dataclass
class SendTimeResult:
    model: SendTimeModel
    metrics: dict[str, float]
    sends: pd.DataFrame  # every send used for the final fit
    holdout: pd.DataFrame  # the sends of the last `holdout_days`, for comparing models


def _scores(model: SendTimeModel, sends: pd.DataFrame, shop_only: bool = False) -> np.ndarray:
    out = np.empty(len(sends))
    for i, row in enumerate(sends.itertuples(index=False)):
        customer = "" if shop_only else row.customer_id
        out[i] = model.curve(customer, row.channel)[0][int(row.how)]
    return out


def fit_send_time(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    holdout_days: int = 30,
    prior_strength: float = 8.0,
) -> SendTimeResult:
    """Evaluate on the last `holdout_days` before `as_of`, then refit on everything up to `as_of`.

    The holdout compares the personal curves with the shop curve on the same sends (AUC and log-loss of
    predicting an open): personalisation must beat the shop curve to be worth serving.
    """
    sends = message_sends(con, as_of)
    if sends.empty:
        raise ValueError("no message_sent events by as_of; send-time needs message history")
    cut = as_of - timedelta(days=holdout_days)
    before, after = sends[sends["ts"] <= cut], sends[sends["ts"] > cut]
    metrics: dict[str, float] = {"sends": float(len(sends)), "open_rate": float(sends["opened"].mean())}
    if len(before) and after["opened"].nunique() == 2:
        held = SendTimeModel(prior_strength=prior_strength).fit(before)
        personal, shop = _scores(held, after), _scores(held, after, shop_only=True)
        metrics |= {
            "holdout_sends": float(len(after)),
            "holdout_auc": float(roc_auc_score(after["opened"], personal)),
            "holdout_auc_shop_curve": float(roc_auc_score(after["opened"], shop)),
            "holdout_log_loss": float(log_loss(after["opened"], np.clip(personal, 1e-6, 1 - 1e-6))),
            "holdout_log_loss_shop_curve": float(
                log_loss(after["opened"], np.clip(shop, 1e-6, 1 - 1e-6))
            ),
        }
    model = SendTimeModel(prior_strength=prior_strength).fit(sends)
    return SendTimeResult(model, metrics, sends, after)


def holdout_auc(model: SendTimeModel, sends: pd.DataFrame) -> float | None:
    """AUC of a model's open predictions on `sends`; None when they hold a single outcome."""
    if sends["opened"].nunique() < 2:
        return None
    return float(roc_auc_score(sends["opened"], _scores(model, sends)))
