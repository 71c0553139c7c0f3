"""The anchor of the CLV benchmark: BG/NBD × Gamma-Gamma fitted by PyMC-Marketing, a maintained library.

Runs in its own environment (`make anchor-venv`: `.venv-anchor` with pymc-marketing==0.19.2), apart
from Nhịp's, because PyMC's stack pins its own versions of numpy, pandas and scipy. It reads the purchase
summary `benchmarks/cdnow_clv.py` writes (customer_id, frequency, recency, T in days, monetary: the mean
spend of repeat purchase days), fits both models by maximum a posteriori (`fit(method="map")`, the
library's point estimate, comparable with maximum likelihood), and writes per customer the expected
purchase days over the horizon and the expected spend per purchase day.

    .venv-anchor/bin/python benchmarks/anchor_pymc.py SUMMARY.csv HORIZON_DAYS OUT.csv
"""

from __future__ import annotations

import sys
import warnings

import pandas as pd


def main(summary_path: str, horizon_days: str, out_path: str) -> None:
    from pymc_marketing import clv

    warnings.filterwarnings("ignore")
    data = pd.read_csv(summary_path)
    bgnbd = clv.BetaGeoModel(data=data[["customer_id", "frequency", "recency", "T"]])
    bgnbd.fit(method="map")
    expected = bgnbd.expected_purchases(future_t=float(horizon_days))
    repeat = data[(data["frequency"] > 0) & (data["monetary"] > 0)]
    spend_model = clv.GammaGammaModel(data=repeat.rename(columns={"monetary": "monetary_value"})
                                      [["customer_id", "frequency", "monetary_value"]])
    spend_model.fit(method="map")
    everyone = data.assign(monetary_value=data["monetary"].fillna(0).where(data["frequency"] > 0, 0))
    spend = spend_model.expected_customer_spend(data=everyone[["customer_id", "frequency", "monetary_value"]])
    out = pd.DataFrame({
        "customer_id": data["customer_id"],
        "expected_purchases": expected.mean(("chain", "draw")).values if "chain" in expected.dims
        else expected.values,
        "spend_per_purchase": spend.mean(("chain", "draw")).values if "chain" in spend.dims else spend.values,
    })
    out.to_csv(out_path, index=False)
    def posterior(model):
        return getattr(model.fit_result, "posterior", model.fit_result)

    params = {name: float(posterior(bgnbd)[name].mean()) for name in ("r", "alpha", "a", "b")}
    params |= {name: float(posterior(spend_model)[name].mean()) for name in ("p", "q", "v")}
    print(" ".join(f"{k}={v:.4g}" for k, v in params.items()))


if __name__ == "__main__":
    main(*sys.argv[1:4])
