"""`nhip`: the one command line. Thin: it reads the settings, parses options, calls package functions and
prints their results. It holds no SQL and no business logic (tests/test_layout.py checks the SQL part).

Every command is wrapped by `handled`: errors a user can fix print as one line on stderr and exit with
code 1 (`NHIP_DEBUG=1` shows the traceback).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from datetime import datetime
from pathlib import Path

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
quarantine_app = typer.Typer(help="Rows that could not be imported, with their reasons.", no_args_is_help=True)
models_app = typer.Typer(help="Registered model versions and the champion alias.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Benchmarks on public data, through the same pipeline as a shop's.",
                           no_args_is_help=True)
identity_app = typer.Typer(help="Who is who: explain, export and audit identity resolution.",
                           no_args_is_help=True)
store_app = typer.Typer(help="The event store: its state, and moving an old workspace to it.", no_args_is_help=True)
audience_app = typer.Typer(help="Named audiences over profiles and scores, and their exports to ad platforms.",
                           no_args_is_help=True)
campaign_app = typer.Typer(help="Campaign plans: the channel and hour per member, under the contact policy.",
                           no_args_is_help=True)
policy_app = typer.Typer(help="The contact policy plans follow.", no_args_is_help=True)
for group, name in ((features_app, "features"), (train_app, "train"), (score_app, "score"),
                    (quarantine_app, "quarantine"), (models_app, "models"), (evaluate_app, "evaluate"),
                    (identity_app, "identity"), (store_app, "store"), (audience_app, "audience"),
                    (campaign_app, "campaign"), (policy_app, "policy")):
    app.add_typer(group, name=name)

out = Console()
err = Console(stderr=True)
_MODEL_OPTION = "propensity or send-time"
_AS_OF_LATEST = "resolve as of this date (00:00 Vietnam time) or ISO time; default the latest event"


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code 1."""


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(1)


def _user_errors() -> tuple[type[BaseException], ...]:
    """The failures a user can fix, imported only when a command fails (light modules only)."""
    from features.builds import BuildBusy
    from features.ingest.readers import IngestError
    from features.store import StoreMissingError, WriterBusy
    from features.store.migrate import MigrationError
    from nhip.settings import SettingsError
    from serving.activation.exports import ExportError
    from serving.activation.policy import PlanError, PolicyError
    from serving.activation.rules import RuleError
    from training.errors import NotEnoughDataError

    # LookupError covers unknown customers, champions, versions, audiences and campaigns, identity mismatches
    # and erasures.
    return (UserError, IngestError, StoreMissingError, WriterBusy, BuildBusy, MigrationError, NotEnoughDataError,
            SettingsError, LookupError, FileNotFoundError, PolicyError, PlanError, RuleError, ExportError)


