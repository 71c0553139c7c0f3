"""`nhip`: the one command line. Thin: it parses options, calls package functions, prints results.

Errors a user can fix print as one line on stderr and exit with code 1.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

app = typer.Typer(help="Nhịp: multichannel events → customer profiles → propensity and send-time scores.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
features_app = typer.Typer(help="Point-in-time profiles and profile vectors.", no_args_is_help=True)
train_app = typer.Typer(help="Train a model, track it in MLflow, promote it when it wins.",
                        no_args_is_help=True)
score_app = typer.Typer(help="Score every customer into a CSV file.", no_args_is_help=True)
app.add_typer(features_app, name="features")
app.add_typer(train_app, name="train")
app.add_typer(score_app, name="score")

out = Console()
err = Console(stderr=True)


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code 1."""


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(1)


def _settings():
    from nhip.settings import get_settings

    return get_settings()


def _as_of(value: str) -> datetime:
    from nhip.clock import parse_as_of

    try:
        return parse_as_of(value)
    except ValueError as exc:
        raise UserError(f"cannot read date {value!r}: use YYYY-MM-DD or ISO 8601") from exc


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                    console=err, transient=False)


def _run(fn):
    """Run a command body, turning known, user-fixable failures into one-line errors."""
    from features.erasure import ErasureError
    from features.ingest.readers import IngestError
    from features.store import StoreMissingError
    from serving.champions import NoChampionError
    from training.errors import NotEnoughDataError

    try:
        return fn()
    except (UserError, IngestError, StoreMissingError, ErasureError, NoChampionError, NotEnoughDataError,
            LookupError, FileNotFoundError) as exc:
        _fail(str(exc).strip("'\""))
    except Exception as exc:  # duckdb lock errors and the like are still one line, not a traceback
        if os.environ.get("NHIP_DEBUG"):
            raise
        if "Could not set lock" in str(exc):
            _fail("the event store is in use by another process (is `nhip collect` running?); "
                  "DuckDB allows one writer at a time")
        _fail(f"{type(exc).__name__}: {exc} (set NHIP_DEBUG=1 for the traceback)")


@app.command("demo-data")
def demo_data(
    out_dir: Path = typer.Option(..., "--out", help="folder to write events.jsonl, truth.csv, …"),
    customers: int = typer.Option(2000, help="number of people"),
    days: int = typer.Option(240, help="days of history, ending 2026-09-01"),
    seed: int = typer.Option(7, help="random seed; the same seed gives the same data"),
):
    """Write a realistic synthetic multichannel dataset with its ground truth."""
    def body():
        from synthetic import demo_shop as gen

        if customers < 1 or days < 1:
            raise UserError("--customers and --days must be positive")
        with err.status(f"generating {customers} customers × {days} days"):
            data = gen.generate(customers=customers, days=days, seed=seed)
            paths = gen.write(data, out_dir)
        out.print(f"wrote {len(data.events):,} events for {customers:,} people to {out_dir}")
        for name, path in paths.items():
            out.print(f"  {name}: {path}")
    _run(body)


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="canonical .jsonl, .csv or .parquet files"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
    mapping: Optional[Path] = typer.Option(
        None, "--mapping", help="TOML mapping file: read every PATH as an export with its own columns"),
):
    """Import event files; every row is accepted, a duplicate or quarantined with a reason."""
    def body():
        from features.ingest.importer import ingest_file

        settings = _settings()
        if mapping is not None:
            from functools import partial

            from features.ingest.mapping import ingest_mapped, load_mapping

            read = partial(ingest_mapped, mapping=load_mapping(mapping))
        else:
            read = ingest_file
        settings.ensure_dirs()
        reports = []
        for path in paths:
            with err.status(f"importing {path} …"):
                reports.append(read(path, settings.store_path))
        totals = {k: sum(getattr(r, k) for r in reports)
                  for k in ("rows_read", "accepted", "duplicates", "quarantined")}
        if as_json:
            print(json.dumps({**totals, "files": [r.as_dict() for r in reports]}, ensure_ascii=False))
            return
        for r in reports:
            out.print(f"{r.source}: read {r.rows_read:,}  accepted {r.accepted:,}  "
                      f"duplicates {r.duplicates:,}  quarantined {r.quarantined:,}")
            for reason, count in r.reasons.most_common():
                out.print(f"    quarantined: {reason} × {count:,}")
        if len(reports) > 1:
            out.print("total: " + "  ".join(f"{k} {v:,}" for k, v in totals.items()))
    _run(body)


