"""The audiences report (`audiences.html`, Vietnamese and English): every audience's rule and its size at
each feature build, as a table and a small chart. Names, rules and counts only: no customer appears.
"""

from __future__ import annotations

import html

import pandas as pd

from serving.activation.audiences import AudienceBook


def _chart(sizes: pd.Series, width: int = 240, height: int = 48) -> str:
    """An inline SVG line of the sizes, oldest on the left."""
    values = sizes.astype(float).tolist()
    if len(values) < 2:
        return ""
    top = max(values) or 1.0
    step = width / (len(values) - 1)
    points = " ".join(f"{i * step:.1f},{height - 4 - (v / top) * (height - 8):.1f}" for i, v in enumerate(values))
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="size per build">'
            f'<polyline fill="none" stroke="#2563eb" stroke-width="2" points="{points}"/></svg>')


def audiences_html(book: AudienceBook) -> str:
    """The report's HTML; an audience never recomputed yet says so."""
    history = book.sizes()
    parts = ["<!doctype html><html lang='vi'><head><meta charset='utf-8'><title>Nhịp — tệp khách hàng / "
             "audiences</title><style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.3em .6em;text-align:right}"
             "th:first-child,td:first-child{text-align:left}code{background:#f4f4f4}</style></head><body>",
             "<h1>Tệp khách hàng <small>/ Audiences</small></h1>",
             "<p>Mỗi tệp được tính lại sau mỗi lần dựng đặc trưng (feature build); bảng dưới là số thành viên "
             "qua từng lần. <br><em>Each audience is recomputed on every feature build; below, its size at "
             "each.</em></p>"]
    audiences = book.list()
    if not audiences:
        parts.append("<p>Chưa có tệp nào. <em>No audiences yet.</em></p>")
    for audience in audiences:
        mine = history[history["audience"] == audience.name]
        parts.append(f"<h2>{html.escape(audience.name)}</h2><p><code>{html.escape(audience.describe())}</code>"
                     f"<br>tạo lúc / created {html.escape(audience.created_at)}</p>")
        if mine.empty:
            parts.append("<p>Chưa tính lần nào. <em>Not recomputed on a build yet.</em></p>")
            continue
        parts.append(_chart(mine["size"]))
        rows = "".join(f"<tr><td>{html.escape(str(r.as_of))}</td><td>{html.escape(str(r.build_id))}</td>"
                       f"<td>{int(r.size):,}</td></tr>" for r in mine.itertuples())
        parts.append("<table><tr><th>dữ liệu đến / as of</th><th>build</th><th>số thành viên / members</th></tr>"
                     f"{rows}</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