def handled(command):
    """Run a command body, turning known, user-fixable failures into one-line errors."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except Exception as exc:
            if isinstance(exc, _user_errors()):
                _fail(str(exc).strip("'\""))
            if os.environ.get("NHIP_DEBUG"):
                raise
            _fail(f"{type(exc).__name__}: {exc} (set NHIP_DEBUG=1 for the traceback)")

    return run


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


def _lines(lines) -> None:
    for line in lines:
        out.print(line, markup=False, highlight=False, soft_wrap=True)


def _write_csv(frame, output: Path, index_label: str | None = None) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(output, index=index_label is not None, index_label=index_label)


@app.command("demo-data")
@handled
def demo_data(
    out_dir: Path = typer.Option(..., "--out", help="folder to write events.jsonl, truth.csv, …"),
    customers: int = typer.Option(2000, help="number of people"),
    days: int = typer.Option(240, help="days of history, ending 2026-09-01"),
    seed: int = typer.Option(7, help="random seed; the same seed gives the same data"),
):
    """Write a realistic synthetic multichannel dataset with its ground truth."""
    from synthetic import demo_shop

    if customers < 1 or days < 1:
        raise UserError("--customers and --days must be positive")
    with err.status(f"generating {customers} customers × {days} days"):
        data = demo_shop.generate(customers=customers, days=days, seed=seed)
        paths = demo_shop.write(data, out_dir)
    out.print(f"wrote {len(data.events):,} events for {customers:,} people to {out_dir}")
    for name, path in paths.items():
        out.print(f"  {name}: {path}")


@app.command()
@handled
def ingest(
    paths: list[Path] = typer.Argument(..., help="canonical .jsonl, .csv or .parquet files"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
    mapping: Path | None = typer.Option(
        None, "--mapping", help="TOML mapping file: read every PATH as an export with its own columns"),
    wait: float = typer.Option(600.0, "--wait", help="seconds to wait while another process writes the store"),
):
    """Import event files; every row is accepted, a duplicate or quarantined with a reason.

    Reads, checks and keys the rows before taking the store's writer lock, which it holds only for
    the commit; builds, training and the service keep reading meanwhile."""
    from features.ingest.importer import ingest_file

    settings = _settings()
    if mapping is not None:
        from features.ingest.mapping import ingest_mapped, load_mapping

        read = functools.partial(ingest_mapped, mapping=load_mapping(mapping))
    else:
        read = ingest_file
    settings.ensure_dirs()
    reports = []
    for path in paths:
        with err.status(f"importing {path} …") as status:
            reports.append(read(path, settings.store_path, wait=wait,
                                on_wait=lambda why, path=path: status.update(f"importing {path}: {why} …")))
    totals = {k: sum(getattr(r, k) for r in reports) for k in ("rows_read", "accepted", "duplicates", "quarantined")}
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


@features_app.command("build")
@handled
def features_build(
    as_of: str = typer.Option(..., "--as-of", help="date (00:00 Vietnam time) or ISO time"),
    vectors: bool = typer.Option(True, "--vectors/--no-vectors", help="also write profile vectors (and Qdrant)"),
):
    """Resolve identities, compute profiles as of a date, write profile vectors; the build becomes current."""
    from features.build import BUILD_STEPS, VECTOR_STEPS, build_features
    from serving.activation import record_sizes

    settings = _settings()
    steps = [*BUILD_STEPS, *(VECTOR_STEPS if vectors else ())]
    with _progress() as progress:
        task = progress.add_task("features", total=len(steps))

        def step(name: str) -> None:
            progress.update(task, description=name, completed=steps.index(name))

        summary = build_features(settings.build, _as_of(as_of), settings.vectors if vectors else None,
                                 to_qdrant=vectors, step=step)
        progress.update(task, description="done", completed=len(steps))
    out.print(f"build {summary.build_id}, profiles as of {as_of}: {summary.customers:,} customers, "
              f"{summary.identifiers:,} identifiers, {summary.vectors:,} vectors, "
              f"{summary.items:,} items")
    _print_sizes(record_sizes(settings))


def _print_sizes(sizes: dict) -> None:
    """The audiences recomputed on a new build, one line."""
    if sizes:
        out.print("audiences: " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} ({v})"
                                            for k, v in sizes.items()), highlight=False)


@app.command()
@handled
def refresh(
    vectors: bool = typer.Option(True, "--vectors/--no-vectors", help="also write the build's profile vectors"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
):
    """Build features as of the latest event if events arrived since the current build; else skip.

    What `nhip up` runs every NHIP_REFRESH_MINUTES; run it from cron or a timer when the parts run
    separately. The running service follows the new build by itself."""
    from features.refresh import refresh as run
    from serving.activation import record_sizes

    settings = _settings()
    with err.status("refreshing …") as status:
        result = run(settings.build, settings.vectors if vectors else None,
                     step=lambda name: status.update(f"refreshing: {name} …"))
    sizes = record_sizes(settings) if result.build is not None else {}
    if as_json:
        b = result.build
        print(json.dumps({"status": result.status, "seconds": round(result.seconds, 3),
                          "recovered_batches": result.recovered_batches,
                          "build_id": b.build_id if b else None, "as_of": b.as_of.isoformat() if b else None,
                          "customers": b.customers if b else None, "audiences": sizes}))
        return
    out.print(result.describe(), highlight=False)
    _print_sizes(sizes)


def _print_outcome(outcome) -> None:
    from training.gate import verdict_lines

    _lines(verdict_lines(outcome.model_name, outcome.version, outcome.verdict))
    shown = {k: v for k, v in outcome.metrics.items() if isinstance(v, float)}
    _lines(["  run " + outcome.run_id + ": " + "  ".join(f"{k}={v:.4f}" for k, v in shown.items())])


@train_app.command("propensity")
@handled
def train_propensity(
    as_of: str = typer.Option(..., "--as-of", help="train on the data up to this date (as `nhip retrain`)"),
    horizon_days: int = typer.Option(30, "--horizon-days", help="predict a purchase within N days"),
    test_as_of: str | None = typer.Option(
        None, "--test-as-of", help="the test snapshot; default: as-of − horizon, the latest whose purchase "
        "window is observed by --as-of"),
    step_days: int = typer.Option(14, "--step-days", help="days between training snapshots"),
    margin: float | None = typer.Option(
        None, help="AUC margin a candidate must beat the champion by; default NHIP_PROMOTION_MARGIN"),
):
    """Train the purchase-propensity model on the data up to --as-of, on rolling snapshots, and register it."""
    from datetime import timedelta

    from nhip.clock import to_local
    from training.runner import train_propensity as run

    config = _settings().training.with_margin(margin)
    data_until = _as_of(as_of)
    test = _as_of(test_as_of) if test_as_of else data_until - timedelta(days=horizon_days)
    if test + timedelta(days=horizon_days) > data_until:
        raise UserError(f"the test snapshot's {horizon_days}-day purchase window ends "
                        f"{to_local(test + timedelta(days=horizon_days)):%Y-%m-%d %H:%M}, after --as-of "
                        f"{to_local(data_until):%Y-%m-%d %H:%M}: choose a --test-as-of at least {horizon_days} "
                        "days before it")
    _lines([f"training on the data up to {to_local(data_until):%Y-%m-%d %H:%M}; testing on the "
            f"{to_local(test):%Y-%m-%d %H:%M} snapshot (purchases in the {horizon_days} days after it)"])
    with _progress() as progress:
        task = progress.add_task("building snapshots", total=None)
        outcome = run(config, test, horizon_days, step_days, observed_until=data_until,
                      progress=lambda d: progress.update(task, advance=1, description=f"snapshot {d:%Y-%m-%d}"))
    _print_outcome(outcome)


@train_app.command("send-time")
@handled
def train_send_time(
    as_of: str = typer.Option(..., "--as-of", help="learn from message history up to this date"),
    margin: float | None = typer.Option(
        None, help="holdout AUC margin to beat the champion by; default NHIP_PROMOTION_MARGIN"),
):
    """Train the send-time model (per customer and channel, 168 hour-of-week scores)."""
    from training.runner import train_send_time as run

    config = _settings().training.with_margin(margin)
    with err.status("training send-time model"):
        outcome = run(config, _as_of(as_of))
    _print_outcome(outcome)


@score_app.command("propensity")
@handled
def score_propensity(
    as_of: str = typer.Option(..., "--as-of"),
    horizon_days: int = typer.Option(30, "--horizon-days"),
    output: Path = typer.Option(..., "--output", help="CSV to write"),
):
    """Score every customer known at as_of: the champion where it answers, the fallbacks elsewhere."""
    from serving.batch import propensity_table

    settings = _settings()
    scored = propensity_table(settings.serving, settings.store_path, settings.identity, _as_of(as_of), horizon_days)
    _write_csv(scored.table, output, index_label="customer_id")
    counts = scored.table["bucket"].value_counts().to_dict()
    sources = scored.table["source"].fillna("unscored").value_counts().to_dict()
    out.print(f"wrote {len(scored.table):,} customers to {output} with {scored.model}: {counts}; "
              f"answered by {sources}")


@score_app.command("clv")
@handled
def score_clv(
    as_of: str = typer.Option(..., "--as-of"),
    horizon_days: int = typer.Option(30, "--horizon-days"),
    output: Path = typer.Option(..., "--output", help="CSV to write"),
):
    """Churn and lifetime value of every customer known at as_of over the horizon: P(alive), expected
    purchase days and spend, churn risk (High / Medium / Low) and who answered."""
    from serving.batch import clv_table

    settings = _settings()
    scored = clv_table(settings.serving, settings.store_path, settings.identity, _as_of(as_of), horizon_days)
    _write_csv(scored.table, output, index_label="customer_id")
    risk = scored.table["churn_risk"].fillna("never bought").value_counts().to_dict()
    sources = scored.table["source"].fillna("unscored").value_counts().to_dict()
    total = scored.table["expected_spend"].sum()
    out.print(f"wrote {len(scored.table):,} customers to {output} with {scored.model}: churn risk {risk}; "
              f"answered by {sources}; expected spend in {horizon_days} days {total:,.0f} in all")


@score_app.command("send-time")
@handled
def score_send_time(
    channel: str = typer.Option(..., "--channel"),
    start: str = typer.Option(..., "--from", help="window start, local time (e.g. 2026-09-02T08:00)"),
    end: str = typer.Option(..., "--to", help="window end, local time"),
    output: Path = typer.Option(..., "--output"),
    explore: bool | None = typer.Option(
        None, "--explore/--no-explore",
        help="Thompson sampling instead of the best hour (default: NHIP_SEND_TIME_EXPLORE)"),
):
    """Best local send time in a window for every customer of the latest feature build."""
    from nhip.clock import local_timestamp
    from serving.batch import send_time_table

    try:
        window = local_timestamp(start), local_timestamp(end)
    except ValueError as exc:
        raise UserError(f"cannot read the window {start!r} – {end!r}: use ISO 8601 times") from exc
    if window[1] <= window[0]:
        raise UserError("window_end must be after window_start")
    scored = send_time_table(_settings().serving, channel, *window, explore)
    _write_csv(scored.table, output, index_label="customer_id")
    out.print(f"wrote {len(scored.table):,} customers to {output} with {scored.model}")


@store_app.command("status")
@handled
def store_status(as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout")):
    """Rows, segments and size per table, who is writing, which versions readers still read."""
    from features.store import describe_store

    status = describe_store(_settings().store_path)
    if as_json:
        print(json.dumps(status))
        return
    out.print(f"{status['path']}  version {status['version']}", highlight=False)
    for table, t in status["tables"].items():
        out.print(f"  {table:<11} {t['rows']:>12,} rows  {t['segments']:>4} segments  "
                  f"{t['bytes'] / 2**20:>9,.1f} MiB", highlight=False)
    out.print(f"  writer: {status['writer'] or 'idle'}", highlight=False)
    pinned = status["pinned_versions"]
    out.print(f"  readers: {'on versions ' + ', '.join(map(str, pinned)) if pinned else 'none'}", highlight=False)


@store_app.command("migrate")
@handled
def store_migrate(
    source: Path | None = typer.Option(None, "--from", help="the single-file store (default $NHIP_HOME/events.duckdb)"),
):
    """Copy a workspace's single-file event store (events.duckdb) into the segment store, once."""
    from features.store.migrate import OLD_STORE, migrate_file_store

    settings = _settings()
    old = source or settings.workspace / OLD_STORE
    with err.status(f"copying {old} …"):
        rows = migrate_file_store(old, settings.store_path)
    out.print(f"migrated {old} → {settings.store_path}: "
              + ", ".join(f"{table} {n:,}" for table, n in rows.items()), highlight=False)
    out.print(f"The old file was only read; remove it once `nhip features build` works ({old}).", highlight=False)


