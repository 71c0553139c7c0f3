"""The real servers for tests that talk HTTP: the BentoML service and the collector, each in its own
process on a free loopback port, as `nhip serve` and `nhip collect` run them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

NHIP = [sys.executable, "-m", "nhip.cli"]
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(base: str, path: str, process: subprocess.Popen, timeout: float = 120, ok=(200,)) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"the server exited during start-up (code {process.returncode})"
        try:
            if httpx.get(f"{base}{path}", timeout=2).status_code in ok:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{base}{path} did not answer in {timeout:.0f} s"
        time.sleep(0.2)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def service(env: dict[str, str], ready=(200,), log: Path | None = None):
    """`nhip serve` on a free port; yields its base URL once `/readyz` answers with a status in `ready`
    (200 when a model is served; (200, 503) to also accept a service that has nothing to serve)."""
    port = free_port()
    log = log or Path(tempfile.mkstemp(prefix="nhip-serve-", suffix=".log")[1])
    out = open(log, "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen([*NHIP, "serve", "--port", str(port)], env={**os.environ, **env}, cwd=REPO,
                               stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for(base, "/readyz", process, ok=ready)
        except AssertionError as exc:  # say what the service said, not only that it did not start
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            raise AssertionError(f"{exc}; the service's last lines:\n{tail}") from None
        yield base
    finally:
        stop(process)
        out.close()


@contextmanager
def collector(env: dict[str, str], key: str):
    """`nhip collect` on a free port; yields (base URL, process) once `/healthz` answers."""
    port = free_port()
    process = subprocess.Popen([*NHIP, "collect", "--port", str(port)], cwd=REPO,
                               env={**os.environ, **env, "NHIP_COLLECTOR_API_KEY": key},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base, "/healthz", process)
        yield base, process
    finally:
        stop(process)
