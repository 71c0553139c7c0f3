"""`nhip up`: the whole system from one command, for a shop that runs on one machine.

    nhip up [--collector-port 8100] [--service-port 3000] [--no-collector]

It starts and watches four parts, each its own process so that one part's crash or memory never takes
another down, and prefixes every line they print with the time and the part:

- `collector`: `nhip collect`, receiving events all day (restarted if it dies);
- `service`: `nhip serve`, answering scores; it follows new builds and champions by itself (restarted
  if it dies);
- `refresh`: `nhip refresh` at start and then every NHIP_REFRESH_MINUTES (5), skipped while the last
  one still runs;
- `retrain`: `nhip retrain` once a day at NHIP_RETRAIN_AT (02:00, Vietnam time).

Ctrl-C or SIGTERM stops it cleanly: no new job starts, every part gets SIGTERM (the collector stores
what it still has spooled; a refresh or retrain that is cut short leaves no half build and no half
model, only its next run to do), and a part still running after `STOP_SECONDS` is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as clock_time

from nhip.clock import LOCAL_FIXED_TZ

STOP_SECONDS = 30.0
RESTART_BACKOFF = (1.0, 2.0, 5.0, 15.0, 60.0)  # seconds before restarting a part that died, in order


@dataclass(frozen=True)
class SystemConfig:
    """What `nhip up` runs: the ports, whether to run the collector, the two schedules."""

    refresh_minutes: float
    retrain_at: clock_time  # local time of day
    collector_port: int | None  # None: no collector
    service_port: int
    host: str = "127.0.0.1"


def parse_clock(text: str) -> clock_time:
    """`HH:MM` as a time of day; ValueError otherwise."""
    try:
        hours, minutes = (int(part) for part in text.split(":"))
        return clock_time(hours, minutes)
    except ValueError:
        raise ValueError(f"{text!r} is not a time of day; use HH:MM, e.g. 02:00") from None


def next_daily(at: clock_time, after: datetime) -> datetime:
    """The first local `at` strictly after `after` (an aware datetime)."""
    local = after.astimezone(LOCAL_FIXED_TZ)
    candidate = local.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    return candidate if candidate > local else candidate + timedelta(days=1)


@dataclass
class Part:
    """One child process of the system, and what it printed."""

    name: str
    command: list[str]
    keep_running: bool  # a server (restarted when it dies) rather than a job
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    _pump: threading.Thread | None = field(default=None, repr=False)


class System:
    """Runs the parts (see the module docstring). `log` receives every line, prefixed."""

    def __init__(self, config: SystemConfig, nhip: list[str], env: dict[str, str],
                 log: Callable[[str], None] | None = None, now: Callable[[], datetime] | None = None):
        self.config, self.env = config, env
        self.log_line = log or (lambda line: print(line, flush=True))
        self.now = now or (lambda: datetime.now(LOCAL_FIXED_TZ))
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.parts: dict[str, Part] = {}
        if config.collector_port is not None:
            self.parts["collector"] = Part("collector", [*nhip, "collect", "--host", config.host,
                                                         "--port", str(config.collector_port)], True)
        self.parts["service"] = Part("service", [*nhip, "serve", "--host", config.host,
                                                 "--port", str(config.service_port)], True)
        self.parts["refresh"] = Part("refresh", [*nhip, "refresh"], False)
        self.parts["retrain"] = Part("retrain", [*nhip, "retrain"], False)
        self.next_refresh = time.monotonic()  # one at start, so the service has a build to answer from
        self.next_retrain = next_daily(config.retrain_at, self.now())

    # -- output -------------------------------------------------------------------------------------------

    def log(self, part: str, message: str) -> None:
        stamp = self.now().strftime("%H:%M:%S")
        with self._lock:
            self.log_line(f"{stamp} [{part}] {message}")

    def _pump_output(self, part: Part) -> None:
        for line in part.process.stdout:
            line = line.rstrip()
            if line:
                self.log(part.name, line)

    # -- processes ----------------------------------------------------------------------------------------

    def _start(self, part: Part) -> None:
        part.process = subprocess.Popen(part.command, env=self.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
        part.started_at = time.monotonic()
        part._pump = threading.Thread(target=self._pump_output, args=(part,), name=f"log-{part.name}", daemon=True)
        part._pump.start()
        self.log(part.name, f"started (pid {part.process.pid}): {' '.join(part.command[-4:])}")

    def _finished(self, part: Part) -> int | None:
        """The exit code of a part that ended since the last look (its output read to the end)."""
        if part.process is None or part.process.poll() is None:
            return None
        code = part.process.returncode
        if part._pump is not None:
            part._pump.join(timeout=5)
        part.process = None
        return code

    def running(self, name: str) -> bool:
        part = self.parts[name]
        return part.process is not None and part.process.poll() is None

    def tick(self) -> None:
        """One look at everything: restart servers that died, start jobs that are due."""
        clock = time.monotonic()
        for part in self.parts.values():
            code = self._finished(part)
            if code is not None:
                seconds = clock - part.started_at
                if part.keep_running:
                    delay = RESTART_BACKOFF[min(part.restarts, len(RESTART_BACKOFF) - 1)]
                    part.restarts = 0 if seconds > 300 else part.restarts + 1
                    part.next_start = clock + delay
                    self.log(part.name, f"exited with code {code} after {seconds:.0f} s; restarting in {delay:.0f} s")
                else:
                    outcome = "done" if code == 0 else f"failed (exit code {code})"
                    self.log(part.name, f"{outcome} in {seconds:.1f} s")
        if self._stopping.is_set():
            return
        for part in self.parts.values():
            if part.keep_running and part.process is None and clock >= part.next_start:
                self._start(part)
        if clock >= self.next_refresh:
            self.next_refresh = clock + self.config.refresh_minutes * 60
            if self.running("refresh"):
                self.log("refresh", "the last refresh is still running; skipping this one")
            else:
                self._start(self.parts["refresh"])
        if self.now() >= self.next_retrain:
            self.next_retrain = next_daily(self.config.retrain_at, self.now())
            if self.running("retrain"):
                self.log("retrain", "yesterday's retrain is still running; skipping today's")
            else:
                self._start(self.parts["retrain"])

    def run(self) -> int:
        """Run until `stop` (a signal); returns the exit code for `nhip up`."""
        self.log("up", f"refresh every {self.config.refresh_minutes:g} min, retrain daily at "
                       f"{self.config.retrain_at:%H:%M} (next {self.next_retrain:%Y-%m-%d %H:%M}); "
                       "Ctrl-C stops")
        while not self._stopping.is_set():
            self.tick()
            self._stopping.wait(1.0)
        self._stop_all()
        return 0

    def stop(self, *_: object) -> None:
        self._stopping.set()

    def _stop_all(self) -> None:
        live = [p for p in self.parts.values() if p.process is not None and p.process.poll() is None]
        for part in live:
            self.log(part.name, "stopping")
            _signal(part, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for part in live:
            try:
                part.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(part.name, f"still running after {STOP_SECONDS:.0f} s; killing it")
                _signal(part, signal.SIGKILL)
                part.process.wait()
            code = part.process.returncode
            self.log(part.name, "stopped" if code in (0, -signal.SIGTERM) else f"stopped (exit code {code})")
            if part._pump is not None:
                part._pump.join(timeout=5)
        self.log("up", "stopped")


def _signal(part: Part, sig: int) -> None:
    """Signal the part's whole process group (a server's workers too)."""
    try:
        os.killpg(part.process.pid, sig)
    except ProcessLookupError:
        pass


def nhip_command() -> list[str]:
    """How to run this installation's `nhip` in a child process."""
    return [sys.executable, "-m", "nhip.cli"]