@quarantine_app.command("list")
@handled
def quarantine_list(
    source: str | None = typer.Option(None, help="only rows from this source file"),
    reason: str | None = typer.Option(None, help="only reasons containing this text"),
    limit: int = typer.Option(20, help="rows to show"),
):
    """Count quarantined rows by source and reason, and show the first few."""
    from features.ingest.quarantine import quarantined_rows, reason_counts

    frame = quarantined_rows(_settings().store_path, source, reason)
    if frame.empty:
        out.print("no quarantined rows")
        return
    for (src, why), n in reason_counts(frame).items():
        out.print(f"{n:>8,}  {src}  {why}", highlight=False)
    out.print(f"\nfirst {min(limit, len(frame))} of {len(frame):,}:")
    for row in frame.head(limit).itertuples(index=False):
        out.print(f"  {row.source}:{row.line}  {row.reason}  {row.raw[:100]}", highlight=False)


@quarantine_app.command("export")
@handled
def quarantine_export(
    output: Path = typer.Option(..., "--output", help="CSV to write"),
    source: str | None = typer.Option(None, help="only rows from this source file"),
    reason: str | None = typer.Option(None, help="only reasons containing this text"),
):
    """Write quarantined rows (source, line, reason, raw row, time) to CSV for fixing and re-import."""
    from features.ingest.quarantine import quarantined_rows

    frame = quarantined_rows(_settings().store_path, source, reason)
    _write_csv(frame, output)
    out.print(f"wrote {len(frame):,} quarantined rows to {output}")


