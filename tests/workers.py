"""Jobs that tests run in child processes, each repeating one part's real work on one workspace until a
deadline, and printing one JSON line per round: {"start", "end", "ok", "error"} (wall-clock seconds).

    python -m tests.workers ACTIVITY NHIP_HOME DEADLINE

What each activity does is what a user or a scheduler does: `ingest` imports a new small file, `build`
builds features with vectors, `train` trains send time and propensity in turn, `score` scores every
customer, `notebook` reads profiles through the notebook API.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path


def _round(activity: str, settings, n: int, work: Path) -> None:
    from nhip.clock import parse_as_of

    if activity == "ingest":
        from features.ingest.importer import ingest_file

        path = work / f"ingest-{n}.jsonl"
        rows = [{"event_id": f"worker-{n}-{i}", "ts": f"2026-08-1{i % 5}T1{i % 10}:00:00+07:00", "channel": "web",
                 "type": "page_view", "anonymous_id": f"anon-worker-{i % 40}"} for i in range(200)]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        report = ingest_file(path, settings.store_path)
        assert report.accepted == 200, report
    elif activity == "build":
        from features.build import build_features

        build_features(settings.build, parse_as_of("2026-08-15"), settings.vectors, to_qdrant=False)
    elif activity == "train":
        from training.runner import train_propensity, train_send_time

        if n % 2:
            train_propensity(settings.training, parse_as_of("2026-07-15"), horizon_days=30)
        else:
            train_send_time(settings.training, parse_as_of("2026-08-15"))
    elif activity == "score":
        from serving.batch import propensity_table

        scored = propensity_table(settings.serving, settings.store_path, settings.identity,
                                  parse_as_of("2026-08-15"), 30)
        assert len(scored.table) > 0
    elif activity == "notebook":
        import features

        assert len(features.profiles("2026-08-15", settings=settings)) > 0
    else:
        raise SystemExit(f"unknown activity {activity!r}")


def main() -> None:
    activity, home, deadline = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    from nhip.settings import Settings

    settings = Settings(home=home)
    work = home.parent / f"work-{activity}"
    work.mkdir(exist_ok=True)
    n = 0
    while time.time() < deadline:
        start = time.time()
        try:
            _round(activity, settings, n, work)
            ok, error = True, None
        except Exception as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        print(json.dumps({"start": start, "end": time.time(), "ok": ok, "error": error}), flush=True)
        n += 1


if __name__ == "__main__":
    main()