@features_app.command("build")
def features_build(
    as_of: str = typer.Option(..., "--as-of", help="date (00:00 Vietnam time) or ISO time"),
    vectors: bool = typer.Option(True, "--vectors/--no-vectors", help="also write Qdrant vectors"),
):
    """Resolve identities, compute profiles as of a date, write profile vectors to Qdrant."""
    def body():
        from features.build import build_features

        settings = _settings()
        steps = ["resolving identities", "computing profiles", "writing profiles"]
        if vectors:
            steps += ["embedding products", "writing vectors to Qdrant"]
        with _progress() as progress:
            task = progress.add_task("features", total=len(steps))

            def step(name: str) -> None:
                progress.update(task, description=name, completed=steps.index(name))

            summary = build_features(settings, _as_of(as_of), with_vectors=vectors, step=step)
            progress.update(task, description="done", completed=len(steps))
        out.print(f"profiles as of {as_of}: {summary.customers:,} customers, "
                  f"{summary.identifiers:,} identifiers, {summary.vectors:,} vectors, "
                  f"{summary.items:,} items")
    _run(body)


def _print_outcome(outcome) -> None:
    from training.gate import verdict_lines

    _lines(verdict_lines(outcome.model_name, outcome.version, outcome.verdict))
    shown = {k: v for k, v in outcome.metrics.items() if isinstance(v, float)}
    _lines(["  run " + outcome.run_id + ": " + "  ".join(f"{k}={v:.4f}" for k, v in shown.items())])


@train_app.command("propensity")
def train_propensity(
    as_of: str = typer.Option(..., "--as-of", help="test snapshot; its label window must be observed"),
    horizon_days: int = typer.Option(30, "--horizon-days", help="predict a purchase within N days"),
    step_days: int = typer.Option(14, "--step-days", help="days between training snapshots"),
    margin: Optional[float] = typer.Option(
        None, help="AUC margin a candidate must beat the champion by; default NHIP_PROMOTION_MARGIN"),
):
    """Train the purchase-propensity model on rolling snapshots and register it."""
    def body():
        from training.runner import train_propensity as run

        with _progress() as progress:
            task = progress.add_task("building snapshots", total=None)
            outcome = run(_settings(), _as_of(as_of), horizon_days, step_days, margin,
                          progress=lambda d: progress.update(
                              task, advance=1, description=f"snapshot {d:%Y-%m-%d}"))
        _print_outcome(outcome)
    _run(body)


@train_app.command("send-time")
def train_send_time(
    as_of: str = typer.Option(..., "--as-of", help="learn from message history up to this date"),
    margin: Optional[float] = typer.Option(
        None, help="holdout AUC margin to beat the champion by; default NHIP_PROMOTION_MARGIN"),
):
    """Train the send-time model (per customer and channel, 168 hour-of-week scores)."""
    def body():
        from training.runner import train_send_time as run

        with err.status("training send-time model"):
            outcome = run(_settings(), _as_of(as_of), margin)
        _print_outcome(outcome)
    _run(body)


def _identifier_columns(identity, index):
    from features.identity.reports import identifiers_wide

    return identifiers_wide(identity).reindex(index)