@app.command()
@handled
def erase(
    phone: str | None = typer.Option(None, help="the person's phone, any format"),
    email: str | None = typer.Option(None, help="the person's email"),
    customer_id: str | None = typer.Option(None, "--customer-id", help="a Nhịp customer id"),
    id_type: str | None = typer.Option(None, "--id-type", help="another identifier type …"),
    value: str | None = typer.Option(None, "--value", help="… and its value"),
):
    """Erase a person: events, quarantined rows, profiles, identity links and vectors."""
    from features.erasure import erase as run

    given = [(k, v) for k, v in (("phone", phone), ("email", email), ("customer_id", customer_id),
                                 (id_type, value)) if k and v]
    if len(given) != 1:
        raise UserError("give exactly one of --phone, --email, --customer-id or --id-type/--value")
    settings = _settings()
    with err.status("erasing"):
        report = run(settings.store_path, settings.builds, settings.identity, settings.vectors, *given[0])
    suppressed = settings.activation.suppression.add(report.erased_ids)
    removed = "  ".join(f"{k} {v:,}" for k, v in report.removed.items())
    out.print(f"erasure {report.erasure_id}: {report.customers} customer(s), "
              f"{report.identifiers} identifier(s) removed — {removed}")
    out.print(f"{suppressed} identifier(s) added to the suppression list: no audience, plan or export will "
              "include them again")
    out.print("files you imported from are untouched: erase the person at the source too, "
              "or a re-import brings them back")


@app.command()
@handled
def report(
    out_dir: Path = typer.Option(Path("reports"), "--out", help="folder for the HTML reports"),
    model: str | None = typer.Option(None, "--model", help="propensity or send-time; default both"),
    version: str | None = typer.Option(None, "--version", help="this version's report, not the champion's"),
):
    """Write each champion's HTML report (Vietnamese and English), or one version's, to a folder, and the
    audiences' size history (`audiences.html`) when the workspace has audiences."""
    from serving.activation.audiences import AudienceBook
    from serving.activation.report import audiences_html
    from training.registry import export_reports

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line per report
    settings = _settings()
    written = export_reports(settings.tracking, out_dir, model, version)
    book = AudienceBook(settings.activation.root)
    if model is None and version is None and book.list():
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "audiences.html").write_text(audiences_html(book), encoding="utf-8")
        written.append(out_dir / "audiences.html")
    if not written:
        raise UserError("no champion models yet; run `nhip train propensity` and `nhip train send-time`")
    for path in written:
        out.print(f"report: {path}")


@models_app.command("list")
@handled
def models_list(model: str | None = typer.Option(None, "--model", help=_MODEL_OPTION + "; default both")):
    """Every version: created, run, key metrics, feature list, aliases, the gate's verdict."""
    from training.registry import format_versions, list_versions

    for i, (name, rows) in enumerate(list_versions(_settings().tracking, model).items()):
        _lines(([""] if i else []) + format_versions(name, rows))


@models_app.command("promote")
@handled
def models_promote(
    version: str = typer.Argument(..., help="the registered version to make champion"),
    model: str = typer.Option("propensity", "--model", help=_MODEL_OPTION),
    reason: str = typer.Option("promoted by hand", "--reason", help="why; recorded with your user name"),
):
    """Move the champion alias to VERSION by hand (recorded, so `nhip models rollback` can undo it)."""
    from training.registry import model_name, promote

    move = promote(_settings().tracking, model, version, why=reason)
    if move is None:
        _lines([f"{model_name(model)} version {version} already is the champion"])
        return
    _lines([f"{model_name(model)}: champion is now version {move.version} (was {move.previous or 'none'}); "
            "restart `nhip serve` to serve it"])


