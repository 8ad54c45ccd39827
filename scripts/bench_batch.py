#!/usr/bin/env python3
"""What `imgroute batch` adds on top of the providers' own time, against the loopback fakes.

Runs the real `imgroute batch` command (a subprocess, so its CPU and memory are its own) on N rows
split between the two asynchronous fakes (Kie and Apiframe), whose jobs take a fixed T seconds
however often they are polled, at concurrency C. The fakes run in another process.

Each N is measured --runs times (default 3) and the medians are printed: wall time over the ideal
ceil(N/C) x T, CPU seconds per job, HTTP requests and status polls per job (counted by the fakes),
and peak RSS; then how peak RSS grew from the smallest N to the largest.

In the same runs, interleaved, a floor is measured: the same submits, polls and downloads sent by
a plain ThreadPoolExecutor of C bare threads (one per job in progress) through imgroute's adapters
and HTTP client, each sleeping exactly T before its first poll, with no planning, journal, files
or output. It is what any thread-per-job Python client needs on this machine; `imgroute / floor`
is what imgroute's own bookkeeping and scheduling cost on top.

Two comparison rows keep the scheduler's worth measured, in the same runs:
- `threads`: imgroute's own JobRunner (journal, verified files, budgets) with a thread per job in a
  plain ThreadPoolExecutor of C threads, instead of the scheduler's few workers;
- `asyncio`: the floor's requests from one asyncio loop through httpx.AsyncClient.

Targets (issue #12): imgroute / floor <= 1.15 at N=1,000 and N=5,000 (C=50, T=0.2 s, median of 5
runs), <= 3 polls per job, peak RSS <= 150 MB and within 20% between N=1,000 and N=5,000.

    python scripts/bench_batch.py [--n 1000 5000] [--c 50] [--t 0.2] [--runs 5] [--against TREE]

`--against TREE` also runs the `imgroute batch` of another checkout (say a worktree of main) in the
same interleaved runs, and prints this tree's wall and CPU over that one's.

`--postgres` also runs, interleaved, the same batch on a team ledger (a PostgreSQL cluster of its
own, a new database per run: tests/pg_cluster.py), and two processes (two homes, one ledger)
sharing the one batch file with limits set high; it prints PostgreSQL / SQLite (target <= 1.3x,
issue 28), the pair's wall beside one process alone, and each backend's ledger commits per job.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from fake_providers import launch  # noqa: E402

PROVIDERS = ("kie", "apiframe")


def start_fakes(port: int, seconds: float) -> tuple[subprocess.Popen, dict[str, str]]:
    return launch(port, "--job-seconds", str(seconds))


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
    # (run from a neutral folder: `python -m` puts the working directory first on sys.path, ahead of
    # PYTHONPATH, so from a checkout an A/B's other tree would not be the one run)
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=env["IMGROUTE_HOME"]
    )
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


def run_batch(
    n: int, c: int, t: float, fake_env: dict[str, str], work: Path, tree: Path | None = None, ledger: str | None = None
) -> dict:
    """`imgroute batch` on N rows; with `tree`, the imgroute of that checkout (an A/B pair); with
    `ledger`, on that team ledger."""
    home, command, env = batch_setup(n, c, fake_env, work, tree, ledger)
    result = measure(command + ["--out", str(home / "out")], n, c, t, fake_env, env)
    result["commits_per_job"] = int((home / "commits").read_text() or 0) / n
    return result


def batch_setup(n: int, c: int, fake_env, work: Path, tree: Path | None = None, ledger: str | None = None):
    """A home with high limits and a file of N rows: (home, the command, its environment)."""
    home = Path(tempfile.mkdtemp(prefix=f"home-{n}-", dir=work))
    limits = "".join(f"  {p}: {{concurrency: {c}, per_minute: 1000000}}\n" for p in PROVIDERS)
    (home / "config.yaml").write_text(f"limits:\n{limits}")
    rows = work / f"rows-{n}.jsonl"  # (one file, as a team's machines would each have it)
    with rows.open("w") as fh:
        for i in range(n):
            row = {"prompt": f"catalogue item {i}", "quality": "low", "provider": row_provider(i)}
            fh.write(json.dumps(row) + "\n")
    env = {**os.environ, **fake_env, "IMGROUTE_HOME": str(home), "IMGROUTE_COMMITS_FILE": str(home / "commits")}
    env.pop("IMGROUTE_TIME_SCALE", None)
    if ledger is not None:
        env["IMGROUTE_LEDGER_URL"] = ledger
    if tree is not None:
        env["PYTHONPATH"] = str(tree)  # ahead of the installed imgroute
    command = [sys.executable, "-m", "imgroute", "batch", str(rows), "--yes", "--json", "--concurrency", str(c)]
    return home, command, env


def run_pair(n: int, c: int, t: float, fake_env: dict[str, str], work: Path, ledger: str) -> dict:
    """Two processes (two homes) sharing one batch file on one team ledger: wall until both end,
    their CPU together, rows each ran, and every row paid once."""
    urls = {p: fake_env[f"IMGROUTE_{p.upper()}_BASE_URL"] for p in PROVIDERS}
    for url in urls.values():
        control(url, "reset")
        control(url, "set", {"job_seconds": t})
    runs = [batch_setup(n, c, fake_env, work, ledger=ledger) for _ in range(2)]
    start = time.perf_counter()
    # (each writes to a file: every machine reports every row, and a pipe read one after the other
    # would fill and stop the second while the first waits for the rows it holds)
    procs = [subprocess.Popen(command + ["--out", str(home / "out")], env=env, stdout=(home / "rows.out").open("wb"),
                              cwd=home, stderr=subprocess.DEVNULL) for home, command, env in runs]  # fmt: skip
    usages = [os.wait4(proc.pid, 0)[2] for proc in procs]
    wall = time.perf_counter() - start
    outs = [(home / "rows.out").read_bytes().splitlines() for home, _, _ in runs]
    charges = sum(control(url, "state")["charges"] for url in urls.values())
    done = [sum(1 for line in out if json.loads(line).get("outcome") == "done") for out in outs]
    return {
        "wall_s": wall,
        "cpu_per_job_ms": sum(u.ru_utime + u.ru_stime for u in usages) / n * 1000,
        "done_first": done[0],
        "done_second": done[1],
        "paid_once": float(charges == n),
    }


VARIANTS = ("floor", "threads", "asyncio")


def run_variant(variant: str, n: int, c: int, t: float, fake_env: dict[str, str], work: Path) -> dict:
    home = Path(tempfile.mkdtemp(prefix=f"{variant}-{n}-", dir=work))
    command = [sys.executable, __file__, f"--{variant}-worker", str(n), str(c), str(t), str(home)]
    return measure(command, n, c, t, fake_env, {**os.environ, **fake_env, "IMGROUTE_HOME": str(home)})


def _specs():
    """One job spec per provider, as imgroute would route a low-quality row there."""
    from imgroute.jobs.spec import job_spec
    from imgroute.models import Constraints, Request
    from imgroute.pricing.load import load_table
    from imgroute.pricing.router import rank

    table = load_table()
    specs, routes = {}, {}
    for provider in PROVIDERS:
        request = Request(prompt="catalogue item", quality="low")
        routes[provider] = rank(request, table, Constraints(providers=frozenset({provider})))
        specs[provider] = job_spec(request, routes[provider].choice.assessment, 1, "floor")
    return table, specs, routes


def floor_worker(n: int, c: int, t: float, home: str) -> None:
    """The floor's subprocess: bare threads doing each job's requests, one JSON line per job."""
    from concurrent.futures import ThreadPoolExecutor

    from imgroute.net.http import Http, build_client
    from imgroute.providers.registry import BASE_URL_ENV, KEY_ENV, adapter_class

    _, specs, _ = _specs()
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


def threads_worker(n: int, c: int, t: float, home: str) -> None:
    """imgroute's JobRunner with all its bookkeeping, a thread per job: what the scheduler replaced."""
    from concurrent.futures import ThreadPoolExecutor

    from imgroute.batches.scheduler import Limits
    from imgroute.home.config import load_settings
    from imgroute.home.observations import Observations
    from imgroute.jobs.polling import PollTiming
    from imgroute.jobs.runner import JobRunner
    from imgroute.jobs.state import JobOptions, OutputOptions
    from imgroute.net.http import build_client
    from imgroute.session import Keys, Services
    from imgroute.store.sqlite import SharedLedger

    table, _, routes = _specs()
    ledger = SharedLedger(Path(home) / "ledger.sqlite", durable=False)
    slots, timing = Limits({p: (c, None) for p in PROVIDERS}), PollTiming()  # as batch shares them
    with build_client(pool_size=2 * c) as client:
        services = Services(
            table, load_settings(), Keys(table.registry), Path(home), ledger, client, Observations(Path(home)), slots,
            timing=timing,
        )  # fmt: skip

        def job(i: int) -> None:
            provider = row_provider(i)
            runner = JobRunner(services, JobOptions(OutputOptions(Path(home) / "out")))
            route = routes[provider]
            result = runner.run(route.request._replace(prompt=f"catalogue item {i}"), route)
            if result.error is None:
                sys.stdout.write('{"outcome": "done"}\n')

        with ThreadPoolExecutor(c) as pool:
            list(pool.map(job, range(n)))
    ledger.close()


