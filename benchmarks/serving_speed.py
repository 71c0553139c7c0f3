"""Serving speed over HTTP, side by side in one run: the BentoML service as shipped against `mlflow models
serve` on the same propensity champion.

    .venv/bin/python benchmarks/serving_speed.py --home var        # after `make demo` (or any workspace)

What it measures, with the service started by `nhip serve` on a free loopback port with default settings:

- latency, one client on one keep-alive connection, after a warm-up: `/propensity` and `/send_time` for
  one customer, and for 1,000 customers in one request. Every request asks for other customers, cycling
  through every customer of the build, so no answer is the previous one again;
- throughput with 1, 2 and 8 concurrent clients (connections), by wrk when it is installed (Debian's
  `wrk`: a C client that leaves the cores to the server) or else by Python client processes;
- `mlflow models serve -m models:/<propensity>@champion --env-manager local` answering the same
  customers: one feature row each (the model's features and its blend input) per request, the fair
  equivalent of a one-customer `/propensity`, in requests/s with the same clients.

The client is a raw socket writing prebuilt HTTP/1.1 requests and reading each whole answer, so its own
cost stays in the tens of microseconds; the latency is the round trip a caller sees on loopback.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine_info import machine  # noqa: E402

WINDOW = {"window_start": "2026-09-02T08:00:00+07:00", "window_end": "2026-09-03T08:00:00+07:00"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request_bytes(path: str, body: dict) -> bytes:
    payload = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload


class Connection:
    """One keep-alive HTTP/1.1 connection sending prebuilt requests and reading whole answers."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def call(self, request: bytes) -> tuple[int, bytes]:
        self.sock.sendall(request)
        status = int(self.file.readline().split()[1])
        length = 0
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, self.file.read(length)


def latency(port: int, requests: list[bytes], n: int, warmup: int = 300) -> dict:
    connection = Connection(port)
    for i in range(warmup):
        status, body = connection.call(requests[i % len(requests)])
        assert status == 200, body[:300]
    times = np.empty(n)
    for i in range(n):
        started = time.perf_counter()
        status, _ = connection.call(requests[i % len(requests)])
        times[i] = time.perf_counter() - started
        assert status == 200
    return {"p50_ms": float(np.percentile(times, 50) * 1e3), "p99_ms": float(np.percentile(times, 99) * 1e3),
            "n": n}


def _client_loop(port: int, requests: list[bytes], seconds: float, offset: int, out) -> None:
    connection = Connection(port)
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        status, _ = connection.call(requests[(offset + done) % len(requests)])
        assert status == 200
        done += 1
    out.put(done)