@models_app.command("rollback")
@handled
def models_rollback(
    model: str = typer.Option("propensity", "--model", help=_MODEL_OPTION),
    reason: str = typer.Option("rolled back by hand", "--reason", help="why; recorded with your user name"),
):
    """Give the champion alias back to the version that held it before the current one."""
    from training.registry import model_name, rollback

    move = rollback(_settings().tracking, model, why=reason)
    _lines([f"{model_name(model)}: champion rolled back to version {move.version} (was {move.previous}); "
            "restart `nhip serve` to serve it"])


@app.command()
@handled
def retrain(
    as_of: str | None = typer.Option(
        None, "--as-of", help="the job's 'now': features and send time up to it; default the last event"),
    horizon_days: int = typer.Option(30, "--horizon-days", help="propensity: a purchase within N days"),
    margin: float | None = typer.Option(None, help="AUC margin to beat the champions by; "
                                                   "default NHIP_PROMOTION_MARGIN"),
    vectors: bool = typer.Option(True, "--vectors/--no-vectors", help="also rebuild the Qdrant vectors"),
):
    """Check the new data, rebuild features, train both models; each is promoted or kept by the gate.

    Exits 0 whether the champions were replaced or kept; 1 when a data check refuses or a step fails.
    """
    from training.gate import verdict_lines
    from training.retrain import retrain as run

    def show_checks(plan, checks):
        _lines([plan.describe(), *(f"  check {c.name}: {'ok' if c.passed else 'FAILED'} — {c.detail}"
                                   for c in checks)])

    settings = _settings()
    with err.status("retraining") as status:
        result = run(settings.training.with_margin(margin), settings.retrain_checks, settings.build,
                     settings.vectors if vectors else None, _as_of(as_of) if as_of else None, horizon_days,
                     step=lambda name: status.update(name), on_checks=show_checks)
    _lines([f"features rebuilt: {result.customers:,} customers"])
    for outcome in result.outcomes:
        _lines(verdict_lines(outcome.model_name, outcome.version, outcome.verdict))
    from serving.activation import record_sizes

    _print_sizes(record_sizes(settings))  # on the new build, with the champions the gate left in place


@app.command()
@handled
def serve(
    port: int = typer.Option(3000, help="TCP port on 127.0.0.1"),
    host: str = typer.Option("127.0.0.1", help="address to bind"),
    print_examples: bool = typer.Option(False, "--print-examples", help="print example requests first"),
):
    """Serve the champions over HTTP with BentoML (foreground; Ctrl-C stops)."""
    settings = _settings()
    _check_service_keys(settings, host)
    if print_examples:
        _print_examples(settings, host, port)
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "HF_HUB_OFFLINE": "1", "NHIP_SERVE_HOST": host}
    command = [sys.executable, "-m", "bentoml", "serve", "serving.service:Nhip", "--host", host, "--port", str(port)]
    sys.stdout.flush()
    # Become the BentoML server rather than wait for it: a supervisor's SIGTERM then reaches the
    # server, which stops its workers, instead of killing this process and orphaning them.
    os.execve(sys.executable, command, env)


def _check_service_keys(settings, host: str) -> None:
    """NHIP_API_KEYS must parse, and a service reachable beyond this machine must have keys."""
    from serving.auth import parse_keys, require_keys_off_loopback

    try:
        require_keys_off_loopback(host, parse_keys(settings.api_keys))
    except ValueError as exc:
        raise UserError(str(exc)) from None


@app.command()
@handled
def up(
    collector_port: int = typer.Option(8100, "--collector-port", help="the collector's TCP port"),
    service_port: int = typer.Option(3000, "--service-port", help="the service's TCP port"),
    host: str = typer.Option("127.0.0.1", help="address both bind"),
    no_collector: bool = typer.Option(False, "--no-collector", help="run without the HTTP collector"),
    print_examples: bool = typer.Option(False, "--print-examples", help="print example requests first"),
):
    """Run the whole system: collector, service, a refresh every NHIP_REFRESH_MINUTES and the nightly
    retrain at NHIP_RETRAIN_AT, until Ctrl-C or SIGTERM."""
    import signal

    from nhip.system import System, SystemConfig, nhip_command, parse_clock

    settings = _settings()
    _check_service_keys(settings, host)
    if not no_collector and not (settings.collector_api_key or "").strip():
        raise UserError("the collector needs an API key: set NHIP_COLLECTOR_API_KEY (clients send it as "
                        "X-API-Key), or run with --no-collector")
    try:
        retrain_at = parse_clock(settings.retrain_at)
    except ValueError as exc:
        raise UserError(f"NHIP_RETRAIN_AT: {exc}") from None
    settings.ensure_dirs()
    if print_examples:
        _print_examples(settings, host, service_port, None if no_collector else collector_port)
    config = SystemConfig(settings.refresh_minutes, retrain_at, None if no_collector else collector_port,
                          service_port, host)
    # Children write to a pipe, not a terminal: no progress bars, lines as wide as they come.
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "COLUMNS": "200"}
    system = System(config, nhip_command(), env)
    signal.signal(signal.SIGTERM, system.stop)
    signal.signal(signal.SIGINT, system.stop)
    raise typer.Exit(system.run())


