"""Named audiences: a rule over the documented columns (`context.AUDIENCE_COLUMNS`), or a fixed list of
customers (a seed list), kept in the workspace and recomputed against every feature build.

A definition is a small JSON file under `activation/audiences/`; members are never stored, only worked
out from the current build when asked, so an audience always reflects the latest consent and erasures.
`record_sizes` appends each audience's size per build to `activation/audience_sizes.csv`, the history
`nhip audience show` and the report print. No personal data is written: names, rules, counts.

Rules may call `lookalike('SEED', K)`: the K customers most like the members of audience SEED, from the
build's profile vectors (`features.vectors.lookalike`), seeds excluded.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from nhip.clock import utcnow
from nhip.locks import exclusive_lock
from serving.activation.context import AUDIENCE_COLUMNS, ActivationContext
from serving.activation.rules import Rule, RuleError, parse_rule

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
FUNCTIONS = ("lookalike",)
SIZE_FIELDS = ("build_id", "as_of", "audience", "size", "recorded_at")


class AudienceError(LookupError):
    """An audience that does not exist, cannot be defined or cannot be computed; the message says why."""


@dataclass(frozen=True)
class Audience:
    name: str
    where: str | None  # the rule, or None for a fixed list
    seeds: tuple[str, ...] = ()  # a fixed list: customer ids or identifiers, resolved at each build
    seed_type: str | None = None  # what the seeds are (customer_id, phone, email, …); None: try each
    created_at: str = ""
    created_by: str = ""

    def describe(self) -> str:
        return self.where if self.where is not None else f"fixed list of {len(self.seeds)} seeds"


def column_kinds() -> dict[str, str]:
    return {name: kind for name, (kind, _) in AUDIENCE_COLUMNS.items()}


def parse(where: str) -> Rule:
    return parse_rule(where, column_kinds(), FUNCTIONS)


class AudienceBook:
    """The audiences of one workspace, in `root` (`$NHIP_HOME/activation`)."""

    def __init__(self, root: Path):
        self.root = root
        self.folder = root / "audiences"
        self.sizes_path = root / "audience_sizes.csv"

    # -- definitions ---------------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def create(self, name: str, where: str | None = None, seeds: list[str] | None = None,
               seed_type: str | None = None, created_by: str = "", replace: bool = False) -> Audience:
        """Define an audience by a rule (`where`) or a fixed list (`seeds`). The rule is checked here, so
        a typo fails at once and not at the next build."""
        if not _NAME.match(name):
            raise AudienceError(f"audience name {name!r}: use lowercase letters, digits, - and _ (at most 64)")
        if (where is None) == (seeds is None):
            raise AudienceError("give either a rule (--where) or a list of customers (--ids), not both")
        if where is not None:
            rule = parse(where)
            for function, args in rule.calls:
                if function == "lookalike":
                    self._check_lookalike(name, args)
        elif not seeds:
            raise AudienceError("the list of customers is empty")
        if self._path(name).exists() and not replace:
            raise AudienceError(f"audience {name!r} exists; pass --replace to redefine it")
        audience = Audience(name, where, tuple(str(s) for s in seeds or ()), seed_type,
                            utcnow().isoformat(timespec="seconds"), created_by)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self._path(name).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(audience), ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, self._path(name))  # atomic: a reader sees the old definition or the new one
        return audience

    def _check_lookalike(self, name: str, args: tuple) -> None:
        if len(args) != 2 or not isinstance(args[0], str) or not isinstance(args[1], int) or args[1] < 1:
            raise RuleError("lookalike takes an audience name and a count, e.g. lookalike('vip', 500)")
        if args[0] == name:
            raise AudienceError(f"audience {name!r} cannot be a lookalike of itself")
        self.get(args[0])

    def get(self, name: str) -> Audience:
        path = self._path(name)
        if not path.exists():
            known = ", ".join(a.name for a in self.list()) or "none yet"
            raise AudienceError(f"no audience {name!r} (known: {known}); create it with `nhip audience create`")
        data = json.loads(path.read_text(encoding="utf-8"))
        data["seeds"] = tuple(data.get("seeds", ()))
        return Audience(**data)

    def list(self) -> list[Audience]:
        if not self.folder.exists():
            return []
        return [self.get(p.stem) for p in sorted(self.folder.glob("*.json"))]

    # -- members -------------------------------------------------------------------------------------

    def members(self, name: str, context: ActivationContext, _seen: tuple[str, ...] = ()) -> pd.Index:
        """The customer ids of audience `name` in `context`'s build, in the build's order."""
        if name in _seen:
            raise AudienceError(f"audiences {' → '.join((*_seen, name))} refer to each other in a loop")
        audience = self.get(name)
        frame = context.frame
        if audience.where is None:
            from features.vectors.lookalike import resolve_seeds

            found, _ = resolve_seeds(context.identity, list(audience.seeds), audience.seed_type)
            return frame.index[frame.index.isin(list(found.values()))]

        def lookalike(rows: pd.DataFrame, seed: str, k: int) -> pd.Series:
            return pd.Series(rows.index.isin(self._lookalike(seed, k, context, (*_seen, name))), index=rows.index)

        keep = parse(audience.where).evaluate(frame, {"lookalike": lookalike})
        return frame.index[keep.to_numpy()]

    def _lookalike(self, seed: str, k: int, context: ActivationContext, seen: tuple[str, ...]) -> list[str]:
        key = ("lookalike", seed, k)
        if key not in context._cache:
            from features.vectors.lookalike import lookalike

            if context.vectors is None:
                raise AudienceError("lookalike() needs profile vectors; run `nhip features build` (with vectors)")
            seeds = self.members(seed, context, seen)
            found = lookalike(context.vectors, dict(zip(seeds, seeds)), k)
            context._cache[key] = list(found.customers["customer_id"])
        return context._cache[key]

    # -- size history --------------------------------------------------------------------------------

    def record_sizes(self, context: ActivationContext) -> dict[str, int | str]:
        """Each audience's size in `context`'s build, appended to the history once per build; an audience
        that cannot be computed (e.g. its seed audience was removed) is reported, not fatal."""
        sizes: dict[str, int | str] = {}
        recorded = self.sizes()
        done = set(recorded.loc[recorded["build_id"] == context.build.build_id, "audience"])
        rows = []
        for audience in self.list():
            try:
                size = len(self.members(audience.name, context))
            except (AudienceError, RuleError) as exc:
                sizes[audience.name] = f"not computed: {exc}"
                continue
            sizes[audience.name] = size
            if audience.name not in done:
                rows.append({"build_id": context.build.build_id, "as_of": context.build.as_of.isoformat(),
                             "audience": audience.name, "size": size,
                             "recorded_at": utcnow().isoformat(timespec="seconds")})
        if rows:
            self.root.mkdir(parents=True, exist_ok=True)
            with exclusive_lock(self.root / ".sizes.lock", wait=30, busy=lambda: AudienceError("sizes busy")):
                new = not self.sizes_path.exists()
                with self.sizes_path.open("a", newline="", encoding="utf-8") as out:
                    writer = csv.DictWriter(out, fieldnames=SIZE_FIELDS)
                    if new:
                        writer.writeheader()
                    writer.writerows(rows)
        return sizes

    def sizes(self, name: str | None = None) -> pd.DataFrame:
        """The size history (build_id, as_of, audience, size, recorded_at), oldest first."""
        if not self.sizes_path.exists():
            return pd.DataFrame(columns=list(SIZE_FIELDS))
        frame = pd.read_csv(self.sizes_path, dtype={"build_id": str, "audience": str})
        return frame[frame["audience"] == name].reset_index(drop=True) if name else frame


def read_ids(path: Path) -> tuple[list[str], str | None]:
    """(values, id_type) from a seed file: a CSV with a customer_id, phone or email column (the first
    found), or one value per line (id_type None: each tried as a customer id, then every identifier)."""
    if not path.is_file():
        raise AudienceError(f"no file at {path}")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in ("customer_id", "phone", "email"):
        if column in frame.columns:
            values = [v for v in frame[column].str.strip() if v]
            return values, column
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines, None