@score_app.command("propensity")
def score_propensity(
    as_of: str = typer.Option(..., "--as-of"),
    horizon_days: int = typer.Option(30, "--horizon-days"),
    output: Path = typer.Option(..., "--output", help="CSV to write"),
):
    """Score every customer known at as_of with the champion propensity model."""
    def body():
        from features.identity.graph import resolve
        from features.profile.wide import build_profiles
        from features.store import open_store
        from models.names import PROPENSITY_MODEL
        from models.propensity import score_profiles
        from serving.champions import load_champion

        settings = _settings()
        champion = load_champion(settings, PROPENSITY_MODEL)
        if champion.model.horizon_days != horizon_days:
            raise UserError(f"the champion {champion.label} predicts {champion.model.horizon_days} days, "
                            f"not {horizon_days}; train one with --horizon-days {horizon_days}")
        when = _as_of(as_of)
        with open_store(settings.store_path, read_only=True) as con:
            identity = resolve(con, when)
            profiles = build_profiles(con, when, identity)
        scores = score_profiles(champion.model, profiles, settings.min_events_to_score)
        table = _identifier_columns(identity, scores.index).join(scores[["score", "percentile", "bucket"]])
        output.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(output, index_label="customer_id")
        counts = scores["bucket"].value_counts().to_dict()
        out.print(f"wrote {len(table):,} customers to {output} with {champion.label}: {counts}")
    _run(body)


@score_app.command("send-time")
def score_send_time(
    channel: str = typer.Option(..., "--channel"),
    start: str = typer.Option(..., "--from", help="window start, local time (e.g. 2026-09-02T08:00)"),
    end: str = typer.Option(..., "--to", help="window end, local time"),
    output: Path = typer.Option(..., "--output"),
    explore: Optional[bool] = typer.Option(
        None, "--explore/--no-explore",
        help="Thompson sampling instead of the best hour (default: NHIP_SEND_TIME_EXPLORE)"),
):
    """Best local send time in a window for every customer of the latest feature build."""
    def body():
        import pandas as pd

        from serving.scoring import load_scorer

        settings = _settings()
        scorer = load_scorer(settings)
        from features.build import load_online_profiles

        _, identity = load_online_profiles(settings)
        try:
            rows = scorer.send_time(list(scorer.profiles.index), channel, start, end, explore)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
        answers = pd.DataFrame(rows).set_index("customer_id")[["send_at", "score", "source", "explored"]]
        table = _identifier_columns(identity, answers.index).join(answers)
        output.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(output, index_label="customer_id")
        out.print(f"wrote {len(table):,} customers to {output} with {scorer.send_time_champion.label}")
    _run(body)