@app.command()
@handled
def collect(
    port: int = typer.Option(8100, help="TCP port"),
    host: str = typer.Option("127.0.0.1", help="address to bind"),
):
    """Receive canonical events over HTTP: POST /events with X-API-Key (foreground; Ctrl-C stops).

    Each batch is spooled durably before its answer and stored within about a second; imports, builds,
    training, scoring and the service run beside it. Ctrl-C stores what is still spooled, then stops.
    """
    import uvicorn

    from features.ingest.collector import CollectorConfigError, check_store, create_app

    config = _settings().collector
    try:
        application = create_app(config)
    except CollectorConfigError as exc:
        raise UserError(str(exc)) from exc
    check_store(config)
    out.print(f"collecting into {config.store_path} on http://{host}:{port}/events")
    uvicorn.run(application, host=host, port=port, log_level="info")


@evaluate_app.command("cdnow")
@handled
def evaluate_cdnow_command(
    work: Path | None = typer.Option(
        None, "--work", help="folder for the converted events and their store; default $NHIP_HOME/cdnow"),
    sample: int | None = typer.Option(None, "--sample", help="only N customers, drawn at random (seeded)"),
    feature_list: str | None = typer.Option(
        None, "--feature-list", help="e.g. propensity_v3; default: what `nhip train propensity` uses"),
    split: str = typer.Option("fhl", "--split", help="fhl (Fader, Hardie & Lee: 1997-09-30, 273 days) or "
                              "later (1998-03-31, 91 days)"),
):
    """CDNOW: the product as shipped vs BG/NBD, an RFM logistic regression and the recency rule."""
    from features.profile.feature_lists import get_feature_list
    from training.cdnow import SPLITS, evaluate_cdnow, markdown_table

    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    _, horizon_days, last_day = SPLITS[split]

    if sample is not None and sample < 1:
        raise UserError("--sample must be positive")
    chosen = get_feature_list(feature_list) if feature_list else None
    settings = _settings()
    folder = work or settings.workspace / "cdnow"
    with _progress() as progress:
        task = progress.add_task("importing CDNOW", total=None)
        result = evaluate_cdnow(folder, settings.identity, sample=sample, feature_list=chosen,
                                min_events=settings.min_events_to_score, split=split,
                                progress=lambda d: progress.update(task, advance=1,
                                                                   description=f"snapshot {d:%Y-%m-%d}"))
    report, plan = result.imported.report, result.details["plan"]
    _lines([
        f"CDNOW: {result.imported.conversion.lines:,} lines → read {report.rows_read:,}  accepted "
        f"{report.accepted:,}  duplicates {report.duplicates:,}  quarantined {report.quarantined:,} "
        f"({result.imported.conversion.customers:,} customers) in {result.imported.store_path}",
        f"as of the end of {last_day}, purchases in the next {horizon_days} days; "
        f"{plan.scheme}; {len(plan.train)} training + {len(plan.calibration)} calibration snapshots; "
        f"feature list {result.feature_list}",
        "BG/NBD (days): " + ", ".join(f"{k}={v:.4g}" for k, v in result.bgnbd_params.items()),
        "Pareto/NBD (days): " + ", ".join(f"{k}={v:.4g}" for k, v in result.pareto_nbd_params.items()),
        "",
        markdown_table(result.table),
    ])


def _resolution(con, as_of: str | None):
    from features.identity.graph import resolve_latest

    return resolve_latest(con, _as_of(as_of) if as_of else None, _settings().identity)


@identity_app.command("explain")
@handled
def identity_explain(
    identifier: str = typer.Argument(..., help="a phone in any format, an email, a Zalo/Facebook/POS id, "
                                               "a cookie id, or a customer id (c_…)"),
    id_type: str | None = typer.Option(None, "--type", help="the identifier's type, if ambiguous"),
    as_of: str | None = typer.Option(None, "--as-of", help=_AS_OF_LATEST),
):
    """Why records are one customer: its identifiers and the events that link them (no names shown)."""
    from features.identity.explain import explain, format_explanation
    from features.identity.lookup import find_identifier
    from features.schema import IDENTIFIER_FIELDS
    from features.store import open_store

    if id_type and id_type not in (*IDENTIFIER_FIELDS, "customer_id"):
        raise UserError(f"unknown identifier type {id_type!r}; use one of {', '.join(IDENTIFIER_FIELDS)}")
    with open_store(_settings().store_path) as con:
        resolution = _resolution(con, as_of)
        matches = find_identifier(resolution, identifier, id_type)
        if not matches:
            raise UserError(f"no identifier {identifier!r} in events up to {as_of or 'the latest event'}")
        for i, (kind, value) in enumerate(matches):
            _lines(([""] if i else []) + format_explanation(explain(con, resolution, kind, value)))


