"""MLflow pyfunc wrappers: how a fitted estimator travels through the registry to serving.

The wrapper holds the fitted estimator itself (its preprocessing included), so `mlflow.pyfunc.load_model`
gives serving one object, and `unwrap_python_model().model` gives back the estimator for richer calls.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd

from models.propensity import PropensityModel
from models.send_time import SendTimeModel


class PropensityPyfunc(mlflow.pyfunc.PythonModel):
    """Input: the model's feature columns. Output: calibrated P(purchase within the horizon)."""

    def __init__(self, model: PropensityModel):
        self.model = model

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return self.model.predict_proba(model_input)[:, 1]


class SendTimePyfunc(mlflow.pyfunc.PythonModel):
    """Input: customer_id, channel, hour_of_week (0–167). Output: P(open | sent at that hour).

    Richer answers (the best slot, its source, exploration) come from the estimator itself:
    `unwrap_python_model().model.choose(...)`.
    """

    def __init__(self, model: SendTimeModel):
        self.model = model

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return self.model.predict_rows(model_input)
