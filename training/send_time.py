"""Pure steps for the send-time model: gather its inputs as of a date, fit, evaluate on the sends after."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from features.identity.events import resolve_events
from features.identity.graph import IdentityConfig
from features.profile.activity import activity_by_hour, message_responses
from models.send_time import SendHourModel, SendTimeInputs, SendTimeModel


@dataclass
class SendTimeResult:
    model: SendTimeModel
    metrics: dict[str, float]
    sends: pd.DataFrame  # every send used for the final fit (opened = opened or clicked by a person)
    holdout: pd.DataFrame  # the sends of the last `holdout_days`, for comparing models


def send_time_inputs(con: duckdb.DuckDBPyConnection, as_of: datetime, identity: IdentityConfig) -> SendTimeInputs:
    """Sends with their responses and every customer's activity by hour, all from events up to `as_of`
    (an open or a page view that came later cannot shape a model fitted at `as_of`), customers resolved
    with `identity`."""
    with resolve_events(con, as_of, identity) as events:
        return SendTimeInputs(sends=message_responses(events), activity=activity_by_hour(events))


def _scores(model, sends: pd.DataFrame, shop_only: bool = False) -> np.ndarray:
    if shop_only:
        shop = {c: model.shop_curve(c) for c in sends["channel"].unique()}
        return np.array([shop[c][int(h)] for c, h in zip(sends["channel"], sends["hour_of_week"])])
    return model.predict_rows(sends)


def _holdout_metrics(y: pd.Series, scores: np.ndarray) -> tuple[float, float]:
    return (float(roc_auc_score(y, scores)),
            float(log_loss(y, np.clip(scores, 1e-6, 1 - 1e-6), labels=[0, 1])))


def fit_send_time(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    identity: IdentityConfig,
    prior_strength: float,
    holdout_days: int = 30,
) -> SendTimeResult:
    """Evaluate on the last `holdout_days` before `as_of`, then refit on everything up to `as_of`.

    The holdout model sees only events up to the cut (sends, opens and activity alike) and predicts
    whether each later send was opened. It is compared with its own shop curve and with version 1 on the
    same sends (AUC and log-loss): personalisation must beat the shop curve to be worth serving.
    """
    inputs = send_time_inputs(con, as_of, identity)
    sends = inputs.sends
    if sends.empty:
        raise ValueError("no message_sent events by as_of; send-time needs message history")
    cut = as_of - timedelta(days=holdout_days)
    after = sends[sends["ts"] > cut].reset_index(drop=True)
    metrics: dict[str, float] = {"sends": float(len(sends)), "open_rate": float(sends["opened"].mean())}
    if (sends["ts"] <= cut).any() and after["opened"].nunique() == 2:
        earlier = send_time_inputs(con, cut, identity)
        held = SendTimeModel(prior_strength=prior_strength).fit(earlier)
        v1 = SendHourModel().fit(earlier.sends)
        y = after["opened"]
        auc, loss = _holdout_metrics(y, _scores(held, after))
        auc_shop, loss_shop = _holdout_metrics(y, _scores(held, after, shop_only=True))
        auc_v1, loss_v1 = _holdout_metrics(y, _scores(v1, after))
        metrics |= {
            "holdout_sends": float(len(after)),
            "holdout_auc": auc,
            "holdout_auc_shop_curve": auc_shop,
            "holdout_auc_v1": auc_v1,
            "holdout_log_loss": loss,
            "holdout_log_loss_shop_curve": loss_shop,
            "holdout_log_loss_v1": loss_v1,
        }
    model = SendTimeModel(prior_strength=prior_strength).fit(inputs)
    return SendTimeResult(model, metrics, sends, after)


def holdout_auc(model, sends: pd.DataFrame) -> float | None:
    """AUC of a model's open predictions on `sends`; None when they hold a single outcome."""
    if sends["opened"].nunique() < 2:
        return None
    return float(roc_auc_score(sends["opened"], _scores(model, sends)))