@identity_app.command("export")
@handled
def identity_export(
    output: Path = typer.Option(..., "--output", help="CSV to write"),
    as_of: str | None = typer.Option(None, "--as-of", help=_AS_OF_LATEST),
):
    """Write customer_id,id_type,id_value,first_seen: one row per identifier, values normalised."""
    from features.identity.reports import export_identities
    from features.store import open_store

    with open_store(_settings().store_path) as con:
        resolution = _resolution(con, as_of)
    frame = export_identities(resolution)
    _write_csv(frame, output)
    _lines([f"wrote {len(frame):,} identifiers of {frame['customer_id'].nunique():,} customers to "
            f"{output}; {len(resolution.set_aside):,} set aside (see `nhip identity suspects`)"])


@identity_app.command("suspects")
@handled
def identity_suspects(
    as_of: str | None = typer.Option(None, "--as-of", help=_AS_OF_LATEST),
    output: Path | None = typer.Option(None, "--output", help="also write them to this CSV"),
):
    """Identifiers set aside by the over-merge guard (a hotline, a test email), and why."""
    from features.identity.reports import set_aside_report
    from features.store import open_store

    with open_store(_settings().store_path) as con:
        resolution = _resolution(con, as_of)
        found = set_aside_report(con, resolution)
    if output:
        _write_csv(found, output)
    if found.empty:
        out.print(f"no identifier is set aside (limit: {resolution.config.max_links} distinct identifiers "
                  "of one type)")
        return
    _lines(f"{r.id_type} {r.id_value}: {r.reason}; {r.n_events:,} events, {r.customers:,} customers, "
           f"{r.unresolved_events:,} events with no other identifier (attributed to nobody)"
           for r in found.itertuples(index=False))


@identity_app.command("merges")
@handled
def identity_merges(limit: int = typer.Option(50, help="show at most this many, newest first")):
    """Merges, splits and renames recorded by `nhip features build`."""
    from features.builds import Builds

    frame = Builds(_settings().builds).changes().head(limit)
    if frame.empty:
        out.print("no merges, splits or renames recorded")
    _lines(f"{r.as_of:%Y-%m-%d %H:%M} {r.kind:<7} {r.absorbed_customer_id} → {r.kept_customer_id}"
           + (f" via {r.a_type}+{r.b_type} (event {r.event_key})" if isinstance(r.event_key, str) else "")
           + f": {r.detail}" for r in frame.itertuples(index=False))


# -- activation: audiences, plans, exports ---------------------------------------------------------------


@audience_app.command("create")
@handled
def audience_create(
    name: str = typer.Argument(..., help="lowercase letters, digits, - and _"),
    where: str | None = typer.Option(None, "--where", help="the rule, e.g. \"propensity_bucket == 'High' and "
                                     "recency_days <= 90\" (see `nhip audience columns`)"),
    ids: Path | None = typer.Option(None, "--ids", help="a fixed list instead: a CSV with a customer_id, phone "
                                    "or email column, or one value per line"),
    replace: bool = typer.Option(False, "--replace", help="redefine an existing audience"),
):
    """Define a named audience by a rule over profiles and scores, or by a list of customers (a seed list)."""
    from serving.activation import audience_members, create_audience
    from serving.activation.audiences import read_ids

    settings = _settings()
    seeds, id_type = read_ids(ids) if ids is not None else (None, None)
    audience = create_audience(name, where, seeds, id_type, replace, created_by=_actor(), settings=settings)
    members = audience_members(name, settings)
    out.print(f"audience {audience.name}: {audience.describe()} — {len(members):,} members in the current build",
              highlight=False)


def _actor() -> str:
    import getpass

    return os.environ.get("NHIP_ACTOR") or getpass.getuser()


@audience_app.command("list")
@handled
def audience_list(as_json: bool = typer.Option(False, "--json", help="print JSON on stdout")):
    """Every audience, its rule and its size in the current build."""
    from serving.activation import list_audiences

    table = list_audiences(_settings())
    if as_json:
        print(table.to_json(orient="records", force_ascii=False))
    elif table.empty:
        out.print("no audiences yet: make one with `nhip audience create` (see --help)")
    else:
        _lines(f"{r.audience}  {r.size if isinstance(r.size, str) else format(r.size, ',')}  {r.rule}"
               for r in table.itertuples())


@audience_app.command("show")
@handled
def audience_show(
    name: str = typer.Argument(...),
    output: Path | None = typer.Option(None, "--output", help="also write the members (ids and columns) to CSV"),
):
    """An audience's rule, its size at every feature build since it was made, and its members now."""
    from serving.activation import audience_members, audience_sizes

    settings = _settings()
    members = audience_members(name, settings)
    sizes = audience_sizes(name, settings)
    from serving.activation.audiences import AudienceBook

    audience = AudienceBook(settings.activation.root).get(name)
    out.print(f"audience {name}: {audience.describe()}  (created {audience.created_at} by {audience.created_by})",
              highlight=False)
    out.print(f"members now: {len(members):,}")
    if len(members):
        counts = members["propensity_bucket"].value_counts().to_dict()
        out.print(f"  by propensity bucket: {counts}", highlight=False)
    out.print("size per feature build:")
    _lines(f"  {r.as_of}  {r.build_id}  {r.size:,}" for r in sizes.itertuples())
    if output is not None:
        _write_csv(members, output, index_label="customer_id")
        out.print(f"wrote {len(members):,} members to {output}")


