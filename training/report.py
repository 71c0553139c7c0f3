"""HTML model reports for marketers, in Vietnamese and English, written by every training run.

Each section carries a Vietnamese and an English title and its text in both languages. The charts are
drawn once: the report embeds them and the runner logs the same PNGs as run artifacts. Reports show
aggregates only — no customer ids, names, phones or emails.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime

import numpy as np
import pandas as pd
from jinja2 import Environment

from models.clv import at_risk
from nhip.clock import to_local
from training.evaluate import calibration_table, grade, lift_curve
from training.gate import BUCKET_NAMES

_GRADE_VI = {"Poor": "Kém", "Fair": "Tạm được", "Good": "Tốt", "Excellent": "Xuất sắc"}
_DAYS = ["T2 Mon", "T3 Tue", "T4 Wed", "T5 Thu", "T6 Fri", "T7 Sat", "CN Sun"]
_BASELINE_LABELS = {"recency": "recency rule / chỉ dựa vào lần mua cuối", "bgnbd": "BG/NBD",
                    "pareto_nbd": "Pareto/NBD",
                    "rfm_logit": "RFM logistic regression / hồi quy logistic RFM"}
_SOURCE_LABELS = {"customer": "own history / lịch sử riêng", "shop": "shop curve / đường chung cửa hàng"}
READY_TO_BUY_SHARE = 0.20

_PAGE = Environment(autoescape=True).from_string(
    """<!doctype html><html lang="vi"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f4f4f4}.grade{font-size:1.6em;font-weight:bold}.en{color:#666}</style></head><body>
<h1>{{ title }}</h1>
{% for section in sections %}<h2>{{ section.vi }} <span class="en">/ {{ section.en }}</span></h2>
{{ section.body | safe }}{% endfor %}
<p>{{ footer_vi }}<br><span class="en">{{ footer_en }}</span></p></body></html>"""
)


def _png_bytes(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _figure(width: float = 6, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _table(frame: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    return frame.to_html(float_format=lambda v: floatfmt.format(v), border=0, escape=True, na_rep="–")


def _both(vi: str, en: str) -> str:
    """One paragraph in Vietnamese with its English version underneath."""
    return f'<p>{html.escape(vi)}<br><span class="en">{html.escape(en)}</span></p>'


def _section(vi: str, en: str, body: str) -> dict[str, str]:
    return {"vi": vi, "en": en, "body": body}


def propensity_plots(result) -> dict[str, bytes]:
    """Lift, calibration and score histogram on the test snapshot, as PNG bytes by file name."""
    test = result.test
    fig, ax = _figure()
    lifts = lift_curve(test["label"], test["score"])
    ax.plot(lifts["top_share"] * 100, lifts["lift"], marker="o")
    ax.axhline(1, color="grey", lw=0.8)
    ax.set_xlabel("top % of customers / % khách hàng đứng đầu")
    ax.set_ylabel("lift / độ nâng")
    plots = {"lift.png": _png_bytes(fig)}

    fig, ax = _figure(4, 4)
    cal = calibration_table(test["label"], test["score"])
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax.plot(cal["predicted"], cal["observed"], marker="o")
    ax.set_xlabel("predicted / dự đoán")
    ax.set_ylabel("observed / thực tế")
    plots["calibration.png"] = _png_bytes(fig)

    fig, ax = _figure()
    ax.hist(test["score"], bins=20)
    ax.set_xlabel("P(purchase) / xác suất mua")
    ax.set_ylabel("customers / khách")
    plots["score_histogram.png"] = _png_bytes(fig)
    return plots


def propensity_buckets(result) -> pd.Series:
    """Customers of the test snapshot per High / Medium / Low bucket (what the gate checks for empties)."""
    return result.test["bucket"].value_counts().reindex(list(BUCKET_NAMES)).fillna(0).astype(int)


def _decision_section(verdict) -> dict[str, str]:
    if verdict.promote:
        title = _both("Mô hình này trở thành champion.", "This model becomes the champion.")
    else:
        held = f" (version {verdict.champion_version})" if verdict.champion_version else ""
        title = _both(f"Giữ champion hiện tại{held}.", f"The current champion{held} is kept.")
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in verdict.reasons)
    body = title + f"<p>Lý do <span class=\"en\">/ Reasons</span>:</p><ul>{reasons}</ul>"
    if verdict.champion_metrics:
        shared = [k for k in verdict.candidate_metrics if k in verdict.champion_metrics]
        table = pd.DataFrame(
            {"candidate / ứng viên": [verdict.candidate_metrics[k] for k in shared],
             "champion": [verdict.champion_metrics[k] for k in shared]},
            index=shared,
        )
        table["Δ"] = table.iloc[:, 0] - table.iloc[:, 1]
        body += _both("Cùng một dữ liệu kiểm tra cho cả hai mô hình.",
                      "Both models scored on the same backtest.") + _table(table, "{:.4f}")
    return _section("Quyết định thăng hạng", "Promotion decision", body)


def _source_table(result) -> pd.DataFrame:
    """Per source: customers, buyers in the test window, mean score, and AUC where it is defined."""
    rows = result.details.get("by_source", {})
    return pd.DataFrame(
        {"customers / khách": [r["customers"] for r in rows.values()],
         "bought / đã mua": [r["buyers"] for r in rows.values()],
         "mean score / điểm TB": [r["mean_score"] for r in rows.values()],
         "AUC": [r.get("auc", np.nan) for r in rows.values()]},
        index=list(rows))


def propensity_report(result, fingerprint: dict, plots: dict[str, bytes] | None = None,
                      verdict=None) -> str:
    """Grade, metrics vs the baselines, lift, calibration, histogram, drivers, buckets, audiences."""
    plots = plots or propensity_plots(result)
    m, test = result.metrics, result.test
    quality = grade(m["auc"], m["lift_top_decile"])
    rows = ["auc", "pr_auc", "lift_top_decile", "brier", "log_loss"]
    columns = {"model / mô hình": [m.get(k, np.nan) for k in rows]}
    for name, metrics in result.baselines.items():
        columns[_BASELINE_LABELS.get(name, name)] = [metrics.get(k, np.nan) for k in rows]
    metrics = pd.DataFrame(columns, index=["AUC", "PR-AUC", "lift top 10%", "Brier", "log-loss"])

    drivers = result.model.feature_importance().head(10)
    drivers = (drivers / drivers.sum()).to_frame("share of gain / tỷ trọng")
    buckets = propensity_buckets(result)
    bucket_table = pd.DataFrame({"customers / khách": buckets,
                                 "share / tỷ lệ": buckets / max(1, buckets.sum())}).rename_axis(None)
    scored = test.reset_index(drop=True)
    ready = scored["percentile"] >= 1 - READY_TO_BUY_SHARE
    long_shots = (test["n_purchases"] > 0).to_numpy() & scored["percentile"].between(0.25, 0.65).to_numpy()
    labels = test["label"].to_numpy()
    audiences = pd.DataFrame(
        {
            "customers / khách": [int(ready.sum()), int(long_shots.sum())],
            "expected buyers / dự kiến mua": [scored.loc[ready, "score"].sum(),
                                              scored.loc[long_shots, "score"].sum()],
            "bought in the test window / đã mua": [labels[ready.to_numpy()].mean() if ready.any() else np.nan,
                                                  labels[long_shots].mean() if long_shots.any() else np.nan],
            "rule / quy tắc": [f"top {READY_TO_BUY_SHARE:.0%} likelihood / {READY_TO_BUY_SHARE:.0%} cao nhất",
                               "past buyers at the 25th–65th percentile / đã từng mua, bách phân vị 25–65"],
        },
        index=["Sẵn sàng mua / Ready to buy", "Cơ hội xa / Long shots"],
    )
    test_day = f"{to_local(result.plan.test):%Y-%m-%d}"
    horizon = result.model.horizon_days
    calibrated_vi = "có" if result.model.calibrated_ else "không"
    grade_html = (
        f'<p class="grade">{_GRADE_VI[quality]} <span class="en">/ {quality}</span></p>'
        + _both("Xếp loại theo AUC và độ nâng ở 10% khách đứng đầu; chỉ số yếu hơn quyết định.",
                "Graded from AUC and the lift in the top 10%; the weaker of the two decides.")
        + _both(
            f"Dự đoán mua trong {horizon} ngày; kiểm tra trên ảnh chụp {test_day} với {m['rows']} khách, "
            f"tỷ lệ mua {m['base_rate']:.1%}, sai số hiệu chuẩn {m['ece']:.3f}, đã hiệu chuẩn: {calibrated_vi}.",
            f"Predicts a purchase within {horizon} days; tested on the {test_day} snapshot with {m['rows']} "
            f"customers, base rate {m['base_rate']:.1%}, calibration error {m['ece']:.3f}, "
            f"calibrated: {result.model.calibrated_}.",
        )
    )
    sections = [
        _section("Chất lượng mô hình", "Model quality", grade_html + _table(metrics)),
        _section("Độ nâng (lift)", "Lift", _both(
            "Nhóm khách điểm cao nhất mua nhiều hơn mức trung bình bao nhiêu lần.",
            "How many times the average purchase rate the top-scored customers reach.")
            + _img(plots["lift.png"], "lift")),
        _section("Hiệu chuẩn", "Calibration", _both(
            "Điểm nằm trên đường chéo: xác suất dự đoán khớp với tỷ lệ mua thực tế.",
            "Points on the diagonal: predicted probabilities match the observed purchase rates.")
            + _img(plots["calibration.png"], "calibration")),
        _section("Phân bố điểm", "Score histogram", _img(plots["score_histogram.png"], "score histogram")),
        _section("Yếu tố ảnh hưởng nhất", "Top drivers", _table(drivers)),
        _section("Nhóm điểm", "Buckets", _both(
            "Cao: bách phân vị ≥ 75; Trung bình: ≥ 50; Thấp: còn lại.",
            "High: percentile ≥ 75; Medium: ≥ 50; Low: the rest.") + _table(bucket_table, "{:.2f}")),
        _section("Nguồn điểm", "Where the scores come from", _both(
            f"Mô hình trả lời cho khách có {result.details.get('gate', '')}; còn lại: BG/NBD (btyd) cho khách "
            "đã mua, tỷ lệ của cửa hàng (shop) cho khách chưa mua.",
            f"The model answers for customers with {result.details.get('gate', '')}; the rest: BG/NBD (btyd) "
            "for buyers, the shop's rate (shop) for people who never bought.")
            + _table(_source_table(result), "{:.3f}")),
        _section("Tệp khách gợi ý", "Suggested audiences", _table(audiences, "{:.2f}")),
    ]
    if result.clv is not None:
        sections.append(_clv_section(result))
    if verdict is not None:
        sections.append(_decision_section(verdict))
    return _render("Khả năng mua hàng / Purchase propensity", sections, fingerprint)


AT_RISK_SHOWN = 10


def _clv_section(result) -> dict[str, str]:
    """Churn risk by level, expected purchases and spend by source, and the at-risk audience (customer
    ids only, the most valuable first)."""
    clv, horizon = result.clv, result.model.horizon_days
    risk = clv["churn_risk"].fillna("never bought / chưa mua").value_counts()
    by_risk = pd.DataFrame({"customers / khách": risk, "share / tỷ lệ": risk / max(1, risk.sum())})
    scored = clv[clv["status"] == "scored"]
    by_source = scored.groupby("source").agg(**{
        "customers / khách": ("expected_purchases", "size"),
        "expected purchase days / số ngày mua dự kiến": ("expected_purchases", "sum"),
        "expected spend / chi tiêu dự kiến": ("expected_spend", "sum")})
    audience = at_risk(clv)
    top = audience.head(AT_RISK_SHOWN)[["p_alive", "expected_spend"]].rename_axis("customer_id").reset_index()
    params = result.lifetime.params() if result.lifetime is not None else {}
    fitted = "; ".join(f"{name}: " + ", ".join(f"{k}={v:.3g}" for k, v in values.items())
                       for name, values in params.items() if values) or "—"
    body = (
        _both(f"Trong {horizon} ngày tới. P(còn là khách) theo Pareto/NBD; rủi ro rời bỏ Cao khi P < 0,5, "
              "Trung bình khi P < 0,8, Thấp khi còn lại. Chi tiêu mỗi lần mua theo Gamma-Gamma.",
              f"Over the next {horizon} days. P(alive) from Pareto/NBD; churn risk High below 0.5, Medium "
              "below 0.8, Low otherwise. Spend per purchase day from Gamma-Gamma.")
        + _table(by_risk, "{:.2f}") + _table(by_source, "{:,.1f}")
        + _both(f"Tệp \"có nguy cơ rời bỏ\": {len(audience)} khách rủi ro Cao, chi tiêu dự kiến "
                f"{audience['expected_spend'].sum():,.0f}; {min(AT_RISK_SHOWN, len(audience))} khách giá trị nhất:",
                f"The \"at risk\" audience: {len(audience)} customers at High risk, expected spend "
                f"{audience['expected_spend'].sum():,.0f}; the {min(AT_RISK_SHOWN, len(audience))} most "
                "valuable:")
        + _table(top, "{:,.3f}")
        + _both(f"Tham số: {fitted}.", f"Parameters: {fitted}.")
    )
    return _section("Rời bỏ và giá trị vòng đời", "Churn and lifetime value", body)


def send_time_plots(result) -> dict[str, bytes]:
    """One 7 × 24 heatmap (day of week × hour, Vietnam time) of the shop curve per channel."""
    plots = {}
    for channel in result.model.channels_:
        fig, ax = _figure(7, 2.6)
        image = ax.imshow(result.model.shop_curve(channel).reshape(7, 24), aspect="auto", cmap="viridis")
        ax.set_yticks(range(7), _DAYS)
        ax.set_xticks(range(0, 24, 2))
        ax.set_xlabel("hour / giờ")
        fig.colorbar(image, ax=ax, label="P(open) / xác suất mở")
        plots[f"heatmap_{channel}.png"] = _png_bytes(fig)
    return plots


def _best_hours(curve: np.ndarray, n: int = 3) -> str:
    best = np.argsort(-curve, kind="stable")[:n]
    return ", ".join(f"{_DAYS[h // 24]} {h % 24:02d}:00" for h in best)


_SEND_TIME_METRICS = {
    "sends": "sends / lượt gửi",
    "open_rate": "open rate / tỷ lệ mở",
    "holdout_sends": "holdout sends / lượt gửi kiểm tra",
    "holdout_auc": "AUC, personal curves / đường cá nhân",
    "holdout_auc_shop_curve": "AUC, shop curve / đường chung",
    "holdout_log_loss": "log-loss, personal curves / đường cá nhân",
    "holdout_log_loss_shop_curve": "log-loss, shop curve / đường chung",
}


def send_time_report(result, fingerprint: dict, plots: dict[str, bytes] | None = None,
                     verdict=None) -> str:
    """Holdout comparison with the shop curve, the 7 × 24 heatmap per channel, the fallback sources."""
    plots = plots or send_time_plots(result)
    model, metrics = result.model, result.metrics
    rows = {label: f"{metrics[k]:,.0f}" if k.endswith("sends") else f"{metrics[k]:.3f}"
            for k, label in _SEND_TIME_METRICS.items() if k in metrics}
    evaluation = _both(
        "Dự đoán lượt mở trong 30 ngày cuối bằng mô hình học từ dữ liệu trước đó, so với đường chung.",
        "Opens in the last 30 days predicted by a model fitted on the sends before, against the shop curve.",
    ) + _table(pd.Series(rows).to_frame("value / giá trị"))
    sections = [_section("Đánh giá", "Evaluation", evaluation)]
    summary = pd.DataFrame(model.sources_summary()).T.fillna(0).astype(int)
    summary.columns = [_SOURCE_LABELS.get(c, c) for c in summary.columns]
    sections.append(_section("Nguồn của đường giờ gửi", "Where each customer's curve comes from", _both(
        "Số khách theo mức dự phòng: lịch sử riêng của khách, rồi đến đường chung của cửa hàng.",
        "Customers per fallback level: their own history first, then the shop's curve.",
    ) + _table(summary, "{:.0f}")))
    for channel in model.channels_:
        sends = result.sends[result.sends["channel"] == channel]
        customers = sends["customer_id"].nunique()
        best = _best_hours(model.shop_curve(channel))
        body = _img(plots[f"heatmap_{channel}.png"], f"heatmap {channel}") + _both(
            f"{len(sends)} lượt gửi tới {customers} khách. Giờ mở tốt nhất của cửa hàng: {best}.",
            f"{len(sends)} sends to {customers} customers. The shop's best opening hours: {best}.",
        )
        sections.append(_section(f"Giờ gửi: {channel}", f"Send hours: {channel}", body))
    if verdict is not None:
        sections.append(_decision_section(verdict))
    return _render("Thời điểm gửi / Send time", sections, fingerprint)


def _local(stamp: str) -> str:
    """A naive-UTC time from the fingerprint, in Vietnam time to the minute."""
    try:
        return f"{to_local(datetime.fromisoformat(str(stamp))):%Y-%m-%d %H:%M}"
    except ValueError:
        return str(stamp)


def _render(title: str, sections: list[dict], fingerprint: dict) -> str:
    """The page, with the data fingerprint (times in Vietnam time) as its footer."""
    span = f"{_local(fingerprint['first_ts'])} – {_local(fingerprint['last_ts'])}"
    as_of = _local(fingerprint["as_of"]) if "as_of" in fingerprint else None
    events, checksum = f"{fingerprint['events']:,}", fingerprint["checksum"]
    return _PAGE.render(
        title=title,
        sections=sections,
        footer_vi=f"Dữ liệu: {events} sự kiện, {span} (giờ Việt Nam)"
                  + (f", tính đến {as_of}" if as_of else "") + f", mã kiểm tra {checksum}.",
        footer_en=f"Data: {events} events, {span} (Vietnam time)"
                  + (f", as of {as_of}" if as_of else "") + f", checksum {checksum}.",
    )
