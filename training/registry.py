"""The model registry as Nhịp uses it: champion moves and their history, version listings, reports.

Every move of the `champion` alias — by the training gate, by hand or by a rollback — goes through
`move_champion`, which records it as a registered-model tag (`champion.move.000001`, …) with who, when
and why. Replaying those records gives the stack of champions, so `rollback` is well defined: it returns
to the version that held the alias before the current one, then the one before that, down to the first.
One small tag per move keeps each value far below the registry's tag size limit.
"""

from __future__ import annotations

import getpass
import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from models.names import CHAMPION_ALIAS, MODEL_NAMES, PROPENSITY_MODEL, SEND_TIME_MODEL
from models.tracking import TrackingConfig
from nhip.clock import to_local

MOVE_TAG_PREFIX = "champion.move."
GATE = "training gate"  # the `by` of moves made by `nhip train` / `nhip retrain`
# The metrics `nhip models list` shows per model: what the gate compares, then what a marketer reads.
KEY_METRICS = {
    PROPENSITY_MODEL: ("auc", "lift_top_decile", "ece"),
    SEND_TIME_MODEL: ("holdout_auc", "holdout_auc_shop_curve"),
}
REPORT_FILES = {PROPENSITY_MODEL: "propensity", SEND_TIME_MODEL: "send_time"}


class RegistryError(LookupError):
    """A registry request that cannot be met (unknown model or version, nothing to roll back to)."""


@dataclass(frozen=True)
class ChampionMove:
    seq: int
    version: str
    previous: str | None
    action: str  # "promote" (by the gate or by hand) or "rollback"
    at: str  # UTC, ISO 8601
    by: str
    why: str

    def tag(self) -> tuple[str, str]:
        body = {k: v for k, v in self.__dict__.items() if k != "seq"}
        return f"{MOVE_TAG_PREFIX}{self.seq:06d}", json.dumps(body, ensure_ascii=False)


@dataclass
class ChampionRun:
    """The current champion's version and what its training run recorded."""

    version: str
    run_id: str
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float]

    @property
    def as_of(self) -> datetime | None:
        value = self.params.get("as_of")
        return datetime.fromisoformat(value) if value else None

    @property
    def fingerprint(self) -> dict | None:
        value = self.tags.get("data.fingerprint")
        return json.loads(value) if value else None


@dataclass
class VersionRow:
    version: str
    created: str
    run_id: str
    as_of: str
    feature_list: str
    metrics: dict[str, float]
    aliases: list[str]
    verdict: str  # "promoted" / "kept" at training time, or "" for runs from before the gate
    reason: str
    moves: list[ChampionMove] = field(default_factory=list)


def client(tracking: TrackingConfig):
    return tracking.connect().MlflowClient()


def model_name(key: str) -> str:
    """The registered name for a CLI model key (`propensity`, `send-time`); registered names pass."""
    if key in MODEL_NAMES.values():
        return key
    try:
        return MODEL_NAMES[key]
    except KeyError:
        raise RegistryError(f"unknown model {key!r}; use one of {', '.join(MODEL_NAMES)}") from None


