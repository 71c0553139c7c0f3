"""HTML model reports for marketers, in Vietnamese and English, written by every training run.

Reports show customer ids only, never names, phones or emails.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
import pandas as pd
from jinja2 import Environment

from features.asof import to_local
from models.propensity import score_profiles
from training.evaluate import calibration_table, grade, lift_curve

_GRADE_VI = {"Poor": "Kém", "Fair": "Tạm được", "Good": "Tốt", "Excellent": "Xuất sắc"}
_DAYS = ["T2", "T3", "T4", "T5", "T6", "T7", "CN"]

_PAGE = Environment(autoescape=True).from_string(
    """<!doctype html><html lang="vi"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f4f4f4}.grade{font-size:1.6em;font-weight:bold}.en{color:#666}</style></head><body>
<h1>{{ title }}</h1>
{% for section in sections %}<h2>{{ section.vi }} <span class="en">/ {{ section.en }}</span></h2>
{{ section.body | safe }}{% endfor %}
<p class="en">{{ footer }}</p></body></html>"""
)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="chart" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _figure(width: float = 6, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _table(frame: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    return frame.to_html(float_format=lambda v: floatfmt.format(v), border=0, escape=True)


def _section(vi: str, en: str, body: str) -> dict[str, str]:
    return {"vi": vi, "en": en, "body": body}


def propensity_report(result, fingerprint: dict) -> str:
    """Grade, metrics vs the recency rule, lift, calibration, histogram, drivers, buckets, audiences."""
    m, base, test = result.metrics, result.baseline_metrics, result.test
    quality = grade(m["auc"], m["lift_top_decile"])
    metrics = pd.DataFrame(
        {
            "model / mô hình": [m["auc"], m["pr_auc"], m["lift_top_decile"], m["brier"], m["log_loss"]],
            "recency rule / chỉ dựa vào lần cuối": [
                base["auc"], base["pr_auc"], base["lift_top_decile"], np.nan, np.nan],
        },
        index=["AUC", "PR-AUC", "lift top 10%", "Brier", "log-loss"],
    )
    fig, ax = _figure()
    lifts = lift_curve(test["label"], test["score"])
    ax.plot(lifts["top_share"] * 100, lifts["lift"], marker="o")
    ax.axhline(1, color="grey", lw=0.8)
    ax.set_xlabel("top % of customers / % khách hàng đứng đầu")
    ax.set_ylabel("lift")
    lift_png = _png(fig)

    fig, ax = _figure(4, 4)
    cal = calibration_table(test["label"], test["score"])
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax.plot(cal["predicted"], cal["observed"], marker="o")
    ax.set_xlabel("predicted / dự đoán")
    ax.set_ylabel("observed / thực tế")
    calibration_png = _png(fig)

    scored = score_profiles(result.model, test, min_events=0)
    fig, ax = _figure()
    ax.hist(scored["score"], bins=20)
    ax.set_xlabel("P(purchase) / xác suất mua")
    histogram_png = _png(fig)

    drivers = result.model.feature_importance().head(10)
    drivers = (drivers / drivers.sum()).to_frame("share of gain / tỷ trọng")
    buckets = scored["bucket"].value_counts().reindex(["High", "Medium", "Low"]).fillna(0).astype(int)
    top20 = scored["percentile"] >= 0.8
    long_shots = (test["n_purchases"] > 0) & scored["percentile"].between(0.25, 0.65)
    audiences = pd.DataFrame(
        {
            "customers / khách": [int(top20.sum()), int(long_shots.sum())],
            "rule / quy tắc": ["top 20% likelihood", "past buyers at the 25th–65th percentile"],
        },
        index=["Sẵn sàng mua / Ready to buy", "Cơ hội xa / Long shots"],
    )
    grade_html = (
        f'<p class="grade">{_GRADE_VI[quality]} <span class="en">/ {quality}</span></p>'
        f"<p>Horizon {result.model.horizon_days} days, test snapshot {to_local(result.plan.test):%Y-%m-%d}, "
        f"{m['rows']} customers, base rate {m['base_rate']:.1%}, calibration error {m['ece']:.3f}, "
        f"calibrated: {result.model.calibrated_}.</p>"
    )
    sections = [
        _section("Chất lượng mô hình", "Model quality", grade_html + _table(metrics)),
        _section("Độ nâng (lift)", "Lift", lift_png),
        _section("Hiệu chuẩn", "Calibration", calibration_png),
        _section("Phân bố điểm", "Score histogram", histogram_png),
        _section("Yếu tố ảnh hưởng nhất", "Top drivers", _table(drivers)),
        _section("Nhóm điểm", "Buckets", _table(buckets.to_frame("customers / khách"), "{:.0f}")),
        _section("Tệp khách gợi ý", "Suggested audiences", _table(audiences, "{:.0f}")),
    ]
    return _render("Khả năng mua hàng / Purchase propensity", sections, fingerprint)


def send_time_report(result, fingerprint: dict) -> str:
    """Holdout comparison with the shop curve, the 7 × 24 heatmap per channel and fallback shares."""
    model, metrics = result.model, result.metrics
    rows = {k: v for k, v in metrics.items() if k.startswith("holdout") or k in ("sends", "open_rate")}
    sections = [_section("Đánh giá", "Evaluation", _table(pd.Series(rows).to_frame("value")))]
    for channel in model.channels_:
        fig, ax = _figure(7, 2.6)
        grid = model.shop_how_[channel].reshape(7, 24)
        image = ax.imshow(grid, aspect="auto", cmap="viridis")
        ax.set_yticks(range(7), _DAYS)
        ax.set_xticks(range(0, 24, 2))
        ax.set_xlabel("hour / giờ")
        fig.colorbar(image, ax=ax, label="P(open)")
        sends = result.sends[result.sends["channel"] == channel]
        customers = sends["customer_id"].nunique()
        body = _png(fig) + (
            f"<p>{len(sends)} sends to {customers} customers; personal curves for all of them, "
            f"the shop curve for everyone else.</p>"
        )
        sections.append(_section(f"Giờ gửi: {html.escape(channel)}", f"Send hours: {channel}", body))
    return _render("Thời điểm gửi / Send time", sections, fingerprint)


def _render(title: str, sections: list[dict], fingerprint: dict) -> str:
    footer = (
        f"Data: {fingerprint['events']} events, {fingerprint['first_ts']} – {fingerprint['last_ts']}, "
        f"checksum {fingerprint['checksum']}."
    )
    return _PAGE.render(title=title, sections=sections, footer=footer)