quarantine_app = typer.Typer(help="Rows that could not be imported, with their reasons.",
                              no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")


def _quarantine_frame(source: Optional[str], reason: Optional[str]):
    from features.store import open_store

    where, params = [], []
    if source:
        where.append("source = ?")
        params.append(source)
    if reason:
        where.append("contains(reason, ?)")
        params.append(reason)
    sql = "SELECT source, line, reason, raw, ingested_at FROM quarantine"
    sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY ingested_at, source, line"
    with open_store(_settings().store_path, read_only=True) as con:
        return con.execute(sql, params).df()


@quarantine_app.command("list")
def quarantine_list(
    source: Optional[str] = typer.Option(None, help="only rows from this source file"),
    reason: Optional[str] = typer.Option(None, help="only reasons containing this text"),
    limit: int = typer.Option(20, help="rows to show"),
):
    """Count quarantined rows by source and reason, and show the first few."""
    def body():
        frame = _quarantine_frame(source, reason)
        if frame.empty:
            out.print("no quarantined rows")
            return
        counts = frame.groupby(["source", "reason"]).size().sort_values(ascending=False)
        for (src, why), n in counts.items():
            out.print(f"{n:>8,}  {src}  {why}", highlight=False)
        out.print(f"\nfirst {min(limit, len(frame))} of {len(frame):,}:")
        for row in frame.head(limit).itertuples(index=False):
            out.print(f"  {row.source}:{row.line}  {row.reason}  {row.raw[:100]}", highlight=False)
    _run(body)


@quarantine_app.command("export")
def quarantine_export(
    output: Path = typer.Option(..., "--output", help="CSV to write"),
    source: Optional[str] = typer.Option(None, help="only rows from this source file"),
    reason: Optional[str] = typer.Option(None, help="only reasons containing this text"),
):
    """Write quarantined rows (source, line, reason, raw row, time) to CSV for fixing and re-import."""
    def body():
        frame = _quarantine_frame(source, reason)
        output.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(output, index=False)
        out.print(f"wrote {len(frame):,} quarantined rows to {output}")
    _run(body)


@app.command()
def erase(
    phone: Optional[str] = typer.Option(None, help="the person's phone, any format"),
    email: Optional[str] = typer.Option(None, help="the person's email"),
    customer_id: Optional[str] = typer.Option(None, "--customer-id", help="a Nhịp customer id"),
    id_type: Optional[str] = typer.Option(None, "--id-type", help="another identifier type …"),
    value: Optional[str] = typer.Option(None, "--value", help="… and its value"),
):
    """Erase a person: events, quarantined rows, profiles, identity links and vectors."""
    def body():
        from features.erasure import erase as run

        given = [(k, v) for k, v in (("phone", phone), ("email", email), ("customer_id", customer_id),
                                     (id_type, value)) if k and v]
        if len(given) != 1:
            raise UserError("give exactly one of --phone, --email, --customer-id or --id-type/--value")
        with err.status("erasing"):
            report = run(_settings(), *given[0])
        removed = "  ".join(f"{k} {v:,}" for k, v in report.removed.items())
        out.print(f"erasure {report.erasure_id}: {report.customers} customer(s), "
                  f"{report.identifiers} identifier(s) removed — {removed}")
        out.print("files you imported from are untouched: erase the person at the source too, "
                  "or a re-import brings them back")
    _run(body)


@app.command()
def report(
    out_dir: Path = typer.Option(Path("reports"), "--out", help="folder for the HTML reports"),
    model: Optional[str] = typer.Option(None, "--model", help="propensity or send-time; default both"),
    version: Optional[str] = typer.Option(None, "--version", help="this version's report, not the champion's"),
):
    """Write each champion's HTML report (Vietnamese and English), or one version's, to a folder."""
    def body():
        from training.registry import export_reports

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line per report
        written = export_reports(_settings(), out_dir, model, version)
        if not written:
            raise UserError("no champion models yet; run `nhip train propensity` and `nhip train send-time`")
        for path in written:
            out.print(f"report: {path}")
    _run(body)


models_app = typer.Typer(help="Registered model versions and the champion alias.", no_args_is_help=True)
app.add_typer(models_app, name="models")
_MODEL_OPTION = "propensity or send-time"


@models_app.command("list")
def models_list(model: Optional[str] = typer.Option(None, "--model", help=_MODEL_OPTION + "; default both")):
    """Every version: created, run, key metrics, feature list, aliases, the gate's verdict."""
    def body():
        from training.registry import format_versions, list_versions

        for i, (name, rows) in enumerate(list_versions(_settings(), model).items()):
            _lines(([""] if i else []) + format_versions(name, rows))
    _run(body)


@models_app.command("promote")
def models_promote(
    version: str = typer.Argument(..., help="the registered version to make champion"),
    model: str = typer.Option("propensity", "--model", help=_MODEL_OPTION),
    reason: str = typer.Option("promoted by hand", "--reason", help="why; recorded with your user name"),
):
    """Move the champion alias to VERSION by hand (recorded, so `nhip models rollback` can undo it)."""
    def body():
        from training.registry import model_name, promote

        move = promote(_settings(), model, version, why=reason)
        if move is None:
            _lines([f"{model_name(model)} version {version} already is the champion"])
            return
        _lines([f"{model_name(model)}: champion is now version {move.version} (was {move.previous or 'none'}); "
                "restart `nhip serve` to serve it"])
    _run(body)


@models_app.command("rollback")
def models_rollback(
    model: str = typer.Option("propensity", "--model", help=_MODEL_OPTION),
    reason: str = typer.Option("rolled back by hand", "--reason", help="why; recorded with your user name"),
):
    """Give the champion alias back to the version that held it before the current one."""
    def body():
        from training.registry import model_name, rollback

        move = rollback(_settings(), model, why=reason)
        _lines([f"{model_name(model)}: champion rolled back to version {move.version} (was {move.previous}); "
                "restart `nhip serve` to serve it"])
    _run(body)


@app.command()
def retrain(
    as_of: Optional[str] = typer.Option(
        None, "--as-of", help="the job's 'now': features and send time up to it; default the last event"),
    horizon_days: int = typer.Option(30, "--horizon-days", help="propensity: a purchase within N days"),
    margin: Optional[float] = typer.Option(None, help="AUC margin to beat the champions by; "
                                                       "default NHIP_PROMOTION_MARGIN"),
    vectors: bool = typer.Option(True, "--vectors/--no-vectors", help="also rebuild the Qdrant vectors"),
):
    """Check the new data, rebuild features, train both models; each is promoted or kept by the gate.

    Exits 0 whether the champions were replaced or kept; 1 when a data check refuses or a step fails.
    """
    def body():
        from training.gate import verdict_lines
        from training.retrain import retrain as run

        def show_checks(plan, checks):
            _lines([plan.describe(), *(f"  check {c.name}: {'ok' if c.passed else 'FAILED'} — {c.detail}"
                                       for c in checks)])

        with err.status("retraining") as status:
            result = run(_settings(), _as_of(as_of) if as_of else None, horizon_days, margin, vectors,
                         step=lambda name: status.update(name), on_checks=show_checks)
        _lines([f"features rebuilt: {result.customers:,} customers"])
        for outcome in result.outcomes:
            _lines(verdict_lines(outcome.model_name, outcome.version, outcome.verdict))
    _run(body)


@app.command()
def serve(
    port: int = typer.Option(3000, help="TCP port on 127.0.0.1"),
    host: str = typer.Option("127.0.0.1", help="address to bind"),
    print_examples: bool = typer.Option(False, "--print-examples", help="print example requests first"),
):
    """Serve the champions over HTTP with BentoML (foreground; Ctrl-C stops)."""
    def body():
        settings = _settings()
        if print_examples:
            _print_examples(settings, host, port)
        env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "HF_HUB_OFFLINE": "1"}
        command = [sys.executable, "-m", "bentoml", "serve", "serving.service:Nhip",
                   "--host", host, "--port", str(port)]
        sys.stdout.flush()
        # Become the BentoML server rather than wait for it: a supervisor's SIGTERM then reaches the
        # server, which stops its workers, instead of killing this process and orphaning them.
        os.execve(sys.executable, command, env)
    _run(body)