def _registered(mlflow_client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_registered_model(name)
    except MlflowException:
        return None


def champion_moves(mlflow_client, name: str) -> list[ChampionMove]:
    """Every recorded move of the champion alias, oldest first."""
    model = _registered(mlflow_client, name)
    if model is None:
        return []
    moves = []
    for key, value in model.tags.items():
        if key.startswith(MOVE_TAG_PREFIX):
            moves.append(ChampionMove(seq=int(key[len(MOVE_TAG_PREFIX):]), **json.loads(value)))
    return sorted(moves, key=lambda m: m.seq)


def champion_stack(moves: list[ChampionMove]) -> list[str]:
    """The champions in the order they took over, the current one last; rollbacks pop.

    A first recorded move that replaced an unrecorded champion (one set before history was kept)
    starts the stack with that version, so it can still be rolled back to.
    """
    stack: list[str] = []
    for move in moves:
        if move.action == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != move.version:
                stack.append(move.version)
            continue
        if not stack and move.previous is not None:
            stack.append(move.previous)
        stack.append(move.version)
    return stack


def current_champion_version(mlflow_client, name: str) -> str | None:
    model = _registered(mlflow_client, name)
    if model is None:
        return None
    version = model.aliases.get(CHAMPION_ALIAS)
    return None if version is None else str(version)


def champion_run(mlflow_client, name: str) -> ChampionRun | None:
    version = current_champion_version(mlflow_client, name)
    if version is None:
        return None
    run_id = mlflow_client.get_model_version(name, version).run_id
    data = mlflow_client.get_run(run_id).data
    return ChampionRun(version, run_id, dict(data.params), dict(data.tags), dict(data.metrics))


def move_champion(mlflow_client, name: str, version: str, action: str, by: str, why: str) -> ChampionMove:
    """Point the alias at `version` and record the move (on the model and on the version)."""
    previous = current_champion_version(mlflow_client, name)
    moves = champion_moves(mlflow_client, name)
    move = ChampionMove(
        seq=(moves[-1].seq + 1) if moves else 1,
        version=str(version),
        previous=previous,
        action=action,
        at=datetime.now(UTC).isoformat(timespec="seconds"),
        by=by,
        why=why[:2000],
    )
    mlflow_client.set_registered_model_alias(name, CHAMPION_ALIAS, str(version))
    mlflow_client.set_registered_model_tag(name, *move.tag())
    for key, value in (("champion.at", move.at), ("champion.by", by), ("champion.why", move.why)):
        mlflow_client.set_model_version_tag(name, str(version), key, value)
    return move


def _version_numbers(mlflow_client, name: str) -> list[str]:
    versions = mlflow_client.search_model_versions(f"name='{name}'")
    return sorted((str(v.version) for v in versions), key=int)


def who() -> str:
    """The account recorded with a hand-made move (a shared machine still tells people apart)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def promote(tracking: TrackingConfig, model_key: str, version: str, by: str | None = None,
            why: str = "promoted by hand") -> ChampionMove | None:
    """Move the champion alias to `version` by hand; None when it already holds it."""
    mlflow_client = client(tracking)
    name = model_name(model_key)
    known = _version_numbers(mlflow_client, name)
    if str(version) not in known:
        listed = ", ".join(known) if known else "none yet"
        raise RegistryError(f"{name} has no version {version!r} (versions: {listed})")
    if current_champion_version(mlflow_client, name) == str(version):
        return None
    return move_champion(mlflow_client, name, str(version), "promote", by or who(), why)


def rollback(tracking: TrackingConfig, model_key: str, by: str | None = None,
             why: str = "rolled back by hand") -> ChampionMove:
    """Give the alias back to the version that held it before the current champion."""
    mlflow_client = client(tracking)
    name = model_name(model_key)
    current = current_champion_version(mlflow_client, name)
    if current is None:
        raise RegistryError(f"{name} has no champion, so there is nothing to roll back")
    stack = champion_stack(champion_moves(mlflow_client, name))
    if not stack or stack[-1] != current:
        raise RegistryError(
            f"{name}@{CHAMPION_ALIAS} is version {current}, but the recorded history ends at "
            f"{stack[-1] if stack else 'nothing'} (moved outside nhip?); use `nhip models promote VERSION`"
        )
    if len(stack) < 2:
        raise RegistryError(f"nothing to roll back to: version {current} is the first recorded "
                            f"champion of {name}")
    target = stack[-2]
    if target not in _version_numbers(mlflow_client, name):
        raise RegistryError(f"the previous champion, version {target} of {name}, no longer exists")
    return move_champion(mlflow_client, name, target, "rollback", by or who(), why)


def list_versions(tracking: TrackingConfig, model_key: str | None = None) -> dict[str, list[VersionRow]]:
    """Every registered version, newest first, with what its run recorded; per registered model."""
    mlflow_client = client(tracking)
    names = [model_name(model_key)] if model_key else [PROPENSITY_MODEL, SEND_TIME_MODEL]
    listing: dict[str, list[VersionRow]] = {}
    for name in names:
        model = _registered(mlflow_client, name)
        if model is None:
            listing[name] = []
            continue
        aliases: dict[str, list[str]] = {}
        for alias, version in model.aliases.items():
            aliases.setdefault(str(version), []).append(alias)
        moves = champion_moves(mlflow_client, name)
        rows = []
        for number in reversed(_version_numbers(mlflow_client, name)):
            version = mlflow_client.get_model_version(name, number)
            run = mlflow_client.get_run(version.run_id).data
            as_of = run.params.get("as_of")
            rows.append(VersionRow(
                version=number,
                created=_local_minute(version.creation_timestamp),
                run_id=version.run_id,
                as_of=f"{to_local(datetime.fromisoformat(as_of)):%Y-%m-%d}" if as_of else "",
                feature_list=run.tags.get("feature_list", ""),
                metrics={k: run.metrics[k] for k in KEY_METRICS.get(name, ()) if k in run.metrics},
                aliases=sorted(aliases.get(number, [])),
                verdict={"true": "promoted", "false": "kept"}.get(run.tags.get("promoted", ""), ""),
                reason=run.tags.get("promotion_reason", ""),
                moves=[m for m in moves if m.version == number],
            ))
        listing[name] = rows
    return listing


def _local_minute(epoch_ms: int) -> str:
    utc = datetime.fromtimestamp(epoch_ms / 1000, UTC).replace(tzinfo=None)
    return f"{to_local(utc):%Y-%m-%d %H:%M}"


def format_versions(name: str, rows: list[VersionRow]) -> list[str]:
    """A compact text table of one model's versions, then the hand-made moves of the alias."""
    if not rows:
        return [f"{name}: no versions yet"]
    champion = next((r.version for r in rows if CHAMPION_ALIAS in r.aliases), None)
    lines = [f"{name} — {CHAMPION_ALIAS}: {'version ' + champion if champion else 'none'}"]
    metric_names = KEY_METRICS.get(name, ())
    short = {"lift_top_decile": "lift@10%", "holdout_auc": "auc", "holdout_auc_shop_curve": "shop_auc"}
    header = ["ver", "created", "run", "as_of", *(short.get(m, m) for m in metric_names),
              "features", "aliases", "at training"]
    table = [header]
    for r in rows:
        verdict = f"{r.verdict}: {r.reason}" if r.verdict else r.reason
        table.append([r.version, r.created, r.run_id[:8], r.as_of,
                      *(f"{r.metrics[m]:.3f}" if m in r.metrics else "-" for m in metric_names),
                      r.feature_list or "-", ",".join(r.aliases) or "-", verdict or "-"])
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    by_hand = [m for r in rows for m in r.moves if m.by != GATE]
    for move in sorted(by_hand, key=lambda m: m.seq):
        at = datetime.fromisoformat(move.at).astimezone(UTC).replace(tzinfo=None)
        lines.append(f"  {to_local(at):%Y-%m-%d %H:%M}  {move.action} to version {move.version} "
                     f"(was {move.previous or 'none'}) by {move.by}: {move.why}")
    return lines


def export_reports(tracking: TrackingConfig, out_dir: Path, model_key: str | None = None,
                   version: str | None = None) -> list[Path]:
    """Copy HTML reports out of MLflow: each champion's, or one version's of one model.

    The reports are the ones written by the training runs (not re-rendered), so what a marketer reads
    is exactly what was logged next to the model.
    """
    import mlflow

    mlflow_client = client(tracking)
    if version is not None and model_key is None:
        raise RegistryError("--version needs --model (propensity or send-time)")
    names = [model_name(model_key)] if model_key else [PROPENSITY_MODEL, SEND_TIME_MODEL]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        if version is None:
            chosen = current_champion_version(mlflow_client, name)
            if chosen is None:
                continue
        elif str(version) in _version_numbers(mlflow_client, name):
            chosen = str(version)
        else:
            raise RegistryError(f"{name} has no version {version!r}")
        run_id = mlflow_client.get_model_version(name, chosen).run_id
        stem = REPORT_FILES.get(name, name) + ("" if version is None else f"-v{chosen}")
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="report", dst_path=tmp)
            for html in sorted(Path(local).glob("*.html")):
                target = out_dir / f"{stem}.html"
                target.write_bytes(html.read_bytes())
                written.append(target)
    return written
