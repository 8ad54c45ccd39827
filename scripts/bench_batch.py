#!/usr/bin/env python3
"""What `imgroute batch` adds on top of the providers' own time, against the loopback fakes.

Runs the real `imgroute batch` command (a subprocess, so its CPU and memory are its own) on N rows
split between the two asynchronous fakes (Kie and Apiframe), whose jobs take a fixed T seconds
however often they are polled, at concurrency C. The fakes run in another process.

Each N is measured --runs times (default 3) and the medians are printed: wall time over the ideal
ceil(N/C) x T, CPU seconds per job, HTTP requests and status polls per job (counted by the fakes),
and peak RSS; then how peak RSS grew from the smallest N to the largest.

In the same runs, interleaved, a floor is measured: the same submits, polls and downloads sent by
bare worker threads through imgroute's adapters and HTTP client, one thread per job as batch
has, each sleeping exactly T before its first poll, with no planning, journal, files or output.
It is what any thread-per-job Python client needs on this machine; `imgroute / floor` is what
imgroute's own bookkeeping costs on top.

Targets (issue #6): wall <= 1.2 x ideal, <= 3 polls per job, peak RSS <= 150 MB and within 20%
between N=1000 and N=5000.

    python scripts/bench_batch.py [--n 1000 5000] [--c 50] [--t 0.2] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROVIDERS = ("kie", "apiframe")


def start_fakes(port: int, seconds: float) -> tuple[subprocess.Popen, dict[str, str]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "fake_providers.py"),
            "--port",
            str(port),
            "--job-seconds",
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    env = {}
    while True:
        line = proc.stdout.readline()
        if not line or line.startswith("# Ctrl-C"):
            break
        match = re.match(r"export (\w+)=(\S+)", line)
        if match and "TIME_SCALE" not in match.group(1):
            env[match.group(1)] = match.group(2)
    if not env:
        raise SystemExit(f"the fakes did not start (is port {port} free? try --port)")
    return proc, env


def control(url: str, action: str, body: dict | None = None) -> dict:
    data = json.dumps(body or {}).encode() if action != "state" else None
    request = urllib.request.Request(f"{url}/_control/{action}", data=data)
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


def row_provider(i: int) -> str:
    return PROVIDERS[i % 2]


def measure(command: list[str], n: int, c: int, t: float, fake_env: dict[str, str], env: dict) -> dict:
    """Run `command` against freshly reset fakes; its wall, CPU, peak RSS and the fakes' counts."""
    urls = {p: fake_env[f"IMGROUTE_{p.upper()}_BASE_URL"] for p in PROVIDERS}
    for url in urls.values():
        control(url, "reset")
        control(url, "set", {"job_seconds": t})
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lines = proc.stdout.read().splitlines()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    states = [control(url, "state") for url in urls.values()]
    ideal = math.ceil(n / c) * t
    return {
        "done": sum(1 for line in lines if json.loads(line).get("outcome") == "done"),
        "exit": os.waitstatus_to_exitcode(status),
        "wall_s": wall,
        "ratio": wall / ideal,
        "cpu_per_job_ms": (usage.ru_utime + usage.ru_stime) / n * 1000,
        "requests_per_job": sum(s["requests"] for s in states) / n,
        "polls_per_job": sum(s["by_route"].get("poll", 0) for s in states) / n,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def run_batch(n: int, c: int, t: float, fake_env: dict[str, str], work: Path) -> dict:
    home = Path(tempfile.mkdtemp(prefix=f"home-{n}-", dir=work))
    limits = "".join(f"  {p}: {{concurrency: {c}, per_minute: 1000000}}\n" for p in PROVIDERS)
    (home / "config.yaml").write_text(f"limits:\n{limits}")
    rows = home / "rows.jsonl"
    with rows.open("w") as fh:
        for i in range(n):
            row = {"prompt": f"catalogue item {i}", "quality": "low", "provider": row_provider(i)}
            fh.write(json.dumps(row) + "\n")
    env = {**os.environ, **fake_env, "IMGROUTE_HOME": str(home)}
    env.pop("IMGROUTE_TIME_SCALE", None)
    command = [sys.executable, "-m", "imgroute", "batch", str(rows), "--yes", "--json", "--concurrency", str(c)]
    return measure(command + ["--out", str(home / "out")], n, c, t, fake_env, env)


def run_floor(n: int, c: int, t: float, fake_env: dict[str, str]) -> dict:
    command = [sys.executable, __file__, "--floor-worker", str(n), str(c), str(t)]
    return measure(command, n, c, t, fake_env, {**os.environ, **fake_env})


def floor_worker(n: int, c: int, t: float) -> None:
    """The floor's subprocess: bare threads doing each job's requests, one JSON line per job."""
    sys.path.insert(0, str(ROOT))
    from concurrent.futures import ThreadPoolExecutor

    from imgroute.http import Http, build_client
    from imgroute.jobs import job_spec
    from imgroute.models import Constraints, Request
    from imgroute.pricing import load_table
    from imgroute.providers import BASE_URL_ENV, KEY_ENV, adapter_class
    from imgroute.router import rank

    table = load_table()
    specs = {}
    for provider in PROVIDERS:
        request = Request(prompt="catalogue item", quality="low")
        choice = rank(request, table, Constraints(providers=frozenset({provider}))).choice
        specs[provider] = job_spec(request, choice.assessment, 1, "floor")

    with build_client(pool_size=2 * c) as client:

        def job(i: int) -> None:
            provider = row_provider(i)
            adapter = adapter_class(provider)(os.environ[KEY_ENV[provider]], os.environ[BASE_URL_ENV[provider]])
            http = Http(client)
            spec = specs[provider]._replace(prompt=f"catalogue item {i}", client_ref=f"floor-{i}")
            handle = adapter.submit(http, spec).handle
            time.sleep(t)
            while (poll := adapter.poll(http, handle)).state != "succeeded":
                time.sleep(0.01)
            for output in poll.outputs:
                http.download(output.url, lambda chunks: b"".join(chunks))
            sys.stdout.write('{"outcome": "done"}\n')

        with ThreadPoolExecutor(c) as pool:
            list(pool.map(job, range(n)))


def median_of(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--floor-worker":
        floor_worker(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 5000], help="batch sizes (default 1000 5000)")
    parser.add_argument("--c", type=int, default=50, help="concurrency (default 50)")
    parser.add_argument("--t", type=float, default=0.2, help="simulated job time in seconds (default 0.2)")
    parser.add_argument("--runs", type=int, default=3, help="runs per batch size; medians are shown (default 3)")
    parser.add_argument("--port", type=int, default=8790, help="first port for the fakes")
    args = parser.parse_args()

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "imgroute")], check=True)  # as installed
    fakes, fake_env = start_fakes(args.port, args.t)
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.n:
                batch, floor = [], []
                for _ in range(args.runs):  # interleaved, so drift in the machine hits both alike
                    batch.append(run_batch(n, args.c, args.t, fake_env, Path(tmp)))
                    floor.append(run_floor(n, args.c, args.t, fake_env))
                results.append((n, median_of(batch), median_of(floor)))
    finally:
        fakes.terminate()
        fakes.wait()
    print(f"concurrency {args.c}, job time {args.t:g} s, providers {', '.join(PROVIDERS)}, medians of {args.runs} runs")
    for n, r, f in results:
        ideal = math.ceil(n / args.c) * args.t
        print(
            f"N={n:>5}: {r['done']:.0f} done (exit {r['exit']:.0f}), wall {r['wall_s']:.2f} s / ideal {ideal:.2f} s "
            f"= {r['ratio']:.2f}x (target <= 1.2); floor {f['wall_s']:.2f} s = {f['ratio']:.2f}x ideal, "
            f"imgroute/floor {r['wall_s'] / f['wall_s']:.2f}x; CPU {r['cpu_per_job_ms']:.2f} ms/job "
            f"(floor {f['cpu_per_job_ms']:.2f}); {r['requests_per_job']:.2f} requests/job, "
            f"{r['polls_per_job']:.2f} polls/job (target <= 3); peak RSS {r['peak_rss_mb']:.0f} MB (target <= 150)"
        )
    if len(results) > 1:
        first, last = results[0], results[-1]
        growth = last[1]["peak_rss_mb"] / first[1]["peak_rss_mb"] - 1
        print(f"peak RSS growth N={first[0]} -> N={last[0]}: {growth:+.0%} (target within 20%)")


if __name__ == "__main__":
    main()
