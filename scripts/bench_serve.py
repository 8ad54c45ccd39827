#!/usr/bin/env python3
"""What `imgroute serve` adds to an image request, against the loopback fakes (jobs take T = 0).

Starts the provider fakes and `imgroute serve` (each its own process, with only the OpenAI key, so
every request is routed, journaled and saved, then answered by the OpenAI fake), then sends the
same generation requests with C concurrent clients (1, 10, 50) through imgroute and, interleaved
in the same run, straight to the fake as the floor. Prints per C the median latency of each, the
added latency (imgroute's median minus the floor's), and requests per second of each.

Issue 15's targets here (15 ms added at 10 clients, 1.3x the floor's throughput) measured the
stack rather than imgroute and are retired; serve's targets are bench_serve_scale.py's (hundreds
of clients, jobs that take as long as real ones). This stays as the per-request cost of the path.

Also measured in the same runs, as a reference: a bare gateway on the same stack (scripts/
bare_gateway.py: uvicorn, Starlette and httpx forwarding each request to the fake, nothing else).
What it adds is the cost of putting any HTTP server of this stack between a client and the fake;
imgroute's own work per job is the rest.

    python scripts/bench_serve.py [--clients 1 10 50] [--requests 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from fake_providers import launch  # noqa: E402

BODY = {"model": "gpt-image-2", "prompt": "a lighthouse at dusk", "quality": "low", "size": "1024x1024"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_fakes(port: int) -> tuple[subprocess.Popen, dict[str, str]]:
    return launch(port, "--steps", "0")


def start_serve(fake_env: dict[str, str], home: Path) -> tuple[subprocess.Popen, str]:
    keep = {k: v for k, v in fake_env.items() if "OPENAI" in k}  # only OpenAI: one route, the sync fake
    (home / "config.yaml").write_text("limits:\n  openai: {concurrency: 200, per_minute: 1000000}\n")
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_KEY", "_API_TOKEN"))}
    env.update(keep, IMGROUTE_HOME=str(home))
    port = free_port()
    command = [sys.executable, "-m", "imgroute", "serve", "--port", str(port), "--out", str(home / "served")]
    return started(subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL), port, "imgroute serve")


def start_bare_gateway(fake_env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, str(ROOT / "scripts" / "bare_gateway.py"), str(port)]
    return started(subprocess.Popen(command, env={**os.environ, **fake_env}), port, "the bare gateway")


def started(proc: subprocess.Popen, port: int, name: str) -> tuple[subprocess.Popen, str]:
    """The process and its /v1 URL, once it answers."""
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/models", timeout=1).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{name} did not start")


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU a process has used so far (Linux /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(url: str, key: str, clients: int, requests: int) -> tuple[list[float], float]:
    """`requests` generations from `clients` threads: each latency, and the wall time for all."""
    latencies: list[float] = []
    lock = threading.Lock()
    left = iter(range(requests))

    def client() -> None:
        with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {key}"}) as http:
            while True:
                with lock:
                    i = next(left, None)
                if i is None:
                    return
                start = time.perf_counter()
                answer = http.post(f"{url}/images/generations", json={**BODY, "prompt": f"{BODY['prompt']} {i}"})
                took = time.perf_counter() - start
                if answer.status_code != 200 or not answer.json()["data"][0]["b64_json"]:
                    raise SystemExit(f"{url}: HTTP {answer.status_code}: {answer.text[:200]}")
                with lock:
                    latencies.append(took)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--requests", type=int, default=200, help="requests per measurement (default 200)")
    parser.add_argument("--runs", type=int, default=3, help="runs per client count; medians shown (default 3)")
    parser.add_argument("--port", type=int, default=8810, help="first port for the fakes")
    args = parser.parse_args()
    fakes, fake_env = start_fakes(args.port)
    running = [fakes]  # stopped at the end, also when a later one fails to start
    try:
        work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
        serve, url = start_serve(fake_env, work)
        running.append(serve)
        gateway, gateway_url = start_bare_gateway(fake_env)
        running.append(gateway)
        fake_url = fake_env["IMGROUTE_OPENAI_BASE_URL"] + "/v1"
        fake_key = fake_env["OPENAI_API_KEY"]
        targets = {  # what is measured: its URL, the key it takes, and the process that answers it
            "floor": (fake_url, fake_key, fakes),
            "bare gateway": (gateway_url, fake_key, gateway),
            "imgroute": (url, "unused", serve),
        }
        for target, key, _ in targets.values():  # warm every path
            load(target, key, 4, 20)
        print(f"{args.requests} requests per measurement, medians of {args.runs} runs")
        for clients in args.clients:
            rows = {name: [] for name in targets}
            for _ in range(args.runs):
                for name, (target, key, proc) in targets.items():
                    before = cpu_seconds(proc.pid)
                    latencies, wall = load(target, key, clients, args.requests)
                    after = cpu_seconds(proc.pid)
                    used = (after - before) / args.requests * 1000 if before is not None else float("nan")
                    rows[name].append((statistics.median(latencies), args.requests / wall, used))
            latency = {name: statistics.median(r[0] for r in runs) * 1000 for name, runs in rows.items()}
            rps = {name: statistics.median(r[1] for r in runs) for name, runs in rows.items()}
            cpu = {name: statistics.median(r[2] for r in runs) for name, runs in rows.items()}
            floor = latency["floor"]
            print(
                f"clients {clients:>3}: latency {latency['imgroute']:.1f} ms vs floor {floor:.1f} ms: added "
                f"{latency['imgroute'] - floor:.1f} ms; {rps['imgroute']:.0f} req/s vs floor "
                f"{rps['floor']:.0f} req/s: floor/imgroute {rps['floor'] / rps['imgroute']:.2f}x; "
                f"CPU per request: imgroute {cpu['imgroute']:.2f} ms, fake {cpu['floor']:.2f} ms"
            )
            print(
                f"             bare gateway: latency {latency['bare gateway']:.1f} ms: added "
                f"{latency['bare gateway'] - floor:.1f} ms; {rps['bare gateway']:.0f} req/s: "
                f"floor/gateway {rps['floor'] / rps['bare gateway']:.2f}x; CPU per request {cpu['bare gateway']:.2f} ms"
            )
        print(json.dumps({"home": str(work)}))
    finally:
        for proc in running:
            proc.terminate()
        for proc in running:
            proc.wait(20)


if __name__ == "__main__":
    main()