def asyncio_worker(n: int, c: int, t: float, home: str) -> None:
    """The floor's requests from one event loop: httpx.AsyncClient, C jobs in flight at once."""
    import asyncio

    import httpx

    from imgroute.providers.apiframe import _result_urls as apiframe_urls
    from imgroute.providers.kie import _result_urls as kie_urls
    from imgroute.providers.registry import BASE_URL_ENV, KEY_ENV, adapter_class

    _, specs, _ = _specs()
    adapters = {p: adapter_class(p)(os.environ[KEY_ENV[p]], os.environ[BASE_URL_ENV[p]]) for p in PROVIDERS}

    def status_url(provider: str, answer: dict) -> tuple[str, dict]:
        adapter = adapters[provider]
        if provider == "kie":
            return f"{adapter.base}/api/v1/jobs/recordInfo", {"taskId": answer["data"]["taskId"]}
        return f"{adapter.base}/v2/jobs/{answer['jobId']}", {}

    def finished(provider: str, body: dict) -> list[str] | None:
        if provider == "kie":
            data = body["data"]
            return kie_urls(data["resultJson"]) if data["state"] == "success" else None
        return apiframe_urls(body["result"]) if body["status"] == "COMPLETED" else None

    async def job(i: int, client: httpx.AsyncClient, gate: asyncio.Semaphore) -> None:
        async with gate:
            provider = row_provider(i)
            adapter = adapters[provider]
            spec = specs[provider]._replace(prompt=f"catalogue item {i}", client_ref=f"async-{i}")
            prepared = adapter.prepare(spec)
            headers = {**prepared.headers, **adapter.auth_headers()}
            answer = (await client.post(prepared.url, headers=headers, json=prepared.body)).json()
            url, params = status_url(provider, answer)
            await asyncio.sleep(t)
            while (urls := finished(provider, (await client.get(url, params=params, headers=headers)).json())) is None:
                await asyncio.sleep(0.01)
            for result in urls:
                await client.get(result)
            sys.stdout.write('{"outcome": "done"}\n')

    async def everything() -> None:
        limits = httpx.Limits(max_connections=2 * c, max_keepalive_connections=2 * c)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            gate = asyncio.Semaphore(c)
            await asyncio.gather(*(job(i, client, gate) for i in range(n)))

    asyncio.run(everything())


