#!/usr/bin/env python3
"""What `imgroute batch` adds on top of the providers' own time, against the loopback fakes.

Runs the real `imgroute batch` command (a subprocess, so its CPU and memory are its own) on N rows
split between the two asynchronous fakes (Kie and Apiframe), whose jobs take a fixed T seconds
however often they are polled, at concurrency C. The fakes run in another process. Prints, for
each N: wall time over the ideal ceil(N/C) x T, CPU seconds per job, HTTP requests and status polls
per job (counted by the fakes), and peak RSS; then how peak RSS grew from the smallest N to the
largest.

Targets (issue #6): wall <= 1.2 x ideal, <= 3 polls per job, peak RSS <= 150 MB and within 20%
between N=1000 and N=5000.

    python scripts/bench_batch.py [--n 1000 5000] [--c 50] [--t 0.2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
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
    return proc, env


def control(url: str, action: str, body: dict | None = None) -> dict:
    data = json.dumps(body or {}).encode() if action != "state" else None
    request = urllib.request.Request(f"{url}/_control/{action}", data=data)
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


def run_batch(n: int, c: int, t: float, fake_env: dict[str, str], work: Path) -> dict:
    home = work / f"home-{n}"
    home.mkdir()
    limits = "".join(f"  {p}: {{concurrency: {c}, per_minute: 1000000}}\n" for p in PROVIDERS)
    (home / "config.yaml").write_text(f"limits:\n{limits}")
    rows = work / f"rows-{n}.jsonl"
    with rows.open("w") as fh:
        for i in range(n):
            provider = PROVIDERS[i % 2]
            fh.write(json.dumps({"prompt": f"catalogue item {i}", "quality": "low", "provider": provider}) + "\n")
    urls = {p: fake_env[f"IMGROUTE_{p.upper()}_BASE_URL"] for p in PROVIDERS}
    for url in urls.values():
        control(url, "reset")
        control(url, "set", {"job_seconds": t})
    env = {**os.environ, **fake_env, "IMGROUTE_HOME": str(home)}
    env.pop("IMGROUTE_TIME_SCALE", None)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imgroute",
            "batch",
            str(rows),
            "--yes",
            "--json",
            "--concurrency",
            str(c),
            "--out",
            str(work / f"out-{n}"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    lines = proc.stdout.read().splitlines()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    done = sum(1 for line in lines if json.loads(line).get("outcome") == "done")
    states = [control(url, "state") for url in urls.values()]
    requests = sum(s["requests"] for s in states)
    polls = sum(s["by_route"].get("poll", 0) for s in states)
    ideal = math.ceil(n / c) * t
    return {
        "n": n,
        "done": done,
        "exit": os.waitstatus_to_exitcode(status),
        "wall_s": wall,
        "ideal_s": ideal,
        "ratio": wall / ideal,
        "cpu_per_job_ms": (usage.ru_utime + usage.ru_stime) / n * 1000,
        "requests_per_job": requests / n,
        "polls_per_job": polls / n,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 5000], help="batch sizes (default 1000 5000)")
    parser.add_argument("--c", type=int, default=50, help="concurrency (default 50)")
    parser.add_argument("--t", type=float, default=0.2, help="simulated job time in seconds (default 0.2)")
    parser.add_argument("--port", type=int, default=8790, help="first port for the fakes")
    args = parser.parse_args()

    fakes, fake_env = start_fakes(args.port, args.t)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = [run_batch(n, args.c, args.t, fake_env, Path(tmp)) for n in args.n]
    finally:
        fakes.terminate()
        fakes.wait()
    print(f"concurrency {args.c}, job time {args.t:g} s, providers {', '.join(PROVIDERS)}")
    for r in results:
        print(
            f"N={r['n']:>5}: {r['done']} done (exit {r['exit']}), wall {r['wall_s']:.2f} s / ideal "
            f"{r['ideal_s']:.2f} s = {r['ratio']:.2f}x (target <= 1.2); CPU {r['cpu_per_job_ms']:.2f} ms/job; "
            f"{r['requests_per_job']:.2f} requests/job, {r['polls_per_job']:.2f} polls/job (target <= 3); "
            f"peak RSS {r['peak_rss_mb']:.0f} MB (target <= 150)"
        )
    if len(results) > 1:
        growth = results[-1]["peak_rss_mb"] / results[0]["peak_rss_mb"] - 1
        print(f"peak RSS growth N={results[0]['n']} -> N={results[-1]['n']}: {growth:+.0%} (target within 20%)")


if __name__ == "__main__":
    main()