@app.command()
def collect(
    port: int = typer.Option(8100, help="TCP port"),
    host: str = typer.Option("127.0.0.1", help="address to bind"),
):
    """Receive canonical events over HTTP: POST /events with X-API-Key (foreground; Ctrl-C stops).

    The collector holds the event store open for writing: stop it before other commands use the store.
    """
    def body():
        import uvicorn

        from features.ingest.collector import CollectorConfigError, create_app
        from features.store import connect

        settings = _settings()
        try:
            application = create_app(settings)
        except CollectorConfigError as exc:
            raise UserError(str(exc)) from exc
        connect(settings.store_path, create=True).close()  # a locked or unwritable store: one-line error
        out.print(f"collecting into {settings.store_path} on http://{host}:{port}/events")
        uvicorn.run(application, host=host, port=port, log_level="info")
    _run(body)


evaluate_app = typer.Typer(help="Benchmarks on public data, through the same pipeline as a shop's.",
                           no_args_is_help=True)
app.add_typer(evaluate_app, name="evaluate")


@evaluate_app.command("cdnow")
def evaluate_cdnow_command(
    work: Optional[Path] = typer.Option(
        None, "--work", help="folder for the converted events and their store; default $NHIP_HOME/cdnow"),
    sample: Optional[int] = typer.Option(None, "--sample", help="only N customers, drawn at random (seeded)"),
    feature_list: Optional[str] = typer.Option(
        None, "--feature-list", help="e.g. propensity_v3; default: what `nhip train propensity` uses"),
):
    """CDNOW, split as Fader, Hardie & Lee (2005): our model vs BG/NBD vs the recency rule."""
    def body():
        from features.profile.feature_lists import get_feature_list
        from training.cdnow import (
            CALIBRATION_LAST_DAY,
            HORIZON_DAYS,
            evaluate_cdnow,
            markdown_table,
        )

        if sample is not None and sample < 1:
            raise UserError("--sample must be positive")
        chosen = get_feature_list(feature_list) if feature_list else None
        folder = work or _settings().workspace / "cdnow"
        with _progress() as progress:
            task = progress.add_task("importing CDNOW", total=None)
            result = evaluate_cdnow(folder, sample=sample, feature_list=chosen,
                                    progress=lambda d: progress.update(
                                        task, advance=1, description=f"snapshot {d:%Y-%m-%d}"))
        report, plan = result.imported.report, result.details["plan"]
        lines = [
            f"CDNOW: {result.imported.conversion.lines:,} lines → read {report.rows_read:,}  accepted "
            f"{report.accepted:,}  duplicates {report.duplicates:,}  quarantined {report.quarantined:,} "
            f"({result.imported.conversion.customers:,} customers) in {result.imported.store_path}",
            f"as of the end of {CALIBRATION_LAST_DAY}, purchases in the next {HORIZON_DAYS} days; "
            f"{plan.scheme}; {len(plan.train)} training + {len(plan.calibration)} calibration snapshots; "
            f"feature list {result.feature_list}",
            "BG/NBD (days): " + ", ".join(f"{k}={v:.4g}" for k, v in result.bgnbd_params.items()),
            "",
            markdown_table(result.table),
        ]
        for line in lines:
            out.print(line, markup=False, highlight=False, soft_wrap=True)
    _run(body)