def throughput(port: int, path: str, requests: list[bytes], bodies: list[str], clients: int,
               seconds: float) -> tuple[float, str]:
    """Requests/s with `clients` concurrent connections: wrk when installed, else Python processes."""
    if shutil.which("wrk"):
        with tempfile.TemporaryDirectory() as tmp:
            listing = Path(tmp) / "bodies.txt"
            listing.write_text("\n".join(bodies) + "\n")
            script = Path(tmp) / "bodies.lua"
            script.write_text(
                f'local bodies = {{}}\nfor line in io.lines("{listing}") do bodies[#bodies + 1] = line end\n'
                'local i = 0\nrequest = function()\n  i = i % #bodies + 1\n'
                f'  return wrk.format("POST", "{path}", {{["Content-Type"] = "application/json"}}, bodies[i])\nend\n')
            out = subprocess.run(["wrk", "-t", str(min(clients, 2)), "-c", str(clients), "-d", f"{seconds:g}s",
                                  "-s", str(script), f"http://127.0.0.1:{port}"], capture_output=True, text=True,
                                 check=True).stdout
        assert "Non-2xx" not in out, out
        return float(out.split("Requests/sec:")[1].split()[0]), "wrk"
    queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_client_loop, args=(port, requests, seconds, i * 997, queue))
               for i in range(clients)]
    for worker in workers:
        worker.start()
    total = sum(queue.get() for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds, "python clients"


def wait_until(port: int, probe: bytes, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited (code {process.returncode})"
        try:
            if Connection(port).call(probe)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"no answer on port {port} in {timeout:.0f} s")


def mlflow_rows(settings, ids: list[str]) -> list[str]:
    """One `dataframe_split` body per customer: the champion's features and its blend input, as the
    service computes them."""
    from serving.scoring import load_scorer

    scorer = load_scorer(settings.serving, need=("propensity",))
    model = scorer.propensity_champion.model
    from features.builds import Builds
    from models.answers import blend_input

    build = Builds(settings.builds).current()
    profiles, summary = build.table("profiles"), build.table("repeat")
    rows = profiles.loc[ids]
    frame = rows[list(model.features_)].astype(float)
    columns = list(frame.columns)
    if getattr(model, "blend_feature", None):
        blend, _ = blend_input(model, rows, summary, scorer.horizon_days, scorer.lifetime.pareto)
        frame[model.blend_feature] = blend
        columns.append(model.blend_feature)
    values = frame[columns].to_numpy()
    return [json.dumps({"dataframe_split": {"columns": columns, "data": [[None if np.isnan(v) else float(v)
                                                                          for v in row]]}}) for row in values]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=Path("var"), help="a workspace with a build and champions")
    parser.add_argument("--requests", type=int, default=5000, help="one-customer requests per latency figure")
    parser.add_argument("--seconds", type=float, default=10, help="per throughput figure")
    parser.add_argument("--no-mlflow", action="store_true", help="skip `mlflow models serve`")
    args = parser.parse_args()

    from nhip.settings import Settings

    settings = Settings(home=args.home.resolve())
    env = {**os.environ, "NHIP_HOME": str(settings.home), "HF_HUB_OFFLINE": "1", "BENTOML_DO_NOT_TRACK": "true"}
    env.pop("NHIP_API_KEYS", None)
    from features.builds import Builds

    ids = list(Builds(settings.builds).current().table("profiles").index)
    print(f"machine: {machine()}; {len(ids):,} customers in the build", flush=True)
    one = {path: [request_bytes(path, {"customer_ids": [c], **extra}) for c in ids]
           for path, extra in (("/propensity", {}), ("/send_time", WINDOW))}
    one_bodies = [json.dumps({"customer_ids": [c]}) for c in ids]
    chunks = [ids[i:i + 1000] for i in range(0, len(ids) - 999, 1000)] or [(ids * (1000 // len(ids) + 1))[:1000]]
    many = {path: [request_bytes(path, {"customer_ids": chunk, **extra}) for chunk in chunks]
            for path, extra in (("/propensity", {}), ("/send_time", WINDOW))}

    results: dict = {"machine": machine(), "customers": len(ids)}
    port = free_port()
    service = subprocess.Popen([sys.executable, "-m", "nhip.cli", "serve", "--port", str(port)], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(port, one["/propensity"][0], service)
        for path in ("/propensity", "/send_time"):
            results[f"{path} 1 customer"] = latency(port, one[path], args.requests)
            results[f"{path} 1,000 customers"] = latency(port, many[path], max(200, args.requests // 25), warmup=30)
        for clients in (1, 2, 8):
            rate, how = throughput(port, "/propensity", one["/propensity"], one_bodies, clients, args.seconds)
            results[f"service /propensity {clients} clients"] = {"requests_per_s": rate, "by": how}
    finally:
        service.terminate()
        service.wait(timeout=60)

    if not args.no_mlflow:
        bodies = mlflow_rows(settings, ids)
        port = free_port()
        # It starts `uvicorn` by name: the virtual environment's bin folder must be on PATH.
        mlflow_env = {**env, "MLFLOW_TRACKING_URI": settings.tracking.uri,
                      "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
        from models.names import PROPENSITY_MODEL

        served = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
                                   f"models:/{PROPENSITY_MODEL}@champion", "--env-manager", "local", "-p", str(port),
                                   "-h", "127.0.0.1"], env=mlflow_env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            requests = [request_bytes("/invocations", json.loads(b)) for b in bodies]
            wait_until(port, requests[0], served)
            results["mlflow /invocations 1 row"] = latency(port, requests, args.requests // 5)
            for clients in (1, 2, 8):
                rate, how = throughput(port, "/invocations", requests, bodies, clients, args.seconds)
                results[f"mlflow /invocations {clients} clients"] = {"requests_per_s": rate, "by": how}
        finally:
            served.terminate()
            served.wait(timeout=60)

    for name, figures in results.items():
        print(f"{name}: {figures}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