@audience_app.command("columns")
@handled
def audience_columns():
    """The columns and functions audience rules can use."""
    from serving.activation.context import AUDIENCE_COLUMNS

    _lines(f"{name:24} {kind:7} {meaning}" for name, (kind, meaning) in AUDIENCE_COLUMNS.items())
    _lines(["", "functions: lookalike('AUDIENCE', K): the K customers most like AUDIENCE's members; "
            "is_missing(COLUMN)"])


@audience_app.command("export")
@handled
def audience_export(
    name: str = typer.Argument(...),
    channel: str = typer.Option(..., "--channel", help="email, sms, zalo_oa or zalo_zns: whose consent applies"),
    fmt: str = typer.Option("csv", "--format", help="csv, meta, google or zns"),
    output: Path = typer.Option(..., "--output"),
    template: Path | None = typer.Option(None, "--template", help="the ZNS template file (--format zns)"),
):
    """Write an audience for an ad platform or ZNS: only members consenting to the channel, never erased
    people; every export is written to the audit (activation/exports_audit.csv)."""
    from serving.activation import export_audience

    record = export_audience(name, channel, fmt, output, template, _actor(), _settings())
    out.print(f"wrote {record.rows:,} of {record.members:,} members of {name} to {output} ({fmt}, consenting to "
              f"{channel}); audited", highlight=False)


@campaign_app.command("plan")
@handled
def campaign_plan(
    name: str = typer.Option(..., "--name", help="the campaign's name (its campaign_id in message events)"),
    audience: str = typer.Option(..., "--audience"),
    channels: str = typer.Option("email,sms,zalo_oa,zalo_zns", "--channels", help="comma-separated"),
    start: str = typer.Option(..., "--from", help="local time, e.g. 2026-09-02T08:00"),
    end: str = typer.Option(..., "--to", help="local time"),
    budget: float | None = typer.Option(None, "--budget", help="VND; default no limit"),
    policy: Path | None = typer.Option(None, "--policy", help="contact policy TOML; default NHIP_POLICY_FILE or "
                                       "the Vietnamese defaults"),
    output: Path = typer.Option(..., "--output", help="the plan, as CSV"),
):
    """For each member, the channel and send time with the most expected response per VND, within the
    contact policy, the quotas and the budget; members not contacted get the reason."""
    from serving.activation import plan_campaign

    plan = plan_campaign(name, audience, [c.strip() for c in channels.split(",") if c.strip()], start, end,
                         budget, policy, _settings())
    _write_csv(plan.rows, output)
    summary = plan.summary()
    out.print(f"plan {name}: {summary['sends']:,} of {summary['members']:,} members contacted "
              f"{summary['by_channel']}, {summary['cost_vnd']:,.0f} VND, {summary['expected_responses']:.1f} "
              f"expected responses; not contacted {summary['not_sent']}; written to {output}", highlight=False)


@policy_app.command("show")
@handled
def policy_show(policy: Path | None = typer.Option(None, "--policy", help="a policy file; default the one in use")):
    """Print the contact policy in use (or check a file: errors name the key)."""
    from serving.activation.policy import default_policy_text, load_policy

    settings = _settings()
    path = policy or settings.policy_file
    load_policy(path)
    print(path.read_text(encoding="utf-8") if path else default_policy_text())


def _print_examples(settings, host: str, port: int, collector_port: int | None = None) -> None:
    from features.builds import Builds
    from nhip.clock import to_local, utcnow

    ids = json.dumps(list(Builds(settings.builds).open().table("profiles").index[:2]))
    base = f"http://{host}:{port}"
    body = json.dumps({"customer_ids": json.loads(ids), "channel": "zalo_oa",
                       "window_start": "2026-09-02T08:00:00+07:00",
                       "window_end": "2026-09-03T08:00:00+07:00"})
    key = " -H 'X-API-Key: <a read key of NHIP_API_KEYS>'" if settings.api_keys else ""
    # Plain print: these lines are meant to be copied, so no wrapping by the console.
    print("\nTry, once the service says it is listening:\n")
    print(f"  curl -s {base}/healthz")
    print(f"  curl -s -X POST {base}/propensity{key} -H 'Content-Type: application/json' "
          f"-d '{{\"customer_ids\": {ids}}}'")
    print(f"  curl -s -X POST {base}/send_time{key} -H 'Content-Type: application/json' -d '{body}'")
    nba = json.dumps({"customer_id": json.loads(ids)[0], "window_start": "2026-09-02T08:00:00+07:00",
                      "window_end": "2026-09-03T08:00:00+07:00"})
    print(f"  curl -s -X POST {base}/next_best_action{key} -H 'Content-Type: application/json' -d '{nba}'")
    print(f"  curl -s {base}/model_versions{key}")
    if collector_port is not None:
        event = json.dumps([{"event_id": "try-1", "ts": to_local(utcnow()).isoformat(timespec="seconds"),
                             "channel": "pos", "type": "purchase", "phone": "0912 345 678", "amount": 250000}])
        print(f"  curl -s -X POST http://{host}:{collector_port}/events -H \"X-API-Key: $NHIP_COLLECTOR_API_KEY\" "
              f"-H 'Content-Type: application/json' -d '{event}'")
    print(flush=True)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
