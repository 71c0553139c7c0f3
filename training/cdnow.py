"""CDNOW: the public benchmark of the BTYD literature, evaluated through Nhịp's own pipeline.

CDNOW_master.txt holds every purchase of the 23,570 customers who first bought at the online music store
CDNOW in the first quarter of 1997, up to the end of June 1998: customer id, date (YYYYMMDD), number of
CDs, dollars. It ships inside the `lifetimes` wheel (a pinned dependency), so nothing is downloaded; the
file is located without importing lifetimes, which does not import with pandas 3.

The evaluation follows Fader, Hardie & Lee (2005): the as-of instant is the end of 1997-09-30 (39 weeks
of calibration) and the label is "any purchase in the next 273 days" (to 1998-06-30, the 39-week
holdout). The file becomes canonical events in a work folder and goes through the normal ingest (every
line is accepted, a duplicate or quarantined), then the same `fit_propensity` that trains a shop's
model scores it, next to BG/NBD and the recency rule. The history before the as-of (273 days) is no
longer than the horizon, so this is also the test of the short-history scheme of
`training.propensity.plan_snapshots`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features.identity.graph import IdentityConfig
from features.ingest.importer import IngestReport, ingest_file
from nhip.clock import parse_as_of

CDNOW_FILE = "lifetimes/datasets/CDNOW_master.txt"
LIFETIMES_PIN = "lifetimes==0.11.3"
SOURCE = "cdnow"
# Fader, Hardie & Lee (2005): calibration to the end of 1997-09-30, holdout to the end of 1998-06-30.
CALIBRATION_LAST_DAY = "1997-09-30"
AS_OF = "1997-10-01"  # a bare date is 00:00 that day: every purchase of 1997-09-30 is before it
HORIZON_DAYS = 273
# A later split (the one the propensity issue was filed on): as of the end of 1998-03-31, purchases in
# the 91 days to the end of the file. By name: (as-of instant, horizon days, its last calibration day).
SPLITS = {"fhl": (AS_OF, HORIZON_DAYS, CALIBRATION_LAST_DAY), "later": ("1998-04-01", 91, "1998-03-31")}
# The file's documented end of observation: the end of 1998-06-30.
OBSERVED_UNTIL = "1998-07-01"
# The file has dates only; a purchase is put at midday (store time), so a bare as-of date cuts between
# days and never through one.
PURCHASE_CLOCK = "12:00:00+07:00"


class CdnowDataMissing(FileNotFoundError):
    """The CDNOW file is not installed (it comes with the lifetimes wheel)."""


def cdnow_master_path() -> Path:
    """Where the installed lifetimes wheel keeps CDNOW_master.txt; lifetimes itself is never imported."""
    from importlib import metadata

    hint = f"the CDNOW data comes with the lifetimes wheel: `pip install {LIFETIMES_PIN}`"
    try:
        files = metadata.files("lifetimes") or []
    except metadata.PackageNotFoundError:
        raise CdnowDataMissing(f"lifetimes is not installed; {hint}") from None
    for entry in files:
        if str(entry).replace("\\", "/") == CDNOW_FILE:
            path = Path(entry.locate())
            if path.is_file():
                return path
    raise CdnowDataMissing(f"{CDNOW_FILE} is missing from the installed lifetimes; {hint}")


# ---------------------------------------------------------------------------------------------------------
# the file → canonical events
# ---------------------------------------------------------------------------------------------------------


def _event(line_no: int, text: str) -> dict:
    """One canonical purchase for one line of CDNOW_master.txt.

    CDNOW sold online, so the channel is `web` and its customer number the `external_id`. The event id is
    the line number: the file holds identical lines (same customer, day, CDs and dollars), which are
    separate orders, and a content hash would count them as one; re-importing the file still stores
    nothing twice. A line that does not read as (id, YYYYMMDD, CDs, dollars) still becomes a row, with
    its raw text in `properties` but without the fields ingest cannot do without: ingest quarantines it
    with the reason, so the file's line count always equals the import's `rows_read`.
    """
    cells = text.split()
    event: dict = {"event_id": f"{SOURCE}-line-{line_no}", "channel": "web", "type": "purchase"}
    if len(cells) != 4 or not cells[0].isdigit():
        event["properties"] = {"cdnow_line": text.strip()}
        return event
    customer, day, cds, dollars = cells
    event["external_id"] = f"{SOURCE}-{customer}"
    try:
        if len(day) != 8 or not day.isdigit():
            raise ValueError(day)
        event["ts"] = f"{date(int(day[:4]), int(day[4:6]), int(day[6:8])).isoformat()}T{PURCHASE_CLOCK}"
    except ValueError:
        event["properties"] = {"cdnow_date": day}
    try:
        event["amount"] = float(dollars)
        event["currency"] = "USD"
    except ValueError:
        event["amount"] = dollars  # ingest quarantines it as an unparseable amount
    try:
        event["quantity"] = int(cds)
    except ValueError:
        event["properties"] = {**event.get("properties", {}), "cdnow_cds": cds}
    return event


@dataclass
class Conversion:
    """How the file's lines became canonical rows: `lines` data lines read (the header is not one),
    `rows` written, `customers` distinct customer ids written."""

    lines: int
    rows: int
    customers: int


def is_header(text: str) -> bool:
    return text.split()[:1] == ["customer_id"]


def convert(source: Path, out: Path, customers: set[str] | None = None) -> Conversion:
    """Write one canonical JSON line per data line of `source` (only `customers`, when given)."""
    lines = rows = 0
    seen: set[str] = set()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(source, encoding="ascii", errors="replace") as src, open(out, "w", encoding="utf-8") as dst:
        for line_no, text in enumerate(src, start=1):
            if not text.strip() or is_header(text):
                continue
            cells = text.split()
            if customers is not None and (not cells or cells[0] not in customers):
                continue
            lines += 1
            event = _event(line_no, text)
            dst.write(json.dumps(event) + "\n")
            rows += 1
            if "external_id" in event:
                seen.add(event["external_id"])
    return Conversion(lines, rows, len(seen))


def sample_customers(source: Path, n: int, seed: int = 0) -> set[str]:
    """`n` customer ids drawn at random (seeded), for quick runs on a part of the cohort."""
    ids = sorted({text.split()[0] for text in source.read_text(encoding="ascii", errors="replace")
                  .splitlines() if text.strip() and not is_header(text)})
    if n >= len(ids):
        return set(ids)
    rng = np.random.default_rng(seed)
    return set(np.asarray(ids)[rng.choice(len(ids), size=n, replace=False)].tolist())


@dataclass
class CdnowImport:
    store_path: Path
    conversion: Conversion
    report: IngestReport


def import_cdnow(work: Path, sample: int | None = None, seed: int = 0, source: Path | None = None
                 ) -> CdnowImport:
    """Convert the file into `work/cdnow_events.jsonl` and ingest it into `work/store`.

    The store is rebuilt on every call, so a different `sample` never mixes with an earlier one; the
    source file is only read.
    """
    source = source or cdnow_master_path()
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    customers = sample_customers(source, sample, seed) if sample else None
    events = work / "cdnow_events.jsonl"
    conversion = convert(source, events, customers)
    store = work / "store"
    shutil.rmtree(store, ignore_errors=True)  # a segment store is a folder
    report = ingest_file(events, store, source=SOURCE)
    return CdnowImport(store, conversion, report)


# ---------------------------------------------------------------------------------------------------------
# the evaluation
# ---------------------------------------------------------------------------------------------------------

METRIC_COLUMNS = ("auc", "pr_auc", "lift_top_decile", "brier", "log_loss")
TABLE_COLUMNS = (*METRIC_COLUMNS, "ece", "base_rate", "rows")


@dataclass
class CdnowEvaluation:
    """The side-by-side table (rows: `ROW_ORDER`, and the model's answers by source) and what produced it."""

    table: pd.DataFrame
    imported: CdnowImport
    row_counts: dict[str, int]
    bgnbd_params: dict[str, float]
    pareto_nbd_params: dict[str, float]
    feature_list: str
    details: dict[str, object] = field(default_factory=dict)


ROW_ORDER = ("model", "bgnbd", "bgnbd_expected", "pareto_nbd", "pareto_nbd_expected", "rfm_logit", "recency")


def comparison_table(result) -> pd.DataFrame:
    """Model and baseline metrics of a `PropensityResult` on the same test rows, one row each.

    `model` is Nhịp as shipped: every customer answered, by the model where the gate lets it and by the
    fallbacks elsewhere (`models.answers`); the `by source: …` rows below it split those answers.

    `bgnbd` and `pareto_nbd` are those models' P(any purchase in the horizon), probabilities;
    `bgnbd_expected` and `pareto_nbd_expected` rank by expected number of purchases (the literature's
    ranking) and `recency` by days since last seen: those only rank, so their Brier score and log-loss
    are missing. `rfm_logit` is the logistic regression on RFM fitted on the calibration snapshot.
    """
    rows = {"model": result.metrics, **result.baselines}
    names = [n for n in ROW_ORDER if n in rows] + [n for n in rows if n not in ROW_ORDER]
    # The shipped answers split by who gave them (ranking only: a source's customers alone).
    for source, metrics in result.details.get("by_source", {}).items():
        rows[f"by source: {source}"] = {**metrics, "rows": metrics["customers"]}
        names.insert(names.index("model") + 1 + sum(n.startswith("by source") for n in names),
                     f"by source: {source}")
    return pd.DataFrame({name: {k: rows[name].get(k, np.nan) for k in TABLE_COLUMNS}
                         for name in names}).T


def evaluate_cdnow(
    work: Path,
    identity: IdentityConfig,
    sample: int | None = None,
    seed: int = 0,
    feature_list=None,
    progress: Callable[[datetime], None] | None = None,
    *,
    min_events: int,
    split: str = "fhl",
) -> CdnowEvaluation:
    """Import CDNOW into `work` and evaluate the product against BG/NBD and recency.

    `min_events` is the shop's gate (NHIP_MIN_EVENTS_TO_SCORE): every customer is answered, the ones
    below it by the fallbacks, so the figures are those of the product as shipped. Each customer has a
    single identifier, so `identity` changes nothing here but is the shop's. `split` is a name of
    `SPLITS`: Fader, Hardie & Lee's (`fhl`, the default) or a later one.
    """
    from features.store import open_store
    from training.propensity import DEFAULT_FEATURE_LIST, fit_propensity

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    split_as_of, horizon_days, _ = SPLITS[split]
    imported = import_cdnow(work, sample, seed)
    as_of = parse_as_of(split_as_of)
    with open_store(imported.store_path) as con:
        result = fit_propensity(
            con, as_of, horizon_days, min_events=min_events, identity=identity,
            feature_list=feature_list or DEFAULT_FEATURE_LIST,
            observed_until=parse_as_of(OBSERVED_UNTIL), progress=progress,
        )
    return CdnowEvaluation(
        table=comparison_table(result),
        imported=imported,
        row_counts=result.row_counts,
        bgnbd_params=result.details.get("bgnbd_params", {}),
        pareto_nbd_params=result.details.get("pareto_nbd_params", {}),
        feature_list=result.model.feature_list,
        details={"plan": result.plan, "result": result},
    )


# ---------------------------------------------------------------------------------------------------------
# churn and lifetime value
# ---------------------------------------------------------------------------------------------------------


def holdout_purchases(store_path: Path, identity: IdentityConfig, as_of: datetime, horizon_days: int
                      ) -> pd.DataFrame:
    """Per customer, purchase days and spend in (as_of, as_of + horizon]: what the CLV answers predict.
    Purchase days, as in the summary the models learn from (orders of one local day count once)."""
    from datetime import timedelta

    from features.identity.events import resolve_events
    from features.store import open_store
    from nhip.clock import sql_local

    end = as_of + timedelta(days=horizon_days)
    with open_store(store_path) as con, resolve_events(con, end, identity) as events:
        return con.execute(
            f"""SELECT customer_id, count(DISTINCT CAST({sql_local('ts')} AS DATE))::DOUBLE AS purchases,
                       coalesce(sum(amount), 0)::DOUBLE AS spend
                FROM {events.source} WHERE type = 'purchase' AND ts > $start AND ts <= $end
                GROUP BY customer_id""", {"start": as_of, "end": end},
        ).df().set_index("customer_id")


CLV_METRICS = ("spearman", "mae", "predicted_total", "actual_total", "purchases_mae")


def clv_metrics(expected_purchases: pd.Series, expected_spend: pd.Series, actual: pd.DataFrame) -> dict:
    """Spearman correlation and MAE of expected against actual spend, the totals, and the MAE of
    expected purchase days, over the customers of `expected_spend` (a missing actual is 0)."""
    from scipy.stats import spearmanr

    got = actual.reindex(expected_spend.index).fillna(0.0)
    return {"spearman": float(spearmanr(expected_spend, got["spend"]).statistic),
            "mae": float((expected_spend - got["spend"]).abs().mean()),
            "predicted_total": float(expected_spend.sum()), "actual_total": float(got["spend"].sum()),
            "purchases_mae": float((expected_purchases - got["purchases"]).abs().mean())}


def decile_calibration(expected_purchases: pd.Series, actual: pd.DataFrame) -> pd.DataFrame:
    """Mean expected against mean actual purchase days per decile of expected purchases (1 = lowest)."""
    got = actual.reindex(expected_purchases.index)["purchases"].fillna(0.0)
    decile = pd.qcut(expected_purchases.rank(method="first"), 10, labels=range(1, 11))
    return pd.DataFrame({"expected": expected_purchases, "actual": got, "decile": decile}).groupby(
        "decile", observed=True).agg(customers=("actual", "size"), expected=("expected", "mean"),
                                     actual=("actual", "mean"))


def btyd_clv(summary: pd.DataFrame, horizon_days: int, counting) -> tuple[pd.Series, pd.Series]:
    """Expected purchase days and spend of every buyer of `summary` from a counting model (`models.bgnbd`
    or `models.paretonbd`) fitted here × Gamma-Gamma: the textbook recipe, as a labelled variant."""
    from models import gammagamma

    model = counting.fit_if_enough(summary["frequency"], summary["recency"], summary["T"])
    spend = gammagamma.fit_if_enough(summary["frequency"], summary["monetary"])
    purchases = pd.Series(model.expected_purchases(horizon_days, summary["frequency"], summary["recency"],
                                                   summary["T"]), index=summary.index)
    return purchases, purchases * spend.expected_spend(summary["frequency"], summary["monetary"])


def markdown_table(table: pd.DataFrame) -> str:
    """The table as GitHub markdown, metrics to 4 decimals; a missing metric is shown as —."""
    columns = [c for c in TABLE_COLUMNS if c in table.columns]
    head = "| | " + " | ".join(columns) + " |"
    rule = "|---|" + "---:|" * len(columns)
    lines = [head, rule]
    for name, row in table.iterrows():
        cells = []
        for c in columns:
            v = row[c]
            cells.append("—" if pd.isna(v) else f"{int(v):,}" if c == "rows" else f"{v:.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
