#!/usr/bin/env python3
"""`imgroute serve` under hundreds of clients whose generations each take T seconds.

The provider fakes hold every job T = 15 s (OpenAI's synchronous request held open; Kie's job
polled until done). N clients (50, 200, 500) send their requests at once through the official
`openai` SDK's AsyncOpenAI, in a process of their own. For OpenAI, in the same run, the same load
goes through the bare forwarder (scripts/bare_gateway.py: uvicorn, Starlette and httpx forwarding
to the fake, its pool sized to the load): the floor of this stack.

Per scenario, medians of the runs: added latency p50/p95 on the client side (latency minus T) and
on the handler side (serve's log line's time minus T), the fake's own lag (how much later than T
it answered, from the moment it read the request: part of the handler's time, and not imgroute's),
wall time, the server process's peak
threads, peak RSS and peak open files, CPU per request, status polls per job (Kie); and a check
that the ledger has every job once and every image once, and that the fake charged each once.

Targets (issue 27), at 500 clients, OpenAI, T = 15 s: wall <= 1.2x the bare forwarder's, client
p95 added <= 1.5x the forwarder's, handler p95 added <= 2 s, <= 32 threads at peak, CPU per
request <= 2x the forwarder's. Kie at 500: <= 3 polls per job.

    python scripts/bench_serve_scale.py [--clients 50 200 500] [--seconds 15] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench_batch import control  # noqa: E402
from bench_serve import cpu_seconds, free_port, started  # noqa: E402
from fake_providers import launch  # noqa: E402

BODY = {"model": "gpt-image-2", "prompt": "a lighthouse at dusk", "quality": "low"}
ROUTES = {"openai": {"provider": "openai"}, "kie": {"provider": "kie"}}  # each scenario's only offer
LOG_LINE = re.compile(r"^POST /v1/images/generations (\d+) job .* ([\d.]+)s$")


# -- the clients, in a process of their own ------------------------------------------------------


async def _clients(url: str, key: str, n: int, route: str) -> list[float]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=600)
    extra = {"imgroute": ROUTES[route]} if key == "unused" else None

    async def one(i: int) -> float:
        start = time.perf_counter()
        answer = await client.images.generate(**{**BODY, "prompt": f"{BODY['prompt']} {i}"}, extra_body=extra)
        assert answer.data and answer.data[0].b64_json, "no image"
        return time.perf_counter() - start

    try:
        return list(await asyncio.gather(*(one(i) for i in range(n))))
    finally:
        await client.close()


def client_worker(url: str, key: str, n: int, route: str) -> None:
    print(json.dumps(asyncio.run(_clients(url, key, n, route))))


# -- one scenario ----------------------------------------------------------------------------------


class Sampler:
    """The peak threads, RSS and open files of a process, sampled every 50 ms (Linux /proc)."""

    def __init__(self, pid: int):
        self.pid, self.threads, self.rss_mb, self.files = pid, 0, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
                self.files = max(self.files, len(os.listdir(f"/proc/{self.pid}/fd")))
            except OSError:
                return
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            self.threads = max(self.threads, int(fields["Threads"]))
            self.rss_mb = max(self.rss_mb, int(fields["VmRSS"].split()[0]) / 1024)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def load(url: str, key: str, n: int, route: str, server: subprocess.Popen, t: float) -> dict:
    sampler = Sampler(server.pid)
    before = cpu_seconds(server.pid)
    start = time.perf_counter()
    worker = subprocess.run(
        [sys.executable, __file__, "--client-worker", url, key, str(n), route],
        capture_output=True,
        text=True,
        timeout=900,
    )
    wall = time.perf_counter() - start
    after = cpu_seconds(server.pid)
    sampler.stop()
    if worker.returncode != 0:
        raise SystemExit(f"the clients failed: {worker.stderr[-2000:]}")
    latencies = json.loads(worker.stdout)
    added = [latency - t for latency in latencies]
    return {
        "p50": percentile(added, 0.5),
        "p95": percentile(added, 0.95),
        "wall": wall,
        "threads": sampler.threads,
        "rss_mb": sampler.rss_mb,
        "files": sampler.files,
        "cpu_ms": (after - before) / n * 1000 if before is not None and after is not None else float("nan"),
    }


def start_serve(fake_env: dict[str, str], home: Path, route: str, n: int) -> tuple[subprocess.Popen, str, Path]:
    keep = {k: v for k, v in fake_env.items() if route.upper() in k}  # one provider: one route
    limit = max(n, 50)
    (home / "config.yaml").write_text(f"limits:\n  {route}: {{concurrency: {limit}, per_minute: 1000000}}\n")
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_KEY", "_API_TOKEN"))}
    env.update(keep, IMGROUTE_HOME=str(home))
    port = free_port()
    log = home / "serve.log"
    command = [sys.executable, "-m", "imgroute", "serve", "--port", str(port), "--out", str(home / "served")]
    with open(log, "w") as stderr:
        proc, url = started(subprocess.Popen(command, env=env, stderr=stderr), port, "imgroute serve")
    return proc, url, log


def start_bare_gateway(fake_env: dict[str, str], pool: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, str(ROOT / "scripts" / "bare_gateway.py"), str(port), str(pool)]
    return started(subprocess.Popen(command, env={**os.environ, **fake_env}), port, "the bare gateway")


def ledger_check(home: Path, n: int) -> str:
    """Every job once, every image once: 'ok' or what is wrong."""
    db = sqlite3.connect(home / "ledger.sqlite")
    jobs = db.execute("SELECT COUNT(*), SUM(state = 'succeeded') FROM jobs").fetchone()
    files = db.execute("SELECT COUNT(*), COUNT(DISTINCT path), COUNT(DISTINCT job_id) FROM files").fetchone()
    db.close()
    if jobs != (n, n) or files != (n, n, n):
        return f"jobs {jobs}, files {files} (expected {n} of each)"
    return "ok"


def imgroute_run(route: str, n: int, t: float, fake_env: dict[str, str]) -> dict:
    fake_url = fake_env[f"IMGROUTE_{route.upper()}_BASE_URL"]
    control(fake_url, "reset")
    control(fake_url, "set", {"job_seconds": t})
    home = Path(tempfile.mkdtemp(prefix=f"bench-scale-{route}-"))
    server, url, log = start_serve(fake_env, home, route, n)
    warm = 4 if route == "openai" else 0  # Kie's first wave is measured cold: its polls start from the prior
    try:
        if warm:  # the ledger, the routes, the connections
            load(url, "unused", warm, route, server, t)
            control(fake_url, "reset")
            control(fake_url, "set", {"job_seconds": t})
        result = load(url, "unused", n, route, server, t)
    finally:
        server.terminate()
        server.wait(60)
    state = control(fake_url, "state")
    result["handler_p50"], result["handler_p95"] = handler_added(log, t, n)
    result["polls_per_job"] = state["by_route"].get("poll", 0) / n
    result["fake_p50"], result["fake_p95"] = state.get("overdue_p50") or 0.0, state.get("overdue_p95") or 0.0
    result["arrivals_s"] = state.get("arrivals_s", 0.0)
    result["charges"] = state["charges"]
    result["ledger"] = ledger_check(home, n + warm)  # (the warm-up's jobs too)
    return result


def handler_added(log: Path, t: float, n: int) -> tuple[float, float]:
    """The handler side of the measured load: the log's last n job lines (the warm-up's come first)."""
    took = [float(m.group(2)) - t for line in log.read_text().splitlines() if (m := LOG_LINE.match(line))][-n:]
    return percentile(took, 0.5), percentile(took, 0.95)


def bare_run(n: int, t: float, fake_env: dict[str, str]) -> dict:
    fake_url = fake_env["IMGROUTE_OPENAI_BASE_URL"]
    control(fake_url, "reset")
    control(fake_url, "set", {"job_seconds": t})
    gateway, url = start_bare_gateway(fake_env, pool=max(n, 100) * 2)
    try:
        result = load(url, fake_env["OPENAI_API_KEY"], n, "openai", gateway, t)
    finally:
        gateway.terminate()
        gateway.wait(60)
    state = control(fake_url, "state")
    result["fake_p50"], result["fake_p95"] = state.get("overdue_p50") or 0.0, state.get("overdue_p95") or 0.0
    result["arrivals_s"] = state.get("arrivals_s", 0.0)
    return result


def median_of(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) if not isinstance(runs[0][k], str) else runs[-1][k]
            for k in runs[0]}  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client-worker":
        url, key, n, route = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
        return client_worker(url, key, n, route)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--seconds", type=float, default=15.0, help="how long each job takes at the fakes")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario; medians shown (default 3)")
    parser.add_argument("--routes", nargs="+", default=["openai", "kie"], choices=sorted(ROUTES))
    parser.add_argument("--port", type=int, default=8850, help="first port for the fakes")
    args = parser.parse_args()
    fakes, fake_env = launch(args.port, "--steps", "0")
    try:
        print(f"jobs held {args.seconds:g} s at the fakes; medians of {args.runs} runs; 'added' is latency minus that")
        for route in args.routes:
            for n in args.clients:
                ours = median_of([imgroute_run(route, n, args.seconds, fake_env) for _ in range(args.runs)])
                print(
                    f"{route} {n:>3} clients: imgroute added p50/p95 {ours['p50']:.2f}/{ours['p95']:.2f} s (client), "
                    f"{ours['handler_p50']:.2f}/{ours['handler_p95']:.2f} s (handler); wall {ours['wall']:.1f} s; "
                    f"peak {ours['threads']:.0f} threads, {ours['rss_mb']:.0f} MB, {ours['files']:.0f} files; "
                    f"CPU {ours['cpu_ms']:.1f} ms/request; {ours['polls_per_job']:.2f} polls/job; the fake's own "
                    f"lag p50/p95 {ours['fake_p50']:.2f}/{ours['fake_p95']:.2f} s; requests reached it over "
                    f"{ours['arrivals_s']:.1f} s; "
                    f"charged {ours['charges']:.0f}; ledger {ours['ledger']}"
                )
                if route != "openai":
                    continue
                bare = median_of([bare_run(n, args.seconds, fake_env) for _ in range(args.runs)])
                print(
                    f"{'':>6} {n:>3} clients: bare forwarder added p50/p95 {bare['p50']:.2f}/{bare['p95']:.2f} s; "
                    f"wall {bare['wall']:.1f} s; peak {bare['threads']:.0f} threads, {bare['rss_mb']:.0f} MB; "
                    f"the fake's own lag p50/p95 {bare['fake_p50']:.2f}/{bare['fake_p95']:.2f} s; requests reached "
                    f"it over {bare['arrivals_s']:.1f} s; "
                    f"CPU {bare['cpu_ms']:.1f} ms/request; imgroute/forwarder: wall "
                    f"{ours['wall'] / bare['wall']:.2f}x, p95 {ours['p95'] / max(bare['p95'], 1e-3):.2f}x, "
                    f"CPU {ours['cpu_ms'] / bare['cpu_ms']:.2f}x"
                )
    finally:
        fakes.terminate()
        fakes.wait(20)


if __name__ == "__main__":
    main()