identity_app = typer.Typer(help="Who is who: explain, export and audit identity resolution.",
                           no_args_is_help=True)
app.add_typer(identity_app, name="identity")
_AS_OF_LATEST = "resolve as of this date (00:00 Vietnam time) or ISO time; default the latest event"


def _identity_resolution(con, as_of: Optional[str]):
    from features.identity.graph import resolve_graph

    when = _as_of(as_of) if as_of else con.execute("SELECT max(ts) FROM events").fetchone()[0]
    if when is None:
        raise UserError("the event store is empty; run `nhip ingest FILE` first")
    return resolve_graph(con, when, _settings().identity_max_links)


def _lines(lines) -> None:
    for line in lines:
        out.print(line, markup=False, highlight=False, soft_wrap=True)


@identity_app.command("explain")
def identity_explain(
    identifier: str = typer.Argument(..., help="a phone in any format, an email, a Zalo/Facebook/POS id, "
                                               "a cookie id, or a customer id (c_…)"),
    id_type: Optional[str] = typer.Option(None, "--type", help="the identifier's type, if ambiguous"),
    as_of: Optional[str] = typer.Option(None, "--as-of", help=_AS_OF_LATEST),
):
    """Why records are one customer: its identifiers and the events that link them (no names shown)."""
    def body():
        from features.identity.explain import (
            explain,
            find_identifier,
            format_explanation,
        )
        from features.schema import IDENTIFIER_FIELDS
        from features.store import open_store

        if id_type and id_type not in (*IDENTIFIER_FIELDS, "customer_id"):
            raise UserError(f"unknown identifier type {id_type!r}; use one of {', '.join(IDENTIFIER_FIELDS)}")
        with open_store(_settings().store_path, read_only=True) as con:
            resolution = _identity_resolution(con, as_of)
            matches = find_identifier(resolution, identifier, id_type)
            if not matches:
                raise UserError(f"no identifier {identifier!r} in events up to {as_of or 'the latest event'}")
            for i, (kind, value) in enumerate(matches):
                _lines(([""] if i else []) + format_explanation(explain(con, resolution, kind, value)))
    _run(body)