def median_of(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


WORKERS = {"--floor-worker": floor_worker, "--threads-worker": threads_worker, "--asyncio-worker": asyncio_worker}


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] in WORKERS:
        sys.path.insert(0, str(ROOT))
        WORKERS[sys.argv[1]](int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 5000], help="batch sizes (default 1000 5000)")
    parser.add_argument("--c", type=int, default=50, help="concurrency (default 50)")
    parser.add_argument("--t", type=float, default=0.2, help="simulated job time in seconds (default 0.2)")
    parser.add_argument("--runs", type=int, default=5, help="runs per batch size; medians are shown (default 5)")
    parser.add_argument("--port", type=int, default=8790, help="first port for the fakes")
    parser.add_argument(
        "--against", type=Path, metavar="TREE", help="also run the imgroute of another checkout, interleaved: an A/B"
    )
    parser.add_argument("--postgres", action="store_true", help="also on a team ledger (PostgreSQL), and two processes")
    args = parser.parse_args()
    cluster = None
    if args.postgres:
        sys.path.insert(0, str(ROOT))
        from tests.pg_cluster import Cluster, binaries

        bindir = binaries()
        if bindir is None:
            raise SystemExit("--postgres: PostgreSQL is not installed (apt-get install postgresql)")
        cluster = Cluster(bindir)
    if args.against is not None:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(args.against / "imgroute")], check=True)

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "imgroute")], check=True)  # as installed
    fakes, fake_env = start_fakes(args.port, args.t)
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.n:
                batch, others, old = [], {variant: [] for variant in VARIANTS}, []
                team: dict[str, list[dict]] = {"postgres": [], "pair": []}
                for _ in range(args.runs):  # interleaved, so drift in the machine hits all alike
                    batch.append(run_batch(n, args.c, args.t, fake_env, Path(tmp)))
                    if cluster is not None:
                        team["postgres"].append(
                            run_batch(n, args.c, args.t, fake_env, Path(tmp), ledger=cluster.new_database())
                        )
                        team["pair"].append(run_pair(n, args.c, args.t, fake_env, Path(tmp), cluster.new_database()))
                    if args.against is not None:
                        old.append(run_batch(n, args.c, args.t, fake_env, Path(tmp), args.against))
                    for variant in VARIANTS:
                        others[variant].append(run_variant(variant, n, args.c, args.t, fake_env, Path(tmp)))
                medians = {v: median_of(runs) for v, runs in others.items()}
                if old:
                    medians["against"] = median_of(old)
                medians.update({name: median_of(runs) for name, runs in team.items() if runs})
                results.append((n, median_of(batch), medians))
    finally:
        fakes.terminate()
        fakes.wait()
        if cluster is not None:
            cluster.stop()
    print(f"concurrency {args.c}, job time {args.t:g} s, providers {', '.join(PROVIDERS)}, medians of {args.runs} runs")
    for n, r, others in results:
        f = others["floor"]
        print(
            f"N={n:>5}: imgroute {r['wall_s']:.2f} s = {r['ratio']:.2f}x ideal ({r['done']:.0f} done, exit "
            f"{r['exit']:.0f}); floor {f['wall_s']:.2f} s = {f['ratio']:.2f}x; imgroute/floor "
            f"{r['wall_s'] / f['wall_s']:.3f}x (target <= 1.15); CPU {r['cpu_per_job_ms']:.2f} ms/job (floor "
            f"{f['cpu_per_job_ms']:.2f}); {r['requests_per_job']:.2f} requests/job, {r['polls_per_job']:.2f} "
            f"polls/job (target <= 3); peak RSS {r['peak_rss_mb']:.0f} MB (target <= 150)"
        )
        if "against" in others:
            a = others["against"]
            print(
                f"         {args.against}: {a['wall_s']:.2f} s, CPU {a['cpu_per_job_ms']:.2f} ms/job ({a['done']:.0f} "
                f"done); this tree / that one: wall {r['wall_s'] / a['wall_s']:.3f}x, CPU "
                f"{r['cpu_per_job_ms'] / a['cpu_per_job_ms']:.3f}x"
            )
        if "postgres" in others:
            pg, pair = others["postgres"], others["pair"]
            print(
                f"         postgres {pg['wall_s']:.2f} s, CPU {pg['cpu_per_job_ms']:.2f} ms/job "
                f"({pg['done']:.0f} done); "
                f"postgres / sqlite: wall {pg['wall_s'] / r['wall_s']:.3f}x, CPU "
                f"{pg['cpu_per_job_ms'] / r['cpu_per_job_ms']:.3f}x (target <= 1.3); commits per job: sqlite "
                f"{r['commits_per_job']:.2f}, postgres {pg['commits_per_job']:.2f}"
            )
            print(
                f"         two processes sharing it on postgres: {pair['wall_s']:.2f} s "
                f"(one alone {pg['wall_s']:.2f} s), "
                f"CPU {pair['cpu_per_job_ms']:.2f} ms/job together; rows run {pair['done_first']:.0f} + "
                f"{pair['done_second']:.0f}; every row paid once: {'yes' if pair['paid_once'] == 1 else 'NO'}"
            )
        for variant in VARIANTS[1:]:
            v = others[variant]
            print(
                f"         {variant:<8} {v['wall_s']:.2f} s = {v['ratio']:.2f}x ideal, "
                f"{v['wall_s'] / f['wall_s']:.3f}x floor ({v['done']:.0f} done); CPU {v['cpu_per_job_ms']:.2f} ms/job; "
                f"peak RSS {v['peak_rss_mb']:.0f} MB"
            )
    if len(results) > 1:
        first, last = results[0], results[-1]
        growth = last[1]["peak_rss_mb"] / first[1]["peak_rss_mb"] - 1
        print(f"peak RSS growth N={first[0]} -> N={last[0]}: {growth:+.0%} (target within 20%)")


if __name__ == "__main__":
    main()
