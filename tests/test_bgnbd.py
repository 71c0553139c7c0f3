"""BG/NBD: the likelihood and predictions against direct integration, the fit against known and
published parameters, and the (frequency, recency, T) summary from the event store."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from features.identity.events import resolve_events
from features.ingest.importer import ingest_file
from features.profile.repeat_purchases import bgnbd_features, purchase_summary
from features.store import open_store
from models.bgnbd import BGNBD, log_likelihood, simulate
from nhip.clock import parse_as_of
from tests.conftest import IDENTITY, write_jsonl

PARAMS = (0.243, 4.414, 0.793, 2.426)  # Fader, Hardie & Lee (2005), CDNOW sample, weeks
CUSTOMERS = [(0, 0.0, 38.86), (1, 1.71, 38.86), (2, 30.43, 38.86), (7, 29.0, 32.0), (3, 5.0, 30.0)]


def _fitted(params=PARAMS) -> BGNBD:
    model = BGNBD()
    model.params_ = dict(zip(("r", "alpha", "a", "b"), params))
    return model


def _integrals(params, x, t_x, T, t=None):
    """By quadrature over λ ~ Gamma(r, α) and p ~ Beta(a, b), straight from the model's story:
    (likelihood, P(alive and data), P(alive, data and a purchase within t))."""
    r, alpha, a, b = params
    gamma = stats.gamma(r, scale=1 / alpha).pdf
    beta = stats.beta(a, b).pdf
    # Integrals over λ are done in u = log λ: for r < 1 the Gamma density piles up near 0, and its
    # left tail only fades as e^(r·u), hence the wide range; the integrand peaks near λ = x / T.
    peak = np.log(max(x, 0.5) / T)

    def over_lambda(f):
        value, _ = integrate.quad(lambda u: f(np.exp(u)) * gamma(np.exp(u)) * np.exp(u), -200, 6,
                                  points=[peak - 2, peak, peak + 2], limit=2000, epsabs=0, epsrel=1e-11)
        return value

    survive = integrate.quad(lambda p: (1 - p) ** x * beta(p), 0, 1, limit=200)[0]
    alive = survive * over_lambda(lambda lam: lam ** x * np.exp(-lam * T))
    dead = 0.0
    if x > 0:
        drop = integrate.quad(lambda p: p * (1 - p) ** (x - 1) * beta(p), 0, 1, limit=200)[0]
        dead = drop * over_lambda(lambda lam: lam ** x * np.exp(-lam * t_x))
    buys = None
    if t is not None:
        buys = survive * over_lambda(lambda lam: lam ** x * np.exp(-lam * T) * (1 - np.exp(-lam * t)))
    return alive + dead, alive, buys


@pytest.mark.parametrize("x,t_x,T", CUSTOMERS)
def test_log_likelihood_matches_direct_integration(x, t_x, T):
    total, _, _ = _integrals(PARAMS, x, t_x, T)
    ours = log_likelihood(PARAMS, np.array([x]), np.array([t_x]), np.array([T]))[0]
    assert ours == pytest.approx(np.log(total), abs=1e-6)


@pytest.mark.parametrize("x,t_x,T", CUSTOMERS)
def test_p_alive_and_p_any_purchase_match_direct_integration(x, t_x, T):
    total, alive, buys = _integrals(PARAMS, x, t_x, T, t=39.0)
    model = _fitted()
    args = (np.array([x]), np.array([t_x]), np.array([T]))
    assert model.p_alive(*args)[0] == pytest.approx(alive / total, rel=1e-6)
    assert model.p_any_purchase(39.0, *args)[0] == pytest.approx(buys / total, rel=1e-6)


def test_expected_purchases_match_simulation_of_the_process():
    """E[purchases in (T, T+t]] for a customer just acquired (T = 0) and the closed form for new
    customers agree with a large simulation of the BG/NBD story."""
    model = _fitted()
    rng = np.random.default_rng(3)
    sim = simulate(PARAMS, np.full(200_000, 39.0), rng)
    zero = np.zeros(1)
    assert model.expected_purchases(39.0, zero, zero, zero)[0] == pytest.approx(
        sim["frequency"].mean(), rel=0.03)
    assert model.expected_purchases_new(39.0) == pytest.approx(sim["frequency"].mean(), rel=0.03)
    assert model.p_any_purchase(39.0, zero, zero, zero)[0] == pytest.approx(
        (sim["frequency"] > 0).mean(), rel=0.02)


def test_predictions_behave():
    model = _fitted()
    x, t_x, T = np.array([0.0, 3.0, 3.0]), np.array([0.0, 30.0, 5.0]), np.array([38.0, 38.0, 38.0])
    assert model.p_alive(x, t_x, T)[0] == 1.0  # a one-time buyer cannot have dropped out
    assert model.p_alive(x, t_x, T)[1] > model.p_alive(x, t_x, T)[2]  # silent for longer: likelier gone
    short, long = model.p_any_purchase(10.0, x, t_x, T), model.p_any_purchase(40.0, x, t_x, T)
    assert np.all((short > 0) & (short < long) & (long < 1))
    assert np.all(model.expected_purchases(40.0, x, t_x, T) > model.expected_purchases(10.0, x, t_x, T))
    with pytest.raises(ValueError, match="recency"):
        model.p_alive(np.array([0.0]), np.array([3.0]), np.array([10.0]))


def test_fit_recovers_the_parameters_it_was_simulated_with():
    true = (0.25, 4.0, 0.8, 2.5)
    rng = np.random.default_rng(11)
    sim = simulate(true, rng.uniform(30, 39, 5000), rng)
    model = BGNBD().fit(sim["frequency"], sim["recency"], sim["T"])
    fitted = model.params_
    for name, value in zip(("r", "alpha", "a", "b"), true):
        assert fitted[name] == pytest.approx(value, rel=0.3), name
    # It is the maximum: the true parameters explain the same data less well.
    assert model.log_likelihood_ >= log_likelihood(true, sim["frequency"], sim["recency"], sim["T"]).sum()


def test_fit_does_not_depend_on_the_time_unit():
    rng = np.random.default_rng(5)
    sim = simulate((0.5, 10.0, 0.7, 3.0), rng.uniform(20, 40, 1500), rng)
    weeks = BGNBD().fit(sim["frequency"], sim["recency"], sim["T"]).params_
    days = BGNBD().fit(sim["frequency"], sim["recency"] * 7, sim["T"] * 7).params_
    assert days["alpha"] == pytest.approx(weeks["alpha"] * 7, rel=1e-3)
    for name in ("r", "a", "b"):
        assert days[name] == pytest.approx(weeks[name], rel=1e-3)


# ---------------------------------------------------------------------------------------------------------
# the published CDNOW fit, reproduced from the raw file
# ---------------------------------------------------------------------------------------------------------


def _lifetimes_file(name: str) -> Path:
    try:
        files = metadata.files("lifetimes") or []
    except metadata.PackageNotFoundError:
        pytest.skip("lifetimes (which ships the CDNOW files) is not installed")
    for entry in files:
        if str(entry) == f"lifetimes/datasets/{name}":
            return Path(entry.locate())
    pytest.skip(f"{name} not in the installed lifetimes")


def test_published_cdnow_sample_fit_is_reproduced_from_the_master_file():
    """FHL (2005) fit the 2,357-customer CDNOW sample: r 0.243, α 4.414, a 0.793, b 2.426, LL −9582.4.

    CDNOW_sample.txt names the master-file customer of each sample customer; the summary is computed
    here from the master file's lines of those customers (one purchase day = one transaction,
    calibration to 1997-09-30, weeks), checked against the summary shipped with lifetimes, then fitted.
    """
    master = pd.read_csv(_lifetimes_file("CDNOW_master.txt"), sep=r"\s+", skiprows=1, header=None,
                         names=["id", "date", "cds", "usd"], dtype={"id": str, "date": str})
    sample = pd.read_csv(_lifetimes_file("CDNOW_sample.txt"), sep=r"\s+", header=None,
                         names=["id", "sample_id", "date", "cds", "usd"], dtype={"id": str, "date": str})
    sample_id = sample.drop_duplicates("id").set_index("id")["sample_id"]
    rows = master[master["id"].isin(sample_id.index)].assign(day=lambda f: pd.to_datetime(f["date"]))
    end = pd.Timestamp("1997-09-30")
    days = rows[rows["day"] <= end].drop_duplicates(["id", "day"])
    first = days.groupby("id")["day"].min()
    week = pd.Timedelta(days=7)
    summary = pd.DataFrame({
        "x": days.groupby("id").size() - 1,
        "t_x": (days.groupby("id")["day"].max() - first) / week,
        "T": (end - first) / week,
    }).set_axis(sample_id.reindex(first.index).to_numpy()).sort_index()
    assert len(summary) == 2357

    shipped = pd.read_csv(_lifetimes_file("cdnow_customers_summary_with_transactions.csv")).set_index("ID")
    assert (summary["x"].to_numpy() == shipped["x"].to_numpy()).all()
    assert np.abs(summary["t_x"].to_numpy() - shipped["t_x"].to_numpy()).max() < 0.005  # 2-decimal file
    assert np.abs(summary["T"].to_numpy() - shipped["T"].to_numpy()).max() < 0.005

    model = BGNBD().fit(summary["x"], summary["t_x"], summary["T"])
    for name, value in zip(("r", "alpha", "a", "b"), PARAMS):
        assert model.params_[name] == pytest.approx(value, abs=0.002), name
    assert model.log_likelihood_ == pytest.approx(-9582.4, abs=0.5)


# ---------------------------------------------------------------------------------------------------------
# the summary from the event store
# ---------------------------------------------------------------------------------------------------------


def _purchase(n: int, ts: str, who: str = "KH1", amount: float = 100000) -> dict:
    return {"event_id": f"b{n}", "ts": ts, "channel": "pos", "type": "purchase", "pos_customer_id": who,
            "amount": amount}


def test_purchase_summary_counts_purchase_days(workspace, tmp_path):
    rows = [
        _purchase(1, "2026-03-01T09:00:00+07:00"),
        _purchase(2, "2026-03-01T19:00:00+07:00"),  # same day: one transaction
        _purchase(3, "2026-03-11T08:00:00+07:00", amount=300000),
        _purchase(4, "2026-03-21T23:30:00+07:00"),  # late evening in Vietnam is still the 21st
        _purchase(5, "2026-03-05T10:00:00+07:00", "KH2"),
        {"event_id": "v1", "ts": "2026-02-01T10:00:00+07:00", "channel": "web", "type": "page_view",
         "anonymous_id": "browser"},  # never bought: no row
        _purchase(6, "2026-04-02T10:00:00+07:00"),  # after as_of
    ]
    ingest_file(write_jsonl(tmp_path / "p.jsonl", rows), workspace.store_path)
    as_of = parse_as_of("2026-04-01")
    with open_store(workspace.store_path) as con:
        with resolve_events(con, as_of, IDENTITY) as events:
            summary = purchase_summary(events)
    assert len(summary) == 2
    kh1 = summary[summary["frequency"] == 2].iloc[0]
    assert kh1["recency"] == 20.0  # 1 → 21 March
    assert kh1["T"] == 31.0  # from the start of 1 March to the start of 1 April, Vietnam time
    assert kh1["monetary"] == 200000.0  # repeat days 11 and 21 March; the first day (two orders) is left out
    kh2 = summary[summary["frequency"] == 0].iloc[0]
    assert (kh2["recency"], kh2["T"]) == (0.0, 27.0)
    assert np.isnan(kh2["monetary"])  # a one-time buyer has no repeat spend


def test_bgnbd_features_ignore_later_events(workspace, tmp_path):
    rng = np.random.default_rng(2)
    rows, n = [], 0
    for person in range(80):
        for day in sorted(rng.choice(40, size=rng.integers(1, 6), replace=False)):
            n += 1
            ts = pd.Timestamp("2026-01-01T10:00:00+07:00") + pd.Timedelta(days=int(day))
            rows.append(_purchase(n, ts.isoformat(), f"C{person}"))
    ingest_file(write_jsonl(tmp_path / "a.jsonl", rows), workspace.store_path)
    as_of = parse_as_of("2026-02-15")
    with open_store(workspace.store_path) as con:
        with resolve_events(con, as_of, IDENTITY) as events:
            before = bgnbd_features(events, 30)
    later = [_purchase(10_000 + i, "2026-02-20T10:00:00+07:00", f"C{i}") for i in range(80)]
    ingest_file(write_jsonl(tmp_path / "b.jsonl", later), workspace.store_path)
    with open_store(workspace.store_path) as con:
        with resolve_events(con, as_of, IDENTITY) as events:
            after = bgnbd_features(events, 30)
    assert before.notna().all().all() and len(before) == 80
    pd.testing.assert_frame_equal(before, after)