@identity_app.command("export")
def identity_export(
    output: Path = typer.Option(..., "--output", help="CSV to write"),
    as_of: Optional[str] = typer.Option(None, "--as-of", help=_AS_OF_LATEST),
):
    """Write customer_id,id_type,id_value,first_seen: one row per identifier, values normalised."""
    def body():
        from features.identity.reports import export_identities
        from features.store import open_store

        with open_store(_settings().store_path, read_only=True) as con:
            resolution = _identity_resolution(con, as_of)
        frame = export_identities(resolution)
        output.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(output, index=False)
        _lines([f"wrote {len(frame):,} identifiers of {frame['customer_id'].nunique():,} customers to "
                f"{output}; {len(resolution.set_aside):,} set aside (see `nhip identity suspects`)"])
    _run(body)


@identity_app.command("suspects")
def identity_suspects(
    as_of: Optional[str] = typer.Option(None, "--as-of", help=_AS_OF_LATEST),
    output: Optional[Path] = typer.Option(None, "--output", help="also write them to this CSV"),
):
    """Identifiers set aside by the over-merge guard (a hotline, a test email), and why."""
    def body():
        from features.identity.reports import set_aside_report
        from features.store import open_store

        with open_store(_settings().store_path, read_only=True) as con:
            resolution = _identity_resolution(con, as_of)
            report = set_aside_report(con, resolution)
        if output:
            output.parent.mkdir(parents=True, exist_ok=True)
            report.to_csv(output, index=False)
        if report.empty:
            out.print(f"no identifier is set aside (limit: {resolution.max_links} distinct identifiers "
                      "of one type)")
            return
        _lines(f"{r.id_type} {r.id_value}: {r.reason}; {r.n_events:,} events, {r.customers:,} customers, "
               f"{r.unresolved_events:,} events with no other identifier (attributed to nobody)"
               for r in report.itertuples(index=False))
    _run(body)


@identity_app.command("merges")
def identity_merges(limit: int = typer.Option(50, help="show at most this many, newest first")):
    """Merges, splits and renames recorded by `nhip features build`."""
    def body():
        from features.store import open_store

        with open_store(_settings().store_path, read_only=True) as con:
            tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
            if "identity_merges" not in tables:
                raise UserError("no merges recorded yet; they are recorded by `nhip features build`")
            frame = con.execute("SELECT * FROM identity_merges ORDER BY recorded_at DESC, kind, "
                                "kept_customer_id, absorbed_customer_id LIMIT ?", [limit]).df()
        if frame.empty:
            out.print("no merges, splits or renames recorded")
        _lines(f"{r.as_of:%Y-%m-%d %H:%M} {r.kind:<7} {r.absorbed_customer_id} → {r.kept_customer_id}"
               + (f" via {r.a_type}+{r.b_type} (event {r.event_key})" if isinstance(r.event_key, str) else "")
               + f": {r.detail}" for r in frame.itertuples(index=False))
    _run(body)


def _print_examples(settings, host: str, port: int) -> None:
    from features.build import load_online_profiles

    profiles, _ = load_online_profiles(settings)
    ids = json.dumps(list(profiles.index[:2]))
    base = f"http://{host}:{port}"
    body = json.dumps({"customer_ids": json.loads(ids), "channel": "zalo_oa",
                       "window_start": "2026-09-02T08:00:00+07:00",
                       "window_end": "2026-09-03T08:00:00+07:00"})
    # Plain print: these lines are meant to be copied, so no wrapping by the console.
    print("\nTry, once the service says it is listening:\n")
    print(f"  curl -s {base}/healthz")
    print(f"  curl -s -X POST {base}/propensity -H 'Content-Type: application/json' "
          f"-d '{{\"customer_ids\": {ids}}}'")
    print(f"  curl -s -X POST {base}/send_time -H 'Content-Type: application/json' -d '{body}'\n",
          flush=True)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
